//! `[throttle]`: whether carrier lanes are on, which carrier table, sender
//! limits, and carrier lookups.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{Limit, ThrottleConfig};
use crate::check::{ConfigError, key_err, ms, positive};
use crate::providers::config::{ProviderConfig, ProviderKind};

/// `[throttle]`, as written.
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
    pub fn to_limit(&self) -> Result<Option<Limit>, String> {
        Limit::parse(self.segments, &self.per, self.burst)
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

impl ThrottleSection {
    /// The carrier table and sender limits (`None` when `enabled` is
    /// false), and the carrier lookups (`None`: off), which borrow the
    /// credentials of a twilio provider.
    #[allow(clippy::type_complexity)]
    pub fn validate(
        self,
        providers: &[ProviderConfig],
    ) -> Result<(Option<ThrottleConfig>, Option<CarrierLookupConfig>), ConfigError> {
        let lookup = self.lookup_config(providers)?;
        Ok((self.table()?, lookup))
    }

    fn lookup_config(
        &self,
        providers: &[ProviderConfig],
    ) -> Result<Option<CarrierLookupConfig>, ConfigError> {
        let t = self;
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
            cache_slots: positive("throttle.lookup_cache_slots", t.lookup_cache_slots as u64)?
                as usize,
            queue: positive("throttle.lookup_queue", t.lookup_queue as u64)? as usize,
        }))
    }

    fn table(self) -> Result<Option<ThrottleConfig>, ConfigError> {
        let t = self;
        if !t.enabled {
            return Ok(None);
        }
        let mut cfg = match &t.rules_file {
            None => ThrottleConfig::shipped(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    key_err("throttle.rules_file", format!("cannot read {path}: {e}"))
                })?;
                ThrottleConfig::from_toml_str(&text)
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
}
