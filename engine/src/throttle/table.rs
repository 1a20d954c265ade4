//! What the user writes: `config/carriers.toml` (the carrier table, sender
//! limits and fleet settings), parsed in one serde pass over plain structs
//! (`deny_unknown_fields`) and then validated into a [`ThrottleConfig`].
//! Every error names the key path and the reason
//! (`carrier[1].prefixes[0]: "14x4" is not E.164 digits`), like
//! `config/compliance.toml` (see `policy::rules`).

use std::collections::BTreeMap;
use std::time::Duration;

use hashbrown::HashMap;
use serde::Deserialize;

use super::ThrottleError;
use super::bucket::Limit;
use super::carrier_name::{self, Carrier};

/// The shipped defaults, compiled in.
const SHIPPED: &str = include_str!("../../../config/carriers.toml");

/// Longest carrier name: names are metric labels and Redis key parts.
const MAX_NAME: usize = 32;

// ---------------------------------------------------------------------------
// The file, as written
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    senders: SendersFile,
    #[serde(default)]
    fleet: FleetFile,
    #[serde(default)]
    carrier: Vec<CarrierFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SendersFile {
    long_code: Option<LimitFile>,
    toll_free: Option<LimitFile>,
    short_code: Option<LimitFile>,
    messaging_service: Option<LimitFile>,
    other: Option<LimitFile>,
    #[serde(default)]
    overrides: BTreeMap<String, LimitFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    #[serde(default = "default_lease_max_age_ms")]
    lease_max_age_ms: u64,
}

impl Default for FleetFile {
    fn default() -> Self {
        FleetFile {
            lease_max_age_ms: default_lease_max_age_ms(),
        }
    }
}

fn default_lease_max_age_ms() -> u64 {
    2000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CarrierFile {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
    limit: Option<LimitFile>,
    #[serde(default)]
    fleet: bool,
    lease: Option<u32>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct LimitFile {
    segments: u32,
    per: Per,
    burst: Option<u32>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
            Per::Day => 86_400,
        })
    }
}

impl LimitFile {
    fn build(self, path: &str) -> Result<Limit, ThrottleError> {
        Limit::new(self.segments, self.per.duration(), self.burst)
            .map_err(|e| ThrottleError::config(path, e.to_string()))
    }
}

// ---------------------------------------------------------------------------
// Validated
// ---------------------------------------------------------------------------

/// The kind of a sender, which picks its default limit: providers queue per
/// sender at different rates (docs/compliance.md#carrier-rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderClass {
    /// A 10-digit (E.164) number that is not toll-free.
    LongCode,
    /// A NANP toll-free number (+1 800/833/844/855/866/877/888).
    TollFree,
    /// 5–6 digits.
    ShortCode,
    /// A Twilio messaging service (`MG` + 32 hex digits).
    MessagingService,
    /// Anything else (alphanumeric sender ids).
    Other,
}

impl SenderClass {
    pub const ALL: [SenderClass; 5] = [
        SenderClass::LongCode,
        SenderClass::TollFree,
        SenderClass::ShortCode,
        SenderClass::MessagingService,
        SenderClass::Other,
    ];

    /// NANP toll-free area codes (47 CFR 52.101; the FCC assigns them).
    const TOLL_FREE_NPA: [&'static str; 7] = ["800", "833", "844", "855", "866", "877", "888"];

    /// Classify a sender as written in a message's `from` or a provider's
    /// settings. Runs once per sender (when its lane is made), not per message.
    pub fn of(sender: &str) -> SenderClass {
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(d) = sender.strip_prefix('+')
            && all_digits(d)
        {
            let toll_free = d.len() == 11
                && d.starts_with('1')
                && SenderClass::TOLL_FREE_NPA.contains(&&d[1..4]);
            return if toll_free {
                SenderClass::TollFree
            } else {
                SenderClass::LongCode
            };
        }
        if all_digits(sender) && (5..=6).contains(&sender.len()) {
            return SenderClass::ShortCode;
        }
        if sender.len() == 34
            && sender.starts_with("MG")
            && sender[2..].bytes().all(|b| b.is_ascii_hexdigit())
        {
            return SenderClass::MessagingService;
        }
        SenderClass::Other
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            SenderClass::LongCode => "long_code",
            SenderClass::TollFree => "toll_free",
            SenderClass::ShortCode => "short_code",
            SenderClass::MessagingService => "messaging_service",
            SenderClass::Other => "other",
        }
    }
}

/// Sender limits: one default per [`SenderClass`], and per-sender overrides.
#[derive(Debug, Clone, Default)]
pub struct SenderLimits {
    /// By [`SenderClass::index`]; `None` = that kind is not throttled.
    pub by_class: [Option<Limit>; 5],
    /// A sender listed here uses this limit whatever its class; `None` =
    /// explicitly not throttled.
    pub overrides: HashMap<Box<str>, Option<Limit>>,
}

impl SenderLimits {
    /// The limit a sender's lane gets, and whether it is an override.
    pub fn for_sender(&self, sender: &str, class: SenderClass) -> (Option<Limit>, bool) {
        match self.overrides.get(sender) {
            Some(l) => (*l, true),
            None => (self.by_class[class.index()], false),
        }
    }
}

/// One carrier lane as configured.
#[derive(Debug, Clone)]
pub struct CarrierSpec {
    pub carrier: Carrier,
    /// Spellings accepted in a message's hint, besides the name.
    pub aliases: Vec<Box<str>>,
    /// `(digits, length)`: `"1800"` is `(1800, 4)`.
    pub prefixes: Vec<(u64, u8)>,
    pub limit: Option<Limit>,
    /// `Some(lease)` when the limit is fleet-wide: segments per Redis lease.
    pub fleet_lease: Option<u32>,
}

/// A validated `carriers.toml`.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    pub carriers: Vec<CarrierSpec>,
    pub senders: SenderLimits,
    /// A leased fleet token not spent within this is given up.
    pub lease_max_age: Duration,
}

impl ThrottleConfig {
    /// The shipped defaults, `config/carriers.toml` as compiled in.
    pub fn shipped() -> ThrottleConfig {
        // Embedded and covered by tests: a parse failure is a build defect.
        ThrottleConfig::from_toml_str(SHIPPED).expect("config/carriers.toml is valid")
    }

    /// Parses and validates a carrier table (an edited `carriers.toml`).
    pub fn from_toml_str(src: &str) -> Result<ThrottleConfig, ThrottleError> {
        let de = toml::Deserializer::parse(src).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(src, s.start));
            ThrottleError::config(
                "(syntax)",
                format!("{} (line {line})", e.message().trim_end()),
            )
        })?;
        let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.inner();
            let mut reason = inner.message().trim_end().to_owned();
            if let Some(span) = inner.span() {
                reason = format!("{reason} (line {})", line_of(src, span.start));
            }
            ThrottleError::config(e.path().to_string(), reason)
        })?;
        build(file)
    }

    /// The spec of the carrier called `name`.
    pub fn carrier(&self, name: &str) -> Option<&CarrierSpec> {
        self.carriers.iter().find(|c| c.carrier.name() == name)
    }
}

fn line_of(src: &str, offset: usize) -> usize {
    src.get(..offset).map_or(0, |s| s.matches('\n').count() + 1)
}

fn build(file: File) -> Result<ThrottleConfig, ThrottleError> {
    let mut senders = SenderLimits::default();
    let s = file.senders;
    for (class, limit) in [
        (SenderClass::LongCode, s.long_code),
        (SenderClass::TollFree, s.toll_free),
        (SenderClass::ShortCode, s.short_code),
        (SenderClass::MessagingService, s.messaging_service),
        (SenderClass::Other, s.other),
    ] {
        if let Some(l) = limit {
            senders.by_class[class.index()] = Some(l.build(&format!("senders.{}", class.name()))?);
        }
    }
    for (sender, l) in s.overrides {
        let path = format!("senders.overrides.{sender:?}");
        if sender.is_empty() {
            return Err(ThrottleError::config(path, "empty sender"));
        }
        let limit = l.build(&path)?;
        senders
            .overrides
            .insert(sender.into_boxed_str(), Some(limit));
    }

    if file.fleet.lease_max_age_ms == 0 {
        return Err(ThrottleError::config(
            "fleet.lease_max_age_ms",
            "must be at least 1",
        ));
    }

    let mut names: HashMap<String, String> = HashMap::new();
    let mut hints: HashMap<String, String> = HashMap::new();
    let mut prefixes: HashMap<(u64, u8), String> = HashMap::new();
    let mut carriers = Vec::with_capacity(file.carrier.len());
    for (i, c) in file.carrier.into_iter().enumerate() {
        let here = format!("carrier[{i}]");
        let name_ok = !c.name.is_empty()
            && c.name.len() <= MAX_NAME
            && c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(ThrottleError::config(
                format!("{here}.name"),
                format!(
                    "{:?}: use a-z, 0-9 and `_`, 1 to {MAX_NAME} characters",
                    c.name
                ),
            ));
        }
        if let Some(prev) = names.insert(c.name.clone(), here.clone()) {
            return Err(ThrottleError::config(
                format!("{here}.name"),
                format!("duplicate carrier {:?} (also {prev})", c.name),
            ));
        }
        let carrier = carrier_name::intern(&c.name)
            .map_err(|reason| ThrottleError::config(format!("{here}.name"), reason))?;

        // Hints compare without ASCII case, so two spellings that differ
        // only in case are the same hint.
        let mut aliases = Vec::with_capacity(c.aliases.len());
        for (j, a) in std::iter::once(&c.name).chain(&c.aliases).enumerate() {
            let path = if j == 0 {
                format!("{here}.name")
            } else {
                format!("{here}.aliases[{}]", j - 1)
            };
            let a = a.trim();
            if a.is_empty() {
                return Err(ThrottleError::config(path, "empty alias"));
            }
            if let Some(prev) = hints.insert(a.to_ascii_lowercase(), path.clone()) {
                return Err(ThrottleError::config(
                    path,
                    format!("{a:?} is already a name or alias ({prev})"),
                ));
            }
            if j > 0 {
                aliases.push(Box::from(a));
            }
        }

        let mut pfx = Vec::with_capacity(c.prefixes.len());
        for (j, p) in c.prefixes.iter().enumerate() {
            let path = format!("{here}.prefixes[{j}]");
            let parsed = parse_prefix(p).map_err(|r| ThrottleError::config(&path, r))?;
            if let Some(prev) = prefixes.insert(parsed, path.clone()) {
                return Err(ThrottleError::config(
                    path,
                    format!("prefix {p:?} is listed twice (also {prev})"),
                ));
            }
            pfx.push(parsed);
        }

        let limit = c
            .limit
            .map(|l| l.build(&format!("{here}.limit")))
            .transpose()?;
        let fleet_lease = match (c.fleet, limit, c.lease) {
            (false, _, Some(_)) => {
                return Err(ThrottleError::config(
                    format!("{here}.lease"),
                    "only a fleet lane leases tokens: set `fleet = true` or drop `lease`",
                ));
            }
            (false, _, None) => None,
            (true, None, _) => {
                return Err(ThrottleError::config(
                    format!("{here}.fleet"),
                    "a fleet lane needs a `limit`",
                ));
            }
            (true, Some(l), lease) => {
                if lease == Some(0) {
                    return Err(ThrottleError::config(
                        format!("{here}.lease"),
                        "must be at least 1",
                    ));
                }
                Some(lease.unwrap_or_else(|| l.default_lease()).min(l.burst()))
            }
        };
        carriers.push(CarrierSpec {
            carrier,
            aliases,
            prefixes: pfx,
            limit,
            fleet_lease,
        });
    }
    Ok(ThrottleConfig {
        carriers,
        senders,
        lease_max_age: Duration::from_millis(file.fleet.lease_max_age_ms),
    })
}

/// `"1800"` → `(1800, 4)`: E.164 digits, country code first, no `+`.
fn parse_prefix(p: &str) -> Result<(u64, u8), String> {
    let ok =
        (1..=15).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) && !p.starts_with('0');
    if !ok {
        return Err(format!(
            "{p:?} is not E.164 digits (1 to 15 digits, no `+`, no leading 0)"
        ));
    }
    let v = p
        .parse::<u64>()
        .map_err(|e| format!("{p:?} is not E.164 digits: {e}"))?;
    Ok((v, p.len() as u8))
}
