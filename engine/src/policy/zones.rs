//! Where a recipient may be: candidate time zones and US states for a number
//! (docs/compliance.md#time-zones).
//!
//! The data is libphonenumber's, embedded at build time (`engine/data/`, with
//! its attribution header) and parsed once, on first use, into immutable
//! tables that the per-message path reads without a lock:
//!
//! - every time zone in the system tz database is interned into a fixed table
//!   at load, so a [`Zone`] is a `u16` and `recipient.tz` can name any valid
//!   IANA zone without interning on the hot path;
//! - the prefix → zones map is flattened into disjoint, sorted intervals of
//!   15-digit keys: the longest matching prefix is one binary search (~12
//!   comparisons over ~3,300 entries), no hashing, no allocation;
//! - area code → state is a 1,000-entry array; state → zones is derived from
//!   the data (the union of the zones of the state's area codes).
//!
//! [`candidates`] borrows the number's static zone list when the recipient's
//! address adds nothing to it (the common case), so it allocates only when
//! the address points somewhere the number does not.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use hashbrown::HashMap;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `prefix|Zone&Zone` lines (libphonenumber `resources/timezones/map_data.txt`).
const PREFIX_ZONES: &str = include_str!("../../data/phone-prefix-timezones.txt");
/// `1NPA|Region` lines (derived from libphonenumber's geocoding data).
const AREA_REGIONS: &str = include_str!("../../data/nanp-area-code-regions.txt");

/// E.164 numbers have at most 15 digits; prefixes and numbers are compared
/// as 15-digit keys (right-padded with zeros).
const KEY_DIGITS: u32 = 15;

// ---------------------------------------------------------------------------
// States
// ---------------------------------------------------------------------------

/// A US state, DC or inhabited territory, as its USPS code. Only these carry
/// state rules; Canadian provinces map to no state (see [`parse_region`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateCode([u8; 2]);

/// USPS code and the name the area-code data uses for it.
const US_STATES: [(&str, &str); 56] = [
    ("AL", "Alabama"),
    ("AK", "Alaska"),
    ("AZ", "Arizona"),
    ("AR", "Arkansas"),
    ("CA", "California"),
    ("CO", "Colorado"),
    ("CT", "Connecticut"),
    ("DE", "Delaware"),
    ("DC", "Washington D.C."),
    ("FL", "Florida"),
    ("GA", "Georgia"),
    ("HI", "Hawaii"),
    ("ID", "Idaho"),
    ("IL", "Illinois"),
    ("IN", "Indiana"),
    ("IA", "Iowa"),
    ("KS", "Kansas"),
    ("KY", "Kentucky"),
    ("LA", "Louisiana"),
    ("ME", "Maine"),
    ("MD", "Maryland"),
    ("MA", "Massachusetts"),
    ("MI", "Michigan"),
    ("MN", "Minnesota"),
    ("MS", "Mississippi"),
    ("MO", "Missouri"),
    ("MT", "Montana"),
    ("NE", "Nebraska"),
    ("NV", "Nevada"),
    ("NH", "New Hampshire"),
    ("NJ", "New Jersey"),
    ("NM", "New Mexico"),
    ("NY", "New York"),
    ("NC", "North Carolina"),
    ("ND", "North Dakota"),
    ("OH", "Ohio"),
    ("OK", "Oklahoma"),
    ("OR", "Oregon"),
    ("PA", "Pennsylvania"),
    ("RI", "Rhode Island"),
    ("SC", "South Carolina"),
    ("SD", "South Dakota"),
    ("TN", "Tennessee"),
    ("TX", "Texas"),
    ("UT", "Utah"),
    ("VT", "Vermont"),
    ("VA", "Virginia"),
    ("WA", "Washington State"),
    ("WV", "West Virginia"),
    ("WI", "Wisconsin"),
    ("WY", "Wyoming"),
    ("PR", "Puerto Rico"),
    ("VI", "U.S. Virgin Islands"),
    ("GU", "Guam"),
    ("MP", "Northern Mariana Islands"),
    ("AS", "American Samoa"),
];

/// Canadian provinces and territories: valid postal regions with no US state
/// rules. Codes, then the names the area-code data uses (one misspelt there).
const CA_CODES: [&str; 13] = [
    "AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT",
];
const CA_NAMES: [&str; 15] = [
    "Alberta",
    "British Columbia",
    "British Colombia",
    "Manitoba",
    "New Brunswick",
    "Newfoundland and Labrador",
    "Northwest Territories/Nunavut/Yukon",
    "Nova Scotia/Prince Edward Island",
    "Ontario",
    "Quebec",
    "Saskatchewan",
    "Prince Edward Island",
    "Nunavut",
    "Yukon",
    "Northwest Territories",
];

/// A string that is not a US state / territory code (or, for
/// [`parse_region`], not a Canadian one either).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown US state or territory code {0:?}")]
pub struct UnknownState(pub String);

impl StateCode {
    /// The code in capitals (`"FL"`).
    pub fn as_str(&self) -> &str {
        // Only ASCII capitals are ever stored (see `from_str`).
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for StateCode {
    type Err = UnknownState;

    /// `"FL"` or `"fl"`; US states, DC and the inhabited territories only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if let [a, c] = b {
            let code = [a.to_ascii_uppercase(), c.to_ascii_uppercase()];
            if US_STATES.iter().any(|(k, _)| k.as_bytes() == code) {
                return Ok(StateCode(code));
            }
        }
        Err(UnknownState(s.to_owned()))
    }
}

/// A postal region from a recipient's address: a US state or territory →
/// `Some`; a Canadian province or territory → `None` (no US state rules
/// apply, the number's zones still do); anything else is an error.
pub fn parse_region(s: &str) -> Result<Option<StateCode>, UnknownState> {
    if let Ok(code) = s.parse::<StateCode>() {
        return Ok(Some(code));
    }
    if CA_CODES.iter().any(|c| c.eq_ignore_ascii_case(s)) {
        return Ok(None);
    }
    Err(UnknownState(s.to_owned()))
}

impl fmt::Display for StateCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for StateCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StateCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for StateCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The state a region name of the area-code data denotes: `Ok(None)` for
/// Canada, an error for a name this code does not know (caught by a test, so
/// a data update cannot silently drop a state).
fn region_state(region: &str) -> Result<Option<StateCode>, String> {
    // "San Antonio, TX", "New York, NY", "Palm Beach, FL", "Toronto, ON".
    let name = match region.rsplit_once(", ") {
        Some((_, code)) if code.len() == 2 => return parse_region(code).map_err(|e| e.to_string()),
        _ => region,
    };
    if let Some((code, _)) = US_STATES.iter().find(|(_, n)| *n == name) {
        return code
            .parse()
            .map(Some)
            .map_err(|e: UnknownState| e.to_string());
    }
    if CA_NAMES.contains(&name) {
        return Ok(None);
    }
    Err(format!("unknown region {region:?}"))
}

// ---------------------------------------------------------------------------
// Zones
// ---------------------------------------------------------------------------

/// An IANA time zone, as an index into the table interned at load time.
/// Copy, 2 bytes; [`Zone::tz`] gives the `jiff` zone to convert with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zone(u16);

impl Zone {
    /// The IANA name (`"America/Chicago"`).
    pub fn name(self) -> &'static str {
        &TABLES.zones[usize::from(self.0)].0
    }

    /// The zone's rules, loaded once from the system tz database. Convert at
    /// the instant of sending; never cache an offset (docs/compliance.md).
    pub fn tz(self) -> &'static TimeZone {
        &TABLES.zones[usize::from(self.0)].1
    }

    /// Any zone of the system tz database (including links such as
    /// `US/Eastern`), by exact name or, failing that, ignoring ASCII case as
    /// jiff does. The table holds every zone jiff lists, so no interning
    /// happens here and the lookup takes no lock.
    pub fn by_name(name: &str) -> Option<Zone> {
        let t = &*TABLES;
        if let Some(&z) = t.zone_by_name.get(name) {
            return Some(z);
        }
        // Rare path (a producer wrote `america/chicago`): lower-case into a
        // stack buffer, no allocation. IANA names are ASCII and short.
        let mut buf = [0u8; 64];
        let lower = buf.get_mut(..name.len())?;
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        t.zone_by_lower
            .get(std::str::from_utf8(lower).ok()?)
            .copied()
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// Lookups
// ---------------------------------------------------------------------------

/// The zones a number's rate center may be in: the longest matching prefix of
/// the data wins (`1850200` over `1850`); `A&B` entries give both. A
/// toll-free or other non-geographic NANP number matches only the `1` line,
/// i.e. every NANP zone. A number with no matching prefix (an unknown
/// country) gets an empty slice — see `quiet_hours::evaluate` for what that
/// means for sending.
///
/// `e164` is the number's digits as an integer: `18505550123`.
pub fn number_zones(e164: u64) -> &'static [Zone] {
    let t = &*TABLES;
    let Some(key) = key15(e164) else {
        return &[];
    };
    // Intervals are sorted by start and the first starts at 0.
    let i = t.starts.partition_point(|&s| s <= key).saturating_sub(1);
    &t.sets[usize::from(t.set_of[i])]
}

/// Every NANP zone (the data's `1` line): where a toll-free number may ring,
/// and the conservative answer when nothing is known.
pub fn nanp_zones() -> &'static [Zone] {
    &TABLES.sets[usize::from(TABLES.nanp_set)]
}

/// The US state (or territory) of a NANP number's area code; `None` for
/// Canada, the Caribbean, non-geographic codes and non-NANP numbers.
pub fn area_state(e164: u64) -> Option<StateCode> {
    if !(10_000_000_000..20_000_000_000).contains(&e164) {
        return None;
    }
    let npa = (e164 / 10_000_000) % 1000;
    TABLES.area_state[npa as usize]
}

/// The zones of an address state: the union of the zones of every prefix
/// whose area code belongs to the state (FL → New_York, Chicago).
pub fn state_zones(state: StateCode) -> &'static [Zone] {
    TABLES.state_zones.get(&state).map(|z| &**z).unwrap_or(&[])
}

/// The zones of a candidate set: borrowed from the static tables in the
/// common case, owned only when an address adds zones the number lacks.
#[derive(Clone, PartialEq, Eq)]
pub enum ZoneSet {
    Static(&'static [Zone]),
    Owned(Vec<Zone>),
}

impl std::ops::Deref for ZoneSet {
    type Target = [Zone];
    fn deref(&self) -> &[Zone] {
        match self {
            ZoneSet::Static(z) => z,
            ZoneSet::Owned(z) => z,
        }
    }
}

impl fmt::Debug for ZoneSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// At most two states: the area code's and the address's. Inline, no heap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StateSet {
    len: u8,
    codes: [StateCode; 2],
}

impl StateSet {
    pub const EMPTY: StateSet = StateSet {
        len: 0,
        codes: [StateCode(*b"AL"); 2],
    };

    /// Adds a state unless present; a third distinct state is ignored (there
    /// are only two sources, so that cannot happen through [`candidates`]).
    pub fn insert(&mut self, s: StateCode) {
        if !self.contains(&s) && usize::from(self.len) < self.codes.len() {
            self.codes[usize::from(self.len)] = s;
            self.len += 1;
        }
    }
}

impl std::ops::Deref for StateSet {
    type Target = [StateCode];
    fn deref(&self) -> &[StateCode] {
        &self.codes[..usize::from(self.len)]
    }
}

impl fmt::Debug for StateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Where a recipient may be (docs/compliance.md; Reg F comment 6(b)(1)(i)-2: every
/// location the debt collector knows of counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    /// `recipient.tz` ∪ the address state's zones ∪ the number's zones.
    /// Empty only for an unknown non-NANP number with no address.
    pub zones: ZoneSet,
    /// The area code's state ∪ the address state.
    pub states: StateSet,
}

impl Candidates {
    /// Candidates given outright (tests, `/v1/policy/evaluate` what-ifs).
    pub fn from_parts(zones: &[Zone], states: &[StateCode]) -> Candidates {
        let mut set = StateSet::EMPTY;
        states.iter().for_each(|&s| set.insert(s));
        Candidates {
            zones: ZoneSet::Owned(zones.to_vec()),
            states: set,
        }
    }
}

/// The candidate zones and states of one message. No allocation unless the
/// address adds a zone the number's prefix does not list: two array reads, a
/// binary search and a handful of `u16` comparisons.
pub fn candidates(
    e164: u64,
    recipient_tz: Option<Zone>,
    recipient_state: Option<StateCode>,
) -> Candidates {
    let number = number_zones(e164);
    let address = recipient_state.map(state_zones).unwrap_or(&[]);
    let tz_adds = recipient_tz.filter(|z| !number.contains(z));
    let zones = if tz_adds.is_none() && address.iter().all(|z| number.contains(z)) {
        ZoneSet::Static(number)
    } else {
        let mut all = Vec::with_capacity(number.len() + address.len() + 1);
        for &z in recipient_tz.iter().chain(address).chain(number) {
            if !all.contains(&z) {
                all.push(z);
            }
        }
        ZoneSet::Owned(all)
    };
    let mut states = StateSet::EMPTY;
    area_state(e164)
        .into_iter()
        .chain(recipient_state)
        .for_each(|s| states.insert(s));
    Candidates { zones, states }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

struct Tables {
    /// Every zone of the tz database, with its rules; `Zone` indexes it.
    zones: Vec<(Box<str>, TimeZone)>,
    zone_by_name: HashMap<Box<str>, Zone>,
    /// The same, keyed by the ASCII-lower-cased name.
    zone_by_lower: HashMap<Box<str>, Zone>,
    /// Disjoint intervals of 15-digit keys: `starts[i]..starts[i+1]` maps to
    /// `sets[set_of[i]]` (set 0 is empty: no prefix matched).
    starts: Vec<u64>,
    set_of: Vec<u16>,
    sets: Vec<Box<[Zone]>>,
    nanp_set: u16,
    /// Indexed by NPA (0–999).
    area_state: Vec<Option<StateCode>>,
    state_zones: HashMap<StateCode, Box<[Zone]>>,
}

/// Built on first use. Panics (at start-up, where the daemon first touches
/// it) if the embedded data is malformed or names a zone the system tz
/// database lacks: quiet hours cannot be enforced without it, so refusing to
/// run beats sending at the wrong hour.
static TABLES: LazyLock<Tables> = LazyLock::new(|| match load() {
    Ok(t) => t,
    Err(e) => panic!("time-zone data: {e}"),
});

/// Forces loading now (call at start-up so a missing tz database fails
/// there, not on the first message).
pub fn preload() {
    LazyLock::force(&TABLES);
}

fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            let (k, v) = l.split_once('|').unwrap_or((l, ""));
            (n, k, v)
        })
}

/// `prefix` right-padded to 15 digits, and the padded key one past its range.
fn prefix_range(prefix: &str) -> Option<(u64, u64)> {
    let len = u32::try_from(prefix.len()).ok()?;
    if len == 0 || len > KEY_DIGITS || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u64 = prefix.parse().ok()?;
    let scale = 10u64.pow(KEY_DIGITS - len);
    Some((p * scale, (p + 1) * scale))
}

/// The number's digits right-padded to 15 digits; `None` if not 1–15 digits.
fn key15(e164: u64) -> Option<u64> {
    let digits = e164.checked_ilog10()? + 1;
    (digits <= KEY_DIGITS).then(|| e164 * 10u64.pow(KEY_DIGITS - digits))
}

fn load() -> Result<Tables, String> {
    // 1. Every zone jiff can find (it skips the posix/ and right/ copies).
    let db = jiff::tz::db();
    let mut names: Vec<String> = db.available().map(|n| n.as_str().to_owned()).collect();
    // Zones the data names must load even if the database does not list
    // them (e.g. a TZif bundle that only lists canonical names).
    for (_, _, v) in data_lines(PREFIX_ZONES) {
        names.extend(v.split('&').filter(|z| !z.is_empty()).map(str::to_owned));
    }
    names.sort();
    names.dedup();
    let mut zones = Vec::with_capacity(names.len());
    let mut zone_by_name = HashMap::with_capacity(names.len());
    let mut zone_by_lower = HashMap::with_capacity(names.len());
    for name in names {
        // A listed name that does not load (a stray file in the zoneinfo
        // directory) is skipped; a zone the data needs is checked below.
        let Ok(tz) = TimeZone::get(&name) else {
            continue;
        };
        let id = u16::try_from(zones.len()).map_err(|_| "more than 65,535 time zones")?;
        zone_by_name.insert(name.clone().into_boxed_str(), Zone(id));
        zone_by_lower.insert(name.to_ascii_lowercase().into_boxed_str(), Zone(id));
        zones.push((name.into_boxed_str(), tz));
    }

    // 2. Area code → state.
    let mut area_state = vec![None; 1000];
    for (n, k, v) in data_lines(AREA_REGIONS) {
        let npa = k
            .strip_prefix('1')
            .filter(|d| d.len() == 3)
            .and_then(|d| d.parse::<usize>().ok())
            .ok_or_else(|| format!("nanp-area-code-regions.txt line {n}: bad key {k:?}"))?;
        area_state[npa] =
            region_state(v).map_err(|e| format!("nanp-area-code-regions.txt line {n}: {e}"))?;
    }

    // 3. Prefix → zone set, interned; then flattened to intervals.
    let mut sets: Vec<Box<[Zone]>> = vec![Box::new([])];
    let mut set_ids: HashMap<String, u16> = HashMap::new();
    let mut ranges: Vec<(u64, u64, u16)> = Vec::new();
    let mut by_state: HashMap<StateCode, Vec<Zone>> = HashMap::new();
    let mut nanp_set = None;
    for (n, k, v) in data_lines(PREFIX_ZONES) {
        let where_ = || format!("phone-prefix-timezones.txt line {n}");
        let (lo, hi) = prefix_range(k).ok_or_else(|| format!("{}: bad prefix {k:?}", where_()))?;
        let id = match set_ids.get(v) {
            Some(&id) => id,
            None => {
                let mut set = Vec::new();
                for name in v.split('&') {
                    let z = zone_by_name.get(name).copied().ok_or_else(|| {
                        format!(
                            "{}: zone {name:?} is not in the system tz database",
                            where_()
                        )
                    })?;
                    set.push(z);
                }
                let id = u16::try_from(sets.len()).map_err(|_| "too many zone sets")?;
                sets.push(set.into_boxed_slice());
                set_ids.insert(v.to_owned(), id);
                id
            }
        };
        ranges.push((lo, hi, id));
        if k == "1" {
            nanp_set = Some(id);
        }
        // A NANP prefix with its area code: its zones are its state's zones.
        if let Some(npa) = k.strip_prefix('1').and_then(|d| d.get(..3))
            && let Ok(npa) = npa.parse::<usize>()
            && let Some(state) = area_state[npa]
        {
            let zs = by_state.entry(state).or_default();
            for &z in sets[usize::from(id)].iter() {
                if !zs.contains(&z) {
                    zs.push(z);
                }
            }
        }
    }
    let nanp_set = nanp_set.ok_or("phone-prefix-timezones.txt has no `1|…` line")?;
    let (starts, set_of) = flatten(ranges);
    let state_zones = by_state
        .into_iter()
        .map(|(s, mut z)| {
            // Ids follow name order (names were sorted before interning).
            z.sort();
            (s, z.into_boxed_slice())
        })
        .collect();
    Ok(Tables {
        zones,
        zone_by_name,
        zone_by_lower,
        starts,
        set_of,
        sets,
        nanp_set,
        area_state,
        state_zones,
    })
}

/// Nested prefix ranges → disjoint intervals where the innermost (longest)
/// prefix wins. Returns interval starts (the first is 0) and their sets.
fn flatten(mut ranges: Vec<(u64, u64, u16)>) -> (Vec<u64>, Vec<u16>) {
    // Outer ranges first at equal starts, so inner ones are pushed above them.
    ranges.sort_by_key(|&(lo, hi, _)| (lo, std::cmp::Reverse(hi)));
    let mut starts: Vec<u64> = Vec::new();
    let mut set_of: Vec<u16> = Vec::new();
    let mut emit = |at: u64, set: u16| {
        if let Some(&last) = set_of.last() {
            if starts.last() == Some(&at) {
                // An empty interval: the later decision for this point wins.
                let i = set_of.len() - 1;
                set_of[i] = set;
                if i > 0 && set_of[i - 1] == set {
                    starts.pop();
                    set_of.pop();
                }
                return;
            }
            if last == set {
                return;
            }
        }
        starts.push(at);
        set_of.push(set);
    };
    let mut stack: Vec<(u64, u16)> = Vec::new(); // (end, set) of open ranges
    emit(0, 0);
    for (lo, hi, set) in ranges {
        while let Some(&(end, _)) = stack.last() {
            if end > lo {
                break;
            }
            stack.pop();
            emit(end, stack.last().map_or(0, |&(_, s)| s));
        }
        emit(lo, set);
        stack.push((hi, set));
    }
    while let Some((end, _)) = stack.pop() {
        emit(end, stack.last().map_or(0, |&(_, s)| s));
    }
    (starts, set_of)
}

#[cfg(test)]
mod tests;
