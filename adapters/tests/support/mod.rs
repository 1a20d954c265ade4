//! Local servers for the provider tests: an HTTP server whose answers each
//! test scripts (speaking the provider's real wire format), and raw TCP
//! servers for the failures below HTTP. Everything listens on 127.0.0.1:0.

// Each test binary uses a different subset.
#![allow(dead_code)]

pub mod sigv4;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use herald_adapters::ConnectionSettings;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The providers' connection settings in these tests: the defaults, with a
/// 5 s budget per send.
pub fn connection() -> ConnectionSettings {
    ConnectionSettings {
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Path and query.
    pub target: String,
    /// `Host` over HTTP/1.1, `:authority` over HTTP/2.
    pub host: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body decoded as `application/x-www-form-urlencoded`.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// A running HTTP/1.1 + h2c server.
pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

type Handler = dyn Fn(&Recorded) -> Response<Full<Bytes>> + Send + Sync;

/// Serve every request with `handler`, recording it first.
pub async fn serve(
    handler: impl Fn(&Recorded) -> Response<Full<Bytes>> + Send + Sync + 'static,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let handler: Arc<Handler> = Arc::new(handler);
    {
        let requests = requests.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                let requests = requests.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        let requests = requests.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            let host = parts
                                .headers
                                .get(header::HOST)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                                .or_else(|| parts.uri.authority().map(|a| a.to_string()))
                                .unwrap_or_default();
                            let recorded = Recorded {
                                method: parts.method,
                                target: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                host,
                                version: parts.version,
                                headers: parts.headers,
                                body,
                            };
                            let response = handler(&recorded);
                            requests.lock().unwrap().push(recorded);
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
    Server {
        addr,
        requests,
        connections,
    }
}

/// A response with `status`, `headers` and `body`.
pub fn respond(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    response
}

/// A local port with nothing listening on it.
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Read one HTTP/1.1 request (head and `Content-Length` body).
async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= head_end + 4 + length {
                return buf;
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before sending a whole request");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What a raw TCP server does with each connection.
#[derive(Clone)]
pub enum Behaviour {
    /// Read the whole request, then hold the connection without answering.
    Silent,
    /// Read the whole request, then close the connection.
    CloseAfterRequest,
    /// Read the request, write these bytes, then hold the connection.
    Answer(Vec<u8>),
    /// Read the request, write these bytes, then close the connection
    /// (a keep-alive connection the server drops while it is idle).
    AnswerThenClose(Vec<u8>),
    /// Accept TCP, never read or write: a TLS handshake never completes.
    StallBeforeRequest,
}

/// A one-behaviour TCP server; every whole request it read is sent on the
/// channel.
pub async fn raw_server(behaviour: Behaviour) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            if let Behaviour::StallBeforeRequest = behaviour {
                held.push(stream);
                continue;
            }
            let request = read_request(&mut stream).await;
            let _ = tx.send(request);
            match &behaviour {
                Behaviour::Silent => held.push(stream),
                Behaviour::CloseAfterRequest => drop(stream),
                Behaviour::Answer(bytes) => {
                    stream.write_all(bytes).await.unwrap();
                    held.push(stream);
                }
                Behaviour::AnswerThenClose(bytes) => {
                    stream.write_all(bytes).await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    drop(stream);
                }
                Behaviour::StallBeforeRequest => {}
            }
        }
    });
    (addr, rx)
}
