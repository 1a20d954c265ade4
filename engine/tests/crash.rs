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
