//! Reminder schedules: a named list of steps, each an offset in days from an
//! anchor date (a loan's due date), a local send time in the recipient's
//! zone, a template, and how late the step may still go (`max_late`).
//!
//! A schedule lives in the policy document (`[schedules.<tenant>.<name>]`)
//! and is checked by `document::compile` like every other section. One
//! schedule ships built in, `payment_reminder` (7, 3 and 1 days before the
//! due date, on it, and 1, 3 and 7 days after, at 10:00 local), with its
//! English and Spanish templates: every tenant has it even when the policy
//! defines no schedules, and a tenant's own `payment_reminder` replaces it.
//!
//! ```toml
//! [[schedules.acme.payment_reminder.steps]]
//! day = -7
//! at = "10:00"
//! template = "payment_reminder_before"
//! max_late = "8h"
//! ```
//!
//! Enrolment (`sequences`) turns a schedule and an anchor into one message
//! per step; editing a schedule changes only later enrolments.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::content::templates::{Template, TemplateSection};

/// One step as written in the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSection {
    /// Days from the anchor (negative: before it).
    pub day: i32,
    /// Local send time, `HH:MM`, in the recipient's zone.
    pub at: String,
    /// The template (the tenant's, else the built-in one).
    pub template: String,
    /// How long after its instant a step that could not go (quiet hours,
    /// an outage, a pause) may still be sent; after that it is skipped
    /// (`expired` / `max_late`). Default 8 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_late: Option<String>,
}

/// A schedule as written in the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    pub steps: Vec<StepSection>,
}

/// A compiled step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub day: i32,
    pub at: jiff::civil::Time,
    pub template: Box<str>,
    pub max_late_ms: i64,
}

/// A compiled schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: Box<str>,
    pub steps: Vec<Step>,
}

/// The most steps a schedule may have (step ids are `<id>/1` … `<id>/N`).
pub const MAX_STEPS: usize = 32;
/// `max_late` when a step does not say.
pub const DEFAULT_MAX_LATE_MS: i64 = 8 * 3_600_000;
/// Offsets beyond a year either way are a typo.
const MAX_DAY: i32 = 366;

impl Schedule {
    /// Compile a schedule; `key` is its path (`schedules.acme.payment_reminder`).
    /// `has_template` says whether the tenant (or the built-in set) has a
    /// template of that name.
    pub fn compile(
        key: &str,
        name: &str,
        s: &ScheduleSection,
        has_template: impl Fn(&str) -> bool,
    ) -> Result<Schedule, (String, String)> {
        if !valid_name(name) {
            return Err((
                key.to_string(),
                "a schedule name is 1–64 lower-case letters, digits and `_`".into(),
            ));
        }
        if s.steps.is_empty() {
            return Err((format!("{key}.steps"), "a schedule needs a step".into()));
        }
        if s.steps.len() > MAX_STEPS {
            return Err((
                format!("{key}.steps"),
                format!("{} steps; at most {MAX_STEPS}", s.steps.len()),
            ));
        }
        let mut steps = Vec::with_capacity(s.steps.len());
        for (i, st) in s.steps.iter().enumerate() {
            let k = format!("{key}.steps[{i}]");
            if st.day.abs() > MAX_DAY {
                return Err((
                    format!("{k}.day"),
                    format!("{} days from the anchor; at most {MAX_DAY}", st.day),
                ));
            }
            let at = parse_hhmm(&st.at).ok_or_else(|| {
                (
                    format!("{k}.at"),
                    format!("`{}` is not a local time `HH:MM`", st.at),
                )
            })?;
            if !has_template(&st.template) {
                return Err((
                    format!("{k}.template"),
                    format!("no template `{}` for this tenant", st.template),
                ));
            }
            let max_late_ms = match &st.max_late {
                None => DEFAULT_MAX_LATE_MS,
                Some(t) => parse_max_late(t).ok_or_else(|| {
                    (
                        format!("{k}.max_late"),
                        format!(
                            "`{t}` is not a duration between 1 minute and 7 days (`8h`, `90m`)"
                        ),
                    )
                })?,
            };
            let step = Step {
                day: st.day,
                at,
                template: st.template.as_str().into(),
                max_late_ms,
            };
            if let Some(prev) = steps.last()
                && order(prev) >= order(&step)
            {
                return Err((
                    k,
                    "steps go forward in time: each after the one before it".into(),
                ));
            }
            steps.push(step);
        }
        Ok(Schedule {
            name: name.into(),
            steps,
        })
    }
}

fn order(s: &Step) -> (i32, jiff::civil::Time) {
    (s.day, s.at)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn parse_hhmm(s: &str) -> Option<jiff::civil::Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse::<i8>().ok()?, m.parse::<i8>().ok()?);
    jiff::civil::Time::new(h, m, 0, 0).ok()
}

fn parse_max_late(s: &str) -> Option<i64> {
    // jiff's `SignedDuration` has no days (a day is not always 24 hours);
    // here a day of lateness is 24 hours.
    let ms = match s.strip_suffix('d') {
        Some(days) => i128::from(days.trim().parse::<u8>().ok()?) * 86_400_000,
        None => s.parse::<jiff::SignedDuration>().ok()?.as_millis(),
    };
    (60_000..=7 * 86_400_000)
        .contains(&ms)
        .then(|| i64::try_from(ms).ok())
        .flatten()
}

/// The built-in schedule and its templates, as a document fragment.
const BUILT_IN: &str = include_str!("builtin_schedules.toml");

/// The built-in set, parsed and compiled once.
pub struct BuiltIn {
    pub templates: BTreeMap<String, Vec<Template>>,
    pub schedules: BTreeMap<String, Schedule>,
    /// As written (the fragment shipped in the binary).
    pub text: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuiltInDoc {
    templates: BTreeMap<String, Vec<TemplateSection>>,
    schedules: BTreeMap<String, ScheduleSection>,
}

/// Built on first use. The fragment is part of the binary and checked by a
/// unit test, so a failure here is a build defect.
pub static BUILT_IN_SET: LazyLock<BuiltIn> = LazyLock::new(|| match built_in() {
    Ok(b) => b,
    Err(e) => panic!("built-in schedules: {e}"),
});

fn built_in() -> Result<BuiltIn, String> {
    let doc: BuiltInDoc = toml::from_str(BUILT_IN).map_err(|e| e.to_string())?;
    let mut templates = BTreeMap::new();
    for (name, versions) in &doc.templates {
        let mut v = Vec::new();
        for (i, s) in versions.iter().enumerate() {
            let key = format!("templates.{name}[{i}]");
            let t = Template::compile(&key, name, s, "en-US", &Default::default())
                .map_err(|(p, why)| format!("{p}: {why}"))?;
            v.push(t);
        }
        templates.insert(name.clone(), v);
    }
    let mut schedules = BTreeMap::new();
    for (name, s) in &doc.schedules {
        let key = format!("schedules.{name}");
        let sch = Schedule::compile(&key, name, s, |t| templates.contains_key(t))
            .map_err(|(p, why)| format!("{p}: {why}"))?;
        schedules.insert(name.clone(), sch);
    }
    Ok(BuiltIn {
        templates,
        schedules,
        text: BUILT_IN,
    })
}

/// The newest version of a built-in template (built-in versions are 1):
/// a tenant's own versions of the same name start at 2, so `name@N` names
/// one text.
pub fn built_in_template(name: &str, version: Option<u32>) -> Option<&'static Template> {
    let versions = BUILT_IN_SET.templates.get(name)?;
    match version {
        None => versions.last(),
        Some(v) => versions.iter().find(|t| t.version == v),
    }
}

/// The highest version number a built-in template has (0: not built in).
pub fn built_in_max_version(name: &str) -> u32 {
    BUILT_IN_SET
        .templates
        .get(name)
        .and_then(|v| v.last())
        .map_or(0, |t| t.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_payment_reminder_is_the_seven_steps_in_two_languages() {
        let b = &*BUILT_IN_SET;
        let s = &b.schedules["payment_reminder"];
        let days: Vec<i32> = s.steps.iter().map(|s| s.day).collect();
        assert_eq!(days, [-7, -3, -1, 0, 1, 3, 7]);
        for step in &s.steps {
            let t = built_in_template(&step.template, None).expect("its template");
            let locales: Vec<&str> = t.locales().collect();
            assert!(
                locales.contains(&"en") && locales.contains(&"es"),
                "{locales:?}"
            );
        }
        let vars: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"name":"Ana","amount":"120.5","due_date":"2026-12-01"}"#)
                .expect("json");
        let mut out = String::new();
        built_in_template("payment_reminder_due", None)
            .expect("there")
            .render(Some("es-US"), "en-US", &vars, &mut out)
            .expect("renders");
        assert!(out.contains("Ana") && out.contains("$120.50"), "{out}");
        assert!(out.contains("diciembre"), "{out}");
    }

    #[test]
    fn invalid_schedules_name_the_step_and_reason() {
        let step = |day: i32, at: &str, template: &str, late: Option<&str>| StepSection {
            day,
            at: at.into(),
            template: template.into(),
            max_late: late.map(Into::into),
        };
        let has = |t: &str| t == "t";
        let cases: Vec<(Vec<StepSection>, &str, &str)> = vec![
            (vec![], "k.steps", "needs a step"),
            (vec![step(0, "25:00", "t", None)], "k.steps[0].at", "HH:MM"),
            (
                vec![step(0, "10:00", "u", None)],
                "k.steps[0].template",
                "`u`",
            ),
            (
                vec![step(0, "10:00", "t", Some("2s"))],
                "k.steps[0].max_late",
                "duration",
            ),
            (
                vec![step(0, "10:00", "t", Some("8d"))],
                "k.steps[0].max_late",
                "duration",
            ),
            (vec![step(400, "10:00", "t", None)], "k.steps[0].day", "366"),
            (
                vec![step(1, "10:00", "t", None), step(1, "09:00", "t", None)],
                "k.steps[1]",
                "forward",
            ),
        ];
        for (steps, path, why) in cases {
            let err =
                Schedule::compile("k", "s", &ScheduleSection { steps }, has).expect_err("refused");
            assert_eq!(err.0, path);
            assert!(err.1.contains(why), "{}: {}", err.0, err.1);
        }
        let ok = Schedule::compile(
            "k",
            "s",
            &ScheduleSection {
                steps: vec![step(-1, "09:30", "t", Some("90m"))],
            },
            has,
        )
        .expect("valid");
        assert_eq!(ok.steps[0].max_late_ms, 90 * 60_000);
        assert_eq!(parse_max_late("7d"), Some(7 * 86_400_000));
        assert_eq!(parse_max_late("8h"), Some(8 * 3_600_000));
        assert_eq!(ok.steps[0].at, jiff::civil::time(9, 30, 0, 0));
    }
}
