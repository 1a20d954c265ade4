//! Per-message cost of the first pipeline stages (decode + validate), on one
//! core: `cargo bench -p herald-benches`.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_engine::model::{self, Limits};
use std::hint::black_box;

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    let plain = br#"{"id":"lt-3f2a9c1e-123456","tenant":"acme","to":"+14152001234","category":"collections","body":"Your payment of $42.00 is due on 2026-12-01. Reply STOP to opt out."}"#;
    let full = br#"{"id":"lt-3f2a9c1e-123456","tenant":"acme","to":"+14152001234","category":"collections","body":"Your payment of $42.00 is due on 2026-12-01.","send_at":"2026-12-01T15:00:00Z","expires_at":"2026-12-02T15:00:00Z","recipient":{"tz":"America/Phoenix","state":"AZ"},"debt_id":"D-991","meta":{"loan":"L-1","step":3}}"#;
    let bad = br#"{"id":"x","to":"+1415","body":"hi"}"#;

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("plain", |b| {
        b.iter(|| model::decode(black_box(plain), &limits))
    });
    g.bench_function("all_fields", |b| {
        b.iter(|| model::decode(black_box(full), &limits))
    });
    g.bench_function("rejected_number", |b| {
        b.iter(|| model::decode(black_box(bad), &limits))
    });
    g.bench_function("e164_only", |b| {
        b.iter(|| model::parse_e164(black_box("+14152001234")))
    });
    g.finish();
}

criterion_group!(benches, decode);

fn phonenumber_parts(c: &mut Criterion) {
    let n = phonenumber::parse(None, "+14152001234").expect("valid");
    let mut g = c.benchmark_group("phonenumber");
    g.bench_function("parse", |b| {
        b.iter(|| phonenumber::parse(None, black_box("+14152001234")))
    });
    g.bench_function("is_valid", |b| {
        b.iter(|| phonenumber::is_valid(black_box(&n)))
    });
    g.finish();
}

criterion_group!(parts, phonenumber_parts);
criterion_main!(benches, parts);
