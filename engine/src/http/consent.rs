//! `GET /v1/consent/{tenant}/{number}`: a number's consent per purpose,
//! with its evidence.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{Body, HttpState, authorized_for, error, json_response};
use crate::model;

pub(super) fn consent_json(st: crate::consent::replica::NumberState) -> Value {
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
pub(super) async fn get_consent(
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
