//! Is `+digits` a valid number? The `phonenumber` crate's answer
//! (libphonenumber's metadata and its parse + validate steps), computed
//! without its per-call machinery.
//!
//! `phonenumber` keeps every pattern as a `CachedRegex`: each use locks one
//! process-wide mutex, hashes the pattern's source text with SipHash to find
//! the compiled regex in a 100-entry LRU, and refreshes the LRU. A parse plus
//! validation makes a dozen such uses: ~7 µs a number and 12% of Herald's
//! CPU in the throughput scenario (`perf`, symbols `sip::Hasher::write`,
//! `LinkedHashMap::get_refresh`). Here the same patterns are compiled once
//! per region, on the region's first number, into regexes that are matched
//! anchored at the start (what every `phonenumber` test asks) with no shared
//! cache in between (each regex keeps its own per-thread scratch space, the
//! regex crate's pool); the steps are a line-by-line port of
//! `phonenumber::parse(None, "+…")` followed by `phonenumber::is_valid`, for
//! the only input Herald gives it (`+`, 8–15 ASCII digits, no leading 0).
//!
//! The port is checked against the crate itself, number by number, by a
//! property test over every country code and length and every example
//! number in the metadata (`tests` below).

use std::borrow::Cow;
use std::sync::{LazyLock, OnceLock};

use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Regex, RegexBuilder};
use regex_automata::{Anchored, Input, meta, util::syntax};

/// Why a syntactically plausible E.164 number is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// No country calling code of 1–3 digits starts the number.
    CountryCode,
    /// The national part fits no number type of its country's plan.
    NumberPlan,
}

/// `digits`: the number without its `+`, ASCII digits only, not starting
/// with 0 (the caller's syntax check).
pub fn validate(digits: &str) -> Result<(), Invalid> {
    let table = &*TABLE;
    // parser::helper::country_code, for a number that came with a `+`.
    if digits.len() <= 2 {
        return Err(Invalid::NumberPlan);
    }
    let mut found = None;
    for len in 1..=3usize.min(digits.len()) {
        let Ok(code) = digits[..len].parse::<u16>() else {
            break;
        };
        if let Some(country) = table.country(code).filter(|c| c.exists) {
            found = Some((country, &digits[len..]));
            break;
        }
    }
    let Some((country, national)) = found else {
        return Err(Invalid::CountryCode);
    };

    // parser::parse_with: find the region, strip its national prefix.
    let mut national: Cow<'_, str> = Cow::Borrowed(national);
    if let Some(region) = table.source_for(country, national.trim_start_matches('0')) {
        let mut potential = region.national_number(&national);
        if let Some(prefix) = region.meta.national_prefix()
            && potential.starts_with(prefix)
        {
            potential = Cow::Owned(potential[prefix.len()..].to_owned());
        }
        if !region.too_short(potential.len()) {
            national = potential;
        }
    }
    if national.len() < 2 || national.len() > 17 {
        return Err(Invalid::NumberPlan);
    }
    // NationalNumber::from_str: leading zeros counted, the rest a u64 below
    // 2^56; `to_string()` renders the same digits back.
    let zeros = national.bytes().take_while(|&b| b == b'0').count();
    match national[zeros..].parse::<u64>() {
        Ok(v) if v < 1 << 56 => {}
        _ => return Err(Invalid::NumberPlan),
    }

    // validator::is_valid_with.
    match table.source_for(country, &national) {
        Some(region) if region.is_known_type(&national) => Ok(()),
        _ => Err(Invalid::NumberPlan),
    }
}

/// Every calling code's regions, from the crate's database; each region's
/// patterns are compiled on first use.
struct Table {
    countries: Vec<Option<Country>>,
    regions: Vec<Region>,
}

struct Country {
    /// `Database::by_code(code).is_some()`.
    exists: bool,
    regions: Regions,
}

enum Regions {
    /// `Database::region(code)` is `None`, or its one region is unusable.
    None,
    /// One region (or the code's first metadata, for a non-geographic
    /// `001` code).
    One(usize),
    /// Several regions, tried in the database's order.
    Many(Vec<usize>),
}

struct Region {
    meta: &'static Metadata,
    compiled: OnceLock<Compiled>,
}

struct Compiled {
    general: Pattern,
    /// The types `validator::number_type` tries (any match ⇒ not Unknown).
    types: Vec<Pattern>,
    leading_digits: Option<meta::Regex>,
    /// Also used for its captures and replacement: a full `Regex`.
    prefix_for_parsing: Option<Regex>,
}

struct Pattern {
    possible_lengths: Box<[u16]>,
    regex: meta::Regex,
}

/// As `Database::from` builds every pattern.
fn compile(source: &str) -> Regex {
    RegexBuilder::new(source)
        .ignore_whitespace(true)
        .build()
        // The crate's database compiled the same source with the same
        // flags when it loaded; a failure here is a build defect.
        .unwrap_or_else(|e| panic!("libphonenumber pattern `{source}`: {e}"))
}

/// The same pattern for tests that only ask whether it matches at 0.
fn compile_anchored(source: &str) -> meta::Regex {
    meta::Regex::builder()
        .syntax(syntax::Config::new().ignore_whitespace(true))
        .build(source)
        .unwrap_or_else(|e| panic!("libphonenumber pattern `{source}`: {e}"))
}

/// `regex.find(value)` starting at 0, as every `phonenumber` match test is.
/// A leftmost match starts at 0 exactly when some match does, so an
/// anchored search answers it without scanning the rest of the value.
fn matches_at_start(regex: &meta::Regex, value: &str) -> bool {
    regex.is_match(Input::new(value).anchored(Anchored::Yes))
}

impl Pattern {
    fn new(d: &Descriptor) -> Pattern {
        Pattern {
            possible_lengths: d.possible_length().into(),
            regex: compile_anchored(d.national_number().as_str()),
        }
    }

    /// `Descriptor::is_match`.
    fn is_match(&self, value: &str) -> bool {
        (self.possible_lengths.is_empty() || self.possible_lengths.contains(&(value.len() as u16)))
            && matches_at_start(&self.regex, value)
    }
}

impl Region {
    fn compiled(&self) -> &Compiled {
        self.compiled.get_or_init(|| {
            let d = self.meta.descriptors();
            let types = [
                d.premium_rate(),
                d.toll_free(),
                d.shared_cost(),
                d.voip(),
                d.personal_number(),
                d.pager(),
                d.uan(),
                d.voicemail(),
                d.fixed_line(),
                d.mobile(),
            ];
            Compiled {
                general: Pattern::new(d.general()),
                types: types.into_iter().flatten().map(Pattern::new).collect(),
                leading_digits: self
                    .meta
                    .leading_digits()
                    .map(|r| compile_anchored(r.as_str())),
                prefix_for_parsing: self
                    .meta
                    .national_prefix_for_parsing()
                    .map(|r| compile(r.as_str())),
            }
        })
    }

    /// `validator::number_type(meta, value) != Type::Unknown`.
    fn is_known_type(&self, value: &str) -> bool {
        let c = self.compiled();
        c.general.is_match(value) && c.types.iter().any(|t| t.is_match(value))
    }

    /// `validator::length(meta, number, Type::Unknown) == TooShort`.
    fn too_short(&self, len: usize) -> bool {
        let general = self.meta.descriptors().general();
        let possible = general.possible_length();
        let Some(&minimum) = possible.first() else {
            return false;
        };
        let len = len as u16;
        len < minimum && !general.possible_local_length().contains(&len)
    }

    /// `parser::helper::national_number`: strip the national prefix (or
    /// apply the transform rule) when what remains still fits the plan.
    fn national_number<'a>(&self, national: &Cow<'a, str>) -> Cow<'a, str> {
        let c = self.compiled();
        let Some(parsing) = &c.prefix_for_parsing else {
            if let Some(prefix) = self.meta.national_prefix()
                && national.starts_with(prefix)
            {
                return Cow::Owned(national[prefix.len()..].to_owned());
            }
            return national.clone();
        };
        // One search: the captures' whole match is what `find` returns.
        let Some(caps) = parsing.captures(national) else {
            return national.clone();
        };
        let whole = caps.get(0).map_or(0..0, |m| m.range());
        if whole.start != 0 {
            return national.clone();
        }
        let end = whole.end;
        let viable = c.general.is_match(national);
        let last = caps.get(caps.len() - 1);
        match self.meta.national_prefix_transform_rule() {
            Some(transform) if last.is_some() => {
                let transformed = parsing.replace(national, transform).into_owned();
                if viable && !c.general.is_match(&transformed) {
                    return national.clone();
                }
                Cow::Owned(transformed)
            }
            _ => {
                // The crate re-checks `national[start..]` with start == 0:
                // the same string, so the check never refuses.
                Cow::Owned(national[end..].to_owned())
            }
        }
    }
}

impl Table {
    fn country(&self, code: u16) -> Option<&Country> {
        self.countries.get(usize::from(code))?.as_ref()
    }

    /// `validator::source_for` followed by the metadata lookup its callers
    /// make.
    fn source_for(&self, country: &Country, national: &str) -> Option<&Region> {
        match &country.regions {
            Regions::None => None,
            Regions::One(i) => Some(&self.regions[*i]),
            Regions::Many(list) => list.iter().map(|&i| &self.regions[i]).find(|r| {
                match &r.compiled().leading_digits {
                    Some(leading) => matches_at_start(leading, national),
                    None => r.is_known_type(national),
                }
            }),
        }
    }
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let db = &*DATABASE;
    let mut regions: Vec<Region> = Vec::new();
    let mut index: std::collections::HashMap<*const Metadata, usize> = Default::default();
    let mut region_of = |meta: &'static Metadata| -> usize {
        *index.entry(meta as *const Metadata).or_insert_with(|| {
            regions.push(Region {
                meta,
                compiled: OnceLock::new(),
            });
            regions.len() - 1
        })
    };
    let mut countries: Vec<Option<Country>> = (0..1000).map(|_| None).collect();
    for (code, slot) in countries.iter_mut().enumerate() {
        let code = code as u16;
        let exists = db.by_code(&code).is_some();
        let names = db.region(&code);
        let regions = match names.as_deref() {
            None | Some([]) => Regions::None,
            Some([one]) => {
                let meta = if *one == "001" {
                    db.by_code(&code).and_then(|m| m.into_iter().next())
                } else if one.parse::<phonenumber::country::Id>().is_ok() {
                    db.by_id(*one)
                } else {
                    None
                };
                meta.map_or(Regions::None, |m| Regions::One(region_of(m)))
            }
            Some(many) => Regions::Many(
                many.iter()
                    .filter_map(|name| db.by_id(*name))
                    .map(&mut region_of)
                    .collect(),
            ),
        };
        if exists || !matches!(regions, Regions::None) {
            *slot = Some(Country { exists, regions });
        }
    }
    Table { countries, regions }
});

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the `phonenumber` crate says, the way Herald used to ask it.
    fn reference(digits: &str) -> bool {
        let s = format!("+{digits}");
        match phonenumber::parse(None, &s) {
            Ok(n) => phonenumber::is_valid(&n),
            Err(_) => false,
        }
    }

    fn check(digits: &str) {
        assert_eq!(
            validate(digits).is_ok(),
            reference(digits),
            "+{digits}: port and phonenumber disagree"
        );
    }

    #[test]
    fn known_numbers() {
        for ok in [
            "14155552671",  // US
            "16135550123",  // CA (Ottawa)
            "18005550199",  // toll-free
            "17875550123",  // PR
            "16715550123",  // GU
            "442079460000", // GB London
            "4915123456789",
            "61412345678",
            "33612345678",
        ] {
            assert_eq!(validate(ok), Ok(()), "+{ok}");
        }
        for (bad, why) in [
            ("10005550123", Invalid::NumberPlan),  // area code 000
            ("11235550123", Invalid::NumberPlan),  // area code starts with 1
            ("14155552", Invalid::NumberPlan),     // too short for the plan
            ("8091234567", Invalid::CountryCode),  // 8, 80, 809 unassigned
            ("99912345678", Invalid::CountryCode), // 9, 99, 999 unassigned
        ] {
            assert_eq!(validate(bad), Err(why), "+{bad}");
            check(bad);
        }
    }

    /// Every example number of every type of every region, as the metadata
    /// ships them, plus the same with a digit changed: the port agrees with
    /// the crate on all of them.
    #[test]
    fn agrees_with_phonenumber_on_every_example() {
        let mut n = 0;
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let all = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            for ex in all.into_iter().flatten().filter_map(|x| x.example()) {
                let full = format!("{}{ex}", meta.country_code());
                if full.len() < 8 || full.len() > 15 || full.starts_with('0') {
                    continue;
                }
                check(&full);
                for i in 0..full.len() {
                    let mut v: Vec<u8> = full.clone().into_bytes();
                    v[i] = b'0' + (v[i] - b'0' + 7) % 10;
                    if v[0] != b'0' {
                        check(std::str::from_utf8(&v).unwrap_or_default());
                    }
                }
                // With the national prefix written in, as people do.
                if let Some(p) = meta.national_prefix() {
                    let with = format!("{}{p}{ex}", meta.country_code());
                    if with.len() <= 15 {
                        check(&with);
                    }
                }
                n += 1;
            }
        }
        assert!(n > 1000, "only {n} examples");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Random digit strings of every E.164 length, biased towards real
        /// calling codes so most reach the number-plan checks.
        #[test]
        fn agrees_with_phonenumber(
            code in prop::sample::select(vec![
                "1", "7", "20", "27", "30", "31", "33", "34", "39", "40", "41",
                "44", "49", "52", "55", "61", "62", "63", "64", "65", "81", "82",
                "86", "90", "91", "212", "234", "254", "351", "352", "353",
                "358", "370", "380", "420", "852", "880", "966", "971", "972",
                "979", "800", "808", "870", "881", "882", "883", "888", "2", "9",
                "42", "80", "999",
            ]),
            len in 8usize..=15,
            rest in "[0-9]{15}",
        ) {
            let digits = format!("{code}{}", &rest[..len - code.len()]);
            prop_assert_eq!(validate(&digits).is_ok(), reference(&digits), "+{}", digits);
        }

        /// NANP in depth: any area code, any exchange.
        #[test]
        fn agrees_with_phonenumber_in_nanp(rest in "[0-9]{7,14}") {
            let digits = format!("1{rest}");
            prop_assert_eq!(validate(&digits).is_ok(), reference(&digits), "+{}", digits);
        }
    }
}
