//! Sending the JSON request and classifying the webhook's answer.
//!
//! A generic endpoint has no documented error codes, so the status line is
//! the contract:
//! - 2xx → [`Accepted`], the id read from the body at `id_field`;
//! - 408, 429, 5xx, 1xx/3xx → [`SendError::Transient`] (`Retry-After`
//!   honoured): the endpoint did not take the message and may later;
//! - 401 / 403 → [`SendError::Permanent`] `Unauthorized`, other 4xx →
//!   `Permanent` `Other`;
//! - no answer after the request was written → [`SendError::Ambiguous`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::transport::{self, HttpClient};
use crate::{Accepted, PermanentKind, SendError};

/// A webhook's answer to one message is small; past this it is not one.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How much of an error body goes into the failure's message: enough for a
/// JSON error or a proxy's one-line page, not a whole HTML document.
const ERROR_SNIPPET_CHARS: usize = 200;

/// Send one prepared request and classify the outcome.
pub(super) async fn send(
    client: &HttpClient,
    request: impl FnOnce() -> http::Request<Full<Bytes>>,
    timeout: Duration,
    id_field: &str,
) -> Result<Accepted, SendError> {
    let answer =
        transport::exchange(client, request, timeout, "the webhook", MAX_RESPONSE_BYTES).await?;
    let status = answer.status.as_u16();
    if answer.status.is_success() {
        return Ok(accepted(answer.body.as_deref().ok(), id_field));
    }
    let retry_after = transport::retry_after(&answer.headers);
    Err(classify(status, answer.body.as_deref().ok(), retry_after))
}

/// A 2xx answer: the endpoint took the message.
///
/// The status line is the acceptance; the body only supplies the id. A body
/// that is unreadable, not JSON, or has nothing at `id_field` still means
/// Accepted — re-sending would text the person twice — with an empty
/// `provider_id`, so delivery receipts cannot be matched to it. An id that
/// is a JSON number is kept as its decimal text.
pub(super) fn accepted(body: Option<&[u8]>, id_field: &str) -> Accepted {
    let provider_id = body
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| match v.pointer(id_field) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_default();
    Accepted {
        provider_id,
        segments: None,
    }
}

/// Classify a non-2xx answer: the endpoint did not take the message, so the
/// only question is whether trying again can help. `code` is the HTTP status.
pub(super) fn classify(
    status: u16,
    body: Option<&[u8]>,
    retry_after: Option<Duration>,
) -> SendError {
    let message = match body.map(snippet).filter(|s| !s.is_empty()) {
        Some(text) => format!("{text} (HTTP {status})"),
        None => format!("{} (HTTP {status})", transport::status_text(status)),
    };
    let code = Some(u32::from(status));
    match status {
        // 408: the server gave up waiting for the request, so it did not
        // process it. 429: rate limited. 5xx: contract (docs/contracts.md#providers).
        408 | 429 | 500..=599 => SendError::Transient {
            code,
            message,
            retry_after,
        },
        401 | 403 => SendError::Permanent {
            kind: PermanentKind::Unauthorized,
            code,
            message,
        },
        400..=499 => SendError::Permanent {
            kind: PermanentKind::Other,
            code,
            message,
        },
        // 1xx/3xx (redirects are not followed) and anything out of range: not
        // an answer to the message, nothing was taken; a permanent failure
        // would drop a message another attempt or provider could send.
        _ => SendError::Transient {
            code,
            message,
            retry_after,
        },
    }
}

/// The start of an error body as one line of text. Error path only, and the
/// body is already capped at [`MAX_RESPONSE_BYTES`].
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(ERROR_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
