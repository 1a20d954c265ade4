//! `[control]`: the gRPC control listener and its admin token.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::check::{ConfigError, key_err, listen_addr};

/// `[control]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    pub listen: String,
    pub token: String,
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            token: String::new(),
        }
    }
}

/// Validated `[control]`.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub listen: SocketAddr,
    /// Empty: every call is refused.
    pub token: String,
}

impl ControlSection {
    pub fn validate(self) -> Result<ControlConfig, ConfigError> {
        let listen = listen_addr("control.listen", &self.listen)?;
        if !self.token.is_empty() {
            herald_control::auth::validate_token(&self.token)
                .map_err(|e| key_err("control.token", e.to_string()))?;
        }
        Ok(ControlConfig {
            listen,
            token: self.token,
        })
    }
}
