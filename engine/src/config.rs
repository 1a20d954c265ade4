//! Configuration: the file and its environment overrides, and the
//! top-level [`Config`] the daemon runs with. Each part owns its section —
//! what the user writes (a plain serde struct with `deny_unknown_fields`,
//! defaults next to the field) and its validation — beside its code:
//!
//! | section | part |
//! |---|---|
//! | `[redis]` | `conn` |
//! | `[queue]` | `ingest::config` |
//! | `[dispatch]` | `dispatch::config` |
//! | `[events]` | `delivery::config` |
//! | `[http]` | `http::config` |
//! | `[control]` | `control::config` |
//! | `[telemetry]` | `telemetry::config` |
//! | `[providers.<name>]`, `[routes]`, `[breaker]` | `providers::config` |
//! | `[compliance]`, `[tenants.<name>]` | `policy::config` |
//! | `[throttle]` | `throttle::config` |
//!
//! One function, [`Config::load`], reads the TOML file, applies environment
//! overrides (`HERALD_` + key path in capitals, `.` written as `__`, e.g.
//! `redis.url` → `HERALD_REDIS__URL`), and validates. The environment is passed
//! in as an argument so tests never mutate the process environment. Every
//! error names the key and the reason. `config/herald.toml` documents every
//! key with its default.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::conn::{RedisConfig, RedisSection};
use crate::control::config::{ControlConfig, ControlSection};
use crate::delivery::config::{EventsConfig, EventsSection};
use crate::dispatch::config::{DispatchConfig, DispatchSection};
use crate::http::config::{HttpConfig, HttpSection};
use crate::ingest::config::{QueueConfig, QueueSection};
use crate::policy::Policy;
use crate::policy::config::{ComplianceSection, TenantSection};
use crate::policy::document::{Context as PolicyContext, Document};
use crate::providers::config::{
    BreakerConfig, BreakerSection, ProviderConfig, ProviderSection, Routes, RoutesSection,
};
use crate::telemetry::config::{TelemetryConfig, TelemetrySection};
use crate::throttle::ThrottleConfig;
use crate::throttle::config::{CarrierLookupConfig, ThrottleSection};

pub use crate::check::ConfigError;
use crate::check::{key_err, ms, positive};

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "HERALD_";

/// What the user writes: every section, each owned by its part.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub redis: RedisSection,
    pub queue: QueueSection,
    pub dispatch: DispatchSection,
    pub events: EventsSection,
    pub http: HttpSection,
    pub control: ControlSection,
    pub telemetry: TelemetrySection,
    /// Read as tables: a provider's keys depend on its `kind`
    /// ([`ProviderSection::parse`]).
    pub providers: BTreeMap<String, toml::Table>,
    pub routes: RoutesSection,
    pub compliance: ComplianceSection,
    pub tenants: BTreeMap<String, TenantSection>,
    pub breaker: BreakerSection,
    pub throttle: ThrottleSection,
}

impl std::fmt::Debug for FileConfig {
    /// Providers by name only: their tables hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileConfig")
            .field("redis", &self.redis)
            .field("queue", &self.queue)
            .field("dispatch", &self.dispatch)
            .field("events", &self.events)
            .field("http", &self.http)
            .field("control", &self.control)
            .field("telemetry", &self.telemetry)
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("routes", &self.routes)
            .field("compliance", &self.compliance)
            .field("tenants", &self.tenants)
            .field("breaker", &self.breaker)
            .field("throttle", &self.throttle)
            .finish()
    }
}

/// Validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub redis: RedisConfig,
    pub queue: QueueConfig,
    pub dispatch: DispatchConfig,
    pub events: EventsConfig,
    pub http: HttpConfig,
    pub control: ControlConfig,
    pub telemetry: TelemetryConfig,
    pub providers: Vec<ProviderConfig>,
    /// Indices into `providers`, in failover order.
    pub routes: Routes,
    pub breaker: BreakerConfig,
    /// Carrier lanes and sender limits; `None` when `throttle.enabled` is
    /// false.
    pub throttle: Option<ThrottleConfig>,
    /// Carrier lookups through a provider's API (`None`: off).
    pub carrier_lookup: Option<CarrierLookupConfig>,
    /// The files' policy as a document (validated: it compiles): version 1
    /// of an empty store. Instances run the store's current version.
    pub seed: Document,
    /// What a policy document is checked against on this instance.
    pub policy_context: PolicyContext,
    /// Longest wait of one read of the consent change feed.
    pub consent_feed_block: Duration,
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

impl FileConfig {
    /// Validate every section, in the order a reader meets them.
    fn validate(self) -> Result<Config, ConfigError> {
        let redis = self.redis.validate()?;
        let queue = self.queue.validate()?;
        let dispatch = self.dispatch.validate(queue.partitions)?;
        let telemetry = self.telemetry.validate()?;
        let http = self.http.validate()?;
        let control = self.control.validate()?;
        let mut providers = Vec::with_capacity(self.providers.len());
        for (name, table) in self.providers {
            let section = ProviderSection::parse(&name, table)?;
            providers.push(section.validate(&name, dispatch.max_in_flight)?);
        }
        // Receipts on by default: a twilio provider without its own
        // `status_callback` is called back at this instance's webhook.
        for p in &mut providers {
            if let crate::providers::config::ProviderKind::Twilio(t) = &mut p.kind
                && t.status_callback.is_none()
            {
                t.status_callback = Some(format!(
                    "{}/v1/webhooks/twilio/status",
                    http.public_url.trim_end_matches('/')
                ));
            }
        }
        let seed = Document::from_files(&self.compliance, &self.tenants, &self.routes)?;
        let routes = self.routes.validate(&providers)?;
        let breaker = self.breaker.validate()?;
        let (throttle, carrier_lookup) = self.throttle.validate(&providers)?;
        let policy_context = PolicyContext {
            providers: providers.iter().map(|p| p.name.clone()).collect(),
            carriers: throttle.as_ref().map(|t| {
                t.carriers
                    .iter()
                    .map(|c| c.carrier.name().to_string())
                    .collect()
            }),
        };
        // The rule file is compiled as written (errors keep its own paths
        // and lines); the rest through the document, as the store will.
        Policy::build(&self.compliance, std::collections::BTreeMap::new())?;
        crate::policy::document::compile(&seed, 0, &policy_context)?;
        let consent_feed_block = ms(positive(
            "compliance.feed_block_ms",
            self.compliance.feed_block_ms,
        )?);
        Ok(Config {
            redis,
            queue,
            dispatch,
            events: self.events,
            http,
            control,
            telemetry,
            providers,
            routes,
            breaker,
            throttle,
            carrier_lookup,
            seed,
            policy_context,
            consent_feed_block,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::config::ProviderKind;

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
        assert_eq!(c.routes.tenants.len(), 2);
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
        assert_eq!(c.queue.partitions, 4);
        assert_eq!(c.dispatch.max_in_flight, 16_384);
        assert_eq!(c.routes.default, vec![0]);
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
        assert_eq!(c.redis.url, "redis://127.0.0.1:7000");
        assert_eq!(c.queue.partitions, 16);
        assert_eq!(c.dispatch.max_in_flight, 20_000);
        assert_eq!(c.control.token.expose(), "12345");
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
        assert_eq!(c.providers[c.routes.default[0]].name, "sb");
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
                "[http]\nheader_timeout_ms = 0",
                vec![],
                "`http.header_timeout_ms`: must be greater than 0",
            ),
            (
                "[http]\nbody_timeout_ms = 0",
                vec![],
                "`http.body_timeout_ms`: must be greater than 0",
            ),
            (
                "[http]\nidle_timeout_ms = 0",
                vec![],
                "`http.idle_timeout_ms`: must be greater than 0",
            ),
            (
                "[http]\nmax_connections = 0",
                vec![],
                "`http.max_connections`: must be between 1 and 1000000",
            ),
            (
                "[http]\nmax_webhook_bytes = 0",
                vec![],
                "`http.max_webhook_bytes`: must be greater than 0",
            ),
            (
                "[http]\nmax_items = 0",
                vec![],
                "`http.max_items`: must be between 1 and 100000",
            ),
            ("[http]\nmax_items = \"many\"", vec![], "`http.max_items`"),
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
        // Rows that need a valid rest of the file.
        let cases = [(
            "[tenants.acme]\nsenders = [\"+14155550100\"]\n[tenants.globex]\nsenders = [\"+14155550100\"]",
            "`tenants.globex.senders`: +14155550100 is already a sender of tenant `acme`",
        )];
        for (extra, want) in cases {
            let text = format!("{MINIMAL}\n{extra}");
            let got = err_text(&text, vec![]);
            assert!(got.contains(want), "for {extra:?}: {got:?} lacks {want:?}");
        }
        let env = vec![("HERALD_CONTROL__RESUME_RATE".into(), "0".into())];
        let got = err_text(MINIMAL, env);
        assert!(
            got.contains("`control.resume_rate`: must be at least 1"),
            "{got:?}"
        );
    }

    /// Each kind takes its own keys only: another kind's key is refused
    /// by name, and a wrong type names its full path.
    #[test]
    fn a_provider_refuses_the_keys_of_another_kind() {
        let cases = [
            ("region = \"us-east-1\"", "unknown field `region`"),
            ("timeout_ms = \"soon\"", "`providers.twilio.timeout_ms`"),
            ("max_concurrency = -1", "`providers.twilio.max_concurrency`"),
            (
                "timeout_ms = 0",
                "`providers.twilio.timeout_ms`: must be greater than 0",
            ),
        ];
        for (extra, want) in cases {
            let text = MINIMAL.replace(
                "from = \"+15005550006\"",
                &format!("from = \"+15005550006\"\n{extra}"),
            );
            let e = err_text(&text, no_env());
            assert!(e.contains(want), "{extra}: {e}");
        }
        let e = err_text(
            &format!("{MINIMAL}\n[providers.sb]\nkind = \"sandbox\"\nurl = \"http://x\""),
            no_env(),
        );
        assert!(e.contains("unknown field `url`"), "{e}");
        let e = err_text(
            &format!("{MINIMAL}\n[providers.nk]\nurl = \"http://x\""),
            no_env(),
        );
        assert!(e.contains("`providers.nk`: missing field `kind`"), "{e}");
    }

    /// Tokens, API keys, auth tokens and Redis passwords never appear in a
    /// printed config.
    #[test]
    fn no_secret_is_printed() {
        let text = MINIMAL
            .replace(
                "redis://127.0.0.1:6379",
                "redis://:redis-pass-4711@127.0.0.1:6379",
            )
            .replace("auth_token = \"tok\"", "auth_token = \"twilio-auth-4711\"")
            + "[http.api_keys]\nacme = \"api-key-4711-0123456789\"\n"
            + "[providers.aws]\nkind = \"sns\"\nregion = \"us-east-1\"\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"aws-secret-4711\"\n";
        let c = Config::from_toml_str(&text, no_env()).expect("valid");
        let printed = format!("{c:?}");
        for secret in [
            "redis-pass-4711",
            "twilio-auth-4711",
            "api-key-4711",
            "secret-admin-token",
            "aws-secret-4711",
        ] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        // The file as written, too.
        let mut table: toml::Table = toml::from_str(&text).expect("toml");
        apply_env(&mut table, no_env()).expect("env");
        let file: FileConfig = toml::Value::Table(table).try_into().expect("file");
        let printed = format!("{file:?}");
        for secret in [
            "redis-pass-4711",
            "api-key-4711",
            "secret-admin-token",
            "twilio-auth-4711",
            "aws-secret-4711",
        ] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
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
