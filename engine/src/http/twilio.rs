//! Twilio's webhooks: `POST /v1/webhooks/twilio/inbound` (replies) and
//! `POST /v1/webhooks/twilio/status` (delivery receipts). Each request's
//! `X-Twilio-Signature` is verified against `http.public_url` + the path and
//! the auth token of the account named by `AccountSid`
//! (docs/contracts.md#http-and-grpc); a bad or missing signature gets 403
//! and changes nothing.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{Body, HttpState, error, read_body};
use crate::delivery::receipts::{self, Receipt};
use crate::inbound::{form, reply, signature};
use crate::model;

const PATH: &str = "/v1/webhooks/twilio/inbound";

/// Read a Twilio webhook's form parameters and verify its
/// `X-Twilio-Signature` against `http.public_url` + `path` (+ the query
/// string Twilio called) and the auth token of the account named by
/// `AccountSid`. `Err` is the 403 (or 408 / 413) to answer.
///
/// A request that cannot pass (no signature header, or no twilio provider
/// to verify it with) is refused before its body is read; the body, up to
/// `http.max_webhook_bytes`, is read only to check a signature it carries.
async fn verified_twilio_params(
    state: &HttpState,
    req: Request<Incoming>,
    path: &str,
) -> Result<Vec<(String, String)>, Response<Body>> {
    let query = req.uri().query().map(str::to_string);
    let sig = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(sig) = sig else {
        tracing::warn!(path, "webhook without an X-Twilio-Signature refused");
        return Err(error(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "X-Twilio-Signature is missing",
        ));
    };
    if state.twilio.is_empty() {
        tracing::warn!(path, "webhook refused: no twilio provider to verify it");
        return Err(bad_signature());
    }
    let limit = state.cfg.max_webhook_bytes;
    let body = read_body(state, req, limit, "http.max_webhook_bytes").await?;
    let params = form::form_params(&body);
    // Twilio signs the exact URL it called, query string included.
    let mut url = format!("{}{path}", state.cfg.public_url.trim_end_matches('/'));
    if let Some(q) = &query {
        url.push('?');
        url.push_str(q);
    }
    let account = params
        .iter()
        .find(|(k, _)| k == "AccountSid")
        .map(|(_, v)| v.as_str());
    let verified = state
        .twilio
        .iter()
        .filter(|(sid, _)| account.is_none_or(|a| a == sid) || state.twilio.len() == 1)
        .any(|(_, token)| signature::verify_twilio(token, &url, &params, Some(&sig)));
    if verified {
        Ok(params)
    } else {
        tracing::warn!(path, "webhook with a bad X-Twilio-Signature refused");
        Err(bad_signature())
    }
}

fn bad_signature() -> Response<Body> {
    error(
        StatusCode::FORBIDDEN,
        "bad_signature",
        "X-Twilio-Signature does not match",
    )
}

/// `POST /v1/webhooks/twilio/inbound`: a reply from a recipient, answered
/// with TwiML.
pub(super) async fn twilio_inbound(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    let params = match verified_twilio_params(state, req, PATH).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(from), Some(to)) = (param("From"), param("To")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_field",
            "`From` and `To` are required",
        );
    };
    let Ok(number) = model::parse_e164(from) else {
        // A short code or alphanumeric sender cannot be in the ledger.
        return twiml(None);
    };
    let inbound = reply::Inbound {
        from: number,
        to,
        text: param("Body").unwrap_or(""),
        provider_id: param("MessageSid").or(param("SmsSid")).unwrap_or(""),
    };
    let mut conn = state.redis.clone();
    let policy = state.policy.load_full();
    match reply::handle(&policy, &state.consent, &mut conn, &inbound).await {
        Ok(answer) => twiml(answer),
        // Never answer 200 for a STOP that was not recorded: a 5xx makes
        // Twilio use the number's fallback URL (and shows in its debugger).
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "the reply could not be recorded; retry",
        ),
    }
}

/// A TwiML answer: one `<Message>`, or none.
fn twiml(message: Option<&str>) -> Response<Body> {
    let body = match message {
        Some(m) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
            xml_escape(m)
        ),
        None => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>".to_string(),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/xml"),
    );
    r
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

const STATUS_PATH: &str = "/v1/webhooks/twilio/status";

/// `POST /v1/webhooks/twilio/status`: Twilio's status callback →
/// `delivered` / `undelivered` (Twilio's `failed` too, with its
/// `ErrorCode` as the reason), matched by `MessageSid`. Repeated and
/// out-of-order callbacks change nothing after the first receipt; a
/// callback that beats the `sent` record is kept and applied when it lands.
pub(super) async fn twilio_status(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    let params = match verified_twilio_params(state, req, STATUS_PATH).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(sid), Some(status)) = (
        param("MessageSid").or(param("SmsSid")),
        param("MessageStatus").or(param("SmsStatus")),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_field",
            "`MessageSid` and `MessageStatus` are required",
        );
    };
    let Some(receipt) = receipts::twilio_status(status) else {
        crate::telemetry::receipt("ignored");
        return empty_ok();
    };
    let reason = match (receipt, param("ErrorCode")) {
        (Receipt::Undelivered, Some(code)) if !code.is_empty() => code.to_string(),
        (Receipt::Undelivered, _) => status.to_string(),
        _ => String::new(),
    };
    // Receipts are matched by kind and message id (a MessageSid is unique
    // across accounts): whichever twilio provider sent it.
    let provider = "twilio";
    let mut conn = state.redis.clone();
    match state
        .receipts
        .apply(
            &mut conn,
            provider,
            sid,
            receipt,
            &reason,
            crate::clock::now_ms(),
        )
        .await
    {
        Ok(r) => {
            crate::telemetry::receipt(match r.as_str() {
                "applied" => receipt.as_str(),
                "duplicate" => "duplicate",
                _ => "orphan",
            });
            empty_ok()
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a delivery receipt failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                "the receipt could not be recorded; retry",
            )
        }
    }
}

fn empty_ok() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_twiml() {
        assert_eq!(xml_escape("a<b & 'c'"), "a&lt;b &amp; &apos;c&apos;");
    }
}
