//! What every HTTP provider shares: the pooled client, one request/response
//! exchange that knows whether the request could have reached the provider,
//! and small parsing helpers.
//!
//! Whether a failed exchange is [`SendError::Transient`] or
//! [`SendError::Ambiguous`] does not depend on the provider, only on how far
//! the request got, so it is decided here once; what an *answer* means is
//! decided by each provider's `service.rs`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::SendError;
use crate::pool::{Failure, Pool};

/// One pooled client for all sends of one provider. No per-host connection
/// cap here: the engine bounds each provider's in-flight sends.
pub(crate) type HttpClient = Pool;

/// A complete answer: the provider processed the request far enough to send a
/// status line.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, or why it could not be read whole (too big, reset, timed
    /// out). The status line is known either way.
    pub body: Result<Bytes, String>,
}

/// Send one prepared request and wait for the answer, within one `timeout`
/// for the whole exchange. `peer` names the provider in error messages.
///
/// Errors here are about the exchange, not the answer:
/// - no connection was ever obtained (DNS, TCP, TLS, handshake, waiting for
///   HTTP/2 stream capacity), or the connection gave the request back
///   unwritten → [`SendError::Transient`]: no request byte left;
/// - anything after a connection was obtained (write error, reset, EOF, no
///   answer in time) → [`SendError::Ambiguous`]: the provider may have taken
///   the message, and a re-send could text the person twice.
///
/// `request` builds the request when the exchange starts: an async fn keeps
/// its arguments for its whole life, so a request passed by value down
/// several layers would be stored once per layer in every in-flight send.
pub(crate) async fn exchange(
    client: &HttpClient,
    request: impl FnOnce() -> http::Request<Full<Bytes>>,
    timeout: Duration,
    peer: &str,
    max_body: usize,
) -> Result<Answer, SendError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Set by the pool when the request is handed to a connection: after a
    // timeout it tells a wait for a connection (Transient) from a wait for
    // the answer (Ambiguous).
    let handed = AtomicBool::new(false);
    let sent = tokio::time::timeout_at(deadline, client.send(request(), &handed)).await;
    let (response, lease) = match sent {
        Ok(Ok(sent)) => sent,
        Ok(Err(Failure::Connect(e))) => {
            // DNS, TCP connect (refused, unreachable, connect timeout), TLS
            // or the HTTP handshake failed, or the connection gave the
            // request back unwritten: no request byte left.
            return Err(SendError::Transient {
                code: None,
                message: format!("connecting to {peer} failed: {e}"),
                retry_after: None,
            });
        }
        Ok(Err(Failure::Sent(e))) => {
            // Everything after the request was handed to a connection: write
            // error, reset, EOF or a malformed response. The request may have
            // been (partly) written and processed: never a silent re-send.
            return Err(SendError::Ambiguous {
                message: format!(
                    "{peer} connection failed after the request was sent: {}",
                    crate::error_chain(&*e)
                ),
            });
        }
        Err(_elapsed) if !handed.load(Ordering::Relaxed) => {
            return Err(SendError::Transient {
                code: None,
                message: format!("no connection to {peer} within {timeout:?}"),
                retry_after: None,
            });
        }
        Err(_elapsed) => {
            return Err(SendError::Ambiguous {
                message: format!(
                    "no response from {peer} within {timeout:?} after the request was sent"
                ),
            });
        }
    };

    let (parts, body) = response.into_parts();
    let body = match tokio::time::timeout_at(deadline, Limited::new(body, max_body).collect()).await
    {
        Ok(Ok(collected)) => {
            // Read whole: the connection can carry the next request.
            if let Some(lease) = lease {
                client.give_back(lease);
            }
            Ok(collected.to_bytes())
        }
        Ok(Err(e)) => Err(format!("reading the response body failed: {e}")),
        Err(_) => Err(format!("response body not complete within {timeout:?}")),
    };
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `Retry-After` as delta-seconds. The HTTP-date form is not parsed (the
/// providers Herald speaks to send seconds); it yields `None` and the engine's
/// own backoff applies.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// "Bad Gateway" for 502: the text for an answer whose body says nothing.
pub(crate) fn status_text(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected status")
}

/// Checks that `url` is an absolute `http(s)://host…` URL; the reason when it
/// is not, for the provider's config error.
pub(crate) fn absolute_http_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("`{url}` must start with http:// or https://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    Ok(uri)
}

/// `None` stays `None`; a blank value is a mistake (an unset environment
/// variable interpolated into the config), not "unset".
pub(crate) fn non_empty(v: &Option<String>) -> Result<Option<String>, &'static str> {
    match v {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Err("is set but empty"),
        Some(s) => Ok(Some(s.trim().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_delta_seconds_only() {
        let cases: &[(Option<&str>, Option<u64>)] = &[
            (None, None),
            (Some("3"), Some(3)),
            (Some(" 12 "), Some(12)),
            (Some("0"), Some(0)),
            (Some("Wed, 21 Oct 2015 07:28:00 GMT"), None),
            (Some("-1"), None),
            (Some("1.5"), None),
        ];
        for (value, want) in cases {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert(header::RETRY_AFTER, v.parse().unwrap());
            }
            assert_eq!(
                retry_after(&headers),
                want.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }

    #[test]
    fn absolute_urls() {
        for ok in [
            "http://127.0.0.1:8080",
            "https://hooks.example.com/sms?x=1",
            "https://sns.us-east-1.amazonaws.com/",
        ] {
            assert!(absolute_http_url(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/relative", "ftp://x", "hooks.example.com", "http://"] {
            assert!(absolute_http_url(bad).is_err(), "{bad}");
        }
    }
}
