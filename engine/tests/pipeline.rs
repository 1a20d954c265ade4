//! End-to-end behaviour of the dispatch pipeline against a real Redis and the
//! Twilio-speaking mock provider.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_messages_are_sent_once_with_a_sent_event_each() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let herald = Herald::start(&config_text(
        &redis,
        &mock.base_url(),
        free_port(),
        FAST_DISPATCH,
    ))
    .await;
    let mut conn = redis.conn().await;

    let mut msgs: Vec<Vec<u8>> = (0..50)
        .map(|i| msg_json(&format!("m{i}"), &number(i), &format!("hello {i}")))
        .collect();
    // meta is echoed unchanged, unknown fields ignored.
    msgs.push(
        json!({"id": "meta1", "tenant": "acme", "to": number(99), "body": "with meta",
               "meta": {"loan": "L-1", "n": [1, 2]}, "future_field": true})
        .to_string()
        .into_bytes(),
    );
    xadd_raw(&mut conn, 4, &msgs).await;

    let ev = wait_events(&mut conn, "51 sent", T, |ev| count_status(ev, "sent") == 51).await;
    assert_eq!(ev.len(), 51, "exactly one decision per message: {ev:?}");
    let recorded = mock.recorded();
    assert_eq!(recorded.len(), 51);
    let m7 = recorded
        .iter()
        .find(|r| r.body == "hello 7")
        .expect("m7 reached the provider");
    assert_eq!(m7.to, number(7));
    assert_eq!(m7.from.as_deref(), Some("+15005550006"));

    let e = ev.iter().find(|e| e["id"] == "meta1").expect("meta1 event");
    assert_eq!(e["tenant"], "acme");
    assert_eq!(e["provider"], "twilio");
    assert_eq!(e["attempt"], "1");
    assert!(e["provider_id"].starts_with("SM"), "{e:?}");
    assert!(e["ts"].parse::<i64>().is_ok());
    assert_eq!(e["meta"], r#"{"loan":"L-1","n":[1,2]}"#);

    // Every entry is acknowledged and deleted.
    assert_eq!(pending_total(&mut conn, 4).await, 0);
    let len: u64 = redis::cmd("XLEN")
        .arg("herald:q:{0}")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 0);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_with_a_reason_and_kept_in_the_dlq() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let herald = Herald::start(&config_text(
        &redis,
        &mock.base_url(),
        free_port(),
        FAST_DISPATCH,
    ))
    .await;
    let mut conn = redis.conn().await;

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "invalid_json"),
        (b"{\"id\":\"u1\",\"to\":\"\xff\"}".to_vec(), "invalid_utf8"),
        (json!({"to": number(1), "body": "no id"}).to_string().into_bytes(), "missing_field"),
        (json!({"id": "n1", "to": "+1555", "body": "x"}).to_string().into_bytes(), "invalid_number"),
        (json!({"id": "n2", "to": "4155550123", "body": "x"}).to_string().into_bytes(), "invalid_number"),
        (json!({"id": "long", "to": number(2), "body": "a".repeat(1601)}).to_string().into_bytes(), "body_too_long"),
        (
            json!({"id": "huge", "to": number(3), "body": "x", "meta": {"pad": "p".repeat(100 * 1024)}})
                .to_string()
                .into_bytes(),
            "entry_too_large",
        ),
        (json!({"id": "types", "to": number(4), "body": 42}).to_string().into_bytes(), "invalid_field"),
        (json!({"id": ["x"], "to": number(5), "body": "x"}).to_string().into_bytes(), "invalid_field"),
        // A template is looked up at the send decision (policy.rs tests
        // `unknown_template`); a malformed reference is refused here.
        (json!({"id": "tpl", "to": number(6), "template": "nope@x"}).to_string().into_bytes(), "invalid_field"),
    ];
    let raw: Vec<Vec<u8>> = cases.iter().map(|(m, _)| m.clone()).collect();
    xadd_raw(&mut conn, 4, &raw).await;
    // An entry without the `msg` field at all.
    let _: String = redis::cmd("XADD")
        .arg("herald:q:{1}")
        .arg("*")
        .arg("payload")
        .arg("{}")
        .query_async(&mut conn)
        .await
        .unwrap();

    let n = cases.len() + 1;
    let ev = wait_events(&mut conn, "all rejected", T, |ev| {
        count_status(ev, "rejected") == n
    })
    .await;
    let mut reasons: Vec<&str> = ev.iter().map(|e| e["reason"].as_str()).collect();
    reasons.sort();
    let mut want: Vec<&str> = cases.iter().map(|(_, r)| *r).collect();
    want.push("missing_field");
    want.sort();
    assert_eq!(reasons, want);
    for e in &ev {
        assert!(!e["detail"].is_empty(), "{e:?}");
        assert!(
            e.contains_key("entry"),
            "rejections name the stream entry: {e:?}"
        );
    }
    assert_eq!(
        ev.iter().find(|e| e["reason"] == "body_too_long").unwrap()["id"],
        "long"
    );

    // Nothing reached the provider; every rejected entry is in the DLQ whole.
    assert_eq!(mock.stats().requests, 0);
    let dlq: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("herald:dlq")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dlq.ids.len(), n);
    let first: Vec<u8> = dlq
        .ids
        .iter()
        .find_map(|e| {
            let reason: String = e.get("reason")?;
            (reason == "invalid_json")
                .then(|| e.get::<Vec<u8>>("msg"))
                .flatten()
        })
        .expect("invalid_json entry in dlq");
    assert_eq!(first, b"not json at all");
    assert_eq!(pending_total(&mut conn, 4).await, 0);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_tenant_and_id_is_a_duplicate_and_not_sent_again() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let herald = Herald::start(&config_text(
        &redis,
        &mock.base_url(),
        free_port(),
        FAST_DISPATCH,
    ))
    .await;
    let mut conn = redis.conn().await;

    xadd_raw(&mut conn, 4, &[msg_json("dup", &number(1), "first")]).await;
    wait_events(&mut conn, "first sent", T, |ev| {
        count_status(ev, "sent") == 1
    })
    .await;
    // Same id, other tenant: a different message.
    let other = json!({"id": "dup", "tenant": "globex", "to": number(1), "body": "other tenant"});
    xadd_raw(
        &mut conn,
        4,
        &[
            msg_json("dup", &number(1), "second"),
            other.to_string().into_bytes(),
        ],
    )
    .await;
    let ev = wait_events(&mut conn, "duplicate", T, |ev| {
        count_status(ev, "duplicate") == 1 && count_status(ev, "sent") == 2
    })
    .await;
    let d = ev.iter().find(|e| e["status"] == "duplicate").unwrap();
    assert_eq!((d["id"].as_str(), d["tenant"].as_str()), ("dup", "acme"));
    let bodies: Vec<String> = mock.recorded().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies.len(), 2);
    assert!(!bodies.contains(&"second".to_string()));
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_at_defers_and_expires_at_expires() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let herald = Herald::start(&config_text(
        &redis,
        &mock.base_url(),
        free_port(),
        FAST_DISPATCH,
    ))
    .await;
    let mut conn = redis.conn().await;

    let now = jiff::Timestamp::now();
    let later = now + jiff::SignedDuration::from_millis(1500);
    let past = now - jiff::SignedDuration::from_secs(60);
    let msgs = [
        json!({"id": "later", "tenant": "acme", "to": number(1), "body": "later", "send_at": later.to_string()}),
        json!({"id": "stale", "tenant": "acme", "to": number(2), "body": "stale", "expires_at": past.to_string()}),
        json!({"id": "never", "tenant": "acme", "to": number(3), "body": "never",
               "send_at": later.to_string(), "expires_at": (now + jiff::SignedDuration::from_millis(500)).to_string()}),
    ];
    xadd_raw(
        &mut conn,
        4,
        &msgs
            .iter()
            .map(|m| m.to_string().into_bytes())
            .collect::<Vec<_>>(),
    )
    .await;

    let ev = wait_events(&mut conn, "deferred then sent", T, |ev| {
        count_status(ev, "sent") == 1
    })
    .await;
    let by_id = |id: &str| {
        ev.iter()
            .filter(|e| e["id"] == id)
            .map(|e| e["status"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(by_id("later"), vec!["deferred", "sent"]);
    assert_eq!(by_id("stale"), vec!["expired"]);
    assert_eq!(by_id("never"), vec!["expired"]);
    let deferred = ev.iter().find(|e| e["status"] == "deferred").unwrap();
    assert_eq!(deferred["reason"], "send_at");
    assert_eq!(
        deferred["until"].parse::<i64>().unwrap(),
        later.as_millisecond()
    );
    let sent_at: i64 = ev.iter().find(|e| e["status"] == "sent").unwrap()["ts"]
        .parse()
        .unwrap();
    assert!(sent_at >= later.as_millisecond(), "sent before send_at");
    assert_eq!(mock.recorded().len(), 1);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_provider_errors_retry_then_fail() {
    let redis = RedisServer::start();
    let mock = mock(0, 1.0).await; // every request fails (429 or 500)
    let extra = format!("{FAST_DISPATCH}max_attempts = 3\n");
    let herald = Herald::start(&config_text(&redis, &mock.base_url(), free_port(), &extra)).await;
    let mut conn = redis.conn().await;
    xadd_raw(&mut conn, 4, &[msg_json("flaky", &number(1), "x")]).await;
    let ev = wait_events(&mut conn, "failed", T, |ev| count_status(ev, "failed") == 1).await;
    let statuses: Vec<(&str, &str)> = ev
        .iter()
        .map(|e| (e["status"].as_str(), e["attempt"].as_str()))
        .collect();
    assert_eq!(
        statuses,
        vec![("retrying", "1"), ("retrying", "2"), ("failed", "3")]
    );
    assert_eq!(ev[2]["reason"], "attempts_exhausted");
    assert!(ev[0].contains_key("until"));
    assert_eq!(mock.stats().requests, 3);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_provider_errors_fail_without_retry() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let herald = Herald::start(&config_text(
        &redis,
        &mock.base_url(),
        free_port(),
        FAST_DISPATCH,
    ))
    .await;
    let mut conn = redis.conn().await;
    // The mock answers Twilio's 21610 (carrier opt-out) for this number.
    xadd_raw(&mut conn, 4, &[msg_json("optout", "+15005550004", "x")]).await;
    let ev = wait_events(&mut conn, "failed", T, |ev| count_status(ev, "failed") == 1).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["reason"], "carrier_opt_out");
    assert_eq!(mock.stats().requests, 1);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_sends_never_exceed_the_bound() {
    let redis = RedisServer::start();
    let mock = mock(200, 0.0).await;
    let extra = format!("{FAST_DISPATCH}max_in_flight = 8\nbatch_size = 4\n");
    let herald = Herald::start(&config_text(&redis, &mock.base_url(), free_port(), &extra)).await;
    let mut conn = redis.conn().await;
    let msgs: Vec<Vec<u8>> = (0..60)
        .map(|i| msg_json(&format!("b{i}"), &number(i), "x"))
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    wait_events(&mut conn, "60 sent", Duration::from_secs(30), |ev| {
        count_status(ev, "sent") == 60
    })
    .await;
    let stats = mock.stats();
    assert!(
        stats.max_in_flight <= 8,
        "max in flight {} over the bound 8",
        stats.max_in_flight
    );
    assert!(
        stats.max_in_flight >= 2,
        "sends should overlap: {}",
        stats.max_in_flight
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_max_concurrency_bounds_one_account() {
    let redis = RedisServer::start();
    let mock = mock(100, 0.0).await;
    let text = config_text(&redis, &mock.base_url(), free_port(), FAST_DISPATCH).replace(
        "from = \"+15005550006\"",
        "from = \"+15005550006\"\nmax_concurrency = 3",
    );
    let herald = Herald::start(&text).await;
    let mut conn = redis.conn().await;
    let msgs: Vec<Vec<u8>> = (0..30)
        .map(|i| msg_json(&format!("c{i}"), &number(i), "x"))
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    wait_events(&mut conn, "30 sent", Duration::from_secs(30), |ev| {
        count_status(ev, "sent") == 30
    })
    .await;
    assert!(mock.stats().max_in_flight <= 3, "{:?}", mock.stats());
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_a_dead_consumer_are_claimed_and_finished() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let mut conn = redis.conn().await;
    create_groups(&mut conn, 4).await;
    let msgs: Vec<Vec<u8>> = (0..12)
        .map(|i| msg_json(&format!("d{i}"), &number(i), "x"))
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    // A consumer reads everything and dies without acknowledging.
    for p in 0..4 {
        read_as(&mut conn, "dead-consumer", p).await;
    }
    assert_eq!(pending_total(&mut conn, 4).await, 12);
    let herald = Herald::start(&config_text(
        &redis,
        &mock.base_url(),
        free_port(),
        FAST_DISPATCH,
    ))
    .await;
    wait_events(&mut conn, "12 sent", T, |ev| count_status(ev, "sent") == 12).await;
    assert_eq!(pending_total(&mut conn, 4).await, 0);
    assert_eq!(mock.recorded().len(), 12);
    herald.stop().await.unwrap();
}

/// A redelivered entry whose decision was already recorded is acknowledged,
/// not sent again; one whose send was in flight follows the ambiguous policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_after_a_crash_follows_the_recorded_state() {
    for policy in ["resend", "fail"] {
        let redis = RedisServer::start();
        let mock = mock(0, 0.0).await;
        let mut conn = redis.conn().await;
        create_groups(&mut conn, 1).await;
        let done: String = xadd_one(&mut conn, 0, msg_json("done", &number(1), "x")).await;
        let inflight: String = xadd_one(&mut conn, 0, msg_json("inflight", &number(2), "y")).await;
        read_as(&mut conn, "dead", 0).await;
        // What the dead consumer had recorded: `done` was sent, `inflight`
        // was being sent.
        let _: () = redis::cmd("HSET")
            .arg("herald:msg:acme:done")
            .arg("entry")
            .arg(&done)
            .arg("state")
            .arg("sent")
            .arg("attempt")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg("herald:msg:acme:inflight")
            .arg("entry")
            .arg(&inflight)
            .arg("state")
            .arg("sending")
            .arg("attempt")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();

        let extra = format!("{FAST_DISPATCH}ambiguous_policy = \"{policy}\"\n");
        let herald =
            Herald::start(&config_text(&redis, &mock.base_url(), free_port(), &extra)).await;
        let deadline = std::time::Instant::now() + T;
        while pending_total(&mut conn, 4).await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "entries were not recovered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ev = events(&mut conn).await;
        assert!(
            ev.iter().all(|e| e["id"] != "done"),
            "an already-sent message was decided again: {ev:?}"
        );
        let inflight_ev: Vec<(&str, &str)> = ev
            .iter()
            .filter(|e| e["id"] == "inflight")
            .map(|e| {
                (
                    e["status"].as_str(),
                    e.get("reason").map(String::as_str).unwrap_or(""),
                )
            })
            .collect();
        let bodies: Vec<String> = mock.recorded().into_iter().map(|r| r.body).collect();
        match policy {
            "resend" => {
                assert_eq!(inflight_ev, vec![("sent", "")]);
                assert_eq!(bodies, vec!["y".to_string()]);
            }
            _ => {
                assert_eq!(inflight_ev, vec![("failed", "ambiguous")]);
                assert!(bodies.is_empty());
            }
        }
        herald.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_sends_and_leaves_the_rest_pending() {
    let redis = RedisServer::start();
    let mock = mock(300, 0.0).await;
    let extra = format!("{FAST_DISPATCH}max_in_flight = 20\nbatch_size = 10\n");
    let herald = Herald::start(&config_text(&redis, &mock.base_url(), free_port(), &extra)).await;
    let mut conn = redis.conn().await;
    let msgs: Vec<Vec<u8>> = (0..400)
        .map(|i| msg_json(&format!("g{i}"), &number(i), "x"))
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    wait_events(&mut conn, "some sent", T, |ev| {
        count_status(ev, "sent") >= 20
    })
    .await;
    herald.stop().await.expect("clean exit");

    // Everything the provider accepted is recorded; nothing is left half-done.
    let ev = events(&mut conn).await;
    let sent = count_status(&ev, "sent");
    assert_eq!(
        sent as u64,
        mock.stats().accepted,
        "every accepted send has its event"
    );
    assert_eq!(
        pending_total(&mut conn, 4).await,
        0,
        "in-flight entries were finished and acknowledged"
    );
    let mut left = 0u64;
    for p in 0..4 {
        let n: u64 = redis::cmd("XLEN")
            .arg(format!("herald:q:{{{p}}}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        left += n;
    }
    assert_eq!(
        left + sent as u64,
        400,
        "unread entries stay queued for another instance"
    );
    assert!(sent < 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_nothing_and_readiness_follows_redis() {
    let mut redis = RedisServer::start_persistent();
    let mock = mock(20, 0.0).await;
    let http_port = free_port();
    let herald = Herald::start(&config_text(
        &redis,
        &mock.base_url(),
        http_port,
        FAST_DISPATCH,
    ))
    .await;
    let mut conn = redis.conn().await;
    let msgs: Vec<Vec<u8>> = (0..300)
        .map(|i| msg_json(&format!("r{i}"), &number(i), "x"))
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    wait_events(&mut conn, "some sent", T, |ev| {
        count_status(ev, "sent") >= 10
    })
    .await;

    redis.kill();
    let ready = |port: u16| async move { http_get(port, "/readyz").await.0 };
    let deadline = std::time::Instant::now() + T;
    while ready(http_port).await != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "readyz never reported Redis down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.restart();
    let mut conn = redis.conn().await;
    let ev = wait_events(
        &mut conn,
        "all 300 decided",
        Duration::from_secs(60),
        |ev| {
            let mut ids: Vec<&str> = ev
                .iter()
                .filter(|e| e["status"] == "sent")
                .map(|e| e["id"].as_str())
                .collect();
            ids.sort();
            ids.dedup();
            ids.len() == 300
        },
    )
    .await;
    assert!(
        ev.iter().all(|e| e["status"] == "sent"),
        "{:?}",
        ev.iter().find(|e| e["status"] != "sent")
    );
    while ready(http_port).await != 200 {
        assert!(
            std::time::Instant::now() < deadline + T,
            "readyz never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_queues_reports_state_and_exposes_metrics() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let mut text = config_text(&redis, &mock.base_url(), port, FAST_DISPATCH);
    text.push('\n');
    let herald = Herald::start(&text).await;
    let mut conn = redis.conn().await;
    let key = "acme-key-0123456789abcdef";

    // Bad key: 401, nothing queued.
    let (status, _) = http_post(
        port,
        "/v1/messages",
        "wrong-key",
        &json!({"id": "h0", "to": number(0), "body": "x"}),
    )
    .await;
    assert_eq!(status, 401);
    // One invalid item: 422 and nothing of the request is queued.
    let (status, body) = http_post(
        port,
        "/v1/messages",
        key,
        &json!([
            {"id": "h1", "to": number(1), "body": "ok"},
            {"id": "h2", "to": "+1", "body": "bad number"},
        ]),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("invalid_number"), "{body}");
    // Another tenant's message: refused.
    let (status, _) = http_post(
        port,
        "/v1/messages",
        key,
        &json!({"id": "h3", "tenant": "globex", "to": number(3), "body": "x"}),
    )
    .await;
    assert_eq!(status, 422);
    // Valid batch: 202, then sent.
    let (status, body) = http_post(
        port,
        "/v1/messages",
        key,
        &json!([
            {"id": "h4", "to": number(4), "body": "one"},
            {"id": "h5", "to": number(5), "body": "two"},
        ]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let ev = wait_events(&mut conn, "2 sent", T, |ev| count_status(ev, "sent") == 2).await;
    assert!(ev.iter().all(|e| e["tenant"] == "acme"));
    assert_eq!(mock.recorded().len(), 2);

    let (status, body) = http_get_auth(port, "/v1/messages/acme/h4", key).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "sent");
    assert_eq!(v["provider"], "twilio");
    assert_eq!(v["trail"][0]["status"], "sent");
    let (status, _) = http_get_auth(port, "/v1/messages/acme/nope", key).await;
    assert_eq!(status, 404);
    let (status, _) = http_get_auth(port, "/v1/messages/globex/h4", key).await;
    assert_eq!(status, 401);

    assert_eq!(http_get(port, "/healthz").await.0, 200);
    assert_eq!(http_get(port, "/readyz").await.0, 200);
    herald.stop().await.unwrap();
}

async fn http_get(port: u16, path: &str) -> (u16, String) {
    http_request(port, "GET", path, None, None).await
}

async fn http_get_auth(port: u16, path: &str, key: &str) -> (u16, String) {
    http_request(port, "GET", path, Some(key), None).await
}

async fn http_post(port: u16, path: &str, key: &str, body: &serde_json::Value) -> (u16, String) {
    http_request(port, "POST", path, Some(key), Some(body.to_string())).await
}

async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<String>,
) -> (u16, String) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http_call(
        port,
        method,
        path,
        &headers,
        "application/json",
        &body.unwrap_or_default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_outcomes_latency_in_flight_and_lag() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let extra = format!("{FAST_DISPATCH}\n[telemetry]\nlag_poll_ms = 100\n");
    let herald =
        Herald::start_with_metrics(&config_text(&redis, &mock.base_url(), port, &extra)).await;
    let mut conn = redis.conn().await;
    xadd_raw(
        &mut conn,
        4,
        &[msg_json("p1", &number(1), "x"), b"garbage".to_vec()],
    )
    .await;
    wait_events(&mut conn, "2 decisions", T, |ev| ev.len() == 2).await;
    let want = [
        r#"herald_messages_total{status="sent",reason=""} 1"#,
        r#"herald_messages_total{status="rejected",reason="invalid_json"} 1"#,
        "herald_provider_request_seconds_bucket{provider=\"twilio\",result=\"ok\"",
        "herald_enqueue_to_send_seconds_count 1",
        "herald_in_flight",
        "herald_queue_lag{partition=\"0\"}",
        "herald_queue_pending{partition=\"3\"}",
        "herald_redis_up 1",
    ];
    let deadline = std::time::Instant::now() + T;
    loop {
        let (status, body) = http_get(port, "/metrics").await;
        assert_eq!(status, 200);
        let missing: Vec<&&str> = want.iter().filter(|w| !body.contains(**w)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing {missing:?} in:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    herald.stop().await.unwrap();
}

/// docs/contracts.md#http-and-grpc: a config with only the contract keys must start and send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_of_only_the_contract_keys_starts_and_sends() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let text = format!(
        r#"
[redis]
url = "{}"
[queue]
partitions = 2
[http]
listen = "127.0.0.1:{}"
public_url = "https://herald.example.com"
[control]
listen = "127.0.0.1:{}"
token = "admin-token"
[providers.twilio]
kind = "twilio"
base_url = "{}"
account_sid = "ACmock0000000000000000000000000000"
auth_token = "mock-token"
from = "+15005550006"
[routes]
default = ["twilio"]
"#,
        redis.url(),
        free_port(),
        free_port(),
        mock.base_url()
    );
    let herald = Herald::start(&text).await;
    let mut conn = redis.conn().await;
    xadd_raw(&mut conn, 2, &[msg_json("c1", &number(1), "contract")]).await;
    wait_events(&mut conn, "sent", T, |ev| count_status(ev, "sent") == 1).await;
    assert_eq!(mock.recorded()[0].body, "contract");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_consumers_with_nothing_pending_are_removed_from_the_group() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let mut conn = redis.conn().await;
    create_groups(&mut conn, 4).await;
    // "gone" read nothing and holds nothing; "holding" died with an entry.
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg("herald:q:{0}")
        .arg("herald")
        .arg("gone")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _ = xadd_one(&mut conn, 1, msg_json("held", &number(1), "x")).await;
    read_as(&mut conn, "holding", 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Long claim idle: the held entry stays with "holding" for the test.
    let extra = "[dispatch]\nblock_ms = 100\nclaim_idle_ms = 600000\ndead_consumer_idle_ms = 300\n";
    let herald = Herald::start(&config_text(&redis, &mock.base_url(), free_port(), extra)).await;
    let names = |p: u16| {
        let mut c = conn.clone();
        async move {
            let v: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(format!("herald:q:{{{p}}}"))
                .arg("herald")
                .query_async(&mut c)
                .await
                .unwrap();
            v.into_iter()
                .filter_map(|m| {
                    m.get("name")
                        .and_then(|n| redis::from_redis_value::<String>(n.clone()).ok())
                })
                .collect::<Vec<String>>()
        }
    };
    let deadline = std::time::Instant::now() + T;
    while names(0).await.contains(&"gone".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "dead consumer not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        names(1).await.contains(&"holding".to_string()),
        "a consumer holding entries must stay"
    );
    assert_eq!(pending_total(&mut conn, 4).await, 1);
    herald.stop().await.unwrap();
}

/// The queue trim (`queue.delete_acked`) removes only what no consumer group
/// needs: never a pending entry (a dead consumer's, for XAUTOCLAIM), never
/// an unread one, and with two groups only what both are done with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_the_queue_keeps_pending_and_unread_entries() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let stream = "herald:q:{0}";
    let trim = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let n: u64 = redis::cmd("EVAL")
                .arg(herald_engine::ingest::trim::TRIM_LUA)
                .arg(1)
                .arg(stream)
                .query_async(&mut conn)
                .await
                .expect("trim script");
            n
        }
    };
    let ids_left = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let v: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
                .arg(stream)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .expect("XRANGE");
            v.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        }
    };
    let xack =
        |conn: &mut redis::aio::MultiplexedConnection, group: &'static str, ids: Vec<String>| {
            let mut conn = conn.clone();
            async move {
                let _: u64 = redis::cmd("XACK")
                    .arg(stream)
                    .arg(group)
                    .arg(ids)
                    .query_async(&mut conn)
                    .await
                    .expect("XACK");
            }
        };

    // No group: nothing is trimmed.
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(xadd_one(&mut conn, 0, msg_json(&format!("t{i}"), &number(i), "x")).await);
    }
    assert_eq!(trim(&mut conn).await, 0);
    create_groups(&mut conn, 1).await;
    // The group has read nothing: nothing goes.
    assert_eq!(trim(&mut conn).await, 0);

    // Read all six; ack 0, 1, 3. Entry 2 is still pending: 0 and 1 go,
    // 2..5 stay (3 is acked but sits above a pending entry).
    read_as(&mut conn, "c1", 0).await;
    xack(
        &mut conn,
        "herald",
        vec![ids[0].clone(), ids[1].clone(), ids[3].clone()],
    )
    .await;
    assert_eq!(trim(&mut conn).await, 2);
    assert_eq!(ids_left(&mut conn).await, ids[2..].to_vec());

    // Two more arrive unread; everything read is acked: the read entries
    // go, the unread ones stay.
    let late = vec![
        xadd_one(&mut conn, 0, msg_json("t6", &number(6), "x")).await,
        xadd_one(&mut conn, 0, msg_json("t7", &number(7), "x")).await,
    ];
    xack(&mut conn, "herald", ids[2..].to_vec()).await;
    assert_eq!(trim(&mut conn).await, 4);
    assert_eq!(ids_left(&mut conn).await, late);

    // A second group that has read nothing holds everything; once it has
    // read and acked, the herald group's pending entry is what bounds it.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("audit")
        .arg("0")
        .query_async(&mut conn)
        .await
        .expect("second group");
    read_as(&mut conn, "c2", 0).await;
    assert_eq!(trim(&mut conn).await, 0, "group audit has not read them");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("audit")
        .arg("a1")
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .expect("XREADGROUP audit");
    xack(&mut conn, "audit", late.clone()).await;
    assert_eq!(
        trim(&mut conn).await,
        0,
        "group herald still holds both pending"
    );
    xack(&mut conn, "herald", vec![late[0].clone()]).await;
    assert_eq!(trim(&mut conn).await, 1);
    xack(&mut conn, "herald", vec![late[1].clone()]).await;
    assert_eq!(trim(&mut conn).await, 1);
    assert!(ids_left(&mut conn).await.is_empty());
}
