//! Provider resilience end to end (DESIGN §4, issue #4): circuit breaker and
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
        // DESIGN §4: the transient failure retries (a `retrying` event),
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
