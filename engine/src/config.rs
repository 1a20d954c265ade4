//! Configuration: what the user writes (`FileConfig`, plain serde with
//! `deny_unknown_fields`) and the validated [`Config`] the daemon runs with.
//!
//! One function, [`Config::load`], reads the TOML file, applies environment
//! overrides (`HERALD_` + key path in capitals, `.` written as `__`, e.g.
//! `redis.url` → `HERALD_REDIS__URL`), and validates. The environment is passed
//! in as an argument so tests never mutate the process environment. Every
//! error names the key and the reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "HERALD_";

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

pub(crate) fn key_err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------
// What the user writes. Defaults live here, next to the field, and are
// mirrored in config/herald.toml's comments.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub redis: RedisSection,
    pub queue: QueueSection,
    pub dispatch: DispatchSection,
    pub events: EventsSection,
    pub http: HttpSection,
    pub control: ControlSection,
    pub telemetry: TelemetrySection,
    pub providers: BTreeMap<String, ProviderSection>,
    pub routes: RoutesSection,
    pub compliance: ComplianceSection,
    pub tenants: BTreeMap<String, TenantSection>,
    pub breaker: BreakerSection,
    pub throttle: ThrottleSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    pub url: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            connect_timeout_ms: 2_000,
            response_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    pub partitions: u16,
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

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguousPolicy {
    /// Send again: the person may get the text twice, but never zero times.
    Resend,
    /// Record `failed` / `ambiguous`: the person gets it at most once.
    Fail,
}

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
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    pub max_len: u64,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: String,
    pub public_url: Option<String>,
    pub api_keys: BTreeMap<String, String>,
    pub max_request_bytes: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            api_keys: BTreeMap::new(),
            max_request_bytes: 4 * 1024 * 1024,
        }
    }
}

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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub kind: String,
    pub base_url: Option<String>,
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub status_callback: Option<String>,
    pub max_concurrency: Option<usize>,
    pub timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub http2: Option<bool>,
    // sns
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub endpoint: Option<String>,
    pub origination_number: Option<String>,
    pub sender_id: Option<String>,
    // http
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub id_field: Option<String>,
    // sandbox knobs
    pub latency_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    pub failure_rate: Option<f64>,
    pub permanent_failure_rate: Option<f64>,
}

/// `[compliance]`: where the rule tables come from and how deferred
/// messages come back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceSection {
    /// A rule-table file (same format as `config/compliance.toml`); unset:
    /// the shipped tables, embedded at build time.
    pub rules_file: Option<String>,
    /// Messages deferred to a window's opening are spread over this many
    /// seconds after it opens, not released in one burst.
    pub release_spread_secs: u64,
    /// Longest wait of one read of the consent change feed.
    pub feed_block_ms: u64,
}

impl Default for ComplianceSection {
    fn default() -> Self {
        Self {
            rules_file: None,
            release_spread_secs: 600,
            feed_block_ms: 250,
        }
    }
}

/// `[tenants.<name>]`: one brand's compliance policy and wording. A tenant
/// without a section gets the defaults.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSection {
    /// `[tenants.<name>.consent.<purpose>]`.
    pub consent: BTreeMap<String, PurposeSection>,
    /// A plain STOP revokes every purpose (default true); `false`: only the
    /// `marketing` purpose (STOP ALL still revokes all).
    pub revoke_all_purposes: Option<bool>,
    /// Extra sending windows, same fields as `[[window]]` in the rule table
    /// minus `states`.
    pub windows: Vec<toml::Value>,
    pub opt_out_instructions: Option<String>,
    pub help_text: Option<String>,
    pub opt_out_confirmation: Option<String>,
    pub opt_in_confirmation: Option<String>,
    pub smart_encoding: bool,
    /// Regular expressions; a body matching one is `suppressed` /
    /// `content_blocked`.
    pub blocked_content: Vec<String>,
    /// The tenant's sending numbers (E.164): inbound replies to them belong
    /// to this tenant.
    pub senders: Vec<String>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct PurposeSection {
    pub requires: Option<crate::consent::ConsentKind>,
    pub unknown: Option<crate::policy::UnknownNumber>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesSection {
    pub default: Vec<String>,
    /// `[routes.tenants.<tenant>]`: that tenant's routes.
    pub tenants: BTreeMap<String, TenantRoutes>,
}

/// One tenant's routes: a default and per-category overrides.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantRoutes {
    pub default: Option<Vec<String>>,
    pub transactional: Option<Vec<String>>,
    pub collections: Option<Vec<String>>,
    pub marketing: Option<Vec<String>>,
}

/// `[throttle]`: carrier lanes and token buckets (DESIGN §7).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleSection {
    pub enabled: bool,
    /// A carrier table (same format as `config/carriers.toml`); unset: the
    /// shipped one.
    pub rules_file: Option<String>,
    /// Per-sender limits on top of the table's, by sender number or
    /// messaging-service id; `segments = 0` means not throttled.
    pub sender_limits: BTreeMap<String, LimitSection>,
    /// Carrier lookup for numbers the table does not place: `none` or
    /// `twilio` (Lookup v2, with the credentials of `lookup_provider`).
    pub lookup: String,
    pub lookup_provider: Option<String>,
    pub lookup_base_url: Option<String>,
    pub lookup_ttl_secs: u64,
    pub lookup_cache_slots: usize,
    pub lookup_queue: usize,
    pub lookup_timeout_ms: u64,
}

impl Default for ThrottleSection {
    fn default() -> Self {
        Self {
            enabled: true,
            rules_file: None,
            sender_limits: BTreeMap::new(),
            lookup: "none".into(),
            lookup_provider: None,
            lookup_base_url: None,
            lookup_ttl_secs: 30 * 24 * 3600,
            lookup_cache_slots: 65_536,
            lookup_queue: 1_024,
            lookup_timeout_ms: 5_000,
        }
    }
}

/// Validated carrier-lookup settings.
#[derive(Debug, Clone)]
pub struct CarrierLookupConfig {
    pub settings: herald_adapters::TwilioLookupSettings,
    pub ttl: Duration,
    pub cache_slots: usize,
    pub queue: usize,
}

/// A rate: `segments` per `per` (`second`, `minute`, `hour`, `day`).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LimitSection {
    pub segments: u32,
    pub per: String,
    #[serde(default)]
    pub burst: Option<u32>,
}

impl LimitSection {
    /// The limit, or `None` for "not throttled" (`segments = 0`).
    pub fn to_limit(&self) -> Result<Option<crate::throttle::Limit>, String> {
        crate::throttle::Limit::parse(self.segments, &self.per, self.burst)
    }
}

/// `[breaker]`: the circuit breaker of every provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub min_requests: u32,
    pub window_ms: u64,
    pub open_ms: u64,
    pub half_open_probes: u32,
}

impl Default for BreakerSection {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 20,
            window_ms: 10_000,
            open_ms: 30_000,
            half_open_probes: 1,
        }
    }
}

/// A tenant route's key: (tenant, category or `None` for its default).
pub type RouteKey = (String, Option<crate::model::Category>);

/// Validated breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub min_requests: u32,
    pub window_ms: i64,
    pub open_ms: i64,
    pub half_open_probes: u32,
}

// ---------------------------------------------------------------------------
// The validated configuration.
// ---------------------------------------------------------------------------

/// Validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub redis_url: String,
    pub redis_connect_timeout: Duration,
    pub redis_response_timeout: Duration,
    pub partitions: u16,
    pub delete_acked: bool,
    pub dispatch: DispatchConfig,
    pub events_max_len: u64,
    pub dlq_max_len: u64,
    pub http: HttpConfig,
    pub control: ControlConfig,
    pub log: String,
    pub lag_poll: Duration,
    pub providers: Vec<ProviderConfig>,
    /// Indices into `providers`, in failover order.
    pub default_route: Vec<usize>,
    /// Tenant routes: (tenant, category or `None` = the tenant's default).
    pub routes: Vec<(RouteKey, Vec<usize>)>,
    pub breaker: BreakerConfig,
    /// Carrier lanes and sender limits; `None` when `throttle.enabled` is
    /// false.
    pub throttle: Option<crate::throttle::ThrottleConfig>,
    /// Carrier lookups through a provider's API (`None`: off).
    pub carrier_lookup: Option<CarrierLookupConfig>,
    /// Compliance rules and tenant policies, validated and compiled.
    pub policy: std::sync::Arc<crate::policy::Policy>,
    pub consent_feed_block: Duration,
}

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
    pub retry: crate::dispatch::backoff::Backoff,
    pub max_attempts: u32,
    pub dead_consumer_idle: Duration,
    pub consumer: String,
    /// Attempts on one provider before a transient failure moves to the
    /// next provider of the route.
    pub failover_after: u32,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    /// tenant → bearer API key for `POST /v1/messages`.
    pub api_keys: BTreeMap<String, String>,
    pub max_request_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub listen: SocketAddr,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub max_concurrency: Option<usize>,
    pub kind: ProviderKind,
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    Twilio(herald_adapters::TwilioSettings),
    Sandbox(herald_adapters::SandboxSettings),
    Sns(herald_adapters::SnsSettings),
    Http(herald_adapters::HttpSettings),
}

impl Config {
    /// Read `path`, apply overrides from `env` (pairs of name and value, e.g.
    /// `std::env::vars()`), validate.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, env)
    }

    /// Like [`Config::load`], from TOML text.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        apply_env(&mut table, env)?;
        let file: FileConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                key_err(key, e.into_inner().to_string())
            })?;
        file.validate()
    }
}

/// Apply `HERALD_A__B__C=value` as `a.b.c = value`. A value that parses as a
/// TOML value (number, boolean, array, quoted string) is taken as that;
/// anything else is a string. Quote a value to force a string
/// (`HERALD_CONTROL__TOKEN='"12345"'`).
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in env {
        // Every key lives in a section, so an override always has a `__`.
        // Variables without one (HERALD_LOG, heraldctl's HERALD_CONTROL_TOKEN)
        // belong to other tools and are left alone.
        let Some(rest) = var.strip_prefix(ENV_PREFIX).filter(|r| r.contains("__")) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                reason: "empty key segment (write `.` as `__`)".into(),
            });
        }
        let value = parse_env_value(&raw);
        let mut cursor = &mut *table;
        for segment in &path[..path.len() - 1] {
            let entry = cursor
                .entry(segment.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        reason: format!("`{segment}` is not a section"),
                    });
                }
            };
        }
        let last = path[path.len() - 1].clone();
        cursor.insert(last, value);
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn positive(key: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(key_err(key, "must be greater than 0"))
    } else {
        Ok(v)
    }
}

fn listen_addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse()
        .map_err(|e| key_err(key, format!("`{v}` is not an address:port ({e})")))
}

fn carrier_lookup_config(
    t: &ThrottleSection,
    providers: &[ProviderConfig],
) -> Result<Option<CarrierLookupConfig>, ConfigError> {
    match t.lookup.as_str() {
        "none" => return Ok(None),
        "twilio" => {}
        other => {
            return Err(key_err(
                "throttle.lookup",
                format!("`{other}`: none or twilio"),
            ));
        }
    }
    if !t.enabled {
        return Err(key_err(
            "throttle.lookup",
            "needs throttle.enabled = true (lookups feed the carrier lanes)",
        ));
    }
    let name = t.lookup_provider.as_deref().ok_or_else(|| {
        key_err(
            "throttle.lookup_provider",
            "names the twilio provider whose credentials the lookups use",
        )
    })?;
    let twilio = providers
        .iter()
        .find_map(|p| match &p.kind {
            ProviderKind::Twilio(s) if p.name == name => Some(s),
            _ => None,
        })
        .ok_or_else(|| {
            key_err(
                "throttle.lookup_provider",
                format!("`{name}` is not a twilio provider under [providers]"),
            )
        })?;
    let base = t
        .lookup_base_url
        .clone()
        .unwrap_or_else(|| herald_adapters::twilio::lookup::DEFAULT_BASE_URL.to_string());
    let mut settings = herald_adapters::TwilioLookupSettings::from_messaging(twilio, base);
    settings.request_timeout = ms(positive("throttle.lookup_timeout_ms", t.lookup_timeout_ms)?);
    herald_adapters::TwilioLookup::new(settings.clone())
        .map_err(|e| key_err(format!("throttle.lookup_{}", e.key), e.reason))?;
    Ok(Some(CarrierLookupConfig {
        settings,
        ttl: Duration::from_secs(positive("throttle.lookup_ttl_secs", t.lookup_ttl_secs)?),
        cache_slots: positive("throttle.lookup_cache_slots", t.lookup_cache_slots as u64)? as usize,
        queue: positive("throttle.lookup_queue", t.lookup_queue as u64)? as usize,
    }))
}

fn throttle_config(
    t: ThrottleSection,
) -> Result<Option<crate::throttle::ThrottleConfig>, ConfigError> {
    if !t.enabled {
        return Ok(None);
    }
    let mut cfg = match &t.rules_file {
        None => crate::throttle::ThrottleConfig::shipped(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| key_err("throttle.rules_file", format!("cannot read {path}: {e}")))?;
            crate::throttle::ThrottleConfig::from_toml_str(&text)
                .map_err(|e| key_err("throttle.rules_file", format!("{path}: {e}")))?
        }
    };
    for (sender, l) in &t.sender_limits {
        let limit = l
            .to_limit()
            .map_err(|e| key_err(format!("throttle.sender_limits.{sender}"), e))?;
        cfg.senders.overrides.insert(sender.as_str().into(), limit);
    }
    Ok(Some(cfg))
}

fn required(key: &str, v: Option<String>, what: &str) -> Result<String, ConfigError> {
    v.filter(|v| !v.is_empty())
        .ok_or_else(|| key_err(key, format!("is required for {what}")))
}

fn rate(key: &str, v: Option<f64>) -> Result<f64, ConfigError> {
    let v = v.unwrap_or(0.0);
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(key_err(key, "must be between 0.0 and 1.0"))
    }
}

impl FileConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let FileConfig {
            redis,
            queue,
            dispatch: d,
            events,
            http,
            control,
            telemetry,
            providers: provider_sections,
            routes,
            compliance,
            tenants,
            breaker,
            throttle,
        } = self;

        if !(redis.url.starts_with("redis://")
            || redis.url.starts_with("rediss://")
            || redis.url.starts_with("redis+unix://")
            || redis.url.starts_with("unix://"))
        {
            return Err(key_err(
                "redis.url",
                "must start with redis://, rediss:// or unix://",
            ));
        }
        if redis::Client::open(redis.url.as_str()).is_err() {
            return Err(key_err("redis.url", "not a valid Redis URL"));
        }
        if queue.partitions == 0 || queue.partitions > 1024 {
            return Err(key_err("queue.partitions", "must be between 1 and 1024"));
        }
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
        if d.max_in_flight < usize::from(queue.partitions) {
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
        positive("telemetry.lag_poll_ms", telemetry.lag_poll_ms)?;
        if d.max_attempts == 0 || d.max_attempts > 100 {
            return Err(key_err(
                "dispatch.max_attempts",
                "must be between 1 and 100",
            ));
        }
        positive("redis.connect_timeout_ms", redis.connect_timeout_ms)?;
        positive("redis.response_timeout_ms", redis.response_timeout_ms)?;
        if telemetry.log.trim().is_empty() {
            return Err(key_err("telemetry.log", "must not be empty"));
        }

        let consumer = match d.consumer {
            Some(c) if c.is_empty() => {
                return Err(key_err("dispatch.consumer", "must not be empty when set"));
            }
            Some(c) => c,
            None => default_consumer_name(),
        };

        let http_listen = listen_addr("http.listen", &http.listen)?;
        let public_url = http
            .public_url
            .unwrap_or_else(|| format!("http://{http_listen}"));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(key_err(
                "http.public_url",
                "must be an http:// or https:// URL",
            ));
        }
        for (tenant, key) in &http.api_keys {
            if key.len() < 16 {
                return Err(key_err(
                    format!("http.api_keys.{tenant}"),
                    "an API key must be at least 16 characters",
                ));
            }
        }
        let control_listen = listen_addr("control.listen", &control.listen)?;
        if !control.token.is_empty() {
            herald_control::auth::validate_token(&control.token)
                .map_err(|e| key_err("control.token", e.to_string()))?;
        }

        let mut providers = Vec::with_capacity(provider_sections.len());
        for (name, p) in provider_sections {
            providers.push(provider_config(&name, p, d.max_in_flight)?);
        }
        if routes.default.is_empty() {
            return Err(key_err(
                "routes.default",
                "must list at least one provider (e.g. [\"twilio\"])",
            ));
        }
        let mut default_route = Vec::with_capacity(routes.default.len());
        for name in &routes.default {
            let Some(i) = providers.iter().position(|p| &p.name == name) else {
                return Err(key_err(
                    "routes.default",
                    format!("provider `{name}` is not defined under [providers]"),
                ));
            };
            default_route.push(i);
        }
        let resolve = |key: String, names: &[String]| -> Result<Vec<usize>, ConfigError> {
            if names.is_empty() {
                return Err(key_err(key, "must list at least one provider"));
            }
            names
                .iter()
                .map(|name| {
                    providers
                        .iter()
                        .position(|p| &p.name == name)
                        .ok_or_else(|| {
                            key_err(
                                key.clone(),
                                format!("provider `{name}` is not defined under [providers]"),
                            )
                        })
                })
                .collect()
        };
        let mut tenant_routes = Vec::new();
        for (tenant, r) in &routes.tenants {
            use crate::model::Category as C;
            for (field, category, names) in [
                ("default", None, &r.default),
                ("transactional", Some(C::Transactional), &r.transactional),
                ("collections", Some(C::Collections), &r.collections),
                ("marketing", Some(C::Marketing), &r.marketing),
            ] {
                if let Some(names) = names {
                    let route = resolve(format!("routes.tenants.{tenant}.{field}"), names)?;
                    tenant_routes.push(((tenant.clone(), category), route));
                }
            }
        }
        if !(0.0..=1.0).contains(&breaker.failure_rate) || breaker.failure_rate == 0.0 {
            return Err(key_err(
                "breaker.failure_rate",
                "must be above 0.0 and at most 1.0",
            ));
        }
        let breaker = BreakerConfig {
            consecutive_failures: positive(
                "breaker.consecutive_failures",
                u64::from(breaker.consecutive_failures),
            )? as u32,
            failure_rate: breaker.failure_rate,
            min_requests: positive("breaker.min_requests", u64::from(breaker.min_requests))? as u32,
            window_ms: positive("breaker.window_ms", breaker.window_ms)? as i64,
            open_ms: positive("breaker.open_ms", breaker.open_ms)? as i64,
            half_open_probes: positive(
                "breaker.half_open_probes",
                u64::from(breaker.half_open_probes),
            )? as u32,
        };

        let carrier_lookup = carrier_lookup_config(&throttle, &providers)?;
        Ok(Config {
            redis_url: redis.url,
            redis_connect_timeout: ms(redis.connect_timeout_ms),
            redis_response_timeout: ms(redis.response_timeout_ms),
            partitions: queue.partitions,
            delete_acked: queue.delete_acked,
            dispatch: DispatchConfig {
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
                retry: crate::dispatch::backoff::Backoff::new(
                    ms(d.retry_base_ms),
                    ms(d.retry_max_ms),
                )
                .map_err(|e| key_err("dispatch.retry_base_ms", e))?,
                max_attempts: d.max_attempts,
                dead_consumer_idle: ms(positive(
                    "dispatch.dead_consumer_idle_ms",
                    d.dead_consumer_idle_ms,
                )?),
                consumer,
                failover_after: positive("dispatch.failover_after", u64::from(d.failover_after))?
                    as u32,
            },
            events_max_len: events.max_len,
            dlq_max_len: events.dlq_max_len,
            http: HttpConfig {
                listen: http_listen,
                public_url,
                api_keys: http.api_keys,
                max_request_bytes: http.max_request_bytes,
            },
            control: ControlConfig {
                listen: control_listen,
                token: control.token,
            },
            log: telemetry.log,
            lag_poll: ms(telemetry.lag_poll_ms),
            providers,
            default_route,
            routes: tenant_routes,
            breaker,
            carrier_lookup,
            throttle: throttle_config(throttle)?,
            policy: std::sync::Arc::new(crate::policy::Policy::build(&compliance, tenants)?),
            consent_feed_block: ms(positive(
                "compliance.feed_block_ms",
                compliance.feed_block_ms,
            )?),
        })
    }
}

fn provider_config(
    name: &str,
    p: ProviderSection,
    max_in_flight: usize,
) -> Result<ProviderConfig, ConfigError> {
    let key = |field: &str| format!("providers.{name}.{field}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(key_err(
            format!("providers.{name}"),
            "a provider name may only hold letters, digits, `_` and `-`",
        ));
    }
    if let Some(c) = p.max_concurrency
        && c == 0
    {
        return Err(key_err(key("max_concurrency"), "must be greater than 0"));
    }
    // A bound above the global one would never bind: keep the smaller.
    let max_concurrency = p.max_concurrency.map(|c| c.min(max_in_flight));
    let kind = match p.kind.as_str() {
        "twilio" => {
            let mut s = herald_adapters::TwilioSettings::default();
            if let Some(url) = p.base_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(key_err(
                        key("base_url"),
                        "must be an http:// or https:// URL",
                    ));
                }
                s.base_url = url.trim_end_matches('/').to_string();
            }
            s.account_sid = p
                .account_sid
                .filter(|v| !v.is_empty())
                .ok_or_else(|| key_err(key("account_sid"), "is required for a twilio provider"))?;
            s.auth_token = p
                .auth_token
                .filter(|v| !v.is_empty())
                .ok_or_else(|| key_err(key("auth_token"), "is required for a twilio provider"))?;
            s.from = p.from.filter(|v| !v.is_empty());
            s.messaging_service_sid = p.messaging_service_sid.filter(|v| !v.is_empty());
            if s.from.is_none() && s.messaging_service_sid.is_none() {
                return Err(key_err(
                    key("from"),
                    "a twilio provider needs `from` or `messaging_service_sid`",
                ));
            }
            s.status_callback = p.status_callback;
            s.connection = connection(&key, p.timeout_ms, p.connect_timeout_ms, p.http2)?;
            ProviderKind::Twilio(s)
        }
        "sandbox" => {
            let s = herald_adapters::SandboxSettings {
                latency: ms(p.latency_ms.unwrap_or(0)),
                jitter: ms(p.jitter_ms.unwrap_or(0)),
                failure_rate: rate(&key("failure_rate"), p.failure_rate)?,
                permanent_failure_rate: rate(
                    &key("permanent_failure_rate"),
                    p.permanent_failure_rate,
                )?,
            };
            ProviderKind::Sandbox(s)
        }
        "sns" => {
            let s = herald_adapters::SnsSettings {
                region: required(&key("region"), p.region, "an sns provider")?,
                access_key_id: required(&key("access_key_id"), p.access_key_id, "an sns provider")?,
                secret_access_key: required(
                    &key("secret_access_key"),
                    p.secret_access_key,
                    "an sns provider",
                )?,
                session_token: p.session_token.filter(|v| !v.is_empty()),
                endpoint: p.endpoint.filter(|v| !v.is_empty()),
                origination_number: p.origination_number.or(p.from).filter(|v| !v.is_empty()),
                sender_id: p.sender_id.filter(|v| !v.is_empty()),
                connection: connection(&key, p.timeout_ms, p.connect_timeout_ms, p.http2)?,
            };
            // The adapter validates the rest (endpoint URL, region) and
            // names the key.
            herald_adapters::SnsProvider::new(s.clone())
                .map_err(|e| key_err(key(e.key), e.reason))?;
            ProviderKind::Sns(s)
        }
        "http" => {
            let mut s = herald_adapters::HttpSettings {
                url: required(&key("url"), p.url, "an http provider")?,
                headers: p.headers.into_iter().collect(),
                from: p.from.filter(|v| !v.is_empty()),
                connection: connection(&key, p.timeout_ms, p.connect_timeout_ms, p.http2)?,
                ..Default::default()
            };
            if let Some(f) = p.id_field {
                s.id_field = f;
            }
            herald_adapters::HttpProvider::new(s.clone())
                .map_err(|e| key_err(key(e.key), e.reason))?;
            ProviderKind::Http(s)
        }
        other => {
            return Err(key_err(
                key("kind"),
                format!("unknown provider kind `{other}` (expected twilio, sns, http or sandbox)"),
            ));
        }
    };
    Ok(ProviderConfig {
        name: name.to_string(),
        max_concurrency,
        kind,
    })
}

/// `timeout_ms`, `connect_timeout_ms` and `http2`, the keys every HTTP
/// provider (twilio, sns, http) takes; an unset key keeps the adapter's
/// default.
fn connection(
    key: &dyn Fn(&str) -> String,
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    http2: Option<bool>,
) -> Result<herald_adapters::ConnectionSettings, ConfigError> {
    let mut c = herald_adapters::ConnectionSettings {
        http2: http2.unwrap_or(false),
        ..Default::default()
    };
    if let Some(t) = timeout_ms {
        c.request_timeout = ms(positive(&key("timeout_ms"), t)?);
    }
    if let Some(t) = connect_timeout_ms {
        c.connect_timeout = ms(positive(&key("connect_timeout_ms"), t)?);
    }
    Ok(c)
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [redis]
        url = "redis://127.0.0.1:6379"
        [queue]
        partitions = 4
        [http]
        listen = "127.0.0.1:8080"
        public_url = "https://herald.example.com"
        [control]
        listen = "127.0.0.1:50051"
        token = "secret-admin-token"
        [providers.twilio]
        kind = "twilio"
        base_url = "http://127.0.0.1:9090"
        account_sid = "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        auth_token = "tok"
        from = "+15005550006"
        [routes]
        default = ["twilio"]
    "#;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn err_text(text: &str, env: Vec<(String, String)>) -> String {
        match Config::from_toml_str(text, env) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn sns_and_http_providers_routes_and_breaker() {
        let text = format!(
            r#"{MINIMAL}
            [providers.aws]
            kind = "sns"
            region = "us-east-1"
            access_key_id = "AKIDEXAMPLE"
            secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
            from = "+18005550100"
            [providers.hook]
            kind = "http"
            url = "https://sms.example.com/send"
            headers = {{ Authorization = "Bearer abc" }}
            id_field = "/data/id"
            [routes.tenants.acme]
            default = ["aws", "twilio"]
            marketing = ["hook"]
            [breaker]
            consecutive_failures = 7
            "#
        );
        let c = Config::from_toml_str(&text, no_env()).expect("valid");
        let kinds: Vec<&str> = c
            .providers
            .iter()
            .map(|p| match &p.kind {
                ProviderKind::Twilio(_) => "twilio",
                ProviderKind::Sandbox(_) => "sandbox",
                ProviderKind::Sns(s) => {
                    assert_eq!(s.origination_number.as_deref(), Some("+18005550100"));
                    "sns"
                }
                ProviderKind::Http(h) => {
                    assert_eq!(h.id_field, "/data/id");
                    assert_eq!(
                        h.headers,
                        vec![("Authorization".into(), "Bearer abc".into())]
                    );
                    "http"
                }
            })
            .collect();
        assert_eq!(kinds, ["sns", "http", "twilio"]);
        assert_eq!(c.breaker.consecutive_failures, 7);
        assert_eq!(c.routes.len(), 2);
        // Each bad key is named.
        for (extra, key) in [
            (
                "[providers.aws]\nkind = \"sns\"\nregion = \"us-east-1\"",
                "providers.aws.access_key_id",
            ),
            ("[providers.hook]\nkind = \"http\"", "providers.hook.url"),
            (
                "[providers.hook]\nkind = \"http\"\nurl = \"ftp://x\"",
                "providers.hook.url",
            ),
            (
                "[routes.tenants.acme]\nmarketing = [\"nope\"]",
                "routes.tenants.acme.marketing",
            ),
            ("[breaker]\nfailure_rate = 1.5", "breaker.failure_rate"),
        ] {
            let e = err_text(&format!("{MINIMAL}\n{extra}"), no_env());
            assert!(e.contains(&format!("`{key}`")), "{extra}: {e}");
        }
    }

    #[test]
    fn contract_keys_alone_make_a_valid_config() {
        let c = Config::from_toml_str(MINIMAL, no_env()).expect("valid");
        assert_eq!(c.partitions, 4);
        assert_eq!(c.dispatch.max_in_flight, 16_384);
        assert_eq!(c.default_route, vec![0]);
        assert_eq!(c.http.public_url, "https://herald.example.com");
        assert!(matches!(c.providers[0].kind, ProviderKind::Twilio(_)));
        assert_eq!(c.providers[0].max_concurrency, None);
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let env = vec![
            ("HERALD_REDIS__URL".into(), "redis://127.0.0.1:7000".into()),
            ("HERALD_QUEUE__PARTITIONS".into(), "16".into()),
            ("HERALD_DISPATCH__MAX_IN_FLIGHT".into(), "20000".into()),
            (
                "HERALD_PROVIDERS__TWILIO__BASE_URL".into(),
                "http://127.0.0.1:9999".into(),
            ),
            ("HERALD_CONTROL__TOKEN".into(), "\"12345\"".into()),
            ("UNRELATED".into(), "x".into()),
            ("HERALD_LOG".into(), "debug".into()),
            ("HERALD_CONTROL_TOKEN".into(), "for-heraldctl".into()),
        ];
        let c = Config::from_toml_str(MINIMAL, env).expect("valid");
        assert_eq!(c.redis_url, "redis://127.0.0.1:7000");
        assert_eq!(c.partitions, 16);
        assert_eq!(c.dispatch.max_in_flight, 20_000);
        assert_eq!(c.control.token, "12345");
        match &c.providers[0].kind {
            ProviderKind::Twilio(s) => assert_eq!(s.base_url, "http://127.0.0.1:9999"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn env_can_define_a_whole_provider_and_route() {
        let env = vec![
            ("HERALD_PROVIDERS__SB__KIND".into(), "sandbox".into()),
            ("HERALD_ROUTES__DEFAULT".into(), "[\"sb\"]".into()),
        ];
        let c = Config::from_toml_str("", env).expect("valid");
        assert_eq!(c.providers[c.default_route[0]].name, "sb");
    }

    #[test]
    fn errors_name_the_key_and_reason() {
        type Env = Vec<(String, String)>;
        let cases: &[(&str, Env, &str)] = &[
            (
                "[queue]\npartitions = 0",
                vec![],
                "`queue.partitions`: must be between 1 and 1024",
            ),
            ("[queue]\nparts = 3", vec![], "unknown field `parts`"),
            (
                "[dispatch]\nmax_in_flight = \"lots\"",
                vec![],
                "`dispatch.max_in_flight`",
            ),
            ("[http]\nlisten = \"nowhere\"", vec![], "`http.listen`"),
            (
                "",
                vec![],
                "`routes.default`: must list at least one provider",
            ),
            (
                "[routes]\ndefault = [\"nope\"]",
                vec![],
                "provider `nope` is not defined",
            ),
            (
                "[providers.t]\nkind = \"twilio\"\n[routes]\ndefault=[\"t\"]",
                vec![],
                "`providers.t.account_sid`: is required",
            ),
            (
                "[providers.t]\nkind = \"carrier-pigeon\"\n[routes]\ndefault=[\"t\"]",
                vec![],
                "unknown provider kind `carrier-pigeon`",
            ),
            (
                MINIMAL,
                vec![("HERALD_REDIS__URL".into(), "http://x".into())],
                "`redis.url`",
            ),
            (
                MINIMAL,
                vec![("HERALD_QUEUE__PARTITIONS__X".into(), "1".into())],
                "HERALD_QUEUE__PARTITIONS__X",
            ),
            ("not toml [", vec![], "not valid TOML"),
            (
                MINIMAL,
                vec![("HERALD_CONTROL__TOKEN".into(), "\"two words\"".into())],
                "`control.token`",
            ),
        ];
        for (text, env, want) in cases {
            let got = err_text(text, env.clone());
            assert!(got.contains(want), "for {text:?}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn provider_concurrency_is_capped_by_global_bound() {
        let text = format!("{MINIMAL}\n[dispatch]\nmax_in_flight = 100\n");
        let text = text.replace(
            "from = \"+15005550006\"",
            "from = \"+15005550006\"\nmax_concurrency = 5000",
        );
        let c = Config::from_toml_str(&text, no_env()).expect("valid");
        assert_eq!(c.providers[0].max_concurrency, Some(100));
    }

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/herald.toml");
        Config::load(&path, no_env()).expect("config/herald.toml must be valid");
    }
}
