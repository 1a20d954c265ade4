//! Herald's HTTP listener (DESIGN §5): metrics, health, and the message API.
//!
//! - `GET /metrics` — Prometheus text, rendered from the global recorder.
//! - `GET /healthz` — the process is up.
//! - `GET /readyz` — Redis answers and the instance is not shutting down.
//! - `POST /v1/messages` — one message or an array, same JSON as the queue;
//!   bearer API key per tenant; `202` only after the entries are in Redis.
//! - `GET /v1/messages/{tenant}/{id}` — current state and decision trail.
//! - `POST /v1/policy/evaluate` — what the policy decides for a number,
//!   category and instant (the dispatch path's own code).
//! - `POST /v1/webhooks/twilio/inbound` — replies (STOP / START / HELP…),
//!   signature-verified, answered with TwiML.
//! - `POST /v1/webhooks/twilio/status` — delivery receipts.
//! - `GET /v1/consent/{tenant}/{number}` — a number's consent and evidence.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;
use crate::keys;
use crate::model::{self, Limits};
use crate::queue::Conn;

/// Shared by every request.
pub struct HttpState {
    pub cfg: HttpConfig,
    pub partitions: u16,
    pub limits: Limits,
    pub metrics: Option<PrometheusHandle>,
    pub redis: Conn,
    /// Set by the health checker.
    pub redis_up: Arc<AtomicBool>,
    /// Cancelled when shutdown begins: readiness turns false.
    pub shutdown: CancellationToken,
    pub policy: Arc<crate::policy::Policy>,
    pub consent: Arc<crate::consent::ConsentLedger>,
    pub cap_script: redis::Script,
    /// `control.token`: an admin may use every tenant's endpoints.
    pub admin_token: String,
    /// (account_sid, auth_token) of each twilio provider, for signatures.
    pub twilio: Vec<(String, String)>,
    /// (account_sid, provider name) of each twilio provider, for receipts.
    pub twilio_names: Vec<(String, String)>,
    pub receipts: Arc<crate::delivery::Receipts>,
}

pub(crate) type Body = Full<Bytes>;

/// Accept connections until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["metrics"]) => match &state.metrics {
            Some(h) => text(StatusCode::OK, "text/plain; version=0.0.4", h.render()),
            None => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                "metrics disabled\n".into(),
            ),
        },
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, ["readyz"]) => {
            if state.shutdown.is_cancelled() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "shutting down\n".into(),
                )
            } else if !state.redis_up.load(Ordering::Relaxed) {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "redis unreachable\n".into(),
                )
            } else {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            }
        }
        (&Method::POST, ["v1", "messages"]) => post_messages(state, req).await,
        (&Method::GET, ["v1", "messages", tenant, id]) => {
            let (tenant, id) = (decode_segment(tenant), decode_segment(id));
            get_message(state, &req, &tenant, &id).await
        }
        (&Method::POST, ["v1", "policy", "evaluate"]) => evaluate_policy(state, req).await,
        (&Method::POST, ["v1", "webhooks", "twilio", "inbound"]) => {
            crate::inbound::webhook::twilio_inbound(state, req).await
        }
        (&Method::POST, ["v1", "webhooks", "twilio", "status"]) => {
            crate::inbound::webhook::twilio_status(state, req).await
        }
        (&Method::GET, ["v1", "consent", tenant, number]) => {
            let (tenant, number) = (decode_segment(tenant), decode_segment(number));
            get_consent(state, &req, &tenant, &number).await
        }
        (_, ["metrics" | "healthz" | "readyz"])
        | (_, ["v1", "messages" | "policy" | "webhooks" | "consent", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

fn decode_segment(s: &str) -> String {
    // Percent-decoding of a path segment (ids may hold reserved characters).
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r
}

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(status, &json!({"error": code, "message": message}))
}

/// The tenant whose API key the request carries, compared in constant time.
fn authenticate<'a>(cfg: &'a HttpConfig, headers: &http::HeaderMap) -> Option<&'a str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ")?.trim().as_bytes();
    let mut found = None;
    for (tenant, key) in &cfg.api_keys {
        if constant_time_eq(key.as_bytes(), token) {
            found = Some(tenant.as_str());
        }
    }
    found
}

/// May the request act for `tenant`: its API key, or the admin token.
fn authorized_for(state: &HttpState, headers: &http::HeaderMap, tenant: &str) -> bool {
    if authenticate(&state.cfg, headers) == Some(tenant) {
        return true;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    !state.admin_token.is_empty()
        && token.is_some_and(|t| constant_time_eq(t.as_bytes(), state.admin_token.as_bytes()))
}

/// Read a request body up to the configured limit.
pub(crate) async fn read_body(
    state: &HttpState,
    req: Request<Incoming>,
) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), state.cfg.max_request_bytes)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body over http.max_request_bytes",
        )),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateRequest {
    #[serde(default)]
    tenant: Option<String>,
    to: String,
    #[serde(default)]
    category: Option<model::Category>,
    #[serde(default)]
    recipient: Option<EvaluateRecipient>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    consent: Option<crate::consent::ConsentKind>,
    #[serde(default)]
    debt_id: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateRecipient {
    #[serde(default)]
    tz: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// `POST /v1/policy/evaluate`: the dispatch path's policy for one number,
/// category and instant, with the rules that fired. Frequency caps are
/// peeked (never reserved). A deferral's `until` is an instant at which
/// every window is open and every cap has room.
async fn evaluate_policy(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    // The body names the tenant: read it, then authorise for that tenant.
    let headers = req.headers().clone();
    let body = match read_body(state, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let r: EvaluateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    let tenant = r.tenant.as_deref().unwrap_or(model::DEFAULT_TENANT);
    if !authorized_for(state, &headers, tenant) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the tenant's API key or the admin token (control.token) is required",
        );
    }
    let to = match model::parse_e164(&r.to) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_number", &e),
    };
    let at = match r.at.as_deref() {
        None => jiff::Timestamp::now(),
        Some(s) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => t,
            Err(e) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    &format!("`at` is not RFC 3339: {e}"),
                );
            }
        },
    };
    let (tz, st) = match &r.recipient {
        Some(rc) => (rc.tz.as_deref(), rc.state.as_deref()),
        None => (None, None),
    };
    if let Err(e) = model::validate_recipient(tz, st) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", &e);
    }
    let category = r.category.unwrap_or(model::Category::Transactional);
    let on_file = state.consent.lookup(tenant, to);
    let mut conn = state.redis.clone();
    let mut t = at;
    let mut all_fired = Vec::new();
    // Quiet hours and caps alternate until one instant satisfies both: a
    // cap frees at some instant, which may fall in quiet hours, whose end
    // is checked against the caps again. Caps only free up over time, so
    // this settles quickly; bounded anyway.
    for _ in 0..8 {
        let input = crate::policy::Input {
            tenant,
            to,
            category,
            recipient_tz: tz,
            recipient_state: st,
            at: t,
            consent: r.consent,
            explain: true,
        };
        let eval = state.policy.evaluate(&input, on_file);
        let zones: Vec<&str> = eval.zones.iter().map(|z| z.name()).collect();
        let first = all_fired.is_empty();
        if first {
            all_fired = eval.fired.clone();
        }
        match eval.verdict {
            crate::policy::Verdict::Suppress { reason } => {
                return json_response(
                    StatusCode::OK,
                    &json!({"decision": "suppress", "reason": reason, "zones": zones,
                        "rules": all_fired, "consent": consent_json(on_file)}),
                );
            }
            crate::policy::Verdict::Defer { until, .. } => {
                if !first {
                    all_fired.extend(
                        eval.fired
                            .into_iter()
                            .filter(|f| f.effect != crate::policy::Effect::Allow),
                    );
                }
                t = until;
                continue;
            }
            crate::policy::Verdict::Allow => {
                let caps = crate::policy::caps::keys(&eval.caps, to, r.debt_id.as_deref());
                let member = keys::member(tenant, "\u{0}evaluate");
                let free_at = match crate::policy::caps::check(
                    &mut conn,
                    &state.cap_script,
                    &caps,
                    &member,
                    t.as_millisecond(),
                    crate::policy::caps::Mode::Peek,
                )
                .await
                {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "frequency-cap check failed");
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "redis_unavailable",
                            "could not read the frequency caps",
                        );
                    }
                };
                if let Some(ms) = free_at {
                    for c in &caps {
                        all_fired.push(crate::policy::Fired {
                            rule: Arc::clone(&c.rule.id),
                            citation: Arc::clone(&c.rule.citation),
                            effect: crate::policy::Effect::Defer,
                            detail: format!(
                                "at most {} per {} h; room again at {}",
                                c.rule.limit,
                                c.rule.window_ms / 3_600_000,
                                jiff::Timestamp::from_millisecond(ms).unwrap_or(t)
                            )
                            .into(),
                        });
                    }
                    t = jiff::Timestamp::from_millisecond(ms).unwrap_or(t);
                    continue;
                }
                let body = if t == at {
                    json!({"decision": "allow", "zones": zones, "rules": all_fired,
                        "consent": consent_json(on_file)})
                } else {
                    json!({"decision": "defer", "until": t.to_string(), "zones": zones,
                        "rules": all_fired, "consent": consent_json(on_file)})
                };
                return json_response(StatusCode::OK, &body);
            }
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"decision": "defer", "until": t.to_string(), "rules": all_fired,
            "consent": consent_json(on_file)}),
    )
}

fn consent_json(st: crate::consent::replica::NumberState) -> Value {
    let mut m = serde_json::Map::new();
    for p in model::Category::ALL {
        let s = st.get(p);
        let mut v = json!({"state": crate::consent::ledger::state_name(s)});
        if let crate::consent::replica::PurposeState::Granted(k) = s {
            v["kind"] = Value::from(k.as_str());
        }
        m.insert(p.as_str().into(), v);
    }
    Value::Object(m)
}

/// `GET /v1/consent/{tenant}/{number}`: the replica's state and the stored
/// evidence of each purpose.
async fn get_consent(
    state: &HttpState,
    req: &Request<Incoming>,
    tenant: &str,
    number: &str,
) -> Response<Body> {
    if !authorized_for(state, req.headers(), tenant) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the tenant's API key or the admin token (control.token) is required",
        );
    }
    let n = match model::parse_e164(number) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_number", &e),
    };
    let mut conn = state.redis.clone();
    match crate::consent::ConsentLedger::detail(&mut conn, tenant, n).await {
        Ok(detail) => json_response(
            StatusCode::OK,
            &json!({"tenant": tenant, "number": model::E164::render(n).as_str(),
                "consent": consent_json(state.consent.lookup(tenant, n)),
                "evidence": Value::Object(detail.into_iter().collect())}),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "could not read the consent record",
        ),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn post_messages(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    let Some(tenant) = authenticate(&state.cfg, req.headers()).map(str::to_string) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a tenant API key is required (Authorization: Bearer <key>, http.api_keys)",
        );
    };
    let body = match Limited::new(req.into_body(), state.cfg.max_request_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body over http.max_request_bytes",
            );
        }
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, "invalid_json", &e.to_string());
        }
    };
    let items = match parsed {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "expected a JSON object or an array of objects",
            );
        }
    };
    if items.is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty", "no messages given");
    }
    // Validate everything first with the dispatch path's own decoder: a
    // request is queued whole or not at all, so a caller never has to work
    // out which half of a batch went in.
    let mut encoded = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, mut item) in items.into_iter().enumerate() {
        if let Value::Object(map) = &mut item {
            match map.get("tenant") {
                None => {
                    map.insert("tenant".into(), Value::String(tenant.clone()));
                }
                Some(Value::String(t)) if *t == tenant => {}
                Some(_) => {
                    errors.push(json!({"index": i, "reason": "forbidden_tenant",
                        "detail": format!("this API key may only queue for tenant `{tenant}`")}));
                    continue;
                }
            }
        }
        let bytes = match serde_json::to_vec(&item) {
            Ok(b) => b,
            Err(e) => {
                errors.push(json!({"index": i, "reason": "invalid_json", "detail": e.to_string()}));
                continue;
            }
        };
        match model::decode(&bytes, &state.limits) {
            Ok(m) => encoded.push((m.id, m.to, bytes)),
            Err(r) => errors.push(
                json!({"index": i, "id": r.id, "reason": r.reason.as_str(), "detail": r.detail}),
            ),
        }
    }
    if !errors.is_empty() {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"error": "invalid_messages", "queued": 0, "errors": errors}),
        );
    }
    let mut pipe = redis::pipe();
    for (_, to, bytes) in &encoded {
        let e164 = model::E164::render(*to);
        let p = keys::partition_for(e164.as_str(), state.partitions);
        pipe.cmd("XADD")
            .arg(keys::queue(p))
            .arg("*")
            .arg("msg")
            .arg(&bytes[..]);
    }
    let mut conn = state.redis.clone();
    match pipe.query_async::<Vec<String>>(&mut conn).await {
        Ok(entries) => {
            let ids: Vec<&str> = encoded.iter().map(|(id, _, _)| id.as_str()).collect();
            json_response(
                StatusCode::ACCEPTED,
                &json!({"queued": ids.len(), "tenant": tenant, "ids": ids, "entries": entries}),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "queueing over HTTP failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                "could not queue the messages; nothing was queued, retry",
            )
        }
    }
}

async fn get_message(
    state: &HttpState,
    req: &Request<Incoming>,
    tenant: &str,
    id: &str,
) -> Response<Body> {
    match authorized_for(state, req.headers(), tenant) {
        true => {}
        false => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the tenant's API key is required",
            );
        }
    }
    let mut conn = state.redis.clone();
    let mut pipe = redis::pipe();
    pipe.cmd("HGETALL").arg(keys::message(tenant, id));
    pipe.cmd("LRANGE")
        .arg(keys::trail(tenant, id))
        .arg(0)
        .arg(-1);
    type StateAndTrail = (Vec<(String, String)>, Vec<String>);
    let res: redis::RedisResult<StateAndTrail> = pipe.query_async(&mut conn).await;
    let (fields, trail) = match res {
        Ok(v) => v,
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                "could not read the message state",
            );
        }
    };
    if fields.is_empty() && trail.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such message (or its record expired)",
        );
    }
    let mut out = serde_json::Map::new();
    out.insert("tenant".into(), Value::String(tenant.into()));
    out.insert("id".into(), Value::String(id.into()));
    for (k, v) in fields {
        if k == "msg" || k == "part" {
            continue;
        }
        let value = match k.as_str() {
            "attempt" | "segments" | "ts" | "until" => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(v)),
            _ => Value::String(v),
        };
        out.insert(k, value);
    }
    let mut trail: Vec<Value> = trail
        .iter()
        .map(|t| serde_json::from_str(t).unwrap_or(Value::String(t.clone())))
        .collect();
    // The latest decision lives in the hash; the list holds the steps before
    // it (a first-try `sent` writes no list entry). Show it as the last step.
    let state = out.get("state").and_then(Value::as_str).unwrap_or("");
    let decided = !matches!(state, "" | "sending" | "holding" | "queued");
    let last = trail.last();
    let already_last = last.and_then(|t| t.get("status")).and_then(Value::as_str) == Some(state)
        && last.and_then(|t| t.get("ts")) == out.get("ts");
    if decided && !already_last {
        let mut step = serde_json::Map::new();
        for k in [
            "ts",
            "status",
            "reason",
            "provider",
            "provider_id",
            "attempt",
            "segments",
            "until",
        ] {
            let src = if k == "status" { "state" } else { k };
            if let Some(v) = out.get(src) {
                step.insert(k.into(), v.clone());
            }
        }
        trail.push(Value::Object(step));
    }
    out.insert("trail".into(), Value::Array(trail));
    json_response(StatusCode::OK, &Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode_segment("a%3Ab"), "a:b");
        assert_eq!(decode_segment("plain"), "plain");
        assert_eq!(decode_segment("bad%zz"), "bad%zz");
        assert_eq!(decode_segment("end%4"), "end%4");
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
