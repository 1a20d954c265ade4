//! The consent replica at scale (Herald issue #3): start-up build time,
//! memory per entry, lookup latency and single-core throughput, and the cost
//! of applying change batches to a full base.
//!
//! `cargo bench -p herald-benches --bench consent` runs it at 10,000,000
//! numbers (about 1.5 GB at peak, a minute or two); `HERALD_BENCH_N` sets
//! another size. Not run in CI. A plain `main`: each figure is one
//! measurement of a large state that criterion's repetitions would rebuild.
//!
//! Latency is timed one lookup at a time: a lookup (~100 ns and more, most
//! of it cache misses) is well above the clock's resolution, and timing
//! single lookups keeps the tail visible, which batch averages would smooth
//! away. The cost of reading the clock is measured and printed beside it;
//! it is included in the latency figures, not subtracted.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use herald_engine::consent::replica::{NumberState, PurposeState, Replica};
use herald_engine::model::Category;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const DEFAULT_N: usize = 10_000_000;
const PROBES: usize = 1_000_000;
const APPLY_BATCH: usize = 1_000;
const APPLY_BATCHES: usize = 250;

/// One large tenant and two smaller ones (share of the numbers, percent).
const TENANTS: [(&str, u32); 3] = [
    ("acme-servicing", 60),
    ("globex-collections", 30),
    ("initech-marketing", 10),
];

fn main() {
    let n = std::env::var("HERALD_BENCH_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(DEFAULT_N);
    let mut rng = SmallRng::seed_from_u64(0x4845_5241_4c44);
    println!("consent replica: {n} records, {} tenants", TENANTS.len());

    // The records as the start-up load would hand them over: owned tenant
    // names, random order, a few repeated numbers (last one wins).
    let t = Instant::now();
    let mut keys: Vec<(usize, u64)> = Vec::with_capacity(n);
    let records: Vec<(String, u64, NumberState)> = (0..n)
        .map(|_| {
            let tenant = pick_tenant(&mut rng);
            let number = us_number(&mut rng);
            keys.push((tenant, number));
            (TENANTS[tenant].0.to_owned(), number, any_state(&mut rng))
        })
        .collect();
    println!("  generate records      {:>10.1?}", t.elapsed());

    let t = Instant::now();
    let replica = Replica::from_records(records);
    let build = t.elapsed();
    let len = replica.len();
    let bytes = replica.heap_bytes();
    println!(
        "  from_records          {build:>10.1?}  ({:.0} ns/record; includes freeing the records)",
        build.as_nanos() as f64 / n as f64
    );
    println!(
        "  entries               {len:>10}  ({} repeated numbers merged)",
        n - len
    );
    println!(
        "  heap                  {:>10.1} MiB  ({:.2} bytes/entry)",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / len as f64
    );
    print_rss();

    // Half hits (numbers loaded above), half misses (random numbers: a few
    // are hits by chance, counted below), in random order.
    let probes: Vec<(&str, u64)> = (0..PROBES)
        .map(|i| {
            if i % 2 == 0 {
                let (tenant, number) = keys[rng.random_range(0..keys.len())];
                (TENANTS[tenant].0, number)
            } else {
                (TENANTS[pick_tenant(&mut rng)].0, us_number(&mut rng))
            }
        })
        .collect();
    drop(keys);
    let found = probes
        .iter()
        .filter(|(t, n)| !replica.lookup(t, *n).is_default())
        .count();
    println!(
        "  probes                {PROBES:>10}  ({:.1}% found)",
        100.0 * found as f64 / PROBES as f64
    );

    println!("  clock read (Instant::now pair) p50 {} ns", clock_cost());
    latency(&replica, &probes, "lookup latency, base only");
    throughput(&replica, &probes);

    // Change-stream batches on the full base: half change numbers on file
    // (a tenth of them back to default), half bring new numbers.
    let mut existing = probes.iter().step_by(2).copied().cycle();
    let mut per_batch = histogram();
    let mut slowest: Vec<(Duration, usize)> = Vec::new();
    let overlay_limit = (len / 100).max(64 * 1024);
    for batch in 0..APPLY_BATCHES {
        let changes: Vec<(String, u64, NumberState)> = (0..APPLY_BATCH)
            .map(|i| {
                let (tenant, number) = if i % 2 == 0 {
                    existing.next().unwrap_or(("acme-servicing", 0))
                } else {
                    (TENANTS[pick_tenant(&mut rng)].0, us_number(&mut rng))
                };
                let state = if rng.random_ratio(1, 10) {
                    NumberState::DEFAULT
                } else {
                    any_state(&mut rng)
                };
                (tenant.to_owned(), number, state)
            })
            .collect();
        let t = Instant::now();
        replica.apply(&changes);
        let took = t.elapsed();
        per_batch.saturating_record(took.as_nanos() as u64);
        slowest.push((took, batch));
    }
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    println!(
        "  apply {APPLY_BATCHES} x {APPLY_BATCH} changes (merge when the overlay passes {overlay_limit}):"
    );
    println!(
        "    per batch p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} ms",
        per_batch.value_at_quantile(0.5) as f64 / 1e3,
        per_batch.value_at_quantile(0.99) as f64 / 1e3,
        per_batch.max() as f64 / 1e6
    );
    let slow: Vec<String> = slowest
        .iter()
        .take(3)
        .map(|(d, b)| format!("batch {b}: {d:.1?}"))
        .collect();
    println!("    slowest (merges): {}", slow.join(", "));
    println!(
        "    entries {}  heap {:.2} bytes/entry",
        replica.len(),
        replica.heap_bytes() as f64 / replica.len() as f64
    );
    latency(
        &replica,
        &probes,
        "lookup latency, with the overlay after the batches",
    );
}

/// Single lookups timed one by one: hits, misses, and all.
fn latency(replica: &Replica, probes: &[(&str, u64)], title: &str) {
    let (mut hits, mut misses, mut all) = (histogram(), histogram(), histogram());
    for &(tenant, number) in probes {
        let t = Instant::now();
        let state = black_box(replica.lookup(black_box(tenant), black_box(number)));
        let ns = t.elapsed().as_nanos() as u64;
        all.saturating_record(ns);
        if state.is_default() {
            misses.saturating_record(ns);
        } else {
            hits.saturating_record(ns);
        }
    }
    println!("  {title} (ns):");
    for (name, h) in [("all", &all), ("hits", &hits), ("misses", &misses)] {
        println!(
            "    {name:<6} p50 {:>6}  p99 {:>6}  p999 {:>6}  max {:>8}  ({} lookups)",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.len()
        );
    }
}

/// Lookups per second on this core, back to back: through `Replica::lookup`
/// (one atomic load of the view per lookup) and through one snapshot.
fn throughput(replica: &Replica, probes: &[(&str, u64)]) {
    const ROUNDS: usize = 5;
    let t = Instant::now();
    let mut found = 0usize;
    for _ in 0..ROUNDS {
        for &(tenant, number) in probes {
            found += usize::from(!replica.lookup(black_box(tenant), number).is_default());
        }
    }
    let per_lookup = t.elapsed() / (ROUNDS * probes.len()) as u32;
    black_box(found);
    let view = replica.snapshot();
    let t = Instant::now();
    for _ in 0..ROUNDS {
        for &(tenant, number) in probes {
            found += usize::from(!view.lookup(black_box(tenant), number).is_default());
        }
    }
    let per_view_lookup = t.elapsed() / (ROUNDS * probes.len()) as u32;
    black_box(found);
    println!(
        "  throughput, one core: {:.1} M lookups/s via Replica::lookup ({per_lookup:.0?} each), {:.1} M/s via one snapshot ({per_view_lookup:.0?})",
        1e3 / per_lookup.as_nanos().max(1) as f64,
        1e3 / per_view_lookup.as_nanos().max(1) as f64
    );
}

/// The median cost of two back-to-back clock reads, in ns.
fn clock_cost() -> u64 {
    let mut h = histogram();
    for _ in 0..100_000 {
        let t = Instant::now();
        h.saturating_record(black_box(t).elapsed().as_nanos() as u64);
    }
    h.value_at_quantile(0.5)
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 60 s, 3 significant digits; bounds are constants.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn pick_tenant(rng: &mut SmallRng) -> usize {
    let total: u32 = TENANTS.iter().map(|t| t.1).sum();
    let mut roll = rng.random_range(0..total);
    for (i, (_, weight)) in TENANTS.iter().enumerate() {
        if roll < *weight {
            return i;
        }
        roll -= weight;
    }
    0
}

/// A random NANP number, `+1 NPA NXX XXXX` (NPA and NXX 200–999).
fn us_number(rng: &mut SmallRng) -> u64 {
    let npa: u64 = rng.random_range(200..1000);
    let nxx: u64 = rng.random_range(200..1000);
    let line: u64 = rng.random_range(0..10_000);
    10_000_000_000 + npa * 10_000_000 + nxx * 10_000 + line
}

/// A random state with something on file (the replica stores only those).
fn any_state(rng: &mut SmallRng) -> NumberState {
    loop {
        let mut state = NumberState::DEFAULT;
        for purpose in [
            Category::Transactional,
            Category::Collections,
            Category::Marketing,
        ] {
            let value = PurposeState::ALL[rng.random_range(0..PurposeState::ALL.len())];
            state = state.with(purpose, value);
        }
        if !state.is_default() {
            return state;
        }
    }
}

/// Resident memory, current and peak, from /proc (Linux only).
fn print_rss() {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(String::new, |v| v.trim().to_owned())
    };
    println!(
        "  process RSS {} (peak {}; includes the benchmark's own records)",
        field("VmRSS:"),
        field("VmHWM:")
    );
}
