//! Test harness: a real `redis-server` on a free port (killable and
//! restartable on the same port), the Twilio-speaking mock provider, and
//! Herald itself, in-process or as the real binary.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_engine::config::Config;
use herald_loadtest::mock::{MockProvider, MockSettings};
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// How a test's `redis-server` keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Append-only file, fsync every second: durable as Herald requires.
    Aof,
    /// Append-only file, fsync on every write: nothing lost on `kill -9`.
    AofAlways,
    /// None: Herald refuses it unless `redis.allow_volatile`.
    Volatile,
}

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Where the append-only file lives.
    dir: PathBuf,
    persistence: Persistence,
}

impl RedisServer {
    /// A durable server (append-only file), as Herald requires.
    pub fn start() -> RedisServer {
        Self::start_with(Persistence::Aof)
    }

    /// A server whose data survives even `kill -9` (fsync always).
    pub fn start_persistent() -> RedisServer {
        Self::start_with(Persistence::AofAlways)
    }

    pub fn start_with(persistence: Persistence) -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-{port}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut s = RedisServer {
            port,
            child: None,
            dir,
            persistence,
        };
        // A port found free can be taken before redis binds it (outbound
        // sockets share the ephemeral range): try another.
        for _ in 0..5 {
            if s.try_spawn() {
                return s;
            }
            s.port = free_port();
        }
        panic!("redis-server did not start (5 ports tried)");
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }

    fn try_spawn(&mut self) -> bool {
        let mut cmd = Command::new(redis_server_binary());
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--protected-mode", "no", "--loglevel", "warning"]);
        cmd.arg("--dir").arg(&self.dir);
        match self.persistence {
            Persistence::Aof => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
            }
            Persistence::AofAlways => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
            }
            Persistence::Volatile => {
                cmd.args(["--appendonly", "no"]);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see README: scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                self.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `kill -9` the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Start it again on the same port with `persistence`, its data gone
    /// (a Redis restarted without its disk).
    pub fn restart_empty(&mut self, persistence: Persistence) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("temp dir");
        self.persistence = persistence;
        self.spawn();
    }

    pub async fn conn(&self) -> MultiplexedConnection {
        let client = redis::Client::open(self.url()).expect("url");
        let cfg =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
        client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .expect("redis connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn redis_server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

pub async fn mock(latency_ms: u64, error_rate: f64) -> MockProvider {
    MockProvider::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        MockSettings {
            latency: Duration::from_millis(latency_ms),
            error_rate,
            record: true,
            ..Default::default()
        },
    )
    .await
    .expect("mock provider")
}

/// A config pointing at `redis` and `mock`, with fast recovery settings;
/// `extra` is TOML appended (sections may not repeat those below).
pub fn config_text(redis: &RedisServer, mock_url: &str, http_port: u16, extra: &str) -> String {
    format!(
        r#"
[redis]
url = "{redis}"
[queue]
partitions = 4
[control]
listen = "127.0.0.1:{control_port}"
[http]
listen = "127.0.0.1:{http_port}"
[http.api_keys]
acme = "acme-key-0123456789abcdef"
[providers.twilio]
kind = "twilio"
base_url = "{mock_url}"
account_sid = "ACmock0000000000000000000000000000"
auth_token = "mock-token"
from = "+15005550006"
[routes]
default = ["twilio"]
# The mock's sender is a long code (1 segment/s by default): not throttled
# here, except in tests about throttling.
[throttle.sender_limits]
"+15005550006" = {{ segments = 0, per = "second" }}
{extra}
"#,
        redis = redis.url(),
        control_port = free_port()
    )
}

/// Dispatch settings that make recovery quick in tests.
pub const FAST_DISPATCH: &str = r#"
[dispatch]
block_ms = 100
claim_idle_ms = 1000
claim_interval_ms = 200
delayed_poll_ms = 50
retry_base_ms = 50
retry_max_ms = 200
shutdown_grace_ms = 5000
"#;

/// Herald running in this process.
pub struct Herald {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), herald_engine::error::Error>>,
    pub http: SocketAddr,
}

impl Herald {
    pub async fn start(cfg_text: &str) -> Herald {
        Self::start_env(cfg_text, Vec::new()).await
    }

    pub async fn start_env(cfg_text: &str, env: Vec<(String, String)>) -> Herald {
        Self::start_full(cfg_text, env, None).await
    }

    /// With the Prometheus recorder, installed once per test process and
    /// shared by every Herald it starts (`cargo test` runs a file's tests
    /// in one process; counters are then shared too).
    pub async fn start_with_metrics(cfg_text: &str) -> Herald {
        static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
            std::sync::OnceLock::new();
        let handle = HANDLE
            .get_or_init(|| herald_engine::telemetry::install_recorder().expect("recorder"))
            .clone();
        Self::start_full(cfg_text, Vec::new(), Some(handle)).await
    }

    async fn start_full(
        cfg_text: &str,
        env: Vec<(String, String)>,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Herald {
        let cfg = Config::from_toml_str(cfg_text, env).expect("valid test config");
        let http = cfg.http.listen;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(herald_engine::server::run(cfg, metrics, shutdown.clone()));
        // Ready when the HTTP listener answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(http).await.is_err() {
            assert!(Instant::now() < deadline, "herald did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Herald {
            shutdown,
            task,
            http,
        }
    }

    pub async fn stop(self) -> Result<(), herald_engine::error::Error> {
        self.shutdown.cancel();
        self.task.await.expect("herald task panicked")
    }
}

/// Create the consumer group on partitions `0..n`, as Herald does at start
/// (a group that exists already is left alone).
pub async fn create_groups(conn: &mut MultiplexedConnection, n: u16) {
    for p in 0..n {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(format!("herald:q:{{{p}}}"))
            .arg("herald")
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        if let Err(e) = r {
            assert_eq!(e.code(), Some("BUSYGROUP"), "XGROUP CREATE: {e}");
        }
    }
}

/// Queue one `msg` on a partition; returns its stream entry id.
pub async fn xadd_one(conn: &mut MultiplexedConnection, partition: u16, msg: Vec<u8>) -> String {
    redis::cmd("XADD")
        .arg(format!("herald:q:{{{partition}}}"))
        .arg("*")
        .arg("msg")
        .arg(msg)
        .query_async(conn)
        .await
        .expect("XADD")
}

/// Read a partition's new entries as `consumer`, which then "dies": they
/// stay pending under its name.
pub async fn read_as(conn: &mut MultiplexedConnection, consumer: &str, partition: u16) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("herald")
        .arg(consumer)
        .arg("COUNT")
        .arg(10_000)
        .arg("STREAMS")
        .arg(format!("herald:q:{{{partition}}}"))
        .arg(">")
        .query_async(conn)
        .await
        .expect("XREADGROUP");
}

/// Queue raw `msg` values, partition by index.
pub async fn xadd_raw(conn: &mut MultiplexedConnection, partitions: u16, msgs: &[Vec<u8>]) {
    let mut pipe = redis::pipe();
    for (i, m) in msgs.iter().enumerate() {
        pipe.cmd("XADD")
            .arg(format!("herald:q:{{{}}}", i as u16 % partitions))
            .arg("*")
            .arg("msg")
            .arg(&m[..]);
    }
    let _: Vec<String> = pipe.query_async(conn).await.expect("xadd");
}

pub fn msg_json(id: &str, to: &str, body: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "tenant": "acme", "to": to, "body": body})
        .to_string()
        .into_bytes()
}

/// Every event on herald:events, as field maps.
pub async fn events(conn: &mut MultiplexedConnection) -> Vec<HashMap<String, String>> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("herald:events")
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("xrange");
    reply
        .ids
        .into_iter()
        .map(|e| {
            e.map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<String>(v).unwrap_or_default()))
                .collect()
        })
        .collect()
}

/// Wait until `pred` holds over the events, or panic with what was seen.
pub async fn wait_events<F>(
    conn: &mut MultiplexedConnection,
    what: &str,
    timeout: Duration,
    pred: F,
) -> Vec<HashMap<String, String>>
where
    F: Fn(&[HashMap<String, String>]) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let ev = events(conn).await;
        if pred(&ev) {
            return ev;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; {} events: {:?}",
                ev.len(),
                ev.iter().rev().take(5).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn count_status(ev: &[HashMap<String, String>], status: &str) -> usize {
    ev.iter()
        .filter(|e| e.get("status").map(String::as_str) == Some(status))
        .count()
}

/// Entries read but not acknowledged, over all partitions.
pub async fn pending_total(conn: &mut MultiplexedConnection, partitions: u16) -> u64 {
    let mut total = 0;
    for p in 0..partitions {
        let v: redis::Value = redis::cmd("XPENDING")
            .arg(format!("herald:q:{{{p}}}"))
            .arg("herald")
            .query_async(conn)
            .await
            .expect("xpending");
        if let redis::Value::Array(items) = v
            && let Some(redis::Value::Int(n)) = items.first()
        {
            total += *n as u64;
        }
    }
    total
}

/// Phone numbers the `phonenumber` crate accepts as valid US numbers.
pub fn number(i: usize) -> String {
    format!("+1415{:07}", 2_000_000 + (i % 7_000_000))
}

/// A minimal HTTP/1.1 client: one request per connection. Returns the
/// status (0 when the connection failed) and the body.
pub async fn http_call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let mut extra = String::new();
    for (k, v) in headers {
        extra.push_str(&format!("{k}: {v}\r\n"));
    }
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A file written for one test (a rule table…), removed when dropped.
pub struct TempFile {
    pub path: std::path::PathBuf,
}

impl TempFile {
    pub fn new(name: &str, contents: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!(
            "herald-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        TempFile { path }
    }

    /// The path, for a TOML string.
    pub fn toml_path(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// An admin client of the control service on `port`, with `token`.
pub async fn client(
    port: u16,
    token: &str,
) -> herald_control::v1::control_client::ControlClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        herald_control::auth::AttachBearer,
    >,
> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect()
        .await
        .expect("control service reachable");
    herald_control::v1::control_client::ControlClient::with_interceptor(
        channel,
        herald_control::auth::attach_bearer(token).expect("token"),
    )
}

/// A TCP proxy between Herald and Redis that can lose one reply: armed, it
/// forwards the next `EXEC` to Redis (which runs the transaction) and then
/// cuts the connection before any reply comes back — the fault of a reply
/// lost after the command applied.
pub struct FaultProxy {
    pub port: u16,
    arm: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// EXECs whose reply was dropped.
    pub cut: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(redis_port: u16) -> FaultProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let arm = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicUsize::new(0));
        let (arm2, cut2) = (Arc::clone(&arm), Arc::clone(&cut));
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", redis_port)).await
                else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let dropped = Arc::new(AtomicBool::new(false));
                let (arm, cut, dropped2) =
                    (Arc::clone(&arm2), Arc::clone(&cut2), Arc::clone(&dropped));
                // Client → Redis.
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        let exec = chunk.windows(10).any(|w| w == b"$4\r\nEXEC\r\n");
                        if exec && arm.swap(false, Ordering::AcqRel) {
                            // No reply from here on reaches the client.
                            dropped.store(true, Ordering::Release);
                            let _ = sw.write_all(chunk).await;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            cut.fetch_add(1, Ordering::AcqRel);
                            return;
                        }
                        if sw.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
                // Redis → client.
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if dropped2.load(Ordering::Acquire)
                            || cw.write_all(&buf[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        FaultProxy {
            port,
            arm,
            cut,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Lose the reply of the next `EXEC`.
    pub fn lose_next_exec_reply(&self) {
        self.arm.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `heraldctl` as an admin would run it.
pub async fn heraldctl(grpc: u16, token: &str, args: &[&str]) -> Result<String, String> {
    use clap::Parser as _;
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let base = ["heraldctl", "--endpoint", &endpoint, "--token", token];
    let cli = herald_control::cli::Cli::try_parse_from(base.iter().chain(args))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    herald_control::cli::run(&cli, &mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

/// The control token `start_controlled` gives Herald (the bootstrap admin).
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// A Herald with its control listener on a free port and `ADMIN_TOKEN`,
/// both from environment overrides as an operator would set them, and
/// `extra` TOML after the fast dispatch settings; returns it and the
/// control port.
pub async fn start_controlled(
    redis: &RedisServer,
    mock: &MockProvider,
    extra: &str,
) -> (Herald, u16) {
    let grpc = free_port();
    let env = vec![
        (
            "HERALD_CONTROL__LISTEN".to_string(),
            format!("127.0.0.1:{grpc}"),
        ),
        ("HERALD_CONTROL__TOKEN".to_string(), ADMIN_TOKEN.to_string()),
    ];
    let text = config_text(
        redis,
        &mock.base_url(),
        free_port(),
        &format!("{FAST_DISPATCH}\n{extra}"),
    );
    (Herald::start_env(&text, env).await, grpc)
}
