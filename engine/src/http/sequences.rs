//! `POST /v1/sequences/{tenant}/{id}/cancel` (the loan was paid: every step
//! not yet sent becomes `cancelled`) and `GET /v1/sequences/{tenant}/{id}`
//! (the sequence and each step's state). Bearer: the tenant's API key or
//! the admin token.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{Body, HttpState, authorized_for, error, json_response, read_body};
use crate::model::Reason;
use crate::sequences::{self, Cancelled};

/// The largest cancel body read (`{"detail": "paid by ACH"}`).
const MAX_CANCEL_BODY: usize = 4096;

pub(super) async fn cancel(
    state: &HttpState,
    req: Request<Incoming>,
    tenant: &str,
    id: &str,
) -> Response<Body> {
    if !authorized_for(state, req.headers(), tenant) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the tenant's API key is required",
        );
    }
    if id.contains('/') {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "a sequence is named by its enrolment id, which has no `/`",
        );
    }
    let body = match read_body(state, req, MAX_CANCEL_BODY, "a cancel's body").await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let detail = if body.iter().all(u8::is_ascii_whitespace) {
        "cancelled over HTTP".to_string()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => match o.get("detail") {
                None => "cancelled over HTTP".to_string(),
                Some(Value::String(s)) => s.chars().take(200).collect(),
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_field",
                        "`detail` must be a string",
                    );
                }
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    "the body, when given, is a JSON object such as {\"detail\": \"paid\"}",
                );
            }
        }
    };
    let mut conn = state.redis.clone();
    match sequences::cancel(&mut conn, tenant, id, Reason::SequenceCancelled, &detail).await {
        Ok(c) => {
            let released = match c {
                Cancelled::Cancelled { released } => released,
                _ => 0,
            };
            json_response(
                StatusCode::OK,
                &json!({
                    "tenant": tenant,
                    "id": id,
                    "result": c.as_str(),
                    "steps_released": released,
                    "message": match c {
                        Cancelled::Cancelled { .. } => "every step not yet sent becomes cancelled",
                        Cancelled::AlreadyEnded => "the sequence had ended already",
                        Cancelled::NotEnrolled => "no such sequence yet: an enrolment with this id will be cancelled",
                    },
                }),
            )
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "the cancel was not recorded: retry",
        ),
    }
}

/// `POST /v1/sequences/{tenant}/{id}/anchor` with `{"anchor":
/// "YYYY-MM-DD"}`: the due date moved; every step still waiting gets its
/// new instant (and a new `deferred` event).
pub(super) async fn reanchor(
    state: &HttpState,
    req: Request<Incoming>,
    tenant: &str,
    id: &str,
) -> Response<Body> {
    if !authorized_for(state, req.headers(), tenant) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the tenant's API key is required",
        );
    }
    let body = match read_body(state, req, MAX_CANCEL_BODY, "a re-anchor's body").await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let anchor = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => match v
            .get("anchor")
            .and_then(Value::as_str)
            .map(str::parse::<jiff::civil::Date>)
        {
            Some(Ok(d)) => d,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    "the body is {\"anchor\": \"YYYY-MM-DD\"}",
                );
            }
        },
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_json", &e.to_string()),
    };
    let mut conn = state.redis.clone();
    match sequences::reanchor(
        &mut conn,
        tenant,
        id,
        anchor,
        &state.limits,
        state.record_ttl_ms,
        state.events_max_len,
    )
    .await
    {
        Ok(sequences::Reanchored::Moved { steps }) => json_response(
            StatusCode::OK,
            &json!({"tenant": tenant, "id": id, "anchor": anchor.to_string(),
                "result": "moved", "steps_moved": steps}),
        ),
        Ok(sequences::Reanchored::NotActive) => error(
            StatusCode::CONFLICT,
            "not_active",
            "no active sequence with this id (cancelled, ended or never enrolled)",
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "the re-anchor was not recorded: retry",
        ),
    }
}

pub(super) async fn get(
    state: &HttpState,
    req: &Request<Incoming>,
    tenant: &str,
    id: &str,
) -> Response<Body> {
    if !authorized_for(state, req.headers(), tenant) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the tenant's API key is required",
        );
    }
    let mut conn = state.redis.clone();
    match sequences::read(&mut conn, tenant, id).await {
        Ok(Some(v)) => json_response(StatusCode::OK, &v),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such sequence (or its record expired)",
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "could not read the sequence",
        ),
    }
}
