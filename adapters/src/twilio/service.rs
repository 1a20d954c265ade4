//! Sending the request over the pooled client and classifying the answer.
//!
//! Classification decides whether a person might get the same text twice, so
//! every branch says which of three things it knows:
//! - Twilio certainly did not take the message → [`SendError::Transient`]
//!   (retry / fail over) or [`SendError::Permanent`] (give up);
//! - Twilio took it → [`Accepted`];
//! - we cannot tell → [`SendError::Ambiguous`] (never re-sent silently).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use serde::Deserialize;

use crate::transport::{self, HttpClient};
use crate::{Accepted, PermanentKind, SendError};

/// Twilio answers a create in about 1 KiB; anything past this is not Twilio.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Send one prepared request and classify the outcome.
pub(super) async fn send(
    client: &HttpClient,
    request: impl FnOnce() -> http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Accepted, SendError> {
    let answer =
        transport::exchange(client, request, timeout, "Twilio", MAX_RESPONSE_BYTES).await?;
    let status = answer.status;

    if status.is_success() {
        // The status line says Twilio created the message; a body we cannot
        // read or parse does not undo that. Re-sending would most likely text
        // the person twice, and without a sid we cannot match receipts, so
        // this is Ambiguous rather than Accepted or Transient.
        return match answer.body {
            Ok(bytes) => parse_created(status, &bytes),
            Err(reason) => Err(SendError::Ambiguous {
                message: format!("Twilio answered {status} but {reason}"),
            }),
        };
    }

    let retry_after = transport::retry_after(&answer.headers);
    let body = answer.body.ok();
    let error = body.as_deref().and_then(parse_error);
    Err(classify(status.as_u16(), error.as_ref(), retry_after))
}

/// A 2xx body: Twilio's Message resource.
fn parse_created(status: StatusCode, bytes: &[u8]) -> Result<Accepted, SendError> {
    match serde_json::from_slice::<MessageCreated<'_>>(bytes) {
        Ok(m) if !m.sid.is_empty() => Ok(Accepted {
            provider_id: m.sid.into_owned(),
            segments: m.num_segments,
        }),
        Ok(_) => Err(SendError::Ambiguous {
            message: format!("Twilio answered {status} with an empty sid"),
        }),
        Err(e) => Err(SendError::Ambiguous {
            message: format!(
                "Twilio answered {status} with a body that is not a Message resource: {e}"
            ),
        }),
    }
}

/// The fields of Twilio's Message resource Herald needs.
#[derive(Deserialize)]
struct MessageCreated<'a> {
    #[serde(borrow)]
    sid: Cow<'a, str>,
    #[serde(default, deserialize_with = "segments")]
    num_segments: Option<u32>,
}

/// `num_segments` is a decimal string in Twilio's JSON ("1"). Accept a number
/// too. `"0"` means "not known yet" (sends through a messaging service report
/// 0 until a sender is picked), so it maps to `None`, not `Some(0)`.
fn segments<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a segment count as a string or a number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.trim().parse::<u32>().ok().filter(|n| *n > 0))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(u32::try_from(v).ok().filter(|n| *n > 0))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(u32::try_from(v).ok().filter(|n| *n > 0))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Twilio's error body: `{"code": 21211, "message": "…", "more_info": "…", "status": 400}`.
#[derive(Debug, Deserialize)]
pub(super) struct TwilioError<'a> {
    #[serde(default)]
    pub code: Option<u32>,
    #[serde(default, borrow)]
    pub message: Option<Cow<'a, str>>,
}

fn parse_error(bytes: &[u8]) -> Option<TwilioError<'_>> {
    serde_json::from_slice(bytes).ok()
}

/// Classify a non-2xx answer. Every non-2xx answer means Twilio did not create
/// the message, so the only question is whether trying again can help.
pub(super) fn classify(
    status: u16,
    error: Option<&TwilioError<'_>>,
    retry_after: Option<Duration>,
) -> SendError {
    let code = error.and_then(|e| e.code);
    let message = || {
        let mut m = match error.and_then(|e| e.message.as_deref()) {
            Some(text) => text.to_owned(),
            None => transport::status_text(status).to_owned(),
        };
        let _ = write!(m, " (HTTP {status})");
        m
    };
    let code_or_status = Some(code.unwrap_or(u32::from(status)));
    let transient = |retry_after| SendError::Transient {
        code: code_or_status,
        message: message(),
        retry_after,
    };
    let permanent = |kind| SendError::Permanent {
        kind,
        code: code_or_status,
        message: message(),
    };

    // Twilio 20429 / HTTP 429: "requests that receive 429 responses aren't
    // processed and are safe to retry" (twilio.com/docs/api/errors/20429).
    if status == 429 || code == Some(20429) {
        return transient(retry_after);
    }
    // Contract (docs/contracts.md#providers): 5xx is transient.
    if status >= 500 {
        return transient(retry_after);
    }
    match code {
        // "Attempt to send to unsubscribed recipient": the carrier / Twilio
        // holds a STOP for this From/To pair; the ledger must record it.
        Some(21610) => return permanent(PermanentKind::CarrierOptOut),
        // 21211 invalid 'To' number; 21614 'To' is not a mobile number.
        Some(21211 | 21614) => return permanent(PermanentKind::InvalidNumber),
        // 21612 ("not currently reachable via SMS" / the To–From combination
        // cannot be routed) is deliberately *not* InvalidNumber: it is about
        // the pair and the sender's capabilities, so marking the number
        // invalid would be wrong. It falls through to Other below.
        Some(20003) => return permanent(PermanentKind::Unauthorized),
        // 21611: the From number's queue is full; Twilio did not queue this
        // one and will take it once the queue drains.
        Some(21611) => return transient(retry_after),
        _ => {}
    }
    match status {
        401 | 403 => permanent(PermanentKind::Unauthorized),
        400..=499 => permanent(PermanentKind::Other),
        // 1xx/3xx: not an answer from the Messages API (a redirecting proxy, a
        // wrong base_url). Nothing was created; retrying / failing over loses
        // nothing, while a permanent failure would drop the message.
        _ => transient(retry_after),
    }
}

#[cfg(test)]
pub(super) fn classify_for_test(
    status: u16,
    body: &str,
    retry_after_header: Option<&str>,
) -> SendError {
    let mut headers = http::HeaderMap::new();
    if let Some(v) = retry_after_header {
        headers.insert(http::header::RETRY_AFTER, v.parse().unwrap());
    }
    classify(
        status,
        parse_error(body.as_bytes()).as_ref(),
        transport::retry_after(&headers),
    )
}

#[cfg(test)]
pub(super) fn parse_created_for_test(body: &str) -> Result<Accepted, SendError> {
    parse_created(StatusCode::CREATED, body.as_bytes())
}
