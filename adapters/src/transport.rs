//! What every HTTP provider shares: the pooled client, one request/response
//! exchange that knows whether the request could have reached the provider,
//! and small parsing helpers.
//!
//! Whether a failed exchange is [`SendError::Transient`] or
//! [`SendError::Ambiguous`] does not depend on the provider, only on how far
//! the request got, so it is decided here once; what an *answer* means is
//! decided by each provider's `service.rs`.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{HttpConnector, capture_connection};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::SendError;

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Connection settings every HTTP provider exposes under the same names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub connect_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub pool_idle_timeout: Duration,
    pub http2: bool,
}

/// One pooled client for all sends of one provider.
pub(crate) fn build_client(pool: PoolSettings) -> HttpClient {
    let mut http = HttpConnector::new();
    // The TLS layer decides the scheme; without this http-only is enforced.
    http.enforce_http(false);
    // Requests are one small write each; Nagle would hold them for the ACK.
    http.set_nodelay(true);
    http.set_connect_timeout(Some(pool.connect_timeout));
    // Notice dead idle connections (NAT timeouts) before reusing them.
    http.set_keepalive(Some(Duration::from_secs(60)));

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http();
    let https = if pool.http2 {
        https.enable_http2().wrap_connector(http)
    } else {
        https.enable_http1().wrap_connector(http)
    };

    // No per-host connection cap here (hyper-util's pool has none): the
    // engine bounds in-flight sends with a semaphore.
    let mut builder = Client::builder(TokioExecutor::new());
    if pool.http2 {
        // One connection carries every stream: keep it alive across quiet
        // spells instead of re-handshaking.
        builder
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_while_idle(true)
            .timer(TokioTimer::new());
    }
    builder
        .pool_max_idle_per_host(pool.pool_max_idle_per_host)
        .pool_idle_timeout(pool.pool_idle_timeout)
        .pool_timer(TokioTimer::new())
        // Provider answers are ~1 KB; hyper's adaptive read buffer starts at
        // 8 KiB per connection. At 10k+ pooled connections that buffer is
        // most of the daemon's memory, so read in fixed 4 KiB chunks.
        .http1_read_buf_exact_size(4096)
        // HTTP/2 on request: prior knowledge for http://, ALPN for https://.
        .http2_only(pool.http2)
        // A request that a *reused* connection gave back unwritten (the server
        // closed it while idle) is re-sent by hyper-util on another
        // connection: safe, the bytes never left.
        .retry_canceled_requests(true)
        .build(https)
}

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
/// - no connection was ever obtained (DNS, TCP, TLS, pool wait) →
///   [`SendError::Transient`]: no request byte left;
/// - anything after a connection was obtained (write error, reset, EOF, no
///   answer in time) → [`SendError::Ambiguous`]: the provider may have taken
///   the message, and a re-send could text the person twice.
pub(crate) async fn exchange(
    client: &HttpClient,
    mut request: http::Request<Full<Bytes>>,
    timeout: Duration,
    peer: &str,
    max_body: usize,
) -> Result<Answer, SendError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Tells us afterwards whether the request ever got a connection. Costs a
    // few small allocations per send; it is what lets a timeout spent in DNS,
    // TCP, TLS or waiting for a pooled connection count as Transient instead
    // of Ambiguous.
    let connection = capture_connection(&mut request);

    let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) if e.is_connect() => {
            // DNS, TCP connect (refused, unreachable, connect timeout) or TLS
            // handshake failed: no request bytes were written.
            return Err(SendError::Transient {
                code: None,
                message: format!("connecting to {peer} failed: {}", error_chain(&e)),
                retry_after: None,
            });
        }
        Ok(Err(e)) => {
            // Everything after the connection was obtained: write error,
            // reset, EOF or a malformed response. The request may have been
            // (partly) written and processed. hyper-util already re-sent the
            // provably unwritten case on a reused connection; the same case on
            // a fresh connection is not exposed (its `Canceled` kind is
            // private), so it lands here too: conservative, never a duplicate.
            return Err(SendError::Ambiguous {
                message: format!(
                    "{peer} connection failed after the request was sent: {}",
                    error_chain(&e)
                ),
            });
        }
        Err(_elapsed) => {
            if connection.connection_metadata().is_none() {
                return Err(SendError::Transient {
                    code: None,
                    message: format!("no connection to {peer} within {timeout:?}"),
                    retry_after: None,
                });
            }
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
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
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

/// `e: cause: cause…` — hyper-util's own Display is only "client error (Connect)".
pub(crate) fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(s, ": {cause}");
        source = cause.source();
    }
    s
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
