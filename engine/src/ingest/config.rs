//! `[queue]`: the queue streams.

use serde::Deserialize;

use crate::check::{ConfigError, key_err};

/// `[queue]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Number of `herald:q:{n}` streams.
    pub partitions: u16,
    /// Trim each stream's acknowledged head.
    pub delete_acked: bool,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self {
            partitions: 8,
            delete_acked: true,
        }
    }
}

/// Validated `[queue]`.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    pub partitions: u16,
    pub delete_acked: bool,
}

impl QueueSection {
    pub fn validate(self) -> Result<QueueConfig, ConfigError> {
        if self.partitions == 0 || self.partitions > 1024 {
            return Err(key_err("queue.partitions", "must be between 1 and 1024"));
        }
        Ok(QueueConfig {
            partitions: self.partitions,
            delete_acked: self.delete_acked,
        })
    }
}
