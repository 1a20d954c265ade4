//! Herald's promise under faults: never text a number that said STOP, never
//! lose or double a message — against a real redis-server (killed, flushed,
//! restarted without its data) and the Twilio-speaking mock.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(30);

/// Dispatch settings with a short `claim_idle`, for takeover tests.
const CLAIM_IDLE_2S: &str = r#"
[dispatch]
block_ms = 100
claim_idle_ms = 2000
claim_interval_ms = 200
delayed_poll_ms = 50
retry_base_ms = 50
retry_max_ms = 200
shutdown_grace_ms = 8000
"#;

async fn readyz(port: u16) -> (u16, String) {
    http_call(port, "GET", "/readyz", &[], "text/plain", "").await
}

/// Wait until `/readyz` answers `status`; its body then.
async fn wait_ready(port: u16, status: u16, what: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let (s, body) = readyz(port).await;
        if s == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /readyz stayed {s} ({body})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn by_body(mock: &herald_loadtest::mock::MockProvider) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for r in mock.recorded() {
        *n.entry(r.body).or_default() += 1;
    }
    n
}

/// A provider that answers after 2.5 × `claim_idle`, two instances: the
/// instance sending keeps its entries claimed, so the other never takes
/// them over, and each message reaches the provider exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_send_is_not_taken_over_by_another_instance() {
    let redis = RedisServer::start();
    let mock = mock(5_000, 0.0).await;
    // The provider's answer takes 5 s: its request timeout must be longer.
    let cfg = |port| {
        config_text(&redis, &mock.base_url(), port, CLAIM_IDLE_2S).replace(
            "from = \"+15005550006\"\n",
            "from = \"+15005550006\"\ntimeout_ms = 20000\n",
        )
    };
    let a = Herald::start(&cfg(free_port())).await;
    let b = Herald::start(&cfg(free_port())).await;
    let mut conn = redis.conn().await;
    let msgs: Vec<Vec<u8>> = (0..200)
        .map(|i| msg_json(&format!("slow{i}"), &number(i), &format!("slow {i}")))
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    wait_events(&mut conn, "200 sent", Duration::from_secs(60), |ev| {
        count_status(ev, "sent") >= 200
    })
    .await;
    // Past another claim_idle: a takeover would have shown by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ev = events(&mut conn).await;
    assert_eq!(count_status(&ev, "sent"), 200, "one sent per message");
    assert_eq!(
        ev.len(),
        200,
        "nothing but one decision each: {:?}",
        ev.last()
    );
    let sent = by_body(&mock);
    assert_eq!(sent.len(), 200);
    let twice: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    a.stop().await.expect("clean stop");
    b.stop().await.expect("clean stop");
}

/// An outcome batch whose transaction applied but whose reply was lost is
/// not written again when the writer retries: one `sent` event per
/// message, one text each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_batch_whose_reply_was_lost_is_not_written_twice() {
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(redis.port).await;
    let mock = mock(0, 0.0).await;
    let herald = Herald::start_env(
        &config_text(&redis, &mock.base_url(), free_port(), FAST_DISPATCH),
        vec![("HERALD_REDIS__URL".into(), proxy.url())],
    )
    .await;
    let mut conn = redis.conn().await;
    proxy.lose_next_exec_reply();
    let msgs: Vec<Vec<u8>> = (0..20)
        .map(|i| msg_json(&format!("lost{i}"), &number(i), &format!("lost {i}")))
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    wait_events(&mut conn, "20 sent", T, |ev| count_status(ev, "sent") >= 20).await;
    // Give a second write of the batch every chance to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ev = events(&mut conn).await;
    assert!(
        proxy.cut.load(std::sync::atomic::Ordering::Acquire) >= 1,
        "the fault happened"
    );
    assert_eq!(count_status(&ev, "sent"), 20, "{ev:?}");
    assert_eq!(ev.len(), 20, "one event per message: {ev:?}");
    assert_eq!(mock.recorded().len(), 20, "one text per message");
    assert_eq!(pending_total(&mut conn, 4).await, 0);
    herald.stop().await.expect("clean stop");
}

/// A send that panics ends its message — `failed` / `poison`, the entry in
/// the DLQ — and the daemon goes on sending the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_send_is_poison_and_the_daemon_goes_on() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let extra =
        format!("{FAST_DISPATCH}\n[providers.sb]\nkind = \"sandbox\"\npanic_on = \"BOOM\"\n");
    let herald = Herald::start_env(
        &config_text(&redis, &mock.base_url(), free_port(), &extra),
        vec![("HERALD_ROUTES__DEFAULT".into(), "[\"sb\"]".into())],
    )
    .await;
    let mut conn = redis.conn().await;
    let mut msgs = vec![msg_json("p0", &number(0), "BOOM goes the adapter")];
    msgs.extend((1..10).map(|i| msg_json(&format!("p{i}"), &number(i), "fine")));
    xadd_raw(&mut conn, 4, &msgs).await;
    let ev = wait_events(&mut conn, "9 sent and the poison", T, |ev| {
        count_status(ev, "sent") == 9 && count_status(ev, "failed") == 1
    })
    .await;
    let p = ev.iter().find(|e| e["id"] == "p0").expect("p0's event");
    assert_eq!(p["status"], "failed");
    assert_eq!(p["reason"], "poison");
    assert!(p["detail"].contains("panicked"), "{p:?}");
    let dlq: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("herald:dlq")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("dlq");
    let entry = dlq.ids.first().expect("the poison entry is in the DLQ");
    assert_eq!(entry.get::<String>("reason").as_deref(), Some("poison"));
    assert!(
        entry
            .get::<String>("msg")
            .is_some_and(|m| m.contains("BOOM goes the adapter")),
        "the entry's bytes are kept"
    );
    // The daemon goes on.
    xadd_raw(
        &mut conn,
        4,
        &[msg_json("after", &number(20), "after the panic")],
    )
    .await;
    wait_events(&mut conn, "a send after the panic", T, |ev| {
        ev.iter()
            .any(|e| e["id"] == "after" && e["status"] == "sent")
    })
    .await;
    assert_eq!(pending_total(&mut conn, 4).await, 0);
    herald.stop().await.expect("clean stop");
}

/// An entry Redis delivered more than `dispatch.max_deliveries` times (its
/// handlers kept dying) is `failed` / `poison` and never sent; an entry
/// deleted from its stream while pending is recorded in the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_delivered_too_often_or_deleted_while_pending_end_in_the_dlq() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let mut conn = redis.conn().await;
    create_groups(&mut conn, 4).await;
    let poison = xadd_one(&mut conn, 0, msg_json("often", &number(1), "again")).await;
    let gone = xadd_one(&mut conn, 1, msg_json("gone", &number(2), "deleted")).await;
    read_as(&mut conn, "dead-1", 0).await;
    read_as(&mut conn, "dead-1", 1).await;
    // Eleven more deliveries, as eleven handlers that each died would make.
    for i in 0..11 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg("herald:q:{0}")
            .arg("herald")
            .arg(format!("dead-{}", i + 2))
            .arg(0)
            .arg(&poison)
            .query_async(&mut conn)
            .await
            .expect("xclaim");
    }
    let _: i64 = redis::cmd("XDEL")
        .arg("herald:q:{1}")
        .arg(&gone)
        .query_async(&mut conn)
        .await
        .expect("xdel");
    let herald = Herald::start(&config_text(
        &redis,
        &mock.base_url(),
        free_port(),
        FAST_DISPATCH,
    ))
    .await;
    let ev = wait_events(&mut conn, "the poison entry", T, |ev| {
        ev.iter().any(|e| e["id"] == "often")
    })
    .await;
    let e = ev.iter().find(|e| e["id"] == "often").expect("event");
    assert_eq!(e["status"], "failed");
    assert_eq!(e["reason"], "poison");
    // One read, eleven claims, and the takeover itself.
    assert!(e["detail"].contains("delivered 13 times"), "{e:?}");
    let deadline = Instant::now() + T;
    let reasons = loop {
        let dlq: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg("herald:dlq")
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .expect("dlq");
        let reasons: Vec<(String, String)> = dlq
            .ids
            .iter()
            .map(|e| {
                (
                    e.get::<String>("reason").unwrap_or_default(),
                    e.get::<String>("entry").unwrap_or_default(),
                )
            })
            .collect();
        if reasons.len() >= 2 || Instant::now() > deadline {
            break reasons;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        reasons.contains(&("poison".into(), poison.clone())),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("deleted_while_pending".into(), gone.clone())),
        "{reasons:?}"
    );
    assert!(mock.recorded().is_empty(), "nothing sent");
    assert_eq!(pending_total(&mut conn, 4).await, 0);
    herald.stop().await.expect("clean stop");
}

/// On a Redis without an append-only file Herald sends nothing and says
/// why; made durable, it sends without a restart; made volatile again, it
/// stops again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volatile_redis_is_refused_until_it_is_made_durable() {
    let redis = RedisServer::start_with(Persistence::Volatile);
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let herald = Herald::start(&config_text(&redis, &mock.base_url(), port, FAST_DISPATCH)).await;
    let body = wait_ready(port, 503, "volatile").await;
    assert!(body.contains("append-only file is off"), "{body}");
    let mut conn = redis.conn().await;
    xadd_raw(&mut conn, 4, &[msg_json("v1", &number(1), "wait")]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        mock.recorded().is_empty(),
        "nothing sent on a volatile Redis"
    );
    assert!(events(&mut conn).await.is_empty());

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .expect("config set");
    wait_ready(port, 200, "made durable").await;
    wait_events(&mut conn, "v1 sent", T, |ev| count_status(ev, "sent") == 1).await;

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("no")
        .query_async(&mut conn)
        .await
        .expect("config set");
    let body = wait_ready(port, 503, "volatile again").await;
    assert!(body.contains("not durable"), "{body}");
    herald.stop().await.expect("clean stop");
}

/// A STOP, then Redis loses everything (`FLUSHALL`, or a restart without
/// its data under load): no text goes to the number that said STOP, nor
/// to anyone, `/readyz` says why, and a new instance refuses too — until
/// an operator confirms the ledger, writing the revocations back from an
/// instance's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_redis_stops_sending_until_an_operator_confirms_the_ledger() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let control_port = free_port();
    let token = "trust-admin-token-0123456789";
    let herald = Herald::start_env(
        &config_text(&redis, &mock.base_url(), port, FAST_DISPATCH),
        vec![
            (
                "HERALD_CONTROL__LISTEN".into(),
                format!("127.0.0.1:{control_port}"),
            ),
            ("HERALD_CONTROL__TOKEN".into(), format!("\"{token}\"")),
        ],
    )
    .await;
    wait_ready(port, 200, "start").await;
    let stopped = number(7);
    let mut admin = client(control_port, token).await;
    admin
        .set_consent(herald_control::v1::SetConsentRequest {
            tenant: "acme".into(),
            number: stopped.clone(),
            state: "revoked".into(),
            evidence: "STOP, message SM-1".into(),
            by: "test".into(),
            ..Default::default()
        })
        .await
        .expect("revoke");
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("flushall");
    let body = wait_ready(port, 503, "after FLUSHALL").await;
    assert!(body.contains("consent ledger not intact"), "{body}");
    assert!(body.contains("wiped"), "{body}");
    // Messages queued now, the STOPped number among them, wait.
    create_groups(&mut conn, 4).await;
    let msgs = vec![
        msg_json("w-stop", &stopped, "to the number that said STOP"),
        msg_json("w-ok", &number(8), "to someone else"),
    ];
    xadd_raw(&mut conn, 4, &msgs).await;
    // A new instance joining now refuses too: the mark is in Redis.
    let port2 = free_port();
    let second = Herald::start(&config_text(&redis, &mock.base_url(), port2, FAST_DISPATCH)).await;
    let body2 = wait_ready(port2, 503, "a new instance").await;
    assert!(body2.contains("consent ledger not intact"), "{body2}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        mock.recorded().is_empty(),
        "nothing sent while suspect: {:?}",
        mock.recorded()
    );

    // The operator confirms, restoring the revocations from memory.
    let confirmed = admin
        .confirm_ledger(herald_control::v1::ConfirmLedgerRequest {
            restore: true,
            by: "ops@acme".into(),
            reason: "incident 7: Redis flushed by mistake".into(),
        })
        .await
        .expect("confirm")
        .into_inner();
    assert!(confirmed.restored >= 1);
    wait_ready(port, 200, "confirmed").await;
    wait_ready(port2, 200, "confirmed, the new instance").await;
    let ev = wait_events(&mut conn, "both decided", T, |ev| ev.len() >= 2).await;
    let stop_ev = ev.iter().find(|e| e["id"] == "w-stop").expect("w-stop");
    assert_eq!(stop_ev["status"], "suppressed");
    assert_eq!(stop_ev["reason"], "opted_out");
    let ok = ev.iter().find(|e| e["id"] == "w-ok").expect("w-ok");
    assert_eq!(ok["status"], "sent");
    assert!(
        mock.recorded().iter().all(|r| r.to != stopped),
        "never texted the number that said STOP"
    );
    second.stop().await.expect("clean stop");
    herald.stop().await.expect("clean stop");
}

/// Redis restarted without persistence and without its data, under load:
/// sending stops, no text reaches a number that had said STOP, and
/// `/readyz` names both faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_without_persistence_under_load_stops_sending() {
    let mut redis = RedisServer::start();
    let mock = mock(20, 0.0).await;
    let port = free_port();
    let extra = format!("{FAST_DISPATCH}\n[tenants.acme]\nsenders = [\"+15005550006\"]\n");
    let herald = Herald::start(&config_text(&redis, &mock.base_url(), port, &extra)).await;
    wait_ready(port, 200, "start").await;
    let mut conn = redis.conn().await;
    let stopped = number(5);
    // The STOP arrives as a reply.
    let sig_url = format!("http://127.0.0.1:{port}/v1/webhooks/twilio/inbound");
    let params = vec![
        (
            "AccountSid".to_string(),
            "ACmock0000000000000000000000000000".to_string(),
        ),
        ("From".to_string(), stopped.clone()),
        ("To".to_string(), "+15005550006".to_string()),
        ("Body".to_string(), "STOP".to_string()),
        ("MessageSid".to_string(), "SMstop1".to_string()),
    ];
    let sig = herald_engine::inbound::signature::twilio_signature("mock-token", &sig_url, &params);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let (status, _) = http_call(
        port,
        "POST",
        "/v1/webhooks/twilio/inbound",
        &[("X-Twilio-Signature", &sig)],
        "application/x-www-form-urlencoded",
        &form,
    )
    .await;
    assert_eq!(status, 200);
    let msgs: Vec<Vec<u8>> = (0..300)
        .map(|i| msg_json(&format!("l{i}"), &number(100 + i), "load"))
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    wait_events(&mut conn, "some sent", T, |ev| {
        count_status(ev, "sent") >= 10
    })
    .await;

    redis.restart_empty(Persistence::Volatile);
    let body = wait_ready(port, 503, "after the restart").await;
    let mut conn = redis.conn().await;
    // A message to the number that said STOP, queued on the emptied Redis.
    create_groups(&mut conn, 4).await;
    xadd_raw(
        &mut conn,
        4,
        &[msg_json("after", &stopped, "after the wipe")],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let body = format!("{body} / {}", readyz(port).await.1);
    assert!(body.contains("not durable"), "{body}");
    assert!(body.contains("consent ledger not intact"), "{body}");
    assert!(
        mock.recorded().iter().all(|r| r.to != stopped),
        "never texted the number that said STOP"
    );
    herald.stop().await.expect("clean stop");
}

/// Post a signed Twilio inbound reply to Herald on `port`.
async fn reply(port: u16, from: &str, to: &str, body: &str, sid: &str) -> (u16, String) {
    let url = format!("http://127.0.0.1:{port}/v1/webhooks/twilio/inbound");
    let params: Vec<(String, String)> = [
        ("AccountSid", "ACmock0000000000000000000000000000"),
        ("MessageSid", sid),
        ("From", from),
        ("To", to),
        ("Body", body),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = herald_engine::inbound::signature::twilio_signature("mock-token", &url, &params);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    http_call(
        port,
        "POST",
        "/v1/webhooks/twilio/inbound",
        &[("X-Twilio-Signature", &sig)],
        "application/x-www-form-urlencoded",
        &form,
    )
    .await
}

async fn consent_state(port: u16, tenant: &str, number: &str) -> String {
    let (_, body) = http_call(
        port,
        "GET",
        &format!("/v1/consent/{tenant}/{}", number.replace('+', "%2B")),
        &[("Authorization", "Bearer trust-admin-token-0123456789")],
        "application/json",
        "",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["consent"]["collections"]["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn tenant_msg(id: &str, tenant: &str, to: &str, from: Option<&str>) -> Vec<u8> {
    let mut m = serde_json::json!({"id": id, "tenant": tenant, "to": to, "body": id});
    if let Some(f) = from {
        m["from"] = f.into();
    }
    m.to_string().into_bytes()
}

/// A tenant sends only from its own senders, and replies find the tenant
/// by the number they were sent to; a reply to a number no tenant owns
/// reaches every tenant that texted the person from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_belong_to_one_tenant_and_replies_reach_it() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    // The provider's default sender +15005550006 belongs to no tenant;
    // the tenants' own numbers are not throttled here either.
    let text = config_text(&redis, &mock.base_url(), port, FAST_DISPATCH).replace(
        "[throttle.sender_limits]\n",
        "[throttle.sender_limits]\n\"+15005550010\" = { segments = 0, per = \"second\" }\n\"+15005550011\" = { segments = 0, per = \"second\" }\n",
    ) + "\n[tenants.acme]\nsenders = [\"+15005550010\"]\n[tenants.globex]\nsenders = [\"+15005550011\"]\n[tenants.initech]\n";
    let herald = Herald::start_env(
        &text,
        vec![(
            "HERALD_CONTROL__TOKEN".into(),
            "\"trust-admin-token-0123456789\"".into(),
        )],
    )
    .await;
    let mut conn = redis.conn().await;
    let (owned, texted, other) = (number(1), number(2), number(3));
    let msgs = vec![
        // globex may not send as acme; acme may from its own number.
        tenant_msg("g-as-acme", "globex", &owned, Some("+15005550010")),
        tenant_msg("a-own", "acme", &owned, Some("+15005550010")),
        // initech declared no senders: only a provider default is allowed.
        tenant_msg("i-own", "initech", &owned, Some("+15005550011")),
        // Both acme and globex text `texted` from the unowned default.
        tenant_msg("a-default", "acme", &texted, None),
        tenant_msg("g-default", "globex", &texted, None),
        tenant_msg("i-other", "initech", &other, None),
    ];
    xadd_raw(&mut conn, 4, &msgs).await;
    let ev = wait_events(&mut conn, "6 decisions", T, |ev| ev.len() >= 6).await;
    let status = |id: &str| {
        ev.iter().find(|e| e["id"] == id).map(|e| {
            (
                e["status"].clone(),
                e.get("reason").cloned().unwrap_or_default(),
            )
        })
    };
    assert_eq!(
        status("g-as-acme"),
        Some(("rejected".into(), "unknown_sender".into()))
    );
    assert_eq!(
        status("i-own"),
        Some(("rejected".into(), "unknown_sender".into()))
    );
    assert_eq!(status("a-own"), Some(("sent".into(), String::new())));
    assert_eq!(status("a-default"), Some(("sent".into(), String::new())));
    assert!(
        mock.recorded().iter().all(|r| r.body != "g-as-acme"),
        "nothing sent from another tenant's number"
    );

    // A STOP to acme's number stops acme, not globex.
    let (s, _) = reply(port, &owned, "+15005550010", "STOP", "SMa1").await;
    assert_eq!(s, 200);
    assert_eq!(consent_state(port, "acme", &owned).await, "revoked");
    assert_eq!(consent_state(port, "globex", &owned).await, "unknown");

    // A STOP to the unowned default stops everyone who texted from it.
    let (s, _) = reply(port, &texted, "+15005550006", "STOP", "SMa2").await;
    assert_eq!(s, 200);
    assert_eq!(consent_state(port, "acme", &texted).await, "revoked");
    assert_eq!(consent_state(port, "globex", &texted).await, "revoked");
    assert_eq!(consent_state(port, "initech", &texted).await, "unknown");
    herald.stop().await.expect("clean stop");
}

/// Without `from`, a message goes out from the provider's default sender:
/// never when another tenant owns that number, or that tenant would get
/// this one's replies, a STOP among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_sender_owned_by_another_tenant_is_refused() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    // acme owns the provider's default sender +15005550006.
    let text = config_text(&redis, &mock.base_url(), port, FAST_DISPATCH)
        + "\n[tenants.acme]\nsenders = [\"+15005550006\"]\n[tenants.globex]\n";
    let herald = Herald::start(&text).await;
    let mut conn = redis.conn().await;
    let msgs = vec![
        tenant_msg("a-default", "acme", &number(1), None),
        tenant_msg("g-default", "globex", &number(2), None),
    ];
    xadd_raw(&mut conn, 4, &msgs).await;
    let ev = wait_events(&mut conn, "2 decisions", T, |ev| ev.len() >= 2).await;
    let status = |id: &str| {
        ev.iter().find(|e| e["id"] == id).map(|e| {
            (
                e["status"].clone(),
                e.get("reason").cloned().unwrap_or_default(),
            )
        })
    };
    assert_eq!(status("a-default"), Some(("sent".into(), String::new())));
    assert_eq!(
        status("g-default"),
        Some(("rejected".into(), "unknown_sender".into()))
    );
    assert!(mock.recorded().iter().all(|r| r.body != "g-default"));
    herald.stop().await.expect("clean stop");
}

/// A replayed signed webhook changes nothing: a START posted again after a
/// later STOP leaves the number revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_reply_changes_nothing() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let herald = Herald::start_env(
        &(config_text(&redis, &mock.base_url(), port, FAST_DISPATCH)
            + "\n[tenants.acme]\nsenders = [\"+15005550006\"]\n"),
        vec![(
            "HERALD_CONTROL__TOKEN".into(),
            "\"trust-admin-token-0123456789\"".into(),
        )],
    )
    .await;
    let who = number(4);
    let to = "+15005550006";
    reply(port, &who, to, "STOP", "SMr1").await;
    assert_eq!(consent_state(port, "acme", &who).await, "revoked");
    let (_, twiml) = reply(port, &who, to, "START", "SMr2").await;
    assert!(
        twiml.contains("<Message>"),
        "the START is confirmed: {twiml}"
    );
    assert_eq!(consent_state(port, "acme", &who).await, "granted");
    reply(port, &who, to, "STOP", "SMr3").await;
    assert_eq!(consent_state(port, "acme", &who).await, "revoked");
    // The START again, byte for byte: signed, but seen.
    let (s, twiml) = reply(port, &who, to, "START", "SMr2").await;
    assert_eq!(s, 200);
    assert!(
        !twiml.contains("<Message>"),
        "no confirmation for a replay: {twiml}"
    );
    assert_eq!(consent_state(port, "acme", &who).await, "revoked");
    let mut conn = redis.conn().await;
    let audit: u64 = redis::cmd("XLEN")
        .arg("herald:consent:audit")
        .query_async(&mut conn)
        .await
        .expect("xlen");
    assert_eq!(audit, 3, "the replay wrote no audit entry");
    herald.stop().await.expect("clean stop");
}

/// Receipts are on by default and match whichever provider sent: with a
/// dead first provider and a good second one, the messages fail over and
/// their receipts come back as `delivered` / `undelivered`, not orphans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_of_messages_sent_through_a_failover_provider_are_matched() {
    let redis = RedisServer::start();
    let good = herald_loadtest::mock::MockProvider::start(
        ([127, 0, 0, 1], 0).into(),
        herald_loadtest::mock::MockSettings {
            status_callbacks: true,
            callback_delay: Duration::from_millis(20),
            record: true,
            ..Default::default()
        },
    )
    .await
    .expect("mock");
    // Nothing listens there: every send to `twilio` is refused.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let extra = format!(
        r#"{FAST_DISPATCH}failover_after = 1
[providers.good]
kind = "twilio"
base_url = "{}"
account_sid = "ACmock0000000000000000000000000000"
auth_token = "mock-token"
from = "+15005550006"
[breaker]
consecutive_failures = 3
open_ms = 600000
"#,
        good.base_url()
    );
    let port = free_port();
    let herald = Herald::start_env(
        &config_text(&redis, &dead, port, &extra),
        vec![(
            "HERALD_ROUTES__DEFAULT".into(),
            r#"["twilio", "good"]"#.into(),
        )],
    )
    .await;
    let mut conn = redis.conn().await;
    let msgs: Vec<Vec<u8>> = (0..400)
        .map(|i| msg_json(&format!("fo{i}"), &number(i), "hi"))
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    let ev = wait_events(&mut conn, "400 sent", Duration::from_secs(60), |ev| {
        count_status(ev, "sent") >= 400
    })
    .await;
    assert!(
        ev.iter()
            .filter(|e| e["status"] == "sent")
            .all(|e| e["provider"] == "good")
    );
    let ev = wait_events(&mut conn, "receipts", Duration::from_secs(60), |ev| {
        count_status(ev, "delivered") + count_status(ev, "undelivered") >= 380
    })
    .await;
    let receipts = count_status(&ev, "delivered") + count_status(&ev, "undelivered");
    assert!(
        receipts * 100 >= 400 * 95,
        "{receipts} of 400 receipts matched"
    );
    let r = ev
        .iter()
        .find(|e| e["status"] == "delivered")
        .expect("a receipt");
    assert_eq!(
        r["provider"], "good",
        "the receipt names the provider that sent"
    );
    herald.stop().await.expect("clean stop");
}
