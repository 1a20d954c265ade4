//! `[http]`: the HTTP listener, the URL providers call back, tenant API keys,
//! and the limits that keep a careless or hostile client from holding the
//! listener (docs/contracts.md#connections-and-limits).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::check::{ConfigError, key_err, listen_addr, ms, positive};
use crate::secret::Secret;

/// `[http]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: String,
    pub public_url: Option<String>,
    pub api_keys: BTreeMap<String, Secret>,
    pub max_request_bytes: usize,
    pub max_webhook_bytes: usize,
    pub max_items: usize,
    pub max_connections: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub idle_timeout_ms: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            api_keys: BTreeMap::new(),
            max_request_bytes: 4 * 1024 * 1024,
            max_webhook_bytes: 64 * 1024,
            max_items: 1_000,
            max_connections: 10_000,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 75_000,
        }
    }
}

/// Validated `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    /// tenant → bearer API key for `POST /v1/messages`.
    pub api_keys: BTreeMap<String, Secret>,
    pub max_request_bytes: usize,
    /// Largest body of a Twilio webhook.
    pub max_webhook_bytes: usize,
    /// Most messages in one `POST /v1/messages`.
    pub max_items: usize,
    /// Open connections at most; one more is accepted and closed at once.
    pub max_connections: usize,
    /// From accept (or from the first byte of a later request on a
    /// keep-alive connection) to the end of the request's headers.
    pub header_timeout: Duration,
    /// To read a whole request body, from when its handler starts reading.
    pub body_timeout: Duration,
    /// A connection with no request in flight and no byte of a new one.
    pub idle_timeout: Duration,
}

impl HttpSection {
    pub fn validate(self) -> Result<HttpConfig, ConfigError> {
        let listen = listen_addr("http.listen", &self.listen)?;
        let public_url = self
            .public_url
            .unwrap_or_else(|| format!("http://{listen}"));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(key_err(
                "http.public_url",
                "must be an http:// or https:// URL",
            ));
        }
        for (tenant, key) in &self.api_keys {
            if key.expose().len() < 16 {
                return Err(key_err(
                    format!("http.api_keys.{tenant}"),
                    "an API key must be at least 16 characters",
                ));
            }
        }
        positive("http.max_webhook_bytes", self.max_webhook_bytes as u64)?;
        if self.max_items == 0 || self.max_items > 100_000 {
            return Err(key_err("http.max_items", "must be between 1 and 100000"));
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err(key_err(
                "http.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        positive("http.header_timeout_ms", self.header_timeout_ms)?;
        positive("http.body_timeout_ms", self.body_timeout_ms)?;
        positive("http.idle_timeout_ms", self.idle_timeout_ms)?;
        Ok(HttpConfig {
            listen,
            public_url,
            api_keys: self.api_keys,
            max_request_bytes: self.max_request_bytes,
            max_webhook_bytes: self.max_webhook_bytes,
            max_items: self.max_items,
            max_connections: self.max_connections,
            header_timeout: ms(self.header_timeout_ms),
            body_timeout: ms(self.body_timeout_ms),
            idle_timeout: ms(self.idle_timeout_ms),
        })
    }
}
