//! `POST /v1/policy/evaluate`: what the policy decides for a number,
//! category and instant — the dispatch path's own code.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::consent::consent_json;
use super::{Body, HttpState, authenticated, authorized_for, error, json_response, read_body};
use crate::ingest::decode::validate_recipient;
use crate::keys;
use crate::model;

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
pub(super) async fn evaluate_policy(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    // The body names the tenant, but a request carrying neither a tenant's
    // API key nor the admin token is refused before its body is read; once
    // read, the key must be the named tenant's.
    if !authenticated(state, req.headers()) {
        return unauthorized();
    }
    let headers = req.headers().clone();
    let limit = state.cfg.max_request_bytes;
    let body = match read_body(state, req, limit, "http.max_request_bytes").await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let r: EvaluateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    let tenant = r.tenant.as_deref().unwrap_or(model::DEFAULT_TENANT);
    if !authorized_for(state, &headers, tenant) {
        return unauthorized();
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
    if let Err(e) = validate_recipient(tz, st) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", &e);
    }
    let category = r.category.unwrap_or(model::Category::Transactional);
    let on_file = state.consent.lookup(tenant, to);
    let mut conn = state.redis.clone();
    // One version for the whole answer, named in it.
    let pol = state.policy.load_full();
    let version = pol.version;
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
        let eval = pol.evaluate(&input, on_file);
        let zones: Vec<&str> = eval.zones.iter().map(|z| z.name()).collect();
        let first = all_fired.is_empty();
        if first {
            all_fired = eval.fired.clone();
        }
        match eval.verdict {
            crate::policy::Verdict::Suppress { reason } => {
                return json_response(
                    StatusCode::OK,
                    &json!({"decision": "suppress", "reason": reason.as_str(), "zones": zones,
                        "rules": all_fired, "consent": consent_json(on_file), "policy_version": version}),
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
                    all_fired.extend(crate::policy::caps::full_until(&caps, ms));
                    t = jiff::Timestamp::from_millisecond(ms).unwrap_or(t);
                    continue;
                }
                let body = if t == at {
                    json!({"decision": "allow", "zones": zones, "rules": all_fired,
                        "consent": consent_json(on_file), "policy_version": version})
                } else {
                    json!({"decision": "defer", "until": t.to_string(), "zones": zones,
                        "rules": all_fired, "consent": consent_json(on_file), "policy_version": version})
                };
                return json_response(StatusCode::OK, &body);
            }
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"decision": "defer", "until": t.to_string(), "rules": all_fired,
            "consent": consent_json(on_file), "policy_version": version}),
    )
}

fn unauthorized() -> Response<Body> {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the tenant's API key or the admin token (control.token) is required",
    )
}
