//! Serving the Messages API: accepting connections, routing, and carrying out
//! the [`Plan`](super::rules::Plan) picked for each valid request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::callbacks::{self, CallbackMessage, StatusCallbacks};
use super::config::MockSettings;
use super::lookup;
use super::rules::{self, Answer};
use super::wire::{self, Fields, MAX_REQUEST_BYTES, MESSAGES_PREFIX, MESSAGES_SUFFIX, Sid};
use super::{MockStats, RecordedMessage};

/// State shared by the accept loop, every connection and every callback task.
pub(super) struct Shared {
    pub(super) settings: MockSettings,
    /// `Basic base64(sid:token)`, compared byte for byte.
    expected_authorization: Vec<u8>,
    /// Random per instance; with `next_sid`, makes `SM…` ids unique.
    sid_prefix: u64,
    next_sid: AtomicU64,
    pub(super) counters: Counters,
    pub(super) recorded: Option<Mutex<Vec<RecordedMessage>>>,
    /// Present when `status_callbacks` is on.
    pub(super) callbacks: Option<StatusCallbacks>,
    /// Changes (or closes) when the mock shuts down; callback tasks watch it
    /// so none outlives the mock.
    pub(super) shutdown: watch::Receiver<()>,
}

/// The counters behind [`MockStats`]: relaxed atomics, because each is an
/// independent tally and a snapshot need not be consistent across them.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) rejected_auth: AtomicU64,
    pub(super) rejected_invalid: AtomicU64,
    pub(super) in_flight: AtomicU64,
    pub(super) max_in_flight: AtomicU64,
    pub(super) connections_open: AtomicU64,
    pub(super) connections_accepted: AtomicU64,
    pub(super) rate_limited: AtomicU64,
    pub(super) server_errors: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) slowed: AtomicU64,
    pub(super) receipts: AtomicU64,
    pub(super) receipts_undelivered: AtomicU64,
    pub(super) receipts_duplicated: AtomicU64,
    pub(super) receipts_reordered: AtomicU64,
    pub(super) callbacks_sent: AtomicU64,
    pub(super) callbacks_failed: AtomicU64,
    pub(super) callbacks_pending: AtomicU64,
    pub(super) lookups: AtomicU64,
}

impl Shared {
    pub(super) fn new(settings: MockSettings, shutdown: watch::Receiver<()>) -> Self {
        let credentials = format!("{}:{}", settings.account_sid, settings.auth_token);
        let expected_authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
        .into_bytes();
        let recorded = settings.record.then(|| Mutex::new(Vec::new()));
        let callbacks = settings.status_callbacks.then(StatusCallbacks::new);
        Shared {
            settings,
            expected_authorization,
            sid_prefix: rand::random(),
            next_sid: AtomicU64::new(0),
            counters: Counters::default(),
            recorded,
            callbacks,
            shutdown,
        }
    }

    pub(super) fn stats(&self) -> MockStats {
        let c = &self.counters;
        MockStats {
            requests: c.requests.load(Relaxed),
            accepted: c.accepted.load(Relaxed),
            errors: c.errors.load(Relaxed),
            rejected_auth: c.rejected_auth.load(Relaxed),
            rejected_invalid: c.rejected_invalid.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            max_in_flight: c.max_in_flight.load(Relaxed),
            connections_open: c.connections_open.load(Relaxed),
            connections_accepted: c.connections_accepted.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
            server_errors: c.server_errors.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            slowed: c.slowed.load(Relaxed),
            receipts: c.receipts.load(Relaxed),
            receipts_undelivered: c.receipts_undelivered.load(Relaxed),
            receipts_duplicated: c.receipts_duplicated.load(Relaxed),
            receipts_reordered: c.receipts_reordered.load(Relaxed),
            callbacks_sent: c.callbacks_sent.load(Relaxed),
            callbacks_failed: c.callbacks_failed.load(Relaxed),
            callbacks_pending: c.callbacks_pending.load(Relaxed),
            lookups: c.lookups.load(Relaxed),
        }
    }
}

pub(super) async fn accept_loop(
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

/// The mock ends an exchange without answering on purpose (`Drop` and
/// `AcceptThenDrop`). Returned from the service, it makes hyper close an
/// HTTP/1 connection without writing anything, and reset the stream
/// (`RST_STREAM`, `INTERNAL_ERROR`) on HTTP/2, where the connection carries
/// other requests.
#[derive(Debug, thiserror::Error)]
#[error("mock provider: connection dropped without an answer on purpose")]
pub(super) struct DroppedOnPurpose;

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    shared.counters.connections_accepted.fetch_add(1, Relaxed);
    shared.counters.connections_open.fetch_add(1, Relaxed);
    let _open = Decrement(&shared.counters.connections_open);

    let service = {
        let shared = shared.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            async move { handle(&shared, req).await }
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
    // The connection's error, a dropped exchange among them, ends it and is
    // already counted; there is no one else to tell.
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Decrements a gauge when dropped, so cancelled work is uncounted too.
pub(super) struct Decrement<'a>(pub(super) &'a AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

async fn handle(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedOnPurpose> {
    let counters = &shared.counters;
    let path = req.uri().path();
    if path == "/stats" && req.method() == Method::GET {
        let body = serde_json::to_vec(&shared.stats()).unwrap_or_default();
        return Ok(wire::json(StatusCode::OK, body));
    }
    if let Some(number) = path.strip_prefix(lookup::PREFIX) {
        return Ok(serve_lookup(shared, &req, number));
    }
    let Some(sid) = path
        .strip_prefix(MESSAGES_PREFIX)
        .and_then(|p| p.strip_suffix(MESSAGES_SUFFIX))
    else {
        return Ok(wire::twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource {path} was not found"),
        ));
    };
    if req.method() != Method::POST {
        return Ok(wire::twilio_error(
            StatusCode::METHOD_NOT_ALLOWED,
            20004,
            "Method not allowed",
        ));
    }

    counters.requests.fetch_add(1, Relaxed);
    let now = counters.in_flight.fetch_add(1, Relaxed) + 1;
    counters.max_in_flight.fetch_max(now, Relaxed);
    let _in_flight = Decrement(&counters.in_flight);

    let authorized = sid == shared.settings.account_sid
        && req
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == shared.expected_authorization.as_slice());
    if !authorized {
        counters.rejected_auth.fetch_add(1, Relaxed);
        return Ok(wire::twilio_error(
            StatusCode::UNAUTHORIZED,
            20003,
            "Authenticate",
        ));
    }

    // The whole body is read before any fault, dropped connections included:
    // the client has sent everything and cannot tell what happened next.
    let form = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            counters.rejected_invalid.fetch_add(1, Relaxed);
            return Ok(wire::twilio_error(
                StatusCode::BAD_REQUEST,
                20001,
                &format!("Could not read the request body: {e}"),
            ));
        }
    };
    let fields = match Fields::parse(&form) {
        Ok(fields) => fields,
        Err((code, message)) => {
            counters.rejected_invalid.fetch_add(1, Relaxed);
            return Ok(wire::twilio_error(StatusCode::BAD_REQUEST, code, &message));
        }
    };

    let plan = rules::plan(&shared.settings, &fields.to, &mut rand::random::<f64>);

    if !shared.settings.latency.is_zero() {
        tokio::time::sleep(shared.settings.latency).await;
    }
    if plan.slow {
        counters.slowed.fetch_add(1, Relaxed);
        tokio::time::sleep(shared.settings.slow_delay).await;
    }

    match plan.answer {
        Answer::RateLimited => {
            counters.errors.fetch_add(1, Relaxed);
            counters.rate_limited.fetch_add(1, Relaxed);
            return Ok(wire::too_many_requests(shared.settings.retry_after_secs));
        }
        Answer::ServerError(error) => {
            counters.errors.fetch_add(1, Relaxed);
            counters.server_errors.fetch_add(1, Relaxed);
            return Ok(wire::server_error(error));
        }
        Answer::Drop => {
            counters.dropped.fetch_add(1, Relaxed);
            return Err(DroppedOnPurpose);
        }
        Answer::Accept | Answer::AcceptThenDrop => {}
    }

    let sid = Sid::new(shared.sid_prefix, shared.next_sid.fetch_add(1, Relaxed));
    counters.accepted.fetch_add(1, Relaxed);
    if let Some(recorded) = &shared.recorded {
        let message = RecordedMessage {
            to: fields.to.to_string(),
            from: fields.from.as_deref().map(str::to_owned),
            messaging_service_sid: fields.messaging_service_sid.as_deref().map(str::to_owned),
            body: fields.body.to_string(),
            status_callback: fields.status_callback.as_deref().map(str::to_owned),
            sid: sid.as_str().to_owned(),
        };
        recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
    }
    if shared.callbacks.is_some()
        && let Some(url) = &fields.status_callback
    {
        let message = CallbackMessage {
            url: url.to_string(),
            sid,
            to: fields.to.to_string(),
            from: fields.from.as_deref().map(str::to_owned),
            messaging_service_sid: fields.messaging_service_sid.as_deref().map(str::to_owned),
        };
        callbacks::spawn(shared, message, plan.receipt);
    }

    if plan.answer == Answer::AcceptThenDrop {
        counters.dropped.fetch_add(1, Relaxed);
        return Err(DroppedOnPurpose);
    }
    Ok(wire::created(&shared.settings.account_sid, &fields, &sid))
}

/// One Lookup v2 request (see `lookup.rs`): counted whatever its outcome,
/// so a test can tell that a cache answered instead.
fn serve_lookup(shared: &Shared, req: &Request<Incoming>, number: &str) -> Response<Full<Bytes>> {
    shared.counters.lookups.fetch_add(1, Relaxed);
    if req.method() != Method::GET {
        return wire::twilio_error(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed");
    }
    // Lookup has no account in its path: the credentials alone identify it.
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == shared.expected_authorization.as_slice());
    if !authorized {
        return wire::twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let number = lookup::decode_number(number);
    lookup::respond(
        &number,
        lookup::plan(&number),
        lookup::wants_line_type(req.uri().query()),
        shared.settings.retry_after_secs,
    )
}

/// The concurrency scenario opens ~20k connections in a burst; tokio's default
/// backlog (1024) would drop SYNs and add 1 s retransmits. The kernel still
/// caps this at net.core.somaxconn.
const LISTEN_BACKLOG: u32 = 16_384;

/// `addr` bound with `SO_REUSEADDR` and listening.
pub(super) fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
