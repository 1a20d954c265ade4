//! The compliance rule tables — sending windows, day rules, state holidays,
//! frequency caps — as configuration (docs/compliance.md).
//!
//! Laws change, so the tables are data: `config/compliance.toml` is compiled
//! in as the default ([`Rules::shipped`]) and an admin may load an edited copy
//! ([`Rules::from_toml_str`]). Parsing is one serde pass over plain structs
//! (`deny_unknown_fields`) followed by validation; every error names the key
//! path and the reason (`window[3].end: "25:00" is not a time (HH:MM)`).
//!
//! A validated [`Rules`] is immutable and indexed by category and state at
//! load, so the per-message lookup is two array reads and a hash probe per
//! candidate state, with no allocation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use hashbrown::HashMap;
use jiff::civil::Date;
use serde::{Deserialize, Deserializer};

use crate::consent::ConsentKind;
use crate::model::Category;
use crate::policy::zones::StateCode;

/// The shipped defaults (docs/compliance.md's tables).
/// The shipped rule table, `config/compliance.toml`, as compiled in.
pub const SHIPPED: &str = include_str!("../../../config/compliance.toml");

/// One hour = 3.6 M ms; caps are configured in hours.
const MS_PER_HOUR: i64 = 3_600_000;

/// Longest cap window accepted: a leap year.
const MAX_CAP_HOURS: u32 = 366 * 24;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A rule table that cannot be used: where (`window[3].end`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RulesError {
    /// Key path in the TOML document (`window[3].end`, `holidays.AL[2]`).
    pub path: String,
    pub reason: String,
}

impl RulesError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> RulesError {
        RulesError {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A serde failure at a tracked path; `src` (when the document is text)
    /// turns the span into a line number.
    fn from_serde(
        prefix: &str,
        e: serde_path_to_error::Error<toml::de::Error>,
        src: Option<&str>,
    ) -> RulesError {
        let inner = e.inner();
        let mut reason = inner.message().trim_end().to_owned();
        if let (Some(src), Some(span)) = (src, inner.span()) {
            reason = format!("{reason} (line {})", line_of(src, span.start));
        }
        let mut path = join_path(prefix, &e.path().to_string());
        // Validation inside a rule reports `key: reason`; move the key into
        // the path (`window[3].end: …`). Serde's own messages have no such key.
        if let Some((key, rest)) = reason.split_once(": ")
            && !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
        {
            path = join_path(&path, key);
            reason = rest.to_owned();
        }
        RulesError::new(path, reason)
    }
}

/// 1-based line of a byte offset.
fn line_of(src: &str, offset: usize) -> usize {
    src.get(..offset).map_or(0, |s| s.matches('\n').count() + 1)
}

fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path) {
        (true, p) => p.to_owned(),
        (false, ".") => prefix.to_owned(),
        (false, p) if p.starts_with('[') => format!("{prefix}{p}"),
        (false, p) => format!("{prefix}.{p}"),
    }
}

// ---------------------------------------------------------------------------
// Small value types
// ---------------------------------------------------------------------------

/// A local wall-clock time at minute precision: minutes after midnight,
/// `0..=1440` (`24:00` only makes sense as an end).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime(u16);

impl ClockTime {
    pub const MIDNIGHT: ClockTime = ClockTime(0);
    pub const END_OF_DAY: ClockTime = ClockTime(24 * 60);

    /// `HH:MM` with two digits each, `00:00`–`24:00`.
    pub fn parse(s: &str) -> Option<ClockTime> {
        let b = s.as_bytes();
        if b.len() != 5 || b[2] != b':' {
            return None;
        }
        let digit = |i: usize| b[i].is_ascii_digit().then(|| u16::from(b[i] - b'0'));
        let h = digit(0)? * 10 + digit(1)?;
        let m = digit(3)? * 10 + digit(4)?;
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(ClockTime(h * 60 + m))
    }

    /// Minutes after local midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }

    pub fn from_minutes(m: u16) -> Option<ClockTime> {
        (m <= 24 * 60).then_some(ClockTime(m))
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl fmt::Debug for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ClockTime::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("{s:?} is not a time (HH:MM, 00:00–24:00)"))
        })
    }
}

/// Open hours on one local day: `start <= t < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub start: ClockTime,
    pub end: ClockTime,
}

impl Hours {
    /// Whether local minute-of-day `m` is inside.
    pub fn contains(self, m: u16) -> bool {
        self.start.0 <= m && m < self.end.0
    }
}

/// Weekday names as written in the rule tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DayName {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl DayName {
    /// Monday = 0, as `jiff::civil::Weekday::to_monday_zero_offset`.
    fn index(self) -> usize {
        self as usize
    }
}

/// A `YYYY-MM-DD` date (exactly that shape: no times, no other formats).
struct IsoDate(Date);

impl<'de> Deserialize<'de> for IsoDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let shaped = s.len() == 10
            && s.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        shaped
            .then(|| s.parse::<Date>().ok())
            .flatten()
            .map(IsoDate)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a date (YYYY-MM-DD)")))
    }
}

fn category_index(c: Category) -> usize {
    match c {
        Category::Transactional => 0,
        Category::Collections => 1,
        Category::Marketing => 2,
    }
}

// ---------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------

/// `[[window]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowSpec {
    id: String,
    #[serde(default)]
    states: Vec<StateCode>,
    categories: Vec<Category>,
    start: Option<ClockTime>,
    end: Option<ClockTime>,
    #[serde(default)]
    days: BTreeMap<DayName, DaySpec>,
    #[serde(default)]
    closed: Vec<DayName>,
    #[serde(default)]
    closed_on_holidays: bool,
    unless_consent: Option<ConsentKind>,
    citation: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DaySpec {
    start: Option<ClockTime>,
    end: Option<ClockTime>,
}

/// A sending window: when a category may be sent, in local time. Deserialises
/// (and validates) from the `[[window]]` shape, so tenant overrides in
/// herald.toml use the same fields — see [`WindowRule::parse_tenant_windows`].
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "WindowSpec")]
pub struct WindowRule {
    id: Arc<str>,
    citation: Arc<str>,
    /// Empty = applies everywhere (federal, or a tenant override).
    states: Vec<StateCode>,
    categories: Vec<Category>,
    /// Hours per local weekday (Monday first); `None` = closed that day.
    week: [Option<Hours>; 7],
    closed_on_holidays: bool,
    /// The holidays of `states`, sorted; filled in by [`Rules`] at load.
    holidays: Arc<[Date]>,
    unless_consent: Option<ConsentKind>,
}

impl TryFrom<WindowSpec> for WindowRule {
    type Error = String;

    fn try_from(w: WindowSpec) -> Result<Self, String> {
        check_id_and_citation(&w.id, &w.citation)?;
        if w.categories.is_empty() {
            return Err("categories: list at least one category".into());
        }
        let default = Hours {
            start: w.start.unwrap_or(ClockTime::MIDNIGHT),
            end: w.end.unwrap_or(ClockTime::END_OF_DAY),
        };
        check_hours(default, "start", "end")?;
        let mut week = [Some(default); 7];
        for (day, spec) in &w.days {
            let hours = Hours {
                start: spec.start.unwrap_or(default.start),
                end: spec.end.unwrap_or(default.end),
            };
            let name = format!("{day:?}").to_lowercase();
            check_hours(
                hours,
                &format!("days.{name}.start"),
                &format!("days.{name}.end"),
            )?;
            week[day.index()] = Some(hours);
        }
        for day in &w.closed {
            if w.days.contains_key(day) {
                let name = format!("{day:?}").to_lowercase();
                return Err(format!("closed: {name} also has hours in `days`"));
            }
            week[day.index()] = None;
        }
        if week.iter().all(Option::is_none) {
            return Err("closed: the window would be closed every day".into());
        }
        Ok(WindowRule {
            id: w.id.into(),
            citation: w.citation.into(),
            states: w.states,
            categories: w.categories,
            week,
            closed_on_holidays: w.closed_on_holidays,
            holidays: Arc::from(Vec::new()),
            unless_consent: w.unless_consent,
        })
    }
}

fn check_id_and_citation(id: &str, citation: &str) -> Result<(), String> {
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(format!("id: {id:?} must be non-empty, without spaces"));
    }
    if citation.trim().is_empty() {
        return Err("citation: every rule cites its source".into());
    }
    Ok(())
}

fn check_hours(h: Hours, start_key: &str, end_key: &str) -> Result<(), String> {
    if h.start >= h.end {
        return Err(format!(
            "{end_key}: {} is not after {start_key} {}",
            h.end, h.start
        ));
    }
    Ok(())
}

impl WindowRule {
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub fn citation(&self) -> &Arc<str> {
        &self.citation
    }

    /// The states the rule belongs to; empty = everywhere.
    pub fn states(&self) -> &[StateCode] {
        &self.states
    }

    pub fn applies_to(&self, category: Category) -> bool {
        self.categories.contains(&category)
    }

    /// Consent that waives the rule (it and anything stronger).
    pub fn unless_consent(&self) -> Option<ConsentKind> {
        self.unless_consent
    }

    /// Whether the consent on file waives the rule: ExpressWritten ≥ Express.
    pub fn waived_by(&self, consent: Option<ConsentKind>) -> bool {
        matches!((self.unless_consent, consent), (Some(need), Some(have)) if have >= need)
    }

    /// The open hours on a local date; `None` when the window is closed all
    /// that day (a closed weekday, or one of its states' holidays).
    pub fn hours_on(&self, date: Date) -> Option<Hours> {
        if self.closed_on_holidays && self.holidays.binary_search(&date).is_ok() {
            return None;
        }
        self.week[usize::from(date.weekday().to_monday_zero_offset().unsigned_abs())]
    }

    /// Tenant override windows from herald.toml (`[[tenants.<name>.windows]]`,
    /// passed here as the array value): the `[[window]]` fields without
    /// `states` — a tenant's window applies to its messages in every candidate
    /// zone — and without `closed_on_holidays` (holidays are per state). Errors
    /// name the key under `key_path` (`tenants.acme.windows[0].end`).
    pub fn parse_tenant_windows(
        key_path: &str,
        value: toml::Value,
    ) -> Result<Vec<WindowRule>, RulesError> {
        let windows: Vec<WindowRule> = serde_path_to_error::deserialize(value)
            .map_err(|e| RulesError::from_serde(key_path, e, None))?;
        Self::check_tenant_windows(key_path, &windows)?;
        Ok(windows)
    }

    /// The tenant-specific checks of [`WindowRule::parse_tenant_windows`], for
    /// a config struct that deserialises `Vec<WindowRule>` itself.
    pub fn check_tenant_windows(key_path: &str, windows: &[WindowRule]) -> Result<(), RulesError> {
        for (i, w) in windows.iter().enumerate() {
            let at = |key: &str| format!("{key_path}[{i}].{key}");
            if !w.states.is_empty() {
                return Err(RulesError::new(
                    at("states"),
                    "a tenant window applies in every candidate zone; remove `states`",
                ));
            }
            if w.closed_on_holidays {
                return Err(RulesError::new(
                    at("closed_on_holidays"),
                    "holidays are per state; a tenant window has no state",
                ));
            }
            if let Some(j) = windows[..i].iter().position(|o| o.id == w.id) {
                return Err(RulesError::new(
                    at("id"),
                    format!("duplicate id {:?} (also {key_path}[{j}])", &*w.id),
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Caps
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapSpec {
    id: String,
    #[serde(default)]
    states: Vec<StateCode>,
    categories: Vec<Category>,
    limit: u32,
    window_hours: u32,
    #[serde(default)]
    per_debt: bool,
    citation: String,
}

/// A frequency cap: at most `limit` texts of the categories per recipient
/// (per debt when `per_debt`) in any `window_ms`, across all senders.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "CapSpec")]
pub struct CapRule {
    pub id: Arc<str>,
    /// Empty = everywhere.
    pub states: Vec<StateCode>,
    pub categories: Vec<Category>,
    pub limit: u32,
    pub window_ms: i64,
    pub per_debt: bool,
    pub citation: Arc<str>,
}

impl TryFrom<CapSpec> for CapRule {
    type Error = String;

    fn try_from(c: CapSpec) -> Result<Self, String> {
        check_id_and_citation(&c.id, &c.citation)?;
        if c.categories.is_empty() {
            return Err("categories: list at least one category".into());
        }
        if c.limit == 0 {
            return Err("limit: must be at least 1".into());
        }
        if !(1..=MAX_CAP_HOURS).contains(&c.window_hours) {
            return Err(format!("window_hours: must be 1–{MAX_CAP_HOURS}"));
        }
        Ok(CapRule {
            id: c.id.into(),
            states: c.states,
            categories: c.categories,
            limit: c.limit,
            window_ms: i64::from(c.window_hours) * MS_PER_HOUR,
            per_debt: c.per_debt,
            citation: c.citation.into(),
        })
    }
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    window: Vec<WindowRule>,
    #[serde(default)]
    cap: Vec<CapRule>,
    #[serde(default)]
    holidays: BTreeMap<StateCode, Vec<IsoDate>>,
}

/// Validated rule tables, indexed for the per-message lookup.
#[derive(Debug, Clone)]
pub struct Rules {
    windows: Vec<WindowRule>,
    caps: Vec<CapRule>,
    holidays: BTreeMap<StateCode, Arc<[Date]>>,
    /// Windows without states, by category index.
    federal: [Vec<u16>; 3],
    /// Windows of each state, by category index.
    by_state: HashMap<StateCode, [Vec<u16>; 3]>,
}

impl Rules {
    /// The shipped defaults, `config/compliance.toml` as compiled in.
    pub fn shipped() -> Rules {
        // Embedded and covered by tests: a parse failure is a build defect.
        Rules::from_toml_str(SHIPPED).expect("config/compliance.toml is valid")
    }

    /// Parses and validates a rule table (an edited `compliance.toml`).
    pub fn from_toml_str(src: &str) -> Result<Rules, RulesError> {
        let de = toml::Deserializer::parse(src).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(src, s.start));
            RulesError::new(
                "(syntax)",
                format!("{} (line {line})", e.message().trim_end()),
            )
        })?;
        let file: RulesFile = serde_path_to_error::deserialize(de)
            .map_err(|e| RulesError::from_serde("", e, Some(src)))?;
        Rules::build(file)
    }

    /// Parses and validates a rule table held in a TOML value (the policy
    /// document's `[rules]`); error paths start with `prefix`.
    pub fn from_value(prefix: &str, value: toml::Value) -> Result<Rules, RulesError> {
        let file: RulesFile = serde_path_to_error::deserialize(value)
            .map_err(|e| RulesError::from_serde(prefix, e, None))?;
        Rules::build(file).map_err(|e| RulesError {
            path: join_path(prefix, &e.path),
            reason: e.reason,
        })
    }

    /// The first category whose everywhere-windows (federal ones plus
    /// `extra`, a tenant's) share no open minute on any weekday: texts of it
    /// could never be sent. Waivers by consent are not counted.
    pub fn never_open(&self, extra: &[WindowRule]) -> Option<(Category, Vec<Arc<str>>)> {
        for category in Category::ALL {
            let windows: Vec<&WindowRule> = self.federal[category_index(category)]
                .iter()
                .map(|&i| &self.windows[usize::from(i)])
                .chain(extra.iter().filter(|w| w.applies_to(category)))
                .collect();
            if windows.len() < 2 {
                continue;
            }
            let open_some_day = (0..7).any(|day| {
                let mut start = 0u16;
                let mut end = ClockTime::END_OF_DAY.minutes();
                for w in &windows {
                    match w.week[day] {
                        Some(h) => {
                            start = start.max(h.start.minutes());
                            end = end.min(h.end.minutes());
                        }
                        None => return false,
                    }
                }
                start < end
            });
            if !open_some_day {
                return Some((
                    category,
                    windows.iter().map(|w| Arc::clone(&w.id)).collect(),
                ));
            }
        }
        None
    }

    fn build(file: RulesFile) -> Result<Rules, RulesError> {
        let holidays: BTreeMap<StateCode, Arc<[Date]>> = file
            .holidays
            .into_iter()
            .map(|(s, d)| {
                let mut d: Vec<Date> = d.into_iter().map(|d| d.0).collect();
                d.sort();
                d.dedup();
                (s, Arc::from(d))
            })
            .collect();

        let mut ids: HashMap<Arc<str>, String> = HashMap::new();
        let mut windows = file.window;
        for (i, w) in windows.iter_mut().enumerate() {
            let here = format!("window[{i}]");
            if let Some(prev) = ids.insert(w.id.clone(), here.clone()) {
                return Err(RulesError::new(
                    format!("{here}.id"),
                    format!("duplicate id {:?} (also {prev})", &*w.id),
                ));
            }
            if w.closed_on_holidays {
                if w.states.is_empty() {
                    return Err(RulesError::new(
                        format!("{here}.closed_on_holidays"),
                        "holidays are per state: list `states`",
                    ));
                }
                let mut dates = Vec::new();
                for s in &w.states {
                    let Some(h) = holidays.get(s) else {
                        return Err(RulesError::new(
                            format!("{here}.closed_on_holidays"),
                            format!("no [holidays] dates for {s}"),
                        ));
                    };
                    dates.extend_from_slice(h);
                }
                dates.sort();
                dates.dedup();
                w.holidays = Arc::from(dates);
            }
        }
        for (i, c) in file.cap.iter().enumerate() {
            let here = format!("cap[{i}]");
            if let Some(prev) = ids.insert(c.id.clone(), here.clone()) {
                return Err(RulesError::new(
                    format!("{here}.id"),
                    format!("duplicate id {:?} (also {prev})", &*c.id),
                ));
            }
        }

        let too_many = || RulesError::new("window", "more than 65,535 windows");
        let mut federal: [Vec<u16>; 3] = Default::default();
        let mut by_state: HashMap<StateCode, [Vec<u16>; 3]> = HashMap::new();
        for (i, w) in windows.iter().enumerate() {
            let i = u16::try_from(i).map_err(|_| too_many())?;
            for &c in &w.categories {
                let c = category_index(c);
                if w.states.is_empty() {
                    federal[c].push(i);
                }
                for s in &w.states {
                    let list = &mut by_state.entry(*s).or_default()[c];
                    if !list.contains(&i) {
                        list.push(i);
                    }
                }
            }
        }
        Ok(Rules {
            windows,
            caps: file.cap,
            holidays,
            federal,
            by_state,
        })
    }

    /// Every window, in file order.
    pub fn windows(&self) -> &[WindowRule] {
        &self.windows
    }

    /// Every cap, in file order.
    pub fn caps(&self) -> &[CapRule] {
        &self.caps
    }

    /// The caps that apply to a category given the candidate states.
    pub fn caps_for<'a, 's>(
        &'a self,
        category: Category,
        states: &'s [StateCode],
    ) -> impl Iterator<Item = &'a CapRule> + use<'a, 's> {
        self.caps.iter().filter(move |c| {
            c.categories.contains(&category)
                && (c.states.is_empty() || c.states.iter().any(|s| states.contains(s)))
        })
    }

    /// The windows that apply to a category given the candidate states:
    /// federal ones, then each state's, each rule once. No allocation.
    pub fn windows_for<'a, 's>(
        &'a self,
        category: Category,
        states: &'s [StateCode],
    ) -> impl Iterator<Item = &'a WindowRule> + Clone + use<'a, 's> {
        let c = category_index(category);
        let state_rules = states.iter().enumerate().flat_map(move |(i, s)| {
            let listed = self.by_state.get(s).map_or(&[][..], |v| &v[c][..]);
            // A rule naming two candidate states was yielded for the first.
            listed.iter().filter(move |&&w| {
                !self.windows[usize::from(w)]
                    .states
                    .iter()
                    .any(|x| states[..i].contains(x))
            })
        });
        self.federal[c]
            .iter()
            .chain(state_rules)
            .map(|&i| &self.windows[usize::from(i)])
    }

    /// A state's holiday dates, sorted.
    pub fn holidays(&self, state: StateCode) -> &[Date] {
        self.holidays.get(&state).map_or(&[], |d| &d[..])
    }

    /// The last date every holiday table covers: after it, a rule that closes
    /// on holidays no longer knows them. Start-up should warn when today is
    /// past it (holidays are dated; the table needs a yearly refresh).
    pub fn holidays_through(&self) -> Option<Date> {
        self.holidays
            .values()
            .filter_map(|d| d.last().copied())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn st(s: &str) -> StateCode {
        s.parse().unwrap()
    }

    #[test]
    fn shipped_rules_hold_every_row_of_compliance_md() {
        let r = Rules::shipped();
        let ids: Vec<&str> = r.windows().iter().map(|w| &*w.id).collect();
        // One row per window / day rule in docs/compliance.md's federal and state tables.
        for id in [
            "tcpa-calling-hours",            // 47 CFR 64.1200(c)(1)
            "fdcpa-convenient-hours",        // 15 USC 1692c(a)(1)
            "fl-marketing-hours",            // Fla. Stat. 501.616(6)
            "fl-collections-hours",          // Fla. Stat. 559.72(17)
            "ok-marketing-hours",            // 15 O.S. 775C.4
            "md-marketing-hours",            // Com. Law 14-4501
            "wa-marketing-hours",            // RCW 19.158.040
            "tx-marketing-hours",            // Bus. & Com. 301.051
            "al-marketing-hours",            // r.770-X-5-.17
            "la-marketing-hours",            // LPSC R-29617
            "ms-marketing-hours",            // 77-3-723
            "ut-marketing-hours",            // 13-25a-103
            "ut-marketing-sundays-holidays", // 13-25a-103
            "ma-collections-hours",          // 940 CMR 7.04(1)(f)
            "wa-collections-hours",          // RCW 19.16.250
            "ct-marketing-hours",            // 42-288a
        ] {
            assert!(ids.contains(&id), "missing {id}");
        }
        assert_eq!(ids.len(), 16);
        let caps: Vec<(&str, u32, i64, bool)> = r
            .caps()
            .iter()
            .map(|c| (&*c.id, c.limit, c.window_ms, c.per_debt))
            .collect();
        let day = 24 * MS_PER_HOUR;
        assert_eq!(
            caps,
            [
                ("fl-marketing-cap", 3, day, false),      // Fla. Stat. 501.616(6)
                ("ok-marketing-cap", 3, day, false),      // 15 O.S. 775C.4
                ("md-marketing-cap", 3, day, false),      // Com. Law 14-4501
                ("ma-collections-cap", 2, 7 * day, true), // 940 CMR 7.04(1)(f)
                ("wa-collections-cap", 3, 7 * day, false), // RCW 19.16.250
            ]
        );
        // Transactional has no window by default (64.1200(c)(1) covers solicitations).
        assert_eq!(
            r.windows_for(Category::Transactional, &[st("FL"), st("TX")])
                .count(),
            0
        );
        assert_eq!(r.holidays_through(), Some(date(2027, 12, 25)));
    }

    #[test]
    fn shipped_hours_per_rule() {
        let r = Rules::shipped();
        let get = |id: &str| r.windows().iter().find(|w| &*w.id == id).unwrap().clone();
        let hm = |h: &str| ClockTime::parse(h).unwrap();
        let open = |s: &str, e: &str| {
            Some(Hours {
                start: hm(s),
                end: hm(e),
            })
        };
        // (rule, local date, expected hours) — citations as in compliance.toml.
        let table = [
            (
                "tcpa-calling-hours",
                date(2026, 3, 8),
                open("08:00", "21:00"),
            ), // 64.1200(c)(1), Sunday too
            (
                "tx-marketing-hours",
                date(2026, 3, 7),
                open("09:00", "21:00"),
            ), // 301.051 Saturday
            (
                "tx-marketing-hours",
                date(2026, 3, 8),
                open("12:00", "21:00"),
            ), // 301.051 Sunday
            ("al-marketing-hours", date(2026, 3, 8), None), // r.770-X-5-.17 Sunday
            ("al-marketing-hours", date(2026, 5, 25), None), // Memorial Day, Ala. Code 1-3-8
            (
                "al-marketing-hours",
                date(2026, 5, 26),
                open("08:00", "20:00"),
            ), // next business day
            ("la-marketing-hours", date(2026, 2, 17), None), // Mardi Gras, La. R.S. 1:55
            (
                "ms-marketing-hours",
                date(2026, 5, 25),
                open("08:00", "21:00"),
            ), // MS: Sundays only
            ("ut-marketing-sundays-holidays", date(2026, 7, 24), None), // Pioneer Day, 63G-1-301
            (
                "ut-marketing-sundays-holidays",
                date(2026, 7, 23),
                open("00:00", "24:00"),
            ),
            (
                "wa-collections-hours",
                date(2026, 3, 9),
                open("07:30", "21:00"),
            ), // RCW 19.16.250
            (
                "ct-marketing-hours",
                date(2026, 3, 9),
                open("09:00", "20:00"),
            ), // 42-288a
        ];
        for (id, d, want) in table {
            assert_eq!(get(id).hours_on(d), want, "{id} on {d}");
        }
    }

    #[test]
    fn windows_for_picks_federal_and_candidate_states_once() {
        let r = Rules::shipped();
        let ids = |c, s: &[StateCode]| -> Vec<String> {
            r.windows_for(c, s).map(|w| w.id.to_string()).collect()
        };
        assert_eq!(ids(Category::Marketing, &[]), ["tcpa-calling-hours"]);
        assert_eq!(
            ids(Category::Marketing, &[st("FL"), st("TX")]),
            [
                "tcpa-calling-hours",
                "fl-marketing-hours",
                "tx-marketing-hours"
            ]
        );
        assert_eq!(
            ids(Category::Collections, &[st("MA"), st("FL")]),
            [
                "fdcpa-convenient-hours",
                "ma-collections-hours",
                "fl-collections-hours"
            ]
        );
        assert_eq!(
            ids(Category::Collections, &[st("NY")]),
            ["fdcpa-convenient-hours"]
        );

        // A rule listing two candidate states appears once.
        let two = Rules::from_toml_str(
            r#"
            [[window]]
            id = "both"
            states = ["FL", "OK"]
            categories = ["marketing"]
            start = "08:00"
            end = "20:00"
            citation = "x"
            "#,
        )
        .unwrap();
        assert_eq!(
            two.windows_for(Category::Marketing, &[st("OK"), st("FL")])
                .count(),
            1
        );

        let caps: Vec<&str> = r
            .caps_for(Category::Marketing, &[st("OK"), st("NY")])
            .map(|c| &*c.id)
            .collect();
        assert_eq!(caps, ["ok-marketing-cap"]);
    }

    #[test]
    fn utah_day_rule_is_waived_by_express_consent_or_stronger() {
        let r = Rules::shipped();
        let w = r
            .windows()
            .iter()
            .find(|w| &*w.id == "ut-marketing-sundays-holidays")
            .unwrap();
        // Utah Code 13-25a-103: prior express consent lifts the Sunday/holiday ban.
        assert!(!w.waived_by(None));
        assert!(w.waived_by(Some(ConsentKind::Express)));
        assert!(w.waived_by(Some(ConsentKind::ExpressWritten)));
        let hours = r
            .windows()
            .iter()
            .find(|w| &*w.id == "ut-marketing-hours")
            .unwrap();
        assert!(!hours.waived_by(Some(ConsentKind::ExpressWritten)));
    }

    const BASE: &str = r#"
[[window]]
id = "w"
categories = ["marketing"]
start = "08:00"
end = "21:00"
citation = "c"
"#;

    #[test]
    fn errors_name_the_key_and_the_reason() {
        // (document, expected path, fragment of the reason)
        let table: &[(&str, &str, &str)] = &[
            (&BASE.replace("08:00", "8:00"), "window[0].start", "not a time"),
            (&BASE.replace("21:00", "24:30"), "window[0].end", "not a time"),
            (&BASE.replace("21:00", "07:00"), "window[0].end", "07:00 is not after start 08:00"),
            (&BASE.replace("marketing", "promo"), "window[0].categories[0]", "unknown variant"),
            (&BASE.replace("citation = \"c\"", "citation = \"c\"\nstates = [\"ZZ\"]"), "window[0].states[0]", "unknown US state"),
            (&BASE.replace("citation = \"c\"", "citation = \"c\"\nclosed = [\"sunday\"]"), "window[0].closed[0]", "unknown variant"),
            (&BASE.replace("citation = \"c\"", "citation = \"c\"\ncolour = 1"), "window[0].colour", "unknown field `colour`, expected one of `id`, `states`, `categories`, `start`, `end`, `days`, `closed`, `closed_on_holidays`, `unless_consent`, `citation` (line 8)"),
            (&BASE.replace("citation = \"c\"", "citation = \"c\"\nunless_consent = \"verbal\""), "window[0].unless_consent", "unknown variant"),
            (&BASE.replace("citation = \"c\"", "citation = \" \""), "window[0].citation", "cites its source"),
            (&BASE.replace("citation = \"c\"", "citation = \"c\"\ndays = { sun = { start = \"22:00\" } }"), "window[0].days.sun.end", "21:00 is not after days.sun.start 22:00"),
            (&BASE.replace("citation = \"c\"", "citation = \"c\"\nclosed = [\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"]"), "window[0].closed", "closed every day"),
            (&BASE.replace("citation = \"c\"", "citation = \"c\"\nclosed_on_holidays = true"), "window[0].closed_on_holidays", "list `states`"),
            (&BASE.replace("citation = \"c\"", "citation = \"c\"\nstates = [\"AL\"]\nclosed_on_holidays = true"), "window[0].closed_on_holidays", "no [holidays] dates for AL"),
            (&format!("{BASE}{BASE}"), "window[1].id", "duplicate id \"w\""),
            (&format!("{BASE}[holidays]\nAL = [\"2026-1-01\"]"), "holidays.AL[0]", "not a date"),
            (&format!("{BASE}[holidays]\nAL = [\"2026-02-30\"]"), "holidays.AL[0]", "not a date"),
            (&format!("{BASE}[holidays]\nXX = []"), "holidays.XX", "unknown US state"),
            (&format!("{BASE}[[cap]]\nid=\"k\"\ncategories=[\"marketing\"]\nlimit=0\nwindow_hours=24\ncitation=\"c\""), "cap[0].limit", "must be at least 1"),
            (&format!("{BASE}[[cap]]\nid=\"k\"\ncategories=[\"marketing\"]\nlimit=1\nwindow_hours=0\ncitation=\"c\""), "cap[0].window_hours", "must be 1–"),
            (&format!("{BASE}[[cap]]\nid=\"w\"\ncategories=[\"marketing\"]\nlimit=1\nwindow_hours=1\ncitation=\"c\""), "cap[0].id", "duplicate id"),
            (&format!("{BASE}[[cap]]\nid=\"k\"\ncategories=[\"marketing\"]\nlimit=-1\nwindow_hours=1\ncitation=\"c\""), "cap[0].limit", ""),
            ("[[window]\n", "(syntax)", "(line 1)"),
            ("\n\n[[window]]\nid = 1", "window[0].id", "(line 4)"),
            ("[[rule]]\nid = \"x\"", "rule", "unknown field `rule`"),
        ];
        for (doc, path, reason) in table {
            let e = Rules::from_toml_str(doc).expect_err(doc);
            assert_eq!(e.path, *path, "{doc}\n→ {e}");
            assert!(e.reason.contains(reason), "{doc}\n→ {e}");
        }
    }

    #[test]
    fn clock_times_parse_strictly() {
        let table = [
            ("00:00", Some(0)),
            ("07:30", Some(450)),
            ("24:00", Some(1440)),
            ("23:59", Some(1439)),
            ("24:01", None),
            ("12:60", None),
            ("7:30", None),
            ("07:30:00", None),
            ("0a:00", None),
        ];
        for (s, want) in table {
            assert_eq!(ClockTime::parse(s).map(ClockTime::minutes), want, "{s}");
        }
    }

    #[test]
    fn tenant_windows_use_the_same_shape_without_states() {
        let value = |s: &str| -> toml::Value {
            toml::from_str::<toml::Table>(s)
                .unwrap()
                .remove("windows")
                .unwrap()
        };
        let ok = value(
            "[[windows]]\nid = \"acme-quiet\"\ncategories = [\"transactional\", \"collections\"]\nstart = \"09:00\"\nend = \"18:00\"\nclosed = [\"sat\", \"sun\"]\ncitation = \"tenant policy\"",
        );
        let w = WindowRule::parse_tenant_windows("tenants.acme.windows", ok).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].applies_to(Category::Transactional));
        assert_eq!(w[0].hours_on(date(2026, 3, 7)), None); // Saturday
        let table = [
            (
                "[[windows]]\nid=\"a\"\ncategories=[\"marketing\"]\nstates=[\"FL\"]\ncitation=\"t\"",
                "tenants.acme.windows[0].states",
            ),
            (
                "[[windows]]\nid=\"a\"\ncategories=[\"marketing\"]\nclosed_on_holidays=true\ncitation=\"t\"",
                "tenants.acme.windows[0].closed_on_holidays",
            ),
            (
                "[[windows]]\nid=\"a\"\ncategories=[\"marketing\"]\ncitation=\"t\"\n[[windows]]\nid=\"a\"\ncategories=[\"marketing\"]\ncitation=\"t\"",
                "tenants.acme.windows[1].id",
            ),
            (
                "[[windows]]\nid=\"a\"\ncategories=[\"marketing\"]\nstart=\"9\"\ncitation=\"t\"",
                "tenants.acme.windows[0].start",
            ),
        ];
        for (doc, path) in table {
            let e =
                WindowRule::parse_tenant_windows("tenants.acme.windows", value(doc)).unwrap_err();
            assert_eq!(e.path, path, "{doc} → {e}");
        }
    }
}
