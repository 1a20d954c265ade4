//! What an operator writes to configure the generic JSON webhook adapter, and
//! its validation.

use std::fmt;

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use serde::Deserialize;

use crate::config::{ConfigError, required};
use crate::connection;
use crate::{ConnectionSettings, transport};

const KIND: &str = "http provider";

/// `providers.<name>` with `kind = "http"`, as the operator writes it (the
/// engine takes `kind` and `max_concurrency` off first).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpProviderConfig {
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub id_field: Option<String>,
    pub from: Option<String>,
    pub timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub http2: Option<bool>,
}

impl fmt::Debug for HttpProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials more often than not.
        let header_names: Vec<&str> = self.headers.keys().map(String::as_str).collect();
        f.debug_struct("HttpProviderConfig")
            .field("url", &self.url)
            .field("headers", &header_names)
            .field("id_field", &self.id_field)
            .field("from", &self.from)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("http2", &self.http2)
            .finish()
    }
}

impl HttpProviderConfig {
    /// The settings, validated as [`HttpProvider::new`](super::HttpProvider::new)
    /// validates them, or the first key that cannot work.
    pub fn into_settings(self) -> Result<HttpSettings, ConfigError> {
        let mut s = HttpSettings {
            url: required(KIND, "url", self.url, "an http provider")?,
            headers: self.headers.into_iter().collect(),
            from: self.from.filter(|v| !v.is_empty()),
            connection: connection::from_keys(
                KIND,
                self.timeout_ms,
                self.connect_timeout_ms,
                self.http2,
            )?,
            ..Default::default()
        };
        if let Some(f) = self.id_field {
            s.id_field = f;
        }
        super::HttpProvider::new(s.clone())?;
        Ok(s)
    }
}

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
    /// Timeouts, connection pool and protocol, as for every HTTP provider.
    pub connection: ConnectionSettings,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            url: String::new(),
            headers: Vec::new(),
            id_field: "/id".to_owned(),
            from: None,
            connection: ConnectionSettings::default(),
        }
    }
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials more often than not.
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        let mut d = f.debug_struct("HttpSettings");
        d.field("url", &self.url)
            .field("headers", &header_names)
            .field("id_field", &self.id_field)
            .field("from", &self.from);
        self.connection.debug_fields(&mut d).finish()
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(KIND, key, reason)
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

pub(super) fn validate(s: &HttpSettings) -> Result<ValidSettings, ConfigError> {
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

    s.connection.validate(invalid)?;

    Ok(ValidSettings {
        uri,
        headers,
        id_field: s.id_field.clone(),
        from,
    })
}
