//! The gRPC control service: stats, and pausing a tenant fleet-wide (a
//! pause holds; `drop` suppresses).

mod common;

use std::time::Duration;

use common::*;
use herald_control::v1::{
    GetStatsRequest, ListPausedTenantsRequest, PauseTenantRequest, ResumeTenantRequest,
};
use serde_json::json;

const TOKEN: &str = ADMIN_TOKEN;

fn tenant_msg(id: &str, tenant: &str, i: usize) -> Vec<u8> {
    json!({"id": id, "tenant": tenant, "to": number(i), "body": id})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_one_instance_holds_on_every_instance_and_resume_sends_all() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (a, grpc_a) = start_controlled(&redis, &mock, "").await;
    let (b, grpc_b) = start_controlled(&redis, &mock, "").await;
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
    let (herald, grpc) = start_controlled(&redis, &mock, "").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_a_token_may_change_and_every_change_is_audited_once() {
    use herald_control::v1::{
        CreateTokenRequest, ExportAuditRequest, RevokeTokenRequest, SetConsentRequest,
        SetThrottleRequest,
    };
    use tonic::Code;
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (herald, grpc) = start_controlled(&redis, &mock, "").await;
    let mut conn = redis.conn().await;
    let mut admin = client(grpc, TOKEN).await;

    // The bootstrap admin creates one token per role; each is shown once.
    let mut tokens = std::collections::HashMap::new();
    for (name, role) in [
        ("rita", "read"),
        ("otto", "operator"),
        ("cleo", "compliance"),
    ] {
        let r = admin
            .create_token(CreateTokenRequest {
                name: name.into(),
                role: role.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.info.as_ref().map(|i| i.role.as_str()), Some(role));
        tokens.insert(name, r.token);
    }
    let err = admin
        .create_token(CreateTokenRequest {
            name: "rita".into(),
            role: "admin".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = admin
        .create_token(CreateTokenRequest {
            name: "root".into(),
            role: "superuser".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Stored hashed: Redis never holds a token.
    let stored: Vec<String> = redis::cmd("HVALS")
        .arg("herald:tokens")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    for t in tokens.values() {
        assert!(stored.iter().all(|s| !s.contains(t.as_str())));
    }

    let mut read = client(grpc, &tokens["rita"]).await;
    let mut ops = client(grpc, &tokens["otto"]).await;
    let mut comp = client(grpc, &tokens["cleo"]).await;
    let pause = |tenant: &str| PauseTenantRequest {
        tenant: tenant.into(),
        reason: "incident 7".into(),
        drop: false,
    };
    let throttle = SetThrottleRequest {
        lane: "sender:+14155550100".into(),
        segments: 5,
        per: "second".into(),
        burst: 0,
    };
    let revoke = SetConsentRequest {
        tenant: "acme".into(),
        number: number(7),
        state: "revoked".into(),
        evidence: "letter of 2026-12-01".into(),
        by: "cleo".into(),
        ..Default::default()
    };

    // `read` reads and changes nothing.
    read.get_stats(GetStatsRequest {}).await.unwrap();
    read.list_paused_tenants(ListPausedTenantsRequest {})
        .await
        .unwrap();
    let denied = [
        read.pause_tenant(pause("acme")).await.unwrap_err(),
        read.set_throttle(throttle.clone()).await.unwrap_err(),
        read.set_consent(revoke.clone()).await.unwrap_err(),
        read.create_token(CreateTokenRequest {
            name: "x".into(),
            role: "admin".into(),
        })
        .await
        .unwrap_err(),
        read.export_audit(ExportAuditRequest::default())
            .await
            .unwrap_err(),
    ];
    for e in &denied {
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    assert!(
        denied[0].message().contains("`rita` has role `read`"),
        "{}",
        denied[0].message()
    );
    // `operator`: pauses and throttles, not consent or tokens.
    ops.pause_tenant(pause("acme")).await.unwrap();
    ops.set_throttle(throttle.clone()).await.unwrap();
    assert_eq!(
        ops.set_consent(revoke.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // `compliance`: consent, not pauses.
    comp.set_consent(revoke.clone()).await.unwrap();
    assert_eq!(
        comp.pause_tenant(pause("globex")).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Out of `revoked` only with evidence.
    let err = comp
        .set_consent(SetConsentRequest {
            state: "unknown".into(),
            evidence: String::new(),
            ..revoke.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("out of `revoked`"),
        "{}",
        err.message()
    );

    // A revoked token is refused at once; so is a made-up one.
    admin
        .revoke_token(RevokeTokenRequest {
            name: "rita".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        read.get_stats(GetStatsRequest {}).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        client(grpc, "hrld_made-up")
            .await
            .get_stats(GetStatsRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    // Every accepted change, once, with who, before and after; refusals
    // changed nothing and are not there.
    let out = heraldctl(grpc, &tokens["cleo"], &["audit", "export", "--json"])
        .await
        .unwrap();
    let entries: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let what: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["what"].as_str().unwrap(),
                e["who"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    let n7 = format!("acme/{}", number(7));
    assert_eq!(
        what,
        [
            ("token.create", "bootstrap", "rita"),
            ("token.create", "bootstrap", "otto"),
            ("token.create", "bootstrap", "cleo"),
            ("tenant.pause", "otto", "acme"),
            ("throttle.set", "otto", "sender:+14155550100"),
            ("consent.set", "cleo", n7.as_str()),
            ("token.revoke", "bootstrap", "rita"),
        ]
    );
    let pause_entry = &entries[3];
    assert_eq!(pause_entry["role"], "operator");
    assert!(pause_entry["before"].is_null());
    assert_eq!(pause_entry["after"]["reason"], "incident 7");
    assert!(
        pause_entry["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req-")
    );
    let consent_entry = &entries[5];
    assert_eq!(consent_entry["before"]["collections"]["state"], "unknown");
    assert_eq!(consent_entry["after"]["collections"]["state"], "revoked");
    assert_eq!(entries[4]["after"]["segments"], 5);

    // heraldctl: NOUN VERB, the flat alias, a table, and a refusal that
    // fails the command.
    let out = heraldctl(grpc, TOKEN, &["token", "list"]).await.unwrap();
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.contains("otto") && out.contains("operator") && !out.contains("rita"),
        "{out}"
    );
    let out = heraldctl(grpc, TOKEN, &["tenant", "list"]).await.unwrap();
    assert!(out.contains("acme") && out.contains("incident 7"), "{out}");
    assert_eq!(heraldctl(grpc, TOKEN, &["paused"]).await.unwrap(), out);
    let out = heraldctl(grpc, TOKEN, &["throttle", "list"]).await.unwrap();
    assert!(
        out.contains("sender:+14155550100") && out.contains("5/second"),
        "{out}"
    );
    let err = heraldctl(
        grpc,
        &tokens["otto"],
        &["token", "create", "eve", "--role", "admin"],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("PermissionDenied") || err.contains("needs admin"),
        "{err}"
    );
    let out = heraldctl(grpc, TOKEN, &["consent", "get", "acme", &number(7)])
        .await
        .unwrap();
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(
        heraldctl(grpc, TOKEN, &["consent", "acme", &number(7)])
            .await
            .unwrap(),
        out
    );
    herald.stop().await.unwrap();
}

/// A message held after its tenant was resumed (an instance whose pause
/// snapshot was still stale) is not stranded: every instance releases the
/// held sets of tenants no longer paused within a second or so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_after_the_resume_is_released_by_the_sweep() {
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
    // What the outcome writer leaves for a held message: its record with
    // the entry's bytes and partition, a member of the tenant's held set.
    let raw = tenant_msg("straggler", "acme", 42);
    let () = redis::pipe()
        .cmd("HSET")
        .arg("herald:msg:acme:straggler")
        .arg("msg")
        .arg(&raw)
        .arg("part")
        .arg(0)
        .arg("state")
        .arg("deferred")
        .ignore()
        .cmd("ZADD")
        .arg("herald:held:acme")
        .arg(1)
        .arg("acme:straggler")
        .ignore()
        .cmd("SADD")
        .arg("herald:held")
        .arg("acme")
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_events(
        &mut conn,
        "the straggler sent",
        Duration::from_secs(20),
        |ev| {
            ev.iter()
                .any(|e| e["id"] == "straggler" && e["status"] == "sent")
        },
    )
    .await;
    let left: (u64, bool) = redis::pipe()
        .cmd("ZCARD")
        .arg("herald:held:acme")
        .cmd("SISMEMBER")
        .arg("herald:held")
        .arg("acme")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, (0, false));
    assert_eq!(mock.recorded().len(), 1);
    herald.stop().await.unwrap();
}
