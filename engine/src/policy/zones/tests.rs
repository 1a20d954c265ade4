use super::*;

fn z(name: &str) -> Zone {
    Zone::by_name(name).unwrap_or_else(|| panic!("zone {name}"))
}

fn names(zs: &[Zone]) -> Vec<&'static str> {
    let mut v: Vec<&str> = zs.iter().map(|z| z.name()).collect();
    v.sort();
    v
}

fn st(s: &str) -> StateCode {
    s.parse().unwrap()
}

#[test]
fn number_zones_longest_prefix_wins() {
    // (number, zones, what the row checks) — docs/compliance.md#time-zones traps.
    let table: &[(u64, &[&str], &str)] = &[
        (
            12125550123,
            &["America/New_York"],
            "212 Manhattan: one zone",
        ),
        (
            18505550123,
            &["America/New_York"],
            "850 area-code line: New_York",
        ),
        (
            18502001234,
            &["America/Chicago"],
            "850 split: exchange 200 is Central",
        ),
        (
            18123851234,
            &["America/Chicago"],
            "812 split: exchange 385 is Central",
        ),
        (
            18125550123,
            &["America/New_York"],
            "812 area-code line: Eastern",
        ),
        (
            12082001234,
            &["America/Boise", "America/Los_Angeles"],
            "208 `A&B`: either zone",
        ),
        (
            12082011234,
            &["America/Denver"],
            "208 exchange 201: Mountain",
        ),
        (
            12082151234,
            &["America/Los_Angeles"],
            "208 exchange 215: Pacific",
        ),
        (
            16052011234,
            &["America/Chicago"],
            "605 split: exchange 201 Central",
        ),
        (
            16052091234,
            &["America/Denver"],
            "605 split: exchange 209 Mountain",
        ),
        (
            19285550123,
            &["America/Phoenix"],
            "928 Arizona: Phoenix, no DST",
        ),
        (
            19286741234,
            &["America/Denver", "America/Phoenix"],
            "928 674 Navajo Nation keeps DST",
        ),
        (18085550123, &["Pacific/Honolulu"], "808 Hawaii: no DST"),
        (17875550123, &["America/Puerto_Rico"], "787 Puerto Rico"),
        (19395550123, &["America/Puerto_Rico"], "939 Puerto Rico"),
        (16715550123, &["Pacific/Guam"], "671 Guam: UTC+10"),
        (16705550123, &["Pacific/Saipan"], "670 Saipan"),
        (13405550123, &["America/St_Thomas"], "340 USVI: no DST"),
        (
            442071234567,
            &["Europe/London"],
            "non-NANP: the country line",
        ),
        (999123456789, &[], "unassigned country code: nothing"),
        (0, &[], "not a number"),
        (1234567890123456, &[], "16 digits: not E.164"),
    ];
    for &(n, want, why) in table {
        assert_eq!(names(number_zones(n)), want, "{n}: {why}");
    }
}

#[test]
fn toll_free_numbers_ring_in_every_nanp_zone() {
    // docs/compliance.md: toll-free numbers could be anywhere in NANP → the `1` line.
    let nanp = names(nanp_zones());
    assert_eq!(nanp.len(), 42);
    assert!(nanp.contains(&"Pacific/Guam") && nanp.contains(&"America/St_Johns"));
    for n in [18005550123u64, 18885550123, 18775550123, 18445550123] {
        assert_eq!(names(number_zones(n)), nanp, "{n}");
        assert_eq!(area_state(n), None, "{n}: toll-free has no state");
    }
}

#[test]
fn area_code_states_normalise_the_region_names() {
    // (number, state) — region spellings from nanp-area-code-regions.txt.
    let table: &[(u64, Option<&str>)] = &[
        (12105550123, Some("TX")), // "San Antonio, TX"
        (12065550123, Some("WA")), // "Washington State"
        (12025550123, Some("DC")), // "Washington D.C."
        (17285550123, Some("FL")), // "Palm Beach, FL"
        (12125550123, Some("NY")), // "New York, NY"
        (13125550123, Some("IL")), // "Chicago, IL"
        (12155550123, Some("PA")), // "Pennsylvania"
        (17875550123, Some("PR")), // added by hand
        (13405550123, Some("VI")),
        (16715550123, Some("GU")),
        (16705550123, Some("MP")),
        (16845550123, Some("AS")),
        (12505550123, None),  // "British Columbia"
        (12575550123, None),  // "British Colombia" (sic)
        (14375550123, None),  // "Toronto, ON"
        (12635550123, None),  // "Montreal, QC"
        (18675550123, None),  // "Northwest Territories/Nunavut/Yukon"
        (442071234567, None), // not NANP
        (1212555012, None),   // 10 digits: not a NANP E.164 number
    ];
    for &(n, want) in table {
        assert_eq!(
            area_state(n).map(|s| s.to_string()),
            want.map(str::to_owned),
            "{n}"
        );
    }
}

#[test]
fn state_zones_are_derived_from_the_area_codes() {
    // (state, zones) checked against where the state actually is.
    let table: &[(&str, &[&str])] = &[
        ("FL", &["America/Chicago", "America/New_York"]), // panhandle is Central
        ("TX", &["America/Chicago", "America/Denver"]),   // El Paso is Mountain
        ("AZ", &["America/Denver", "America/Phoenix"]),   // Navajo Nation keeps DST
        ("HI", &["Pacific/Honolulu"]),
        ("PR", &["America/Puerto_Rico"]),
        ("GU", &["Pacific/Guam"]),
        ("NY", &["America/New_York"]),
        ("CA", &["America/Los_Angeles"]),
    ];
    for &(s, want) in table {
        assert_eq!(names(state_zones(st(s))), want, "{s}");
    }
    // Idaho: Boise (Mountain) and the panhandle (Pacific), and Denver lines.
    let id = names(state_zones(st("ID")));
    assert!(
        ["America/Boise", "America/Los_Angeles"]
            .iter()
            .all(|z| id.contains(z)),
        "{id:?}"
    );
    // Every US state, DC and territory has at least one zone.
    for (code, _) in US_STATES {
        assert!(!state_zones(st(code)).is_empty(), "{code}");
    }
}

#[test]
fn state_codes_parse_us_codes_only() {
    assert_eq!(st("fl"), st("FL"));
    assert_eq!(st("Fl").to_string(), "FL");
    for bad in ["", "F", "FLA", "XX", "ON", "Florida"] {
        assert!(bad.parse::<StateCode>().is_err(), "{bad}");
    }
    // Canadian provinces are valid regions with no US state rules.
    assert_eq!(parse_region("on"), Ok(None));
    assert_eq!(parse_region("TX"), Ok(Some(st("TX"))));
    assert!(parse_region("ZZ").is_err());
}

#[test]
fn zones_by_name_cover_the_whole_tz_database() {
    // Zones the data never names still resolve (recipient.tz may be any zone).
    for name in [
        "America/Indiana/Indianapolis",
        "Europe/Berlin",
        "US/Eastern",
        "UTC",
    ] {
        assert_eq!(z(name).name(), name);
    }
    assert_eq!(Zone::by_name("america/chicago"), Some(z("America/Chicago")));
    assert_eq!(Zone::by_name("Mars/Olympus_Mons"), None);
    assert_eq!(Zone::by_name(&"x".repeat(100)), None);
    assert_eq!(z("Pacific/Guam").tz().iana_name(), Some("Pacific/Guam"));
}

/// (number, recipient.tz, recipient.state, zones, states)
type CandidateRow = (
    u64,
    Option<&'static str>,
    Option<&'static str>,
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn candidates_union_tz_address_and_number() {
    let table: &[CandidateRow] = &[
        // Number only: the prefix's zones, the area code's state.
        (12125550123, None, None, &["America/New_York"], &["NY"]),
        // CFPB example (Reg F comment 6(b)(1)(i)-2): Eastern number, Pacific address.
        (
            12125550123,
            Some("America/Los_Angeles"),
            Some("CA"),
            &["America/Los_Angeles", "America/New_York"],
            &["NY", "CA"],
        ),
        // Address in the same zone as the number adds a state, no zone.
        (
            12125550123,
            Some("America/New_York"),
            Some("NJ"),
            &["America/New_York"],
            &["NY", "NJ"],
        ),
        // Address state FL adds Central (panhandle) to an Eastern number.
        (
            13055550123,
            None,
            Some("FL"),
            &["America/Chicago", "America/New_York"],
            &["FL"],
        ),
        // Unknown country, no address: nothing (evaluate falls back to NANP).
        (999123456789, None, None, &[], &[]),
        // Unknown country with a tz: just the tz.
        (
            999123456789,
            Some("Europe/Berlin"),
            None,
            &["Europe/Berlin"],
            &[],
        ),
    ];
    for &(n, tz, state, zs, states) in table {
        let c = candidates(n, tz.map(z), state.map(st));
        assert_eq!(names(&c.zones), zs, "{n} {tz:?} {state:?}");
        let got: Vec<String> = c.states.iter().map(ToString::to_string).collect();
        assert_eq!(got, states, "{n} {tz:?} {state:?}");
    }
    // The common case borrows the static table: no allocation.
    assert!(matches!(
        candidates(12125550123, Some(z("America/New_York")), Some(st("NY"))).zones,
        ZoneSet::Static(_)
    ));
}

#[test]
fn flatten_keeps_the_innermost_prefix() {
    // Prefixes 1 ⊃ 12 ⊃ 123, and 13; keys at 3 digits for readability.
    let r = |p: &str, set: u16| {
        let (lo, hi) = prefix_range(p).unwrap();
        (lo / 10u64.pow(12), hi / 10u64.pow(12), set)
    };
    let (starts, sets) = flatten(vec![r("123", 3), r("1", 1), r("13", 4), r("12", 2)]);
    assert_eq!(starts, [0, 100, 120, 123, 124, 130, 140, 200]);
    assert_eq!(sets, [0, 1, 2, 3, 2, 4, 1, 0]);
}

#[test]
fn data_file_prefixes_are_unique() {
    let mut seen = std::collections::HashSet::new();
    for (n, k, _) in data_lines(PREFIX_ZONES) {
        assert!(seen.insert(k), "line {n}: duplicate prefix {k}");
    }
}

/// A rough cost of `candidates` (run with `--ignored --nocapture`; debug
/// builds are ~10× slower than release).
#[test]
#[ignore]
fn candidates_cost() {
    let t = std::time::Instant::now();
    preload();
    println!("load: {:?} ({} zones)", t.elapsed(), TABLES.zones.len());
    let n = 1_000_000u64;
    let t = std::time::Instant::now();
    let mut zones = 0usize;
    for i in 0..n {
        let c = candidates(12125550000 + (i % 10_000), None, Some(st("NY")));
        zones += c.zones.len();
    }
    let per = t.elapsed() / u32::try_from(n).unwrap();
    println!("candidates: {per:?} per call ({zones} zones)");
}
