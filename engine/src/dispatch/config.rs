//! `[dispatch]`: the shards, the in-flight bound, recovery and retries.

use std::time::Duration;

use serde::Deserialize;

use super::backoff::Backoff;
use crate::check::{ConfigError, key_err, ms, positive};

/// What a redelivered message whose send may have reached the provider
/// does (docs/contracts.md#providers, ambiguous results).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguousPolicy {
    /// Send again: the person may get the text twice, but never zero times.
    Resend,
    /// Record `failed` / `ambiguous`: the person gets it at most once.
    Fail,
}

/// `[dispatch]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchSection {
    pub shards: usize,
    pub batch_size: usize,
    pub block_ms: u64,
    pub max_in_flight: usize,
    pub claim_idle_ms: u64,
    pub claim_interval_ms: u64,
    pub idempotency_ttl_secs: u64,
    pub shutdown_grace_ms: u64,
    pub ambiguous_policy: AmbiguousPolicy,
    pub max_body_chars: usize,
    pub max_entry_bytes: usize,
    pub delayed_poll_ms: u64,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub dead_consumer_idle_ms: u64,
    pub consumer: Option<String>,
    pub failover_after: u32,
    pub max_deliveries: u32,
}

impl Default for DispatchSection {
    fn default() -> Self {
        Self {
            shards: 2,
            batch_size: 512,
            block_ms: 1_000,
            max_in_flight: 16_384,
            claim_idle_ms: 30_000,
            claim_interval_ms: 5_000,
            idempotency_ttl_secs: 7 * 24 * 3600,
            shutdown_grace_ms: 10_000,
            ambiguous_policy: AmbiguousPolicy::Resend,
            max_body_chars: 1_600,
            max_entry_bytes: 64 * 1024,
            delayed_poll_ms: 250,
            max_attempts: 5,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            dead_consumer_idle_ms: 3_600_000,
            consumer: None,
            failover_after: 2,
            max_deliveries: 10,
        }
    }
}

/// Validated `[dispatch]`.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub shards: usize,
    pub batch_size: usize,
    pub block: Duration,
    pub max_in_flight: usize,
    pub claim_idle: Duration,
    pub claim_interval: Duration,
    pub idempotency_ttl: Duration,
    pub shutdown_grace: Duration,
    pub ambiguous_policy: AmbiguousPolicy,
    pub max_body_chars: usize,
    pub max_entry_bytes: usize,
    pub delayed_poll: Duration,
    pub retry: Backoff,
    pub max_attempts: u32,
    pub dead_consumer_idle: Duration,
    pub consumer: String,
    /// Attempts on one provider before a transient failure moves to the
    /// next provider of the route.
    pub failover_after: u32,
    /// An entry Redis delivered more often than this (taken over again
    /// and again: every instance that handles it dies) is `failed` /
    /// `poison` and copied to the DLQ instead of being handled once more.
    pub max_deliveries: u32,
}

impl DispatchSection {
    /// Validate against the queue's `partitions`.
    pub fn validate(self, partitions: u16) -> Result<DispatchConfig, ConfigError> {
        let d = self;
        if d.shards == 0 || d.shards > 256 {
            return Err(key_err("dispatch.shards", "must be between 1 and 256"));
        }
        if d.batch_size == 0 || d.batch_size > 10_000 {
            return Err(key_err(
                "dispatch.batch_size",
                "must be between 1 and 10000",
            ));
        }
        if d.max_in_flight == 0 || d.max_in_flight > 1_000_000 {
            return Err(key_err(
                "dispatch.max_in_flight",
                "must be between 1 and 1000000",
            ));
        }
        if d.max_in_flight < usize::from(partitions) {
            // A shard may read one entry per partition at once and must hold
            // a permit for each.
            return Err(key_err(
                "dispatch.max_in_flight",
                "must be at least queue.partitions",
            ));
        }
        if d.max_body_chars == 0 || d.max_body_chars > 1_600 {
            return Err(key_err(
                "dispatch.max_body_chars",
                "must be between 1 and 1600 (Twilio's cap on a body)",
            ));
        }
        if d.block_ms == 0 || d.block_ms > 60_000 {
            return Err(key_err("dispatch.block_ms", "must be between 1 and 60000"));
        }
        positive("dispatch.claim_idle_ms", d.claim_idle_ms)?;
        positive("dispatch.claim_interval_ms", d.claim_interval_ms)?;
        positive("dispatch.idempotency_ttl_secs", d.idempotency_ttl_secs)?;
        positive("dispatch.delayed_poll_ms", d.delayed_poll_ms)?;
        positive("dispatch.max_entry_bytes", d.max_entry_bytes as u64)?;
        if d.max_attempts == 0 || d.max_attempts > 100 {
            return Err(key_err(
                "dispatch.max_attempts",
                "must be between 1 and 100",
            ));
        }
        if d.max_deliveries < 2 || d.max_deliveries > 1_000 {
            return Err(key_err(
                "dispatch.max_deliveries",
                "must be between 2 and 1000",
            ));
        }
        let consumer = match d.consumer {
            Some(c) if c.is_empty() => {
                return Err(key_err("dispatch.consumer", "must not be empty when set"));
            }
            Some(c) => c,
            None => default_consumer_name(),
        };
        Ok(DispatchConfig {
            shards: d.shards,
            batch_size: d.batch_size,
            block: ms(d.block_ms),
            max_in_flight: d.max_in_flight,
            claim_idle: ms(d.claim_idle_ms),
            claim_interval: ms(d.claim_interval_ms),
            idempotency_ttl: Duration::from_secs(d.idempotency_ttl_secs),
            shutdown_grace: ms(d.shutdown_grace_ms),
            ambiguous_policy: d.ambiguous_policy,
            max_body_chars: d.max_body_chars,
            max_entry_bytes: d.max_entry_bytes,
            delayed_poll: ms(d.delayed_poll_ms),
            retry: Backoff::new(ms(d.retry_base_ms), ms(d.retry_max_ms))
                .map_err(|e| key_err("dispatch.retry_base_ms", e))?,
            max_attempts: d.max_attempts,
            dead_consumer_idle: ms(positive(
                "dispatch.dead_consumer_idle_ms",
                d.dead_consumer_idle_ms,
            )?),
            consumer,
            failover_after: positive("dispatch.failover_after", u64::from(d.failover_after))?
                as u32,
            max_deliveries: d.max_deliveries,
        })
    }
}

/// `hostname-pid-random`: unique per process, so a restarted instance never
/// inherits the pending entries of its predecessor by name (they are
/// recovered by XAUTOCLAIM instead, after `dispatch.claim_idle_ms`).
fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
