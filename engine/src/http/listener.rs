//! The listener's connections (docs/contracts.md#connections-and-limits): at
//! most `http.max_connections` open at once, and a deadline on every
//! connection that is not serving a request, so that a client which
//! trickles its headers, never sends a request or keeps a connection idle is
//! closed by Herald itself.
//!
//! hyper's own `header_read_timeout` is not used. It runs from the end of
//! one response to the end of the next request's headers, so it cannot tell
//! an idle keep-alive connection from a slow header, and it does not cover
//! the auto builder's protocol sniffing (a connection that sends nothing
//! waits there for ever) or HTTP/2. The deadlines here cover all three.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::HttpState;
use crate::telemetry;

/// How often, at most, the listener logs that it is refusing connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accept connections until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    let max = state.cfg.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let mut refusals = Refusals::default();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(connection(stream, Arc::clone(&state), slot));
            }
            // At the cap a new connection is accepted and closed at once:
            // the client learns now (and a load balancer tries another
            // instance) instead of waiting unseen in the kernel's backlog,
            // and the backlog keeps draining, so a client is served as soon
            // as a slot frees.
            Err(_) => {
                drop(stream);
                refusals.record(max);
            }
        }
    }
}

/// Connections closed at the cap: every one counted, logged at most once
/// per [`REFUSAL_LOG_EVERY`].
#[derive(Default)]
struct Refusals {
    unlogged: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn record(&mut self, max: usize) {
        telemetry::http_refused();
        self.unlogged += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(
                refused = self.unlogged,
                max_connections = max,
                "HTTP listener at http.max_connections: new connections closed at once"
            );
            self.unlogged = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

/// An open connection's slot and gauge, given back when the task ends.
struct Open {
    _slot: OwnedSemaphorePermit,
}

impl Open {
    fn new(slot: OwnedSemaphorePermit) -> Open {
        telemetry::http_connection_opened();
        Open { _slot: slot }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        telemetry::http_connection_closed();
    }
}

async fn connection(stream: TcpStream, state: Arc<HttpState>, slot: OwnedSemaphorePermit) {
    let _open = Open::new(slot);
    let (header, idle) = (state.cfg.header_timeout, state.cfg.idle_timeout);
    // Once the connection is told to close, the requests already in flight
    // may finish, each within the body timeout and its own work.
    let grace = header + state.cfg.body_timeout;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        io: stream,
        activity: Arc::clone(&activity),
    });
    let svc = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let state = Arc::clone(&state);
            let request = InFlight::begin(&activity, req.version() == Version::HTTP_2);
            async move {
                let _request = request;
                Ok::<_, Infallible>(super::route(&state, req).await)
            }
        })
    };
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let expired = tokio::select! {
        _ = conn.as_mut() => return,
        e = activity.expiry(header, idle) => e,
    };
    telemetry::http_timeout(expired.as_str());
    match expired {
        // A request that has not finished its headers in time: nothing of
        // it was acted on, so the socket is simply closed.
        Expiry::Header => {
            tracing::debug!(
                "HTTP connection closed: headers not received within http.header_timeout_ms"
            );
        }
        // Idle: closed the polite way (HTTP/2 GOAWAY; HTTP/1 closes at once).
        Expiry::Idle => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(grace, conn).await;
        }
    }
}

/// Why a connection's deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A request's headers did not arrive within `http.header_timeout_ms`.
    Header,
    /// No request for `http.idle_timeout_ms`.
    Idle,
}

impl Expiry {
    fn as_str(self) -> &'static str {
        match self {
            Expiry::Header => "header",
            Expiry::Idle => "idle",
        }
    }
}

/// What a connection's IO, its requests and its deadline share.
struct Activity {
    accepted: Instant,
    state: Mutex<Progress>,
    /// Set while the connection waits for a new request's first byte, so
    /// the IO takes the lock only for that one byte.
    watch_read: AtomicBool,
    /// Wakes the deadline when any of it changes.
    wake: Notify,
}

#[derive(Debug)]
struct Progress {
    /// Requests whose response is not yet handed back.
    in_flight: usize,
    /// A request has begun on this connection.
    served: bool,
    /// The connection speaks HTTP/2: bytes read between requests are
    /// frames (PING, SETTINGS…), not the start of a request.
    http2: bool,
    /// When the last request in flight finished.
    idle_since: Instant,
    /// The first byte read since then: a new request has begun arriving.
    first_byte: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        Activity {
            accepted: now,
            state: Mutex::new(Progress {
                in_flight: 0,
                served: false,
                http2: false,
                idle_since: now,
                first_byte: None,
            }),
            watch_read: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Progress> {
        // The state is plain data, consistent after every statement.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The IO read a byte while the connection was waiting for a request.
    fn first_byte(&self) {
        let mut p = self.lock();
        if p.in_flight == 0 && p.first_byte.is_none() {
            p.first_byte = Some(Instant::now());
        }
        self.watch_read.store(false, Ordering::Relaxed);
        drop(p);
        self.wake.notify_one();
    }

    /// When the connection must close and why; `None` while a request is
    /// in flight (its body has its own timeout).
    fn deadline(&self, header: Duration, idle: Duration) -> Option<(Instant, Expiry)> {
        let p = self.lock();
        if p.in_flight > 0 {
            None
        } else if !p.served {
            // The first request's headers are due within the header
            // timeout of the accept, whether or not a byte came.
            Some((self.accepted + header, Expiry::Header))
        } else if let (false, Some(at)) = (p.http2, p.first_byte) {
            Some((at + header, Expiry::Header))
        } else {
            Some((p.idle_since + idle, Expiry::Idle))
        }
    }

    /// Resolves once the connection's deadline has passed.
    async fn expiry(&self, header: Duration, idle: Duration) -> Expiry {
        // One timer for the connection's life, moved at each change.
        let sleep = tokio::time::sleep_until((self.accepted + header).into());
        tokio::pin!(sleep);
        loop {
            match self.deadline(header, idle) {
                None => self.wake.notified().await,
                Some((at, why)) => {
                    // Checked again after every wake: a request may have
                    // begun just as the deadline passed.
                    if Instant::now() >= at {
                        return why;
                    }
                    sleep.as_mut().reset(at.into());
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = &mut sleep => {}
                    }
                }
            }
        }
    }
}

/// One request in flight on a connection, from its headers to its
/// response; dropped with the request if the connection goes first.
struct InFlight {
    activity: Arc<Activity>,
}

impl InFlight {
    fn begin(activity: &Arc<Activity>, http2: bool) -> InFlight {
        let mut p = activity.lock();
        p.in_flight += 1;
        p.served = true;
        p.http2 |= http2;
        p.first_byte = None;
        drop(p);
        activity.watch_read.store(false, Ordering::Relaxed);
        activity.wake.notify_one();
        InFlight {
            activity: Arc::clone(activity),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut p = self.activity.lock();
        p.in_flight = p.in_flight.saturating_sub(1);
        if p.in_flight == 0 {
            p.idle_since = Instant::now();
            p.first_byte = None;
            self.activity.watch_read.store(!p.http2, Ordering::Relaxed);
        }
        drop(p);
        self.activity.wake.notify_one();
    }
}

/// The connection's socket, telling [`Activity`] when a new request's
/// first byte arrives.
struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before && this.activity.watch_read.load(Ordering::Relaxed) {
            this.activity.first_byte();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(10);
    const I: Duration = Duration::from_secs(60);

    #[test]
    fn deadlines_follow_the_connection() {
        let a = Arc::new(Activity::new());
        // New connection: its first request's headers are due from accept.
        assert_eq!(a.deadline(H, I), Some((a.accepted + H, Expiry::Header)));
        // A request in flight: no deadline.
        let r = InFlight::begin(&a, false);
        assert_eq!(a.deadline(H, I), None);
        drop(r);
        // Idle keep-alive: the idle timeout from the end of the request.
        let idle_since = a.lock().idle_since;
        assert_eq!(a.deadline(H, I), Some((idle_since + I, Expiry::Idle)));
        assert!(a.watch_read.load(Ordering::Relaxed));
        // The next request's first byte: the header timeout from it, and
        // later bytes do not move it.
        a.first_byte();
        let at = a.lock().first_byte.expect("first byte recorded");
        assert_eq!(a.deadline(H, I), Some((at + H, Expiry::Header)));
        assert!(!a.watch_read.load(Ordering::Relaxed));
        a.first_byte();
        assert_eq!(a.lock().first_byte, Some(at));
    }

    #[test]
    fn http2_frames_between_requests_keep_the_idle_deadline() {
        let a = Arc::new(Activity::new());
        drop(InFlight::begin(&a, true));
        assert!(!a.watch_read.load(Ordering::Relaxed));
        a.first_byte();
        let idle_since = a.lock().idle_since;
        assert_eq!(a.deadline(H, I), Some((idle_since + I, Expiry::Idle)));
        // Two streams: the deadline comes back only when both are done.
        let (s1, s2) = (InFlight::begin(&a, true), InFlight::begin(&a, true));
        drop(s1);
        assert_eq!(a.deadline(H, I), None);
        drop(s2);
        assert!(a.deadline(H, I).is_some());
    }
}
