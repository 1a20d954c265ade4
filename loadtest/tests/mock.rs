//! The mock provider's fault rules and status callbacks over real HTTP on
//! 127.0.0.1: what a Twilio client (Herald's adapter) and a callback receiver
//! (Herald's webhook) see on the wire.
//!
//! Waits carry a generous guard (`GUARD`) so a broken mock fails the test
//! instead of hanging it; no assertion depends on how fast anything is.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha1::Sha1;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use herald_loadtest::mock::{MockProvider, MockSettings};

const FROM: &str = "+15005550006";
const ORDINARY: &str = "+14155550123";
/// Only a broken mock makes a test wait this long.
const GUARD: Duration = Duration::from_secs(60);

async fn guarded<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing happened within {GUARD:?}"))
}

async fn start(settings: MockSettings) -> MockProvider {
    MockProvider::start(SocketAddr::from(([127, 0, 0, 1], 0)), settings)
        .await
        .unwrap()
}

// ---------------------------------------------------------------- client

/// Form fields of a create.
type Form<'a> = &'a [(&'a str, &'a str)];

/// What the client saw: an answer, or the exchange failing without one.
#[derive(Debug)]
enum Outcome {
    Answer {
        status: StatusCode,
        headers: HeaderMap,
        json: serde_json::Value,
    },
    /// No answer: the `hyper` error the client got.
    NoAnswer(hyper::Error),
}

impl Outcome {
    /// Status, Twilio error code (from the JSON) and `Retry-After`.
    fn summary(&self) -> (u16, Option<u64>, Option<String>) {
        match self {
            Outcome::Answer {
                status,
                headers,
                json,
            } => (
                status.as_u16(),
                json["code"].as_u64(),
                headers
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap().to_owned()),
            ),
            Outcome::NoAnswer(e) => panic!("expected an answer, got {e}"),
        }
    }

    fn sid(&self) -> String {
        match self {
            Outcome::Answer { status, json, .. } => {
                assert_eq!(*status, StatusCode::CREATED, "{json}");
                json["sid"].as_str().unwrap().to_owned()
            }
            Outcome::NoAnswer(e) => panic!("expected an answer, got {e}"),
        }
    }
}

fn create_request(mock: &MockProvider, form: Form<'_>) -> Request<Full<Bytes>> {
    let settings = mock.settings();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let credentials = STANDARD.encode(format!("{}:{}", settings.account_sid, settings.auth_token));
    Request::post(format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        mock.base_url(),
        settings.account_sid
    ))
    .header(header::AUTHORIZATION, format!("Basic {credentials}"))
    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    .body(Full::new(Bytes::from(body)))
    .unwrap()
}

async fn read(response: Response<Incoming>) -> Outcome {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Outcome::Answer {
        status: parts.status,
        headers: parts.headers,
        json: serde_json::from_slice(&bytes).unwrap(),
    }
}

/// One create over a fresh HTTP/1.1 keep-alive connection, the way Herald's
/// pooled client sends it: the connection is left open unless the server
/// closes it.
async fn create(mock: &MockProvider, form: Form<'_>) -> Outcome {
    let request = create_request(mock, form);
    guarded("create", async {
        let stream = TcpStream::connect(mock.addr()).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        match sender.send_request(request).await {
            Ok(response) => read(response).await,
            Err(e) => Outcome::NoAnswer(e),
        }
    })
    .await
}

async fn send(mock: &MockProvider, to: &str) -> Outcome {
    create(mock, &[("To", to), ("From", FROM), ("Body", "hi")]).await
}

// ---------------------------------------------------------------- callback receiver

/// One status callback as the receiver got it.
#[derive(Debug)]
struct Callback {
    path_and_query: String,
    headers: HeaderMap,
    params: Vec<(String, String)>,
}

impl Callback {
    fn param(&self, name: &str) -> Option<&str> {
        let mut values = self.params.iter().filter(|(k, _)| k == name);
        let value = values.next().map(|(_, v)| v.as_str());
        assert!(
            values.next().is_none(),
            "{name} repeated: {:?}",
            self.params
        );
        value
    }
}

/// A small HTTP server standing in for Herald's status webhook: it records
/// each request, then answers `status`.
struct CallbackReceiver {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Callback>,
}

impl CallbackReceiver {
    async fn start(status: StatusCode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let params = form_urlencoded::parse(&body).into_owned().collect();
                        let path_and_query = parts.uri.path_and_query().unwrap().to_string();
                        let _ = tx.send(Callback {
                            path_and_query,
                            headers: parts.headers,
                            params,
                        });
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        CallbackReceiver { addr, received }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    async fn next(&mut self) -> Callback {
        guarded("status callback", self.received.recv())
            .await
            .expect("receiver task ended")
    }
}

/// Wait until the mock has POSTed every callback it scheduled.
async fn settled(mock: &MockProvider) {
    guarded("callbacks pending", async {
        while mock.stats().callbacks_pending > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// `X-Twilio-Signature` computed here from Twilio's definition, not with the
/// mock's code: Base64(HMAC-SHA1(token, url + name1 + value1 + name2 + …)),
/// names sorted.
fn signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (name, value) in &sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The expected callback statuses, with their `ErrorCode`.
type Expected = &'static [(&'static str, Option<&'static str>)];
const DELIVERED: Expected = &[("sent", None), ("delivered", None)];

/// Receive `expected.len()` callbacks for one message and check each: where
/// it went, its signature, and Twilio's fields.
async fn expect_callbacks(
    receiver: &mut CallbackReceiver,
    mock: &MockProvider,
    url: &str,
    sid: &str,
    to: &str,
    expected: Expected,
    name: &str,
) {
    let settings = mock.settings();
    let mut got = Vec::new();
    for _ in expected {
        let callback = receiver.next().await;
        assert_eq!(
            receiver.url(&callback.path_and_query),
            url,
            "{name}: callback URL"
        );
        assert_eq!(
            callback.headers[header::CONTENT_TYPE],
            "application/x-www-form-urlencoded",
            "{name}"
        );
        let header = callback.headers["x-twilio-signature"].to_str().unwrap();
        assert_eq!(
            header,
            signature(&settings.auth_token, url, &callback.params),
            "{name}: signature"
        );
        assert_ne!(
            header,
            signature("another-token", url, &callback.params),
            "{name}: the signature depends on the token"
        );
        assert_eq!(callback.param("MessageSid"), Some(sid), "{name}");
        assert_eq!(callback.param("SmsSid"), Some(sid), "{name}");
        assert_eq!(
            callback.param("AccountSid"),
            Some(settings.account_sid.as_str()),
            "{name}"
        );
        assert_eq!(callback.param("ApiVersion"), Some("2010-04-01"), "{name}");
        assert_eq!(callback.param("To"), Some(to), "{name}");
        assert_eq!(callback.param("From"), Some(FROM), "{name}");
        assert_eq!(
            callback.param("SmsStatus"),
            callback.param("MessageStatus"),
            "{name}"
        );
        got.push((
            callback.param("MessageStatus").unwrap().to_owned(),
            callback.param("ErrorCode").map(str::to_owned),
        ));
    }
    let want: Vec<_> = expected
        .iter()
        .map(|&(s, code)| (s.to_owned(), code.map(str::to_owned)))
        .collect();
    assert_eq!(got, want, "{name}: statuses in order");
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn magic_numbers_answer_with_their_rule() {
    let mock = start(MockSettings::default()).await;
    // (To, status, Twilio code, Retry-After)
    let rows = [
        ("+15005550429", 429, Some(20429), Some("1")),
        ("+15005550500", 500, Some(20500), None),
        ("+15005550503", 503, Some(20503), None),
        // Rules only pick faults: validation magic numbers still come first.
        ("+15005550004", 400, Some(21610), None),
        (ORDINARY, 201, None, None),
    ];
    for (to, status, code, retry_after) in rows {
        let outcome = send(&mock, to).await;
        assert_eq!(
            outcome.summary(),
            (status, code, retry_after.map(str::to_owned)),
            "{to}"
        );
        if let (Outcome::Answer { json, .. }, Some(code)) = (&outcome, code) {
            assert_eq!(json["status"], status, "{to}");
            assert_eq!(
                json["more_info"],
                format!("https://www.twilio.com/docs/errors/{code}"),
                "{to}"
            );
            assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    let stats = mock.stats();
    assert_eq!(
        (
            stats.requests,
            stats.rate_limited,
            stats.server_errors,
            stats.errors,
            stats.rejected_invalid,
            stats.accepted
        ),
        (5, 1, 2, 3, 1, 1)
    );
}

/// The request is read in full, then nothing comes back: Herald's client
/// (hyper) sees the connection close before a response, the ambiguous case.
#[tokio::test]
async fn dropped_connections_close_without_an_answer() {
    // (To, accepted and recorded anyway)
    let rows = [("+15005550555", false), ("+15005550556", true)];
    for (to, accepted) in rows {
        let mock = start(MockSettings {
            record: true,
            ..MockSettings::default()
        })
        .await;
        match send(&mock, to).await {
            Outcome::NoAnswer(e) => assert!(e.is_incomplete_message(), "{to}: {e}"),
            answer => panic!("{to}: expected no answer, got {answer:?}"),
        }
        let stats = mock.stats();
        assert_eq!(stats.dropped, 1, "{to}");
        assert_eq!(stats.accepted, u64::from(accepted), "{to}");
        let recorded: Vec<_> = mock.recorded().into_iter().map(|m| m.to).collect();
        let want: Vec<String> = if accepted {
            vec![to.to_owned()]
        } else {
            vec![]
        };
        assert_eq!(recorded, want, "{to}");
    }

    // The same byte for byte, without a client library: the request goes out
    // on a keep-alive connection and the server's only reply is EOF.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mock = start(MockSettings::default()).await;
    let request = create_request(
        &mock,
        &[("To", "+15005550555"), ("From", FROM), ("Body", "hi")],
    );
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let mut raw = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\n",
        parts.uri.path(),
        mock.addr()
    );
    for (name, value) in &parts.headers {
        raw.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut reply = Vec::new();
    guarded("raw drop", stream.read_to_end(&mut reply))
        .await
        .unwrap();
    assert!(
        reply.is_empty(),
        "expected EOF, got {:?}",
        String::from_utf8_lossy(&reply)
    );
}

/// On HTTP/2 a drop resets the request's stream; the connection, shared with
/// other requests, keeps serving.
#[tokio::test]
async fn dropped_http2_request_resets_only_its_stream() {
    let mock = start(MockSettings::default()).await;
    let stream = TcpStream::connect(mock.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let form = |to| [("To", to), ("From", FROM), ("Body", "hi")];

    let dropped = guarded(
        "h2 drop",
        sender.send_request(create_request(&mock, &form("+15005550555"))),
    )
    .await;
    assert!(dropped.is_err(), "a dropped request has no response");

    let response = guarded(
        "h2 after drop",
        sender.send_request(create_request(&mock, &form(ORDINARY))),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(mock.stats().dropped, 1);
    assert_eq!(mock.stats().connections_accepted, 1);
}

#[tokio::test]
async fn slow_number_is_answered_late() {
    let slow = Duration::from_millis(200);
    let mock = start(MockSettings {
        slow_delay: slow,
        ..MockSettings::default()
    })
    .await;
    let began = Instant::now();
    let outcome = send(&mock, "+15005550777").await;
    // A lower bound only: the mock sleeps at least `slow_delay`.
    assert!(
        began.elapsed() >= slow,
        "answered after {:?}",
        began.elapsed()
    );
    assert_eq!(outcome.summary().0, 201);
    assert_eq!(mock.stats().slowed, 1);
    send(&mock, ORDINARY).await.sid();
    assert_eq!(mock.stats().slowed, 1, "an ordinary number is not slowed");
}

/// Each callback rule by magic number: signed, Twilio's fields, in the
/// rule's order; and nothing else.
#[tokio::test]
async fn callbacks_by_magic_number() {
    let mut receiver = CallbackReceiver::start(StatusCode::NO_CONTENT).await;
    let mock = start(MockSettings {
        status_callbacks: true,
        callback_delay: Duration::ZERO,
        record: true,
        ..MockSettings::default()
    })
    .await;
    let rows: [(&str, Expected); 8] = [
        (ORDINARY, DELIVERED),
        (
            "+15005550030",
            &[("sent", None), ("undelivered", Some("30003"))],
        ),
        (
            "+15005550031",
            &[("sent", None), ("undelivered", Some("30005"))],
        ),
        (
            "+15005550032",
            &[("sent", None), ("undelivered", Some("30007"))],
        ),
        ("+15005550033", &[("failed", Some("30001"))]),
        ("+15005550021", &[("delivered", None), ("sent", None)]),
        (
            "+15005550022",
            &[
                ("sent", None),
                ("sent", None),
                ("delivered", None),
                ("delivered", None),
            ],
        ),
        // Accepted, then the connection dropped: the receipts still come.
        ("+15005550556", DELIVERED),
    ];
    for (i, (to, expected)) in rows.iter().enumerate() {
        // A query string, as Herald's callback URLs carry: it is signed too.
        let url = receiver.url(&format!("/v1/webhooks/twilio/status?tenant=acme&row={i}"));
        let outcome = create(
            &mock,
            &[
                ("To", to),
                ("From", FROM),
                ("Body", "hi"),
                ("StatusCallback", &url),
            ],
        )
        .await;
        let sid = match outcome {
            Outcome::NoAnswer(_) => mock.recorded().last().unwrap().sid.clone(),
            answer => answer.sid(),
        };
        expect_callbacks(&mut receiver, &mock, &url, &sid, to, expected, to).await;
    }
    settled(&mock).await;
    assert!(
        receiver.received.try_recv().is_err(),
        "an unexpected callback"
    );
    let stats = mock.stats();
    assert_eq!(
        (
            stats.receipts,
            stats.receipts_undelivered,
            stats.receipts_duplicated,
            stats.receipts_reordered,
            stats.callbacks_sent,
            stats.callbacks_failed,
        ),
        (8, 4, 1, 1, 17, 0)
    );
}

#[tokio::test]
async fn messaging_service_callbacks_name_the_service() {
    let mut receiver = CallbackReceiver::start(StatusCode::OK).await;
    let mock = start(MockSettings {
        status_callbacks: true,
        callback_delay: Duration::ZERO,
        ..MockSettings::default()
    })
    .await;
    let url = receiver.url("/status");
    let service = "MG00000000000000000000000000000001";
    let sid = create(
        &mock,
        &[
            ("To", ORDINARY),
            ("MessagingServiceSid", service),
            ("Body", "hi"),
            ("StatusCallback", &url),
        ],
    )
    .await
    .sid();
    for status in ["sent", "delivered"] {
        let callback = receiver.next().await;
        assert_eq!(callback.param("MessageStatus"), Some(status));
        assert_eq!(callback.param("MessageSid"), Some(sid.as_str()));
        assert_eq!(callback.param("MessagingServiceSid"), Some(service));
        // The mock picks no sender for a service, so it names none.
        assert_eq!(callback.param("From"), None);
        assert_eq!(
            callback.headers["x-twilio-signature"].to_str().unwrap(),
            signature(&mock.settings().auth_token, &url, &callback.params)
        );
    }
}

/// Callbacks only when switched on and asked for: `receipts` is counted
/// before the `201` goes out, so 0 after it means none was scheduled.
#[tokio::test]
async fn no_callbacks_unless_on_and_asked_for() {
    let receiver = CallbackReceiver::start(StatusCode::OK).await;
    let url = receiver.url("/status");
    let with_url = [
        ("To", ORDINARY),
        ("From", FROM),
        ("Body", "hi"),
        ("StatusCallback", &url),
    ];
    let without_url = [("To", ORDINARY), ("From", FROM), ("Body", "hi")];
    // (name, callbacks on, form, callbacks scheduled)
    let rows: [(&str, bool, Form, u64); 3] = [
        ("off, with a URL", false, &with_url, 0),
        ("on, without a URL", true, &without_url, 0),
        ("on, with a URL", true, &with_url, 1),
    ];
    for (name, on, form, receipts) in rows {
        let mock = start(MockSettings {
            status_callbacks: on,
            // Long enough that nothing is sent while the test looks.
            callback_delay: Duration::from_secs(3600),
            ..MockSettings::default()
        })
        .await;
        create(&mock, form).await.sid();
        assert_eq!(mock.stats().receipts, receipts, "{name}");
        assert_eq!(mock.stats().callbacks_pending, receipts, "{name}");
        mock.shutdown().await;
    }
}

#[tokio::test]
async fn failed_callbacks_are_counted() {
    let mut refusing = CallbackReceiver::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let rows = [
        ("receiver answers 500", refusing.url("/status")),
        (
            "https is not supported",
            "https://127.0.0.1:1/status".to_owned(),
        ),
        (
            "nobody listening",
            format!("http://127.0.0.1:{closed_port}/status"),
        ),
    ];
    for (name, url) in rows {
        let mock = start(MockSettings {
            status_callbacks: true,
            callback_delay: Duration::ZERO,
            ..MockSettings::default()
        })
        .await;
        let form = [
            ("To", ORDINARY),
            ("From", FROM),
            ("Body", "hi"),
            ("StatusCallback", url.as_str()),
        ];
        create(&mock, &form).await.sid();
        settled(&mock).await;
        let stats = mock.stats();
        assert_eq!(
            (stats.callbacks_sent, stats.callbacks_failed),
            (0, 2),
            "{name}"
        );
    }
    // The refusing receiver did get both POSTs.
    for status in ["sent", "delivered"] {
        assert_eq!(refusing.next().await.param("MessageStatus"), Some(status));
    }
}

/// Each answer-rate knob at 1 applies to every request, at 0 to none.
#[tokio::test]
async fn answer_rates_at_zero_and_one() {
    #[derive(Debug)]
    enum Want {
        /// Any of these (status, code, Retry-After).
        OneOf(&'static [(u16, Option<u64>, Option<&'static str>)]),
        NoAnswer,
    }
    let base = MockSettings::default;
    let rows = [
        ("all at 0", base(), Want::OneOf(&[(201, None, None)])),
        (
            "error_rate 1",
            MockSettings {
                error_rate: 1.0,
                ..base()
            },
            Want::OneOf(&[(429, Some(20429), Some("1")), (500, Some(20500), None)]),
        ),
        (
            "rate_limit_rate 1",
            MockSettings {
                rate_limit_rate: 1.0,
                retry_after_secs: 7,
                ..base()
            },
            Want::OneOf(&[(429, Some(20429), Some("7"))]),
        ),
        (
            "server_error_rate 1",
            MockSettings {
                server_error_rate: 1.0,
                ..base()
            },
            Want::OneOf(&[(500, Some(20500), None), (503, Some(20503), None)]),
        ),
        (
            "drop_rate 1",
            MockSettings {
                drop_rate: 1.0,
                ..base()
            },
            Want::NoAnswer,
        ),
        (
            "slow_rate 1",
            MockSettings {
                slow_rate: 1.0,
                slow_delay: Duration::from_millis(1),
                ..base()
            },
            Want::OneOf(&[(201, None, None)]),
        ),
    ];
    const REQUESTS: u64 = 4;
    for (name, settings, want) in rows {
        let mock = start(settings).await;
        for _ in 0..REQUESTS {
            let outcome = send(&mock, ORDINARY).await;
            match (&want, outcome) {
                (Want::NoAnswer, Outcome::NoAnswer(e)) => {
                    assert!(e.is_incomplete_message(), "{name}: {e}");
                }
                (Want::OneOf(allowed), outcome @ Outcome::Answer { .. }) => {
                    let (status, code, retry_after) = outcome.summary();
                    assert!(
                        allowed.iter().any(|&(s, c, r)| (s, c, r.map(str::to_owned))
                            == (status, code, retry_after.clone())),
                        "{name}: got {status} {code:?} {retry_after:?}"
                    );
                }
                (want, outcome) => panic!("{name}: want {want:?}, got {outcome:?}"),
            }
        }
        let s = mock.stats();
        let counts = (
            s.accepted,
            s.rate_limited + s.server_errors,
            s.dropped,
            s.slowed,
        );
        let expected = match name {
            "all at 0" => (REQUESTS, 0, 0, 0),
            "error_rate 1" | "rate_limit_rate 1" | "server_error_rate 1" => (0, REQUESTS, 0, 0),
            "drop_rate 1" => (0, 0, REQUESTS, 0),
            "slow_rate 1" => (REQUESTS, 0, 0, REQUESTS),
            other => unreachable!("{other}"),
        };
        assert_eq!(
            counts, expected,
            "{name}: accepted, errors, dropped, slowed"
        );
        assert_eq!(s.errors, s.rate_limited + s.server_errors, "{name}");
    }
}

/// Each callback knob at 1 applies to every message, at 0 to none.
#[tokio::test]
async fn callback_rates_at_zero_and_one() {
    let mut receiver = CallbackReceiver::start(StatusCode::OK).await;
    let callbacks_on = || MockSettings {
        status_callbacks: true,
        callback_delay: Duration::ZERO,
        ..MockSettings::default()
    };
    // (name, settings, expected statuses; an `ErrorCode` of "*" is any of the
    // undelivered codes)
    let rows: [(&str, MockSettings, Expected); 4] = [
        ("all at 0", callbacks_on(), DELIVERED),
        (
            "undelivered_rate 1",
            MockSettings {
                undelivered_rate: 1.0,
                ..callbacks_on()
            },
            &[("sent", None), ("undelivered", Some("*"))],
        ),
        (
            "duplicate_callbacks 1",
            MockSettings {
                duplicate_callbacks: 1.0,
                ..callbacks_on()
            },
            &[
                ("sent", None),
                ("sent", None),
                ("delivered", None),
                ("delivered", None),
            ],
        ),
        (
            "reorder_callbacks 1",
            MockSettings {
                reorder_callbacks: 1.0,
                ..callbacks_on()
            },
            &[("delivered", None), ("sent", None)],
        ),
    ];
    const MESSAGES: usize = 3;
    for (name, settings, expected) in rows {
        let mock = start(settings).await;
        for i in 0..MESSAGES {
            let url = receiver.url(&format!("/status?m={i}"));
            let sid = create(
                &mock,
                &[
                    ("To", ORDINARY),
                    ("From", FROM),
                    ("Body", "hi"),
                    ("StatusCallback", &url),
                ],
            )
            .await
            .sid();
            // One message at a time, so its callbacks arrive together.
            for &(status, code) in expected {
                let callback = receiver.next().await;
                assert_eq!(receiver.url(&callback.path_and_query), url, "{name}");
                assert_eq!(callback.param("MessageSid"), Some(sid.as_str()), "{name}");
                assert_eq!(callback.param("MessageStatus"), Some(status), "{name}");
                assert_eq!(
                    callback.headers["x-twilio-signature"].to_str().unwrap(),
                    signature(&mock.settings().auth_token, &url, &callback.params),
                    "{name}"
                );
                match code {
                    Some("*") => {
                        let code = callback.param("ErrorCode");
                        assert!(
                            matches!(code, Some("30003" | "30005" | "30007")),
                            "{name}: {code:?}"
                        );
                    }
                    code => assert_eq!(callback.param("ErrorCode"), code, "{name}"),
                }
            }
        }
        settled(&mock).await;
        assert!(
            receiver.received.try_recv().is_err(),
            "{name}: an unexpected callback"
        );
        let s = mock.stats();
        let n = MESSAGES as u64;
        let flags = (
            s.receipts_undelivered,
            s.receipts_duplicated,
            s.receipts_reordered,
        );
        let expected_flags = match name {
            "all at 0" => (0, 0, 0),
            "undelivered_rate 1" => (n, 0, 0),
            "duplicate_callbacks 1" => (0, n, 0),
            "reorder_callbacks 1" => (0, 0, n),
            other => unreachable!("{other}"),
        };
        assert_eq!(s.receipts, n, "{name}");
        assert_eq!(
            flags, expected_flags,
            "{name}: undelivered, duplicated, reordered"
        );
        assert_eq!(
            s.callbacks_sent,
            (n as usize * expected.len()) as u64,
            "{name}"
        );
    }
}
