//! Scenario runner against a real redis-server, with a stand-in for Herald
//! that reads the ingest streams and writes outcome events by the contract.
use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_loadtest::scenario::{
    self, EVENTS_STREAM, HeraldSection, MockSection, Report, Scenario, fnv1a64, partition_of,
    recipient_number, stream_name,
};
use indicatif::{MultiProgress, ProgressDrawTarget};
use redis::Value;
use redis::aio::MultiplexedConnection;

// ---------------------------------------------------------------- harness

/// A redis-server on a free port, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed at /usr/bin/redis-server");
        let server = Self { child, port };
        let client = redis::Client::open(server.url()).unwrap();
        for _ in 0..200 {
            if let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on port {port} did not answer PING");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn conn(&self) -> MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap();
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scenario(redis: &RedisServer, messages: u64, partitions: u32) -> Scenario {
    let mut s = Scenario::from_toml("name = \"test\"").unwrap();
    s.redis.url = redis.url();
    s.redis.partitions = partitions;
    s.load.messages = messages;
    s.load.rate = 0;
    s.load.batch = 64;
    s.load.recipients = 50;
    s.wait.timeout_secs = 30;
    s
}

async fn run_quietly(s: Scenario) -> anyhow::Result<Report> {
    scenario::run_with(
        s,
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
    )
    .await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A unique path under the temp dir for this test process.
fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("herald-loadtest-{}-{n}-{name}", std::process::id()))
}

// ---------------------------------------------------------- fake Herald

/// One ingest entry as the fake Herald read it.
#[derive(Debug)]
struct Seen {
    partition: u32,
    msg: serde_json::Value,
}

/// How the fake Herald answers message `i` (its index in the run).
#[derive(Clone, Copy)]
enum Answer {
    Sent,
    /// `sent` stamped this many ms after the entry's queue time (the ms
    /// part of its stream entry id), as a slow provider would make it.
    SentAfter(u64),
    DeferredThenSent,
    SentTwice,
    Rejected,
    /// A `deferred` event, never a decision.
    DeferredOnly,
    Nothing,
}

/// Reads every `herald:q:{n}` from the start like Herald's consumer would,
/// and writes events for each entry as `answer` says, plus noise from other
/// producers. Returns once `expected` entries were read.
async fn fake_herald(
    mut conn: MultiplexedConnection,
    partitions: u32,
    expected: usize,
    answer: impl Fn(u64) -> Answer,
) -> Vec<Seen> {
    let streams: Vec<String> = (0..partitions).map(stream_name).collect();
    let mut ids: Vec<String> = vec!["0".to_owned(); streams.len()];
    let mut seen = Vec::new();
    while seen.len() < expected {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("BLOCK")
            .arg(200)
            .arg("COUNT")
            .arg(100)
            .arg("STREAMS")
            .arg(&streams)
            .arg(&ids);
        let reply: Value = cmd.query_async(&mut conn).await.unwrap();
        let Value::Array(per_stream) = reply else {
            continue;
        };
        let mut pipe = redis::pipe();
        for stream in per_stream {
            let Value::Array(mut kv) = stream else {
                panic!("unexpected XREAD shape")
            };
            let entries = kv.pop().unwrap();
            let key: String = redis::from_redis_value(kv.pop().unwrap()).unwrap();
            let partition = streams.iter().position(|s| *s == key).unwrap();
            let Value::Array(entries) = entries else {
                panic!("unexpected XREAD shape")
            };
            for entry in entries {
                let (entry_id, fields): (String, Vec<(String, String)>) =
                    redis::from_redis_value(entry).unwrap();
                ids[partition] = entry_id;
                assert_eq!(fields.len(), 1, "one field per entry");
                assert_eq!(fields[0].0, "msg");
                let msg: serde_json::Value = serde_json::from_str(&fields[0].1).unwrap();
                let id = msg["id"].as_str().unwrap().to_owned();
                let index: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
                let answer = answer(index);
                let ts = match answer {
                    Answer::SentAfter(delay) => {
                        let queued_ms: u64 =
                            ids[partition].split('-').next().unwrap().parse().unwrap();
                        queued_ms + delay
                    }
                    _ => now_ms(),
                };
                let event = |status: &str, reason: Option<&str>| {
                    let mut cmd = redis::cmd("XADD");
                    cmd.arg(EVENTS_STREAM).arg("*").arg("id").arg(&id);
                    cmd.arg("tenant").arg(msg["tenant"].as_str().unwrap());
                    cmd.arg("status").arg(status);
                    if let Some(reason) = reason {
                        cmd.arg("reason").arg(reason);
                    }
                    cmd.arg("ts").arg(ts);
                    cmd
                };
                match answer {
                    Answer::Sent | Answer::SentAfter(_) => {
                        pipe.add_command(event("sent", None));
                    }
                    Answer::DeferredThenSent => {
                        pipe.add_command(event("deferred", Some("throttled")));
                        pipe.add_command(event("sent", None));
                    }
                    Answer::SentTwice => {
                        pipe.add_command(event("sent", None));
                        pipe.add_command(event("sent", None));
                    }
                    Answer::Rejected => {
                        pipe.add_command(event("rejected", Some("invalid_number")));
                    }
                    Answer::DeferredOnly => {
                        pipe.add_command(event("deferred", Some("quiet_hours")));
                    }
                    Answer::Nothing => {}
                }
                // Another producer's message and an unrelated run share the
                // stream; the runner must not count them.
                pipe.cmd("XADD")
                    .arg(EVENTS_STREAM)
                    .arg("*")
                    .arg("id")
                    .arg(format!("upstream-{index}"))
                    .arg("status")
                    .arg("sent")
                    .arg("ts")
                    .arg(now_ms());
                pipe.cmd("XADD")
                    .arg(EVENTS_STREAM)
                    .arg("*")
                    .arg("id")
                    .arg(format!("lt-0000beef-{index}"))
                    .arg("status")
                    .arg("failed")
                    .arg("ts")
                    .arg(now_ms());
                seen.push(Seen {
                    partition: partition as u32,
                    msg,
                });
            }
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    seen
}

// ------------------------------------------------------------------ runs

#[tokio::test]
async fn counts_every_decision_of_a_run() {
    let redis = RedisServer::start();
    // An earlier run's leftovers must not be read.
    let mut conn = redis.conn().await;
    let _: String = redis::cmd("XADD")
        .arg(EVENTS_STREAM)
        .arg("*")
        .arg("id")
        .arg("lt-old-1")
        .arg("status")
        .arg("sent")
        .arg("ts")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();

    let mut s = scenario(&redis, 300, 4);
    s.load.body = "Reminder {n}: payment due.".to_owned();
    let fake = tokio::spawn(fake_herald(redis.conn().await, 4, 300, |i| match i {
        0 => Answer::SentTwice,
        i if i % 50 == 7 => Answer::Rejected,
        i if i % 10 == 3 => Answer::DeferredThenSent,
        _ => Answer::Sent,
    }));
    let report = run_quietly(s).await.unwrap();
    let seen = fake.await.unwrap();

    assert_eq!(report.messages, 300);
    assert_eq!(report.decided, 300);
    assert_eq!(report.missing, 0);
    assert_eq!(report.count("sent"), 294);
    assert_eq!(report.count("rejected"), 6);
    assert_eq!(report.reasons["rejected"]["invalid_number"], 6);
    assert!(!report.reasons.contains_key("sent"));
    assert_eq!(report.ever_deferred, 30);
    assert_eq!(report.extra_decisions, 1);
    assert_eq!(report.malformed_events, 0);
    assert_eq!(report.latency_ms.unwrap().count, 300);
    assert!(report.end_to_end_throughput.is_some());
    report.check().unwrap();
    let printed = report.to_string();
    assert!(printed.contains("invalid_number"), "{printed}");

    // What reached the streams follows the ingest contract.
    assert_eq!(seen.len(), 300);
    let prefix = format!("lt-{}-", report.run_id);
    let mut indexes = HashSet::new();
    for Seen { partition, msg } in &seen {
        let to = msg["to"].as_str().unwrap();
        assert_eq!(
            *partition,
            partition_of(to, 4),
            "{to} is on the wrong stream"
        );
        let id = msg["id"].as_str().unwrap();
        let index: u64 = id.strip_prefix(&prefix).unwrap().parse().unwrap();
        assert!(indexes.insert(index), "id {id} queued twice");
        assert_eq!(msg["tenant"], "loadtest");
        assert_eq!(msg["category"], "transactional");
        assert_eq!(msg["body"], format!("Reminder {index}: payment due."));
        let mut expected_to = String::new();
        recipient_number(index % 50, &mut expected_to);
        assert_eq!(to, expected_to);
    }
    assert_eq!(indexes.len(), 300);
}

/// Latency is enqueue → decision `ts`. Decisions stamped 0.7 s and 4 s
/// after their entries were queued must read as that, whatever the
/// histogram's starting range (it once clamped everything past 2047 ms to
/// 2 ms, so a run where every send took a second reported p50 2).
#[tokio::test]
async fn latency_is_enqueue_to_decision_ts() {
    let redis = RedisServer::start();
    let s = scenario(&redis, 200, 4);
    // 60 % at +700 ms, 40 % at +4000 ms.
    let delay = |i: u64| if i % 10 < 6 { 700 } else { 4000 };
    let fake = tokio::spawn(fake_herald(redis.conn().await, 4, 200, move |i| {
        Answer::SentAfter(delay(i))
    }));
    let report = run_quietly(s).await.unwrap();
    fake.await.unwrap();
    assert_eq!((report.decided, report.missing), (200, 0));
    let l = report.latency_ms.unwrap();
    assert_eq!(l.count, 200);
    // Queue time (the entry id) is at or after the runner's enqueue stamp,
    // so each latency is its delay plus the pipeline's round trip.
    let slack = 2000;
    assert!((700..700 + slack).contains(&l.p50), "p50: {l:?}");
    assert!((4000..4000 + slack).contains(&l.p90), "p90: {l:?}");
    assert!((4000..4000 + slack).contains(&l.p99), "p99: {l:?}");
    assert!((4000..4000 + slack).contains(&l.max), "max: {l:?}");
}

#[tokio::test]
async fn paced_run_completes() {
    let redis = RedisServer::start();
    let mut s = scenario(&redis, 200, 8);
    s.load.rate = 4000;
    s.mock = Some(MockSection {
        port: 0,
        ..MockSection::default()
    });
    let fake = tokio::spawn(fake_herald(redis.conn().await, 8, 200, |_| Answer::Sent));
    let report = run_quietly(s).await.unwrap();
    fake.await.unwrap();
    assert_eq!(
        (report.decided, report.missing, report.count("sent")),
        (200, 0, 200)
    );
    // Nothing sent to the mock in this test; its counters are reported.
    assert_eq!(report.mock.unwrap().requests, 0);
    assert!(report.to_string().contains("max in flight"));
}

#[tokio::test]
async fn missing_messages_fail_the_run_and_say_why() {
    let redis = RedisServer::start();
    let mut s = scenario(&redis, 20, 2);
    s.wait.timeout_secs = 1;
    let fake = tokio::spawn(fake_herald(redis.conn().await, 2, 20, |i| match i {
        0 | 19 => Answer::Nothing,
        5 => Answer::DeferredOnly,
        _ => Answer::Sent,
    }));
    let report = run_quietly(s).await.unwrap();
    fake.await.unwrap();

    assert_eq!(report.decided, 17);
    assert_eq!(report.missing, 3);
    assert_eq!(report.missing_by_last_event["deferred: quiet_hours"], 1);
    assert_eq!(report.missing_by_last_event["no event"], 2);
    let mut sample = report.missing_sample.clone();
    sample.sort();
    let prefix = format!("lt-{}-", report.run_id);
    assert_eq!(
        sample,
        [
            format!("{prefix}0"),
            format!("{prefix}19"),
            format!("{prefix}5")
        ]
    );
    let err = report.check().unwrap_err().to_string();
    assert!(err.contains("3 of 20"), "{err}");
}

#[tokio::test]
async fn spawned_herald_gets_the_environment_and_is_stopped() {
    let redis = RedisServer::start();
    let env_file = temp_path("env");
    let log = temp_path("log");
    let mut s = scenario(&redis, 50, 3);
    s.herald = Some(HeraldSection {
        command: "sh".to_owned(),
        args: vec![
            "-c".to_owned(),
            format!(
                "echo \"$HERALD_DISPATCH__MAX_IN_FLIGHT $HERALD_QUEUE__PARTITIONS $HERALD_REDIS__URL\" > {}; echo started; exec sleep 60",
                env_file.display()
            ),
        ],
        env: [(
            "HERALD_DISPATCH__MAX_IN_FLIGHT".to_owned(),
            "20000".to_owned(),
        )]
        .into(),
        start_after_fill: true,
        log: log.to_string_lossy().into_owned(),
    });
    // Answer only once the spawned process has written its environment, so
    // the run cannot end (and stop it) before it did.
    let conn = redis.conn().await;
    let written = env_file.clone();
    let fake = tokio::spawn(async move {
        for _ in 0..500 {
            if std::fs::metadata(&written).is_ok_and(|m| m.len() > 0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        fake_herald(conn, 3, 50, |_| Answer::Sent).await
    });
    let report = run_quietly(s).await.unwrap();
    fake.await.unwrap();

    assert_eq!(report.missing, 0);
    assert!(!report.herald_died);
    let exit = report.herald_exit.clone().unwrap();
    assert!(exit.contains("SIGTERM"), "{exit}");
    report.check().unwrap();
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert_eq!(env.trim(), format!("20000 3 {}", redis.url()));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "started\n");
    let _ = std::fs::remove_file(env_file);
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn herald_dying_ends_the_wait_with_an_error() {
    let redis = RedisServer::start();
    let log = temp_path("log");
    let mut s = scenario(&redis, 10, 1);
    s.wait.timeout_secs = 60;
    s.herald = Some(HeraldSection {
        command: "sh".to_owned(),
        args: vec!["-c".to_owned(), "echo boom >&2; exit 3".to_owned()],
        log: log.to_string_lossy().into_owned(),
        ..HeraldSection::default()
    });
    // Nobody answers: only Herald's exit can end the wait before 60 s.
    let report = run_quietly(s).await.unwrap();
    assert!(report.herald_died);
    assert_eq!(report.missing, 10);
    let err = report.check().unwrap_err().to_string();
    assert!(err.contains("exit status: 3"), "{err}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "boom\n");
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = Scenario::from_toml("name = \"x\"").unwrap();
    s.redis.url = format!("redis://127.0.0.1:{port}");
    let err = format!("{:#}", run_quietly(s).await.unwrap_err());
    assert!(err.contains("connecting to redis"), "{err}");
}

// ------------------------------------------------------- scenario files

#[test]
fn defaults_fill_everything_but_the_name() {
    let s = Scenario::from_toml("name = \"x\"").unwrap();
    assert_eq!(s.name, "x");
    assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
    assert_eq!(s.redis.partitions, 8);
    assert_eq!(s.load.messages, 1000);
    assert_eq!(s.load.rate, 500);
    assert_eq!(s.load.tenant, "loadtest");
    assert_eq!(s.load.category, "transactional");
    assert_eq!(s.load.recipients, 1000);
    assert_eq!(s.load.body, "Your payment of $42.00 is due on 2026-12-01.");
    assert_eq!(s.load.batch, 500);
    assert_eq!(s.wait.timeout_secs, 120);
    assert!(s.mock.is_none());
    assert!(s.herald.is_none());

    let s = Scenario::from_toml("name = \"x\"\n[mock]\n[herald]\n").unwrap();
    let mock = s.mock.unwrap();
    assert_eq!(
        (mock.port, mock.latency_ms, mock.error_rate),
        (9090, 0, 0.0)
    );
    assert!(!mock.status_callbacks);
    assert_eq!((mock.drop_rate, mock.slow_ms), (0.0, 15_000));
    let faulty = Scenario::from_toml(
        "name = \"x\"\n[mock]\nrate_limit_rate = 0.25\ndrop_rate = 0.1\nstatus_callbacks = true\nundelivered_rate = 0.5\n",
    )
    .unwrap()
    .mock
    .unwrap();
    assert_eq!(
        (
            faulty.rate_limit_rate,
            faulty.drop_rate,
            faulty.status_callbacks,
            faulty.undelivered_rate
        ),
        (0.25, 0.1, true, 0.5)
    );
    let herald = s.herald.unwrap();
    assert_eq!(herald.command, "target/release/herald");
    assert_eq!(herald.args, ["serve", "--config", "config/herald.toml"]);
    assert!(!herald.start_after_fill);
    assert!(herald.env.is_empty());
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let err = Scenario::from_toml("name = \"x\"\n[load]\nmesages = 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `mesages`"), "{err}");
    let err = Scenario::from_toml("name = \"x\"\nspeed = 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `speed`"), "{err}");
    let err = Scenario::from_toml("[load]\nmessages = 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `name`"), "{err}");
}

#[test]
fn bad_values_name_the_key() {
    for (toml, key) in [
        ("[redis]\npartitions = 0", "redis.partitions"),
        ("[load]\nbatch = 0", "load.batch"),
        ("[load]\nmessages = 0", "load.messages"),
        ("[load]\nrecipients = 0", "load.recipients"),
        ("[wait]\ntimeout_secs = 0", "wait.timeout_secs"),
        ("[mock]\nerror_rate = 1.5", "mock.error_rate"),
        ("[herald]\ncommand = \"\"", "herald.command"),
    ] {
        let err = Scenario::from_toml(&format!("name = \"x\"\n{toml}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
    let err = Scenario::from_toml("name = \"x\"\n[load]\nrate = -1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rate"), "{err}");
}

#[test]
fn environment_overrides_the_redis_url() {
    let s = Scenario::from_toml("name = \"x\"")
        .unwrap()
        .with_env(|name| {
            (name == scenario::env::REDIS_URL).then(|| "redis://127.0.0.1:7777".to_owned())
        });
    assert_eq!(s.redis.url, "redis://127.0.0.1:7777");
    let s = Scenario::from_toml("name = \"x\"")
        .unwrap()
        .with_env(|_| None);
    assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
}

fn shipped(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/scenarios")
        .join(name);
    Scenario::load(&path, |_| None).unwrap()
}

#[test]
fn shipped_scenarios_load() {
    let smoke = shipped("smoke.toml");
    assert_eq!((smoke.load.messages, smoke.load.rate), (2000, 1000));
    // scripts/demo.sh starts the mock and herald itself.
    assert!(smoke.mock.is_none());
    assert!(smoke.herald.is_none());

    let throughput = shipped("throughput.toml");
    assert_eq!(
        (throughput.load.messages, throughput.load.rate),
        (200_000, 0)
    );
    assert!(throughput.herald.unwrap().start_after_fill);

    let concurrency = shipped("concurrency.toml");
    assert_eq!(
        (concurrency.load.messages, concurrency.load.rate),
        (30_000, 0)
    );
    assert_eq!(concurrency.mock.unwrap().latency_ms, 1000);
    let herald = concurrency.herald.unwrap();
    assert_eq!(herald.env["HERALD_DISPATCH__MAX_IN_FLIGHT"], "20000");

    // The h2 variant is throughput.toml but for the provider's protocol.
    let h2 = shipped("throughput-h2.toml");
    assert_eq!((h2.load.messages, h2.load.rate), (200_000, 0));
    assert_eq!(h2.mock.unwrap().latency_ms, 0);
    let herald = h2.herald.unwrap();
    assert!(herald.start_after_fill);
    assert_eq!(herald.env["HERALD_PROVIDERS__TWILIO__HTTP2"], "true");
}

// ------------------------------------------------ partitions and numbers

#[test]
fn partition_hash_is_fnv1a_64() {
    // Published FNV-1a 64 test vectors.
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    // Computed independently (Python) for E.164 numbers.
    assert_eq!(fnv1a64(b"+14152000000"), 0xf965_0cfe_970e_d975);
    assert_eq!(partition_of("+14152000000", 8), 5);
    assert_eq!(partition_of("+12125550123", 8), 7);
    assert_eq!(partition_of("+12125550123", 1), 0);
}

#[test]
fn recipients_are_valid_us_numbers() {
    let mut checked = 0;
    let per_area = 7_990_000u64;
    for area in 0..8u64 {
        for offset in [0, 1, 3_549_999, 3_550_000, 5_000_000, per_area - 1] {
            let mut to = String::new();
            recipient_number(area * per_area + offset, &mut to);
            let parsed = phonenumber::parse(None, &to).unwrap_or_else(|e| panic!("{to}: {e}"));
            assert!(phonenumber::is_valid(&parsed), "{to} is not a valid number");
            assert_eq!(to.len(), 12, "{to}");
            checked += 1;
        }
    }
    assert_eq!(checked, 48);
}

#[tokio::test]
async fn missing_herald_binary_is_a_clear_error() {
    let redis = RedisServer::start();
    let mut s = scenario(&redis, 5, 1);
    let log = temp_path("log");
    s.herald = Some(HeraldSection {
        command: "/nonexistent/herald".to_owned(),
        log: log.to_string_lossy().into_owned(),
        ..HeraldSection::default()
    });
    let err = format!("{:#}", run_quietly(s).await.unwrap_err());
    assert!(
        err.contains("herald.command: starting /nonexistent/herald"),
        "{err}"
    );
    let _ = std::fs::remove_file(log);
}
