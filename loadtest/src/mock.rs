//! A mock SMS provider speaking Twilio's Messages API wire format, so load
//! tests and the adapter's integration tests drive the real Twilio adapter.
//!
//! - `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: HTTP Basic
//!   `AccountSid:AuthToken`, form fields `To`, `From` / `MessagingServiceSid`,
//!   `Body`, `StatusCallback`; `201` with a Message resource, or Twilio's error
//!   JSON `{"code", "message", "more_info", "status"}`.
//! - `GET /stats`: [`MockStats`] as JSON.
//!
//! Twilio's test-credential magic numbers are mirrored
//! (twilio.com/docs/iam/test-credentials): `To` `+15005550001` → 21211
//! invalid, `+15005550002` → 21612 cannot route, `+15005550003` → 21408 no
//! permission for the region, `+15005550004` → 21610 opted out ("blocked"),
//! `+15005550009` → 21614 not a mobile number; `From` `+15005550001` → 21212,
//! `+15005550007` → 21606, `+15005550008` → 21611 queue full.
//!
//! Built for 50k+ requests/s on two cores next to Herald and Redis: one task
//! per keep-alive connection, counters are relaxed atomics, each answer is
//! written into one pre-sized buffer, and the only lock is the optional
//! recording of accepted messages (test tooling).

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Knobs of the mock.
#[derive(Debug, Clone)]
pub struct MockSettings {
    /// Delay before answering a valid request, like Twilio's API latency.
    pub latency: Duration,
    /// Fraction (0–1) of valid requests answered with an error instead: half
    /// `429` / 20429 with `Retry-After: 1`, half `500` / 20500.
    pub error_rate: f64,
    /// Account id expected in the path and as the Basic-auth user.
    pub account_sid: String,
    /// Basic-auth password expected.
    pub auth_token: String,
    /// Keep every accepted message for [`MockProvider::recorded`].
    pub record: bool,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            latency: Duration::ZERO,
            error_rate: 0.0,
            account_sid: "ACmock0000000000000000000000000000".to_owned(),
            auth_token: "mock-token".to_owned(),
            record: false,
        }
    }
}

/// A snapshot of the mock's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MockStats {
    /// Requests to the Messages route, whatever their outcome.
    pub requests: u64,
    /// Answered `201 Created`.
    pub accepted: u64,
    /// Answered with an injected error (`error_rate`): 429 or 500.
    pub errors: u64,
    /// Answered `401` (wrong credentials or account).
    pub rejected_auth: u64,
    /// Answered `400`: missing or invalid fields, magic numbers.
    pub rejected_invalid: u64,
    /// Messages-route requests being handled right now.
    pub in_flight: u64,
    /// Highest `in_flight` seen.
    pub max_in_flight: u64,
    /// TCP connections open right now.
    pub connections_open: u64,
    /// TCP connections accepted since start: far fewer than `requests` means
    /// the client reuses its pooled connections.
    pub connections_accepted: u64,
}

/// One accepted message as the mock received it (with `record: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedMessage {
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: String,
    pub status_callback: Option<String>,
    /// The `sid` the mock answered with.
    pub sid: String,
}

/// A running mock provider. Dropping it stops accepting connections and closes
/// idle ones; [`MockProvider::shutdown`] also waits for the accept loop.
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<()>,
    accept_loop: Option<JoinHandle<()>>,
}

impl MockProvider {
    /// Bind `addr` (port 0 picks a free port) and start serving.
    pub async fn start(addr: SocketAddr, settings: MockSettings) -> std::io::Result<MockProvider> {
        if !(0.0..=1.0).contains(&settings.error_rate) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("error_rate {} is not between 0 and 1", settings.error_rate),
            ));
        }
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        // The concurrency scenario opens ~20k connections in a burst; tokio's
        // default backlog (1024) would drop SYNs and add 1 s retransmits. The
        // kernel still caps this at net.core.somaxconn.
        let listener = socket.listen(16_384)?;
        let addr = listener.local_addr()?;

        let shared = Arc::new(Shared::new(settings));
        let (shutdown, _) = watch::channel(());
        let accept_loop = tokio::spawn(accept_loop(listener, shared.clone(), shutdown.subscribe()));
        Ok(MockProvider {
            addr,
            shared,
            shutdown,
            accept_loop: Some(accept_loop),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, to use as the Twilio adapter's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn settings(&self) -> &MockSettings {
        &self.shared.settings
    }

    pub fn stats(&self) -> MockStats {
        self.shared.stats()
    }

    /// Accepted messages in arrival order; empty unless `record` is set.
    pub fn recorded(&self) -> Vec<RecordedMessage> {
        match &self.shared.recorded {
            Some(r) => r.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => Vec::new(),
        }
    }

    /// Stop accepting, ask open connections to close once their in-flight
    /// request is answered, and wait for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(());
        if let Some(task) = self.accept_loop.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        // Receivers also see the sender's drop; sending makes it explicit.
        let _ = self.shutdown.send(());
    }
}

/// Run a mock provider on `addr` until SIGINT or SIGTERM, printing its address
/// and a stats line every few seconds.
pub async fn serve_until_signal(addr: SocketAddr, settings: MockSettings) -> anyhow::Result<()> {
    // One descriptor per client connection: the concurrency scenario holds
    // ~20k open, above the usual 1024 soft limit.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit raised"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let account_sid = settings.account_sid.clone();
    let mock = MockProvider::start(addr, settings)
        .await
        .with_context(|| format!("starting the mock provider on {addr}"))?;
    println!(
        "mock provider listening on {}  (POST /2010-04-01/Accounts/{account_sid}/Messages.json, GET /stats)",
        mock.base_url()
    );

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let period = Duration::from_secs(5);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = mock.stats();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {
                let now = mock.stats();
                println!("{}", stats_line(&now, &last, period));
                last = now;
            }
        }
    }
    let last = mock.stats();
    mock.shutdown().await;
    println!(
        "mock provider stopped: {}",
        stats_line(&last, &MockStats::default(), Duration::ZERO)
    );
    Ok(())
}

fn stats_line(now: &MockStats, before: &MockStats, period: Duration) -> String {
    let rate = if period.is_zero() {
        String::new()
    } else {
        format!(
            "{:.0} req/s  ",
            (now.requests - before.requests) as f64 / period.as_secs_f64()
        )
    };
    format!(
        "{rate}requests={} accepted={} errors={} rejected_auth={} rejected_invalid={} in_flight={} \
         max_in_flight={} connections_open={} connections_accepted={}",
        now.requests,
        now.accepted,
        now.errors,
        now.rejected_auth,
        now.rejected_invalid,
        now.in_flight,
        now.max_in_flight,
        now.connections_open,
        now.connections_accepted
    )
}

// ---- serving ----------------------------------------------------------------

struct Shared {
    settings: MockSettings,
    /// `Basic base64(sid:token)`, compared byte for byte.
    expected_authorization: Vec<u8>,
    /// Random per instance; with `next_sid`, makes `SM…` ids unique.
    sid_prefix: u64,
    next_sid: AtomicU64,
    requests: AtomicU64,
    accepted: AtomicU64,
    errors: AtomicU64,
    rejected_auth: AtomicU64,
    rejected_invalid: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    connections_open: AtomicU64,
    connections_accepted: AtomicU64,
    recorded: Option<Mutex<Vec<RecordedMessage>>>,
}

impl Shared {
    fn new(settings: MockSettings) -> Self {
        let credentials = format!("{}:{}", settings.account_sid, settings.auth_token);
        let expected_authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
        .into_bytes();
        let recorded = settings.record.then(|| Mutex::new(Vec::new()));
        Shared {
            settings,
            expected_authorization,
            sid_prefix: rand::random(),
            next_sid: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rejected_auth: AtomicU64::new(0),
            rejected_invalid: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            recorded,
        }
    }

    fn stats(&self) -> MockStats {
        MockStats {
            requests: self.requests.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            errors: self.errors.load(Relaxed),
            rejected_auth: self.rejected_auth.load(Relaxed),
            rejected_invalid: self.rejected_invalid.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            max_in_flight: self.max_in_flight.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            connections_accepted: self.connections_accepted.load(Relaxed),
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            // A send or the sender's drop both mean stop.
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, shared.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // EMFILE / ENFILE / ECONNABORTED: keep serving the
                    // connections we have and try again shortly.
                    tracing::warn!(error = %e, "mock provider: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    shared.connections_accepted.fetch_add(1, Relaxed);
    shared.connections_open.fetch_add(1, Relaxed);
    let _open = Decrement(&shared.connections_open);

    let service = {
        let shared = shared.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(&shared, req).await) }
        })
    };
    // No timer: idle keep-alive connections stay open as long as the client
    // keeps them (hyper's header-read timeout only runs with a timer).
    // HTTP/1.1 and HTTP/2 (prior knowledge), so both of Herald's client
    // modes can be exercised. No stream limit: the concurrency scenario
    // holds 20,000 sends on one h2 connection.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    builder.http2().max_concurrent_streams(None::<u32>);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Decrements a gauge when dropped, so cancelled work is uncounted too.
struct Decrement<'a>(&'a AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

const MESSAGES_PREFIX: &str = "/2010-04-01/Accounts/";
const MESSAGES_SUFFIX: &str = "/Messages.json";
/// Twilio caps `Body` at 1,600 characters (error 21617).
const MAX_BODY_CHARS: usize = 1600;
/// A form with a 1,600-character body is well under this.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/stats" && req.method() == Method::GET {
        let body = serde_json::to_vec(&shared.stats()).unwrap_or_default();
        return json(StatusCode::OK, body);
    }
    let Some(sid) = path
        .strip_prefix(MESSAGES_PREFIX)
        .and_then(|p| p.strip_suffix(MESSAGES_SUFFIX))
    else {
        return twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource {path} was not found"),
        );
    };
    if req.method() != Method::POST {
        return twilio_error(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed");
    }

    shared.requests.fetch_add(1, Relaxed);
    let now = shared.in_flight.fetch_add(1, Relaxed) + 1;
    shared.max_in_flight.fetch_max(now, Relaxed);
    let _in_flight = Decrement(&shared.in_flight);

    let authorized = sid == shared.settings.account_sid
        && req
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == shared.expected_authorization.as_slice());
    if !authorized {
        shared.rejected_auth.fetch_add(1, Relaxed);
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }

    let form = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            shared.rejected_invalid.fetch_add(1, Relaxed);
            return twilio_error(
                StatusCode::BAD_REQUEST,
                20001,
                &format!("Could not read the request body: {e}"),
            );
        }
    };
    let fields = match Fields::parse(&form) {
        Ok(fields) => fields,
        Err((code, message)) => {
            shared.rejected_invalid.fetch_add(1, Relaxed);
            return twilio_error(StatusCode::BAD_REQUEST, code, &message);
        }
    };

    if !shared.settings.latency.is_zero() {
        tokio::time::sleep(shared.settings.latency).await;
    }

    if shared.settings.error_rate > 0.0 {
        let (roll, coin): (f64, bool) = (rand::random(), rand::random());
        if roll < shared.settings.error_rate {
            shared.errors.fetch_add(1, Relaxed);
            if coin {
                let mut response =
                    twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
            return twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "Internal Server Error",
            );
        }
    }

    let n = shared.next_sid.fetch_add(1, Relaxed);
    let response = created(shared, &fields, n);
    shared.accepted.fetch_add(1, Relaxed);
    if let Some(recorded) = &shared.recorded {
        let message = RecordedMessage {
            to: fields.to.to_string(),
            from: fields.from.as_deref().map(str::to_owned),
            messaging_service_sid: fields.messaging_service_sid.as_deref().map(str::to_owned),
            body: fields.body.to_string(),
            status_callback: fields.status_callback.as_deref().map(str::to_owned),
            sid: format!("SM{:016x}{:016x}", shared.sid_prefix, n),
        };
        recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
    }
    response
}

/// The form fields the Messages API reads, borrowed from the request body
/// unless percent-decoding had to allocate.
struct Fields<'a> {
    to: std::borrow::Cow<'a, str>,
    from: Option<std::borrow::Cow<'a, str>>,
    messaging_service_sid: Option<std::borrow::Cow<'a, str>>,
    body: std::borrow::Cow<'a, str>,
    status_callback: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    /// Twilio's validation of a create: required fields (`To` 21604, `Body`
    /// 21602, a sender 21603), the `To` format (21211), the test-credential
    /// magic numbers, the 1,600-character body limit (21617).
    fn parse(form: &'a [u8]) -> Result<Self, (u32, String)> {
        let (mut to, mut from, mut service, mut body, mut callback) =
            (None, None, None, None, None);
        for (key, value) in form_urlencoded::parse(form) {
            let slot = match key.as_ref() {
                "To" => &mut to,
                "From" => &mut from,
                "MessagingServiceSid" => &mut service,
                "Body" => &mut body,
                "StatusCallback" => &mut callback,
                _ => continue,
            };
            *slot = Some(value);
        }
        let non_empty = |v: Option<std::borrow::Cow<'a, str>>| v.filter(|s| !s.is_empty());
        let (to, from, service, body) = (
            non_empty(to),
            non_empty(from),
            non_empty(service),
            non_empty(body),
        );

        let Some(to) = to else {
            return Err((21604, "A 'To' phone number is required.".to_owned()));
        };
        let Some(body) = body else {
            return Err((21602, "Message body is required.".to_owned()));
        };
        if from.is_none() && service.is_none() {
            return Err((21603, "A 'From' phone number is required.".to_owned()));
        }
        if !is_e164(&to) {
            return Err((
                21211,
                format!("The 'To' number {to} is not a valid phone number."),
            ));
        }
        match to.as_ref() {
            "+15005550001" => {
                return Err((
                    21211,
                    format!("The 'To' number {to} is not a valid phone number."),
                ));
            }
            "+15005550002" => {
                return Err((
                    21612,
                    format!(
                        "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS."
                    ),
                ));
            }
            "+15005550003" => {
                return Err((
                    21408,
                    format!(
                        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."
                    ),
                ));
            }
            "+15005550004" => {
                return Err((
                    21610,
                    "Attempt to send to unsubscribed recipient".to_owned(),
                ));
            }
            "+15005550009" => {
                return Err((
                    21614,
                    format!("'To' number {to} is not a valid mobile number"),
                ));
            }
            _ => {}
        }
        match from.as_deref() {
            Some(f @ "+15005550001") => {
                return Err((
                    21212,
                    format!(
                        "The 'From' number {f} is not a valid phone number, shortcode, or alphanumeric sender ID."
                    ),
                ));
            }
            Some(f @ "+15005550007") => {
                return Err((
                    21606,
                    format!(
                        "The 'From' phone number provided ({f}) is not a valid message-capable Twilio phone number for this destination."
                    ),
                ));
            }
            Some(f @ "+15005550008") => {
                return Err((
                    21611,
                    format!(
                        "This 'From' number ({f}) has exceeded the maximum number of queued messages"
                    ),
                ));
            }
            _ => {}
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err((
                21617,
                "The concatenated message body exceeds the 1600 character limit.".to_owned(),
            ));
        }
        Ok(Fields {
            to,
            from,
            messaging_service_sid: service,
            body,
            status_callback: callback,
        })
    }
}

/// `+` then 8–15 digits.
fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `201 Created` with a Message resource shaped like Twilio's.
fn created(shared: &Shared, f: &Fields<'_>, n: u64) -> Response<Full<Bytes>> {
    let account = shared.settings.account_sid.as_str();
    let date = rfc2822_now();
    // A messaging service picks the sender later: Twilio answers `accepted`,
    // `from: null` and `num_segments: "0"` until then.
    let (status, segments) = match f.from {
        Some(_) => ("queued", segments(&f.body)),
        None => ("accepted", 0),
    };
    let mut sid = [0u8; 34];
    let _ = write!(&mut sid[..], "SM{:016x}{:016x}", shared.sid_prefix, n);
    let sid = std::str::from_utf8(&sid).unwrap_or_default();

    let mut out = Vec::with_capacity(900 + f.body.len() * 2);
    let _ = write!(
        out,
        r#"{{"account_sid":"{account}","api_version":"2010-04-01","body":"#
    );
    let _ = serde_json::to_writer(&mut out, f.body.as_ref());
    let _ = write!(
        out,
        r#","date_created":"{date}","date_sent":null,"date_updated":"{date}","direction":"outbound-api","error_code":null,"error_message":null,"from":"#
    );
    let _ = serde_json::to_writer(&mut out, &f.from.as_deref());
    out.extend_from_slice(br#","messaging_service_sid":"#);
    let _ = serde_json::to_writer(&mut out, &f.messaging_service_sid.as_deref());
    let _ = write!(
        out,
        r#","num_media":"0","num_segments":"{segments}","price":null,"price_unit":"USD","sid":"{sid}","status":"{status}","subresource_uris":{{"media":"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"}},"to":"#
    );
    let _ = serde_json::to_writer(&mut out, f.to.as_ref());
    let _ = write!(
        out,
        r#","uri":"/2010-04-01/Accounts/{account}/Messages/{sid}.json"}}"#
    );
    json(StatusCode::CREATED, out)
}

/// Twilio's error body: `{"code", "message", "more_info", "status"}`.
fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response<Full<Bytes>> {
    let mut out = Vec::with_capacity(128 + message.len());
    let _ = write!(out, r#"{{"code":{code},"message":"#);
    let _ = serde_json::to_writer(&mut out, message);
    let _ = write!(
        out,
        r#","more_info":"https://www.twilio.com/docs/errors/{code}","status":{}}}"#,
        status.as_u16()
    );
    json(status, out)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Segments Twilio would bill for `body`: GSM-7 160 / 153 per segment, else
/// UCS-2 70 / 67. A copy of `herald_adapters::sandbox::segments` in spirit,
/// kept here so the mock does not depend on the crate it tests; it treats
/// only ASCII (minus the backtick) as GSM-7, extension characters as two.
fn segments(body: &str) -> usize {
    let mut septets = 0usize;
    for b in body.bytes() {
        match b {
            b'^' | b'{' | b'}' | b'\\' | b'[' | b'~' | b']' | b'|' => septets += 2,
            b'`' => return ucs2_segments(body),
            b'\n' | b'\r' | 0x20..=0x7e => septets += 1,
            _ => return ucs2_segments(body),
        }
    }
    if septets <= 160 {
        1
    } else {
        septets.div_ceil(153)
    }
}

fn ucs2_segments(body: &str) -> usize {
    let units = body.encode_utf16().count();
    if units <= 70 { 1 } else { units.div_ceil(67) }
}

/// Now as RFC 2822 in GMT, as Twilio writes dates: `Thu, 24 Aug 2023 05:01:45 +0000`.
fn rfc2822_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc2822(secs)
}

fn rfc2822(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31). Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc2822() {
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(1_692_853_305), "Thu, 24 Aug 2023 05:01:45 +0000");
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn e164() {
        assert!(is_e164("+14155550123"));
        assert!(is_e164("+12345678"));
        assert!(!is_e164("+1234567"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("14155550123"));
        assert!(!is_e164("+1415555012a"));
    }

    #[test]
    fn validation_codes() {
        let code = |form: &str| Fields::parse(form.as_bytes()).err().map(|(c, _)| c);
        assert_eq!(code("To=%2B14155550123&From=%2B15005550006&Body=hi"), None);
        assert_eq!(
            code("To=%2B14155550123&MessagingServiceSid=MG1&Body=hi"),
            None
        );
        assert_eq!(code("From=%2B15005550006&Body=hi"), Some(21604));
        assert_eq!(code("To=%2B14155550123&From=%2B15005550006"), Some(21602));
        assert_eq!(
            code("To=%2B14155550123&From=%2B15005550006&Body="),
            Some(21602)
        );
        assert_eq!(code("To=%2B14155550123&Body=hi"), Some(21603));
        assert_eq!(
            code("To=4155550123&From=%2B15005550006&Body=hi"),
            Some(21211)
        );
        assert_eq!(
            code("To=%2B15005550001&From=%2B15005550006&Body=hi"),
            Some(21211)
        );
        assert_eq!(
            code("To=%2B15005550002&From=%2B15005550006&Body=hi"),
            Some(21612)
        );
        assert_eq!(
            code("To=%2B15005550003&From=%2B15005550006&Body=hi"),
            Some(21408)
        );
        assert_eq!(
            code("To=%2B15005550004&From=%2B15005550006&Body=hi"),
            Some(21610)
        );
        assert_eq!(
            code("To=%2B15005550009&From=%2B15005550006&Body=hi"),
            Some(21614)
        );
        assert_eq!(
            code("To=%2B14155550123&From=%2B15005550001&Body=hi"),
            Some(21212)
        );
        assert_eq!(
            code("To=%2B14155550123&From=%2B15005550007&Body=hi"),
            Some(21606)
        );
        assert_eq!(
            code("To=%2B14155550123&From=%2B15005550008&Body=hi"),
            Some(21611)
        );
        let long = format!(
            "To=%2B14155550123&From=%2B15005550006&Body={}",
            "a".repeat(1601)
        );
        assert_eq!(code(&long), Some(21617));
    }

    #[test]
    fn segment_estimate() {
        assert_eq!(segments("hello"), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"{".repeat(81)), 2);
        assert_eq!(segments(&format!("{}é", "a".repeat(70))), 2);
    }

    #[test]
    fn created_body_is_a_message_resource() {
        let shared = Shared::new(MockSettings::default());
        let fields =
            Fields::parse(b"To=%2B14155550123&From=%2B15005550006&Body=say+%22hi%22%0A").unwrap();
        let response = created(&shared, &fields, 7);
        assert_eq!(response.status(), StatusCode::CREATED);
        let bytes = block_on(response.into_body().collect()).unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["body"], "say \"hi\"\n");
        assert_eq!(v["to"], "+14155550123");
        assert_eq!(v["from"], "+15005550006");
        assert_eq!(v["num_segments"], "1");
        assert_eq!(v["status"], "queued");
        assert_eq!(v["messaging_service_sid"], serde_json::Value::Null);
        let sid = v["sid"].as_str().unwrap();
        assert!(
            sid.starts_with("SM")
                && sid.len() == 34
                && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
        );
        assert_eq!(
            v["uri"],
            format!(
                "/2010-04-01/Accounts/{}/Messages/{sid}.json",
                shared.settings.account_sid
            )
        );
    }

    /// One raw HTTP/1.1 exchange with `Connection: close`; returns status and body.
    async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn routes_stats_and_shutdown() {
        let mock = MockProvider::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            MockSettings::default(),
        )
        .await
        .unwrap();
        let addr = mock.addr();
        assert_eq!(mock.base_url(), format!("http://{addr}"));

        let (status, body) = exchange(
            addr,
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 404);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["code"].as_u64(), v["status"].as_u64()),
            (Some(20404), Some(404))
        );
        assert_eq!(v["more_info"], "https://www.twilio.com/docs/errors/20404");

        let path = format!(
            "/2010-04-01/Accounts/{}/Messages.json",
            mock.settings().account_sid
        );
        let (status, _) = exchange(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 405);
        let form = "To=%2B14155550123&From=%2B15005550006&Body=hi";
        let unauthenticated = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        let (status, body) = exchange(addr, &unauthenticated).await;
        assert_eq!(status, 401);
        assert!(body.contains(r#""code":20003"#), "{body}");

        let (status, body) = exchange(
            addr,
            "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200);
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(stats["requests"], 1);
        assert_eq!(stats["rejected_auth"], 1);
        assert_eq!(stats["accepted"], 0);
        assert_eq!(mock.stats().connections_accepted, 4);

        mock.shutdown().await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
