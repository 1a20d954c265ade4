//! The checks every config section's validation shares, and the error
//! they return: a leaf, so each part validates its own section without
//! importing the top-level config (`crate::config`).

use std::net::SocketAddr;
use std::time::Duration;

/// A configuration error: the key (dotted path) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config is not valid TOML: {0}")]
    Syntax(String),
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("config key `{key}`: {reason}")]
    Key { key: String, reason: String },
}

/// The error for `key`.
pub(crate) fn key_err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        reason: reason.into(),
    }
}

pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// `v`, which must be greater than 0.
pub(crate) fn positive(key: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(key_err(key, "must be greater than 0"))
    } else {
        Ok(v)
    }
}

pub(crate) fn listen_addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse()
        .map_err(|e| key_err(key, format!("`{v}` is not an address:port ({e})")))
}
