//! The live policy as one document: rule tables, tenants, routes and
//! throttle overrides, in TOML with the same sections as the files they
//! are seeded from. The policy store (`policy::store`) keeps every version
//! of it in Redis; every instance compiles the current one with
//! [`compile`], the same code that validates a change before it is stored.
//!
//! ```toml
//! [compliance]
//! release_spread_secs = 600
//!
//! [rules]                      # config/compliance.toml, nested
//! [[rules.window]]
//! id = "tcpa-calling-hours"
//! # …
//!
//! [tenants.acme]               # herald.toml's [tenants.<name>]
//! senders = ["+14155552671"]
//!
//! [routes]                     # herald.toml's [routes]
//! default = ["twilio"]
//!
//! [throttles."carrier:att"]    # live limits, as `heraldctl throttle set` writes them
//! segments = 10
//! per = "second"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{ComplianceSection, TenantSection};
use super::rules::{Rules, WindowRule};
use super::schedules::{self, Schedule, ScheduleSection};
use super::{Parts, Policy};
use crate::check::{ConfigError, key_err};
use crate::content::templates::{Template, TemplateSection};
use crate::providers::config::RoutesSection;
use crate::throttle::live::{self, Override};

/// The whole live policy, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(default)]
    pub compliance: Settings,
    /// The rule table (windows, state day rules, holidays, caps), in the
    /// format of `config/compliance.toml`. Required: a document without it
    /// would have no quiet hours at all.
    pub rules: toml::Table,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, TenantSection>,
    pub routes: RoutesSection,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub throttles: BTreeMap<String, Override>,
    /// `[[templates.<tenant>.<name>]]`: one table per published version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, BTreeMap<String, Vec<TemplateSection>>>,
    /// `[schedules.<tenant>.<name>]`: reminder schedules (the built-in
    /// `payment_reminder` needs no entry).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schedules: BTreeMap<String, BTreeMap<String, ScheduleSection>>,
    /// `[signals.<tenant>]`: event → actions (`signals`); events a tenant
    /// does not name follow the built-in rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub signals: BTreeMap<String, super::signal_rules::RulesSection>,
    /// `[experiments.<tenant>.<name>]`: A/B variants of a template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub experiments: BTreeMap<String, BTreeMap<String, super::experiments::ExperimentSection>>,
}

/// `[compliance]` of the document: the settings that are policy, not
/// plumbing (`rules_file` and `feed_block_ms` stay in herald.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Deferred messages are spread over this many seconds after a window
    /// opens.
    pub release_spread_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            release_spread_secs: ComplianceSection::default().release_spread_secs,
        }
    }
}

/// What a document is checked against besides itself: this instance's
/// providers and carrier table.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Provider names in slot order.
    pub providers: Vec<String>,
    /// Carrier lane names (`None`: throttling is off, lanes not checked).
    pub carriers: Option<Vec<String>>,
}

/// A part of the document, for the role a change of it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Compliance,
    Rules,
    Tenants,
    Routes,
    Throttles,
    Templates,
    Schedules,
    Signals,
    Experiments,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Compliance => "compliance",
            Section::Rules => "rules",
            Section::Tenants => "tenants",
            Section::Routes => "routes",
            Section::Throttles => "throttles",
            Section::Templates => "templates",
            Section::Schedules => "schedules",
            Section::Signals => "signals",
            Section::Experiments => "experiments",
        }
    }
}

impl Document {
    /// The document the config files describe: seeds version 1 of an empty
    /// store.
    pub fn from_files(
        compliance: &ComplianceSection,
        tenants: &BTreeMap<String, TenantSection>,
        routes: &RoutesSection,
    ) -> Result<Document, ConfigError> {
        let text = match &compliance.rules_file {
            None => super::rules::SHIPPED.to_string(),
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                key_err("compliance.rules_file", format!("cannot read {path}: {e}"))
            })?,
        };
        let rules: toml::Table = toml::from_str(&text)
            .map_err(|e| key_err("compliance.rules_file", e.message().trim_end().to_string()))?;
        Ok(Document {
            compliance: Settings {
                release_spread_secs: compliance.release_spread_secs,
            },
            rules,
            tenants: tenants.clone(),
            routes: routes.clone(),
            throttles: BTreeMap::new(),
            templates: BTreeMap::new(),
            schedules: BTreeMap::new(),
            signals: BTreeMap::new(),
            experiments: BTreeMap::new(),
        })
    }

    /// Parse a document; errors name the key path and line.
    pub fn parse(text: &str) -> Result<Document, ConfigError> {
        let line_of = |offset: usize| {
            text.get(..offset)
                .map_or(0, |s| s.matches('\n').count() + 1)
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(s.start));
            ConfigError::Syntax(format!("{} (line {line})", e.message().trim_end()))
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.inner();
            let mut reason = inner.message().trim_end().to_owned();
            if let Some(span) = inner.span() {
                reason = format!("{reason} (line {})", line_of(span.start));
            }
            let path = e.path().to_string();
            key_err(
                if path == "." {
                    "(document)".into()
                } else {
                    path
                },
                reason,
            )
        })
    }

    /// The document as TOML (what `policy get` prints and the store keeps).
    pub fn to_text(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot be written: {e}\n"))
    }

    /// The rule table alone, as a `compliance.toml` (`policy export`).
    pub fn rules_text(&self) -> String {
        toml::to_string_pretty(&self.rules).unwrap_or_default()
    }

    /// The parts that differ between `self` and `next`.
    pub fn changed(&self, next: &Document) -> Vec<Section> {
        let mut v = Vec::new();
        if self.compliance != next.compliance {
            v.push(Section::Compliance);
        }
        if self.rules != next.rules {
            v.push(Section::Rules);
        }
        if self.tenants != next.tenants {
            v.push(Section::Tenants);
        }
        if self.routes != next.routes {
            v.push(Section::Routes);
        }
        if self.throttles != next.throttles {
            v.push(Section::Throttles);
        }
        if self.templates != next.templates {
            v.push(Section::Templates);
        }
        if self.schedules != next.schedules {
            v.push(Section::Schedules);
        }
        if self.signals != next.signals {
            v.push(Section::Signals);
        }
        if self.experiments != next.experiments {
            v.push(Section::Experiments);
        }
        v
    }

    /// Checks a *change* from `base` must pass on top of [`compile`] (a
    /// seed from files is not held to them, so an existing config keeps
    /// starting): a route names a tenant the document declares, and a
    /// published template version is neither edited nor removed (messages
    /// and sequences pin it: publish a new version instead).
    pub fn check_change(&self, base: &Document) -> Result<(), ConfigError> {
        if self.rules.is_empty() && !base.rules.is_empty() {
            return Err(key_err(
                "rules",
                "the change empties the rule table: that would be no quiet hours and no caps at all",
            ));
        }
        for (tenant, names) in &base.templates {
            for (name, versions) in names {
                // A draft may be edited or removed; a published version not.
                for old in versions.iter().filter(|t| !t.draft) {
                    let next = self
                        .templates
                        .get(tenant)
                        .and_then(|n| n.get(name))
                        .and_then(|v| {
                            v.iter()
                                .position(|t| t.version == old.version)
                                .map(|i| (i, &v[i]))
                        });
                    match next {
                        None => {
                            return Err(key_err(
                                format!("templates.{tenant}.{name}"),
                                format!(
                                    "version {} is published and cannot be removed",
                                    old.version
                                ),
                            ));
                        }
                        Some((i, t)) if t != old => {
                            return Err(key_err(
                                format!("templates.{tenant}.{name}[{i}]"),
                                format!(
                                    "version {} is published and cannot be edited: add version {} instead",
                                    old.version,
                                    versions.iter().map(|t| t.version).max().unwrap_or(0) + 1
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        for (tenant, named) in &base.experiments {
            for (name, old) in named {
                if let Some(new) = self.experiments.get(tenant).and_then(|n| n.get(name)) {
                    super::experiments::check_change(
                        &format!("experiments.{tenant}.{name}"),
                        old,
                        new,
                    )
                    .map_err(|(p, why)| key_err(p, why))?;
                }
            }
        }
        for tenant in self.routes.tenants.keys() {
            if !self.tenants.contains_key(tenant) {
                return Err(key_err(
                    format!("routes.tenants.{tenant}"),
                    format!("unknown tenant `{tenant}`: declare [tenants.{tenant}] first"),
                ));
            }
        }
        Ok(())
    }
}

/// Compile `doc` as version `version`: every error names its key path
/// (`tenants.acme.windows[0].end`, `throttles."carrier:att".segments`).
pub fn compile(doc: &Document, version: u64, ctx: &Context) -> Result<Policy, ConfigError> {
    let rules = Rules::from_value("rules", toml::Value::Table(doc.rules.clone()))
        .map_err(|e| key_err(e.path, e.reason))?;
    let names: Vec<&str> = ctx.providers.iter().map(String::as_str).collect();
    let routes = doc.routes.validate_names(&names)?;
    for (lane, o) in &doc.throttles {
        let key = format!("throttles.\"{lane}\"");
        o.limit().map_err(|e| key_err(&key, e))?;
        match live::parse_lane(lane) {
            Some(live::Lane::Carrier(c)) => {
                if let Some(known) = &ctx.carriers
                    && !known.iter().any(|k| k == c)
                {
                    return Err(key_err(
                        key,
                        format!("no carrier `{c}` in the carrier table"),
                    ));
                }
            }
            Some(live::Lane::Sender(s)) => {
                if s.starts_with('+') && crate::model::parse_sender(s).is_err() {
                    return Err(key_err(key, format!("`{s}` is not an E.164 sender")));
                }
            }
            None => {
                return Err(key_err(
                    key,
                    "a lane is carrier:<name> or sender:<number or service id>",
                ));
            }
        }
    }
    for (name, t) in &doc.tenants {
        if t.windows.is_empty() {
            continue;
        }
        let key = format!("tenants.{name}.windows");
        let windows = WindowRule::parse_tenant_windows(&key, toml::Value::Array(t.windows.clone()))
            .map_err(|e| key_err(e.path, e.reason))?;
        if let Some((category, ids)) = rules.never_open(&windows) {
            return Err(key_err(
                key,
                format!(
                    "{} texts could never be sent: windows {} share no open hour on any day",
                    category.as_str(),
                    ids.iter()
                        .map(|i| format!("`{i}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let mut policy = Policy::assemble(Parts {
        rules,
        release_spread_secs: doc.compliance.release_spread_secs,
        release_spread_key: "compliance.release_spread_secs",
        tenants: doc.tenants.clone(),
        routes,
        throttles: doc.throttles.clone(),
        version,
    })?;
    for (tenant, names) in &doc.templates {
        if !crate::model::valid_tenant(tenant) {
            return Err(key_err(
                format!("templates.{tenant}"),
                "not a valid tenant name",
            ));
        }
        for (name, versions) in names {
            let mut compiled: Vec<Template> = Vec::with_capacity(versions.len());
            for (i, s) in versions.iter().enumerate() {
                let key = format!("templates.{tenant}.{name}[{i}]");
                let built_in = schedules::built_in_max_version(name);
                if s.version <= built_in {
                    return Err(key_err(
                        format!("{key}.version"),
                        format!(
                            "`{name}` is a built-in template whose versions go to {built_in}: start at {}",
                            built_in + 1
                        ),
                    ));
                }
                if let Some(prev) = compiled.last()
                    && s.version <= prev.version
                {
                    return Err(key_err(
                        format!("{key}.version"),
                        format!("versions go up: {} after {}", s.version, prev.version),
                    ));
                }
                let tp = policy.tenant(tenant);
                let t = Template::compile(&key, name, s, &tp.locale, &tp.content.blocked)
                    .map_err(|(path, why)| key_err(path, why))?;
                compiled.push(t);
            }
            policy.set_templates(tenant, name, compiled);
        }
    }
    for (tenant, named) in &doc.schedules {
        if !crate::model::valid_tenant(tenant) {
            return Err(key_err(
                format!("schedules.{tenant}"),
                "not a valid tenant name",
            ));
        }
        for (name, s) in named {
            let key = format!("schedules.{tenant}.{name}");
            let sch = Schedule::compile(&key, name, s, |t| {
                policy.template(tenant, t, None).is_some()
            })
            .map_err(|(path, why)| key_err(path, why))?;
            policy.set_schedule(tenant, sch);
        }
    }
    for (tenant, rules) in &doc.signals {
        if !crate::model::valid_tenant(tenant) {
            return Err(key_err(
                format!("signals.{tenant}"),
                "not a valid tenant name",
            ));
        }
        let key = format!("signals.{tenant}");
        let compiled = super::signal_rules::check_rules(
            &key,
            rules,
            |s| policy.schedule(tenant, s).is_some(),
            |t| policy.template(tenant, t, None).is_some(),
        )
        .map_err(|(path, why)| key_err(path, why))?;
        policy.set_signal_rules(tenant, compiled);
    }
    for (tenant, named) in &doc.experiments {
        let mut on = std::collections::BTreeSet::new();
        for (name, s) in named {
            let key = format!("experiments.{tenant}.{name}");
            if policy.template(tenant, &s.template, None).is_none() {
                return Err(key_err(
                    format!("{key}.template"),
                    format!("no published template `{}`", s.template),
                ));
            }
            if !on.insert(s.template.as_str()) {
                return Err(key_err(
                    format!("{key}.template"),
                    format!("another experiment of this tenant is on `{}`", s.template),
                ));
            }
            let e = super::experiments::Experiment::compile(&key, name, s, |t, v| {
                policy.template(tenant, t, Some(v)).is_some()
            })
            .map_err(|(path, why)| key_err(path, why))?;
            policy.set_experiment(tenant, e);
        }
    }
    Ok(policy)
}

/// A unified diff of two documents' text, `from` and `to` naming them.
pub fn diff(from_name: &str, from: &str, to_name: &str, to: &str) -> String {
    similar::TextDiff::from_lines(from, to)
        .unified_diff()
        .context_radius(3)
        .header(from_name, to_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            providers: vec!["twilio".into(), "sns".into()],
            carriers: Some(vec!["att".into(), "unknown".into()]),
        }
    }

    fn base() -> Document {
        let routes = RoutesSection {
            default: vec!["twilio".into()],
            tenants: BTreeMap::new(),
        };
        Document::from_files(&ComplianceSection::default(), &BTreeMap::new(), &routes)
            .expect("the shipped files make a document")
    }

    #[test]
    fn the_shipped_files_make_a_document_that_round_trips() {
        let doc = base();
        let text = doc.to_text();
        let back = Document::parse(&text).expect("its own text parses");
        assert_eq!(back, doc);
        let p = compile(&back, 3, &ctx()).expect("it compiles");
        assert_eq!(p.version, 3);
        assert_eq!(p.rules.windows().len(), Rules::shipped().windows().len());
    }

    /// Each invalid change is refused with its key path and reason (the
    /// list of issue 13: negative rate, unknown zone, windows that never
    /// overlap, a cap without a window, unknown tenant, a route to an
    /// unknown provider, a sender owned by two tenants).
    #[test]
    fn invalid_documents_name_the_path_and_reason() {
        let good = base().to_text();
        let cases: &[(&str, &str, &str)] = &[
            (
                "[throttles.\"carrier:att\"]\nsegments = -5\nper = \"second\"\n",
                "throttles.carrier:att.segments",
                "",
            ),
            (
                "[throttles.\"carrier:nope\"]\nsegments = 5\nper = \"second\"\n",
                "throttles.\"carrier:nope\"",
                "no carrier `nope`",
            ),
            (
                "[throttles.\"carrier:att\"]\nsegments = 5\nper = \"fortnight\"\n",
                "throttles.\"carrier:att\"",
                "fortnight",
            ),
            (
                "[tenants.acme]\ntime_zone = \"Mars/Olympus\"\n",
                "tenants.acme.time_zone",
                "unknown time zone",
            ),
            (
                "[tenants.acme]\nlocale = \"english\"\n",
                "tenants.acme.locale",
                "not a locale",
            ),
            (
                "[[tenants.acme.windows]]\nid = \"late\"\ncategories = [\"marketing\"]\nstart = \"21:30\"\nend = \"23:00\"\ncitation = \"house rule\"\n",
                "tenants.acme.windows",
                "could never be sent",
            ),
            (
                "[[tenants.acme.windows]]\nid = \"x\"\ncategories = [\"marketing\"]\nstart = \"10:00\"\nend = \"09:00\"\ncitation = \"c\"\n",
                "tenants.acme.windows[0].end",
                "not after",
            ),
            (
                "[routes.tenants.acme]\nmarketing = [\"carrier-pigeon\"]\n",
                "routes.tenants.acme.marketing",
                "carrier-pigeon",
            ),
            (
                "[tenants.acme]\nsenders = [\"+14155552671\"]\n[tenants.bank]\nsenders = [\"+14155552671\"]\n",
                "tenants.bank.senders",
                "already a sender of tenant `acme`",
            ),
            (
                "[tenants.acme]\ncolour = \"blue\"\n",
                "tenants.acme.colour",
                "unknown field `colour`",
            ),
        ];
        for (extra, path, reason) in cases {
            let text = format!("{good}\n{extra}");
            let err = Document::parse(&text)
                .and_then(|d| compile(&d, 2, &ctx()).map(|_| ()))
                .expect_err(extra);
            let msg = err.to_string();
            let want_path = path.replace(".carrier:att.", ".\"carrier:att\".");
            assert!(
                msg.contains(&format!("`{path}`")) || msg.contains(&format!("`{want_path}`")),
                "{extra}: {msg}"
            );
            assert!(msg.contains(reason), "{extra}: {msg}");
        }
        // A cap without its window (`window_hours`) is refused by the rule
        // table's own parser, with the path into `[rules]`.
        let mut doc = base();
        let caps = doc
            .rules
            .get_mut("cap")
            .and_then(|c| c.as_array_mut())
            .expect("the shipped table has caps");
        if let Some(t) = caps[0].as_table_mut() {
            t.remove("window_hours");
        }
        let msg = compile(&doc, 2, &ctx()).expect_err("no window").to_string();
        assert!(
            msg.contains("rules.cap[0]") && msg.contains("window_hours"),
            "{msg}"
        );
        // No [rules] at all, or an empty one, would mean no quiet hours:
        // refused.
        let msg = Document::parse("[routes]\ndefault = [\"twilio\"]\n")
            .expect_err("rules are required")
            .to_string();
        assert!(msg.contains("rules"), "{msg}");
        let mut doc = base();
        doc.rules = toml::Table::new();
        let msg = doc
            .check_change(&base())
            .expect_err("empty rules")
            .to_string();
        assert!(
            msg.contains("`rules`") && msg.contains("no quiet hours"),
            "{msg}"
        );
        // A route for a tenant the document does not declare.
        let mut doc = base();
        doc.routes
            .tenants
            .insert("ghost".into(), Default::default());
        let msg = doc
            .check_change(&base())
            .expect_err("unknown tenant")
            .to_string();
        assert!(
            msg.contains("routes.tenants.ghost") && msg.contains("unknown tenant"),
            "{msg}"
        );
    }

    const TEMPLATE: &str = r#"
[[templates.acme.payment_due]]
version = 1
category = "collections"
vars = { name = "text", amount = "money", due_date = "date" }
text.en = "Hi {name}, {amount} is due {due_date}."
text.es = "Hola {name}, {amount} vence el {due_date}."
"#;

    #[test]
    fn templates_are_compiled_and_published_versions_are_immutable() {
        let good = base().to_text();
        let doc = Document::parse(&format!(
            "{good}\n[tenants.acme]\nlocale = \"es-US\"\n{TEMPLATE}"
        ))
        .expect("parses");
        let p = compile(&doc, 2, &ctx()).expect("compiles");
        let t = p.template("acme", "payment_due", None).expect("there");
        assert_eq!(t.version, 1);
        assert!(p.template("acme", "payment_due", Some(2)).is_none());
        assert!(p.template("other", "payment_due", None).is_none());
        // An ill-formed version names its path.
        let bad = format!(
            "{good}\n{}",
            TEMPLATE.replace("{due_date}.\"\ntext.es", "{due}.\"\ntext.es")
        );
        let msg = Document::parse(&bad)
            .and_then(|d| compile(&d, 2, &ctx()).map(|_| ()))
            .expect_err("undeclared")
            .to_string();
        assert!(
            msg.contains("`templates.acme.payment_due[0].text.en`") && msg.contains("`{due}`"),
            "{msg}"
        );
        // Versions go up.
        let twice = format!("{good}\n{TEMPLATE}\n{TEMPLATE}");
        let msg = Document::parse(&twice)
            .and_then(|d| compile(&d, 2, &ctx()).map(|_| ()))
            .expect_err("same version twice")
            .to_string();
        assert!(
            msg.contains("payment_due[1].version") && msg.contains("versions go up"),
            "{msg}"
        );
        // Editing or removing a published version is refused; adding one is fine.
        let mut edited = doc.clone();
        if let Some(v) = edited
            .templates
            .get_mut("acme")
            .and_then(|n| n.get_mut("payment_due"))
        {
            v[0].text
                .insert("en".into(), "Hi {name}, pay {amount} by {due_date}.".into());
        }
        let msg = edited.check_change(&doc).expect_err("edited").to_string();
        assert!(
            msg.contains("payment_due[0]") && msg.contains("add version 2"),
            "{msg}"
        );
        let mut removed = doc.clone();
        removed.templates.clear();
        let msg = removed.check_change(&doc).expect_err("removed").to_string();
        assert!(msg.contains("cannot be removed"), "{msg}");
        let mut added = doc.clone();
        if let Some(v) = added
            .templates
            .get_mut("acme")
            .and_then(|n| n.get_mut("payment_due"))
        {
            let mut next = v[0].clone();
            next.version = 2;
            v.push(next);
        }
        added.check_change(&doc).expect("a new version is fine");
        assert_eq!(doc.changed(&added), vec![Section::Templates]);
        let p = compile(&added, 3, &ctx()).expect("compiles");
        assert_eq!(
            p.template("acme", "payment_due", None).map(|t| t.version),
            Some(2)
        );
        assert_eq!(
            p.template("acme", "payment_due", Some(1))
                .map(|t| t.version),
            Some(1)
        );
    }

    #[test]
    fn changed_names_the_sections_and_diff_shows_the_lines() {
        let a = base();
        let mut b = a.clone();
        b.throttles.insert(
            "carrier:att".into(),
            Override {
                segments: 5,
                per: "second".into(),
                burst: 0,
                set_at_ms: 0,
            },
        );
        assert_eq!(a.changed(&b), vec![Section::Throttles]);
        b.compliance.release_spread_secs = 60;
        assert_eq!(a.changed(&b), vec![Section::Compliance, Section::Throttles]);
        let d = diff("v1", &a.to_text(), "v2", &b.to_text());
        assert!(d.contains("--- v1") && d.contains("+++ v2"), "{d}");
        assert!(d.contains("+segments = 5"), "{d}");
        assert!(d.contains("-release_spread_secs = 600"), "{d}");
    }
}
