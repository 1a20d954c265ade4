//! Fleet-wide lanes against a real `redis-server`: the GCRA lease script
//! agrees with its Rust reference, several instances sharing one lane take
//! no more than the lane allows between them, an empty lane defers, and a
//! Redis outage defers rather than over-sends.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use herald_engine::clock::now_ms;
use herald_engine::throttle::fleet::{GCRA_LUA, gcra_take};
use herald_engine::throttle::{
    Admission, Carriers, FleetLane, FleetParams, Limit, Throttle, ThrottleConfig,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

/// Longest any wait in these tests may take before it is a hang (not a
/// timing assertion: a healthy run takes a fraction of it).
const HANG: Duration = Duration::from_secs(60);

async fn manager(redis: &RedisServer) -> ConnectionManager {
    let client = redis::Client::open(redis.url()).expect("url");
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_with_config(client, cfg)
        .await
        .expect("connect")
}

fn carrier(cfg: &ThrottleConfig, name: &str) -> herald_engine::throttle::Carrier {
    Carriers::new(cfg).by_name(name).expect("carrier in table")
}

/// xorshift64*: reproducible pseudo-random steps without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[tokio::test]
async fn the_lease_script_matches_the_gcra_reference() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let script = redis::Script::new(GCRA_LUA);
    // (T µs, burst): a 1-segment-per-µs lane, common carrier rates, and the
    // day cap's 45 s period (where b·T is large and the quotient rounds).
    let lanes = [
        (1u64, 1u64),
        (1, 7),
        (13_334, 75),
        (250_000, 4),
        (333_334, 3),
        (45_473_685, 100),
        (999_999_937, 13),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (i, &(t, b)) in lanes.iter().enumerate() {
        for run in 0..6 {
            let key = format!("herald:throttle:{{test-{i}-{run}}}");
            // Real epoch µs, so the script's doubles are near 2^51.
            let mut now = 1_760_000_000_000_000u64 + rng.below(1_000_000_000);
            let mut stored: Option<u64> = None;
            for step in 0..40 {
                // Steps of 0 to ~3 periods, sometimes exactly on a period.
                now += match rng.below(4) {
                    0 => t * rng.below(3),
                    _ => rng.below(3 * t + 1),
                };
                let want = 1 + rng.below(2 * b);
                let reply: Vec<u64> = script
                    .key(&key)
                    .arg(t)
                    .arg(b)
                    .arg(want)
                    .arg(now)
                    .invoke_async(&mut conn)
                    .await
                    .expect("script");
                let expect = gcra_take(stored, now, t, b, want);
                assert_eq!(
                    reply,
                    [expect.granted, expect.wait_us, now],
                    "lane {i} run {run} step {step}: T {t} b {b} want {want} now {now} stored {stored:?}"
                );
                if expect.tat_us.is_some() {
                    stored = expect.tat_us;
                }
                let (value, pttl): (Option<String>, i64) = redis::pipe()
                    .get(&key)
                    .pttl(&key)
                    .query_async(&mut conn)
                    .await
                    .expect("get");
                if let Some(tat) = stored {
                    assert_eq!(value, Some(tat.to_string()), "the TAT is stored exactly");
                    assert!(pttl > 0, "the key expires");
                }
            }
        }
    }
}

/// Spend `lane`'s lease as fast as it comes until `target` segments were
/// spent by all lanes together.
async fn spend(lane: Arc<FleetLane>, spent: Arc<AtomicU64>, target: u64) {
    while spent.load(Ordering::SeqCst) < target {
        match lane.try_take(1, now_ms()) {
            Ok(()) => {
                spent.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_lane_take_no_more_than_rate_times_time_plus_burst() {
    let redis = RedisServer::start();
    let cfg = ThrottleConfig::shipped();
    let att = carrier(&cfg, "att");
    // 200 segments/s, burst 20, leases of 4.
    let limit = Limit::per_second(200).unwrap().with_burst(20).unwrap();
    let params = FleetParams::new(limit, 4);
    let stop = CancellationToken::new();
    let spent = Arc::new(AtomicU64::new(0));
    // Well past the burst, so most of it must come from refills.
    let target = 150;

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut lanes = Vec::new();
    for _ in 0..3 {
        // Three instances: own lane object, own connection, same Redis key.
        let lane = Arc::new(FleetLane::new(att, limit, 4, Duration::from_secs(2)));
        tasks.spawn(Arc::clone(&lane).run(manager(&redis).await, stop.clone()));
        lanes.push(lane);
    }
    let spenders: Vec<_> = lanes
        .iter()
        .map(|l| tokio::spawn(spend(Arc::clone(l), Arc::clone(&spent), target)))
        .collect();
    for s in spenders {
        tokio::time::timeout(HANG, s).await.expect("hang").unwrap();
    }
    stop.cancel();
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let elapsed_us = start.elapsed().as_micros() as u64;

    let leased: u64 = lanes.iter().map(|l| l.leased_total()).sum();
    let spent_total: u64 = lanes.iter().map(|l| l.spent_total()).sum();
    // GCRA: from a full bucket, b + one token per T. T rounds up, so the
    // rate is at most 200/s; the ceiling absorbs clock granularity.
    let bound = u64::from(limit.burst()) + elapsed_us.div_ceil(params.t_us);
    assert!(
        leased <= bound,
        "leased {leased} > burst + rate × time = {bound} ({elapsed_us} µs)"
    );
    assert!(
        spent_total <= leased,
        "spent {spent_total} of {leased} leased"
    );
    assert!(spent_total >= target, "spent {spent_total}");
    for (i, l) in lanes.iter().enumerate() {
        // The first leases (3 × 4 ≤ burst) always succeed.
        assert!(
            l.leased_total() >= 4,
            "instance {i} leased {}",
            l.leased_total()
        );
    }
}

#[tokio::test]
async fn a_fleet_lane_defers_when_the_lease_and_redis_are_empty() {
    let redis = RedisServer::start();
    // One segment an hour, burst 5: in this test only the burst exists.
    let cfg = ThrottleConfig::from_toml_str(
        r#"
[[carrier]]
name = "att"
prefixes = ["1404555"]
limit = { segments = 1, per = "hour", burst = 5 }
fleet = true
lease = 2
"#,
    )
    .unwrap();
    let att = carrier(&cfg, "att");
    let throttle = Throttle::new(&cfg);
    let stop = CancellationToken::new();
    let mut tasks = throttle.spawn_fleet(manager(&redis).await, stop.clone());
    assert_eq!(tasks.len(), 1);

    let mut sent = 0;
    let deadline = Instant::now() + HANG;
    loop {
        assert!(Instant::now() < deadline, "hang: sent {sent}");
        let now = now_ms();
        match throttle.admit(att, None, 1, now) {
            Admission::Go => sent += 1,
            Admission::Defer { until_ms, lane } => {
                assert_eq!(lane, "carrier");
                assert!(until_ms > now);
                // Redis said the next token is an hour away: the lane is dry.
                if until_ms - now > 30 * 60 * 1000 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    assert_eq!(sent, 5, "exactly the burst");
    let lane = &throttle.fleet_lanes()[0];
    assert_eq!(lane.leased_total(), 5);
    // Messages deferred now are spread an hour apart, not told one instant.
    let a = throttle.admit(att, None, 1, now_ms());
    let b = throttle.admit(att, None, 1, now_ms());
    match (a, b) {
        (Admission::Defer { until_ms: a, .. }, Admission::Defer { until_ms: b, .. }) => {
            assert!(b - a >= 3_600_000 - 1, "{a} then {b}");
        }
        other => panic!("{other:?}"),
    }
    stop.cancel();
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_defers_and_the_lane_recovers_after_it() {
    let mut redis = RedisServer::start();
    let cfg = ThrottleConfig::shipped();
    let att = carrier(&cfg, "att");
    let limit = Limit::per_second(1000).unwrap().with_burst(50).unwrap();
    let lane = Arc::new(FleetLane::new(att, limit, 5, Duration::from_secs(60)));
    let stop = CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&lane).run(manager(&redis).await, stop.clone()));

    // Wait for the first lease.
    let deadline = Instant::now() + HANG;
    while lane.on_hand() < 5 {
        assert!(Instant::now() < deadline, "no first lease");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    redis.kill();
    // With Redis gone, only what is on hand can be spent, however long we try.
    let on_hand = lane.on_hand();
    let leased_before = lane.leased_total();
    let mut taken = 0;
    for _ in 0..200 {
        if lane.try_take(1, now_ms()).is_ok() {
            taken += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(taken <= on_hand, "took {taken} with {on_hand} on hand");
    assert_eq!(
        lane.leased_total(),
        leased_before,
        "nothing leased while Redis is down"
    );
    assert!(lane.try_take(1, now_ms()).is_err(), "dry");

    // Back (empty: a fresh server), and the lane leases again.
    redis.restart();
    let deadline = Instant::now() + HANG;
    loop {
        assert!(Instant::now() < deadline, "the lane never recovered");
        if lane.try_take(1, now_ms()).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(lane.leased_total() > leased_before);
    stop.cancel();
    task.await.unwrap();
}
