//! Compliance policy (docs/compliance.md): what may be sent, when.
//!
//! The rule tables come from configuration (`config/compliance.toml` is the
//! shipped default), never from code, so an admin can change a state's
//! window without a release. Everything here reads immutable data: the
//! per-message path takes no lock.

pub mod quiet_hours;
pub mod rules;
pub mod zones;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a rule did to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Defer,
    Suppress,
}

/// A rule that took part in a decision: reported by `/v1/policy/evaluate`,
/// recorded in the message's trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fired {
    /// The rule's id from the rule table (`tcpa-calling-hours`, `fl-marketing-window`…).
    pub rule: Arc<str>,
    /// Where the rule comes from (`47 CFR 64.1200(c)(1)`).
    pub citation: Arc<str>,
    pub effect: Effect,
    /// What it found, for a human (`closed in America/Chicago until 08:00`).
    /// Static when it can be, so the common details cost no allocation.
    pub detail: std::borrow::Cow<'static, str>,
}

pub mod caps;
pub mod config;
pub mod document;
pub mod experiments;
pub mod live;
pub mod schedules;
pub mod signal_rules;
pub mod store;

// foldhash (hashbrown's default): looked up per message; SipHash showed
// in the throughput profile.
use hashbrown::HashMap;
use std::sync::LazyLock;

use jiff::Timestamp;

pub use self::config::{ComplianceSection, PurposeSection, TenantSection};
use crate::check::{ConfigError, key_err};
use crate::consent::ConsentKind;
use crate::consent::replica::{NumberState, PurposeState};
use crate::content::{BlockedContent, ContentRules};
use crate::model::{Category, E164, Reason};
use rules::{CapRule, Rules, WindowRule};
use zones::Zone;

/// What a number with no consent record gets, per purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownNumber {
    /// The tenant attests prior express consent by sending (docs/compliance.md: the
    /// consumer gave the number for the account).
    Allow,
    /// Consent must be on file.
    Suppress,
}

/// Consent policy of one purpose.
#[derive(Debug, Clone, Copy)]
pub struct PurposePolicy {
    pub requires: ConsentKind,
    pub unknown: UnknownNumber,
}

/// One tenant's compiled policy.
#[derive(Debug)]
pub struct TenantPolicy {
    /// By `Category as usize`.
    pub consent: [PurposePolicy; 3],
    pub revoke_all_purposes: bool,
    pub windows: Vec<WindowRule>,
    /// Opt-out instructions, smart encoding, blocked patterns.
    pub content: ContentRules,
    pub help_text: String,
    pub opt_out_confirmation: String,
    pub opt_in_confirmation: String,
    /// The tenant's default locale (`en-US` unless set).
    pub locale: Box<str>,
    /// Zone assumed for a recipient Herald cannot place.
    pub time_zone: Option<Zone>,
}

/// The locale of a tenant that sets none.
pub const DEFAULT_LOCALE: &str = "en-US";

const DEFAULT_OPT_OUT: &str = "Reply STOP to stop texts to this telephone number.";
const DEFAULT_HELP: &str = "Account and payment notices. Msg&data rates may apply. Reply STOP to stop texts to this telephone number.";
const DEFAULT_STOP_CONFIRM: &str =
    "You will no longer receive texts from us at this number. Reply START to resume.";
const DEFAULT_START_CONFIRM: &str =
    "You will receive texts from us again at this number. Reply STOP to stop.";

impl TenantPolicy {
    fn build(key: &str, s: TenantSection) -> Result<(TenantPolicy, Vec<Box<str>>), ConfigError> {
        // Shipped defaults, docs/compliance.md: transactional and collections rely on
        // the prior express consent a tenant attests by sending; marketing
        // needs express written consent on file (47 CFR 64.1200(a)(2)).
        let mut consent = [
            PurposePolicy {
                requires: ConsentKind::Express,
                unknown: UnknownNumber::Allow,
            },
            PurposePolicy {
                requires: ConsentKind::Express,
                unknown: UnknownNumber::Allow,
            },
            PurposePolicy {
                requires: ConsentKind::ExpressWritten,
                unknown: UnknownNumber::Suppress,
            },
        ];
        for (purpose, PurposeSection { requires, unknown }) in &s.consent {
            let Some(c) = Category::from_name(purpose) else {
                return Err(key_err(
                    format!("{key}.consent.{purpose}"),
                    "unknown purpose (transactional, collections, marketing)",
                ));
            };
            let p = &mut consent[c as usize];
            if let Some(r) = requires {
                p.requires = *r;
            }
            if let Some(u) = unknown {
                p.unknown = *u;
            }
        }
        let windows = if s.windows.is_empty() {
            Vec::new()
        } else {
            WindowRule::parse_tenant_windows(
                &format!("{key}.windows"),
                toml::Value::Array(s.windows),
            )
            .map_err(|e| key_err(e.path, e.reason))?
        };
        let locale = match s.locale {
            None => Box::from(DEFAULT_LOCALE),
            Some(l) if valid_locale(&l) => l.into_boxed_str(),
            Some(l) => {
                return Err(key_err(
                    format!("{key}.locale"),
                    format!(
                        "`{l}` is not a locale (a language code with an optional region: `en`, `es-US`)"
                    ),
                ));
            }
        };
        let time_zone = match &s.time_zone {
            None => None,
            Some(z) => Some(Zone::by_name(z).ok_or_else(|| {
                key_err(
                    format!("{key}.time_zone"),
                    format!("unknown time zone `{z}` (a tz database name such as America/Chicago)"),
                )
            })?),
        };
        let blocked = BlockedContent::new(&s.blocked_content)
            .map_err(|e| key_err(format!("{key}.blocked_content"), e))?;
        let mut senders = Vec::with_capacity(s.senders.len());
        for n in &s.senders {
            let sender = crate::model::parse_sender(n)
                .map_err(|e| key_err(format!("{key}.senders"), format!("`{n}`: {e}")))?;
            senders.push(sender);
        }
        let text = |v: Option<String>, field: &str, default: &str| match v {
            Some(t) if t.trim().is_empty() => {
                Err(key_err(format!("{key}.{field}"), "must not be empty"))
            }
            Some(t) => Ok(t),
            None => Ok(default.to_string()),
        };
        Ok((
            TenantPolicy {
                consent,
                revoke_all_purposes: s.revoke_all_purposes.unwrap_or(true),
                windows,
                content: ContentRules {
                    opt_out_instructions: text(
                        s.opt_out_instructions,
                        "opt_out_instructions",
                        DEFAULT_OPT_OUT,
                    )?,
                    smart_encoding: s.smart_encoding,
                    blocked,
                },
                help_text: text(s.help_text, "help_text", DEFAULT_HELP)?,
                opt_out_confirmation: text(
                    s.opt_out_confirmation,
                    "opt_out_confirmation",
                    DEFAULT_STOP_CONFIRM,
                )?,
                opt_in_confirmation: text(
                    s.opt_in_confirmation,
                    "opt_in_confirmation",
                    DEFAULT_START_CONFIRM,
                )?,
                locale,
                time_zone,
            },
            senders,
        ))
    }
}

/// What [`Policy::assemble`] compiles.
pub(crate) struct Parts {
    pub rules: Rules,
    pub release_spread_secs: u64,
    /// Where `release_spread_secs` was written, for its error.
    pub release_spread_key: &'static str,
    pub tenants: std::collections::BTreeMap<String, TenantSection>,
    pub routes: crate::providers::config::Routes,
    pub throttles: std::collections::BTreeMap<String, crate::throttle::live::Override>,
    pub version: u64,
}

/// The compiled policy: rule tables, every tenant's settings, routes and
/// throttle overrides, of one policy-store version. Immutable; shared by all
/// shards, and swapped whole when a new version arrives ([`live::LivePolicy`]).
#[derive(Debug)]
pub struct Policy {
    pub rules: Rules,
    /// The rule table's caps, shared into each evaluation.
    caps: Vec<Arc<CapRule>>,
    tenants: HashMap<String, TenantPolicy>,
    default_tenant: TenantPolicy,
    /// Sender (as `model::parse_sender` spells it) → the tenant owning it:
    /// who may send from it, and whose replies come back to it.
    by_sender: HashMap<Box<str>, String>,
    /// Tenants that declared senders.
    declared: hashbrown::HashSet<String>,
    /// Deferred messages are spread over this long after a window opens.
    pub release_spread_ms: i64,
    /// The policy-store version this was compiled from (0: files only, no
    /// store yet).
    pub version: u64,
    routes: RouteTable,
    /// Live throttle overrides by lane (`carrier:<name>`, `sender:<id>`),
    /// applied to the token buckets when this version is swapped in.
    pub throttles: std::collections::BTreeMap<String, crate::throttle::live::Override>,
    /// Message templates by tenant and name, each name's versions in order.
    templates: HashMap<String, HashMap<String, Vec<crate::content::templates::Template>>>,
    /// Reminder schedules by tenant and name (the built-in ones are not
    /// here: [`Policy::schedule`] falls back to them).
    schedules: HashMap<String, HashMap<String, schedules::Schedule>>,
    /// Signal rules by tenant and event (`[signals.<tenant>]`); an event a
    /// tenant does not name follows `signals::built_in`.
    signal_rules: HashMap<String, HashMap<String, Vec<signal_rules::Action>>>,
    /// Experiments by tenant and the template they are on.
    experiments: HashMap<String, HashMap<String, experiments::Experiment>>,
}

/// Routes by tenant and category, as slot indices into the providers.
#[derive(Debug, Default)]
struct RouteTable {
    default: Vec<usize>,
    /// By `Category as usize`, then the tenant's default at index 3.
    tenants: HashMap<String, [Option<Vec<usize>>; 4]>,
}

impl RouteTable {
    fn new(r: crate::providers::config::Routes) -> RouteTable {
        let mut tenants: HashMap<String, [Option<Vec<usize>>; 4]> = HashMap::new();
        for ((tenant, category), route) in r.tenants {
            let slot = category.map_or(3, |c| c as usize);
            tenants.entry(tenant).or_default()[slot] = Some(route);
        }
        RouteTable {
            default: r.default,
            tenants,
        }
    }
}

pub use crate::model::valid_locale;

/// What the policy decides for one message at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Not before `until`; `reason` is the event's reason (`quiet_hours`).
    Defer {
        until: Timestamp,
        /// End of the open interval that starts at `until`, to spread
        /// releases inside it.
        closes_at: Timestamp,
        reason: Reason,
    },
    Suppress {
        reason: Reason,
    },
}

/// The decision with its explanation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub zones: Vec<Zone>,
    pub fired: Vec<Fired>,
    /// Frequency caps that apply if the message is sent (checked against
    /// Redis by the caller, batched).
    pub caps: Vec<Arc<CapRule>>,
}

/// The facts a decision is made on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub tenant: &'a str,
    pub to: u64,
    pub category: Category,
    pub recipient_tz: Option<&'a str>,
    pub recipient_state: Option<&'a str>,
    pub at: Timestamp,
    /// Evaluate as if this consent were on file (`/v1/policy/evaluate`).
    pub consent: Option<ConsentKind>,
    /// Report the rules behind an *allowed* message too (`fired`, `zones`).
    /// The dispatch path says no: it keeps reports only for messages it
    /// holds, and those are evaluated again with reports.
    pub explain: bool,
}

static RULE_REVOKED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("consent-revoked"));
static RULE_REVIEW: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("consent-review-hold"));
static RULE_MISSING: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("consent-required"));
static RULE_ATTESTED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("consent-attested"));
static RULE_ON_FILE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("consent-on-file"));
static CITE_REVOKE: LazyLock<Arc<str>> =
    LazyLock::new(|| Arc::from("47 CFR 64.1200(a)(10)-(11); 12 CFR 1006.14(h)"));
static CITE_EXPRESS: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("47 USC 227(b)(1)(A)(iii)"));
static CITE_WRITTEN: LazyLock<Arc<str>> =
    LazyLock::new(|| Arc::from("47 CFR 64.1200(a)(2), (f)(9)"));

impl Policy {
    /// Compile the rule tables and tenant sections from config files
    /// (tests and tools: no routes, no throttles); errors name the key.
    pub fn build(
        c: &ComplianceSection,
        tenants: std::collections::BTreeMap<String, TenantSection>,
    ) -> Result<Policy, ConfigError> {
        let rules = match &c.rules_file {
            None => Rules::shipped(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    key_err("compliance.rules_file", format!("cannot read {path}: {e}"))
                })?;
                Rules::from_toml_str(&text)
                    .map_err(|e| key_err("compliance.rules_file", format!("{path}: {e}")))?
            }
        };
        Policy::assemble(Parts {
            rules,
            release_spread_secs: c.release_spread_secs,
            release_spread_key: "compliance.release_spread_secs",
            tenants,
            routes: crate::providers::config::Routes {
                default: vec![0],
                tenants: Vec::new(),
            },
            throttles: Default::default(),
            version: 0,
        })
    }

    /// Compile validated parts into the policy the dispatch path reads.
    pub(crate) fn assemble(p: Parts) -> Result<Policy, ConfigError> {
        let Parts {
            rules,
            release_spread_secs,
            release_spread_key,
            tenants,
            routes,
            throttles,
            version,
        } = p;
        if release_spread_secs > 3600 {
            return Err(key_err(release_spread_key, "must be at most 3600"));
        }
        let (default_tenant, _) = TenantPolicy::build("tenants.default", TenantSection::default())?;
        let mut by_sender = HashMap::new();
        let mut declared = hashbrown::HashSet::new();
        let mut compiled = HashMap::with_capacity(tenants.len());
        for (name, section) in tenants {
            let key = format!("tenants.{name}");
            if !crate::model::valid_tenant(&name) {
                return Err(key_err(key, "not a valid tenant name"));
            }
            let (tp, senders) = TenantPolicy::build(&key, section)?;
            if !senders.is_empty() {
                declared.insert(name.clone());
            }
            for n in senders {
                if let Some(other) = by_sender.get(&n) {
                    return Err(key_err(
                        format!("{key}.senders"),
                        format!("{n} is already a sender of tenant `{other}`"),
                    ));
                }
                by_sender.insert(n, name.clone());
            }
            compiled.insert(name, tp);
        }
        Ok(Policy {
            caps: rules.caps().iter().cloned().map(Arc::new).collect(),
            rules,
            tenants: compiled,
            default_tenant,
            by_sender,
            declared,
            release_spread_ms: (release_spread_secs * 1000) as i64,
            version,
            routes: RouteTable::new(routes),
            throttles,
            templates: HashMap::new(),
            schedules: HashMap::new(),
            signal_rules: HashMap::new(),
            experiments: HashMap::new(),
        })
    }

    /// The providers (slot indices, failover order) a tenant's messages of
    /// one category try: the tenant's category route, else the tenant's
    /// default, else `routes.default`. No allocation.
    #[inline]
    pub fn route(&self, tenant: &str, category: Category) -> &[usize] {
        if let Some(r) = self.routes.tenants.get(tenant)
            && let Some(route) = r[category as usize].as_ref().or(r[3].as_ref())
        {
            return route;
        }
        &self.routes.default
    }

    /// A tenant's template `name` at `version` (`None`: its newest).
    pub fn template(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Option<&crate::content::templates::Template> {
        self.template_or_draft(tenant, name, version)
            .filter(|t| !t.draft)
            .or_else(|| match version {
                // The newest published one when the newest is a draft.
                None => self
                    .templates
                    .get(tenant)
                    .and_then(|t| t.get(name))
                    .and_then(|v| v.iter().rev().find(|t| !t.draft))
                    .or_else(|| schedules::built_in_template(name, None)),
                Some(_) => None,
            })
    }

    /// Like [`Policy::template`], drafts included (`None`: the newest
    /// version, draft or not): what `template get` and `preview` show.
    pub fn template_or_draft(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Option<&crate::content::templates::Template> {
        let Some(versions) = self.templates.get(tenant).and_then(|t| t.get(name)) else {
            return schedules::built_in_template(name, version);
        };
        match version {
            None => versions.last(),
            Some(v) => versions
                .iter()
                .find(|t| t.version == v)
                .or_else(|| schedules::built_in_template(name, Some(v))),
        }
    }

    /// A tenant's reminder schedule `name`: its own, else the built-in one.
    pub fn schedule(&self, tenant: &str, name: &str) -> Option<&schedules::Schedule> {
        self.schedules
            .get(tenant)
            .and_then(|s| s.get(name))
            .or_else(|| schedules::BUILT_IN_SET.schedules.get(name))
    }

    /// The experiment on a tenant's template, if one runs (or has ended
    /// on a winner).
    #[inline]
    pub fn experiment_on(&self, tenant: &str, template: &str) -> Option<&experiments::Experiment> {
        if self.experiments.is_empty() {
            return None;
        }
        self.experiments.get(tenant)?.get(template)
    }

    /// A tenant's experiment by its name.
    pub fn experiment(&self, tenant: &str, name: &str) -> Option<&experiments::Experiment> {
        self.experiments
            .get(tenant)?
            .values()
            .find(|e| &*e.name == name)
    }

    /// Add a tenant's compiled experiment.
    pub(crate) fn set_experiment(&mut self, tenant: &str, e: experiments::Experiment) {
        self.experiments
            .entry(tenant.to_string())
            .or_default()
            .insert(e.template.to_string(), e);
    }

    /// The tenant's rule for `event`, when its policy names it.
    pub fn signal_actions(&self, tenant: &str, event: &str) -> Option<&[signal_rules::Action]> {
        self.signal_rules
            .get(tenant)
            .and_then(|r| r.get(event))
            .map(Vec::as_slice)
    }

    /// Set a tenant's signal rules.
    pub(crate) fn set_signal_rules(
        &mut self,
        tenant: &str,
        rules: std::collections::HashMap<String, Vec<signal_rules::Action>>,
    ) {
        self.signal_rules
            .insert(tenant.to_string(), rules.into_iter().collect());
    }

    /// Add a tenant's compiled schedule.
    pub(crate) fn set_schedule(&mut self, tenant: &str, s: schedules::Schedule) {
        self.schedules
            .entry(tenant.to_string())
            .or_default()
            .insert(s.name.to_string(), s);
    }

    /// The templates a tenant has (its own and the built-in ones), each
    /// name's versions oldest first.
    pub fn templates_of(
        &self,
        tenant: &str,
    ) -> Vec<(&str, Vec<&crate::content::templates::Template>)> {
        let mut out: std::collections::BTreeMap<&str, Vec<&crate::content::templates::Template>> =
            std::collections::BTreeMap::new();
        for (name, v) in &schedules::BUILT_IN_SET.templates {
            out.insert(name.as_str(), v.iter().collect());
        }
        if let Some(own) = self.templates.get(tenant) {
            for (name, v) in own {
                out.entry(name.as_str()).or_default().extend(v.iter());
            }
        }
        out.into_iter().collect()
    }

    /// Add a tenant's compiled template versions (oldest first).
    pub(crate) fn set_templates(
        &mut self,
        tenant: &str,
        name: &str,
        versions: Vec<crate::content::templates::Template>,
    ) {
        self.templates
            .entry(tenant.to_string())
            .or_default()
            .insert(name.to_string(), versions);
    }

    /// The tenants that have a section, sorted.
    pub fn tenant_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tenants.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The shipped policy with no tenant settings (tests, tools).
    pub fn shipped() -> Policy {
        Policy::build(
            &ComplianceSection::default(),
            std::collections::BTreeMap::new(),
        )
        .unwrap_or_else(|e| panic!("the shipped rule table is invalid: {e}"))
    }

    #[inline]
    pub fn tenant(&self, tenant: &str) -> &TenantPolicy {
        self.tenants.get(tenant).unwrap_or(&self.default_tenant)
    }

    /// The tenant owning a sender (as `model::parse_sender` spells it):
    /// replies to it belong to that tenant.
    pub fn tenant_of_sender(&self, sender: &str) -> Option<&str> {
        self.by_sender.get(sender).map(String::as_str)
    }

    /// Whether `tenant` declared its senders (`tenants.<name>.senders`):
    /// then it may send from those only.
    #[inline]
    pub fn declares_senders(&self, tenant: &str) -> bool {
        !self.declared.is_empty() && self.declared.contains(tenant)
    }

    /// Decide consent and quiet hours for one message at `input.at`. Pure:
    /// the same function serves the dispatch path and `/v1/policy/evaluate`.
    /// Frequency caps need Redis: the ones that apply are returned in
    /// `caps` for the caller to check.
    pub fn evaluate(&self, input: &Input<'_>, on_file: NumberState) -> Evaluation {
        self.evaluate_for(self.tenant(input.tenant), input, on_file)
    }

    /// [`Policy::evaluate`] with the tenant's policy already looked up.
    pub fn evaluate_for(
        &self,
        tp: &TenantPolicy,
        input: &Input<'_>,
        on_file: NumberState,
    ) -> Evaluation {
        if !input.explain {
            let quick = self.decide(tp, input, on_file, false);
            if quick.verdict == Verdict::Allow {
                return quick;
            }
        }
        self.decide(tp, input, on_file, true)
    }

    fn decide(
        &self,
        tp: &TenantPolicy,
        input: &Input<'_>,
        on_file: NumberState,
        explain: bool,
    ) -> Evaluation {
        let mut fired = Vec::new();
        let state = match input.consent {
            Some(kind) => PurposeState::Granted(kind),
            None => on_file.get(input.category),
        };
        if let Some(reason) = consent(tp, input.category, state, &mut fired, explain) {
            return Evaluation {
                verdict: Verdict::Suppress { reason },
                zones: Vec::new(),
                fired,
                caps: Vec::new(),
            };
        }
        let granted = match state {
            PurposeState::Granted(k) => Some(k),
            // Attested prior express consent (docs/compliance.md default).
            _ => Some(ConsentKind::Express)
                .filter(|_| tp.consent[input.category as usize].unknown == UnknownNumber::Allow),
        };
        let tz = input.recipient_tz.and_then(Zone::by_name);
        let st = input.recipient_state.and_then(|s| s.parse().ok());
        let mut cands = zones::candidates(input.to, tz, st);
        if cands.zones.is_empty()
            && let Some(z) = tp.time_zone
        {
            cands = zones::Candidates::from_parts(&[z], &[]);
        }
        let verdict = match quiet_hours::evaluate(
            &self.rules,
            &tp.windows,
            input.category,
            &cands,
            granted,
            input.at,
            explain,
        ) {
            quiet_hours::QuietVerdict::Open { fired: f, .. } => {
                fired.extend(f);
                Verdict::Allow
            }
            quiet_hours::QuietVerdict::Closed {
                opens_at,
                closes_at,
                fired: f,
            } => {
                fired.extend(f);
                Verdict::Defer {
                    until: opens_at,
                    closes_at,
                    reason: Reason::QuietHours,
                }
            }
            quiet_hours::QuietVerdict::Never { fired: f } => {
                fired.extend(f);
                Verdict::Suppress {
                    reason: Reason::NoSendingWindow,
                }
            }
        };
        let caps = if verdict == Verdict::Allow {
            self.caps
                .iter()
                .filter(|c| {
                    c.categories.contains(&input.category)
                        && c.states.iter().any(|s| cands.states.contains(s))
                })
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Evaluation {
            verdict,
            zones: if explain {
                cands.zones.to_vec()
            } else {
                Vec::new()
            },
            fired,
            caps,
        }
    }
}

/// The consent rules: `Some(reason)` suppresses.
fn consent(
    tp: &TenantPolicy,
    category: Category,
    state: PurposeState,
    fired: &mut Vec<Fired>,
    explain: bool,
) -> Option<Reason> {
    let policy = tp.consent[category as usize];
    let cite_needed = match policy.requires {
        ConsentKind::Express => &CITE_EXPRESS,
        ConsentKind::ExpressWritten => &CITE_WRITTEN,
    };
    let (rule, citation, effect, detail, reason) = match state {
        // 47 CFR 64.1200(a)(10): a revocation by any reasonable means is
        // honoured, here at once and fleet-wide ((a)(11) allows 10 business
        // days at most).
        PurposeState::Revoked => (
            &RULE_REVOKED,
            &CITE_REVOKE,
            Effect::Suppress,
            format!("consent for {} was revoked", category.as_str()).into(),
            Some(Reason::OptedOut),
        ),
        // An unclear reply is judged by a reasonable person; until someone
        // has, sends hold.
        PurposeState::Review => (
            &RULE_REVIEW,
            &CITE_REVOKE,
            Effect::Suppress,
            "an ambiguous reply is under review".into(),
            Some(Reason::ReviewHold),
        ),
        PurposeState::Granted(kind) if kind >= policy.requires => (
            &RULE_ON_FILE,
            cite_needed,
            Effect::Allow,
            match kind {
                ConsentKind::Express => "express consent on file".into(),
                ConsentKind::ExpressWritten => "express_written consent on file".into(),
            },
            None,
        ),
        PurposeState::Granted(kind) => (
            &RULE_MISSING,
            cite_needed,
            Effect::Suppress,
            format!(
                "{} needs {} consent; {} on file",
                category.as_str(),
                policy.requires.as_str(),
                kind.as_str()
            )
            .into(),
            Some(Reason::NoConsent),
        ),
        PurposeState::Unknown => match policy.unknown {
            UnknownNumber::Allow => (
                &RULE_ATTESTED,
                &CITE_EXPRESS,
                Effect::Allow,
                "no record: prior express consent attested by the tenant".into(),
                None,
            ),
            UnknownNumber::Suppress => (
                &RULE_MISSING,
                cite_needed,
                Effect::Suppress,
                format!(
                    "{} needs {} consent on file; none recorded",
                    category.as_str(),
                    policy.requires.as_str()
                )
                .into(),
                Some(Reason::NoConsent),
            ),
        },
    };
    if explain {
        fired.push(Fired {
            rule: Arc::clone(rule),
            citation: Arc::clone(citation),
            effect,
            detail,
        });
    }
    reason
}

/// Render a number for messages.
pub fn render(number: u64) -> String {
    E164::render(number).as_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatch path asks without reports: an allowed message costs no
    /// report, a held one gets exactly the reports an explained evaluation
    /// gives (its trail shows them).
    #[test]
    fn reports_only_when_asked_or_held() {
        let policy = Policy::shipped();
        let input = |at: &str, explain: bool| Input {
            tenant: "acme",
            to: 12_125_550_123,
            category: Category::Collections,
            recipient_tz: None,
            recipient_state: Some("FL"),
            at: at.parse().expect("ts"),
            consent: None,
            explain,
        };
        // Wednesday 11:00 in New York: open everywhere.
        let day = "2026-06-03T15:00:00Z";
        let quiet = policy.evaluate(&input(day, false), NumberState::default());
        let told = policy.evaluate(&input(day, true), NumberState::default());
        assert_eq!(quiet.verdict, Verdict::Allow);
        assert_eq!(told.verdict, Verdict::Allow);
        assert!(quiet.fired.is_empty() && quiet.zones.is_empty());
        assert!(!told.fired.is_empty() && !told.zones.is_empty());
        assert_eq!(format!("{:?}", quiet.caps), format!("{:?}", told.caps));
        // 03:00 in New York: deferred, with the same reports either way.
        let night = "2026-06-03T07:00:00Z";
        let quiet = policy.evaluate(&input(night, false), NumberState::default());
        let told = policy.evaluate(&input(night, true), NumberState::default());
        assert!(
            matches!(quiet.verdict, Verdict::Defer { .. }),
            "{:?}",
            quiet.verdict
        );
        assert_eq!(quiet.verdict, told.verdict);
        assert_eq!(format!("{:?}", quiet.fired), format!("{:?}", told.fired));
        assert!(!quiet.fired.is_empty());
    }
}
