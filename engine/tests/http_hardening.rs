//! Hostile or careless HTTP clients (docs/faults.md#hostile-or-careless-clients):
//! slow or silent connections, too many of them, bodies that are too big,
//! too slow or unauthorised. Raw sockets against Herald in-process and a
//! real redis-server, so each test controls every byte and its timing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "acme-key-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789";

/// "At once": far less than any timeout configured below, far more than a
/// loaded machine needs to answer.
const AT_ONCE: Duration = Duration::from_secs(2);

/// Redis, the mock provider, Herald and Herald's HTTP port.
type Running = (
    RedisServer,
    herald_loadtest::mock::MockProvider,
    Herald,
    u16,
);

/// Herald with `extra_http` keys in `[http]` and an admin token.
async fn start(extra_http: &str) -> Running {
    start_with(extra_http, false).await
}

async fn start_with(extra_http: &str, metrics: bool) -> Running {
    let redis = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let mut text = config_text(&redis, &mock.base_url(), port, FAST_DISPATCH);
    // The harness writes `[http]` with `listen` first: the keys under test
    // go right after it, before `[http.api_keys]`.
    text = text.replace(
        &format!("listen = \"127.0.0.1:{port}\"\n"),
        &format!("listen = \"127.0.0.1:{port}\"\n{extra_http}\n"),
    );
    text = text.replace("[control]\n", &format!("[control]\ntoken = \"{ADMIN}\"\n"));
    let herald = if metrics {
        Herald::start_with_metrics(&text).await
    } else {
        Herald::start(&text).await
    };
    (redis, mock, herald, port)
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to herald")
}

/// One HTTP/1.1 response: status and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// Read one response within `within`; `None` when none came (or the
/// connection closed first).
async fn answer(s: &mut TcpStream, within: Duration) -> Option<Answer> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let status = head.get(9..12)?.parse().ok()?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Some(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// Wait until Herald closes the connection (EOF or reset), discarding
/// anything it sends; when that happened, or `None` after `within`.
async fn closed<R: AsyncRead + Unpin>(s: &mut R, within: Duration) -> Option<Instant> {
    let wait = async {
        let mut chunk = [0u8; 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, wait).await.ok()
}

async fn queued(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let mut total = 0;
    for p in 0..4 {
        let n: u64 = redis::cmd("XLEN")
            .arg(format!("herald:q:{{{p}}}"))
            .query_async(conn)
            .await
            .expect("XLEN");
        total += n;
    }
    total
}

/// A metric's value in Prometheus text (the sum over its label sets).
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_text(port: u16) -> String {
    let (status, body) = tokio::time::timeout(
        AT_ONCE,
        http_call(port, "GET", "/metrics", &[], "text/plain", ""),
    )
    .await
    .expect("/metrics answered");
    assert_eq!(status, 200, "{body}");
    body
}

/// 5,000 connections each sending half a request header and then nothing
/// (slowloris): a real client is still served within 2 s while they are
/// all open, and Herald closes every one of them itself, within 45 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_stop_a_real_client_and_are_closed() {
    const N: usize = 5_000;
    // Short, so the test ends well within the 45 s it allows; long enough
    // that opening 5,000 connections on a loaded machine ends before the
    // first of them is due.
    const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    // Herald's sockets and the test's are in this one process.
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-file limit");
    let (_redis, _mock, herald, port) = start_with("header_timeout_ms = 10000", true).await;

    let started = Instant::now();
    let open = Arc::new(AtomicUsize::new(0));
    let mut readers = tokio::task::JoinSet::new();
    let connecting = Arc::new(tokio::sync::Semaphore::new(200));
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..N {
        let connecting = Arc::clone(&connecting);
        connects.spawn(async move {
            let _p = connecting.acquire_owned().await.expect("semaphore");
            let mut s = connect(port).await;
            let t0 = Instant::now();
            s.write_all(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("half a header");
            (s, t0)
        });
    }
    while let Some(r) = connects.join_next().await {
        let (mut s, t0) = r.expect("connect task");
        let open = Arc::clone(&open);
        open.fetch_add(1, Ordering::SeqCst);
        readers.spawn(async move {
            let mut chunk = [0u8; 256];
            let wait = async {
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            };
            let r =
                tokio::time::timeout(Duration::from_secs(45).saturating_sub(t0.elapsed()), wait)
                    .await
                    .map(|()| t0.elapsed());
            open.fetch_sub(1, Ordering::SeqCst);
            r
        });
    }
    let opened_in = started.elapsed();

    // A real client, while they are open.
    let t = Instant::now();
    let healthz = tokio::time::timeout(
        Duration::from_secs(2),
        http_call(port, "GET", "/healthz", &[], "text/plain", ""),
    )
    .await;
    let healthz_in = t.elapsed();
    assert_eq!(
        healthz.ok(),
        Some((200, "ok\n".to_string())),
        "GET /healthz not answered within 2 s beside {N} slowloris connections"
    );
    // They were all open at Herald while it answered: every one still open
    // here, and accepted (its gauge counts this /metrics request too).
    let still_open = open.load(Ordering::SeqCst);
    // The gauge counts a connection once its task runs, which on a loaded
    // machine may lag its accept a little: wait for it, briefly.
    let mut gauge = 0.0;
    for _ in 0..50 {
        gauge = metric(&metrics_text(port).await, "herald_http_connections", "");
        if gauge >= N as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        still_open, N,
        "connections closed before the client was measured (opening took {opened_in:?})"
    );
    assert!(
        gauge >= N as f64,
        "herald counts {gauge} open connections, expected at least {N}"
    );

    // Herald closes each of them itself.
    let mut slowest = Duration::ZERO;
    let mut left_open = 0;
    while let Some(r) = readers.join_next().await {
        match r.expect("reader task") {
            Ok(d) => slowest = slowest.max(d),
            Err(_) => left_open += 1,
        }
    }
    assert_eq!(
        left_open, 0,
        "{left_open} connections still open after 45 s"
    );
    assert!(
        slowest >= HEADER_TIMEOUT.mul_f64(0.8),
        "closed before the header timeout: {slowest:?}"
    );
    let text = metrics_text(port).await;
    assert!(
        metric(&text, "herald_http_timeouts_total", "kind=\"header\"") >= N as f64,
        "{text}"
    );
    eprintln!(
        "opened {N} in {opened_in:?}; /healthz in {healthz_in:?}; all closed, slowest after {slowest:?}"
    );
    herald.stop().await.expect("clean stop");
}

/// A connection that sends nothing is closed after the header timeout; a
/// keep-alive connection left idle after a request, after the idle
/// timeout; one that starts a second request and trickles it, after the
/// header timeout from its first byte; an idle HTTP/2 connection, after
/// the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    // Far apart, so which of the two closed a connection is plain.
    let header = Duration::from_millis(4_000);
    let idle = Duration::from_millis(1_000);
    let idle_not_header = |d: Duration| d >= idle.mul_f64(0.8) && d < header.mul_f64(0.6);
    let (_redis, _mock, herald, port) =
        start("header_timeout_ms = 4000\nidle_timeout_ms = 1000").await;
    let bound = Duration::from_secs(10);

    // Silent: no byte at all (the protocol is never even known).
    let mut silent = connect(port).await;
    let silent_from = Instant::now();
    // Idle keep-alive: one request answered, then nothing.
    let mut idle_conn = connect(port).await;
    idle_conn
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let a = answer(&mut idle_conn, AT_ONCE).await.expect("healthz");
    assert_eq!(a.status, 200, "{a:?}");
    let idle_from = Instant::now();
    // A second request trickled one byte every 500 ms: bytes keep coming,
    // so only the header timeout, from its first byte, ends it.
    let mut trickle = connect(port).await;
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let a = answer(&mut trickle, AT_ONCE).await.expect("healthz");
    assert_eq!(a.status, 200, "{a:?}");
    let (mut trickle_rd, mut trickle_wr) = trickle.into_split();
    let trickle_from = Instant::now();
    let trickling = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if trickle_wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let (s, i, t) = tokio::join!(
        closed(&mut silent, bound),
        closed(&mut idle_conn, bound),
        closed(&mut trickle_rd, bound)
    );
    trickling.abort();
    let s = s.expect("a silent connection is closed") - silent_from;
    let i = i.expect("an idle keep-alive connection is closed") - idle_from;
    let t = t.expect("a trickled second request is cut off") - trickle_from;
    assert!(s >= header.mul_f64(0.8), "silent closed after {s:?}");
    assert!(
        idle_not_header(i),
        "idle keep-alive closed after {i:?}: expected the idle timeout, not the header timeout"
    );
    assert!(
        t >= header.mul_f64(0.8),
        "a trickled second request was cut after {t:?}, before the header timeout"
    );

    // HTTP/2 (prior knowledge): a request, then an idle connection.
    let io = hyper_util::rt::TokioIo::new(connect(port).await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
    let driver = tokio::spawn(async move {
        let _ = conn.await;
        Instant::now()
    });
    let req = http::Request::get(format!("http://127.0.0.1:{port}/healthz"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("h2 healthz");
    assert_eq!(resp.status(), 200);
    let answered = Instant::now();
    let ended = tokio::time::timeout(bound, driver)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .expect("driver task");
    let h2 = ended - answered;
    assert!(idle_not_header(h2), "idle HTTP/2 closed after {h2:?}");
    eprintln!("closed: silent {s:?}, idle {i:?}, trickled {t:?}, idle h2 {h2:?}");
    herald.stop().await.expect("clean stop");
}

/// At `http.max_connections` a new connection is accepted and closed at
/// once, and counted; once a slot frees, clients are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let (_redis, _mock, herald, port) = start_with("max_connections = 20", true).await;
    let before = metric(
        &metrics_text(port).await,
        "herald_http_connections_refused_total",
        "",
    );
    // That request's connection gives its slot back once closed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect(port).await);
    }
    // Accepted before the next one is tried: each holds its slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = connect(port).await;
    closed(&mut over, AT_ONCE)
        .await
        .expect("a connection over the cap is closed at once");
    // Free one slot: a client is served.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = metrics_text(port).await;
    assert!(
        metric(&text, "herald_http_connections_refused_total", "") >= before + 1.0,
        "{text}"
    );
    drop(held);
    herald.stop().await.expect("clean stop");
}

/// A webhook without `X-Twilio-Signature` announcing a 4 MB body and
/// sending none of it gets 403 at once; a bad signature is still refused
/// (after its body is read, which the check needs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_webhook_is_refused_before_its_body() {
    let (_redis, _mock, herald, port) = start("").await;
    for path in ["/v1/webhooks/twilio/inbound", "/v1/webhooks/twilio/status"] {
        let mut s = connect(port).await;
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: 4000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("headers");
        let a = answer(&mut s, AT_ONCE)
            .await
            .unwrap_or_else(|| panic!("{path}: no answer before the body"));
        assert_eq!(a.status, 403, "{path}: {a:?}");
        assert_eq!(a.json()["error"], "bad_signature", "{path}: {a:?}");

        let body = "From=%2B14155550100&To=%2B15005550006&Body=STOP&MessageSid=SM1";
        let (status, answer) = http_call(
            port,
            "POST",
            path,
            &[("X-Twilio-Signature", "bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==")],
            "application/x-www-form-urlencoded",
            body,
        )
        .await;
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(answer.contains("bad_signature"), "{answer}");
    }
    herald.stop().await.expect("clean stop");
}

/// A webhook whose `Content-Length` is over `http.max_webhook_bytes` gets
/// 413 at once; a chunked body is cut off at the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_over_the_size_limit_is_refused_at_once() {
    let (_redis, _mock, herald, port) = start("").await;
    let limit = 64 * 1024; // the default
    let head = |framing: &str| {
        format!(
            "POST /v1/webhooks/twilio/inbound HTTP/1.1\r\nHost: x\r\n\
             X-Twilio-Signature: bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
        )
    };

    let mut s = connect(port).await;
    s.write_all(head(&format!("Content-Length: {}", limit + 1)).as_bytes())
        .await
        .expect("headers");
    let a = answer(&mut s, AT_ONCE)
        .await
        .expect("413 before the body is sent");
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.json()["error"], "payload_too_large", "{a:?}");
    assert!(
        a.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("http.max_webhook_bytes")),
        "{a:?}"
    );

    // Chunked: one byte over the limit, and the body never ends.
    let mut s = connect(port).await;
    s.write_all(head("Transfer-Encoding: chunked").as_bytes())
        .await
        .expect("headers");
    s.write_all(format!("{:x}\r\n", limit + 1).as_bytes())
        .await
        .expect("chunk size");
    s.write_all(&vec![b'a'; limit + 1]).await.expect("chunk");
    let a = answer(&mut s, AT_ONCE)
        .await
        .expect("413 once the limit is passed");
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.json()["error"], "payload_too_large", "{a:?}");
    herald.stop().await.expect("clean stop");
}

/// `POST /v1/policy/evaluate` with a token that is neither a tenant's API
/// key nor the admin token gets 401 without its body being read; a valid
/// key is still checked against the tenant the body names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_evaluate_refuses_a_bad_token_before_reading_the_body() {
    let (_redis, _mock, herald, port) = start("").await;
    let body = json!({"tenant": "acme", "to": number(1)}).to_string();
    for auth in ["", "Authorization: Bearer wrong-token-0123456789\r\n"] {
        let mut s = connect(port).await;
        s.write_all(
            format!(
                "POST /v1/policy/evaluate HTTP/1.1\r\nHost: x\r\n{auth}\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("headers");
        let a = answer(&mut s, AT_ONCE)
            .await
            .unwrap_or_else(|| panic!("{auth:?}: no answer before the body"));
        assert_eq!(a.status, 401, "{auth:?}: {a:?}");
        assert_eq!(a.json()["error"], "unauthorized", "{a:?}");
    }
    // The tenant's key and the admin token pass; the key of another tenant
    // than the body names does not.
    for (token, tenant, want) in [
        (KEY, "acme", 200),
        (ADMIN, "acme", 200),
        (KEY, "globex", 401),
    ] {
        let body = json!({"tenant": tenant, "to": number(1)}).to_string();
        let auth = format!("Bearer {token}");
        let (status, answer) = http_call(
            port,
            "POST",
            "/v1/policy/evaluate",
            &[("Authorization", &auth)],
            "application/json",
            &body,
        )
        .await;
        assert_eq!(status, want, "{token} for {tenant}: {answer}");
    }
    herald.stop().await.expect("clean stop");
}

/// `POST /v1/messages` with more than `http.max_items` items is refused
/// with the limit and nothing is queued; a body announced over
/// `http.max_request_bytes` is refused before it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_limits_are_refused_and_nothing_is_queued() {
    let (redis, mock, herald, port) = start("max_items = 5").await;
    let mut conn = redis.conn().await;
    let batch = |n: usize| {
        Value::Array(
            (0..n)
                .map(|i| json!({"id": format!("m{n}-{i}"), "to": number(i), "body": "hi"}))
                .collect(),
        )
        .to_string()
    };
    let auth = format!("Bearer {KEY}");
    let headers = [("Authorization", auth.as_str())];

    let (status, body) = http_call(
        port,
        "POST",
        "/v1/messages",
        &headers,
        "application/json",
        &batch(6),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(v["error"], "too_many_items", "{v}");
    assert_eq!(v["max_items"], 5, "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains('5')),
        "{v}"
    );
    assert_eq!(
        queued(&mut conn).await,
        0,
        "a refused batch queued something"
    );

    // At the limit: queued, and each message sent once.
    let (status, body) = http_call(
        port,
        "POST",
        "/v1/messages",
        &headers,
        "application/json",
        &batch(5),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    wait_events(&mut conn, "5 sent", Duration::from_secs(10), |ev| {
        count_status(ev, "sent") == 5
    })
    .await;
    let ev = events(&mut conn).await;
    assert!(
        ev.iter().all(|e| e["id"].starts_with("m5-")),
        "only the batch at the limit was queued: {ev:?}"
    );
    assert_eq!(mock.recorded().len(), 5);

    // Over http.max_request_bytes (4 MiB by default), announced: 413 at once.
    let mut s = connect(port).await;
    s.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            4 * 1024 * 1024 + 1
        )
        .as_bytes(),
    )
    .await
    .expect("headers");
    let a = answer(&mut s, AT_ONCE).await.expect("413 before the body");
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.json()["error"], "payload_too_large", "{a:?}");
    herald.stop().await.expect("clean stop");
}

/// A request whose headers arrive but whose body comes too slowly gets 408
/// within `http.body_timeout_ms`, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_gets_408() {
    let body_timeout = Duration::from_millis(1_000);
    let (redis, _mock, herald, port) = start("body_timeout_ms = 1000").await;
    let mut conn = redis.conn().await;
    let body = json!({"id": "slow", "to": number(1), "body": "hi"}).to_string();
    let mut s = connect(port).await;
    s.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("headers");
    let t0 = Instant::now();
    // One byte every 300 ms: the whole body would take seconds.
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for b in body.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(body_timeout + AT_ONCE, rd.read_to_end(&mut out)).await;
    let took = t0.elapsed();
    assert!(read.is_ok(), "no answer and no close within {took:?}");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\":\"body_timeout\""), "{text}");
    assert!(text.to_lowercase().contains("connection: close"), "{text}");
    assert!(
        took >= body_timeout.mul_f64(0.8),
        "408 after {took:?}, before the body timeout"
    );
    writer.abort();
    assert_eq!(queued(&mut conn).await, 0);
    herald.stop().await.expect("clean stop");
}
