//! `[providers.<name>]`, `[routes]` and `[breaker]`: which providers exist,
//! in which order each tenant's messages try them, and when a provider's
//! circuit opens.
//!
//! A provider's section is a tagged enum on `kind`: each variant is the
//! adapter's own config type (`herald_adapters::TwilioConfig`, …, with
//! `deny_unknown_fields`), so a key of another kind (`region` on a twilio
//! provider) is refused with its name. The tag is read by hand, not by
//! `#[serde(tag = "kind")]`: serde's internal tagging buffers the section
//! first, and errors then lose the key path (`providers.t.timeout_ms`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::{ConfigError, key_err, positive};
use crate::model::Category;

/// Keys every provider takes, whatever its kind.
const KIND: &str = "kind";
const MAX_CONCURRENCY: &str = "max_concurrency";

/// One provider's section, as written.
#[derive(Debug)]
pub struct ProviderSection {
    /// Bound on this account's concurrent requests.
    pub max_concurrency: Option<usize>,
    pub kind: KindSection,
}

/// The kind's own keys: the adapter's config type.
#[derive(Debug)]
pub enum KindSection {
    Twilio(herald_adapters::TwilioConfig),
    Sns(herald_adapters::SnsConfig),
    Http(herald_adapters::HttpProviderConfig),
    Sandbox(herald_adapters::SandboxConfig),
}

impl ProviderSection {
    /// Read `providers.<name>` from its table; errors name the key.
    pub fn parse(name: &str, mut table: toml::Table) -> Result<ProviderSection, ConfigError> {
        let key = |field: &str| format!("providers.{name}.{field}");
        let kind = match table.remove(KIND) {
            Some(toml::Value::String(k)) => k,
            Some(other) => {
                return Err(key_err(
                    key(KIND),
                    format!("must be a string, not {}", other.type_str()),
                ));
            }
            None => return Err(key_err(format!("providers.{name}"), "missing field `kind`")),
        };
        let max_concurrency = match table.remove(MAX_CONCURRENCY) {
            None => None,
            Some(v) => Some(field(&key(MAX_CONCURRENCY), v)?),
        };
        let rest = toml::Value::Table(table);
        let section = |e: serde_path_to_error::Error<toml::de::Error>| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                key_err(format!("providers.{name}"), inner)
            } else {
                key_err(key(&path), inner)
            }
        };
        let kind = match kind.as_str() {
            "twilio" => {
                KindSection::Twilio(serde_path_to_error::deserialize(rest).map_err(section)?)
            }
            "sns" => KindSection::Sns(serde_path_to_error::deserialize(rest).map_err(section)?),
            "http" => KindSection::Http(serde_path_to_error::deserialize(rest).map_err(section)?),
            "sandbox" => {
                KindSection::Sandbox(serde_path_to_error::deserialize(rest).map_err(section)?)
            }
            other => {
                return Err(key_err(
                    key(KIND),
                    format!(
                        "unknown provider kind `{other}` (expected twilio, sns, http or sandbox)"
                    ),
                ));
            }
        };
        Ok(ProviderSection {
            max_concurrency,
            kind,
        })
    }
}

/// One TOML value as `T`, the error naming `key`.
fn field<T: serde::de::DeserializeOwned>(key: &str, v: toml::Value) -> Result<T, ConfigError> {
    T::deserialize(v).map_err(|e| key_err(key, e.to_string()))
}

/// A validated provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub max_concurrency: Option<usize>,
    pub kind: ProviderKind,
}

/// A validated provider's settings, by kind.
#[derive(Debug, Clone)]
pub enum ProviderKind {
    Twilio(herald_adapters::TwilioSettings),
    Sandbox(herald_adapters::SandboxSettings),
    Sns(herald_adapters::SnsSettings),
    Http(herald_adapters::HttpSettings),
}

impl ProviderSection {
    /// Validate `providers.<name>`. A `max_concurrency` above
    /// `max_in_flight` would never bind: the smaller is kept.
    pub fn validate(self, name: &str, max_in_flight: usize) -> Result<ProviderConfig, ConfigError> {
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
        if self.max_concurrency == Some(0) {
            return Err(key_err(
                format!("providers.{name}.max_concurrency"),
                "must be greater than 0",
            ));
        }
        let max_concurrency = self.max_concurrency.map(|c| c.min(max_in_flight));
        let named = |e: herald_adapters::ConfigError| {
            key_err(format!("providers.{name}.{}", e.key), e.reason)
        };
        let kind = match self.kind {
            KindSection::Twilio(c) => ProviderKind::Twilio(c.into_settings().map_err(named)?),
            KindSection::Sns(c) => ProviderKind::Sns(c.into_settings().map_err(named)?),
            KindSection::Http(c) => ProviderKind::Http(c.into_settings().map_err(named)?),
            KindSection::Sandbox(c) => ProviderKind::Sandbox(c.into_settings().map_err(named)?),
        };
        Ok(ProviderConfig {
            name: name.to_string(),
            max_concurrency,
            kind,
        })
    }
}

/// `[routes]`, as written (also the policy document's `[routes]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesSection {
    pub default: Vec<String>,
    /// `[routes.tenants.<tenant>]`: that tenant's routes.
    pub tenants: BTreeMap<String, TenantRoutes>,
}

/// One tenant's routes: a default and per-category overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantRoutes {
    pub default: Option<Vec<String>>,
    pub transactional: Option<Vec<String>>,
    pub collections: Option<Vec<String>>,
    pub marketing: Option<Vec<String>>,
}

/// A tenant route's key: (tenant, category or `None` for its default).
pub type RouteKey = (String, Option<Category>);

/// Validated routes: indices into the providers, in failover order.
#[derive(Debug, Clone)]
pub struct Routes {
    pub default: Vec<usize>,
    pub tenants: Vec<(RouteKey, Vec<usize>)>,
}

impl RoutesSection {
    pub fn validate(self, providers: &[ProviderConfig]) -> Result<Routes, ConfigError> {
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        self.validate_names(&names)
    }

    /// Resolve every route against the providers named `providers` (in
    /// slot order); errors name the key (`routes.tenants.acme.marketing`).
    pub fn validate_names(&self, providers: &[&str]) -> Result<Routes, ConfigError> {
        if self.default.is_empty() {
            return Err(key_err(
                "routes.default",
                "must list at least one provider (e.g. [\"twilio\"])",
            ));
        }
        let mut default = Vec::with_capacity(self.default.len());
        for name in &self.default {
            let Some(i) = providers.iter().position(|p| p == name) else {
                return Err(key_err(
                    "routes.default",
                    format!("provider `{name}` is not defined under [providers]"),
                ));
            };
            default.push(i);
        }
        let resolve = |key: String, names: &[String]| -> Result<Vec<usize>, ConfigError> {
            if names.is_empty() {
                return Err(key_err(key, "must list at least one provider"));
            }
            names
                .iter()
                .map(|name| {
                    providers.iter().position(|p| p == name).ok_or_else(|| {
                        key_err(
                            key.clone(),
                            format!("provider `{name}` is not defined under [providers]"),
                        )
                    })
                })
                .collect()
        };
        let mut tenants = Vec::new();
        for (tenant, r) in &self.tenants {
            use Category as C;
            for (field, category, names) in [
                ("default", None, &r.default),
                ("transactional", Some(C::Transactional), &r.transactional),
                ("collections", Some(C::Collections), &r.collections),
                ("marketing", Some(C::Marketing), &r.marketing),
            ] {
                if let Some(names) = names {
                    let route = resolve(format!("routes.tenants.{tenant}.{field}"), names)?;
                    tenants.push(((tenant.clone(), category), route));
                }
            }
        }
        Ok(Routes { default, tenants })
    }
}

/// `[breaker]`: the circuit breaker of every provider, as written.
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

impl BreakerSection {
    pub fn validate(self) -> Result<BreakerConfig, ConfigError> {
        if !(0.0..=1.0).contains(&self.failure_rate) || self.failure_rate == 0.0 {
            return Err(key_err(
                "breaker.failure_rate",
                "must be above 0.0 and at most 1.0",
            ));
        }
        Ok(BreakerConfig {
            consecutive_failures: positive(
                "breaker.consecutive_failures",
                u64::from(self.consecutive_failures),
            )? as u32,
            failure_rate: self.failure_rate,
            min_requests: positive("breaker.min_requests", u64::from(self.min_requests))? as u32,
            window_ms: positive("breaker.window_ms", self.window_ms)? as i64,
            open_ms: positive("breaker.open_ms", self.open_ms)? as i64,
            half_open_probes: positive(
                "breaker.half_open_probes",
                u64::from(self.half_open_probes),
            )? as u32,
        })
    }
}
