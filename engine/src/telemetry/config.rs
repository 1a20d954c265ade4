//! `[telemetry]`: the log filter and how often queue gauges are read.

use std::time::Duration;

use serde::Deserialize;

use crate::check::{ConfigError, key_err, ms, positive};

/// `[telemetry]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    pub log: String,
    pub lag_poll_ms: u64,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            log: "info".into(),
            lag_poll_ms: 2_000,
        }
    }
}

/// Validated `[telemetry]`.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `tracing` filter (`HERALD_LOG` overrides it).
    pub log: String,
    pub lag_poll: Duration,
}

impl TelemetrySection {
    pub fn validate(self) -> Result<TelemetryConfig, ConfigError> {
        let lag_poll = ms(positive("telemetry.lag_poll_ms", self.lag_poll_ms)?);
        if self.log.trim().is_empty() {
            return Err(key_err("telemetry.log", "must not be empty"));
        }
        Ok(TelemetryConfig {
            log: self.log,
            lag_poll,
        })
    }
}
