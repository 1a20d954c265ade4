//! `[control]`: the gRPC control listener and its admin token.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::check::{ConfigError, key_err, listen_addr};
use crate::secret::Secret;

/// `[control]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    pub listen: String,
    pub token: Secret,
    /// PEM certificate (chain) and key: the listener speaks TLS only.
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    /// Held messages a resume puts back into the queue per second.
    pub resume_rate: u32,
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            token: Secret::default(),
            tls_cert_file: None,
            tls_key_file: None,
            resume_rate: 100,
        }
    }
}

/// The control listener's certificate and key, PEM.
#[derive(Clone)]
pub struct ControlTls {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for ControlTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlTls")
            .field("cert", &self.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Validated `[control]`.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub listen: SocketAddr,
    /// Empty: every call is refused.
    pub token: Secret,
    /// `None`: plain HTTP/2 (keep it on 127.0.0.1).
    pub tls: Option<ControlTls>,
    /// Held messages released per second after a resume.
    pub resume_rate: u32,
}

impl ControlSection {
    pub fn validate(self) -> Result<ControlConfig, ConfigError> {
        let listen = listen_addr("control.listen", &self.listen)?;
        if !self.token.is_empty() {
            herald_control::auth::validate_token(self.token.expose())
                .map_err(|e| key_err("control.token", e.to_string()))?;
        }
        let read = |key: &str, path: &str| {
            std::fs::read(path).map_err(|e| key_err(key, format!("cannot read {path}: {e}")))
        };
        let tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ControlTls {
                cert: read("control.tls_cert_file", cert)?,
                key: read("control.tls_key_file", key)?,
            }),
            (Some(_), None) => {
                return Err(key_err(
                    "control.tls_key_file",
                    "is required with tls_cert_file",
                ));
            }
            (None, Some(_)) => {
                return Err(key_err(
                    "control.tls_cert_file",
                    "is required with tls_key_file",
                ));
            }
        };
        if self.resume_rate == 0 {
            return Err(key_err(
                "control.resume_rate",
                "must be at least 1 (messages per second)",
            ));
        }
        Ok(ControlConfig {
            listen,
            token: self.token,
            tls,
            resume_rate: self.resume_rate,
        })
    }
}
