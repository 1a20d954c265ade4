//! Twilio status callbacks: after accepting a message with a `StatusCallback`
//! URL, the mock POSTs its status changes there, form-encoded and signed as
//! Twilio signs them (twilio.com/docs/messaging/guides/track-outbound-message-status,
//! twilio.com/docs/usage/webhooks/webhooks-security).
//!
//! Plain `http://` only: the mock has no TLS client, and the URLs it calls
//! back are Herald's on the same host. Other URLs count as failed callbacks.
//! Twilio does not retry a failed status callback, and neither does the mock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha1::Sha1;
use tokio::sync::Semaphore;

use super::rules::{MessageStatus, Receipt};
use super::service::{Decrement, Shared};
use super::wire::Sid;

/// Twilio waits this long for a webhook answer before giving up.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(15);
/// Concurrent callback POSTs. At load (50k messages/s, two callbacks each)
/// the receiver, not the mock, must be the bottleneck being measured, yet a
/// stalled receiver must not make the mock open unbounded connections.
const MAX_CONCURRENT_POSTS: usize = 1024;
/// A webhook answer is a few bytes; a larger one is drained no further.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The callback sender shared by all messages of one mock.
pub(super) struct StatusCallbacks {
    /// Pooled keep-alive connections to the callback receivers.
    client: Client<HttpConnector, Full<Bytes>>,
    permits: Semaphore,
    /// The first failure is a warning, later ones are debug lines: at load a
    /// misconfigured receiver would otherwise flood the log.
    warned: AtomicBool,
}

impl StatusCallbacks {
    pub(super) fn new() -> Self {
        StatusCallbacks {
            client: Client::builder(TokioExecutor::new()).build_http(),
            permits: Semaphore::new(MAX_CONCURRENT_POSTS),
            warned: AtomicBool::new(false),
        }
    }
}

/// The accepted message the callbacks are about.
pub(super) struct CallbackMessage {
    /// The `StatusCallback` URL exactly as given: it is both where the mock
    /// POSTs and what it signs.
    pub(super) url: String,
    pub(super) sid: Sid,
    pub(super) to: String,
    pub(super) from: Option<String>,
    pub(super) messaging_service_sid: Option<String>,
}

/// Why one callback POST did not get a `2xx`.
#[derive(Debug, thiserror::Error)]
enum CallbackError {
    #[error("invalid StatusCallback URL: {0}")]
    Url(#[from] http::Error),
    #[error("cannot sign: {0}")]
    Signing(#[from] hmac::digest::InvalidLength),
    #[error("request failed: {0}")]
    Transport(#[from] hyper_util::client::legacy::Error),
    #[error("no answer within {CALLBACK_TIMEOUT:?}")]
    Timeout,
    #[error("answered {0}")]
    Status(StatusCode),
}

/// Schedule `receipt`'s callbacks for `message` on their own task; they stop
/// when the mock shuts down.
pub(super) fn spawn(shared: &Arc<Shared>, message: CallbackMessage, receipt: Receipt) {
    shared.counters.receipts.fetch_add(1, Relaxed);
    if receipt.final_status != MessageStatus::Delivered {
        shared.counters.receipts_undelivered.fetch_add(1, Relaxed);
    }
    if receipt.duplicate {
        shared.counters.receipts_duplicated.fetch_add(1, Relaxed);
    }
    if receipt.is_reordered() {
        shared.counters.receipts_reordered.fetch_add(1, Relaxed);
    }
    shared.counters.callbacks_pending.fetch_add(1, Relaxed);
    let shared = shared.clone();
    let mut shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        let _pending = Decrement(&shared.counters.callbacks_pending);
        tokio::select! {
            // A send or the sender's drop both mean stop.
            _ = shutdown.changed() => {}
            () = deliver(&shared, &message, receipt) => {}
        }
    });
}

async fn deliver(shared: &Shared, message: &CallbackMessage, receipt: Receipt) {
    let Some(callbacks) = &shared.callbacks else {
        return;
    };
    let copies = if receipt.duplicate { 2 } else { 1 };
    for status in receipt.sequence() {
        tokio::time::sleep(shared.settings.callback_delay).await;
        for _ in 0..copies {
            match post(shared, callbacks, message, status).await {
                Ok(()) => {
                    shared.counters.callbacks_sent.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    shared.counters.callbacks_failed.fetch_add(1, Relaxed);
                    if callbacks.warned.swap(true, Relaxed) {
                        tracing::debug!(url = %message.url, error = %e, "mock provider: status callback failed");
                    } else {
                        tracing::warn!(url = %message.url, error = %e, "mock provider: status callback failed (further failures are logged at debug level)");
                    }
                }
            }
        }
    }
}

async fn post(
    shared: &Shared,
    callbacks: &StatusCallbacks,
    message: &CallbackMessage,
    status: MessageStatus,
) -> Result<(), CallbackError> {
    let params = callback_params(&shared.settings.account_sid, message, status);
    let signature = twilio_signature(&shared.settings.auth_token, &message.url, &params)?;
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let request = Request::builder()
        .method(Method::POST)
        .uri(message.url.as_str())
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )
        .header(
            header::USER_AGENT,
            HeaderValue::from_static("TwilioProxy/1.1"),
        )
        .header("X-Twilio-Signature", signature)
        .body(Full::new(Bytes::from(body)))?;

    // The semaphore is never closed, so this only waits.
    let _permit = callbacks.permits.acquire().await;
    let exchange = async {
        let response = callbacks.client.request(request).await?;
        let status = response.status();
        // Read the answer so the pooled connection can be reused.
        let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(CallbackError::Status(status))
        }
    };
    tokio::time::timeout(CALLBACK_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(CallbackError::Timeout))
}

/// The form fields of one status callback, as Twilio sends them for SMS.
pub(super) fn callback_params(
    account_sid: &str,
    message: &CallbackMessage,
    status: MessageStatus,
) -> Vec<(&'static str, String)> {
    let sid = message.sid.as_str();
    let mut params = vec![
        ("SmsSid", sid.to_owned()),
        ("SmsStatus", status.as_str().to_owned()),
        ("MessageStatus", status.as_str().to_owned()),
        ("To", message.to.clone()),
        ("MessageSid", sid.to_owned()),
        ("AccountSid", account_sid.to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
    ];
    // A messaging service's sender is chosen after the create answer; the
    // mock does not invent one, so such callbacks carry no `From`.
    if let Some(from) = &message.from {
        params.push(("From", from.clone()));
    }
    if let Some(service) = &message.messaging_service_sid {
        params.push(("MessagingServiceSid", service.clone()));
    }
    if let Some(code) = status.error_code() {
        params.push(("ErrorCode", code.to_string()));
    }
    params
}

/// `X-Twilio-Signature`: Base64 of HMAC-SHA1 keyed with the auth token over
/// the URL followed by each POST parameter's name and value, in name order
/// (then value order, as Twilio's helper libraries sort repeated names).
pub(super) fn twilio_signature(
    auth_token: &str,
    url: &str,
    params: &[(&str, String)],
) -> Result<String, hmac::digest::InvalidLength> {
    // HMAC takes keys of any length (RFC 2104), so this never fails; the
    // error type is the `hmac` crate's and is passed on rather than unwrapped.
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())?;
    mac.update(url.as_bytes());
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sorted.sort_unstable();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}
