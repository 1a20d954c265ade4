//! Sequences at scale (a benchmark, not a test: `#[ignore]`, run by
//! `scripts/bench-sequences.sh`): enrol N payment-reminder sequences
//! (default 100,000; `HERALD_SEQ_BENCH_N`) through the real dispatch path,
//! then report Redis memory per sequence and the delayed mover's Redis time
//! per due step (its Lua script, timed by `INFO commandstats`). Nothing is
//! asserted about timing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

async fn info_field(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn memory_of(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> f64 {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async::<Option<f64>>(conn)
        .await
        .ok()
        .flatten()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-sequences.sh"]
async fn sequences_at_scale() {
    let n: usize = std::env::var("HERALD_SEQ_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let mut conn = redis.conn().await;
    let extra = format!("{FAST_DISPATCH}max_in_flight = 5000\n");
    let h = Herald::start(&config_text(&redis, &mock.base_url(), free_port(), &extra)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = info_field(&mut conn, "memory", "used_memory").await;

    let started = Instant::now();
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            json!({"id": format!("loan-{i}"), "tenant": "acme", "to": number(i),
                "debt_id": format!("D-{i}"),
                "sequence": {"schedule": "payment_reminder", "anchor": "2027-03-14"},
                "vars": {"name": "Ana", "amount": "120.50", "due_date": "2027-03-14"}})
            .to_string()
            .into_bytes()
        })
        .collect();
    for chunk in msgs.chunks(5000) {
        xadd_raw(&mut conn, 4, chunk).await;
    }
    drop(msgs);
    loop {
        let done: usize = redis::cmd("ZCARD")
            .arg("herald:sequences")
            .query_async(&mut conn)
            .await
            .expect("zcard");
        if done >= n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "{done} of {n} enrolled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    h.stop().await.expect("stopped");

    let used = info_field(&mut conn, "memory", "used_memory").await;
    let events = memory_of(&mut conn, "herald:events").await;
    let mut queues = 0.0;
    for p in 0..4 {
        queues += memory_of(&mut conn, &format!("herald:q:{{{p}}}")).await;
    }
    let per_seq = (used - base - events - queues) / n as f64;
    println!(
        "enrolled {n} sequences ({} steps) in {:.1} s: {:.0} enrolments/s",
        7 * n,
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    println!(
        "redis memory: {:.0} MB in all; {:.0} B per sequence without the events stream ({:.0} MB, capped by events.max_len) and the queue streams ({:.0} MB)",
        (used - base) / 1e6,
        per_seq,
        events / 1e6,
        queues / 1e6
    );
    println!("=> 1M sequences ≈ {:.1} GB of Redis", per_seq * 1e6 / 1e9);
    let mut parts = Vec::new();
    for key in [
        "herald:seq:acme:loan-0".to_string(),
        "herald:msg:acme:loan-0".to_string(),
        "herald:msg:acme:loan-0/1".to_string(),
        "herald:trail:acme:loan-0/1".to_string(),
        format!("herald:seqs:{{{}}}", number(0).trim_start_matches('+')),
        "herald:seqdebt:acme:D-0".to_string(),
    ] {
        parts.push(format!("{key} {:.0} B", memory_of(&mut conn, &key).await));
    }
    println!("one sequence's keys: {}", parts.join(", "));
    let dbsize: f64 = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("dbsize");
    println!("keys: {dbsize} ({:.1} per sequence)", dbsize / n as f64);

    // Every step due now: the mover's script, timed by Redis itself.
    let _: i64 = redis::cmd("ZUNIONSTORE")
        .arg("herald:delayed")
        .arg(1)
        .arg("herald:delayed")
        .arg("WEIGHTS")
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("all due");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .expect("resetstat");
    let script = redis::Script::new(herald_engine::ingest::delayed::RELEASE_LUA);
    let mut moved = 0usize;
    let wall = Instant::now();
    loop {
        let (due, _lost): (usize, usize) = script
            .key("herald:delayed")
            .key("herald:dlq")
            .arg(herald_engine::clock::now_ms())
            .arg(1000)
            .arg("herald:msg:")
            .arg("herald:q:{")
            .arg(10_000)
            .invoke_async(&mut conn)
            .await
            .expect("release");
        moved += due;
        if due < 1000 {
            break;
        }
    }
    let wall = wall.elapsed();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("info");
    let usec: f64 = stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split(',')
                .find_map(|kv| kv.split_once("usec=").map(|(_, v)| v))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .sum();
    println!(
        "mover: {moved} due steps re-queued in {:.2} s wall; Redis time {:.2} µs per due step",
        wall.as_secs_f64(),
        usec / moved.max(1) as f64
    );
}
