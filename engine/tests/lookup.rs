//! Carrier lookups through Twilio Lookup v2 (the mock provider) cached in a
//! real `redis-server`: a looked-up number resolves to its carrier's lane,
//! the answer lands in Redis, a second instance answers from Redis without
//! asking Twilio, failures are not cached, and a Redis outage does not stop
//! lookups.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use herald_adapters::{TwilioLookup, TwilioLookupSettings};
use herald_engine::throttle::lookup::{DEFAULT_TTL, TwilioCarrierLookup, key};
use herald_engine::throttle::{
    Cached, Carrier, CarrierLookup, Carriers, ThrottleConfig, run_lookups,
};
use herald_loadtest::mock::MockProvider;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use tokio_util::sync::CancellationToken;

/// Longest any wait in these tests may take before it is a hang (not a
/// timing assertion: a healthy run takes a fraction of it).
const HANG: Duration = Duration::from_secs(60);

async fn manager(redis: &RedisServer) -> ConnectionManager {
    let client = redis::Client::open(redis.url()).expect("url");
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_with_config(client, cfg)
        .await
        .expect("connect")
}

fn twilio(mock: &MockProvider) -> TwilioLookup {
    let s = mock.settings();
    TwilioLookup::new(TwilioLookupSettings {
        base_url: mock.base_url(),
        account_sid: s.account_sid.clone(),
        auth_token: s.auth_token.clone(),
        ..Default::default()
    })
    .expect("valid lookup settings")
}

/// E.164 digits of `+1 415 555 01xx`: outside every prefix of the shipped
/// table, so only a lookup can put them in a carrier's lane.
fn number(last_two: u64) -> u64 {
    14_155_550_100 + last_two
}

/// `Carriers` with a lookup task running `lookup`, stopped on drop of the
/// returned token's guard.
fn with_lookups(
    cfg: &ThrottleConfig,
    lookup: TwilioCarrierLookup,
) -> (Arc<Carriers>, tokio_util::sync::DropGuard) {
    let (carriers, requests) = Carriers::with_lookups(cfg, 1024, 64);
    let carriers = Arc::new(carriers);
    let stop = CancellationToken::new();
    tokio::spawn(run_lookups(
        Arc::clone(&carriers),
        lookup,
        requests,
        stop.clone(),
    ));
    (carriers, stop.drop_guard())
}

/// Resolve `number` (which asks for a lookup on a cache miss) until the
/// lookup's answer is in the in-process cache; then resolve once more.
async fn resolve_after_lookup(carriers: &Carriers, number: u64) -> Carrier {
    let deadline = Instant::now() + HANG;
    loop {
        let carrier = carriers.resolve(None, number);
        if let Some(Cached::Known(_)) = carriers.cached(number) {
            return carriers.resolve(None, number);
        }
        assert!(
            Instant::now() < deadline,
            "no lookup answer for {number} (resolved {carrier} meanwhile)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn cached_value(conn: &mut MultiplexedConnection, number: u64) -> Option<String> {
    redis::cmd("GET")
        .arg(key(number))
        .query_async(conn)
        .await
        .expect("GET")
}

#[tokio::test]
async fn lookups_fill_the_lanes_and_redis_serves_the_second_instance() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let mock = mock(0, 0.0).await;
    let cfg = ThrottleConfig::shipped();
    let lane = |name: &str| {
        Carriers::new(&cfg)
            .by_name(name)
            .expect("carrier in the shipped table")
    };

    // (number, lane, value cached in Redis). The mock picks the carrier by
    // the last digit; its names are aliases in the shipped table.
    let cases = [
        (number(20), lane("att"), Some("AT&T Wireless")),
        (number(24), lane("tmobile"), Some("T-Mobile USA, Inc.")),
        (number(27), lane("verizon"), Some("Verizon Wireless")),
        // Twilio cannot resolve it (404): unknown, and cached as such.
        (15_005_550_404, Carrier::UNKNOWN, Some("-")),
    ];
    for (n, _, _) in &cases {
        assert_eq!(
            Carriers::new(&cfg).resolve(None, *n),
            Carrier::UNKNOWN,
            "{n}: without a lookup only the prefix table answers"
        );
    }

    let first = TwilioCarrierLookup::new(twilio(&mock), manager(&redis).await, DEFAULT_TTL);
    let (carriers, _stop) = with_lookups(&cfg, first);
    for (n, want, stored) in &cases {
        assert_eq!(resolve_after_lookup(&carriers, *n).await, *want, "{n}");
        assert_eq!(cached_value(&mut conn, *n).await.as_deref(), *stored, "{n}");
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(key(*n))
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        let max = i64::try_from(DEFAULT_TTL.as_millis()).unwrap();
        assert!(ttl_ms > 0 && ttl_ms <= max, "{n}: PTTL {ttl_ms}");
    }
    let asked = mock.stats().lookups;
    assert_eq!(asked, cases.len() as u64);

    // A second instance: an empty in-process cache, the same Redis.
    let second = TwilioCarrierLookup::new(twilio(&mock), manager(&redis).await, DEFAULT_TTL);
    let (carriers, _stop2) = with_lookups(&cfg, second);
    for (n, want, _) in &cases {
        assert_eq!(resolve_after_lookup(&carriers, *n).await, *want, "{n}");
    }
    assert_eq!(
        mock.stats().lookups,
        asked,
        "the second instance asked Twilio instead of Redis"
    );
}

#[tokio::test]
async fn redis_answers_before_twilio() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let mock = mock(0, 0.0).await;
    let lookup = TwilioCarrierLookup::new(twilio(&mock), manager(&redis).await, DEFAULT_TTL);

    // Values the mock would never give for these numbers (it says Verizon
    // for a 7, AT&T for a 0): only Redis can be the source.
    let cases = [
        (number(37), "AT&T Wireless", Some("AT&T Wireless")),
        (number(30), "-", None),
        // Kept as Twilio wrote it, answered in the table's spelling.
        (number(31), "T-Mobile USA, Inc.", Some("T-Mobile USA")),
    ];
    for (n, stored, want) in cases {
        let _: () = redis::cmd("SET")
            .arg(key(n))
            .arg(stored)
            .query_async(&mut conn)
            .await
            .expect("SET");
        assert_eq!(lookup.lookup(n).await, Ok(want.map(str::to_owned)), "{n}");
    }
    assert_eq!(mock.stats().lookups, 0);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let mock = mock(0, 0.0).await;
    let cfg = ThrottleConfig::shipped();

    // The mock's 429 and 5xx numbers.
    let failing = [15_005_550_429u64, 15_005_550_500, 15_005_550_503];
    let lookup = TwilioCarrierLookup::new(twilio(&mock), manager(&redis).await, DEFAULT_TTL);
    for n in failing {
        assert!(lookup.lookup(n).await.is_err(), "{n}");
        assert_eq!(cached_value(&mut conn, n).await, None, "{n}");
    }
    assert_eq!(mock.stats().lookups, failing.len() as u64);

    // Through run_lookups: the pending mark is dropped, so a later message
    // asks again (and nothing lands in either cache).
    let (carriers, _stop) = with_lookups(&cfg, lookup);
    let n = failing[0];
    let before = mock.stats().lookups;
    let deadline = Instant::now() + HANG;
    while mock.stats().lookups < before + 2 {
        carriers.resolve(None, n);
        assert!(Instant::now() < deadline, "a failed lookup was not retried");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !matches!(carriers.cached(n), Some(Cached::Known(_))),
        "a failure was cached in process"
    );
    assert_eq!(cached_value(&mut conn, n).await, None);
}

#[tokio::test]
async fn a_redis_outage_does_not_stop_lookups() {
    let mut redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let lookup = TwilioCarrierLookup::new(twilio(&mock), manager(&redis).await, DEFAULT_TTL);
    redis.kill();

    // Read and write both fail; Twilio still answers.
    let cases = [
        (number(41), Some("AT&T Wireless")),
        (number(45), Some("T-Mobile USA")),
        (15_005_550_404, None),
    ];
    for (n, want) in cases {
        let answer = tokio::time::timeout(HANG, lookup.lookup(n))
            .await
            .expect("a lookup hung on the dead Redis");
        assert_eq!(answer, Ok(want.map(str::to_owned)), "{n}");
    }
    assert_eq!(mock.stats().lookups, cases.len() as u64);
}
