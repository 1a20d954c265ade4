//! The policy store: a change reaches every running instance within a
//! second without a restart; an invalid change is refused with its path
//! and nothing changes; a rollback restores the earlier decisions; roles
//! bound who may change what; every change is audited once.
//!
//! Two Herald instances share one real `redis-server`; changes go through
//! `heraldctl` as an admin types them, and decisions are read back from
//! each instance's `/v1/policy/evaluate` (the dispatch path's code) and
//! from the events of messages actually sent.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = ADMIN_TOKEN;
/// The mock provider's sender (`config_text`), unthrottled in the files.
const SENDER: &str = "+15005550006";

/// What instance `h` decides now for a transactional text of `tenant` to
/// `to`: (decision, policy version).
async fn decision(h: &Herald, tenant: &str, to: &str) -> (String, u64) {
    let body = json!({"tenant": tenant, "to": to, "category": "transactional"}).to_string();
    let auth = format!("Bearer {TOKEN}");
    let (status, text) = http_call(
        h.http.port(),
        "POST",
        "/v1/policy/evaluate",
        &[("Authorization", auth.as_str())],
        "application/json",
        &body,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    (
        v["decision"].as_str().unwrap_or_default().to_string(),
        v["policy_version"].as_u64().unwrap_or(0),
    )
}

/// Wait up to one second (from `since`) for both instances to decide
/// `want` on `version`; panics with what they decided.
async fn both_within_a_second(
    a: &Herald,
    b: &Herald,
    since: Instant,
    want: &str,
    version: u64,
    to: &str,
) {
    loop {
        let da = decision(a, "acme", to).await;
        let db = decision(b, "acme", to).await;
        let good = |d: &(String, u64)| d.0 == want && d.1 == version;
        if good(&da) && good(&db) {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "not on v{version} / {want} within a second: a {da:?}, b {db:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The current document with `extra` TOML appended.
async fn edited(grpc: u16, extra: &str) -> TempFile {
    let doc = heraldctl(grpc, TOKEN, &["policy", "get"])
        .await
        .expect("policy get");
    TempFile::new("policy.toml", &format!("{doc}\n{extra}"))
}

/// A tenant window for transactional texts closed today and tomorrow in
/// Los Angeles (the zone of `number(i)`'s 415 area code): deferred now.
fn closing_window() -> String {
    let la = jiff::Zoned::now()
        .in_tz("America/Los_Angeles")
        .expect("zone");
    let day = |z: &jiff::Zoned| {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            [usize::from(z.weekday().to_monday_zero_offset().unsigned_abs())]
    };
    let tomorrow = la.tomorrow().expect("tomorrow");
    format!(
        "[[tenants.acme.windows]]\nid = \"acme-maintenance\"\ncategories = [\"transactional\"]\nclosed = [\"{}\", \"{}\"]\ncitation = \"acme change ticket OPS-9\"\n",
        day(&la),
        day(&tomorrow)
    )
}

fn msg(id: &str, tenant: &str, i: usize) -> Vec<u8> {
    json!({"id": id, "tenant": tenant, "to": number(i), "body": "Your payment is due."})
        .to_string()
        .into_bytes()
}

/// Queue `n` texts of the default tenant with ids `prefix0…`, and wait
/// until every one is `sent`.
async fn send_all(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, n: usize) {
    let batch: Vec<Vec<u8>> = (0..n)
        .map(|i| msg(&format!("{prefix}{i}"), "default", i))
        .collect();
    xadd_raw(conn, 4, &batch).await;
    wait_events(conn, &format!("{n} sent"), Duration::from_secs(10), |ev| {
        of_prefix(ev, prefix)
            .filter(|e| e.get("status").map(String::as_str) == Some("sent"))
            .count()
            == n
    })
    .await;
}

fn of_prefix<'a>(
    ev: &'a [std::collections::HashMap<String, String>],
    prefix: &'a str,
) -> impl Iterator<Item = &'a std::collections::HashMap<String, String>> + 'a {
    ev.iter()
        .filter(move |e| e.get("id").is_some_and(|i| i.starts_with(prefix)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_hour_change_and_a_throttle_change_reach_two_instances_within_a_second() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (a, grpc) = start_controlled(&redis, &mock, "").await;
    let (b, _) = start_controlled(&redis, &mock, "").await;
    let mut conn = redis.conn().await;
    let to = number(1);

    // Version 1 is the seed from the files; both run it and allow.
    assert_eq!(decision(&a, "acme", &to).await, ("allow".into(), 1));
    assert_eq!(decision(&b, "acme", &to).await, ("allow".into(), 1));

    // A quiet-hour rule: a tenant window closed today and tomorrow.
    let file = edited(grpc, &closing_window()).await;
    let out = heraldctl(
        grpc,
        TOKEN,
        &[
            "policy",
            "set",
            &file.toml_path(),
            "--comment",
            "maintenance",
        ],
    )
    .await
    .expect("policy set");
    let since = Instant::now();
    assert!(out.contains("policy v2 stored"), "{out}");
    assert!(
        out.contains("+id = \"acme-maintenance\""),
        "the diff: {out}"
    );
    both_within_a_second(&a, &b, since, "defer", 2, &to).await;
    // And messages sent after it are held by it, on whichever instance.
    let batch: Vec<Vec<u8>> = (0..20)
        .map(|i| msg(&format!("qh-{i}"), "acme", i))
        .collect();
    xadd_raw(&mut conn, 4, &batch).await;
    let ev = wait_events(&mut conn, "20 deferred", Duration::from_secs(10), |ev| {
        of_prefix(ev, "qh-").count() >= 20
    })
    .await;
    assert!(
        of_prefix(&ev, "qh-").all(|e| e.get("status").map(String::as_str) == Some("deferred")
            && e.get("reason").map(String::as_str) == Some("quiet_hours")),
        "{:?}",
        of_prefix(&ev, "qh-").collect::<Vec<_>>()
    );

    // A throttle change: the sender, unthrottled in the files, goes to one
    // segment a minute. Before it, the default tenant's texts all go.
    send_all(&mut conn, "pre-", 6).await;
    let lane = format!("sender:{SENDER}");
    let out = heraldctl(
        grpc,
        TOKEN,
        &["throttle", "set", &lane, "1", "--per", "minute"],
    )
    .await
    .expect("throttle set");
    assert!(out.contains("1 segments per minute"), "{out}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = heraldctl(grpc, TOKEN, &["policy", "status", "--json"])
        .await
        .expect("status");
    let status: Value = serde_json::from_str(&status).expect("json");
    assert_eq!(status["current"], 3, "{status}");
    let after: Vec<Vec<u8>> = (0..20)
        .map(|i| msg(&format!("thr-{i}"), "default", i))
        .collect();
    xadd_raw(&mut conn, 4, &after).await;
    let ev = wait_events(&mut conn, "20 decided", Duration::from_secs(10), |ev| {
        of_prefix(ev, "thr-")
            .map(|e| e.get("id"))
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= 20
    })
    .await;
    drop(ev);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ev = events(&mut conn).await;
    let sent = of_prefix(&ev, "thr-")
        .filter(|e| e.get("status").map(String::as_str) == Some("sent"))
        .count();
    // One segment a minute per instance (sender lanes are per instance):
    // at most one text each, the rest wait for the lane.
    assert!(sent <= 2, "{sent} sent under 1/minute on two instances");
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_change_is_refused_and_both_instances_stay_on_the_old_version() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (a, grpc) = start_controlled(&redis, &mock, "").await;
    let (b, _) = start_controlled(&redis, &mock, "").await;
    let to = number(2);

    let cases: &[(&str, &str)] = &[
        (
            "[[tenants.acme.windows]]\nid = \"x\"\ncategories = [\"transactional\"]\nstart = \"18:00\"\nend = \"09:00\"\ncitation = \"c\"\n",
            "tenants.acme.windows[0].end",
        ),
        (
            "[throttles.\"carrier:att\"]\nsegments = -1\nper = \"second\"\n",
            "segments",
        ),
        (
            "[tenants.acme]\ntime_zone = \"Atlantis/Capital\"\n",
            "tenants.acme.time_zone",
        ),
        (
            "[tenants.acme]\n[routes.tenants.acme]\ndefault = [\"nope\"]\n",
            "routes.tenants.acme.default",
        ),
        (
            "[routes.tenants.ghost]\ndefault = [\"twilio\"]\n",
            "routes.tenants.ghost",
        ),
        (
            "[tenants.acme]\nsenders = [\"+14155552671\"]\n[tenants.bank]\nsenders = [\"+14155552671\"]\n",
            "tenants.bank.senders",
        ),
    ];
    for (extra, path) in cases {
        let file = edited(grpc, extra).await;
        let err = heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
            .await
            .expect_err(extra);
        assert!(
            err.contains("InvalidArgument") && err.contains(path),
            "{extra}: {err}"
        );
    }
    // A stale base is refused too (compare-and-set).
    let file = edited(grpc, "").await;
    let err = heraldctl(
        grpc,
        TOKEN,
        &["policy", "set", &file.toml_path(), "--expect", "7"],
    )
    .await
    .expect_err("stale");
    assert!(
        err.contains("Aborted") && err.contains("at version 1"),
        "{err}"
    );

    // Nothing changed: still version 1, both instances on it and allowing.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = heraldctl(grpc, TOKEN, &["policy", "status", "--json"])
            .await
            .expect("status");
        let s: Value = serde_json::from_str(&s).expect("json");
        assert_eq!(s["current"], 1, "{s}");
        let on_v1 = s["instances"]
            .as_array()
            .map_or(0, |i| i.iter().filter(|i| i["version"] == 1).count());
        if on_v1 == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "both instances report v1: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(decision(&a, "acme", &to).await, ("allow".into(), 1));
    assert_eq!(decision(&b, "acme", &to).await, ("allow".into(), 1));
    let history = heraldctl(grpc, TOKEN, &["policy", "history", "--json"])
        .await
        .expect("history");
    let history: Value = serde_json::from_str(&history).expect("json");
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history[0]["who"], "files");
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_previous_decisions_and_every_change_is_audited_once() {
    use herald_control::v1::CreateTokenRequest;
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (a, grpc) = start_controlled(&redis, &mock, "").await;
    let (b, _) = start_controlled(&redis, &mock, "").await;
    let to = number(3);
    let mut admin = client(grpc, TOKEN).await;
    let mut tokens = Vec::new();
    for (name, role) in [
        ("rita", "read"),
        ("otto", "operator"),
        ("cleo", "compliance"),
    ] {
        let req = CreateTokenRequest {
            name: name.into(),
            role: role.into(),
        };
        tokens.push(
            admin
                .create_token(req)
                .await
                .expect("token")
                .into_inner()
                .token,
        );
    }
    let (reader, operator, compliance) = (&tokens[0], &tokens[1], &tokens[2]);

    // A dry run shows the diff and the decisions, and stores nothing.
    let file = edited(grpc, &closing_window()).await;
    let sample = format!("{to}:transactional:acme");
    let out = heraldctl(
        grpc,
        TOKEN,
        &[
            "policy",
            "set",
            &file.toml_path(),
            "--dry-run",
            "--sample",
            &sample,
        ],
    )
    .await
    .expect("dry run");
    assert!(out.contains("+id = \"acme-maintenance\""), "{out}");
    assert!(
        out.contains("allow") && out.contains("defer / quiet_hours"),
        "{out}"
    );
    assert!(out.contains("nothing stored (policy stays v1)"), "{out}");
    assert_eq!(decision(&a, "acme", &to).await, ("allow".into(), 1));

    // Roles: a read token changes nothing, not even in a dry run; an
    // operator may not touch tenants; compliance may not touch throttles.
    for (who, t, why) in [
        ("rita", reader, "role `read`"),
        ("otto", operator, "changing `tenants` needs admin"),
    ] {
        let err = heraldctl(grpc, t, &["policy", "set", &file.toml_path()])
            .await
            .expect_err(who);
        assert!(
            err.contains("PermissionDenied") && err.contains(why),
            "{who}: {err}"
        );
    }
    let err = heraldctl(grpc, reader, &["policy", "rollback", "1"])
        .await
        .expect_err("read may not roll back");
    assert!(err.contains("PermissionDenied"), "{err}");
    let err = heraldctl(
        grpc,
        compliance,
        &["throttle", "set", "carrier:unknown", "5"],
    )
    .await
    .expect_err("compliance may not throttle");
    assert!(err.contains("PermissionDenied"), "{err}");

    // The change, then the rollback: decisions follow on both instances.
    heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect("set");
    both_within_a_second(&a, &b, Instant::now(), "defer", 2, &to).await;
    let out = heraldctl(
        grpc,
        TOKEN,
        &["policy", "rollback", "1", "--comment", "wrong week"],
    )
    .await
    .expect("rollback");
    let since = Instant::now();
    assert!(out.contains("policy v3 stored"), "{out}");
    assert!(out.contains("-id = \"acme-maintenance\""), "{out}");
    both_within_a_second(&a, &b, since, "allow", 3, &to).await;
    let diff = heraldctl(grpc, reader, &["policy", "diff", "1", "3"])
        .await
        .expect("diff");
    assert!(
        !diff
            .lines()
            .any(|l| l.starts_with('+') && !l.starts_with("+++")),
        "{diff}"
    );
    let history = heraldctl(grpc, reader, &["policy", "history"])
        .await
        .expect("history");
    assert!(history.contains("rollback to v1: wrong week"), "{history}");

    // Export writes the files back; storing them again changes nothing.
    let dir = std::env::temp_dir().join(format!("herald-policy-export-{}", free_port()));
    let out = heraldctl(
        grpc,
        reader,
        &["policy", "export", dir.to_str().expect("utf-8")],
    )
    .await
    .expect("export");
    assert!(out.contains("policy v3 written"), "{out}");
    let rules = std::fs::read_to_string(dir.join("compliance.toml")).expect("compliance.toml");
    herald_engine::policy::rules::Rules::from_toml_str(&rules).expect("a loadable rule table");
    let exported = dir.join("policy.toml");
    let err = heraldctl(
        grpc,
        TOKEN,
        &["policy", "set", exported.to_str().expect("utf-8")],
    )
    .await
    .expect_err("no change");
    assert!(err.contains("nothing changes"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    // tenant get shows the tenant's section of the live version.
    heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect("set again");
    let out = heraldctl(grpc, reader, &["tenant", "get", "acme"])
        .await
        .expect("tenant get");
    assert!(
        out.contains("policy v4") && out.contains("acme-maintenance"),
        "{out}"
    );
    let err = heraldctl(grpc, reader, &["tenant", "get", "nobody"])
        .await
        .expect_err("unknown tenant");
    assert!(err.contains("NotFound"), "{err}");

    // Every stored version but the seed is in the audit trail once, with
    // its before and after.
    let audit = heraldctl(grpc, TOKEN, &["audit", "export", "--json"])
        .await
        .expect("audit");
    let entries: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .filter(|e: &Value| e["what"].as_str().is_some_and(|w| w.starts_with("policy.")))
        .collect();
    let versions: Vec<(String, u64, u64)> = entries
        .iter()
        .map(|e| {
            let (before, after) = (&e["before"], &e["after"]);
            (
                e["what"].as_str().unwrap_or_default().to_string(),
                before["version"].as_u64().unwrap_or(0),
                after["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            ("policy.set".into(), 1, 2),
            ("policy.rollback".into(), 2, 3),
            ("policy.set".into(), 3, 4),
        ],
        "{audit}"
    );
    assert!(entries.iter().all(|e| e["who"] == "bootstrap"), "{audit}");
    assert!(
        entries[0]["after"]["diff"]
            .as_str()
            .is_some_and(|d| d.contains("+id = \"acme-maintenance\"")),
        "the change itself is in the trail: {audit}"
    );

    // A restart with other files keeps the store's version.
    b.stop().await.expect("stop b");
    let (b, _) = start_controlled(
        &redis,
        &mock,
        "[tenants.acme]\nopt_out_instructions = \"Text STOP to quit.\"\n",
    )
    .await;
    assert_eq!(decision(&b, "acme", &to).await, ("defer".into(), 4));
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

/// A version one instance cannot run (it routes to a provider only the
/// other has) is refused there: that instance keeps its version, says so
/// in `policy status`, and sending goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_cannot_run_a_new_version_keeps_the_one_it_runs() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let backup = format!(
        "[providers.backup]\nkind = \"twilio\"\nbase_url = \"{}\"\naccount_sid = \"ACmock0000000000000000000000000001\"\nauth_token = \"mock-token\"\nfrom = \"+15005550006\"\n",
        mock.base_url()
    );
    let (a, grpc) = start_controlled(&redis, &mock, &backup).await;
    let (b, _) = start_controlled(&redis, &mock, "").await;
    let mut conn = redis.conn().await;
    let to = number(4);

    let file = edited(
        grpc,
        "[tenants.acme]\n[routes.tenants.acme]\ndefault = [\"backup\"]\n",
    )
    .await;
    heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect("a has the provider: stored");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = heraldctl(grpc, TOKEN, &["policy", "status", "--json"])
            .await
            .expect("status");
        let s: Value = serde_json::from_str(&s).expect("json");
        let mut versions: Vec<u64> = s["instances"]
            .as_array()
            .map(|i| i.iter().filter_map(|i| i["version"].as_u64()).collect())
            .unwrap_or_default();
        versions.sort_unstable();
        if versions == [1, 2] {
            break;
        }
        assert!(Instant::now() < deadline, "a on v2, b still on v1: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(decision(&a, "acme", &to).await.1, 2);
    assert_eq!(decision(&b, "acme", &to).await.1, 1, "b refused v2");
    // Both still send.
    send_all(&mut conn, "go-", 10).await;
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

/// A template published through the policy store renders on the dispatch
/// path: the locale's text with typed values, the version in the event and
/// the record (with the text's hash); a missing variable or an unknown
/// template is rejected naming it; `name@1` keeps rendering version 1 after
/// version 2 is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_from_the_policy_renders_and_a_missing_variable_is_named() {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let (h, grpc) = start_controlled(&redis, &mock, "").await;
    let mut conn = redis.conn().await;
    let template = |version: u32, en: &str| {
        format!(
            "[[templates.acme.payment_due]]\nversion = {version}\ncategory = \"transactional\"\nvars = {{ name = \"text\", amount = \"money\", due_date = \"date\" }}\ntext.en = \"{en}\"\ntext.es = \"Hola {{name}}, su pago de {{amount}} vence el {{due_date}}.\"\n"
        )
    };
    let v1 = template(1, "Hi {name}, your payment of {amount} is due {due_date}.");
    let file = edited(grpc, &format!("[tenants.acme]\nlocale = \"en-US\"\n{v1}")).await;
    heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect("publish v1");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let vars = json!({"name": "Ana", "amount": 1234.5, "due_date": "2026-12-01"});
    let send = |id: &str, template: &str, vars: Value, locale: Option<&str>| {
        let mut m = json!({"id": id, "tenant": "acme", "to": number(5), "template": template, "vars": vars});
        if let Some(l) = locale {
            m["locale"] = json!(l);
        }
        m.to_string().into_bytes()
    };
    xadd_raw(
        &mut conn,
        4,
        &[
            send("tpl-es", "payment_due", vars.clone(), Some("es-US")),
            send("tpl-en", "payment_due", vars.clone(), None),
            send(
                "tpl-hole",
                "payment_due",
                json!({"name": "Ana", "amount": 5}),
                None,
            ),
            send(
                "tpl-bad",
                "payment_due",
                json!({"name": "Ana", "amount": "lots", "due_date": "2026-12-01"}),
                None,
            ),
            send("tpl-none", "welcome", json!({}), None),
        ],
    )
    .await;
    let ev = wait_events(&mut conn, "5 decided", Duration::from_secs(10), |ev| {
        of_prefix(ev, "tpl-").count() >= 5
    })
    .await;
    let get = |id: &str| {
        of_prefix(&ev, id)
            .find(|e| e.get("id").map(String::as_str) == Some(id))
            .cloned()
            .unwrap_or_default()
    };
    let f = |e: &std::collections::HashMap<String, String>, k: &str| {
        e.get(k).cloned().unwrap_or_default()
    };
    let es = get("tpl-es");
    assert_eq!(
        (
            f(&es, "status"),
            f(&es, "template"),
            f(&es, "template_version")
        ),
        ("sent".into(), "payment_due".into(), "1".into()),
        "{es:?}"
    );
    let hole = get("tpl-hole");
    assert_eq!(
        (f(&hole, "status"), f(&hole, "reason")),
        ("rejected".into(), "missing_variable".into()),
        "{hole:?}"
    );
    assert!(f(&hole, "detail").contains("`due_date`"), "{hole:?}");
    let bad = get("tpl-bad");
    assert_eq!(f(&bad, "reason"), "missing_variable", "{bad:?}");
    assert!(f(&bad, "detail").contains("`amount`"), "{bad:?}");
    let none = get("tpl-none");
    assert_eq!(
        (f(&none, "status"), f(&none, "reason")),
        ("rejected".into(), "unknown_template".into()),
        "{none:?}"
    );
    let bodies: Vec<String> = mock.recorded().into_iter().map(|r| r.body).collect();
    let es_text = "Hola Ana, su pago de $1,234.50 vence el 1 de diciembre de 2026.";
    let en_text = "Hi Ana, your payment of $1,234.50 is due December 1, 2026.";
    assert!(
        bodies.iter().any(|b| b == es_text) && bodies.iter().any(|b| b == en_text),
        "{bodies:?}"
    );
    assert_eq!(
        bodies.len(),
        2,
        "only the two renderable ones went: {bodies:?}"
    );
    let (version, hash): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(herald_engine::keys::message("acme", "tpl-es"))
        .arg("template_version")
        .arg("body_sha256")
        .query_async(&mut conn)
        .await
        .expect("record");
    assert_eq!(version.as_deref(), Some("1"));
    assert_eq!(
        hash,
        Some(herald_engine::secret::sha256_hex(es_text.as_bytes()))
    );

    // Version 2: new messages get it; `payment_due@1` still renders v1.
    let v2 = template(2, "{name}: {amount} due {due_date}.");
    let file = edited(grpc, &v2).await;
    heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect("publish v2");
    // Editing the published version 1 instead is refused.
    let doc = heraldctl(grpc, TOKEN, &["policy", "get"])
        .await
        .expect("get");
    let file = TempFile::new("edit.toml", &doc.replace("your payment of", "your bill of"));
    let err = heraldctl(grpc, TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect_err("published versions are immutable");
    assert!(
        err.contains("cannot be edited") && err.contains("add version 3"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    xadd_raw(
        &mut conn,
        4,
        &[
            send("v2-new", "payment_due", vars.clone(), None),
            send("v2-pinned", "payment_due@1", vars.clone(), None),
        ],
    )
    .await;
    let ev = wait_events(&mut conn, "2 sent", Duration::from_secs(10), |ev| {
        of_prefix(ev, "v2-")
            .filter(|e| e.get("status").map(String::as_str) == Some("sent"))
            .count()
            == 2
    })
    .await;
    let versions: std::collections::BTreeMap<String, String> = of_prefix(&ev, "v2-")
        .map(|e| (f(e, "id"), f(e, "template_version")))
        .collect();
    assert_eq!(versions.get("v2-new").map(String::as_str), Some("2"));
    assert_eq!(versions.get("v2-pinned").map(String::as_str), Some("1"));
    let bodies: Vec<String> = mock.recorded().into_iter().map(|r| r.body).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b == "Ana: $1,234.50 due December 1, 2026."),
        "{bodies:?}"
    );
    assert_eq!(
        bodies.iter().filter(|b| *b == en_text).count(),
        2,
        "v1 again, pinned: {bodies:?}"
    );
    h.stop().await.expect("stop");
}
