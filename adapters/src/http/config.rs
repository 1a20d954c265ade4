//! What an operator writes to configure the generic JSON webhook adapter, and
//! its validation.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};

use crate::transport;

/// Settings for [`HttpProvider`](super::HttpProvider).
///
/// A plain struct: the engine's config layer maps `providers.<name>.*` onto
/// it and [`HttpProvider::new`](super::HttpProvider::new) validates it once.
#[derive(Clone)]
pub struct HttpSettings {
    /// Where every message is posted, `http://` or `https://`; a query string
    /// is kept as written.
    pub url: String,
    /// Extra request headers, e.g. `("Authorization", "Bearer …")`. Values
    /// are never printed by `Debug`. `Content-Type`, `Content-Length`,
    /// `Host`, `Transfer-Encoding` and `Connection` are Herald's to set.
    pub headers: Vec<(String, String)>,
    /// JSON pointer (RFC 6901) to the provider's message id in a 2xx answer:
    /// `/id` for `{"id": "…"}`, `/data/sid` for `{"data": {"sid": "…"}}`, `""`
    /// for an answer that is the bare id string.
    pub id_field: String,
    /// Sender put in the body's `from` when routing gives none.
    pub from: Option<String>,
    /// Budget for one send: waiting for a connection, writing the request and
    /// reading the whole response.
    pub request_timeout: Duration,
    /// Budget for the TCP connect of a new connection.
    pub connect_timeout: Duration,
    /// Idle connections kept per host, so a burst's connections are reused.
    pub pool_max_idle_per_host: usize,
    /// How long an idle connection stays in the pool.
    pub pool_idle_timeout: Duration,
    /// Speak HTTP/2 only (prior knowledge for http://, ALPN `h2` for
    /// https://): thousands of concurrent sends share one connection.
    pub http2: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            url: String::new(),
            headers: Vec::new(),
            id_field: "/id".to_owned(),
            from: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 32_768,
            // Shorter than common load balancers' idle timeouts (AWS ALB:
            // 60 s): a server-side close racing a reuse turns a clean send
            // ambiguous.
            pool_idle_timeout: Duration::from_secs(30),
            http2: false,
        }
    }
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials more often than not.
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("HttpSettings")
            .field("url", &self.url)
            .field("headers", &header_names)
            .field("id_field", &self.id_field)
            .field("from", &self.from)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("http2", &self.http2)
            .finish()
    }
}

/// An http-provider setting that cannot work, naming the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid http provider setting `{key}`: {reason}")]
pub struct HttpConfigError {
    pub key: &'static str,
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> HttpConfigError {
    HttpConfigError {
        key,
        reason: reason.into(),
    }
}

/// Headers Herald writes itself: a second value would make the request
/// malformed or change how it is framed.
fn reserved(name: &HeaderName) -> bool {
    [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::HOST,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ]
    .contains(name)
}

/// The parts of [`HttpSettings`] the hot path uses, checked and precomputed.
pub(super) struct ValidSettings {
    pub uri: Uri,
    /// The extra headers, values marked sensitive (kept out of HPACK tables
    /// and debug output).
    pub headers: HeaderMap,
    pub id_field: String,
    pub from: Option<String>,
}

pub(super) fn validate(s: &HttpSettings) -> Result<ValidSettings, HttpConfigError> {
    let url = s.url.trim();
    if url.is_empty() {
        return Err(invalid("url", "is empty"));
    }
    let uri = transport::absolute_http_url(url).map_err(|r| invalid("url", r))?;

    let mut headers = HeaderMap::with_capacity(s.headers.len());
    for (name, value) in &s.headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid("headers", format!("`{name}` is not a header name")))?;
        if reserved(&name) {
            return Err(invalid(
                "headers",
                format!("`{name}` is set by Herald and cannot be configured"),
            ));
        }
        let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
            invalid(
                "headers",
                format!("the value of `{name}` has characters not allowed in a header"),
            )
        })?;
        value.set_sensitive(true);
        headers.append(name, value);
    }

    // RFC 6901: the empty pointer is the whole document; any other starts
    // with `/`.
    if !(s.id_field.is_empty() || s.id_field.starts_with('/')) {
        return Err(invalid(
            "id_field",
            format!(
                "`{}` is not a JSON pointer: write `/{}`",
                s.id_field, s.id_field
            ),
        ));
    }
    let from = transport::non_empty(&s.from).map_err(|r| invalid("from", r))?;

    if s.request_timeout.is_zero() {
        return Err(invalid("request_timeout", "must be greater than zero"));
    }
    if s.connect_timeout.is_zero() {
        return Err(invalid("connect_timeout", "must be greater than zero"));
    }

    Ok(ValidSettings {
        uri,
        headers,
        id_field: s.id_field.clone(),
        from,
    })
}
