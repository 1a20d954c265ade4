//! The compliance engine end to end, on a real Redis: inbound STOP / START /
//! HELP through the signed webhook, fleet-wide revocation, carrier-held
//! opt-outs, quiet-hour deferral, frequency caps, content rules and the
//! why-not-sent trail.
//!
//! Quiet hours depend on the wall clock, so tests that need a window closed
//! (or open) *now* build it from the current local time of the recipient's
//! zone; tests that need no window use transactional messages (no window by
//! default) or a rule table of their own (`compliance.rules_file`).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use herald_engine::inbound::signature::twilio_signature;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);
const PUBLIC: &str = "https://herald.example.com";
const KEY: &str = "acme-key-0123456789abcdef";
const ADMIN: &str = "admin-token-for-compliance-tests";
/// The tenant's sending number (`tenants.acme.senders`).
const SENDER: &str = "+14155550100";

fn tenant_section(extra: &str) -> String {
    format!(
        r#"
[tenants.acme]
senders = ["{SENDER}"]
opt_out_confirmation = "Acme: you are unsubscribed. No more texts."
help_text = "Acme Servicing: help at 800-555-0199. Reply STOP to stop."
{extra}
"#
    )
}

fn env() -> Vec<(String, String)> {
    vec![
        ("HERALD_HTTP__PUBLIC_URL".into(), PUBLIC.into()),
        ("HERALD_CONTROL__TOKEN".into(), ADMIN.into()),
    ]
}

async fn start(redis: &RedisServer, mock_url: &str, port: u16, extra: &str) -> Herald {
    let text = config_text(redis, mock_url, port, &format!("{FAST_DISPATCH}\n{extra}"));
    Herald::start_env(&text, env()).await
}

/// POST a Twilio inbound webhook, signed with `token` (the mock account's
/// auth token unless a test wants a bad one).
/// A reply as Twilio posts it: each with its own MessageSid (a repeated one
/// is a replay, and changes nothing).
async fn inbound(port: u16, from: &str, body: &str, token: &str) -> (u16, String) {
    static SID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sid = format!("SM0123456789abcdef{n:016x}");
    let params: Vec<(String, String)> = [
        ("AccountSid", "ACmock0000000000000000000000000000"),
        ("MessageSid", sid.as_str()),
        ("From", from),
        ("To", SENDER),
        ("Body", body),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let url = format!("{PUBLIC}/v1/webhooks/twilio/inbound");
    let sig = twilio_signature(token, &url, &params);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    http_call(
        port,
        "POST",
        "/v1/webhooks/twilio/inbound",
        &[("X-Twilio-Signature", sig.as_str())],
        "application/x-www-form-urlencoded",
        &form,
    )
    .await
}

async fn consent_of(port: u16, number: &str) -> Value {
    let (status, body) = http_call(
        port,
        "GET",
        &format!("/v1/consent/acme/{}", number.replace('+', "%2B")),
        &[("Authorization", &format!("Bearer {KEY}"))],
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

/// Wait until instance `port`'s replica shows `state` for the purpose
/// (the feed applies it in milliseconds; the bound here is generous so a
/// loaded CI machine does not fail the test).
async fn wait_consent(port: u16, number: &str, purpose: &str, state: &str) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let c = consent_of(port, number).await;
        if c["consent"][purpose]["state"] == state {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "not applied: {c}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn evaluate(port: u16, req: &Value) -> Value {
    let (status, body) = http_call(
        port,
        "POST",
        "/v1/policy/evaluate",
        &[("Authorization", &format!("Bearer {KEY}"))],
        "application/json",
        &req.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn msg(id: &str, to: &str, category: &str, body: &str) -> Vec<u8> {
    json!({"id": id, "tenant": "acme", "to": to, "category": category, "body": body})
        .to_string()
        .into_bytes()
}

fn event_of<'a>(
    ev: &'a [HashMap<String, String>],
    id: &str,
) -> Option<&'a HashMap<String, String>> {
    ev.iter()
        .rev()
        .find(|e| e.get("id").map(String::as_str) == Some(id))
}

fn has_decision(ev: &[HashMap<String, String>], id: &str, status: &str) -> bool {
    ev.iter().any(|e| {
        e.get("id").map(String::as_str) == Some(id)
            && e.get("status").map(String::as_str) == Some(status)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_one_instance_suppresses_on_another_and_confirms_once() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (port_a, port_b) = (free_port(), free_port());
    let tenants = tenant_section("");
    let a = start(&redis, &mock.base_url(), port_a, &tenants).await;
    let b = start(&redis, &mock.base_url(), port_b, &tenants).await;
    let mut conn = redis.conn().await;
    let who = number(11);

    // A bad signature changes nothing (docs/contracts.md#http-and-grpc).
    let (status, _) = inbound(port_a, &who, "STOP", "wrong-token").await;
    assert_eq!(status, 403);
    assert_eq!(
        consent_of(port_a, &who).await["consent"]["collections"]["state"],
        "unknown"
    );

    // STOP (47 CFR 64.1200(a)(10)): revoked for every purpose, one
    // confirmation (64.1200(a)(12)), evidence kept.
    let (status, twiml) = inbound(port_a, &who, "Stop.", "mock-token").await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("<Message>Acme: you are unsubscribed"),
        "{twiml}"
    );
    let c = consent_of(port_a, &who).await;
    for p in ["transactional", "collections", "marketing"] {
        assert_eq!(c["consent"][p]["state"], "revoked", "{c}");
    }
    assert_eq!(c["evidence"]["collections"]["source"], "inbound");
    assert!(
        c["evidence"]["collections"]["evidence"]
            .as_str()
            .unwrap_or("")
            .contains("SM0123456789abcdef"),
        "{c}"
    );
    // A second STOP: no second confirmation.
    let (_, twiml) = inbound(port_b, &who, "STOP", "mock-token").await;
    assert!(!twiml.contains("<Message>"), "{twiml}");

    // Instance B learns of it through the feed (docs/compliance.md: within a
    // second); from then on a message read by either instance is
    // suppressed.
    wait_consent(port_b, &who, "transactional", "revoked").await;
    let msgs: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            msg(
                &format!("s{i}"),
                &who,
                "transactional",
                "Your payment is due",
            )
        })
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    let ev = wait_events(&mut conn, "20 decisions", T, |ev| {
        count_status(ev, "suppressed") + count_status(ev, "sent") == 20
    })
    .await;
    assert_eq!(count_status(&ev, "suppressed"), 20, "{ev:?}");
    assert!(
        ev.iter()
            .all(|e| e.get("reason").map(String::as_str) == Some("opted_out"))
    );
    assert!(mock.recorded().is_empty());

    // The audit stream holds who, what, when and the evidence.
    let audit: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("herald:consent:audit")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    assert_eq!(audit.ids.len(), 1, "the second STOP changed nothing");

    // START restores express consent.
    let (_, twiml) = inbound(port_b, &who, "start", "mock-token").await;
    assert!(twiml.contains("<Message>"), "{twiml}");
    wait_consent(port_a, &who, "transactional", "granted").await;
    xadd_raw(
        &mut conn,
        4,
        &[msg("after-start", &who, "transactional", "hi")],
    )
    .await;
    wait_events(&mut conn, "sent after START", T, |ev| {
        has_decision(ev, "after-start", "sent")
    })
    .await;

    a.stop().await.expect("clean stop");
    b.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_ambiguous_and_other_replies() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let herald = start(&redis, &mock.base_url(), port, &tenant_section("")).await;
    let mut conn = redis.conn().await;

    let (status, twiml) = inbound(port, &number(21), "help", "mock-token").await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("Acme Servicing: help at 800-555-0199"),
        "{twiml}"
    );
    assert_eq!(
        consent_of(port, &number(21)).await["consent"]["marketing"]["state"],
        "unknown"
    );

    // A sentence that merely contains "stop" is not a revocation.
    let (_, twiml) = inbound(
        port,
        &number(22),
        "I'll stop by the branch to pay",
        "mock-token",
    )
    .await;
    assert!(!twiml.contains("<Message>"));
    let c = consent_of(port, &number(22)).await;
    assert_ne!(c["consent"]["collections"]["state"], "revoked", "{c}");

    // An ordinary reply goes to herald:inbound for upstream.
    let (_, _) = inbound(port, &number(23), "When is my payment due?", "mock-token").await;
    let replies: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("herald:inbound")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    assert!(
        replies.ids.iter().any(|e| {
            e.get::<String>("body").as_deref() == Some("When is my payment due?")
                && e.get::<String>("tenant").as_deref() == Some("acme")
        }),
        "reply not forwarded"
    );

    // An ambiguous reply holds sends (`review`).
    let (_, _) = inbound(port, &number(24), "stop?", "mock-token").await;
    let c = consent_of(port, &number(24)).await;
    assert_eq!(c["consent"]["collections"]["state"], "review", "{c}");
    xadd_raw(
        &mut conn,
        4,
        &[msg("held", &number(24), "transactional", "hi")],
    )
    .await;
    let ev = wait_events(&mut conn, "review hold", T, |ev| {
        event_of(ev, "held").is_some()
    })
    .await;
    let e = event_of(&ev, "held").expect("event");
    assert_eq!(e["status"], "suppressed");
    assert_eq!(e["reason"], "review_hold");

    herald.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_opt_out_21610_is_recorded_in_the_ledger() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let herald = start(&redis, &mock.base_url(), port, &tenant_section("")).await;
    let mut conn = redis.conn().await;
    // The mock mirrors Twilio's magic number: +15005550004 → 21610.
    let blocked = "+15005550004";
    xadd_raw(&mut conn, 4, &[msg("c1", blocked, "transactional", "hi")]).await;
    let ev = wait_events(&mut conn, "failed", T, |ev| event_of(ev, "c1").is_some()).await;
    let e = event_of(&ev, "c1").expect("event");
    assert_eq!(e["status"], "failed");
    assert_eq!(e["reason"], "carrier_opt_out");
    let c = consent_of(port, blocked).await;
    assert_eq!(c["consent"]["marketing"]["state"], "revoked", "{c}");
    assert_eq!(c["evidence"]["marketing"]["source"], "carrier");
    // Once the feed has it, the next message is suppressed without
    // reaching the provider.
    wait_consent(port, blocked, "transactional", "revoked").await;
    xadd_raw(&mut conn, 4, &[msg("c2", blocked, "transactional", "hi")]).await;
    let ev = wait_events(&mut conn, "suppressed", T, |ev| {
        event_of(ev, "c2").is_some()
    })
    .await;
    assert_eq!(event_of(&ev, "c2").expect("event")["reason"], "opted_out");
    herald.stop().await.expect("clean stop");
}

/// A tenant window that is closed right now in Los Angeles (area code 415):
/// 20:00–21:00 before noon, 02:00–03:00 after.
fn closed_window_now() -> (&'static str, &'static str) {
    let now = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("America/Los_Angeles").expect("tz"));
    if now.hour() < 12 {
        ("20:00", "21:00")
    } else {
        ("02:00", "03:00")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_defer_to_the_window_and_the_trail_says_why() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let (start_at, end_at) = closed_window_now();
    let extra = tenant_section(&format!(
        r#"
[[tenants.acme.windows]]
id = "acme-transactional-hours"
categories = ["transactional"]
start = "{start_at}"
end = "{end_at}"
citation = "Acme policy 7.2"
"#
    )) + "\n[compliance]\nrelease_spread_secs = 0\n";
    let herald = start(&redis, &mock.base_url(), port, &extra).await;
    let mut conn = redis.conn().await;
    let to = number(31);
    // What the policy says, through the admin endpoint.
    let eval = evaluate(
        port,
        &json!({"tenant": "acme", "to": to, "category": "transactional"}),
    )
    .await;
    assert_eq!(eval["decision"], "defer", "{eval}");
    assert_eq!(eval["zones"], json!(["America/Los_Angeles"]), "{eval}");
    let until: jiff::Timestamp = eval["until"]
        .as_str()
        .expect("until")
        .parse()
        .expect("rfc3339");
    let local = until.to_zoned(jiff::tz::TimeZone::get("America/Los_Angeles").expect("tz"));
    assert_eq!(
        format!("{:02}:{:02}", local.hour(), local.minute()),
        start_at
    );

    // The dispatch path agrees: deferred to the same instant, never dropped.
    xadd_raw(
        &mut conn,
        4,
        &[msg("q1", &to, "transactional", "Your statement is ready")],
    )
    .await;
    let ev = wait_events(&mut conn, "deferred", T, |ev| event_of(ev, "q1").is_some()).await;
    let e = event_of(&ev, "q1").expect("event");
    assert_eq!(e["status"], "deferred");
    assert_eq!(e["reason"], "quiet_hours");
    assert_eq!(
        e["until"].parse::<i64>().expect("ms"),
        until.as_millisecond()
    );
    let delayed: i64 = redis::cmd("ZCARD")
        .arg("herald:delayed")
        .query_async(&mut conn)
        .await
        .expect("zcard");
    assert_eq!(delayed, 1);

    // The trail names the rule and its citation.
    let (status, body) = http_call(
        port,
        "GET",
        "/v1/messages/acme/q1",
        &[("Authorization", &format!("Bearer {KEY}"))],
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 200);
    let state: Value = serde_json::from_str(&body).expect("json");
    let rules = &state["trail"][0]["rules"];
    assert!(
        rules
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f["rule"] == "acme-transactional-hours"
                && f["citation"] == "Acme policy 7.2"
                && f["effect"] == "defer")),
        "{state}"
    );
    herald.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketing_needs_written_consent_and_evaluate_can_assume_it() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let herald = start(&redis, &mock.base_url(), port, &tenant_section("")).await;
    let to = number(41);
    // 47 CFR 64.1200(a)(2): marketing to a number with no written consent.
    let e = evaluate(
        port,
        &json!({"tenant": "acme", "to": to, "category": "marketing",
        "at": "2026-06-03T18:00:00Z"}),
    )
    .await;
    assert_eq!(e["decision"], "suppress", "{e}");
    assert_eq!(e["reason"], "no_consent");
    // As if written consent were on file: 11:00 in Los Angeles, allowed.
    let e = evaluate(
        port,
        &json!({"tenant": "acme", "to": to, "category": "marketing",
        "at": "2026-06-03T18:00:00Z", "consent": "express_written"}),
    )
    .await;
    assert_eq!(e["decision"], "allow", "{e}");
    // At 06:00 Los Angeles: deferred to 08:00 (47 CFR 64.1200(c)(1)).
    let e = evaluate(
        port,
        &json!({"tenant": "acme", "to": to, "category": "marketing",
        "at": "2026-06-03T13:00:00Z", "consent": "express_written"}),
    )
    .await;
    assert_eq!(e["decision"], "defer", "{e}");
    assert_eq!(e["until"], "2026-06-03T15:00:00Z", "{e}");
    let rules = e["rules"].as_array().expect("rules");
    assert!(
        rules.iter().any(|r| r["citation"]
            .as_str()
            .unwrap_or("")
            .contains("64.1200(c)(1)")),
        "{e}"
    );
    herald.stop().await.expect("clean stop");
}

/// A rule table with one cap on transactional texts to Florida numbers, so
/// the cap is exercised at any hour (the shipped FL cap is for marketing,
/// whose window depends on the clock).
const CAP_RULES: &str = r#"
[[cap]]
id = "test-fl-cap"
states = ["FL"]
categories = ["transactional"]
limit = 3
window_hours = 24
per_debt = false
citation = "Fla. Stat. 501.616(6) (test table)"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frequency_cap_defers_the_fourth_text_until_the_window_frees() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let rules = TempFile::new("rules.toml", CAP_RULES);
    let extra = format!(
        "{}\n[compliance]\nrules_file = \"{}\"\n",
        tenant_section(""),
        rules.toml_path()
    );
    let herald = start(&redis, &mock.base_url(), port, &extra).await;
    let mut conn = redis.conn().await;
    let miami = "+13055550123";
    for i in 0..4 {
        xadd_raw(
            &mut conn,
            4,
            &[msg(&format!("f{i}"), miami, "transactional", "hi")],
        )
        .await;
        wait_events(&mut conn, "decision", T, |ev| {
            event_of(ev, &format!("f{i}")).is_some()
        })
        .await;
    }
    let ev = events(&mut conn).await;
    let statuses: Vec<&str> = (0..4)
        .map(|i| event_of(&ev, &format!("f{i}")).expect("event")["status"].as_str())
        .collect();
    assert_eq!(statuses, ["sent", "sent", "sent", "deferred"]);
    let e = event_of(&ev, "f3").expect("event");
    assert_eq!(e["reason"], "frequency_cap");
    let first_sent: i64 = event_of(&ev, "f0").expect("event")["ts"]
        .parse()
        .expect("ts");
    let until: i64 = e["until"].parse().expect("until");
    // Room again 24 h after the first text (within the writer's batching).
    assert!(
        (until - (first_sent + 86_400_000)).abs() < 5_000,
        "until {until}, first {first_sent}"
    );
    assert_eq!(mock.recorded().len(), 3);
    herald.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_rules_append_opt_out_count_segments_and_block() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    // No windows in this table: collections may go at any hour here.
    let rules = TempFile::new("rules.toml", "");
    let extra = format!(
        "{}\n[compliance]\nrules_file = \"{}\"\n",
        tenant_section(
            r#"smart_encoding = true
blocked_content = ["(?i)guaranteed approval"]"#
        ),
        rules.toml_path()
    );
    let herald = start(&redis, &mock.base_url(), port, &extra).await;
    let mut conn = redis.conn().await;
    xadd_raw(
        &mut conn,
        4,
        &[
            msg(
                "k1",
                &number(51),
                "collections",
                "Your payment of $20 is due",
            ),
            msg(
                "k2",
                &number(52),
                "collections",
                "Payment due. Reply STOP to opt out.",
            ),
            msg(
                "k3",
                &number(53),
                "collections",
                "Guaranteed approval today!",
            ),
            msg(
                "k4",
                &number(54),
                "transactional",
                "It\u{2019}s done \u{2014} thanks",
            ),
        ],
    )
    .await;
    let ev = wait_events(&mut conn, "4 decisions", T, |ev| {
        ["k1", "k2", "k3", "k4"]
            .iter()
            .all(|id| event_of(ev, id).is_some())
    })
    .await;
    let bodies: HashMap<String, String> = mock
        .recorded()
        .into_iter()
        .map(|m| (m.to, m.body))
        .collect();
    // Reg F 12 CFR 1006.6(e): appended when missing, not twice.
    assert_eq!(
        bodies[&number(51)],
        "Your payment of $20 is due Reply STOP to stop texts to this telephone number."
    );
    assert_eq!(bodies[&number(52)], "Payment due. Reply STOP to opt out.");
    let k3 = event_of(&ev, "k3").expect("event");
    assert_eq!(k3["status"], "suppressed");
    assert_eq!(k3["reason"], "content_blocked");
    // Smart encoding kept it GSM-7: one segment.
    assert_eq!(bodies[&number(54)], "It's done - thanks");
    assert_eq!(event_of(&ev, "k4").expect("event")["segments"], "1");
    herald.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_reaches_a_running_instance() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let herald = start(&redis, &mock.base_url(), port, &tenant_section("")).await;
    let mut conn = redis_conn_manager(&redis).await;
    let lines = format!(
        "{}\n{}\nnot json\n",
        json!({"tenant": "acme", "number": number(61), "purposes": ["marketing"], "state": "granted",
            "kind": "express_written", "source": "web_form", "at": "2025-06-01T12:00:00Z", "evidence": "form 881"}),
        json!({"tenant": "acme", "number": number(62), "state": "revoked", "source": "call_center",
            "at": "2025-07-01T09:30:00Z", "evidence": "agent 12"}),
    );
    let ledger = herald_engine::consent::ConsentLedger::default();
    let report = herald_engine::consent::import::import_jsonl(
        &mut conn,
        &ledger,
        std::io::Cursor::new(lines),
        "test",
    )
    .await
    .expect("import");
    assert_eq!(report.records, 2);
    assert_eq!(report.changed, 2);
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].0, 3);
    // The running instance follows the audit feed.
    let deadline = std::time::Instant::now() + T;
    loop {
        let c = consent_of(port, &number(62)).await;
        if c["consent"]["transactional"]["state"] == "revoked" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "import not applied: {c}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = consent_of(port, &number(61)).await;
    assert_eq!(c["consent"]["marketing"]["kind"], "express_written", "{c}");
    assert_eq!(c["evidence"]["marketing"]["source"], "web_form");
    herald.stop().await.expect("clean stop");
}

async fn redis_conn_manager(redis: &RedisServer) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(redis.url()).expect("url");
    redis::aio::ConnectionManager::new(client)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_loads_the_ledger() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let herald = start(&redis, &mock.base_url(), port, &tenant_section("")).await;
    let (status, _) = inbound(port, &number(71), "UNSUBSCRIBE", "mock-token").await;
    assert_eq!(status, 200);
    herald.stop().await.expect("clean stop");
    // A new instance starts with the revocation in its replica.
    let port = free_port();
    let herald = start(&redis, &mock.base_url(), port, &tenant_section("")).await;
    let mut conn = redis.conn().await;
    xadd_raw(
        &mut conn,
        4,
        &[msg("r1", &number(71), "transactional", "hi")],
    )
    .await;
    let ev = wait_events(&mut conn, "decision", T, |ev| event_of(ev, "r1").is_some()).await;
    assert_eq!(event_of(&ev, "r1").expect("event")["reason"], "opted_out");
    herald.stop().await.expect("clean stop");
}

/// The shipped caps, straight against Redis: Fla. Stat. 501.616(6) (3
/// marketing texts per rolling 24 h, all senders) and 940 CMR 7.04(1)(f)
/// (2 collection texts per 7 days per debt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_caps_florida_and_massachusetts() {
    use herald_engine::consent::ConsentKind;
    use herald_engine::consent::replica::NumberState;
    use herald_engine::model::Category;
    use herald_engine::policy::caps::{self, Mode};
    use herald_engine::policy::{Input, Policy, Verdict};
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let policy = Policy::shipped();
    let script = redis::Script::new(caps::CAP_LUA);
    let hour = 3_600_000i64;
    let t0: jiff::Timestamp = "2026-06-03T14:00:00Z".parse().expect("ts"); // 10:00 EDT

    let caps_for = |to: u64, category: Category, at: jiff::Timestamp| {
        let e = policy.evaluate(
            &Input {
                tenant: "acme",
                to,
                category,
                recipient_tz: None,
                recipient_state: None,
                at,
                consent: Some(ConsentKind::ExpressWritten),
                explain: false,
            },
            NumberState::default(),
        );
        assert_eq!(e.verdict, Verdict::Allow, "{e:?}");
        e.caps
    };

    // Florida: (who sends, at, want: None = room, Some(ms) = room again at).
    let miami = 13_055_550_123u64;
    let fl = caps::keys(&caps_for(miami, Category::Marketing, t0), miami, None);
    assert_eq!(fl.len(), 1);
    assert_eq!(&*fl[0].rule.id, "fl-marketing-cap");
    let t = t0.as_millisecond();
    let rows: [(&str, i64, Option<i64>, &str); 6] = [
        ("acme:m1", t, None, "1st of 3"),
        (
            "other-brand:m2",
            t + hour,
            None,
            "2nd, another sender: all senders count",
        ),
        ("acme:m3", t + 2 * hour, None, "3rd"),
        (
            "acme:m4",
            t + 3 * hour,
            Some(t + 24 * hour),
            "4th within 24 h: when the 1st leaves",
        ),
        (
            "acme:m3",
            t + 3 * hour,
            None,
            "a redelivered 3rd is not counted twice",
        ),
        (
            "acme:m5",
            t + 24 * hour,
            None,
            "the 1st has left the rolling window",
        ),
    ];
    for (member, at, want, why) in rows {
        let got = caps::check(&mut conn, &script, &fl, member, at, Mode::Reserve)
            .await
            .expect("script");
        assert_eq!(got, want, "Fla. Stat. 501.616(6): {why}");
    }

    // Massachusetts: per debt.
    let boston = 16_175_550_123u64;
    let ma_rules = caps_for(boston, Category::Collections, t0);
    let debt_a = caps::keys(&ma_rules, boston, Some("loan-A"));
    let debt_b = caps::keys(&ma_rules, boston, Some("loan-B"));
    assert!(
        debt_a.iter().any(|c| &*c.rule.id == "ma-collections-cap"),
        "{debt_a:?}"
    );
    let day = 24 * hour;
    type Row<'a> = (&'a [caps::CapKey], &'a str, i64, Option<i64>, &'a str);
    let rows: [Row<'_>; 4] = [
        (&debt_a, "acme:a1", t, None, "1st about loan A"),
        (&debt_a, "acme:a2", t + day, None, "2nd about loan A"),
        (
            &debt_a,
            "acme:a3",
            t + 2 * day,
            Some(t + 7 * day),
            "3rd within 7 days",
        ),
        (
            &debt_b,
            "acme:b1",
            t + 2 * day,
            None,
            "loan B has its own count",
        ),
    ];
    for (keys, member, at, want, why) in rows {
        let got = caps::check(&mut conn, &script, keys, member, at, Mode::Reserve)
            .await
            .expect("script");
        assert_eq!(got, want, "940 CMR 7.04(1)(f): {why}");
    }
    // Peek changes nothing.
    let peek = caps::check(
        &mut conn,
        &script,
        &debt_b,
        "acme:b2",
        t + 2 * day,
        Mode::Peek,
    )
    .await
    .expect("script");
    assert_eq!(peek, None);
    let n: i64 = redis::cmd("ZCARD")
        .arg(&debt_b[0].key)
        .query_async(&mut conn)
        .await
        .expect("zcard");
    assert_eq!(n, 1);
}
