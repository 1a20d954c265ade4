use super::*;
use crate::policy::zones::{StateCode, candidates};
use proptest::prelude::*;
use std::sync::LazyLock;

/// [`evaluate`] with its rule reports, as `/v1/policy/evaluate` asks.
fn explained(
    rules: &Rules,
    tenant_windows: &[WindowRule],
    category: Category,
    candidates: &Candidates,
    consent: Option<ConsentKind>,
    at: Timestamp,
) -> QuietVerdict {
    evaluate(
        rules,
        tenant_windows,
        category,
        candidates,
        consent,
        at,
        true,
    )
}

static RULES: LazyLock<Rules> = LazyLock::new(Rules::shipped);

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn z(name: &str) -> Zone {
    Zone::by_name(name).unwrap()
}

fn st(s: &str) -> StateCode {
    s.parse().unwrap()
}

fn tenant(toml_windows: &str) -> Vec<WindowRule> {
    let mut t: toml::Table = toml::from_str(toml_windows).unwrap();
    WindowRule::parse_tenant_windows("tenant", t.remove("windows").unwrap()).unwrap()
}

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Want {
    Open,
    /// Deferred to this instant.
    Until(&'static str),
    Never,
}

struct Row {
    why: &'static str,
    number: u64,
    tz: Option<&'static str>,
    state: Option<&'static str>,
    category: Category,
    consent: Option<ConsentKind>,
    at: &'static str,
    want: Want,
}

const M: Category = Category::Marketing;
const C: Category = Category::Collections;
const T: Category = Category::Transactional;

fn row(why: &'static str, number: u64, category: Category, at: &'static str, want: Want) -> Row {
    Row {
        why,
        number,
        tz: None,
        state: None,
        category,
        consent: None,
        at,
        want,
    }
}

fn check(rows: &[Row], tenant_windows: &[WindowRule]) {
    for r in rows {
        let c = candidates(r.number, r.tz.map(z), r.state.map(st));
        let v = explained(&RULES, tenant_windows, r.category, &c, r.consent, ts(r.at));
        let ok = match (r.want, &v) {
            (Want::Open, QuietVerdict::Open { .. }) => true,
            (Want::Until(t), QuietVerdict::Closed { opens_at, .. }) => *opens_at == ts(t),
            (Want::Never, QuietVerdict::Never { .. }) => true,
            _ => false,
        };
        assert!(
            ok,
            "{}\n  at {} wanted {:?}\n  got {v:#?}",
            r.why, r.at, r.want
        );
        // Every verdict agrees with the brute-force reference at `at`.
        let reference = reference_open(tenant_windows, r.category, &c, r.consent, ts(r.at));
        assert_eq!(reference, v.is_open(), "{}: reference disagrees", r.why);
    }
}

#[test]
#[rustfmt::skip] // one row per line
fn federal_windows_and_dst() {
    use Want::*;
    check(
        &[
            row("TCPA 64.1200(c)(1): 20:59 EDT is inside 08–21", 12125550123, M, "2026-03-09T20:59:59-04:00", Open),
            row("TCPA 64.1200(c)(1): 21:00 is outside (start <= t < end)", 12125550123, M, "2026-03-09T21:00:00-04:00", Until("2026-03-10T08:00:00-04:00")),
            row("FDCPA 1692c(a)(1): 07:59 closed", 12125550123, C, "2026-03-10T07:59:30-04:00", Until("2026-03-10T08:00:00-04:00")),
            // Spring forward, America/New_York 2026-03-08 02:00 EST → 03:00 EDT.
            row("FDCPA, DST starts: from 01:30 EST, opens 08:00 EDT", 12125550123, C, "2026-03-08T01:30:00-05:00", Until("2026-03-08T08:00:00-04:00")),
            row("FDCPA, DST starts: from the evening before", 12125550123, C, "2026-03-07T21:30:00-05:00", Until("2026-03-08T12:00:00Z")),
            // Fall back, 2026-11-01 02:00 EDT → 01:00 EST.
            row("FDCPA, DST ends: from the first 01:30 (EDT)", 12125550123, C, "2026-11-01T01:30:00-04:00", Until("2026-11-01T08:00:00-05:00")),
            row("FDCPA, DST ends: from the second 01:30 (EST)", 12125550123, C, "2026-11-01T01:30:00-05:00", Until("2026-11-01T13:00:00Z")),
            row("FDCPA, DST ends: 20:59 EST open", 12125550123, C, "2026-11-01T20:59:00-05:00", Open),
            // 605 exchange split across Central and Mountain (area-code line: Denver & North_Dakota/Center).
            row("Reg F 6(b)(1)(i)-2, 605 default line: Denver is an hour behind Central", 16055550123, C, "2026-03-08T13:30:00Z", Until("2026-03-08T14:00:00Z")),
            row("605 exchange 201 (Central) alone: already 08:30 CDT", 16052011234, C, "2026-03-08T13:30:00Z", Open),
            row("605 exchange 209 (Mountain): 07:30 MDT", 16052091234, C, "2026-03-08T13:30:00Z", Until("2026-03-08T14:00:00Z")),
            row("Denver, day before DST: 08:00 MST = 15:00Z", 16052091234, C, "2026-03-07T14:30:00Z", Until("2026-03-07T15:00:00Z")),
            // Arizona keeps no DST; the Navajo Nation does.
            row("Phoenix summer: 07:59 MST", 19285550123, M, "2026-07-01T14:59:00Z", Until("2026-07-01T15:00:00Z")),
            row("Phoenix winter: same UTC instant", 19285550123, M, "2026-01-05T14:59:00Z", Until("2026-01-05T15:00:00Z")),
            row("Phoenix summer 20:30 MST open", 19285550123, M, "2026-07-02T03:30:00Z", Open),
            row("Navajo 928-674 (Denver & Phoenix): 21:30 MDT closes it", 19286741234, M, "2026-07-02T03:30:00Z", Until("2026-07-02T15:00:00Z")),
            // Split area codes.
            row("850 exchange 200 (Central): 07:30 CST → 08:00", 18502001234, C, "2026-01-05T13:30:00Z", Until("2026-01-05T14:00:00Z")),
            row("850 area-code line (Eastern): 08:30 EST open", 18505550123, C, "2026-01-05T13:30:00Z", Open),
            row("208 Boise & LA: 07:30 PDT in LA", 12082001234, C, "2026-07-01T14:30:00Z", Until("2026-07-01T15:00:00Z")),
            row("208 Boise & LA: 21:30 MDT in Boise", 12082001234, C, "2026-07-02T03:30:00Z", Until("2026-07-02T15:00:00Z")),
            row("208 Boise & LA: both open", 12082001234, C, "2026-07-01T20:00:00Z", Open),
            row("812 exchange 385 (Central): 20:30 CST open", 18123851234, C, "2026-01-06T02:30:00Z", Open),
            row("812 line (Eastern): 21:30 EST closed", 18125550123, C, "2026-01-06T02:30:00Z", Until("2026-01-06T13:00:00Z")),
            // No-DST islands.
            row("Hawaii: 08:00 HST = 18:00Z on the mainland's DST day", 18085550123, M, "2026-03-08T17:59:00Z", Until("2026-03-08T18:00:00Z")),
            row("Puerto Rico 787: 08:00 AST = 12:00Z", 17875550123, C, "2026-07-01T11:00:00Z", Until("2026-07-01T12:00:00Z")),
            row("Puerto Rico 939: same, in winter", 19395550123, C, "2026-01-05T11:00:00Z", Until("2026-01-05T12:00:00Z")),
            row("Guam: UTC+10, 07:59 on the next calendar day", 16715550123, M, "2026-03-07T21:59:00Z", Until("2026-03-07T22:00:00Z")),
            row("Transactional: no window by default (64.1200(c)(1) covers solicitations)", 12125550123, T, "2026-03-09T03:00:00-04:00", Open),
        ],
        &[],
    );
}

#[test]
fn toll_free_and_unknown_numbers_use_every_nanp_zone() {
    // Every NANP zone from Guam (UTC+10) to Pago Pago (UTC−11) and St. John's
    // (UTC−2:30 in summer): 08–21 everywhere is 22:00–23:30Z.
    for number in [18005550123u64, 18885550123, 999123456789] {
        let c = candidates(number, None, None);
        let v = explained(&RULES, &[], C, &c, None, ts("2026-03-10T12:00:00Z"));
        assert_eq!(
            (v.is_open(), &v),
            (
                false,
                &QuietVerdict::Closed {
                    opens_at: ts("2026-03-10T22:00:00Z"),
                    closes_at: ts("2026-03-10T23:30:00Z"),
                    fired: v.fired().to_vec()
                }
            ),
            "{number}"
        );
        assert!(
            v.fired()[0].detail.contains("candidate zones"),
            "{:?}",
            v.fired()
        );
    }
}

#[test]
fn cfpb_example_eastern_number_pacific_address() {
    // Reg F comment 6(b)(1)(i)-2: Eastern area code + Pacific address →
    // collections only 11:00–21:00 Eastern.
    let c = candidates(12125550123, Some(z("America/Los_Angeles")), Some(st("CA")));
    let at = ts("2026-03-10T10:30:00-04:00");
    let v = explained(&RULES, &[], C, &c, None, at);
    assert_eq!(
        v,
        QuietVerdict::Closed {
            opens_at: ts("2026-03-10T11:00:00-04:00"),
            closes_at: ts("2026-03-10T21:00:00-04:00"),
            fired: vec![Fired {
                rule: "fdcpa-convenient-hours".into(),
                citation: "15 USC 1692c(a)(1); 12 CFR 1006.6(b)(1)(i)".into(),
                effect: Effect::Defer,
                detail: "closed in America/Los_Angeles (07:30 local) until 08:00".into(),
            }],
        }
    );
    // At 11:00 Eastern it is open, and closes at 21:00 Eastern.
    let v = explained(&RULES, &[], C, &c, None, ts("2026-03-10T11:00:00-04:00"));
    assert!(
        matches!(v, QuietVerdict::Open { closes_at, .. } if closes_at == ts("2026-03-10T21:00:00-04:00")),
        "{v:?}"
    );
}

#[test]
#[rustfmt::skip] // one row per line
fn state_rules() {
    use Want::*;
    let with = |mut r: Row, state: Option<&'static str>, consent: Option<ConsentKind>| {
        r.state = state;
        r.consent = consent;
        r
    };
    let express = Some(ConsentKind::Express);
    let written = Some(ConsentKind::ExpressWritten);
    check(
        &[
            // Tex. Bus. & Com. Code 301.051: Mon–Sat 09–21, Sun 12–21.
            row("TX 301.051: Sunday 11:30 closed until noon", 12145550123, M, "2026-03-15T11:30:00-05:00", Until("2026-03-15T12:00:00-05:00")),
            row("TX 301.051: Sunday noon open", 12145550123, M, "2026-03-15T12:00:00-05:00", Open),
            row("TX 301.051: Saturday 08:30 closed until 09:00", 12145550123, M, "2026-03-14T08:30:00-05:00", Until("2026-03-14T09:00:00-05:00")),
            row("TX 301.051: El Paso (Mountain) Sunday", 19155550123, M, "2026-03-15T11:30:00-06:00", Until("2026-03-15T12:00:00-06:00")),
            row("TX, collections: no Sunday rule (FDCPA only)", 12145550123, C, "2026-03-15T08:30:00-05:00", Open),
            // Ala. Admin. Code r. 770-X-5-.17: no Sundays, no state holidays.
            row("AL r.770-X-5-.17: Memorial Day closed, opens next business day 08:00", 12055550123, M, "2026-05-25T10:00:00-05:00", Until("2026-05-26T08:00:00-05:00")),
            row("AL: the Sunday before runs into the holiday", 12055550123, M, "2026-05-24T10:00:00-05:00", Until("2026-05-26T08:00:00-05:00")),
            row("AL: Saturday 19:59 open", 12055550123, M, "2026-05-23T19:59:00-05:00", Open),
            row("AL: Saturday 20:00 closed until Tuesday", 12055550123, M, "2026-05-23T20:00:00-05:00", Until("2026-05-26T08:00:00-05:00")),
            row("AL: holidays bind marketing only", 12055550123, C, "2026-05-25T10:00:00-05:00", Open),
            with(row("AL address, NY number: AL rule applies in New York's zone", 12125550123, M, "2026-12-25T10:00:00-05:00", Until("2026-12-26T08:00:00-06:00")), Some("AL"), None),
            // La. PSC R-29617: no Sundays, no holidays (Mardi Gras 2027-02-09).
            row("LA R-29617: Mardi Gras closed", 15045550123, M, "2027-02-09T10:00:00-06:00", Until("2027-02-10T08:00:00-06:00")),
            // Miss. Code 77-3-723: no Sundays.
            row("MS 77-3-723: Sunday closed", 16015550123, M, "2026-03-15T10:00:00-05:00", Until("2026-03-16T08:00:00-05:00")),
            // Utah Code 13-25a-103: Sundays / holidays closed unless prior express consent.
            row("UT 13-25a-103: Sunday without consent", 18015550123, M, "2026-03-15T10:00:00-06:00", Until("2026-03-16T08:00:00-06:00")),
            with(row("UT 13-25a-103: Sunday with express consent", 18015550123, M, "2026-03-15T10:00:00-06:00", Open), None, express),
            with(row("UT 13-25a-103: written consent is stronger than express", 18015550123, M, "2026-03-15T10:00:00-06:00", Open), None, written),
            with(row("UT 13-25a-103: consent does not lift the hours", 18015550123, M, "2026-03-15T21:00:00-06:00", Until("2026-03-16T08:00:00-06:00")), None, express),
            row("UT 63G-1-301: Pioneer Day (Fri) closed, Saturday open", 18015550123, M, "2026-07-24T10:00:00-06:00", Until("2026-07-25T08:00:00-06:00")),
            // Fla. Stat. 501.616(6): marketing 08:00–20:00.
            row("FL 501.616(6): 19:59 EDT open", 13055550123, M, "2026-06-01T19:59:00-04:00", Open),
            row("FL 501.616(6): 20:00 EDT closed", 13055550123, M, "2026-06-01T20:00:00-04:00", Until("2026-06-02T08:00:00-04:00")),
            row("FL 501.616(6), panhandle exchange (Central): 20:00 CDT", 18502001234, M, "2026-06-01T20:00:00-05:00", Until("2026-06-02T08:00:00-05:00")),
            row("FL 559.72(17): collections until 21:00", 13055550123, C, "2026-06-01T20:30:00-04:00", Open),
            // FL address on a NY number: FL's 20:00 in both Eastern and Central.
            with(row("FL address: Central zone added, 20:00 CDT end", 12125550123, M, "2026-06-01T20:30:00-04:00", Until("2026-06-02T09:00:00-04:00")), Some("FL"), None),
            // Conn. Gen. Stat. 42-288a: 09–20.
            row("CT 42-288a: 08:30 closed", 12035550123, M, "2026-06-01T08:30:00-04:00", Until("2026-06-01T09:00:00-04:00")),
            // RCW 19.16.250: 07:30 for collections, but FDCPA's 08:00 binds.
            row("WA collections: FDCPA 08:00 still binds", 12065550123, C, "2026-06-01T07:45:00-07:00", Until("2026-06-01T08:00:00-07:00")),
        ],
        &[],
    );
}

#[test]
fn guam_is_on_another_calendar_day() {
    // AL address (Central) + Guam number: the AL Sunday rule is judged on each
    // zone's own date. Sat 17:00 CST is Sun 09:00 in Guam → closed; the first
    // instant open everywhere is Mon 17:00 CDT = Tue 08:00 ChST.
    let c = candidates(16715550123, None, Some(st("AL")));
    let v = explained(&RULES, &[], M, &c, None, ts("2026-03-07T23:00:00Z"));
    let QuietVerdict::Closed {
        opens_at, fired, ..
    } = &v
    else {
        panic!("{v:?}")
    };
    assert_eq!(*opens_at, ts("2026-03-09T22:00:00Z"));
    let al = fired
        .iter()
        .find(|f| &*f.rule == "al-marketing-hours")
        .unwrap();
    assert_eq!(al.effect, Effect::Defer);
    assert!(
        al.detail
            .starts_with("closed in Pacific/Guam (09:00 local) until 2026-03-09"),
        "{}",
        al.detail
    );
}

#[test]
#[rustfmt::skip] // one row per line
fn tenant_windows_gaps_folds_and_never() {
    use Want::*;
    // A tenant's quiet window for transactional texts; applies in every zone.
    let w = tenant(
        "[[windows]]\nid = \"t-gap\"\ncategories = [\"transactional\"]\nstart = \"02:30\"\nend = \"03:30\"\ncitation = \"tenant\"",
    );
    check(
        &[
            // 2026-03-08 02:30 does not exist in New York: open from 03:00 EDT.
            row("gap: a 02:30 start opens when the clock jumps to 03:00", 12125550123, T, "2026-03-08T01:00:00-05:00", Until("2026-03-08T03:00:00-04:00")),
            row("gap: 03:29 EDT open", 12125550123, T, "2026-03-08T03:29:00-04:00", Open),
        ],
        &w,
    );
    let v = explained(&RULES, &w, T, &candidates(12125550123, None, None), None, ts("2026-03-08T01:00:00-05:00"));
    assert!(matches!(v, QuietVerdict::Closed { closes_at, .. } if closes_at == ts("2026-03-08T03:30:00-04:00")), "{v:?}");

    let w = tenant(
        "[[windows]]\nid = \"t-fold\"\ncategories = [\"transactional\"]\nstart = \"00:00\"\nend = \"01:30\"\ncitation = \"tenant\"",
    );
    check(
        &[
            // 2026-11-01: 01:00–02:00 happens twice. At 01:40 EDT it is closed,
            // but local time goes back to 01:00 (EST) twenty minutes later.
            row("fold: reopens when the clock falls back", 12125550123, T, "2026-11-01T01:40:00-04:00", Until("2026-11-01T01:00:00-05:00")),
            row("fold: second 01:29 open", 12125550123, T, "2026-11-01T01:29:00-05:00", Open),
            row("fold: second 01:30 closed until midnight", 12125550123, T, "2026-11-01T01:30:00-05:00", Until("2026-11-02T00:00:00-05:00")),
        ],
        &w,
    );

    // A tenant window outside the federal one: no instant is ever open.
    let w = tenant(
        "[[windows]]\nid = \"t-night\"\ncategories = [\"collections\"]\nstart = \"22:00\"\nend = \"23:00\"\ncitation = \"tenant\"",
    );
    check(&[row("tenant 22–23 vs FDCPA 08–21: never", 12125550123, C, "2026-03-10T12:00:00Z", Never)], &w);
    let v = explained(&RULES, &w, C, &candidates(12125550123, None, None), None, ts("2026-03-10T12:00:00Z"));
    let effects: Vec<(&str, Effect)> = v.fired().iter().map(|f| (&*f.rule, f.effect)).collect();
    assert_eq!(effects, [("fdcpa-convenient-hours", Effect::Allow), ("t-night", Effect::Defer)]);
}

#[test]
fn fired_reports_each_rule() {
    // TX marketing on a Sunday morning: TCPA open, TX closed until noon.
    let c = candidates(12145550123, None, None);
    let v = explained(&RULES, &[], M, &c, None, ts("2026-03-15T11:30:00-05:00"));
    let got: Vec<(&str, Effect, &str)> = v
        .fired()
        .iter()
        .map(|f| (&*f.rule, f.effect, &*f.detail))
        .collect();
    assert_eq!(
        got,
        [
            (
                "tcpa-calling-hours",
                Effect::Allow,
                "open in America/Chicago (11:30 local) until 21:00"
            ),
            (
                "tx-marketing-hours",
                Effect::Defer,
                "closed in America/Chicago (11:30 local) until 12:00"
            ),
        ]
    );
    // UT with consent: the day rule is reported as waived.
    let c = candidates(18015550123, None, None);
    let v = explained(
        &RULES,
        &[],
        M,
        &c,
        Some(ConsentKind::Express),
        ts("2026-03-15T10:00:00-06:00"),
    );
    let waived = v
        .fired()
        .iter()
        .find(|f| &*f.rule == "ut-marketing-sundays-holidays")
        .unwrap();
    assert_eq!(
        (waived.effect, &*waived.detail),
        (
            Effect::Allow,
            "waived: express consent on file (rule yields to express)"
        )
    );
}

// ---------------------------------------------------------------------------
// Property test against a brute-force reference
// ---------------------------------------------------------------------------

/// Obviously-correct reference: every applicable window open in every zone,
/// converting with jiff at the instant.
fn reference_open(
    tenant_windows: &[WindowRule],
    category: Category,
    c: &Candidates,
    consent: Option<ConsentKind>,
    t: Timestamp,
) -> bool {
    let zones: &[Zone] = if c.zones.is_empty() {
        zones::nanp_zones()
    } else {
        &c.zones
    };
    let applicable = RULES
        .windows()
        .iter()
        .filter(|w| w.states().is_empty() || w.states().iter().any(|s| c.states.contains(s)))
        .chain(tenant_windows)
        .filter(|w| w.applies_to(category))
        .filter(|w| match (w.unless_consent(), consent) {
            (Some(need), Some(have)) => have < need,
            _ => true,
        });
    for w in applicable {
        for zone in zones {
            let local = t.to_zoned(zone.tz().clone());
            let minute = i32::from(local.hour()) * 60 + i32::from(local.minute());
            let open = match w.hours_on(local.date()) {
                Some(h) => {
                    i32::from(h.start.minutes()) <= minute && minute < i32::from(h.end.minutes())
                }
                None => false,
            };
            if !open {
                return false;
            }
        }
    }
    true
}

/// NANP prefixes of the data file, for drawing realistic numbers.
static NANP_PREFIXES: LazyLock<Vec<String>> = LazyLock::new(|| {
    include_str!("../../../data/phone-prefix-timezones.txt")
        .lines()
        .filter(|l| l.starts_with('1'))
        .filter_map(|l| l.split_once('|'))
        .map(|(p, _)| p.to_owned())
        .collect()
});

const STATES: [&str; 14] = [
    "FL", "TX", "AL", "UT", "CA", "NY", "AZ", "ID", "HI", "GU", "MA", "WA", "CT", "LA",
];
const ZONES: [&str; 10] = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Pacific/Guam",
    "America/Indiana/Indianapolis",
    "America/St_Johns",
    "Europe/London",
];

fn minute_ceil(t: Timestamp) -> Timestamp {
    let s = t.as_second();
    let up = if t.subsec_nanosecond() > 0 || s.rem_euclid(60) != 0 {
        s - s.rem_euclid(60) + 60
    } else {
        s
    };
    Timestamp::from_second(up).unwrap()
}

fn arb_tenant() -> impl Strategy<Value = Vec<WindowRule>> {
    // Sometimes a tenant window with arbitrary (quarter-hour) hours and a
    // closed weekday, to exercise DST gaps and folds.
    prop::option::weighted(0.3, (0u16..96, 1u16..96, 0usize..3, prop::option::of(0usize..7))).prop_map(|o| {
        let Some((start, len, cat, closed)) = o else {
            return Vec::new();
        };
        let start = start * 15;
        let end = (start + len * 15).min(1440);
        let cat = ["transactional", "collections", "marketing"][cat];
        let closed = closed.map_or(String::new(), |d| {
            format!("closed = [\"{}\"]\n", ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][d])
        });
        let fmt = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        tenant(&format!(
            "[[windows]]\nid = \"p\"\ncategories = [\"{cat}\"]\nstart = \"{}\"\nend = \"{}\"\n{closed}citation = \"t\"",
            fmt(start),
            fmt(end)
        ))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn verdicts_match_a_minute_by_minute_reference(
        prefix in 0..NANP_PREFIXES.len(),
        suffix in 0u64..10_000_000_000,
        category in 0usize..3,
        state in prop::option::of(0..STATES.len()),
        tz in prop::option::of(0..ZONES.len()),
        consent in prop::option::of(prop::bool::ANY),
        // 2026-01-01T00:00Z .. 2028-01-01T00:00Z, with sub-minute seconds.
        at in 1_767_225_600i64..1_830_297_600,
        tenant_windows in arb_tenant(),
    ) {
        let p = &NANP_PREFIXES[prefix];
        let rest = 11 - p.len() as u32;
        let number: u64 = p.parse::<u64>().unwrap() * 10u64.pow(rest) + suffix % 10u64.pow(rest);
        let category = [T, C, M][category];
        let consent = consent.map(|w| if w { ConsentKind::ExpressWritten } else { ConsentKind::Express });
        let c = candidates(number, tz.map(|i| z(ZONES[i])), state.map(|i| st(STATES[i])));
        let at = Timestamp::from_second(at).unwrap();
        let v = explained(&RULES, &tenant_windows, category, &c, consent, at);
        // Without reports (the dispatch path) the decision is the same, and
        // no report is built.
        let quiet = evaluate(&RULES, &tenant_windows, category, &c, consent, at, false);
        prop_assert!(quiet.fired().is_empty());
        let strip = |v: &QuietVerdict| match v {
            QuietVerdict::Open { closes_at, .. } => (0, *closes_at, *closes_at),
            QuietVerdict::Closed { opens_at, closes_at, .. } => (1, *opens_at, *closes_at),
            QuietVerdict::Never { .. } => (2, at, at),
        };
        prop_assert_eq!(strip(&quiet), strip(&v));
        let reference = |t| reference_open(&tenant_windows, category, &c, consent, t);
        prop_assert_eq!(v.is_open(), reference(at), "{:?}", v);
        match v {
            QuietVerdict::Open { closes_at, .. } => {
                prop_assert!(closes_at > at);
            }
            QuietVerdict::Closed { opens_at, closes_at, .. } => {
                // (a) open at opens_at, per evaluate and per the reference;
                prop_assert!(explained(&RULES, &tenant_windows, category, &c, consent, opens_at).is_open());
                prop_assert!(reference(opens_at));
                prop_assert!(closes_at > opens_at);
                // (b) and at no minute before it.
                let mut t = minute_ceil(at);
                while t < opens_at {
                    prop_assert!(!reference(t), "open at {} before opens_at {}", t, opens_at);
                    t = t.checked_add(SignedDuration::from_mins(1)).unwrap();
                }
            }
            QuietVerdict::Never { .. } => {
                // No open minute anywhere in the horizon.
                let end = at.checked_add(SEARCH_HORIZON).unwrap();
                let mut t = minute_ceil(at);
                while t <= end {
                    prop_assert!(!reference(t), "open at {} but verdict Never", t);
                    t = t.checked_add(SignedDuration::from_mins(1)).unwrap();
                }
            }
        }
    }
}

/// A rough cost of `evaluate` for the common case (run with `--ignored
/// --nocapture`; debug builds are ~10× slower than release).
#[test]
#[ignore]
fn evaluate_cost() {
    let c = candidates(13055550123, None, None);
    let at = ts("2026-06-01T12:00:00Z");
    let n = 200_000u32;
    let t = std::time::Instant::now();
    let mut open = 0;
    for i in 0..n {
        let at = at
            .checked_add(SignedDuration::from_secs(i64::from(i)))
            .unwrap();
        open += usize::from(explained(&RULES, &[], M, &c, None, at).is_open());
    }
    println!("evaluate: {:?} per call ({open} open)", t.elapsed() / n);
}
