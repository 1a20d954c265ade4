//! What the user writes: the scenario file, its defaults, and the one
//! environment variable that overrides it.
//!
//! The file is a plain serde struct (`deny_unknown_fields`, so a misspelt key
//! fails instead of silently falling back to a default) turned into a checked
//! scenario by [`Scenario::from_toml`]; the environment is passed in as an
//! argument so tests never touch the process environment.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::messages::MAX_RECIPIENTS;

/// Every environment variable the scenario runner reads, in one place.
pub mod env {
    /// Replaces `[redis] url`, so scripts can point a shipped scenario at a
    /// redis-server they started on a free port.
    pub const REDIS_URL: &str = "HERALD_LOADTEST_REDIS_URL";
}

/// One load scenario, as written in `config/scenarios/*.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in the report; has no other effect.
    pub name: String,
    /// Where Herald's ingest streams and events stream live.
    #[serde(default)]
    pub redis: RedisSection,
    /// What to queue and how fast.
    #[serde(default)]
    pub load: LoadSection,
    /// How long to wait for outcomes.
    #[serde(default)]
    pub wait: WaitSection,
    /// Start a mock Twilio provider in this process (absent: none).
    #[serde(default)]
    pub mock: Option<MockSection>,
    /// Spawn Herald for the run and stop it at the end (absent: Herald is
    /// already running, or another harness plays its part).
    #[serde(default)]
    pub herald: Option<HeraldSection>,
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// Redis URL; `HERALD_LOADTEST_REDIS_URL` overrides it.
    pub url: String,
    /// Number of `herald:q:{n}` streams. Must equal Herald's
    /// `queue.partitions`, or Herald never reads some of the messages.
    pub partitions: u32,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            partitions: 8,
        }
    }
}

/// `[load]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadSection {
    /// Messages to queue.
    pub messages: u64,
    /// Messages per second to queue; 0 queues as fast as Redis takes them
    /// (a pre-filled backlog).
    pub rate: u64,
    /// `tenant` of every message.
    pub tenant: String,
    /// `category` of every message.
    pub category: String,
    /// Distinct recipient numbers, used round-robin.
    pub recipients: u64,
    /// Message text; `{n}` is replaced by the message's sequence number.
    pub body: String,
    /// XADDs per pipelined round trip.
    pub batch: u32,
}

impl Default for LoadSection {
    fn default() -> Self {
        Self {
            messages: 1000,
            rate: 500,
            tenant: "loadtest".to_owned(),
            category: "transactional".to_owned(),
            recipients: 1000,
            body: "Your payment of $42.00 is due on 2026-12-01.".to_owned(),
            batch: 500,
        }
    }
}

/// `[wait]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WaitSection {
    /// Seconds to wait for the remaining decisions once every message is
    /// queued (and Herald started); what is still undecided then is missing.
    pub timeout_secs: u64,
}

impl Default for WaitSection {
    fn default() -> Self {
        Self { timeout_secs: 120 }
    }
}

/// `[mock]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockSection {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Delay before answering each request, in milliseconds.
    pub latency_ms: u64,
    /// Fraction of requests (0.0–1.0) answered with a Twilio error.
    pub error_rate: f64,
    /// Account SID the mock expects; absent: the mock's built-in default.
    pub account_sid: Option<String>,
    /// Auth token the mock expects; absent: the mock's built-in default.
    pub auth_token: Option<String>,
    /// Fractions (0.0–1.0) of requests answered 429 + Retry-After, 5xx,
    /// or read and then dropped unanswered (ambiguous for Herald).
    pub rate_limit_rate: f64,
    pub server_error_rate: f64,
    pub drop_rate: f64,
    /// Fraction of requests answered `slow_ms` late.
    pub slow_rate: f64,
    pub slow_ms: u64,
    /// POST signed status callbacks to each message's StatusCallback.
    pub status_callbacks: bool,
    pub callback_delay_ms: u64,
    /// Fraction of callbacks that end `undelivered`.
    pub undelivered_rate: f64,
}

impl Default for MockSection {
    fn default() -> Self {
        Self {
            port: 9090,
            latency_ms: 0,
            error_rate: 0.0,
            account_sid: None,
            auth_token: None,
            rate_limit_rate: 0.0,
            server_error_rate: 0.0,
            drop_rate: 0.0,
            slow_rate: 0.0,
            slow_ms: 15_000,
            status_callbacks: false,
            callback_delay_ms: 1_000,
            undelivered_rate: 0.0,
        }
    }
}

/// `[herald]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeraldSection {
    /// Program to run, relative to the current directory or on `PATH`.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment for Herald, on top of this process's environment.
    pub env: BTreeMap<String, String>,
    /// true: queue the whole backlog first, then start Herald, so the report
    /// measures how fast Herald drains it.
    pub start_after_fill: bool,
    /// Herald's stdout and stderr go here (truncated at start).
    pub log: String,
}

impl Default for HeraldSection {
    fn default() -> Self {
        Self {
            command: "target/release/herald".to_owned(),
            args: vec![
                "serve".to_owned(),
                "--config".to_owned(),
                "config/herald.toml".to_owned(),
            ],
            env: BTreeMap::new(),
            start_after_fill: false,
            log: "herald-loadtest-herald.log".to_owned(),
        }
    }
}

impl Scenario {
    /// Reads a scenario file and applies the environment (see [`env`]).
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let scenario = Self::from_toml(&text)
            .with_context(|| format!("scenario {}", path.display()))?
            .with_env(env);
        scenario
            .validate()
            .with_context(|| format!("scenario {}", path.display()))?;
        Ok(scenario)
    }

    /// Parses and checks a scenario. The error names the key and the reason.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let scenario: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Applies environment overrides; `env` looks a variable up.
    pub fn with_env(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(url) = env(env::REDIS_URL).filter(|u| !u.is_empty()) {
            self.redis.url = url;
        }
        self
    }

    /// Checks ranges and cross-field rules.
    pub fn validate(&self) -> anyhow::Result<()> {
        let load = &self.load;
        if self.redis.url.is_empty() {
            bail!("redis.url: must not be empty");
        }
        if self.redis.partitions == 0 {
            bail!("redis.partitions: must be at least 1");
        }
        if load.messages == 0 {
            bail!("load.messages: must be at least 1");
        }
        if load.batch == 0 {
            bail!("load.batch: must be at least 1");
        }
        if load.recipients == 0 || load.recipients > MAX_RECIPIENTS {
            bail!(
                "load.recipients: must be between 1 and {MAX_RECIPIENTS}, got {}",
                load.recipients
            );
        }
        // The ingest contract's `tenant` is a non-empty string; an empty one
        // would make every message a `rejected` and the run meaningless.
        if load.tenant.is_empty() {
            bail!("load.tenant: must not be empty");
        }
        if load.category.is_empty() {
            bail!("load.category: must not be empty");
        }
        if load.body.is_empty() {
            bail!(
                "load.body: must not be empty (Herald rejects a message with neither body nor template)"
            );
        }
        if self.wait.timeout_secs == 0 {
            bail!("wait.timeout_secs: must be at least 1");
        }
        if let Some(mock) = &self.mock
            && !(0.0..=1.0).contains(&mock.error_rate)
        {
            bail!(
                "mock.error_rate: must be between 0.0 and 1.0, got {}",
                mock.error_rate
            );
        }
        if let Some(herald) = &self.herald {
            if herald.command.is_empty() {
                bail!("herald.command: must not be empty");
            }
            if herald.log.is_empty() {
                bail!("herald.log: must not be empty");
            }
        }
        Ok(())
    }
}
