//! Herald's HTTP listener (docs/contracts.md#http-and-grpc): metrics,
//! health, and one file per surface. `listener` owns the connections: the
//! cap on how many are open and the header and idle timeouts; every body is
//! read through `read_body`, after the request is authorised, within a
//! size and a time limit.
//!
//! - `GET /metrics` — Prometheus text, rendered from the global recorder.
//! - `GET /healthz` — the process is up.
//! - `GET /readyz` — Redis answers and is durable, the consent ledger is
//!   intact, every dispatch task runs, and the instance is not shutting
//!   down; otherwise 503 with the reasons.
//! - `POST /v1/messages` — one message or an array, same JSON as the queue;
//!   bearer API key per tenant; `202` only after the entries are in Redis.
//! - `GET /v1/messages/{tenant}/{id}` — current state and decision trail.
//! - `POST /v1/policy/evaluate` — what the policy decides for a number,
//!   category and instant (the dispatch path's own code).
//! - `POST /v1/webhooks/twilio/inbound` — replies (STOP / START / HELP…),
//!   signature-verified, answered with TwiML.
//! - `POST /v1/webhooks/twilio/status` — delivery receipts.
//! - `GET /v1/consent/{tenant}/{number}` — a number's consent and evidence.
//! - `POST /v1/sequences/{tenant}/{id}/cancel` — end a sequence (paid);
//!   `POST /v1/sequences/{tenant}/{id}/anchor` — move it to a new due date;
//!   `GET /v1/sequences/{tenant}/{id}` — it and its steps.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub mod config;
mod consent;
mod listener;
mod messages;
mod policy;
mod sequences;
mod twilio;

use self::config::HttpConfig;
use crate::conn::Conn;
use crate::ingest::decode::Limits;

/// Shared by every request.
pub struct HttpState {
    pub cfg: HttpConfig,
    pub partitions: u16,
    pub limits: Limits,
    /// `events.max_len`: events written outside the outcome writer (a
    /// re-anchor's announcements) keep the same cap.
    pub events_max_len: u64,
    /// `dispatch.idempotency_ttl` in ms: how long records are kept.
    pub record_ttl_ms: u64,
    pub metrics: Option<PrometheusHandle>,
    pub redis: Conn,
    /// Redis up and durable, the ledger intact, every task alive.
    pub health: Arc<crate::health::Health>,
    /// Cancelled when shutdown begins: readiness turns false.
    pub shutdown: CancellationToken,
    pub policy: Arc<crate::policy::live::LivePolicy>,
    pub consent: Arc<crate::consent::ConsentLedger>,
    pub cap_script: redis::Script,
    /// `control.token`: an admin may use every tenant's endpoints.
    pub admin_token: crate::secret::Secret,
    /// (account_sid, auth_token) of each twilio provider, for signatures.
    pub twilio: Vec<(String, String)>,
    pub receipts: Arc<crate::delivery::receipts::Receipts>,
}

pub type Body = Full<Bytes>;

pub use self::listener::serve;

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
            } else {
                match state.health.ready() {
                    Ok(()) => text(StatusCode::OK, "text/plain", "ready\n".into()),
                    Err(why) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        format!("{why}\n"),
                    ),
                }
            }
        }
        (&Method::POST, ["v1", "messages"]) => messages::post_messages(state, req).await,
        (&Method::GET, ["v1", "messages", tenant, id]) => {
            let (tenant, id) = (decode_segment(tenant), decode_segment(id));
            messages::get_message(state, &req, &tenant, &id).await
        }
        (&Method::GET, ["v1", "messages", tenant, id, step]) => {
            // A sequence step's id is `<id>/<step>`.
            let id = format!("{}/{}", decode_segment(id), decode_segment(step));
            messages::get_message(state, &req, &decode_segment(tenant), &id).await
        }
        (&Method::POST, ["v1", "sequences", tenant, id, "cancel"]) => {
            let (tenant, id) = (decode_segment(tenant), decode_segment(id));
            sequences::cancel(state, req, &tenant, &id).await
        }
        (&Method::POST, ["v1", "sequences", tenant, id, "anchor"]) => {
            let (tenant, id) = (decode_segment(tenant), decode_segment(id));
            sequences::reanchor(state, req, &tenant, &id).await
        }
        (&Method::GET, ["v1", "sequences", tenant, id]) => {
            let (tenant, id) = (decode_segment(tenant), decode_segment(id));
            sequences::get(state, &req, &tenant, &id).await
        }
        (&Method::POST, ["v1", "policy", "evaluate"]) => policy::evaluate_policy(state, req).await,
        (&Method::POST, ["v1", "webhooks", "twilio", "inbound"]) => {
            twilio::twilio_inbound(state, req).await
        }
        (&Method::POST, ["v1", "webhooks", "twilio", "status"]) => {
            twilio::twilio_status(state, req).await
        }
        (&Method::GET, ["v1", "consent", tenant, number]) => {
            let (tenant, number) = (decode_segment(tenant), decode_segment(number));
            consent::get_consent(state, &req, &tenant, &number).await
        }
        (_, ["metrics" | "healthz" | "readyz"])
        | (
            _,
            [
                "v1",
                "messages" | "policy" | "webhooks" | "consent" | "sequences",
                ..,
            ],
        ) => error(
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

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
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

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(status, &json!({"error": code, "message": message}))
}

/// The tenant whose API key the request carries, compared in constant time.
fn authenticate<'a>(cfg: &'a HttpConfig, headers: &http::HeaderMap) -> Option<&'a str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ")?.trim().as_bytes();
    let mut found = None;
    for (tenant, key) in &cfg.api_keys {
        if constant_time_eq(key.expose().as_bytes(), token) {
            found = Some(tenant.as_str());
        }
    }
    found
}

/// May the request act for `tenant`: its API key, or the admin token.
fn authorized_for(state: &HttpState, headers: &http::HeaderMap, tenant: &str) -> bool {
    authenticate(&state.cfg, headers) == Some(tenant) || is_admin(state, headers)
}

/// Does the request carry a tenant's API key or the admin token: checked
/// before reading a body that names the tenant.
fn authenticated(state: &HttpState, headers: &http::HeaderMap) -> bool {
    authenticate(&state.cfg, headers).is_some() || is_admin(state, headers)
}

/// The admin token (`control.token`), compared in constant time; never
/// when it is empty.
fn is_admin(state: &HttpState, headers: &http::HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    !state.admin_token.is_empty()
        && token
            .is_some_and(|t| constant_time_eq(t.as_bytes(), state.admin_token.expose().as_bytes()))
}

/// Read a request body of at most `limit` bytes (`key` is the setting that
/// holds it) within `http.body_timeout_ms`. A `Content-Length` over the
/// limit is refused before a byte is read; a longer chunked body is cut off
/// at the limit.
async fn read_body(
    state: &HttpState,
    req: Request<Incoming>,
    limit: usize,
    key: &str,
) -> Result<Bytes, Response<Body>> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("request body over {key}"),
        )
    };
    if req.body().size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let http1 = req.version() < http::Version::HTTP_2;
    let collect = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(state.cfg.body_timeout, collect).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => {
            crate::telemetry::http_timeout("body");
            let mut r = error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive within http.body_timeout_ms",
            );
            // The rest of the body may still come: an HTTP/1 connection
            // cannot carry another request.
            if http1 {
                r.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            Err(r)
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
