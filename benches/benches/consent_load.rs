//! Start-up load of the consent ledger from Redis (Herald issue #3): fill a
//! Redis with N numbers' state (the layout `ConsentLedger` writes), then
//! time `ConsentLedger::load` — SCAN, HSCAN and the replica build — as an
//! instance does at start.
//!
//! Needs a Redis you can fill (about 1 GB at 10M):
//!
//! ```text
//! redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no &
//! HERALD_BENCH_REDIS_URL=redis://127.0.0.1:6390 cargo bench -p herald-benches --bench consent_load
//! ```
//!
//! `HERALD_BENCH_N` sets the size (default 10,000,000). The Redis is
//! flushed first. Without `HERALD_BENCH_REDIS_URL` the bench says so and
//! does nothing (CI never runs it).

use std::time::Instant;

use herald_engine::consent::ConsentKind;
use herald_engine::consent::ConsentLedger;
use herald_engine::consent::ledger::{encode_letters, state_key};
use herald_engine::consent::replica::{NumberState, PurposeState};
use herald_engine::model::Category;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TENANTS: [&str; 3] = ["acme-servicing", "globex-collections", "initech-marketing"];

fn main() {
    let Ok(url) = std::env::var("HERALD_BENCH_REDIS_URL") else {
        eprintln!("consent_load: set HERALD_BENCH_REDIS_URL to a Redis it may flush; skipped");
        return;
    };
    let n: usize = std::env::var("HERALD_BENCH_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = redis::aio::ConnectionManager::new(client)
            .await
            .expect("connect");
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut conn)
            .await
            .expect("flushall");

        let fill = Instant::now();
        let mut rng = SmallRng::seed_from_u64(7);
        let states = [
            NumberState::default().with(Category::Marketing, PurposeState::Granted(ConsentKind::ExpressWritten)),
            NumberState::default()
                .with(Category::Transactional, PurposeState::Revoked)
                .with(Category::Collections, PurposeState::Revoked)
                .with(Category::Marketing, PurposeState::Revoked),
            NumberState::default().with(Category::Collections, PurposeState::Review),
        ];
        let mut done = 0;
        while done < n {
            let mut pipe = redis::pipe();
            for _ in 0..10_000.min(n - done) {
                let tenant = TENANTS[rng.random_range(0..TENANTS.len())];
                let number = 12_000_000_000_u64 + rng.random_range(0..8_000_000_000u64);
                let st = states[rng.random_range(0..states.len())];
                pipe.cmd("HSET")
                    .arg(state_key(tenant))
                    .arg(number)
                    .arg(encode_letters(st))
                    .ignore();
                done += 1;
            }
            let _: () = pipe.query_async(&mut conn).await.expect("fill");
        }
        println!("filled {n} records in {:.1} s", fill.elapsed().as_secs_f64());

        let started = Instant::now();
        let (ledger, _from) = ConsentLedger::load(&mut conn).await.expect("load");
        let took = started.elapsed();
        let r = ledger.replica();
        println!(
            "ConsentLedger::load: {} numbers in {:.2} s ({:.0} numbers/s); replica {:.1} MiB, {:.2} bytes/entry",
            r.len(),
            took.as_secs_f64(),
            r.len() as f64 / took.as_secs_f64(),
            r.heap_bytes() as f64 / (1024.0 * 1024.0),
            r.heap_bytes() as f64 / r.len().max(1) as f64
        );
    });
}
