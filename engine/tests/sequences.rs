//! Sequences (issue 14): enrolment into the built-in payment reminder at
//! the right local instants across a DST change, cancel ("paid" beats
//! "send"), a cancel racing due steps, STOP ending sequences, a template
//! change affecting only later enrolments, the reconciler putting back a
//! lost timer. Real redis-server, Herald in-process; the `kill -9` test
//! runs the real binary.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use herald_engine::inbound::signature::twilio_signature;
use serde_json::{Value, json};

const TOKEN: &str = ADMIN_TOKEN;
const KEY: &str = "acme-key-0123456789abcdef";
const SENDER: &str = "+15005550006";

type Event = HashMap<String, String>;

/// acme owns the mock's sender (a STOP to it is acme's).
fn extra() -> String {
    format!("[tenants.acme]\nsenders = [\"{SENDER}\"]\n")
}

/// Three transactional templates and a schedule `now` whose steps are all
/// already due (yesterday and today at 00:00, within a week's
/// `max_late`): they go as soon as they are enrolled.
const NOW_SCHEDULE: &str = r#"
[[templates.acme.now_1]]
version = 1
category = "transactional"
vars = { ref = "text" }
text.en = "s1 {ref}"

[[templates.acme.now_2]]
version = 1
category = "transactional"
vars = { ref = "text" }
text.en = "s2 {ref}"

[[templates.acme.now_3]]
version = 1
category = "transactional"
vars = { ref = "text" }
text.en = "s3 {ref}"

[[schedules.acme.now.steps]]
day = -2
at = "00:00"
template = "now_1"
max_late = "7d"

[[schedules.acme.now.steps]]
day = -1
at = "00:00"
template = "now_2"
max_late = "7d"

[[schedules.acme.now.steps]]
day = 0
at = "00:00"
template = "now_3"
max_late = "7d"
"#;

async fn set_policy(grpc: u16, extra: &str) {
    let doc = heraldctl(grpc, TOKEN, &["policy", "get"])
        .await
        .expect("policy get");
    let file = TempFile::new("policy.toml", &format!("{doc}\n{extra}"));
    heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect("policy set");
    // Every instance follows within 200 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
}

fn enrol(id: &str, to: &str, schedule: &str, anchor: &str, vars: Value, extra: Value) -> Vec<u8> {
    let mut m = json!({
        "id": id, "tenant": "acme", "to": to,
        "sequence": {"schedule": schedule, "anchor": anchor},
        "vars": vars,
    });
    if let (Value::Object(m), Value::Object(x)) = (&mut m, extra) {
        m.extend(x);
    }
    m.to_string().into_bytes()
}

fn reminder_vars() -> Value {
    json!({"name": "Ana", "amount": "120.50", "due_date": "2027-03-14"})
}

fn of<'a>(ev: &'a [Event], id: &str) -> impl Iterator<Item = &'a Event> + use<'a> {
    let id = id.to_string();
    ev.iter()
        .filter(move |e| e.get("id").map(String::as_str) == Some(id.as_str()))
}

fn f<'a>(e: &'a Event, k: &str) -> &'a str {
    e.get(k).map_or("", String::as_str)
}

fn at(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>()
        .expect("instant")
        .as_millisecond()
}

async fn http(h: &Herald, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {KEY}");
    let (status, text) = http_call(
        h.http.port(),
        method,
        path,
        &[("Authorization", auth.as_str())],
        "application/json",
        body,
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The seven steps of the built-in `payment_reminder` for a New York and a
/// Los Angeles recipient, anchored on 2027-03-14, the day US clocks spring
/// forward: each `deferred` / `send_at` event's `until` is 10:00 local —
/// 15:00Z / 18:00Z before the change, 14:00Z / 17:00Z from it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_reminders_are_scheduled_at_ten_local_across_a_dst_change() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, _grpc) = start_controlled(&redis, &mock, &extra()).await;
    let mut conn = redis.conn().await;
    let ny = "+12125550123";
    let la = "+13105550123";
    xadd_raw(
        &mut conn,
        4,
        &[
            enrol(
                "loan-ny",
                ny,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                json!({}),
            ),
            enrol(
                "loan-la",
                la,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                json!({"locale": "es-US", "meta": {"crm": 7}}),
            ),
            // A missing variable rejects the whole enrolment at once.
            enrol(
                "loan-hole",
                ny,
                "payment_reminder",
                "2027-03-14",
                json!({"name": "Ana", "due_date": "2027-03-14"}),
                json!({}),
            ),
            enrol(
                "loan-nope",
                ny,
                "no_such",
                "2027-03-14",
                json!({}),
                json!({}),
            ),
        ],
    )
    .await;
    let ev = wait_events(
        &mut conn,
        "14 steps and 2 rejections",
        Duration::from_secs(10),
        |ev| {
            ev.iter().filter(|e| f(e, "status") == "deferred").count() >= 14
                && ev.iter().filter(|e| f(e, "status") == "rejected").count() >= 2
        },
    )
    .await;
    let days = [
        ("2027-03-07", "15:00", "14:00"),
        ("2027-03-11", "15:00", "14:00"),
        ("2027-03-13", "15:00", "14:00"),
        ("2027-03-14", "14:00", "13:00"),
        ("2027-03-15", "14:00", "13:00"),
        ("2027-03-17", "14:00", "13:00"),
        ("2027-03-21", "14:00", "13:00"),
    ];
    for (loan, la_zone) in [("loan-ny", false), ("loan-la", true)] {
        for (n, (date, ny_utc, _)) in days.iter().enumerate() {
            let id = format!("{loan}/{}", n + 1);
            let steps: Vec<&Event> = of(&ev, &id).collect();
            assert_eq!(steps.len(), 1, "{id}: {steps:?}");
            let e = steps[0];
            // Los Angeles is three hours behind New York on both sides of
            // the change (both change on the same day).
            let hour: i64 = ny_utc[..2].parse().expect("hour");
            let utc = if la_zone { hour + 3 } else { hour };
            let want = at(&format!("{date}T{utc:02}:00:00Z"));
            assert_eq!(
                (f(e, "status"), f(e, "reason"), f(e, "until")),
                ("deferred", "send_at", want.to_string().as_str()),
                "{id}: {e:?}"
            );
            assert_eq!(f(e, "sequence"), "payment_reminder", "{e:?}");
            assert_eq!(f(e, "step"), (n + 1).to_string(), "{e:?}");
            assert_eq!(f(e, "template_version"), "1", "{e:?}");
            let template = match n {
                0..=2 => "payment_reminder_before",
                3 => "payment_reminder_due",
                _ => "payment_reminder_after",
            };
            assert_eq!(f(e, "template"), template, "{e:?}");
        }
    }
    assert_eq!(
        f(of(&ev, "loan-la/1").next().expect("step"), "meta"),
        r#"{"crm":7}"#
    );
    let hole = of(&ev, "loan-hole").next().expect("rejected");
    assert_eq!(
        (f(hole, "status"), f(hole, "reason")),
        ("rejected", "missing_variable")
    );
    assert!(f(hole, "detail").contains("`amount`"), "{hole:?}");
    assert_eq!(
        of(&ev, "loan-hole/1").count(),
        0,
        "no step of a rejected enrolment"
    );
    let nope = of(&ev, "loan-nope").next().expect("rejected");
    assert_eq!(f(nope, "reason"), "unknown_schedule", "{nope:?}");

    // The sequence and its steps, over HTTP.
    let (status, s) = http(&h, "GET", "/v1/sequences/acme/loan-ny", "").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        (s["state"].as_str(), s["anchor"].as_str()),
        (Some("active"), Some("2027-03-14"))
    );
    assert_eq!(s["zone"], "America/New_York");
    assert_eq!(s["steps"].as_array().map(Vec::len), Some(7));
    assert_eq!(s["steps"][3]["state"], "deferred");
    let (status, step) = http(&h, "GET", "/v1/messages/acme/loan-ny/4", "").await;
    assert_eq!(status, 200, "{step}");

    // Enrolling the same id again changes nothing: `duplicate`.
    xadd_raw(
        &mut conn,
        4,
        &[enrol(
            "loan-ny",
            ny,
            "payment_reminder",
            "2027-04-01",
            reminder_vars(),
            json!({}),
        )],
    )
    .await;
    let ev = wait_events(&mut conn, "the duplicate", Duration::from_secs(10), |ev| {
        of(ev, "loan-ny").any(|e| f(e, "status") == "duplicate")
    })
    .await;
    assert_eq!(of(&ev, "loan-ny/1").count(), 1, "not scheduled twice");
    assert!(mock.recorded().is_empty(), "nothing is due yet");
    h.stop().await.expect("clean stop");
}

/// "Paid" beats "send": a cancel over HTTP turns every waiting step into
/// `cancelled` at once; a second cancel changes nothing; a `{"cancel": id}`
/// queue entry does the same; a cancel that arrives before its enrolment
/// cancels the enrolment's steps too, and none of them is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_ends_every_waiting_step_and_even_a_later_enrolment() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, grpc) = start_controlled(&redis, &mock, &extra()).await;
    set_policy(grpc, NOW_SCHEDULE).await;
    let mut conn = redis.conn().await;
    let to = number(3);
    xadd_raw(
        &mut conn,
        4,
        &[
            enrol(
                "paid-1",
                &to,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                json!({}),
            ),
            enrol(
                "paid-2",
                &to,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                json!({}),
            ),
        ],
    )
    .await;
    wait_events(&mut conn, "14 steps", Duration::from_secs(10), |ev| {
        ev.iter().filter(|e| f(e, "status") == "deferred").count() >= 14
    })
    .await;

    let (status, r) = http(
        &h,
        "POST",
        "/v1/sequences/acme/paid-1/cancel",
        r#"{"detail":"paid by ACH"}"#,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["result"].as_str(), r["steps_released"].as_u64()),
        (Some("cancelled"), Some(7))
    );
    let (_, again) = http(&h, "POST", "/v1/sequences/acme/paid-1/cancel", "").await;
    assert_eq!(again["result"], "already_ended", "{again}");
    // Another tenant's key cannot cancel acme's sequence.
    let (status, _) = http_call(
        h.http.port(),
        "POST",
        "/v1/sequences/acme/paid-2/cancel",
        &[("Authorization", "Bearer not-a-key")],
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 401);
    // The queue's cancel entry.
    xadd_raw(
        &mut conn,
        4,
        &[json!({"cancel": "paid-2", "tenant": "acme"})
            .to_string()
            .into_bytes()],
    )
    .await;
    // A cancel before its enrolment: the steps (all due now) never go.
    let (_, early) = http(&h, "POST", "/v1/sequences/acme/early/cancel", "").await;
    assert_eq!(early["result"], "not_enrolled", "{early}");
    xadd_raw(
        &mut conn,
        4,
        &[enrol(
            "early",
            &to,
            "now",
            &today(),
            json!({"ref": "early"}),
            json!({}),
        )],
    )
    .await;
    let ev = wait_events(&mut conn, "17 cancelled", Duration::from_secs(10), |ev| {
        ev.iter().filter(|e| f(e, "status") == "cancelled").count() >= 17
    })
    .await;
    for id in ["paid-1", "paid-2"] {
        for n in 1..=7 {
            let step = format!("{id}/{n}");
            let last: Vec<&Event> = of(&ev, &step).collect();
            assert_eq!(last.len(), 2, "deferred then cancelled: {last:?}");
            assert_eq!(
                (f(last[1], "status"), f(last[1], "reason")),
                ("cancelled", "sequence_cancelled")
            );
            assert_eq!(f(last[1], "sequence"), "payment_reminder");
        }
    }
    for n in 1..=3 {
        let c = of(&ev, &format!("early/{n}")).find(|e| f(e, "status") == "cancelled");
        assert!(c.is_some(), "early/{n}");
    }
    let (_, s) = http(&h, "GET", "/v1/sequences/acme/paid-1", "").await;
    assert_eq!(
        (s["state"].as_str(), s["detail"].as_str()),
        (Some("cancelled"), Some("paid by ACH"))
    );
    assert_eq!(s["steps"][6]["state"], "cancelled");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        mock.recorded().is_empty(),
        "nothing was sent: {:?}",
        mock.recorded()
    );
    assert_eq!(count_status(&events(&mut conn).await, "sent"), 0);
    h.stop().await.expect("clean stop");
}

/// The anchor for the `now` schedule: yesterday in UTC, so its last step
/// (the anchor at 00:00 in any US zone) is already past, and its first
/// (two days before) is within `max_late`.
fn today() -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .expect("a date")
        .to_string()
}

/// A cancel racing due steps: 40 sequences of three steps, all due, with
/// cancels sent while they are being sent. Every step ends exactly once,
/// `sent` or `cancelled`; the provider got exactly the sent ones; and no
/// step passed the gate after its cancel returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_due_steps_never_lets_a_later_step_through() {
    let redis = RedisServer::start();
    let mock = mock(2, 0.0).await;
    let (h, grpc) = start_controlled(&redis, &mock, &extra()).await;
    set_policy(grpc, NOW_SCHEDULE).await;
    let mut conn = redis.conn().await;
    const N: usize = 40;
    let msgs: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            enrol(
                &format!("race-{i}"),
                &number(100 + i),
                "now",
                &today(),
                json!({"ref": format!("race-{i}")}),
                json!({}),
            )
        })
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    // Cancel each as soon as its first step shows up, whatever the others do.
    let mut cancelled_at: HashMap<usize, i64> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while cancelled_at.len() < N {
        assert!(
            std::time::Instant::now() < deadline,
            "steps did not show up"
        );
        let ev = events(&mut conn).await;
        for i in 0..N {
            if cancelled_at.contains_key(&i) {
                continue;
            }
            if of(&ev, &format!("race-{i}/1")).next().is_some() {
                let (status, r) = http(
                    &h,
                    "POST",
                    &format!("/v1/sequences/acme/race-{i}/cancel"),
                    "",
                )
                .await;
                assert_eq!(status, 200, "{r}");
                cancelled_at.insert(i, herald_engine::clock::now_ms());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ev = wait_events(
        &mut conn,
        "every step decided",
        Duration::from_secs(15),
        |ev| {
            (0..N).all(|i| {
                (1..=3).all(|n| {
                    of(ev, &format!("race-{i}/{n}"))
                        .any(|e| matches!(f(e, "status"), "sent" | "cancelled"))
                })
            })
        },
    )
    .await;
    let bodies: Vec<String> = mock.recorded().iter().map(|m| m.body.clone()).collect();
    let mut sent = 0;
    let mut cancelled = 0;
    for i in 0..N {
        for n in 1..=3 {
            let id = format!("race-{i}/{n}");
            let ends: Vec<&Event> = of(&ev, &id)
                .filter(|e| matches!(f(e, "status"), "sent" | "cancelled" | "failed" | "expired"))
                .collect();
            assert_eq!(ends.len(), 1, "{id} decided once: {ends:?}");
            let body = format!("s{n} race-{i}");
            let got = bodies.iter().filter(|b| **b == body).count();
            match f(ends[0], "status") {
                "sent" => {
                    sent += 1;
                    assert_eq!(got, 1, "{id} reached the provider once");
                }
                "cancelled" => {
                    cancelled += 1;
                    assert_eq!(got, 0, "{id} was cancelled but reached the provider");
                }
                other => panic!("{id}: {other}"),
            }
        }
    }
    assert_eq!(sent + cancelled, 3 * N);
    assert!(cancelled > 0, "the cancels raced nothing: {sent} sent");
    // No step was sent once its cancel had returned, beyond the ones
    // already past the gate (in flight): a sent step's provider call
    // starts before its cancel returned plus the send's own latency.
    for i in 0..N {
        for n in 1..=3 {
            if let Some(e) = of(&ev, &format!("race-{i}/{n}")).find(|e| f(e, "status") == "sent") {
                let ts: i64 = f(e, "ts").parse().expect("ts");
                assert!(
                    ts <= cancelled_at[&i] + 2_000,
                    "race-{i}/{n} sent at {ts}, cancel at {}",
                    cancelled_at[&i]
                );
            }
        }
    }
    h.stop().await.expect("clean stop");
}

async fn stop_reply(port: u16, from: &str) -> u16 {
    static SID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sid = format!("SM0123456789abcdef{n:016x}");
    let params: Vec<(String, String)> = [
        ("AccountSid", "ACmock0000000000000000000000000000"),
        ("MessageSid", sid.as_str()),
        ("From", from),
        ("To", SENDER),
        ("Body", "STOP"),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = twilio_signature(
        "mock-token",
        &format!("http://127.0.0.1:{port}/v1/webhooks/twilio/inbound"),
        &params,
    );
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
    .0
}

/// A STOP ends every sequence to the number at once: its waiting steps
/// become `cancelled` / `opted_out`; another number's sequence goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_every_sequence_to_the_number() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, _grpc) = start_controlled(&redis, &mock, &extra()).await;
    let mut conn = redis.conn().await;
    let (who, other) = (number(7), number(8));
    xadd_raw(
        &mut conn,
        4,
        &[
            enrol(
                "stop-a",
                &who,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                json!({}),
            ),
            enrol(
                "stop-b",
                &who,
                "payment_reminder",
                "2027-05-01",
                reminder_vars(),
                json!({}),
            ),
            enrol(
                "stop-c",
                &other,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                json!({}),
            ),
        ],
    )
    .await;
    wait_events(&mut conn, "21 steps", Duration::from_secs(10), |ev| {
        ev.iter().filter(|e| f(e, "status") == "deferred").count() >= 21
    })
    .await;
    assert_eq!(stop_reply(h.http.port(), &who).await, 200);
    let ev = wait_events(&mut conn, "14 cancelled", Duration::from_secs(10), |ev| {
        ev.iter().filter(|e| f(e, "status") == "cancelled").count() >= 14
    })
    .await;
    for id in ["stop-a", "stop-b"] {
        for n in 1..=7 {
            let c = of(&ev, &format!("{id}/{n}"))
                .find(|e| f(e, "status") == "cancelled")
                .unwrap_or_else(|| panic!("{id}/{n}"));
            assert_eq!(f(c, "reason"), "opted_out", "{c:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ev = events(&mut conn).await;
    assert!(
        of(&ev, "stop-c/1").all(|e| f(e, "status") == "deferred"),
        "another number's goes on"
    );
    let (_, s) = http(&h, "GET", "/v1/sequences/acme/stop-c", "").await;
    assert_eq!(s["state"], "active");
    let (_, s) = http(&h, "GET", "/v1/sequences/acme/stop-a", "").await;
    assert_eq!(
        (s["state"].as_str(), s["reason"].as_str()),
        (Some("cancelled"), Some("opted_out"))
    );
    h.stop().await.expect("clean stop");
}

/// Template versions are pinned at enrolment: a version published after it
/// changes only later enrolments' texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_affects_only_later_enrolments() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, grpc) = start_controlled(&redis, &mock, &extra()).await;
    set_policy(grpc, NOW_SCHEDULE).await;
    let mut conn = redis.conn().await;
    // Enrolled on v1; nothing is sent while the tenant is paused, so the
    // steps are decided (and rendered) after v2 is published.
    heraldctl(
        grpc,
        TOKEN,
        &["tenant", "pause", "acme", "--reason", "test"],
    )
    .await
    .expect("pause");
    tokio::time::sleep(Duration::from_millis(600)).await;
    xadd_raw(
        &mut conn,
        4,
        &[enrol(
            "pin-old",
            &number(20),
            "now",
            &today(),
            json!({"ref": "old"}),
            json!({}),
        )],
    )
    .await;
    wait_events(&mut conn, "3 steps", Duration::from_secs(10), |ev| {
        (1..=3).all(|n| of(ev, &format!("pin-old/{n}")).next().is_some())
    })
    .await;
    let doc = heraldctl(grpc, TOKEN, &["policy", "get"])
        .await
        .expect("get");
    let mut doc: toml::Table = toml::from_str(&doc).expect("the document");
    let v2: toml::Table = toml::from_str(
        "version = 2\ncategory = \"transactional\"\nvars = { ref = \"text\" }\ntext.en = \"NEW s1 {ref}\"\n",
    )
    .expect("v2");
    doc["templates"]["acme"]["now_1"]
        .as_array_mut()
        .expect("the versions")
        .push(toml::Value::Table(v2));
    let doc = toml::to_string(&doc).expect("toml");
    let file = TempFile::new("policy.toml", &doc);
    heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect("publish v2");
    tokio::time::sleep(Duration::from_millis(600)).await;
    xadd_raw(
        &mut conn,
        4,
        &[enrol(
            "pin-new",
            &number(21),
            "now",
            &today(),
            json!({"ref": "new"}),
            json!({}),
        )],
    )
    .await;
    heraldctl(grpc, TOKEN, &["tenant", "resume", "acme"])
        .await
        .expect("resume");
    let ev = wait_events(&mut conn, "6 sent", Duration::from_secs(15), |ev| {
        ["pin-old", "pin-new"].iter().all(|id| {
            (1..=3).all(|n| of(ev, &format!("{id}/{n}")).any(|e| f(e, "status") == "sent"))
        })
    })
    .await;
    let bodies: Vec<String> = mock.recorded().iter().map(|m| m.body.clone()).collect();
    assert!(bodies.contains(&"s1 old".to_string()), "{bodies:?}");
    assert!(bodies.contains(&"NEW s1 new".to_string()), "{bodies:?}");
    let old = of(&ev, "pin-old/1")
        .find(|e| f(e, "status") == "sent")
        .expect("sent");
    assert_eq!(f(old, "template_version"), "1");
    let new = of(&ev, "pin-new/1")
        .find(|e| f(e, "status") == "sent")
        .expect("sent");
    assert_eq!(f(new, "template_version"), "2");
    h.stop().await.expect("clean stop");
}

/// A waiting step whose timer vanished from the delayed set (a restore, an
/// operator's mistake) gets it back from the reconciler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_puts_back_a_lost_timer() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, _grpc) = start_controlled(&redis, &mock, &extra()).await;
    let mut conn = redis.conn().await;
    xadd_raw(
        &mut conn,
        4,
        &[enrol(
            "lost",
            &number(30),
            "payment_reminder",
            "2027-03-14",
            reminder_vars(),
            json!({}),
        )],
    )
    .await;
    wait_events(&mut conn, "7 steps", Duration::from_secs(10), |ev| {
        ev.iter().filter(|e| f(e, "status") == "deferred").count() >= 7
    })
    .await;
    let before: Option<f64> = redis::cmd("ZSCORE")
        .arg("herald:delayed")
        .arg("acme:lost/5")
        .query_async(&mut conn)
        .await
        .expect("zscore");
    let before = before.expect("a timer");
    let _: i64 = redis::cmd("ZREM")
        .arg("herald:delayed")
        .arg("acme:lost/5")
        .query_async(&mut conn)
        .await
        .expect("zrem");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s: Option<f64> = redis::cmd("ZSCORE")
            .arg("herald:delayed")
            .arg("acme:lost/5")
            .query_async(&mut conn)
            .await
            .expect("zscore");
        if let Some(s) = s {
            assert_eq!(s, before, "put back at its instant");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the timer was not put back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await.expect("clean stop");
}

/// `heraldctl template …`: a put stores a draft (never sent, even as
/// `name@N`), preview shows the final text with the opt-out line and its
/// segments, publish makes it the one messages use; an undeclared variable
/// is refused with its path. `heraldctl sequence cancel|get` end and show a
/// sequence, and the cancel is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_drafted_previewed_and_published_and_sequences_cancelled_with_heraldctl() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, grpc) = start_controlled(&redis, &mock, &extra()).await;
    let mut conn = redis.conn().await;
    let ctl = |args: &'static [&'static str]| heraldctl(grpc, TOKEN, args);

    let list = ctl(&["template", "list", "acme"]).await.expect("list");
    assert!(
        list.contains("payment_reminder_due") && list.contains("built-in"),
        "{list}"
    );

    let file = TempFile::new(
        "late.toml",
        "category = \"collections\"\nvars = { name = \"text\", amount = \"money\" }\ntext.en = \"Hi {name}, {amount} is past due.\"\ntext.es = \"Hola {name}, {amount} está vencido.\"\n",
    );
    let path = file.toml_path();
    let put = heraldctl(grpc, TOKEN, &["template", "put", "acme", "late", &path])
        .await
        .expect("put");
    assert!(put.contains("late@1") && put.contains("draft"), "{put}");
    assert!(put.contains("[es]") && put.contains("ucs2"), "{put}");
    // A draft is never sent, not even named with its version.
    let send = |id: &str, template: &str| {
        json!({"id": id, "tenant": "acme", "to": number(40), "template": template,
            "vars": {"name": "Ana", "amount": 42.1}})
        .to_string()
        .into_bytes()
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    xadd_raw(
        &mut conn,
        4,
        &[send("draft-1", "late"), send("draft-2", "late@1")],
    )
    .await;
    let ev = wait_events(&mut conn, "2 rejected", Duration::from_secs(10), |ev| {
        of(ev, "draft-1").next().is_some() && of(ev, "draft-2").next().is_some()
    })
    .await;
    for id in ["draft-1", "draft-2"] {
        let e = of(&ev, id).next().expect("decided");
        assert_eq!(
            (f(e, "status"), f(e, "reason")),
            ("rejected", "unknown_template"),
            "{e:?}"
        );
    }

    let preview = heraldctl(
        grpc,
        TOKEN,
        &[
            "template",
            "preview",
            "acme",
            "late",
            "--vars",
            r#"{"name":"Ana","amount":"1234.5"}"#,
            "--locale",
            "en",
            "--json",
        ],
    )
    .await
    .expect("preview");
    let p: Value = serde_json::from_str(&preview).expect("json");
    let text = p["renderings"][0]["text"].as_str().unwrap_or("");
    assert!(text.starts_with("Hi Ana, $1,234.50 is past due."), "{text}");
    assert!(
        text.len() > "Hi Ana, $1,234.50 is past due.".len(),
        "the opt-out line: {text}"
    );
    assert_eq!(p["renderings"][0]["encoding"], "gsm7");
    assert!(p["renderings"][0]["segments"].as_u64() >= Some(1));

    let publish = ctl(&["template", "publish", "acme", "late@1"])
        .await
        .expect("publish");
    assert!(publish.contains("published"), "{publish}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    xadd_raw(&mut conn, 4, &[send("pub-1", "late")]).await;
    let ev = wait_events(&mut conn, "sent", Duration::from_secs(10), |ev| {
        of(ev, "pub-1").any(|e| f(e, "status") == "sent")
    })
    .await;
    let e = of(&ev, "pub-1")
        .find(|e| f(e, "status") == "sent")
        .expect("sent");
    assert_eq!((f(e, "template"), f(e, "template_version")), ("late", "1"));

    let bad = TempFile::new(
        "bad.toml",
        "category = \"transactional\"\ntext.en = \"Hi {who}\"\n",
    );
    let err = heraldctl(
        grpc,
        TOKEN,
        &["template", "put", "acme", "late", &bad.toml_path()],
    )
    .await
    .expect_err("refused");
    assert!(
        err.contains("templates.acme.late[1]") && err.contains("`{who}`"),
        "{err}"
    );

    // Sequences from heraldctl.
    xadd_raw(
        &mut conn,
        4,
        &[enrol(
            "ctl-1",
            &number(41),
            "payment_reminder",
            "2027-03-14",
            reminder_vars(),
            json!({}),
        )],
    )
    .await;
    wait_events(&mut conn, "7 steps", Duration::from_secs(10), |ev| {
        (1..=7).all(|n| of(ev, &format!("ctl-1/{n}")).next().is_some())
    })
    .await;
    let c = ctl(&["sequence", "cancel", "acme", "ctl-1", "--detail", "paid"])
        .await
        .expect("cancel");
    assert!(c.contains("cancelled; 7"), "{c}");
    let g = ctl(&["sequence", "get", "acme", "ctl-1"])
        .await
        .expect("get");
    let g: Value = serde_json::from_str(&g).expect("json");
    assert_eq!(
        (g["state"].as_str(), g["detail"].as_str()),
        (Some("cancelled"), Some("paid"))
    );
    let audit = ctl(&["audit", "export", "--json"]).await.expect("audit");
    assert!(
        audit.contains("sequence.cancel")
            && audit.contains("template.put")
            && audit.contains("template.publish"),
        "{audit}"
    );
    let read = heraldctl(
        grpc,
        "not-a-token",
        &["sequence", "cancel", "acme", "ctl-1"],
    )
    .await;
    assert!(read.is_err());
    h.stop().await.expect("clean stop");
}

/// The due date moved: a re-anchor (HTTP, or a `{"reanchor": id}` queue
/// entry) gives every waiting step its new instant, with a new `deferred`
/// event; a cancelled sequence cannot be re-anchored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reanchor_moves_every_waiting_step_to_the_new_due_date() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, _grpc) = start_controlled(&redis, &mock, &extra()).await;
    let mut conn = redis.conn().await;
    let ny = "+12125550199";
    xadd_raw(
        &mut conn,
        4,
        &[
            enrol(
                "re-1",
                ny,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                json!({}),
            ),
            enrol(
                "re-2",
                ny,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                json!({}),
            ),
        ],
    )
    .await;
    wait_events(&mut conn, "14 steps", Duration::from_secs(10), |ev| {
        ev.iter().filter(|e| f(e, "status") == "deferred").count() >= 14
    })
    .await;
    let (status, r) = http(
        &h,
        "POST",
        "/v1/sequences/acme/re-1/anchor",
        r#"{"anchor":"2027-04-01"}"#,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["steps_moved"], json!([1, 2, 3, 4, 5, 6, 7]), "{r}");
    xadd_raw(
        &mut conn,
        4,
        &[
            json!({"reanchor": "re-2", "tenant": "acme", "anchor": "2027-02-01"})
                .to_string()
                .into_bytes(),
        ],
    )
    .await;
    let ev = wait_events(
        &mut conn,
        "14 more deferred",
        Duration::from_secs(10),
        |ev| ev.iter().filter(|e| f(e, "status") == "deferred").count() >= 28,
    )
    .await;
    // 2027-04-01 - 7 days = 2027-03-25, 10:00 EDT = 14:00Z; 2027-02-01 + 7
    // = 2027-02-08, 10:00 EST = 15:00Z.
    for (id, want) in [
        ("re-1/1", "2027-03-25T14:00:00Z"),
        ("re-1/7", "2027-04-08T14:00:00Z"),
        ("re-2/1", "2027-01-25T15:00:00Z"),
        ("re-2/7", "2027-02-08T15:00:00Z"),
    ] {
        let last = of(&ev, id).last().expect("events");
        assert_eq!(
            (f(last, "status"), f(last, "until")),
            ("deferred", at(want).to_string().as_str()),
            "{id}: {last:?}"
        );
        assert_eq!(f(last, "sequence"), "payment_reminder", "{last:?}");
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg("herald:delayed")
            .arg(format!("acme:{id}"))
            .query_async(&mut conn)
            .await
            .expect("zscore");
        assert_eq!(score.map(|s| s as i64), Some(at(want)), "{id}'s timer");
    }
    let (_, s) = http(&h, "GET", "/v1/sequences/acme/re-1", "").await;
    assert_eq!(s["anchor"], "2027-04-01");
    // Cancelled, then re-anchored: refused, and nothing moves.
    http(&h, "POST", "/v1/sequences/acme/re-1/cancel", "").await;
    let (status, _) = http(
        &h,
        "POST",
        "/v1/sequences/acme/re-1/anchor",
        r#"{"anchor":"2027-05-01"}"#,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = http(
        &h,
        "POST",
        "/v1/sequences/acme/re-2/anchor",
        r#"{"anchor":"soon"}"#,
    )
    .await;
    assert_eq!(status, 400);
    h.stop().await.expect("clean stop");
}

async fn signal(conn: &mut redis::aio::MultiplexedConnection, s: Value) {
    let _: String = redis::cmd("XADD")
        .arg("herald:signals")
        .arg("*")
        .arg("signal")
        .arg(s.to_string())
        .query_async(conn)
        .await
        .expect("xadd");
}

/// Upstream signals on `herald:signals`: a payment ends its debt's
/// sequences and no other; a bankruptcy stops every collections text to
/// the number (`suppressed` / `ceased`) while a transactional one still
/// goes, and ends its sequences; a tenant rule sends a template; a signal
/// that is not valid goes to the DLQ with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_cancel_by_debt_cease_collections_and_follow_tenant_rules() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, grpc) = start_controlled(&redis, &mock, &extra()).await;
    set_policy(
        grpc,
        r#"
[[templates.acme.late_notice]]
version = 1
category = "transactional"
vars = { name = "text" }
text.en = "Hi {name}, your last payment did not go through."

[signals.acme]
payment_failed = ["send:late_notice"]
"#,
    )
    .await;
    let mut conn = redis.conn().await;
    let (payer, debtor) = (number(50), number(51));
    let with_debt = |debt: &str| json!({"debt_id": debt});
    xadd_raw(
        &mut conn,
        4,
        &[
            enrol(
                "sig-a",
                &payer,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                with_debt("D-1"),
            ),
            enrol(
                "sig-b",
                &payer,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                with_debt("D-2"),
            ),
            enrol(
                "sig-c",
                &debtor,
                "payment_reminder",
                "2027-03-14",
                reminder_vars(),
                with_debt("D-3"),
            ),
        ],
    )
    .await;
    wait_events(&mut conn, "21 steps", Duration::from_secs(10), |ev| {
        ev.iter().filter(|e| f(e, "status") == "deferred").count() >= 21
    })
    .await;

    signal(&mut conn, json!({"id": "pay-1", "event": "payment_received", "tenant": "acme", "debt_id": "D-1", "to": payer})).await;
    signal(&mut conn, json!({"id": "bk-1", "event": "bankruptcy", "tenant": "acme", "debt_id": "D-3", "to": debtor})).await;
    signal(&mut conn, json!({"id": "pf-1", "event": "payment_failed", "tenant": "acme", "to": payer, "vars": {"name": "Ana"}})).await;
    signal(
        &mut conn,
        json!({"id": "bad/1", "event": "payment_received"}),
    )
    .await;
    let ev = wait_events(
        &mut conn,
        "14 cancelled and the notice",
        Duration::from_secs(10),
        |ev| {
            ev.iter().filter(|e| f(e, "status") == "cancelled").count() >= 14
                && of(ev, "pf-1-0").any(|e| f(e, "status") == "sent")
        },
    )
    .await;
    for id in ["sig-a", "sig-c"] {
        for n in 1..=7 {
            assert!(
                of(&ev, &format!("{id}/{n}")).any(|e| f(e, "status") == "cancelled"),
                "{id}/{n}"
            );
        }
    }
    assert!(
        of(&ev, "sig-b/1").all(|e| f(e, "status") == "deferred"),
        "another debt goes on"
    );
    assert_eq!(
        mock.recorded()
            .iter()
            .filter(|m| m.body.contains("did not go through"))
            .count(),
        1
    );

    // After the bankruptcy (every instance's snapshot follows within
    // 200 ms): collections texts to the debtor are suppressed, a
    // transactional one is not; another number is not affected.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = |id: &str, to: &str, category: &str| {
        json!({"id": id, "tenant": "acme", "to": to, "body": format!("{id} text"), "category": category})
            .to_string()
            .into_bytes()
    };
    xadd_raw(
        &mut conn,
        4,
        &[
            text("after-coll", &debtor, "collections"),
            text("after-tx", &debtor, "transactional"),
            text("other-coll", &payer, "collections"),
        ],
    )
    .await;
    let ev = wait_events(&mut conn, "3 decided", Duration::from_secs(10), |ev| {
        ["after-coll", "after-tx", "other-coll"]
            .iter()
            .all(|id| of(ev, id).next().is_some())
    })
    .await;
    let coll = of(&ev, "after-coll").next().expect("decided");
    assert_eq!(
        (f(coll, "status"), f(coll, "reason")),
        ("suppressed", "ceased"),
        "{coll:?}"
    );
    assert_eq!(
        f(of(&ev, "after-tx").next().expect("decided"), "status"),
        "sent"
    );
    assert_ne!(
        f(of(&ev, "other-coll").next().expect("decided"), "reason"),
        "ceased"
    );

    // The invalid signal is in the DLQ, with its reason.
    let dlq: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("herald:dlq")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    let reasons: Vec<String> = dlq
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("reason"))
        .collect();
    assert!(
        reasons.contains(&"invalid_signal".to_string()),
        "{reasons:?}"
    );
    let pending: Vec<Value> = redis::cmd("XPENDING")
        .arg("herald:signals")
        .arg("herald")
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async::<Vec<(String, String, i64, i64)>>(&mut conn)
        .await
        .expect("xpending")
        .into_iter()
        .map(|p| json!(p.0))
        .collect();
    assert!(pending.is_empty(), "every signal was acked: {pending:?}");
    h.stop().await.expect("clean stop");
}

/// An A/B experiment on a template: each recipient gets one variant, the
/// same every time; events carry it; replies, opt-outs and payments count
/// for the variant the person got; a running variant cannot be edited;
/// `promote` gives everyone the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_assigns_one_variant_per_person_counts_outcomes_and_promotes() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, grpc) = start_controlled(&redis, &mock, &extra()).await;
    let experiment = r#"
[[templates.acme.due_a]]
version = 1
category = "transactional"
vars = { name = "text" }
text.en = "A: {name}, your payment is due."

[[templates.acme.due_b]]
version = 1
category = "transactional"
vars = { name = "text" }
text.en = "B: {name}, a friendly reminder that your payment is due."

[experiments.acme.wording]
template = "due_a"
variants = [
  { name = "control", template = "due_a@1", weight = 50 },
  { name = "friendly", template = "due_b@1", weight = 50 },
]
"#;
    set_policy(grpc, experiment).await;
    let mut conn = redis.conn().await;
    let send = |id: String, i: usize| {
        json!({"id": id, "tenant": "acme", "to": number(200 + i), "template": "due_a", "vars": {"name": "Ana"}})
            .to_string()
            .into_bytes()
    };
    let mut msgs: Vec<Vec<u8>> = (0..40).map(|i| send(format!("ab-{i}"), i)).collect();
    msgs.extend((0..5).map(|i| send(format!("ab-again-{i}"), i)));
    xadd_raw(&mut conn, 4, &msgs).await;
    let ev = wait_events(&mut conn, "45 sent", Duration::from_secs(10), |ev| {
        ev.iter()
            .filter(|e| f(e, "status") == "sent" && f(e, "experiment") == "wording")
            .count()
            >= 45
    })
    .await;
    let variant_of = |id: &str| {
        of(&ev, id)
            .find(|e| f(e, "status") == "sent")
            .map(|e| (f(e, "variant").to_string(), f(e, "template").to_string()))
            .unwrap_or_default()
    };
    let mut by_variant: HashMap<String, Vec<usize>> = HashMap::new();
    for i in 0..40 {
        let (v, t) = variant_of(&format!("ab-{i}"));
        assert_eq!(t, if v == "friendly" { "due_b" } else { "due_a" }, "ab-{i}");
        by_variant.entry(v).or_default().push(i);
    }
    assert_eq!(
        by_variant.len(),
        2,
        "both variants are used: {by_variant:?}"
    );
    for i in 0..5 {
        assert_eq!(
            variant_of(&format!("ab-again-{i}")),
            variant_of(&format!("ab-{i}")),
            "the same person, the same variant"
        );
    }
    let bodies: Vec<String> = mock.recorded().iter().map(|m| m.body.clone()).collect();
    let friendly = by_variant["friendly"].len()
        + (0..5)
            .filter(|i| by_variant["friendly"].contains(i))
            .count();
    assert_eq!(
        bodies.iter().filter(|b| b.starts_with("B: ")).count(),
        friendly
    );

    // Outcomes, attributed to the variant each person got.
    let (c, fr) = (by_variant["control"][0], by_variant["friendly"][0]);
    let port = h.http.port();
    assert_eq!(stop_reply(port, &number(200 + c)).await, 200);
    signal(&mut conn, json!({"id": "paid-ab", "event": "payment_received", "tenant": "acme", "to": number(200 + fr)})).await;
    // A delivery receipt for one friendly message counts as delivered.
    let sid = of(&ev, &format!("ab-{fr}"))
        .find(|e| f(e, "status") == "sent")
        .map(|e| f(e, "provider_id").to_string())
        .expect("a provider id");
    let params: Vec<(String, String)> = [
        ("AccountSid", "ACmock0000000000000000000000000000"),
        ("MessageSid", sid.as_str()),
        ("MessageStatus", "delivered"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = twilio_signature(
        "mock-token",
        &format!("http://127.0.0.1:{port}/v1/webhooks/twilio/status"),
        &params,
    );
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let (status, _) = http_call(
        port,
        "POST",
        "/v1/webhooks/twilio/status",
        &[("X-Twilio-Signature", sig.as_str())],
        "application/x-www-form-urlencoded",
        &form,
    )
    .await;
    assert!(matches!(status, 200 | 204), "{status}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ev = events(&mut conn).await;
    let receipt = of(&ev, &format!("ab-{fr}"))
        .find(|e| f(e, "status") == "delivered")
        .expect("the receipt");
    assert_eq!(f(receipt, "variant"), "friendly", "{receipt:?}");
    let r = heraldctl(
        grpc,
        TOKEN,
        &["experiment", "results", "acme", "wording", "--json"],
    )
    .await
    .expect("results");
    let r: Value = serde_json::from_str(&r).expect("json");
    let row = |name: &str| {
        r["variants"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["variant"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (control, friendly) = (row("control"), row("friendly"));
    assert_eq!(
        control["people"].as_u64(),
        Some(by_variant["control"].len() as u64),
        "{r}"
    );
    assert_eq!(
        friendly["people"].as_u64(),
        Some(by_variant["friendly"].len() as u64),
        "{r}"
    );
    assert_eq!(
        (control["opted_out"].as_u64(), control["replied"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        (friendly["paid"].as_u64(), control["paid"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(
        (
            friendly["delivered"].as_u64(),
            control["delivered"].as_u64()
        ),
        (Some(1), Some(0)),
        "{r}"
    );
    let table = heraldctl(grpc, TOKEN, &["experiment", "results", "acme", "wording"])
        .await
        .expect("table");
    assert!(
        table.contains("friendly") && table.contains("DELIVERED") && table.contains("(running)"),
        "{table}"
    );
    assert!(friendly["p_replied"].is_number() || friendly["p_replied"].is_null());

    // A running variant is not edited.
    let doc = heraldctl(grpc, TOKEN, &["policy", "get"])
        .await
        .expect("get");
    let edited = doc.replacen("weight = 50", "weight = 70", 1);
    assert_ne!(edited, doc);
    let file = TempFile::new("policy.toml", &edited);
    let err = heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect_err("refused");
    assert!(
        err.contains("experiments.acme.wording") && err.contains("cannot be edited"),
        "{err}"
    );

    // Promote: everyone gets the winner.
    let out = heraldctl(
        grpc,
        TOKEN,
        &["experiment", "promote", "acme", "wording", "friendly"],
    )
    .await
    .expect("promote");
    assert!(out.contains("ended on `friendly`"), "{out}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // A control person who did not opt out.
    let other = by_variant["control"][1];
    xadd_raw(&mut conn, 4, &[send("ab-after".into(), other)]).await;
    let ev = wait_events(&mut conn, "sent", Duration::from_secs(10), |ev| {
        of(ev, "ab-after").any(|e| f(e, "status") == "sent")
    })
    .await;
    let after = of(&ev, "ab-after")
        .find(|e| f(e, "status") == "sent")
        .expect("sent");
    assert_eq!(
        (f(after, "variant"), f(after, "template")),
        ("friendly", "due_b")
    );
    h.stop().await.expect("clean stop");
}
