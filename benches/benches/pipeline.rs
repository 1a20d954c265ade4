//! Per-message cost of the in-memory pipeline stages (decode + validate,
//! policy, content), on one core: `cargo bench -p herald-benches --bench
//! pipeline`.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_engine::ingest::decode::{Limits, decode as decode_msg};
use herald_engine::model;
use std::hint::black_box;

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    let plain = br#"{"id":"lt-3f2a9c1e-123456","tenant":"acme","to":"+14152001234","category":"collections","body":"Your payment of $42.00 is due on 2026-12-01. Reply STOP to opt out."}"#;
    let full = br#"{"id":"lt-3f2a9c1e-123456","tenant":"acme","to":"+14152001234","category":"collections","body":"Your payment of $42.00 is due on 2026-12-01.","send_at":"2026-12-01T15:00:00Z","expires_at":"2026-12-02T15:00:00Z","recipient":{"tz":"America/Phoenix","state":"AZ"},"debt_id":"D-991","meta":{"loan":"L-1","step":3}}"#;
    let bad = br#"{"id":"x","to":"+1415","body":"hi"}"#;

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("plain", |b| {
        b.iter(|| decode_msg(black_box(plain), &limits))
    });
    g.bench_function("all_fields", |b| {
        b.iter(|| decode_msg(black_box(full), &limits))
    });
    g.bench_function("rejected_number", |b| {
        b.iter(|| decode_msg(black_box(bad), &limits))
    });
    g.bench_function("e164_only", |b| {
        b.iter(|| model::parse_e164(black_box("+14152001234")))
    });
    // Canada is the 10th of +1's 25 regions tried; London needs the UK's
    // national-prefix rules.
    g.bench_function("e164_canada", |b| {
        b.iter(|| model::parse_e164(black_box("+16135550123")))
    });
    g.bench_function("e164_london", |b| {
        b.iter(|| model::parse_e164(black_box("+442079460000")))
    });
    g.finish();
}

criterion_group!(benches, decode);

/// The `phonenumber` crate's own parse + validate, which `parse_e164`
/// ports (`herald_engine::numbering`): the cost that port removes.
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

/// The in-memory policy stages per message: consent lookup + quiet hours
/// (`Policy::evaluate`) and the content stage, as the dispatch path runs
/// them.
fn policy(c: &mut Criterion) {
    use herald_engine::consent::replica::NumberState;
    use herald_engine::content;
    use herald_engine::model::Category;
    use herald_engine::policy::{Input, Policy};
    let policy = Policy::shipped();
    herald_engine::policy::zones::preload();
    // Wednesday 2026-06-03 11:00 EDT: every window open.
    let at: jiff::Timestamp = "2026-06-03T15:00:00Z".parse().expect("ts");
    let input = |to: u64, category: Category, state: Option<&'static str>| Input {
        tenant: "acme",
        to,
        category,
        recipient_tz: None,
        recipient_state: state,
        at,
        consent: None,
        // As the dispatch path asks: reports only for held messages.
        explain: false,
    };
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1));
    let cases = [
        (
            "transactional_ny",
            input(12_125_550_123, Category::Transactional, None),
        ),
        (
            "collections_ny",
            input(12_125_550_123, Category::Collections, None),
        ),
        (
            "collections_ny_fl_address",
            input(12_125_550_123, Category::Collections, Some("FL")),
        ),
        (
            "collections_toll_free",
            input(18_005_550_123, Category::Collections, None),
        ),
    ];
    for (name, i) in cases {
        g.bench_function(name, |b| {
            b.iter(|| policy.evaluate(black_box(&i), NumberState::default()))
        });
    }
    // The dispatch path reads the policy through the live snapshot: the
    // same evaluation behind one `ArcSwap` load (the cost of live policy
    // changes on the hot path).
    let live = herald_engine::policy::live::LivePolicy::new(Policy::shipped());
    let ny = input(12_125_550_123, Category::Collections, None);
    g.bench_function("collections_ny_live", |b| {
        b.iter(|| live.load().evaluate(black_box(&ny), NumberState::default()))
    });
    g.bench_function("live_load", |b| b.iter(|| live.load().version));
    // Night in New York: deferred, with the trail's rule reports.
    let night = Input {
        at: "2026-06-03T03:00:00Z".parse().expect("ts"),
        ..input(12_125_550_123, Category::Collections, None)
    };
    g.bench_function("collections_ny_deferred", |b| {
        b.iter(|| policy.evaluate(black_box(&night), NumberState::default()))
    });
    let body = "Your payment of $42.00 is due on 2026-12-01. Reply STOP to opt out.";
    g.bench_function("segments", |b| {
        b.iter(|| content::segments(black_box(body)))
    });
    g.bench_function("with_opt_out_present", |b| {
        b.iter(|| content::with_opt_out(black_box(body), "Reply STOP to stop texts."))
    });
    g.finish();
}

/// A template rendered from the in-memory policy, as the dispatch path
/// will: from the message's `vars` JSON to the text.
fn template(c: &mut Criterion) {
    use herald_engine::content::templates::{Template, TemplateSection};
    let section: TemplateSection = serde_json::from_value(serde_json::json!({
        "version": 1,
        "category": "collections",
        "vars": {"name": "text", "amount": "money", "due_date": "date"},
        "text": {
            "en": "Hi {name}, your payment of {amount} is due {due_date}. Pay at acme.example/pay.",
            "es": "Hola {name}, su pago de {amount} vence el {due_date}. Pague en acme.example/pay."
        }
    }))
    .expect("section");
    let t = Template::compile("t", "payment_due", &section, "en-US", &Default::default())
        .expect("compiles");
    let json = r#"{"name":"Ana","amount":1234.5,"due_date":"2026-12-01"}"#;
    let vars: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).expect("vars");
    let mut g = c.benchmark_group("template");
    g.throughput(Throughput::Elements(1));
    let mut out = String::new();
    g.bench_function("render_es", |b| {
        b.iter(|| {
            t.render(Some("es-US"), "en-US", black_box(&vars), &mut out)
                .map(|r| r.locale.len())
        })
    });
    g.bench_function("render_from_json", |b| {
        b.iter(|| {
            let vars: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(black_box(json)).unwrap_or_default();
            let mut out = String::new();
            t.render(Some("en"), "en-US", &vars, &mut out)
                .map(|_| out.len())
        })
    });
    g.finish();
}

criterion_group!(policy_group, policy);
criterion_group!(template_group, template);
criterion_main!(benches, parts, policy_group, template_group);
