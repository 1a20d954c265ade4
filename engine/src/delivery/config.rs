//! `[events]`: how long the outcome streams are kept.

use serde::Deserialize;

/// `[events]`, as written; every value is valid.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// Approximate `MAXLEN` of `herald:events`.
    pub max_len: u64,
    /// Approximate `MAXLEN` of `herald:dlq`.
    pub dlq_max_len: u64,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            max_len: 1_000_000,
            dlq_max_len: 1_000_000,
        }
    }
}

/// `[events]`, validated (nothing to check).
pub type EventsConfig = EventsSection;
