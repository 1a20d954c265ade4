//! Herald's own connection pool over hyper's connection API, one per
//! provider client.
//!
//! hyper-util's pooled `Client` boxed a ~2 KiB future for every request and
//! took a mutex on every checkout; at 20,000 sends in flight those futures
//! were the daemon's largest heap consumer (heaptrack, `concurrency`
//! scenario). Here a request costs hyper's own response future, and:
//!
//! - HTTP/1.1: idle connections wait in a lock-free queue, bounded, per
//!   origin (`pool_max_idle_per_host`); a checkout pops one, a finished
//!   exchange pushes it back, anything past the bound or idle longer than
//!   `pool_idle_timeout` is closed.
//! - HTTP/2: one connection per origin carries every request; a new one is
//!   dialled (once, however many requests notice) when it closes.
//!
//! The pool also knows exactly how far each request got, which is what the
//! ambiguity rules in `transport` need: whether a connection was obtained,
//! and whether hyper gave a request back unwritten (a reused connection the
//! server had closed): that request is re-sent on another connection, as
//! no byte of it left.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use crossbeam_queue::SegQueue;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

type Body = Full<Bytes>;

/// Connection settings every HTTP provider exposes under the same names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub connect_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub pool_idle_timeout: Duration,
    pub http2: bool,
}

/// Provider answers are 1–2 KB: read them in 2 KiB chunks instead of
/// hyper's adaptive buffer that starts at 8 KiB per connection (a larger
/// answer takes another read). Over HTTP/1.1 every send in flight holds a
/// connection: 4 KiB chunks measured 283 MiB at 10,000 in flight, 2 KiB
/// 264 MiB (`concurrency.toml` without HTTP2, max_in_flight 10,000).
const READ_BUF: usize = 2048;

/// How far a failed request got.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection was obtained (DNS, TCP, TLS, handshake), or the one
    /// obtained gave the request back unwritten: no byte left.
    Connect(String),
    /// The request was (or may have been) written.
    Sent(hyper::Error),
}

pub(crate) struct Pool {
    connector: HttpsConnector<HttpConnector>,
    settings: PoolSettings,
    /// Usually one origin per provider client; copied on the rare insert.
    origins: ArcSwap<Vec<Arc<Origin>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("settings", &self.settings)
            .field("origins", &self.origins.load().len())
            .finish()
    }
}

struct Origin {
    scheme: Scheme,
    authority: Authority,
    /// What the connector dials: `scheme://authority/`.
    dial: Uri,
    /// The HTTP/1.1 `Host` header, built once (cloning it shares its bytes).
    host: Option<header::HeaderValue>,
    idle: IdleQueue,
    h2: ArcSwapOption<http2::SendRequest<Body>>,
    /// Held while dialling the HTTP/2 connection, so concurrent requests
    /// wait for one connection instead of each dialling its own.
    h2_dial: tokio::sync::Mutex<()>,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// A lock-free queue with a bound; its memory grows with what it holds
/// (blocks of 31), not with the bound (32,768 by default).
struct IdleQueue {
    queue: SegQueue<Idle>,
    len: AtomicUsize,
    max: usize,
}

impl IdleQueue {
    fn new(max: usize) -> IdleQueue {
        IdleQueue {
            queue: SegQueue::new(),
            len: AtomicUsize::new(0),
            max,
        }
    }

    /// `false` (and the connection dropped, which closes it) when full.
    fn push(&self, idle: Idle) -> bool {
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.queue.push(idle);
        true
    }

    fn pop(&self) -> Option<Idle> {
        let idle = self.queue.pop()?;
        self.len.fetch_sub(1, Ordering::AcqRel);
        Some(idle)
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

/// A connection lent for one HTTP/1.1 exchange; [`Pool::give_back`] returns it
/// once the response body has been read whole.
pub(crate) struct Lease {
    origin: Arc<Origin>,
    sender: http1::SendRequest<Body>,
}

impl Pool {
    pub(crate) fn new(settings: PoolSettings) -> Pool {
        let mut http = HttpConnector::new();
        // The TLS layer decides the scheme; without this http-only is enforced.
        http.enforce_http(false);
        // Requests are one small write each; Nagle would hold them for the ACK.
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        // Notice dead idle connections (NAT timeouts) before reusing them.
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http();
        let connector = if settings.http2 {
            // Prior knowledge for http://, ALPN for https://.
            https.enable_http2().wrap_connector(http)
        } else {
            https.enable_http1().wrap_connector(http)
        };
        Pool {
            connector,
            settings,
            origins: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Send `request` (an absolute URI) and wait for the response head.
    /// HTTP/1.1 answers come with the [`Lease`] to give back after the body.
    /// `handed` turns true when a connection takes the request.
    ///
    /// Not an `async fn`: the request moves straight into the one protocol
    /// future that runs, instead of also keeping a slot in an outer one
    /// (each send's future is held for the whole exchange, 20,000 at once).
    pub(crate) fn send<'a>(
        &'a self,
        request: Request<Body>,
        handed: &'a AtomicBool,
    ) -> impl Future<Output = Result<(Response<Incoming>, Option<Lease>), Failure>> + Send + 'a
    {
        use futures::future::{Either, FutureExt, ready};
        match self.origin(request.uri()) {
            Err(e) => Either::Left(ready(Err(e))),
            Ok(origin) if self.settings.http2 => Either::Right(Either::Left(
                self.send_h2(origin, request, handed)
                    .map(|r| r.map(|r| (r, None))),
            )),
            Ok(origin) => Either::Right(Either::Right(self.send_h1(origin, request, handed))),
        }
    }

    async fn send_h1(
        &self,
        origin: Arc<Origin>,
        mut request: Request<Body>,
        handed: &AtomicBool,
    ) -> Result<(Response<Incoming>, Option<Lease>), Failure> {
        // HTTP/1.1 wants origin-form and a Host header; both share bytes
        // already parsed, nothing is copied per request.
        if !request.headers().contains_key(header::HOST)
            && let Some(host) = &origin.host
        {
            request.headers_mut().insert(header::HOST, host.clone());
        }
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
        // The common case inline; dialling, and the rare retry, boxed: their
        // state (TCP, TLS, handshake, a second request) would otherwise sit
        // in every send's future.
        let Some(mut sender) = self.checkout(&origin).await else {
            return Box::pin(self.send_on_new_h1(origin, request, handed)).await;
        };
        handed.store(true, Ordering::Relaxed);
        // A reused connection the server closed while idle gives the
        // request back unwritten: a new connection takes it.
        let (back, _) = match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, Some(Lease { origin, sender }))),
            Err(e) => given_back(e)?,
        };
        handed.store(false, Ordering::Relaxed);
        Box::pin(self.send_on_new_h1(origin, back, handed)).await
    }

    async fn send_on_new_h1(
        &self,
        origin: Arc<Origin>,
        request: Request<Body>,
        handed: &AtomicBool,
    ) -> Result<(Response<Incoming>, Option<Lease>), Failure> {
        let mut sender = self.dial_h1(&origin).await?;
        handed.store(true, Ordering::Relaxed);
        match sender.try_send_request(request).await {
            Ok(response) => Ok((response, Some(Lease { origin, sender }))),
            Err(e) => Err(unwritten(given_back(e)?.1)),
        }
    }

    /// Return a connection whose response was read whole.
    pub(crate) fn give_back(&self, lease: Lease) {
        let idle = Idle {
            sender: lease.sender,
            since: Instant::now(),
        };
        // Full: close it (dropping the sender ends the connection).
        let _ = lease.origin.idle.push(idle);
    }

    fn origin(&self, uri: &Uri) -> Result<Arc<Origin>, Failure> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(Failure::Connect(format!("`{uri}` is not an absolute URL")));
        };
        let same = |o: &&Arc<Origin>| o.scheme == *scheme && o.authority == *authority;
        if let Some(o) = self.origins.load().iter().find(same) {
            return Ok(o.clone());
        }
        let dial = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| Failure::Connect(format!("`{uri}`: {e}")))?;
        let origin = Arc::new(Origin {
            scheme: scheme.clone(),
            authority: authority.clone(),
            dial,
            host: header::HeaderValue::from_str(authority.as_str()).ok(),
            idle: IdleQueue::new(self.settings.pool_max_idle_per_host),
            h2: ArcSwapOption::empty(),
            h2_dial: tokio::sync::Mutex::new(()),
        });
        let mut added = origin.clone();
        self.origins.rcu(|list| {
            // Another request may have added it meanwhile.
            if let Some(o) = list.iter().find(same) {
                added = o.clone();
                return list.clone();
            }
            added = origin.clone();
            let mut list = Vec::clone(list);
            list.push(origin.clone());
            Arc::new(list)
        });
        if Arc::ptr_eq(&added, &origin) && !self.settings.http2 {
            spawn_reaper(&added, self.settings.pool_idle_timeout);
        }
        Ok(added)
    }

    /// An idle connection ready for a request, if there is one.
    async fn checkout(&self, origin: &Origin) -> Option<http1::SendRequest<Body>> {
        while let Some(Idle { mut sender, since }) = origin.idle.pop() {
            if since.elapsed() > self.settings.pool_idle_timeout || sender.is_closed() {
                continue;
            }
            // Given back right after its body was read, a connection may
            // need a moment to be ready again; a closed one errs at once.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
        None
    }

    async fn dial(
        &self,
        origin: &Origin,
    ) -> Result<
        hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>,
        Failure,
    > {
        let mut connector = self.connector.clone();
        connector
            .call(origin.dial.clone())
            .await
            .map_err(|e| Failure::Connect(crate::transport::error_chain(&*e)))
    }

    async fn dial_h1(&self, origin: &Origin) -> Result<http1::SendRequest<Body>, Failure> {
        let io = self.dial(origin).await?;
        let (sender, connection) = http1::Builder::new()
            .read_buf_exact_size(Some(READ_BUF))
            .handshake(io)
            .await
            .map_err(|e| Failure::Connect(crate::transport::error_chain(&e)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn send_h2(
        &self,
        origin: Arc<Origin>,
        request: Request<Body>,
        handed: &AtomicBool,
    ) -> Result<Response<Incoming>, Failure> {
        let Some(mut sender) = current_h2(&origin) else {
            return Box::pin(self.send_on_new_h2(origin, request, handed)).await;
        };
        // Waits for a free stream under the server's concurrency limit;
        // errs at once if the connection closed since we looked.
        if sender.ready().await.is_err() {
            forget_h2(&origin, &sender);
            return Box::pin(self.send_on_new_h2(origin, request, handed)).await;
        }
        handed.store(true, Ordering::Relaxed);
        let (back, _) = match sender.try_send_request(request).await {
            Ok(response) => return Ok(response),
            Err(e) => given_back(e)?,
        };
        handed.store(false, Ordering::Relaxed);
        forget_h2(&origin, &sender);
        Box::pin(self.send_on_new_h2(origin, back, handed)).await
    }

    async fn send_on_new_h2(
        &self,
        origin: Arc<Origin>,
        request: Request<Body>,
        handed: &AtomicBool,
    ) -> Result<Response<Incoming>, Failure> {
        let mut sender = self.h2_sender(&origin).await?;
        if let Err(e) = sender.ready().await {
            return Err(Failure::Connect(crate::transport::error_chain(&e)));
        }
        handed.store(true, Ordering::Relaxed);
        match sender.try_send_request(request).await {
            Ok(response) => Ok(response),
            Err(e) => Err(unwritten(given_back(e)?.1)),
        }
    }

    /// Dial the origin's HTTP/2 connection, unless a concurrent request
    /// just did.
    async fn h2_sender(&self, origin: &Origin) -> Result<http2::SendRequest<Body>, Failure> {
        let _dialling = origin.h2_dial.lock().await;
        if let Some(s) = current_h2(origin) {
            return Ok(s);
        }
        let io = self.dial(origin).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            // One connection carries every stream: keep it alive across
            // quiet spells instead of re-handshaking.
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .handshake(io)
            .await
            .map_err(|e| Failure::Connect(crate::transport::error_chain(&e)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        origin.h2.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }
}

/// A failed `try_send_request`: the request hyper gave back unwritten
/// (with why), or, when it was (or may have been) written, that failure.
fn given_back(
    mut e: hyper::client::conn::TrySendError<Request<Body>>,
) -> Result<(Request<Body>, hyper::Error), Failure> {
    match e.take_message() {
        Some(back) => Ok((back, e.into_error())),
        None => Err(Failure::Sent(e.into_error())),
    }
}

/// A fresh connection closed before it wrote the request: nothing left.
fn unwritten(e: hyper::Error) -> Failure {
    Failure::Connect(format!(
        "the connection closed before the request was written: {e}"
    ))
}

/// The origin's open HTTP/2 connection, if it has one.
fn current_h2(origin: &Origin) -> Option<http2::SendRequest<Body>> {
    origin
        .h2
        .load()
        .as_deref()
        .filter(|s| !s.is_closed())
        .cloned()
}

fn forget_h2(origin: &Origin, closed: &http2::SendRequest<Body>) {
    let current = origin.h2.load();
    if current.as_deref().is_some_and(|s| s.is_closed()) || closed.is_closed() {
        origin.h2.compare_and_swap(&*current, None);
    }
}

/// Close idle connections past `timeout` even when no request comes to
/// find them: every `timeout / 2` (at least 1 s) the queue is drained and
/// what is still fresh is put back. Ends with the pool.
fn spawn_reaper(origin: &Arc<Origin>, timeout: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(origin);
    let every = (timeout / 2).max(Duration::from_secs(1));
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(origin) = weak.upgrade() else {
                return;
            };
            let n = origin.idle.len();
            for _ in 0..n {
                let Some(idle) = origin.idle.pop() else {
                    break;
                };
                if idle.since.elapsed() <= timeout && !idle.sender.is_closed() {
                    let _ = origin.idle.push(idle);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every send's future embeds the pool's: the rare dial paths are boxed
    /// so it stays small (20,000 sends in flight hold 20,000 of them).
    #[test]
    fn a_send_future_stays_small() {
        let pool = Pool::new(PoolSettings {
            connect_timeout: Duration::from_secs(1),
            pool_max_idle_per_host: 1,
            pool_idle_timeout: Duration::from_secs(1),
            http2: false,
        });
        let handed = AtomicBool::new(false);
        let send = pool.send(Request::new(Body::default()), &handed);
        let size = std::mem::size_of_val(&send);
        // 872 bytes today (a request is 256 of them); hyper-util's client
        // took 2 KiB on the heap per request plus its own future.
        assert!(size <= 1024, "Pool::send future is {size} bytes");
    }
}
