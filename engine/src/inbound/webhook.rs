//! `POST /v1/webhooks/twilio/inbound`: a reply from a recipient.
//!
//! 1. Verify `X-Twilio-Signature` against `http.public_url` + the path and
//!    the auth token of the account named by `AccountSid` (DESIGN §5); a bad
//!    or missing signature gets 403 and changes nothing.
//! 2. Classify the text (`keywords::classify`).
//! 3. Opt-out / opt-in / ambiguous: change the ledger, with the inbound
//!    message as evidence (one atomic script call; every instance's replica
//!    follows within milliseconds through the audit feed).
//! 4. Answer with TwiML: one confirmation when the state changed (47 CFR
//!    64.1200(a)(12): one, non-marketing; Reg F 1006.14(h): it only
//!    confirms), or the HELP text. Other and ambiguous replies go to
//!    `herald:inbound` for upstream two-way conversations and review.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::keywords::{self, Reply};
use super::signature;
use crate::consent::ConsentKind;
use crate::consent::ledger::{Change, Only};
use crate::consent::replica::PurposeState;
use crate::http::{Body, HttpState, error, read_body};
use crate::model::{self, Category};

const PATH: &str = "/v1/webhooks/twilio/inbound";
const INBOUND_MAX_LEN: u64 = 1_000_000;

/// Read a Twilio webhook's form parameters and verify its
/// `X-Twilio-Signature` against `http.public_url` + `path` (+ the query
/// string Twilio called) and the auth token of the account named by
/// `AccountSid`. `Err` is the 403 (or 413) to answer.
pub async fn verified_twilio_params(
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
    let body = read_body(state, req).await?;
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
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
        .any(|(_, token)| signature::verify_twilio(token, &url, &params, sig.as_deref()));
    if verified {
        Ok(params)
    } else {
        tracing::warn!(
            path,
            "webhook with a bad or missing X-Twilio-Signature refused"
        );
        Err(error(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "X-Twilio-Signature does not match",
        ))
    }
}

pub async fn twilio_inbound(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
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
    let tenant = model::parse_e164(to)
        .ok()
        .and_then(|n| state.policy.tenant_of_sender(n))
        .unwrap_or(model::DEFAULT_TENANT)
        .to_string();
    let text = param("Body").unwrap_or("");
    let sid = param("MessageSid").or(param("SmsSid")).unwrap_or("");
    let tp = state.policy.tenant(&tenant);
    let classified = keywords::classify(text);
    let evidence = serde_json::json!({
        "message_sid": sid, "body": text, "to": to,
        "keyword": classified.keyword,
    })
    .to_string();
    let now = crate::clock::now_ms();
    let by = model::E164::render(number);

    let (kind, purposes, new_state, only, reply): (_, &[Category], _, _, Option<&str>) =
        match classified.reply {
            // 47 CFR 64.1200(a)(10): a revocation per se; it covers every
            // purpose unless the tenant's policy says otherwise (Reg F
            // 1006.14(h): an opt-out covers all debts). STOP ALL always does.
            Reply::OptOut { all } => (
                "opt_out",
                if all || tp.revoke_all_purposes {
                    &Category::ALL
                } else {
                    &[Category::Marketing]
                },
                PurposeState::Revoked,
                Only::Any,
                Some(tp.opt_out_confirmation.as_str()),
            ),
            // START / UNSTOP / YES restore what a STOP took: express consent,
            // never written consent for marketing.
            Reply::OptIn => (
                "opt_in",
                &Category::ALL,
                PurposeState::Granted(ConsentKind::Express),
                Only::RevokedOrReview,
                Some(tp.opt_in_confirmation.as_str()),
            ),
            // An unclear reply is judged by a person; sends hold meanwhile.
            Reply::Ambiguous => (
                "ambiguous",
                &Category::ALL,
                PurposeState::Review,
                Only::NotRevoked,
                None,
            ),
            Reply::Help => {
                crate::telemetry::inbound("help");
                return twiml(Some(&tp.help_text));
            }
            Reply::Other => {
                crate::telemetry::inbound("other");
                return match forward(state, &tenant, by.as_str(), to, text, sid, "other", now).await
                {
                    Ok(()) => twiml(None),
                    Err(resp) => resp,
                };
            }
        };
    crate::telemetry::inbound(kind);
    let change = Change {
        tenant: &tenant,
        number,
        purposes,
        state: new_state,
        only,
        source: "inbound",
        by: by.as_str(),
        evidence: &evidence,
        at_ms: now,
    };
    let mut conn = state.redis.clone();
    let recorded = match state.consent.record(&mut conn, &change).await {
        Ok(r) => r,
        Err(e) => {
            // Never answer 200 for a STOP that was not recorded: a 5xx makes
            // Twilio use the number's fallback URL (and shows in its
            // debugger), and the error is logged here.
            tracing::error!(error = %e, "recording an inbound consent change failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                "the reply could not be recorded; retry",
            );
        }
    };
    tracing::info!(%tenant, kind, changed = recorded.changed.len(), "inbound reply recorded");
    if matches!(classified.reply, Reply::Ambiguous)
        && let Err(resp) =
            forward(state, &tenant, by.as_str(), to, text, sid, "ambiguous", now).await
    {
        return resp;
    }
    // One confirmation, and only for a change: a second STOP gets none.
    twiml(reply.filter(|_| !recorded.changed.is_empty()))
}

/// Put a reply on `herald:inbound` for upstream systems.
#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &HttpState,
    tenant: &str,
    from: &str,
    to: &str,
    text: &str,
    sid: &str,
    kind: &str,
    now: i64,
) -> Result<(), Response<Body>> {
    let mut conn = state.redis.clone();
    redis::cmd("XADD")
        .arg(crate::keys::INBOUND)
        .arg("MAXLEN")
        .arg("~")
        .arg(INBOUND_MAX_LEN)
        .arg("*")
        .arg("tenant")
        .arg(tenant)
        .arg("from")
        .arg(from)
        .arg("to")
        .arg(to)
        .arg("body")
        .arg(text)
        .arg("provider_id")
        .arg(sid)
        .arg("kind")
        .arg(kind)
        .arg("ts")
        .arg(now)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "forwarding an inbound reply failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                "the reply could not be recorded; retry",
            )
        })
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
pub async fn twilio_status(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
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
    let Some(receipt) = crate::delivery::twilio_status(status) else {
        crate::telemetry::receipt("ignored");
        return empty_ok();
    };
    let reason = match (receipt, param("ErrorCode")) {
        (crate::delivery::Receipt::Undelivered, Some(code)) if !code.is_empty() => code.to_string(),
        (crate::delivery::Receipt::Undelivered, _) => status.to_string(),
        _ => String::new(),
    };
    // The provider's name: the twilio provider of this account.
    let account = param("AccountSid").unwrap_or("");
    let provider = state
        .twilio_names
        .iter()
        .find(|(sid, _)| sid == account)
        .or(state.twilio_names.first())
        .map(|(_, name)| name.as_str())
        .unwrap_or("twilio");
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
