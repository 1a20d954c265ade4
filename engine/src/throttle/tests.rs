//! Carrier resolution, local buckets, pacing, live changes, and the GCRA
//! arithmetic the fleet script uses. The script itself runs against a real
//! Redis in `engine/tests/throttle.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;

use super::fleet::{Grant, gcra_take};
use super::*;

/// An instant well after the epoch, so `until` arithmetic is visible.
const T0: i64 = 1_700_000_000_000;

const TABLE: &str = r#"
[[carrier]]
name = "att"
aliases = ["AT&T", "cingular"]
prefixes = ["1404555", "1214"]
limit = { segments = 5, per = "second" }

[[carrier]]
name = "tmobile"
aliases = ["t-mobile"]
prefixes = ["1404", "1206555"]
limit = { segments = 10, per = "second", burst = 1 }

[[carrier]]
name = "toll_free"
prefixes = ["1800", "1888"]
limit = { segments = 3, per = "second" }

[[carrier]]
name = "verizon"
prefixes = ["44"]
"#;

fn table() -> ThrottleConfig {
    ThrottleConfig::from_toml_str(TABLE).unwrap()
}

fn carrier(name: &str) -> Carrier {
    Carriers::new(&table()).by_name(name).unwrap()
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

#[test]
fn shipped_table_holds_the_carrier_rules() {
    let c = ThrottleConfig::shipped();
    let limit = |name: &str| c.carrier(name).unwrap().limit;
    // docs/compliance.md#carrier-rules: AT&T class E 240 / minute.
    let att = limit("att").unwrap();
    assert_eq!((att.segments(), att.per()), (240, Duration::from_secs(60)));
    assert_eq!(att.burst(), 4, "one second's worth of 240/min");
    // Toll-free 3 per second.
    let tf = limit("toll_free").unwrap();
    assert_eq!(
        (tf.segments(), tf.per(), tf.burst()),
        (3, Duration::from_secs(1), 3)
    );
    // T-Mobile day cap 2,000 = 1,900 a day + a burst of 100.
    let tmo = limit("tmobile").unwrap();
    assert_eq!(tmo.segments() + tmo.burst(), 2000);
    assert_eq!(tmo.per(), Duration::from_secs(86_400));
    assert!(limit("verizon").is_none());
    assert!(limit("unknown").is_none());
    for name in ["att", "tmobile", "toll_free"] {
        assert!(
            c.carrier(name).unwrap().fleet_lease.is_some(),
            "{name} is fleet-wide"
        );
    }
    // Per sender: long code 1/s, toll-free 3/s, short code 100/s.
    let s = &c.senders.by_class;
    let rate = |cl: SenderClass| s[cl.index()].map(|l| (l.segments(), l.per()));
    let sec = Duration::from_secs(1);
    assert_eq!(rate(SenderClass::LongCode), Some((1, sec)));
    assert_eq!(rate(SenderClass::TollFree), Some((3, sec)));
    assert_eq!(rate(SenderClass::ShortCode), Some((100, sec)));
    assert_eq!(rate(SenderClass::MessagingService), None);
    assert_eq!(c.lease_max_age, Duration::from_secs(2));
}

#[test]
fn bad_tables_name_the_key_and_the_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[carrier]]\nname = \"AT&T\"",
            "carrier[0].name",
            "a-z, 0-9",
        ),
        (
            "[[carrier]]\nname = \"a\"\n[[carrier]]\nname = \"a\"",
            "carrier[1].name",
            "duplicate carrier",
        ),
        (
            "[[carrier]]\nname = \"a\"\naliases = [\"X\"]\n[[carrier]]\nname = \"b\"\naliases = [\"x\"]",
            "carrier[1].aliases[0]",
            "already a name or alias",
        ),
        (
            "[[carrier]]\nname = \"a\"\n[[carrier]]\nname = \"b\"\naliases = [\"A\"]",
            "carrier[1].aliases[0]",
            "already a name or alias",
        ),
        (
            "[[carrier]]\nname = \"a\"\nprefixes = [\"+1800\"]",
            "carrier[0].prefixes[0]",
            "not E.164",
        ),
        (
            "[[carrier]]\nname = \"a\"\nprefixes = [\"0800\"]",
            "carrier[0].prefixes[0]",
            "not E.164",
        ),
        (
            "[[carrier]]\nname = \"a\"\nprefixes = [\"1234567890123456\"]",
            "carrier[0].prefixes[0]",
            "not E.164",
        ),
        (
            "[[carrier]]\nname = \"a\"\nprefixes = [\"1800\"]\n[[carrier]]\nname = \"b\"\nprefixes = [\"1800\"]",
            "carrier[1].prefixes[0]",
            "listed twice (also carrier[0].prefixes[0])",
        ),
        (
            "[[carrier]]\nname = \"a\"\nlimit = { segments = 0, per = \"second\" }",
            "carrier[0].limit",
            "`segments` must be at least 1",
        ),
        (
            "[[carrier]]\nname = \"a\"\nlimit = { segments = 1, per = \"second\", burst = 0 }",
            "carrier[0].limit",
            "`burst` must be at least 1",
        ),
        (
            "[[carrier]]\nname = \"a\"\nfleet = true",
            "carrier[0].fleet",
            "needs a `limit`",
        ),
        (
            "[[carrier]]\nname = \"a\"\nlimit = { segments = 1, per = \"second\" }\nlease = 3",
            "carrier[0].lease",
            "set `fleet = true`",
        ),
        (
            "[[carrier]]\nname = \"a\"\nlimit = { segments = 1, per = \"second\" }\nfleet = true\nlease = 0",
            "carrier[0].lease",
            "at least 1",
        ),
        (
            "[[carrier]]\nname = \"a\"\nlimit = { segments = 1, per = \"week\" }",
            "carrier[0].limit.per",
            "unknown variant",
        ),
        (
            "[[carrier]]\nname = \"a\"\ncolour = \"red\"",
            "carrier[0].colour",
            "unknown field `colour`",
        ),
        (
            "[senders]\nlong_code = { segments = 0, per = \"second\" }",
            "senders.long_code",
            "at least 1",
        ),
        (
            "[senders.overrides]\n\"\" = { segments = 1, per = \"second\" }",
            "senders.overrides.\"\"",
            "empty sender",
        ),
        (
            "[fleet]\nlease_max_age_ms = 0",
            "fleet.lease_max_age_ms",
            "at least 1",
        ),
        ("[[carrier]\nname = 1", "(syntax)", "line 1"),
    ];
    for (src, path, reason) in cases {
        match ThrottleConfig::from_toml_str(src) {
            Ok(_) => panic!("accepted: {src}"),
            Err(ThrottleError::Config { path: p, reason: r }) => {
                assert_eq!(&p, path, "{src}: {r}");
                assert!(r.contains(reason), "{src}: {r:?} lacks {reason:?}");
            }
            Err(e) => panic!("{src}: {e}"),
        }
    }
}

#[test]
fn fleet_lease_defaults_to_100ms_of_the_rate_within_the_burst() {
    let cfg = ThrottleConfig::from_toml_str(
        r#"
[[carrier]]
name = "a"
limit = { segments = 4500, per = "minute" }
fleet = true
[[carrier]]
name = "b"
limit = { segments = 3, per = "second" }
fleet = true
[[carrier]]
name = "c"
limit = { segments = 1000, per = "second", burst = 5 }
fleet = true
lease = 50
"#,
    )
    .unwrap();
    let lease = |n: &str| cfg.carrier(n).unwrap().fleet_lease;
    assert_eq!(lease("a"), Some(8), "75/s × 100 ms = 7.5, rounded up");
    assert_eq!(lease("b"), Some(1));
    assert_eq!(lease("c"), Some(5), "capped at the burst");
}

#[test]
fn limits() {
    let sec = Duration::from_secs(1);
    let min = Duration::from_secs(60);
    let day = Duration::from_secs(86_400);
    // (segments, per, burst given, burst, period ns)
    let cases = [
        (4500, min, None, 75, 13_333_334),
        (240, min, None, 4, 250_000_000),
        (75, min, None, 2, 800_000_000),
        (3, sec, None, 3, 333_333_334),
        (1, sec, None, 1, 1_000_000_000),
        (100, sec, Some(10), 10, 10_000_000),
        (1900, day, None, 1, 45_473_684_211),
    ];
    for (segments, per, given, burst, period) in cases {
        let l = Limit::new(segments, per, given).unwrap();
        assert_eq!(
            (l.burst(), l.period_ns()),
            (burst, period),
            "{segments}/{per:?}"
        );
    }
    assert_eq!(Limit::new(0, sec, None), Err(LimitError::ZeroSegments));
    assert_eq!(Limit::new(1, sec, Some(0)), Err(LimitError::ZeroBurst));
    assert_eq!(
        Limit::new(1, Duration::ZERO, None),
        Err(LimitError::ZeroPeriod)
    );
    assert_eq!(
        Limit::new(1, Duration::from_secs(367 * 86_400), None),
        Err(LimitError::PeriodTooLong)
    );
}

#[test]
fn sender_classes() {
    let cases = [
        ("+14155550123", SenderClass::LongCode),
        ("+18005550100", SenderClass::TollFree),
        ("+18885550100", SenderClass::TollFree),
        ("+18015550100", SenderClass::LongCode), // 801 is Utah, not toll-free
        ("+447700900123", SenderClass::LongCode),
        ("12345", SenderClass::ShortCode),
        ("123456", SenderClass::ShortCode),
        ("1234567", SenderClass::Other),
        (
            "MG0123456789abcdef0123456789abcdef",
            SenderClass::MessagingService,
        ),
        ("MG0123", SenderClass::Other),
        ("ACMEBANK", SenderClass::Other),
        ("+", SenderClass::Other),
        ("", SenderClass::Other),
    ];
    for (s, class) in cases {
        assert_eq!(SenderClass::of(s), class, "{s:?}");
    }
}

// ---------------------------------------------------------------------------
// Carrier resolution
// ---------------------------------------------------------------------------

#[test]
fn resolution_table() {
    let c = Carriers::new(&table());
    // (hint, number, carrier)
    let cases: &[(Option<&str>, u64, &str)] = &[
        // The hint wins when it names a known carrier, in any ASCII case.
        (Some("att"), 14_045_550_123, "att"),
        (Some("AT&T"), 12_065_550_123, "att"),
        (Some("  at&t "), 12_065_550_123, "att"),
        (Some("Cingular"), 19_999_999_999, "att"),
        (Some("T-MOBILE"), 14_045_550_123, "tmobile"),
        // An unknown hint falls through to the prefixes.
        (Some("sprint"), 12_065_550_123, "tmobile"),
        (Some(""), 12_065_550_123, "tmobile"),
        // Longest prefix wins: 1404555 (att) inside 1404 (tmobile).
        (None, 14_045_550_123, "att"),
        (None, 14_045_560_123, "tmobile"),
        (None, 14_040_000_000, "tmobile"),
        (None, 12_145_550_123, "att"),
        // Toll-free.
        (None, 18_005_550_100, "toll_free"),
        (None, 18_885_550_100, "toll_free"),
        (None, 18_775_550_100, "unknown"),
        // Other country codes and lengths.
        (None, 447_700_900_123, "verizon"),
        (None, 4_470_090, "verizon"),
        (None, 4, "unknown"),
        (None, 33_612_345_678, "unknown"),
        (None, 999_999_999_999_999, "unknown"),
    ];
    for (hint, number, want) in cases {
        assert_eq!(c.resolve(*hint, *number).name(), *want, "{hint:?} {number}");
    }
    assert_eq!(c.resolve(None, 33_612_345_678), Carrier::UNKNOWN);
}

#[test]
fn shipped_table_resolves_toll_free_and_leaves_test_numbers_unknown() {
    let c = Carriers::new(&ThrottleConfig::shipped());
    assert_eq!(c.resolve(None, 18_005_550_100).name(), "toll_free");
    assert_eq!(c.resolve(None, 18_335_550_100).name(), "toll_free");
    assert_eq!(c.resolve(None, 14_045_550_123).name(), "att");
    assert_eq!(
        c.resolve(Some("Verizon Wireless"), 14_045_550_123).name(),
        "verizon"
    );
    // The loadtest's recipients (exchanges 200–999 except 555) are unknown.
    assert_eq!(c.resolve(None, 14_152_000_000).name(), "unknown");
    assert_eq!(c.resolve(None, 12_129_999_999).name(), "unknown");
}

#[test]
fn carrier_ids_are_stable_across_tables() {
    let a = Carriers::new(&table());
    let b = Carriers::new(&ThrottleConfig::shipped());
    assert_eq!(a.by_name("att"), b.by_name("att"));
    assert_ne!(a.by_name("att"), a.by_name("tmobile"));
    assert_eq!(Carrier::UNKNOWN.id(), 0);
    assert_eq!(b.by_name("unknown"), Some(Carrier::UNKNOWN));
}

#[test]
fn the_cache_answers_before_the_prefixes_and_after_the_hint() {
    let c = Carriers::new(&table());
    let n = 14_045_550_123; // att by prefix
    assert_eq!(c.cached(n), None);
    c.remember(n, Some("T-Mobile"));
    assert_eq!(c.resolve(None, n).name(), "tmobile");
    assert_eq!(c.resolve(Some("att"), n).name(), "att");
    // A name the table does not know: remembered as "looked up", and the
    // prefix table answers.
    c.remember(n, Some("Bell Canada"));
    assert_eq!(c.cached(n), Some(Cached::Known(0)));
    assert_eq!(c.resolve(None, n).name(), "att");
}

#[test]
fn a_cache_collision_evicts_and_never_answers_for_another_number() {
    let cache = CarrierCache::new(2);
    let att = carrier("att");
    for n in 10_000_000..10_000_050u64 {
        cache.put(n, att);
    }
    let mut hits = 0;
    for n in 10_000_000..10_000_100u64 {
        match cache.get(n) {
            Some(Cached::Known(id)) => {
                assert!(n < 10_000_050, "{n} was never stored");
                assert_eq!(id, att.id());
                hits += 1;
            }
            Some(Cached::Pending) => panic!("{n}: pending"),
            None => {}
        }
    }
    assert!((1..=2).contains(&hits), "two slots hold {hits}");
}

/// A lookup service at the provider boundary: answers from a fixed list,
/// counts calls, and holds each answer until the test releases it.
struct FakeLookup {
    calls: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl CarrierLookup for FakeLookup {
    async fn lookup(&self, number: u64) -> Result<Option<String>, LookupError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| LookupError(e.to_string()))?;
        match number {
            14_045_550_123 => Ok(Some("T-Mobile".into())),
            12_065_550_123 => Err(LookupError("503".into())),
            _ => Ok(None),
        }
    }
}

#[tokio::test]
async fn a_miss_asks_the_lookup_once_and_its_answer_is_used_next_time() {
    let (c, requests) = Carriers::with_lookups(&table(), 1024, 16);
    let c = Arc::new(c);
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_lookups(
        Arc::clone(&c),
        FakeLookup {
            calls: Arc::clone(&calls),
            gate: Arc::clone(&gate),
        },
        requests,
        stop.clone(),
    ));
    let n = 14_045_550_123;
    // Miss: the prefix answers now, and one lookup is requested.
    assert_eq!(c.resolve(None, n).name(), "att");
    assert_eq!(c.cached(n), Some(Cached::Pending));
    // Pending: a second message does not ask again.
    assert_eq!(c.resolve(None, n).name(), "att");
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1);
    while c.cached(n) == Some(Cached::Pending) {
        tokio::task::yield_now().await;
    }
    assert_eq!(c.resolve(None, n).name(), "tmobile");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A failed lookup clears the mark, so a later message asks again.
    let m = 12_065_550_123;
    assert_eq!(c.resolve(None, m).name(), "tmobile");
    gate.add_permits(1);
    while c.cached(m).is_some() {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    c.resolve(None, m);
    assert_eq!(c.cached(m), Some(Cached::Pending));
    stop.cancel();
    task.await.unwrap();
}

#[test]
fn a_full_lookup_queue_drops_the_request_and_forgets_the_mark() {
    let (c, _requests) = Carriers::with_lookups(&table(), 1024, 1);
    c.resolve(None, 14_045_550_123);
    assert_eq!(c.cached(14_045_550_123), Some(Cached::Pending));
    c.resolve(None, 14_045_550_124); // queue of 1 is full
    assert_eq!(c.cached(14_045_550_124), None);
}

// ---------------------------------------------------------------------------
// Local buckets
// ---------------------------------------------------------------------------

fn throttle() -> Throttle {
    Throttle::new(&table())
}

const CARRIER: &str = "carrier";
const SENDER: &str = "sender";

fn defer(until_ms: i64, lane: &'static str) -> Admission {
    Admission::Defer { until_ms, lane }
}

#[test]
fn a_bucket_admits_its_burst_then_defers_to_the_next_token() {
    let t = throttle();
    let att = carrier("att"); // 5/s, burst 5: a token per 200 ms
    for i in 0..5 {
        assert_eq!(t.admit(att, None, 1, T0), Admission::Go, "#{i}");
    }
    assert_eq!(t.admit(att, None, 1, T0), defer(T0 + 200, CARRIER));
    assert_eq!(
        t.admit(att, None, 1, T0 + 199),
        defer(T0 + 400, CARRIER),
        "paced behind the first"
    );
    assert_eq!(t.admit(att, None, 1, T0 + 200), Admission::Go);
    // The token at +400 is already promised (to the message told +400).
    assert_eq!(t.admit(att, None, 1, T0 + 200), defer(T0 + 600, CARRIER));
    // Counted in segments: 2 segments need two tokens.
    assert_eq!(t.admit(att, None, 2, T0 + 600), Admission::Go);
    assert_eq!(t.admit(att, None, 2, T0 + 600), defer(T0 + 1000, CARRIER));
    // Segments 0 counts as 1.
    let tf = carrier("toll_free");
    for _ in 0..3 {
        assert_eq!(t.admit(tf, None, 0, T0), Admission::Go);
    }
    assert!(matches!(t.admit(tf, None, 0, T0), Admission::Defer { .. }));
    // No limit: always goes.
    for _ in 0..1000 {
        assert_eq!(t.admit(carrier("verizon"), None, 10, T0), Admission::Go);
        assert_eq!(t.admit(Carrier::UNKNOWN, None, 10, T0), Admission::Go);
    }
}

#[test]
fn a_message_longer_than_the_burst_waits_for_a_full_bucket_and_owes_the_rest() {
    let t = throttle();
    let tf = carrier("toll_free"); // 3/s, burst 3, period 333,333,334 ns
    // 7 segments on a full bucket: it takes the 3 tokens and owes 4, so the
    // next token comes 5 periods later (2 of the 7 fit in the burst's slack).
    assert_eq!(t.admit(tf, None, 7, T0), Admission::Go);
    let until: u64 = T0 as u64 * 1_000_000 + 5 * 333_333_334;
    assert_eq!(
        t.admit(tf, None, 1, T0),
        defer(until.div_ceil(1_000_000) as i64, CARRIER)
    );
    // On a bucket that is not full, it waits until it is.
    let t = throttle();
    assert_eq!(t.admit(tf, None, 1, T0), Admission::Go);
    assert_eq!(t.admit(tf, None, 7, T0), defer(T0 + 334, CARRIER));
    assert_eq!(t.admit(tf, None, 7, T0 + 334), Admission::Go);
}

#[test]
fn deferrals_on_a_full_lane_are_spread_at_the_lane_rate() {
    let t = throttle();
    let tmo = carrier("tmobile"); // 10/s, burst 1: a token per 100 ms
    assert_eq!(t.admit(tmo, None, 1, T0), Admission::Go);
    let untils: Vec<i64> = (0..5)
        .map(|_| match t.admit(tmo, None, 1, T0) {
            Admission::Defer { until_ms, .. } => until_ms - T0,
            Admission::Go => panic!("the lane is empty"),
        })
        .collect();
    assert_eq!(untils, [100, 200, 300, 400, 500]);
    // A 3-segment message takes three slots.
    assert_eq!(t.admit(tmo, None, 3, T0), defer(T0 + 600, CARRIER));
    assert_eq!(t.admit(tmo, None, 1, T0), defer(T0 + 900, CARRIER));
    // Each comes back to a token: the one given 100 ms gets it.
    assert_eq!(t.admit(tmo, None, 1, T0 + 100), Admission::Go);
    // Once the lane has been idle past its slots, deferrals start afresh.
    assert_eq!(t.admit(tmo, None, 1, T0 + 5000), Admission::Go);
    assert_eq!(t.admit(tmo, None, 1, T0 + 5000), defer(T0 + 5100, CARRIER));
}

#[test]
fn a_throttled_carrier_does_not_hold_up_another() {
    let t = throttle();
    let (att, tmo) = (carrier("att"), carrier("tmobile"));
    for _ in 0..5 {
        assert_eq!(t.admit(att, None, 1, T0), Admission::Go);
    }
    assert_eq!(t.admit(att, None, 1, T0), defer(T0 + 200, CARRIER));
    assert_eq!(t.admit(tmo, None, 1, T0), Admission::Go);
    assert_eq!(t.admit(carrier("toll_free"), None, 3, T0), Admission::Go);
}

#[test]
fn sender_and_carrier_lanes_are_independent() {
    let t = throttle();
    let (att, tmo, tf) = (carrier("att"), carrier("tmobile"), carrier("toll_free"));
    let (a, b) = ("+14155550001", "+14155550002"); // long codes: 1/s, burst 1
    // Shipped-like sender limits come from the table: none here, so set one.
    t.set_sender_class_limit(SenderClass::LongCode, Some(Limit::per_second(1).unwrap()));
    assert_eq!(t.admit(att, Some(a), 1, T0), Admission::Go);
    // Sender a is full: its lane defers, whatever the carrier.
    assert_eq!(t.admit(tmo, Some(a), 1, T0), defer(T0 + 1000, SENDER));
    // Sender b is not.
    assert_eq!(t.admit(att, Some(b), 1, T0), Admission::Go);
    // Fill att; a message from sender c to att is refused by the carrier...
    let c = "+14155550003";
    for _ in 0..3 {
        assert_eq!(t.admit(att, None, 1, T0), Admission::Go);
    }
    assert_eq!(t.admit(att, Some(c), 1, T0), defer(T0 + 200, CARRIER));
    // ...and c's token is given back: c's traffic to other carriers flows.
    assert_eq!(t.admit(tf, Some(c), 1, T0), Admission::Go);
    assert_eq!(t.admit(tf, Some(c), 1, T0), defer(T0 + 1000, SENDER));
    // No sender given: only the carrier lane.
    assert_eq!(t.admit(tmo, None, 1, T0), Admission::Go);
}

#[test]
fn sender_overrides_and_unthrottled_kinds() {
    let cfg = ThrottleConfig::from_toml_str(
        r#"
[senders]
long_code = { segments = 1, per = "second" }
[senders.overrides]
"+14155550009" = { segments = 100, per = "second" }
"#,
    )
    .unwrap();
    let t = Throttle::new(&cfg);
    let u = Carrier::UNKNOWN;
    for _ in 0..100 {
        assert_eq!(t.admit(u, Some("+14155550009"), 1, T0), Admission::Go);
        // A short code has no limit in this table.
        assert_eq!(t.admit(u, Some("12345"), 1, T0), Admission::Go);
    }
    assert!(matches!(
        t.admit(u, Some("+14155550009"), 1, T0),
        Admission::Defer { lane: SENDER, .. }
    ));
    assert_eq!(t.admit(u, Some("+14155550001"), 1, T0), Admission::Go);
    assert_eq!(
        t.admit(u, Some("+14155550001"), 1, T0),
        defer(T0 + 1000, SENDER)
    );
}

// ---------------------------------------------------------------------------
// Live changes
// ---------------------------------------------------------------------------

#[test]
fn a_carrier_limit_changed_at_run_time_takes_effect() {
    let t = throttle();
    let tmo = carrier("tmobile"); // 10/s, burst 1
    assert_eq!(t.admit(tmo, None, 1, T0), Admission::Go);
    assert_eq!(t.admit(tmo, None, 1, T0), defer(T0 + 100, CARRIER));

    // Faster: 100/s, burst 5. The old bucket was empty, so the new one
    // starts empty (no tokens invented) and refills at the new rate.
    let fast = Limit::per_second(100).unwrap().with_burst(5).unwrap();
    t.set_carrier_limit("tmobile", Some(fast)).unwrap();
    assert_eq!(t.carrier_limit("tmobile").unwrap(), Some(fast));
    // Its first token is at +10, but the pacer already promised +100 under
    // the old rate: this one lines up after it.
    assert_eq!(t.admit(tmo, None, 1, T0), defer(T0 + 200, CARRIER));
    assert_eq!(t.admit(tmo, None, 1, T0 + 50), Admission::Go);
    for _ in 0..4 {
        assert_eq!(t.admit(tmo, None, 1, T0 + 50), Admission::Go);
    }
    assert!(matches!(
        t.admit(tmo, None, 1, T0 + 50),
        Admission::Defer { .. }
    ));

    // Slower: 1/s. Tokens left over carry over, capped at the new burst.
    t.set_carrier_limit("tmobile", Some(Limit::per_second(1).unwrap()))
        .unwrap();
    assert_eq!(t.admit(tmo, None, 1, T0 + 1050), Admission::Go);
    assert!(
        matches!(t.admit(tmo, None, 1, T0 + 1050), Admission::Defer { until_ms, .. } if until_ms >= T0 + 2050)
    );

    // Removed: the lane is open.
    t.set_carrier_limit("tmobile", None).unwrap();
    for _ in 0..100 {
        assert_eq!(t.admit(tmo, None, 1, T0 + 1050), Admission::Go);
    }
    // Set on a lane that had none.
    let vz = carrier("verizon");
    t.set_carrier_limit("verizon", Some(Limit::per_second(1).unwrap()))
        .unwrap();
    assert_eq!(t.admit(vz, None, 1, T0 + 1050), Admission::Go);
    assert_eq!(t.admit(vz, None, 1, T0 + 1050), defer(T0 + 2050, CARRIER));

    assert_eq!(
        t.set_carrier_limit("sprint", None),
        Err(ThrottleError::UnknownCarrier("sprint".into()))
    );
}

#[test]
fn full_lane_tokens_carry_over_a_change_up_to_the_new_burst() {
    let t = throttle();
    let att = carrier("att"); // 5/s, burst 5, full
    assert_eq!(t.admit(att, None, 2, T0), Admission::Go); // 3 left
    t.set_carrier_limit(
        "att",
        Some(Limit::per_minute(60).unwrap().with_burst(10).unwrap()),
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(t.admit(att, None, 1, T0), Admission::Go);
    }
    assert_eq!(t.admit(att, None, 1, T0), defer(T0 + 1000, CARRIER));
    // Lowered below what is left: capped at the new burst.
    let t = throttle();
    t.set_carrier_limit("att", Some(Limit::per_second(1).unwrap()))
        .unwrap();
    assert_eq!(t.admit(att, None, 1, T0), Admission::Go);
    assert_eq!(t.admit(att, None, 1, T0), defer(T0 + 1000, CARRIER));
}

#[test]
fn a_sender_kind_limit_changed_at_run_time_follows_except_overrides() {
    let t = throttle();
    let u = Carrier::UNKNOWN;
    let (a, b) = ("+14155550001", "+14155550002");
    for _ in 0..50 {
        assert_eq!(
            t.admit(u, Some(a), 1, T0),
            Admission::Go,
            "no sender limits yet"
        );
    }
    t.set_sender_limit(b, Some(Limit::per_second(2).unwrap()));
    t.set_sender_class_limit(SenderClass::LongCode, Some(Limit::per_second(1).unwrap()));
    assert_eq!(t.admit(u, Some(a), 1, T0), Admission::Go);
    assert_eq!(t.admit(u, Some(a), 1, T0), defer(T0 + 1000, SENDER));
    // b keeps its own 2/s.
    assert_eq!(t.admit(u, Some(b), 1, T0), Admission::Go);
    assert_eq!(t.admit(u, Some(b), 1, T0), Admission::Go);
    assert_eq!(t.admit(u, Some(b), 1, T0), defer(T0 + 500, SENDER));
    // A sender met after the change gets the new default.
    assert_eq!(t.admit(u, Some("+14155550003"), 1, T0), Admission::Go);
    assert_eq!(
        t.admit(u, Some("+14155550003"), 1, T0),
        defer(T0 + 1000, SENDER)
    );
    // Lifted.
    t.set_sender_limit(a, None);
    for _ in 0..10 {
        assert_eq!(t.admit(u, Some(a), 1, T0), Admission::Go);
    }
}

#[test]
fn the_clock_never_runs_backwards() {
    let t = throttle();
    let tmo = carrier("tmobile"); // 10/s, burst 1
    assert_eq!(t.admit(tmo, None, 1, T0 + 1000), Admission::Go);
    // A caller with a stale clock is judged at the latest time seen.
    assert_eq!(t.admit(tmo, None, 1, T0), defer(T0 + 1100, CARRIER));
}

// ---------------------------------------------------------------------------
// Fleet lane, local side (Redis side: engine/tests/throttle.rs)
// ---------------------------------------------------------------------------

#[test]
fn an_empty_fleet_lease_defers_and_spreads() {
    let lane = FleetLane::new(
        carrier("att"),
        Limit::per_second(10).unwrap(),
        2,
        Duration::from_secs(2),
    );
    // Nothing leased yet, Redis not asked: defer past the refill round trip.
    assert_eq!(lane.try_take(1, T0), Err(FleetEmpty { until_ms: T0 + 10 }));
    assert_eq!(lane.try_take(1, T0), Err(FleetEmpty { until_ms: T0 + 10 }));
    assert_eq!(lane.key(), "herald:throttle:{att}");

    // Redis said it is dry until +500: deferrals are spread from there at
    // the lane's rate (100 ms a segment).
    lane.set_state(0, T0 + 500);
    let untils: Vec<i64> = [1, 1, 2, 1]
        .iter()
        .map(|&n| lane.try_take(n, T0).unwrap_err().until_ms - T0)
        .collect();
    assert_eq!(untils, [500, 600, 700, 900]);

    // Spending: a message longer than the lease (2) takes a full lease into
    // debt, and nothing passes until the debt is repaid.
    lane.set_state(2, 0);
    assert_eq!(lane.try_take(5, T0), Ok(()));
    assert_eq!(lane.on_hand(), -3);
    assert!(lane.try_take(1, T0).is_err());
    lane.set_state(1, 0);
    assert!(lane.try_take(2, T0).is_err(), "2 segments need 2 on hand");
    assert_eq!(lane.try_take(1, T0), Ok(()));
    // Given back when the sender lane refuses.
    lane.give_back(1);
    assert_eq!(lane.on_hand(), 1);

    // Limit removed: open.
    lane.set_limit(None, None);
    assert_eq!(lane.try_take(100, T0), Ok(()));
}

// ---------------------------------------------------------------------------
// GCRA arithmetic (the fleet script's, in Rust)
// ---------------------------------------------------------------------------

/// The textbook token bucket, in µs of credit: full at b·T, refilled by
/// elapsed time, a token costs T.
struct Reference {
    credit: u64,
    last: u64,
    t: u64,
    b: u64,
}

impl Reference {
    fn take(&mut self, now: u64, want: u64) -> (u64, u64) {
        self.credit = (self.credit + (now - self.last)).min(self.b * self.t);
        self.last = now;
        let got = want.min(self.credit / self.t);
        self.credit -= got * self.t;
        let wait = self.t.saturating_sub(self.credit);
        (got, wait)
    }
}

#[test]
fn gcra_examples() {
    // 10 tokens/s (T = 100 ms), burst 3, from an empty key.
    let t = 100_000;
    let g = gcra_take(None, 1_000_000, t, 3, 5);
    assert_eq!(
        g,
        Grant {
            granted: 3,
            tat_us: Some(1_300_000),
            wait_us: t
        }
    );
    let g = gcra_take(Some(1_300_000), 1_050_000, t, 3, 1);
    assert_eq!(
        g,
        Grant {
            granted: 0,
            tat_us: None,
            wait_us: 50_000
        }
    );
    let g = gcra_take(Some(1_300_000), 1_100_000, t, 3, 2);
    assert_eq!(
        g,
        Grant {
            granted: 1,
            tat_us: Some(1_400_000),
            wait_us: t
        }
    );
    // Long idle: full again, never more than the burst.
    let g = gcra_take(Some(1_400_000), 9_000_000, t, 3, 10);
    assert_eq!(g.granted, 3);
}

proptest! {
    #[test]
    fn gcra_matches_a_token_bucket(
        t in 1u64..2_000_000,
        b in 1u64..50,
        steps in prop::collection::vec((0u64..3_000_000, 1u64..60), 1..80),
    ) {
        let start = 1_700_000_000_000_000u64;
        let mut now = start;
        let mut stored: Option<u64> = None;
        let mut reference = Reference { credit: b * t, last: now, t, b };
        let mut total = 0;
        for (dt, want) in steps {
            now += dt;
            let g = gcra_take(stored, now, t, b, want);
            let (got, wait) = reference.take(now, want);
            prop_assert_eq!((g.granted, g.wait_us), (got, wait));
            if g.tat_us.is_some() {
                stored = g.tat_us;
            }
            total += g.granted;
            // The bound the fleet relies on.
            prop_assert!(total <= b + (now - start) / t);
        }
    }

    #[test]
    fn a_local_lane_never_passes_more_than_burst_plus_rate(
        per_s in 1u32..50,
        burst in 1u32..20,
        steps in prop::collection::vec((0i64..400, 1u32..20), 1..100),
    ) {
        let cfg = ThrottleConfig::from_toml_str(&format!(
            "[[carrier]]\nname = \"att\"\nlimit = {{ segments = {per_s}, per = \"second\", burst = {burst} }}"
        )).unwrap();
        let t = Throttle::new(&cfg);
        let att = Carriers::new(&cfg).by_name("att").unwrap();
        let period_ns = Limit::new(per_s, Duration::from_secs(1), Some(burst)).unwrap().period_ns();
        let mut now = T0;
        let mut passed = 0u64;
        for (dt, segments) in steps {
            now += dt;
            let segments = segments.min(burst);
            match t.admit(att, None, segments, now) {
                Admission::Go => passed += u64::from(segments),
                Admission::Defer { until_ms, lane } => {
                    prop_assert_eq!(lane, CARRIER);
                    prop_assert!(until_ms > now);
                }
            }
            let elapsed_ns = u64::try_from(now - T0).unwrap() * 1_000_000;
            prop_assert!(passed <= u64::from(burst) + elapsed_ns / period_ns);
        }
    }
}
