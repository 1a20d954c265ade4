//! Provider resilience end to end (docs/contracts.md#providers, issue #4): circuit breaker and
//! failover along the route, delivery receipts from status callbacks.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use herald_engine::inbound::signature::twilio_signature;
use herald_loadtest::mock::{MockProvider, MockSettings};
use serde_json::json;

const T: Duration = Duration::from_secs(20);
const PUBLIC: &str = "https://herald.example.com";

fn event_of<'a>(ev: &'a [HashMap<String, String>], id: &str) -> Vec<&'a HashMap<String, String>> {
    ev.iter()
        .filter(|e| e.get("id").map(String::as_str) == Some(id))
        .collect()
}

fn msg(id: &str, i: usize) -> Vec<u8> {
    json!({"id": id, "tenant": "acme", "to": number(i), "body": "hi"})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_fail_over_and_open_the_circuit() {
    let redis = RedisServer::start();
    // `down` answers every request with 429 or 500; `up` accepts.
    let down = MockProvider::start(
        ([127, 0, 0, 1], 0).into(),
        MockSettings {
            error_rate: 1.0,
            record: true,
            ..Default::default()
        },
    )
    .await
    .expect("mock");
    let up = mock(0, 0.0).await;
    let extra = format!(
        r#"{FAST_DISPATCH}failover_after = 1
[providers.backup]
kind = "twilio"
base_url = "{}"
account_sid = "ACmock0000000000000000000000000000"
auth_token = "mock-token"
from = "+15005550006"
[breaker]
consecutive_failures = 3
open_ms = 600000
"#,
        up.base_url()
    );
    // The route: the failing provider first, the backup second.
    let env = vec![(
        "HERALD_ROUTES__DEFAULT".to_string(),
        r#"["twilio", "backup"]"#.to_string(),
    )];
    let herald = Herald::start_env(
        &config_text(&redis, &down.base_url(), free_port(), &extra),
        env,
    )
    .await;
    let mut conn = redis.conn().await;

    // One at a time, so the breaker's count is exact.
    for i in 0..3 {
        let id = format!("f{i}");
        xadd_raw(&mut conn, 4, &[msg(&id, i)]).await;
        wait_events(&mut conn, "sent through the backup", T, |ev| {
            event_of(ev, &id).iter().any(|e| e["status"] == "sent")
        })
        .await;
    }
    let ev = events(&mut conn).await;
    for i in 0..3 {
        let steps = event_of(&ev, &format!("f{i}"));
        // docs/contracts.md#providers: the transient failure retries (a `retrying` event),
        // then fails over to the next provider of the route.
        assert_eq!(steps[0]["status"], "retrying", "{steps:?}");
        assert_eq!(steps[0]["provider"], "twilio");
        assert_eq!(steps[1]["status"], "sent");
        assert_eq!(steps[1]["provider"], "backup");
    }
    let before = down.stats().requests;
    assert_eq!(before, 3, "one failed attempt each");
    // Three failures in a row opened `twilio`'s circuit: later messages go
    // straight to the backup, without trying it.
    let batch: Vec<Vec<u8>> = (10..20).map(|i| msg(&format!("g{i}"), i)).collect();
    xadd_raw(&mut conn, 4, &batch).await;
    let ev = wait_events(&mut conn, "10 more sent", T, |ev| {
        (10..20).all(|i| {
            event_of(ev, &format!("g{i}"))
                .iter()
                .any(|e| e["status"] == "sent")
        })
    })
    .await;
    assert_eq!(down.stats().requests, before, "an open circuit is skipped");
    for i in 10..20 {
        let steps = event_of(&ev, &format!("g{i}"));
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0]["provider"], "backup");
    }
    assert_eq!(up.recorded().len(), 13);
    herald.stop().await.expect("clean stop");
}

async fn status_callback(port: u16, sid: &str, status: &str, error_code: Option<&str>) -> u16 {
    let mut params: Vec<(String, String)> = vec![
        (
            "AccountSid".into(),
            "ACmock0000000000000000000000000000".into(),
        ),
        ("MessageSid".into(), sid.into()),
        ("MessageStatus".into(), status.into()),
        ("ApiVersion".into(), "2010-04-01".into()),
    ];
    if let Some(code) = error_code {
        params.push(("ErrorCode".into(), code.into()));
    }
    let sig = twilio_signature(
        "mock-token",
        &format!("{PUBLIC}/v1/webhooks/twilio/status"),
        &params,
    );
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    http_call(
        port,
        "POST",
        "/v1/webhooks/twilio/status",
        &[("X-Twilio-Signature", sig.as_str())],
        "application/x-www-form-urlencoded",
        &form,
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_become_one_receipt_each() {
    let redis = RedisServer::start();
    let up = mock(0, 0.0).await;
    let port = free_port();
    let env = vec![
        ("HERALD_HTTP__PUBLIC_URL".to_string(), PUBLIC.to_string()),
        (
            "HERALD_PROVIDERS__TWILIO__STATUS_CALLBACK".to_string(),
            format!("{PUBLIC}/v1/webhooks/twilio/status"),
        ),
    ];
    let herald = Herald::start_env(
        &config_text(&redis, &up.base_url(), port, FAST_DISPATCH),
        env,
    )
    .await;
    let mut conn = redis.conn().await;
    xadd_raw(&mut conn, 4, &[msg("d1", 1), msg("d2", 2)]).await;
    let ev = wait_events(&mut conn, "2 sent", T, |ev| count_status(ev, "sent") == 2).await;
    let sid = |id: &str| event_of(&ev, id)[0]["provider_id"].clone();
    let (s1, s2) = (sid("d1"), sid("d2"));

    // A bad signature changes nothing.
    let params = "MessageSid=x&MessageStatus=delivered";
    let (status, _) = http_call(
        port,
        "POST",
        "/v1/webhooks/twilio/status",
        &[("X-Twilio-Signature", "bm9wZQ==")],
        "application/x-www-form-urlencoded",
        params,
    )
    .await;
    assert_eq!(status, 403);

    // Out of order and repeated: `delivered` first, then the late `sent`,
    // then `delivered` again — one receipt.
    assert_eq!(status_callback(port, &s1, "delivered", None).await, 204);
    assert_eq!(status_callback(port, &s1, "sent", None).await, 204);
    assert_eq!(status_callback(port, &s1, "delivered", None).await, 204);
    // Twilio's `failed` is `undelivered` with its error code as the reason.
    assert_eq!(
        status_callback(port, &s2, "failed", Some("30007")).await,
        204
    );
    assert_eq!(status_callback(port, &s2, "delivered", None).await, 204);

    // Receipts are applied synchronously by the webhook: all are in.
    let ev = events(&mut conn).await;
    let d1: Vec<_> = event_of(&ev, "d1")
        .into_iter()
        .map(|e| e["status"].clone())
        .collect();
    let d2 = event_of(&ev, "d2");
    assert_eq!(d1, ["sent", "delivered"]);
    assert_eq!(d2.len(), 2);
    assert_eq!(d2[1]["status"], "undelivered");
    assert_eq!(d2[1]["reason"], "30007");
    assert_eq!(d2[1]["provider_id"], s2);

    // A callback that arrives before its message is known is applied when
    // the message appears.
    let orphan_sid = "SMorphan000000000000000000000000";
    assert_eq!(
        status_callback(port, orphan_sid, "delivered", None).await,
        204
    );
    let _: () = redis::cmd("HSET")
        .arg("herald:msg:acme:late")
        .arg("state")
        .arg("sent")
        .query_async(&mut conn)
        .await
        .expect("hset");
    let _: () = redis::cmd("SET")
        .arg(format!("herald:pid:twilio:{orphan_sid}"))
        .arg("acme\nlate")
        .query_async(&mut conn)
        .await
        .expect("set");
    wait_events(&mut conn, "the orphan receipt applied", T, |ev| {
        event_of(ev, "late")
            .iter()
            .any(|e| e["status"] == "delivered")
    })
    .await;
    herald.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_send_is_never_resent_through_another_provider() {
    let redis = RedisServer::start();
    let primary = mock(0, 0.0).await;
    let backup = mock(0, 0.0).await;
    let extra = format!(
        r#"{FAST_DISPATCH}failover_after = 1
max_attempts = 3
ambiguous_policy = "resend"
[providers.backup]
kind = "twilio"
base_url = "{}"
account_sid = "ACmock0000000000000000000000000000"
auth_token = "mock-token"
from = "+15005550006"
"#,
        backup.base_url()
    );
    let env = vec![(
        "HERALD_ROUTES__DEFAULT".to_string(),
        r#"["twilio", "backup"]"#.to_string(),
    )];
    let herald = Herald::start_env(
        &config_text(&redis, &primary.base_url(), free_port(), &extra),
        env,
    )
    .await;
    let mut conn = redis.conn().await;
    // The mock accepts +15005550556, then drops the connection unanswered:
    // the provider has the message, Herald cannot know.
    let m = json!({"id": "amb", "tenant": "acme", "to": "+15005550556", "body": "hi"});
    xadd_raw(&mut conn, 4, &[m.to_string().into_bytes()]).await;
    let ev = wait_events(&mut conn, "a final decision", T, |ev| {
        event_of(ev, "amb").iter().any(|e| e["status"] == "failed")
    })
    .await;
    let steps = event_of(&ev, "amb");
    // docs/contracts.md#providers: every attempt went to the provider that may have it —
    // never to the backup, although failover_after = 1.
    assert!(steps.len() >= 2, "{steps:?}");
    for s in &steps {
        assert_eq!(s["provider"], "twilio", "{steps:?}");
    }
    assert_eq!(steps[0]["status"], "retrying");
    assert_eq!(steps[0]["reason"], "ambiguous");
    assert_eq!(
        steps.last().map(|s| s["reason"].as_str()),
        Some("attempts_exhausted")
    );
    assert_eq!(backup.stats().requests, 0);
    herald.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_providers_signed_callbacks_become_receipts() {
    let redis = RedisServer::start();
    let provider = MockProvider::start(
        ([127, 0, 0, 1], 0).into(),
        MockSettings {
            status_callbacks: true,
            callback_delay: Duration::from_millis(50),
            record: true,
            ..Default::default()
        },
    )
    .await
    .expect("mock");
    let port = free_port();
    // public_url defaults to the listener: the callback URL the mock signs.
    let env = vec![(
        "HERALD_PROVIDERS__TWILIO__STATUS_CALLBACK".to_string(),
        format!("http://127.0.0.1:{port}/v1/webhooks/twilio/status"),
    )];
    let herald = Herald::start_env(
        &config_text(&redis, &provider.base_url(), port, FAST_DISPATCH),
        env,
    )
    .await;
    let mut conn = redis.conn().await;
    let msgs = [
        json!({"id": "ok", "tenant": "acme", "to": number(7), "body": "hi"}),
        // Mock rules: 0030 → undelivered 30003; 0021 → delivered before sent;
        // 0022 → every callback twice.
        json!({"id": "u", "tenant": "acme", "to": "+15005550030", "body": "hi"}),
        json!({"id": "r", "tenant": "acme", "to": "+15005550021", "body": "hi"}),
        json!({"id": "d", "tenant": "acme", "to": "+15005550022", "body": "hi"}),
    ];
    let raw: Vec<Vec<u8>> = msgs.iter().map(|m| m.to_string().into_bytes()).collect();
    xadd_raw(&mut conn, 4, &raw).await;
    let ev = wait_events(&mut conn, "4 receipts", T, |ev| {
        count_status(ev, "delivered") + count_status(ev, "undelivered") == 4
    })
    .await;
    let last = |id: &str| {
        event_of(&ev, id)
            .last()
            .map(|e| (*e).clone())
            .unwrap_or_default()
    };
    assert_eq!(last("ok")["status"], "delivered");
    assert_eq!(last("u")["status"], "undelivered");
    assert_eq!(last("u")["reason"], "30003");
    assert_eq!(last("r")["status"], "delivered");
    assert_eq!(last("d")["status"], "delivered");
    // Duplicated callbacks gave one receipt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ev = events(&mut conn).await;
    assert_eq!(
        event_of(&ev, "d")
            .iter()
            .filter(|e| e["status"] == "delivered")
            .count(),
        1
    );
    herald.stop().await.expect("clean stop");
}

/// docs/architecture.md#throughput-control / issue #4: a carrier's limit holds for the fleet. Three
/// instances share one Redis and one `fleet = true` lane; together they
/// never pass more than burst + rate × T + instances × lease segments in a
/// span of T, and the rate they achieve is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_fleet_wide_carrier_limit() {
    let redis = RedisServer::start();
    let provider = mock(0, 0.0).await;
    // 10 segments/s for the whole fleet, burst 5, leases of 2.
    let table = TempFile::new(
        "carriers.toml",
        r#"
[[carrier]]
name = "testco"
prefixes = ["1415"]
limit = { segments = 10, per = "second", burst = 5 }
fleet = true
lease = 2
"#,
    );
    let extra = format!(
        "{FAST_DISPATCH}\n[throttle]\nrules_file = \"{}\"\n",
        table.toml_path()
    );
    let mut fleet = Vec::new();
    for _ in 0..3 {
        let text = config_text(&redis, &provider.base_url(), free_port(), &extra);
        fleet.push(Herald::start(&text).await);
    }
    let mut conn = redis.conn().await;
    let n = 40;
    let batch: Vec<Vec<u8>> = (0..n).map(|i| msg(&format!("t{i}"), i)).collect();
    xadd_raw(&mut conn, 4, &batch).await;
    let ev = wait_events(&mut conn, "all sent", Duration::from_secs(60), |ev| {
        count_status(ev, "sent") == n
    })
    .await;
    let mut sent: Vec<i64> = ev
        .iter()
        .filter(|e| e["status"] == "sent")
        .filter_map(|e| e["ts"].parse().ok())
        .collect();
    sent.sort_unstable();
    let throttled = ev
        .iter()
        .filter(|e| e["status"] == "deferred" && e["reason"] == "throttled")
        .count();
    assert!(throttled > 0, "40 texts at 10/s must be throttled");
    // Every window [sent[i], sent[j]] holds at most burst + rate·T + 3·lease
    // texts (+1: both ends are counted). `ts` is when the outcome was
    // written, a little after the token was taken, so allow the writer's
    // batching (50 ms of tokens) too.
    let (burst, rate, lease) = (5.0, 10.0 / 1000.0, 2.0);
    for i in 0..sent.len() {
        for j in i..sent.len() {
            let span = (sent[j] - sent[i]) as f64 + 50.0;
            let count = (j - i + 1) as f64;
            assert!(
                count <= burst + rate * span + 3.0 * lease + 1.0,
                "{count} texts in {span} ms exceed the fleet limit"
            );
        }
    }
    let span_s = (sent[sent.len() - 1] - sent[0]) as f64 / 1000.0;
    println!(
        "fleet of 3: {n} texts in {span_s:.2} s = {:.1}/s against a fleet limit of 10/s (burst 5); {throttled} deferrals",
        (n as f64 - burst) / span_s
    );
    for h in fleet {
        h.stop().await.expect("clean stop");
    }
}

/// A full carrier lane defers its own messages (`throttled`) and holds up no
/// other carrier; a limit changed over the control plane applies without a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_lane_defers_only_its_carrier_and_limits_change_live() {
    use herald_control::v1::{ListThrottlesRequest, SetThrottleRequest};
    let redis = RedisServer::start();
    let provider = mock(0, 0.0).await;
    let table = TempFile::new(
        "carriers.toml",
        r#"
[[carrier]]
name = "slowco"
prefixes = ["1415"]
limit = { segments = 2, per = "second", burst = 1 }
[[carrier]]
name = "fastco"
prefixes = ["1212"]
"#,
    );
    let grpc = free_port();
    let token = "admin-token-for-lane-tests";
    let env = vec![
        (
            "HERALD_CONTROL__LISTEN".to_string(),
            format!("127.0.0.1:{grpc}"),
        ),
        ("HERALD_CONTROL__TOKEN".to_string(), token.to_string()),
    ];
    let extra = format!(
        "{FAST_DISPATCH}\n[throttle]\nrules_file = \"{}\"\n",
        table.toml_path()
    );
    let herald = Herald::start_env(
        &config_text(&redis, &provider.base_url(), free_port(), &extra),
        env,
    )
    .await;
    let mut conn = redis.conn().await;
    let to = |carrier: &str, i: usize| match carrier {
        "slow" => number(i),
        _ => format!("+1212200{i:04}"),
    };
    let batch = |prefix: &str, carrier: &str| -> Vec<Vec<u8>> {
        (0..6)
            .map(|i| {
                json!({"id": format!("{prefix}{i}"), "tenant": "acme", "to": to(carrier, i), "body": "hi"})
                    .to_string()
                    .into_bytes()
            })
            .collect()
    };
    let mut both = batch("s", "slow");
    both.extend(batch("f", "fast"));
    xadd_raw(&mut conn, 4, &both).await;
    let ev = wait_events(&mut conn, "12 sent", T, |ev| count_status(ev, "sent") == 12).await;
    let throttled = |ev: &[HashMap<String, String>], prefix: &str| {
        ev.iter()
            .filter(|e| {
                e["id"].starts_with(prefix)
                    && e["status"] == "deferred"
                    && e["reason"] == "throttled"
            })
            .count()
    };
    assert!(
        throttled(&ev, "s") > 0,
        "6 texts at 2/s: slowco's lane defers"
    );
    assert_eq!(throttled(&ev, "f"), 0, "fastco is not held up by slowco");

    // Lift slowco's limit live, fleet-wide.
    let mut admin = client(grpc, token).await;
    let bad = admin
        .set_throttle(SetThrottleRequest {
            lane: "carrier:nope".into(),
            segments: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    admin
        .set_throttle(SetThrottleRequest {
            lane: "carrier:slowco".into(),
            segments: 0,
            ..Default::default()
        })
        .await
        .expect("set");
    let listed = admin
        .list_throttles(ListThrottlesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.limits.len(), 1);
    assert_eq!(listed.limits[0].lane, "carrier:slowco");
    tokio::time::sleep(herald_engine::policy::store::POLL * 5).await;
    let before = events(&mut conn).await.len();
    xadd_raw(&mut conn, 4, &batch("t", "slow")).await;
    let ev = wait_events(&mut conn, "6 more sent", T, |ev| {
        count_status(ev, "sent") == 18
    })
    .await;
    assert_eq!(throttled(&ev[before..], "t"), 0, "the lifted limit applies");
    herald.stop().await.expect("clean stop");
}

/// 429 with `Retry-After` is transient: a `retrying` event whose `until` is
/// at least the provider's Retry-After away; a slow answer past the
/// request timeout is ambiguous and, with `ambiguous_policy = "fail"`,
/// `failed` / `ambiguous` and never re-sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_a_timeout_is_ambiguous() {
    let redis = RedisServer::start();
    let provider = MockProvider::start(
        ([127, 0, 0, 1], 0).into(),
        MockSettings {
            retry_after_secs: 2,
            slow_delay: Duration::from_millis(1_500),
            record: true,
            ..Default::default()
        },
    )
    .await
    .expect("mock");
    let extra = format!("{FAST_DISPATCH}ambiguous_policy = \"fail\"\nmax_attempts = 2\n");
    // Retry-After is a floor up to dispatch.retry_max_ms (a bad header may
    // not park a message for a day): raise the test config's 200 ms cap.
    let env = vec![
        (
            "HERALD_PROVIDERS__TWILIO__TIMEOUT_MS".to_string(),
            "300".to_string(),
        ),
        (
            "HERALD_DISPATCH__RETRY_MAX_MS".to_string(),
            "5000".to_string(),
        ),
    ];
    let herald = Herald::start_env(
        &config_text(&redis, &provider.base_url(), free_port(), &extra),
        env,
    )
    .await;
    let mut conn = redis.conn().await;
    // Mock rules: +15005550429 → 429 / 20429 with Retry-After; +15005550777
    // → answers after slow_delay.
    let msgs = [
        json!({"id": "limited", "tenant": "acme", "to": "+15005550429", "body": "hi"}),
        json!({"id": "slow", "tenant": "acme", "to": "+15005550777", "body": "hi"}),
    ];
    let raw: Vec<Vec<u8>> = msgs.iter().map(|m| m.to_string().into_bytes()).collect();
    xadd_raw(&mut conn, 4, &raw).await;
    let ev = wait_events(&mut conn, "both decided", T, |ev| {
        event_of(ev, "limited")
            .iter()
            .any(|e| e["status"] == "failed")
            && event_of(ev, "slow").iter().any(|e| e["status"] == "failed")
    })
    .await;
    let limited = event_of(&ev, "limited");
    assert_eq!(limited[0]["status"], "retrying");
    let ts: i64 = limited[0]["ts"].parse().expect("ts");
    let until: i64 = limited[0]["until"].parse().expect("until");
    assert!(
        until - ts >= 1_900,
        "Retry-After 2 s is a floor: {}",
        until - ts
    );
    assert_eq!(
        limited.last().map(|e| e["reason"].as_str()),
        Some("attempts_exhausted")
    );
    let slow = event_of(&ev, "slow");
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert_eq!(slow[0]["status"], "failed");
    assert_eq!(slow[0]["reason"], "ambiguous");
    herald.stop().await.expect("clean stop");
}

/// docs/architecture.md#throughput-control / issue #4: a number the table does not place is looked up
/// through the provider's lookup API (Twilio Lookup v2, here the mock),
/// cached in Redis, and its later messages go to that carrier's lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_lookup_moves_a_number_into_its_lane() {
    let redis = RedisServer::start();
    let provider = mock(0, 0.0).await;
    // Verizon limited to 1 segment/s, burst 1.
    let table = TempFile::new(
        "carriers.toml",
        r#"
[[carrier]]
name = "verizon"
aliases = ["verizon wireless"]
limit = { segments = 1, per = "second", burst = 1 }
"#,
    );
    let extra = format!(
        "{FAST_DISPATCH}\n[throttle]\nrules_file = \"{}\"\nlookup = \"twilio\"\nlookup_provider = \"twilio\"\nlookup_base_url = \"{}\"\n",
        table.toml_path(),
        provider.base_url()
    );
    let herald = Herald::start(&config_text(
        &redis,
        &provider.base_url(),
        free_port(),
        &extra,
    ))
    .await;
    let mut conn = redis.conn().await;
    // The mock answers "Verizon Wireless" for numbers ending in 7–9.
    let to = "+14152000017";
    let one = |id: &str| {
        json!({"id": id, "tenant": "acme", "to": to, "body": "hi"})
            .to_string()
            .into_bytes()
    };
    xadd_raw(&mut conn, 4, &[one("first")]).await;
    wait_events(&mut conn, "first sent", T, |ev| {
        event_of(ev, "first").iter().any(|e| e["status"] == "sent")
    })
    .await;
    // The lookup ran off the hot path and is cached in Redis.
    let deadline = std::time::Instant::now() + T;
    loop {
        let cached: Option<String> = redis::cmd("GET")
            .arg("herald:carrier:{14152000017}")
            .query_async(&mut conn)
            .await
            .expect("get");
        if let Some(c) = cached {
            assert_eq!(c, "Verizon Wireless");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lookup not cached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(provider.stats().lookups >= 1);
    // Now the number is in verizon's 1/s lane: a burst of 4 is throttled.
    let batch: Vec<Vec<u8>> = (0..4).map(|i| one(&format!("v{i}"))).collect();
    xadd_raw(&mut conn, 4, &batch).await;
    let ev = wait_events(&mut conn, "4 sent", T, |ev| count_status(ev, "sent") == 5).await;
    let throttled: Vec<_> = ev
        .iter()
        .filter(|e| e["status"] == "deferred" && e["reason"] == "throttled")
        .collect();
    assert!(!throttled.is_empty(), "verizon's lane throttles");
    herald.stop().await.expect("clean stop");
}
