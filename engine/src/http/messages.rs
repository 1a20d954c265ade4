//! `POST /v1/messages` (queue one message or an array, same JSON as the
//! queue; `202` only once the entries are in Redis) and
//! `GET /v1/messages/{tenant}/{id}` (a message's record and trail).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{Body, HttpState, authenticate, authorized_for, error, json_response, read_body};
use crate::delivery::record;
use crate::ingest::decode::decode;
use crate::ingest::enqueue::enqueue;

/// `POST /v1/messages`: validate every item with the dispatch path's own
/// decoder, then queue all of them, or none.
pub(super) async fn post_messages(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    let Some(tenant) = authenticate(&state.cfg, req.headers()).map(str::to_string) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a tenant API key is required (Authorization: Bearer <key>, http.api_keys)",
        );
    };
    let limit = state.cfg.max_request_bytes;
    let body = match read_body(state, req, limit, "http.max_request_bytes").await {
        Ok(b) => b,
        Err(resp) => return resp,
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
    if items.len() > state.cfg.max_items {
        let max = state.cfg.max_items;
        return json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"error": "too_many_items",
                "message": format!("at most {max} messages per request (http.max_items); \
                    this one has {}; nothing was queued", items.len()),
                "max_items": max}),
        );
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
        match decode(&bytes, &state.limits) {
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
    let entries: Vec<(u64, &[u8])> = encoded.iter().map(|(_, to, b)| (*to, &b[..])).collect();
    let mut conn = state.redis.clone();
    match enqueue(&mut conn, state.partitions, &entries).await {
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

/// `GET /v1/messages/{tenant}/{id}`: the message's record and trail.
pub(super) async fn get_message(
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
    match record::read(&mut conn, tenant, id).await {
        Ok(Some(v)) => json_response(StatusCode::OK, &v),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such message (or its record expired)",
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "could not read the message state",
        ),
    }
}
