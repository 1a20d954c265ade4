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
//!   dialled (once, however many requests notice) when it closes. It is
//!   driven by the `h2` crate directly: hyper's HTTP/2 client spawns a task
//!   per request to forward the answer, which was most of the moves and
//!   task bookkeeping in a perf profile of the `throughput-h2` scenario.
//!
//! The pool also knows exactly how far each request got, which is what the
//! ambiguity rules in `transport` need: whether a connection was obtained,
//! and whether hyper gave a request back unwritten (a reused connection the
//! server had closed): that request is re-sent on another connection, as
//! no byte of it left.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use crossbeam_queue::SegQueue;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower_service::Service;

type Body = Full<Bytes>;
type H2Sender = h2::client::SendRequest<Bytes>;

/// An error of any layer, for messages.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// HTTP/2 flow-control windows Herald grants the server, as hyper's client
/// did: answers never wait for a window update (each stream's answer is
/// 1–2 KB, thousands at once).
const H2_STREAM_WINDOW: u32 = 2 << 20;
const H2_CONNECTION_WINDOW: u32 = 5 << 20;
/// An HTTP/2 connection is pinged this often; one whose ping is not
/// answered within `H2_PING_TIMEOUT` is closed and redialled on next use.
const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

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
    Sent(BoxError),
}

/// A provider's answer body, as read off either protocol.
pub(crate) enum ResponseBody {
    H1(Incoming),
    H2(h2::RecvStream),
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::H1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ResponseBody::H2(stream) => match std::task::ready!(stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The caller buffers the whole body: give the window
                    // back at once.
                    let _ = stream.flow_control().release_capacity(data.len());
                    Poll::Ready(Some(Ok(http_body::Frame::data(data))))
                }
                Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                None => match std::task::ready!(stream.poll_trailers(cx)) {
                    Ok(Some(trailers)) => {
                        Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
                    }
                    Ok(None) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e.into()))),
                },
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::H1(body) => http_body::Body::is_end_stream(body),
            ResponseBody::H2(stream) => stream.is_end_stream(),
        }
    }
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
    h2: ArcSwapOption<H2Sender>,
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
    ) -> impl Future<Output = Result<(Response<ResponseBody>, Option<Lease>), Failure>> + Send + 'a
    {
        use futures::future::{Either, FutureExt, ready};
        match self.origin(request.uri()) {
            Err(e) => Either::Left(ready(Err(e))),
            Ok(origin) if self.settings.http2 => Either::Right(Either::Left(
                self.send_h2(origin, request, handed)
                    .map(|r| r.map(|r| (r, None))),
            )),
            Ok(origin) => Either::Right(Either::Right(
                self.send_h1(origin, request, handed)
                    .map(|r| r.map(|(r, lease)| (r.map(ResponseBody::H1), lease))),
            )),
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
            .map_err(|e| Failure::Connect(crate::error_chain(&*e)))
    }

    async fn dial_h1(&self, origin: &Origin) -> Result<http1::SendRequest<Body>, Failure> {
        let io = self.dial(origin).await?;
        let (sender, connection) = http1::Builder::new()
            .read_buf_exact_size(Some(READ_BUF))
            .handshake(io)
            .await
            .map_err(|e| Failure::Connect(crate::error_chain(&e)))?;
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
    ) -> Result<Response<ResponseBody>, Failure> {
        let Some(sender) = origin.h2.load_full() else {
            return Box::pin(self.send_on_new_h2(origin, request, handed)).await;
        };
        // Waits for a free stream under the server's concurrency limit;
        // errs at once if the connection closed since it was dialled.
        match H2Sender::clone(&sender).ready().await {
            Ok(mut ready) => finish_h2(start_h2(&mut ready, request, handed)?).await,
            Err(_) => {
                forget_h2(&origin, &sender);
                Box::pin(self.send_on_new_h2(origin, request, handed)).await
            }
        }
    }

    async fn send_on_new_h2(
        &self,
        origin: Arc<Origin>,
        request: Request<Body>,
        handed: &AtomicBool,
    ) -> Result<Response<ResponseBody>, Failure> {
        let sender = self.h2_sender(&origin).await?;
        match H2Sender::clone(&sender).ready().await {
            Ok(mut ready) => finish_h2(start_h2(&mut ready, request, handed)?).await,
            Err(e) => {
                forget_h2(&origin, &sender);
                Err(Failure::Connect(crate::error_chain(&e)))
            }
        }
    }

    /// Dial the origin's HTTP/2 connection, unless a concurrent request
    /// just did.
    async fn h2_sender(&self, origin: &Origin) -> Result<Arc<H2Sender>, Failure> {
        let _dialling = origin.h2_dial.lock().await;
        if let Some(s) = origin.h2.load_full() {
            return Ok(s);
        }
        let io = TokioIo::new(self.dial(origin).await?);
        let (sender, mut connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| Failure::Connect(crate::error_chain(&e)))?;
        let pings = connection.ping_pong();
        tokio::spawn(async move {
            // One connection carries every stream: keep it alive across
            // quiet spells, and close it (by dropping it) when a ping goes
            // unanswered, so the next request dials a fresh one.
            tokio::select! {
                _ = &mut connection => {}
                () = keep_alive(pings) => {}
            }
        });
        let sender = Arc::new(sender);
        origin.h2.store(Some(Arc::clone(&sender)));
        Ok(sender)
    }
}

/// Start the request on an HTTP/2 connection with a stream free for it.
/// Not async: nothing of the request is kept while the answer is awaited
/// (20,000 sends in flight each hold their wait).
fn start_h2(
    sender: &mut H2Sender,
    request: Request<Body>,
    handed: &AtomicBool,
) -> Result<h2::client::ResponseFuture, Failure> {
    use futures::FutureExt;
    use http_body_util::BodyExt;
    let (parts, mut body) = request.into_parts();
    // A `Full` body is ready at once.
    let data = match body.frame().now_or_never() {
        Some(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    };
    let mut head = Request::from_parts(parts, ());
    strip_connection_headers(head.headers_mut());
    if !data.is_empty() && !head.headers().contains_key(header::CONTENT_LENGTH) {
        head.headers_mut().insert(
            header::CONTENT_LENGTH,
            header::HeaderValue::from(data.len()),
        );
    }
    let end = data.is_empty();
    // Refused before anything was queued for the wire (the connection is
    // going away, a malformed header): nothing left.
    let (response, mut stream) = sender
        .send_request(head, end)
        .map_err(|e| Failure::Connect(crate::error_chain(&e)))?;
    handed.store(true, Ordering::Relaxed);
    if !end {
        stream
            .send_data(data, true)
            .map_err(|e| Failure::Sent(Box::new(e)))?;
    }
    Ok(response)
}

/// HTTP/2 has no connection-specific headers (RFC 9113 §8.2.2) and the
/// `h2` crate refuses a request that carries one, so a header an operator
/// configured for HTTP/1.1 (`Connection: keep-alive`…) is dropped here, as
/// hyper's client did, instead of failing every send.
fn strip_connection_headers(headers: &mut http::HeaderMap) {
    if let Some(named) = headers.remove(header::CONNECTION)
        && let Ok(named) = named.to_str()
    {
        for name in named.split(',') {
            headers.remove(name.trim());
        }
    }
    for name in [
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if headers
        .get(header::TE)
        .is_some_and(|te| te.as_bytes() != b"trailers")
    {
        headers.remove(header::TE);
    }
}

/// The answer to a request started by [`start_h2`].
async fn finish_h2(
    response: h2::client::ResponseFuture,
) -> Result<Response<ResponseBody>, Failure> {
    match response.await {
        Ok(response) => Ok(response.map(ResponseBody::H2)),
        // RFC 9113 §8.7: a refused stream was not processed, whatever was
        // written.
        Err(e) if e.reason() == Some(h2::Reason::REFUSED_STREAM) => Err(Failure::Connect(format!(
            "the server refused the stream: {e}"
        ))),
        Err(e) => Err(Failure::Sent(Box::new(e))),
    }
}

/// Ping an HTTP/2 connection every `H2_PING_EVERY`; returns when a ping is
/// not answered in time (never, if the connection has no ping handle).
async fn keep_alive(pings: Option<h2::PingPong>) {
    let Some(mut pings) = pings else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(H2_PING_EVERY).await;
        match tokio::time::timeout(H2_PING_TIMEOUT, pings.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
}

/// A failed `try_send_request`: the request hyper gave back unwritten
/// (with why), or, when it was (or may have been) written, that failure.
fn given_back(
    mut e: hyper::client::conn::TrySendError<Request<Body>>,
) -> Result<(Request<Body>, hyper::Error), Failure> {
    match e.take_message() {
        Some(back) => Ok((back, e.into_error())),
        None => Err(Failure::Sent(Box::new(e.into_error()))),
    }
}

/// A fresh connection closed before it wrote the request: nothing left.
fn unwritten(e: hyper::Error) -> Failure {
    Failure::Connect(format!(
        "the connection closed before the request was written: {e}"
    ))
}

/// Drop the origin's HTTP/2 connection if it is still `closed` (a request
/// found it gone); a newer one stays.
fn forget_h2(origin: &Origin, closed: &Arc<H2Sender>) {
    origin.h2.compare_and_swap(&Some(Arc::clone(closed)), None);
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
