//! The gRPC control service: stats, and pausing a tenant fleet-wide (a
//! pause holds; `drop` suppresses).

mod common;

use std::time::Duration;

use common::*;
use herald_control::v1::{
    GetStatsRequest, ListPausedTenantsRequest, PauseTenantRequest, ResumeTenantRequest,
};
use serde_json::json;

const TOKEN: &str = "admin-token-for-tests";

fn tenant_msg(id: &str, tenant: &str, i: usize) -> Vec<u8> {
    json!({"id": id, "tenant": tenant, "to": number(i), "body": id})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_one_instance_holds_on_every_instance_and_resume_sends_all() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (grpc_a, grpc_b) = (free_port(), free_port());
    // The control listener and token come from environment overrides, as
    // an operator would set them.
    let start = |grpc: u16| {
        let env = vec![
            (
                "HERALD_CONTROL__LISTEN".to_string(),
                format!("127.0.0.1:{grpc}"),
            ),
            ("HERALD_CONTROL__TOKEN".to_string(), TOKEN.to_string()),
        ];
        let text = config_text(&redis, &mock.base_url(), free_port(), FAST_DISPATCH);
        async move { Herald::start_env(&text, env).await }
    };
    let a = start(grpc_a).await;
    let b = start(grpc_b).await;
    let mut conn = redis.conn().await;

    // No token, wrong token: refused.
    let err = client(grpc_a, "wrong")
        .await
        .get_stats(GetStatsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let mut admin = client(grpc_a, TOKEN).await;
    let paused = admin
        .pause_tenant(PauseTenantRequest {
            tenant: "acme".into(),
            reason: "incident 42".into(),
            drop: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(paused.changed);
    assert_eq!(
        paused.pause.as_ref().map(|p| p.reason.as_str()),
        Some("incident 42")
    );
    // Idempotent: the original pause stays.
    let again = admin
        .pause_tenant(PauseTenantRequest {
            tenant: "acme".into(),
            reason: "other".into(),
            drop: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed);
    assert!(
        again.pause.as_ref().is_some_and(|p| !p.drop),
        "the first pause's mode is kept"
    );
    assert_eq!(
        again.pause.map(|p| p.reason),
        Some("incident 42".to_string())
    );
    let err = admin
        .pause_tenant(PauseTenantRequest {
            tenant: "".into(),
            reason: "".into(),
            drop: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let list = client(grpc_b, TOKEN)
        .await
        .list_paused_tenants(ListPausedTenantsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.pauses
            .iter()
            .map(|p| p.tenant.as_str())
            .collect::<Vec<_>>(),
        vec!["acme"]
    );

    // Instance B refreshes its snapshot every 500 ms.
    tokio::time::sleep(herald_engine::tenants::REFRESH * 3).await;
    // 100 messages of the paused tenant, 100 of another, read by both
    // instances.
    let msgs: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            if i % 2 == 0 {
                tenant_msg(&format!("a{i}"), "acme", i)
            } else {
                tenant_msg(&format!("g{i}"), "globex", i)
            }
        })
        .collect();
    xadd_raw(&mut conn, 4, &msgs).await;
    let ev = wait_events(&mut conn, "200 decisions", Duration::from_secs(30), |ev| {
        ev.len() == 200
    })
    .await;
    for e in &ev {
        match e["tenant"].as_str() {
            // Held, with no instant: a pause has no end date.
            "acme" => {
                assert_eq!(
                    (e["status"].as_str(), e["reason"].as_str()),
                    ("deferred", "paused"),
                    "{e:?}"
                );
                assert!(!e.contains_key("until"), "{e:?}");
            }
            _ => assert_eq!(e["status"], "sent", "{e:?}"),
        }
    }
    assert!(mock.recorded().iter().all(|r| r.body.starts_with('g')));
    let held: u64 = redis::cmd("ZCARD")
        .arg("herald:held:acme")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, 100);

    // Counters are per instance; together they saw every decision.
    let mut deferred = 0;
    let mut sent = 0;
    for port in [grpc_a, grpc_b] {
        let stats = client(port, TOKEN)
            .await
            .get_stats(GetStatsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stats.partitions.len(), 4);
        assert_eq!(stats.max_in_flight, 16_384);
        // Idle: permits held for a blocked read are not messages in flight.
        assert_eq!(stats.in_flight, 0);
        deferred += stats.messages_by_status["deferred"];
        sent += stats.messages_by_status["sent"];
    }
    assert_eq!((deferred, sent), (100, 100));

    // Resume: the 100 held messages are sent, each once, and the tenant's
    // next messages too.
    let resumed = admin
        .resume_tenant(ResumeTenantRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resumed.changed);
    assert_eq!(resumed.released, 100);
    tokio::time::sleep(herald_engine::tenants::REFRESH * 3).await;
    xadd_raw(&mut conn, 4, &[tenant_msg("after", "acme", 999)]).await;
    let ev = wait_events(
        &mut conn,
        "held messages sent",
        Duration::from_secs(30),
        |ev| {
            ev.iter()
                .filter(|e| e["tenant"] == "acme" && e["status"] == "sent")
                .count()
                == 101
        },
    )
    .await;
    let sent_ids: std::collections::HashSet<&str> = ev
        .iter()
        .filter(|e| e["tenant"] == "acme" && e["status"] == "sent")
        .map(|e| e["id"].as_str())
        .collect();
    assert_eq!(sent_ids.len(), 101);
    let to_provider = mock
        .recorded()
        .iter()
        .filter(|r| r.body.starts_with('a'))
        .count();
    assert_eq!(
        to_provider, 101,
        "each held message reaches the provider once"
    );
    let held: u64 = redis::cmd("ZCARD")
        .arg("herald:held:acme")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, 0);

    // `drop`: an emergency pause suppresses instead of holding.
    admin
        .pause_tenant(PauseTenantRequest {
            tenant: "globex".into(),
            reason: "compromised key".into(),
            drop: true,
        })
        .await
        .unwrap();
    tokio::time::sleep(herald_engine::tenants::REFRESH * 3).await;
    xadd_raw(
        &mut conn,
        4,
        &(0..5)
            .map(|i| tenant_msg(&format!("drop{i}"), "globex", 500 + i))
            .collect::<Vec<_>>(),
    )
    .await;
    let ev = wait_events(&mut conn, "dropped", Duration::from_secs(20), |ev| {
        ev.iter().filter(|e| e["id"].starts_with("drop")).count() == 5
    })
    .await;
    for e in ev.iter().filter(|e| e["id"].starts_with("drop")) {
        assert_eq!(
            (e["status"].as_str(), e["reason"].as_str()),
            ("suppressed", "paused"),
            "{e:?}"
        );
    }
    let resumed = admin
        .resume_tenant(ResumeTenantRequest {
            tenant: "globex".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.released, 0);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_set_read_and_exported_over_the_control_plane() {
    use herald_control::v1::{ExportConsentRequest, GetConsentRequest, SetConsentRequest};
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let grpc = free_port();
    let env = vec![
        (
            "HERALD_CONTROL__LISTEN".to_string(),
            format!("127.0.0.1:{grpc}"),
        ),
        ("HERALD_CONTROL__TOKEN".to_string(), TOKEN.to_string()),
    ];
    let herald = Herald::start_env(
        &config_text(&redis, &mock.base_url(), free_port(), FAST_DISPATCH),
        env,
    )
    .await;
    let mut admin = client(grpc, TOKEN).await;
    let who = number(5);

    // Granting needs a kind and evidence; revoking needs evidence.
    let bad = |state: &str, kind: &str, evidence: &str| SetConsentRequest {
        tenant: "acme".into(),
        number: who.clone(),
        state: state.into(),
        kind: kind.into(),
        evidence: evidence.into(),
        by: "ops@acme".into(),
        ..Default::default()
    };
    for (req, why) in [
        (bad("granted", "", "form 1"), "granted without kind"),
        (bad("revoked", "", ""), "revoked without evidence"),
        (bad("maybe", "", "x"), "unknown state"),
        (
            SetConsentRequest {
                number: "+1".into(),
                ..bad("revoked", "", "x")
            },
            "bad number",
        ),
        (
            SetConsentRequest {
                by: "".into(),
                ..bad("revoked", "", "x")
            },
            "no `by`",
        ),
    ] {
        let err = admin.set_consent(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{why}");
    }

    let set = admin
        .set_consent(SetConsentRequest {
            purposes: vec!["marketing".into()],
            ..bad("granted", "express_written", "web form 881, 2026-05-01")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.changed, vec!["marketing"]);
    let again = admin
        .set_consent(SetConsentRequest {
            purposes: vec!["marketing".into()],
            ..bad("granted", "express_written", "web form 881, 2026-05-01")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.changed.is_empty(), "idempotent");
    admin
        .set_consent(bad("revoked", "", "called in, agent 12"))
        .await
        .unwrap();

    let got = admin
        .get_consent(GetConsentRequest {
            tenant: "acme".into(),
            number: who.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let states: Vec<(&str, &str)> = got
        .purposes
        .iter()
        .map(|p| (p.purpose.as_str(), p.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("transactional", "revoked"),
            ("collections", "revoked"),
            ("marketing", "revoked")
        ]
    );
    assert_eq!(got.purposes[2].evidence, "called in, agent 12");
    assert_eq!(got.purposes[2].by, "ops@acme");

    // The audit trail: both changes, oldest first, with who and evidence.
    let mut stream = admin
        .export_consent(ExportConsentRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut entries = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        entries.push(e);
    }
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].purposes, "marketing");
    assert_eq!(entries[0].state, "granted");
    assert_eq!(entries[0].evidence, "web form 881, 2026-05-01");
    assert_eq!(entries[1].purposes, "transactional,collections,marketing");
    assert_eq!(entries[1].state, "revoked");
    assert_eq!(entries[1].number, who);
    // Another tenant's export is empty.
    let mut other = admin
        .export_consent(ExportConsentRequest {
            tenant: "globex".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other.message().await.unwrap().is_none());
    herald.stop().await.expect("clean stop");
}
