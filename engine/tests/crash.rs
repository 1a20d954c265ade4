//! Crash safety: `kill -9` the real `herald` binary mid-load, start it again,
//! and check that every message was sent at least once and that no more were
//! sent twice than were in flight at the kill.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MESSAGES: usize = 20_000;

fn spawn_herald(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("herald binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_nothing_and_bounds_duplicates() {
    let redis = RedisServer::start();
    let mock = mock(5, 0.0).await;
    let dir = std::env::temp_dir().join(format!("herald-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("herald.toml");
    let extra = format!("{FAST_DISPATCH}max_in_flight = 2000\n");
    std::fs::File::create(&config)
        .unwrap()
        .write_all(config_text(&redis, &mock.base_url(), free_port(), &extra).as_bytes())
        .unwrap();
    let mut conn = redis.conn().await;

    // Queue everything first, in chunks.
    let all: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| msg_json(&format!("k{i}"), &number(i), &format!("k{i}")))
        .collect();
    for chunk in all.chunks(2000) {
        xadd_raw(&mut conn, 4, chunk).await;
    }

    let mut herald = spawn_herald(&config, &dir.join("herald-1.log"));
    // Let it get going, then kill it hard mid-way.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sent: u64 = redis::cmd("XLEN")
            .arg("herald:events")
            .query_async(&mut conn)
            .await
            .unwrap();
        if sent as usize >= MESSAGES / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "herald made no progress; see {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    herald.kill().expect("kill -9");
    herald.wait().unwrap();
    // In flight at the kill: entries read by the dead consumer whose outcome
    // was not recorded.
    let in_flight_at_kill = pending_total(&mut conn, 4).await;
    let sent_before_restart = mock.stats().accepted;

    let mut herald = spawn_herald(&config, &dir.join("herald-2.log"));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ev = events(&mut conn).await;
        let decided = ev
            .iter()
            .filter(|e| e["status"] == "sent")
            .map(|e| &e["id"])
            .collect::<std::collections::HashSet<_>>()
            .len();
        if decided == MESSAGES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {decided} of {MESSAGES} decided; see {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(herald.id().to_string())
        .status();
    let status = herald.wait().unwrap();
    assert!(status.success(), "herald exited with {status} on SIGTERM");

    let mut sends: HashMap<String, u32> = HashMap::new();
    for r in mock.recorded() {
        *sends.entry(r.body).or_default() += 1;
    }
    let never: Vec<usize> = (0..MESSAGES)
        .filter(|i| !sends.contains_key(&format!("k{i}")))
        .collect();
    let twice = sends.values().filter(|n| **n > 1).count() as u64;
    println!(
        "kill -9 after {sent_before_restart} sends: in flight at the kill = {in_flight_at_kill}, sent twice = {twice}, never sent = {}",
        never.len()
    );
    assert!(
        never.is_empty(),
        "messages never sent: {:?}",
        &never[..never.len().min(10)]
    );
    assert!(
        twice <= in_flight_at_kill,
        "{twice} messages sent twice, more than the {in_flight_at_kill} in flight at the kill"
    );
    assert_eq!(pending_total(&mut conn, 4).await, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kill -9` in the middle of sequences: 150 enrolments of three steps that
/// are all due, and 20 of the seven-step payment reminder that are not.
/// After a restart every due step is sent; only a step in flight at the
/// kill may reach the provider twice (the provider may have it:
/// `ambiguous_policy = "resend"`, the default), so no more are sent twice
/// than were in flight; and every waiting step is still in Redis with its
/// timer and goes nowhere early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_sequence_loses_no_step_and_repeats_only_what_was_in_flight() {
    const N: usize = 150;
    let redis = RedisServer::start();
    let mock = mock(20, 0.0).await;
    let dir = std::env::temp_dir().join(format!("herald-crash-seq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let extra = FAST_DISPATCH.to_string();

    // The `now` schedule goes into the policy store through an in-process
    // Herald first; the binary started later runs the store's version.
    let (h, grpc) = start_controlled(&redis, &mock, "").await;
    let doc = heraldctl(grpc, ADMIN_TOKEN, &["policy", "get"])
        .await
        .expect("policy get");
    let mut schedule = String::new();
    for n in 1..=3 {
        schedule.push_str(&format!(
            "[[templates.acme.now_{n}]]\nversion = 1\ncategory = \"transactional\"\nvars = {{ ref = \"text\" }}\ntext.en = \"s{n} {{ref}}\"\n\n"
        ));
    }
    for (n, day) in [(1, -2), (2, -1), (3, 0)] {
        schedule.push_str(&format!(
            "[[schedules.acme.now.steps]]\nday = {day}\nat = \"00:00\"\ntemplate = \"now_{n}\"\nmax_late = \"7d\"\n\n"
        ));
    }
    let file = TempFile::new("policy.toml", &format!("{doc}\n{schedule}"));
    heraldctl(grpc, ADMIN_TOKEN, &["policy", "set", &file.toml_path()])
        .await
        .expect("policy set");
    h.stop().await.expect("stopped");

    let config = dir.join("herald.toml");
    std::fs::File::create(&config)
        .unwrap()
        .write_all(config_text(&redis, &mock.base_url(), free_port(), &extra).as_bytes())
        .unwrap();
    let mut conn = redis.conn().await;
    let anchor = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .expect("a date")
        .to_string();
    let mut msgs: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            serde_json::json!({"id": format!("q{i}"), "tenant": "acme", "to": number(i),
                "sequence": {"schedule": "now", "anchor": anchor}, "vars": {"ref": format!("q{i}")}})
            .to_string()
            .into_bytes()
        })
        .collect();
    msgs.extend((0..20).map(|i| {
        serde_json::json!({"id": format!("later{i}"), "tenant": "acme", "to": number(1000 + i),
            "sequence": {"schedule": "payment_reminder", "anchor": "2027-03-14"},
            "vars": {"name": "Ana", "amount": 10, "due_date": "2027-03-14"}})
        .to_string()
        .into_bytes()
    }));
    xadd_raw(&mut conn, 4, &msgs).await;

    let mut herald = spawn_herald(&config, &dir.join("herald-1.log"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while mock.stats().accepted < (N as u64) {
        assert!(
            Instant::now() < deadline,
            "no progress; see {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    herald.kill().expect("kill -9");
    herald.wait().unwrap();
    let at_kill = mock.stats().accepted;
    let in_flight_at_kill = pending_total(&mut conn, 4).await;

    let mut herald = spawn_herald(&config, &dir.join("herald-2.log"));
    let ids: Vec<String> = (0..N)
        .flat_map(|i| (1..=3).map(move |n| format!("q{i}/{n}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let ev = loop {
        let ev = events(&mut conn).await;
        let decided: std::collections::HashSet<&str> = ev
            .iter()
            .filter(|e| e["status"] == "sent")
            .map(|e| e["id"].as_str())
            .collect();
        if ids.iter().all(|id| decided.contains(id.as_str())) {
            break ev;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} steps decided; see {}",
            decided.len(),
            ids.len(),
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(herald.id().to_string())
        .status();
    assert!(herald.wait().unwrap().success());

    let mut sends: HashMap<String, u32> = HashMap::new();
    for r in mock.recorded() {
        *sends.entry(r.body).or_default() += 1;
    }
    let mut twice = 0u64;
    for id in &ids {
        let ends: Vec<&HashMap<String, String>> = ev
            .iter()
            .filter(|e| {
                &e["id"] == id
                    && matches!(
                        e["status"].as_str(),
                        "sent" | "failed" | "cancelled" | "expired"
                    )
            })
            .collect();
        assert!(
            !ends.is_empty() && ends.iter().all(|e| e["status"] == "sent"),
            "{id}: {ends:?}"
        );
        let (q, n) = id.split_once('/').expect("a step id");
        let got = sends.get(&format!("s{n} {q}")).copied().unwrap_or(0);
        assert!(
            (1..=2).contains(&got),
            "{id} reached the provider {got} times"
        );
        twice += u64::from(got == 2);
    }
    println!(
        "kill -9 after {at_kill} sends: in flight at the kill = {in_flight_at_kill}, steps sent twice = {twice}"
    );
    assert!(
        twice <= in_flight_at_kill,
        "{twice} sent twice, {in_flight_at_kill} in flight at the kill"
    );
    assert_eq!(
        sends.len(),
        ids.len(),
        "nothing but the due steps was sent: {}",
        sends.len()
    );
    // The waiting sequences are whole: active, seven timers each.
    for i in 0..20 {
        let state: Option<String> = redis::cmd("HGET")
            .arg(format!("herald:seq:acme:later{i}"))
            .arg("state")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(state.as_deref(), Some("active"), "later{i}");
        for n in 1..=7 {
            let due: Option<f64> = redis::cmd("ZSCORE")
                .arg("herald:delayed")
                .arg(format!("acme:later{i}/{n}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(due.is_some(), "later{i}/{n} has its timer");
        }
    }
    assert_eq!(pending_total(&mut conn, 4).await, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
