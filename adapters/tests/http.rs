//! The generic webhook adapter against scripted local servers and raw TCP
//! servers for the failure modes below HTTP.

mod support;

use std::time::Duration;

use herald_adapters::{
    AnyProvider, ConnectionSettings, HttpProvider, HttpSettings, PermanentKind, Provider,
    SendError, SendRequest,
};
use support::{Behaviour, raw_server, refused_url, respond, serve};

const TO: &str = "+14155550123";

fn settings(url: String) -> HttpSettings {
    HttpSettings {
        url,
        headers: vec![
            ("Authorization".into(), "Bearer wh-secret".into()),
            ("X-Tenant".into(), "acme".into()),
        ],
        connection: support::connection(),
        ..Default::default()
    }
}

fn provider(url: String) -> HttpProvider {
    HttpProvider::new(settings(url)).expect("valid settings")
}

fn msg<'a>(to: &'a str, body: &'a str) -> SendRequest<'a> {
    SendRequest {
        to,
        from: None,
        body,
        category: "collections",
    }
}

#[tokio::test]
async fn posts_the_message_as_json_with_the_configured_headers() {
    let server = serve(|_| {
        respond(
            202,
            &[("content-type", "application/json")],
            r#"{"id":"wh-0001","status":"queued"}"#,
        )
    })
    .await;
    let webhook = HttpProvider::new(HttpSettings {
        url: format!("{}/v1/sms?account=7", server.url()),
        from: Some("+15005550006".into()),
        ..settings(String::new())
    })
    .unwrap();

    let text = "Pay \"$5\" now \\ é ✓\nReply STOP to opt out";
    let accepted = webhook.send(&msg(TO, text)).await.expect("accepted");
    assert_eq!(accepted.provider_id, "wh-0001");
    assert_eq!(accepted.segments, None);

    let routed = webhook
        .send(&SendRequest {
            to: "+447700900123",
            from: Some("+15005550010"),
            body: "hi",
            category: "marketing",
        })
        .await
        .expect("accepted");
    assert_eq!(routed.provider_id, "wh-0001");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let req = &requests[0];
    assert_eq!(req.method, http::Method::POST);
    assert_eq!(req.target, "/v1/sms?account=7");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("authorization"), Some("Bearer wh-secret"));
    assert_eq!(req.header("x-tenant"), Some("acme"));
    assert!(
        req.header("user-agent")
            .is_some_and(|ua| ua.starts_with("herald/")),
        "{:?}",
        req.header("user-agent")
    );
    let bodies: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            serde_json::json!({
                "to": TO, "from": "+15005550006", "body": text, "category": "collections"
            }),
            // Routing's sender wins over the configured one.
            serde_json::json!({
                "to": "+447700900123", "from": "+15005550010", "body": "hi",
                "category": "marketing"
            }),
        ]
    );
}

#[tokio::test]
async fn no_sender_is_sent_as_null() {
    let server = serve(|_| respond(200, &[], r#"{"id":"x"}"#)).await;
    provider(server.url())
        .send(&msg(TO, "hi"))
        .await
        .expect("accepted");
    let body: serde_json::Value = serde_json::from_slice(&server.requests()[0].body).unwrap();
    assert_eq!(body["from"], serde_json::Value::Null);
    assert_eq!(
        body.as_object().unwrap().len(),
        4,
        "always the same four fields: {body}"
    );
}

/// Answers over the wire, one scripted server each.
#[tokio::test]
async fn answers_are_classified() {
    #[derive(Debug, PartialEq)]
    enum Want {
        Accepted(&'static str),
        Transient(Option<u64>),
        Permanent(PermanentKind),
    }
    use PermanentKind::*;
    // (status, Retry-After, body, id_field, outcome)
    type Case = (u16, Option<&'static str>, &'static str, &'static str, Want);
    let cases: Vec<Case> = vec![
        (200, None, r#"{"id":"a-1"}"#, "/id", Want::Accepted("a-1")),
        (201, None, r#"{"id":17}"#, "/id", Want::Accepted("17")),
        (
            200,
            None,
            r#"{"message":{"sid":"SM9"}}"#,
            "/message/sid",
            Want::Accepted("SM9"),
        ),
        // Accepted without an id we can read: still accepted, empty id.
        (202, None, r#"{"queued":true}"#, "/id", Want::Accepted("")),
        (204, None, "", "/id", Want::Accepted("")),
        (200, None, "OK", "/id", Want::Accepted("")),
        (
            429,
            Some("4"),
            r#"{"error":"slow down"}"#,
            "/id",
            Want::Transient(Some(4)),
        ),
        (429, None, "", "/id", Want::Transient(None)),
        (503, Some("9"), "", "/id", Want::Transient(Some(9))),
        (500, None, "boom", "/id", Want::Transient(None)),
        (
            502,
            None,
            "<html>bad gateway</html>",
            "/id",
            Want::Transient(None),
        ),
        (408, None, "", "/id", Want::Transient(None)),
        (301, None, "", "/id", Want::Transient(None)),
        (
            401,
            None,
            r#"{"error":"bad token"}"#,
            "/id",
            Want::Permanent(Unauthorized),
        ),
        (403, None, "", "/id", Want::Permanent(Unauthorized)),
        (
            400,
            None,
            r#"{"error":"bad number"}"#,
            "/id",
            Want::Permanent(Other),
        ),
        (404, None, "", "/id", Want::Permanent(Other)),
        // Retry-After on a permanent refusal changes nothing.
        (422, Some("5"), "", "/id", Want::Permanent(Other)),
    ];
    for (status, retry_after, body, id_field, want) in cases {
        let server = serve(move |_| {
            let headers: Vec<(&str, &str)> = retry_after
                .map(|v| ("retry-after", v))
                .into_iter()
                .collect();
            respond(status, &headers, body)
        })
        .await;
        let webhook = HttpProvider::new(HttpSettings {
            id_field: id_field.into(),
            ..settings(server.url())
        })
        .unwrap();
        let got = match webhook.send(&msg(TO, "hi")).await {
            Ok(a) => {
                assert_eq!(a.segments, None);
                match want {
                    Want::Accepted(id) if a.provider_id == id => Want::Accepted(id),
                    _ => panic!("{status}: accepted with id {:?}", a.provider_id),
                }
            }
            Err(SendError::Transient {
                retry_after, code, ..
            }) => {
                assert_eq!(code, Some(u32::from(status)));
                Want::Transient(retry_after.map(|d| d.as_secs()))
            }
            Err(SendError::Permanent { kind, code, .. }) => {
                assert_eq!(code, Some(u32::from(status)));
                Want::Permanent(kind)
            }
            Err(SendError::Ambiguous { message }) => panic!("{status}: ambiguous: {message}"),
        };
        assert_eq!(got, want, "status {status}, body {body:?}");
        assert_eq!(server.requests().len(), 1, "exactly one attempt");
    }
}

#[tokio::test]
async fn any_provider_dispatches_to_http() {
    let server = serve(|_| respond(200, &[], r#"{"id":"x"}"#)).await;
    let any = AnyProvider::Http(provider(server.url()));
    assert_eq!(any.kind(), "http");
    assert!(any.send(&msg(TO, "hi")).await.is_ok());
    assert_eq!(server.requests().len(), 1);
}

/// `http2 = true` speaks h2c to an http:// URL: concurrent sends are streams
/// on one connection.
#[tokio::test]
async fn http2_multiplexes_sends_on_one_connection() {
    let server = serve(|_| respond(200, &[], r#"{"id":"h2"}"#)).await;
    let webhook = HttpProvider::new(HttpSettings {
        connection: ConnectionSettings {
            http2: true,
            ..support::connection()
        },
        ..settings(server.url())
    })
    .unwrap();
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..20 {
        // A handle: clones share the client and its one h2 connection.
        let webhook = webhook.clone();
        sends.spawn(async move { webhook.send(&msg(TO, "hi")).await });
    }
    while let Some(result) = sends.join_next().await {
        assert_eq!(result.expect("task").expect("accepted").provider_id, "h2");
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 20);
    assert!(requests.iter().all(|r| r.version == http::Version::HTTP_2));
    assert_eq!(server.connections(), 1);
}

/// Connection-specific headers an operator may configure for HTTP/1.1
/// (`Connection` and `Transfer-Encoding` are refused at start-up) do not
/// exist in HTTP/2 (RFC 9113 §8.2.2): over h2 they are dropped, and the
/// send goes through with the provider's other headers.
#[tokio::test]
async fn http2_drops_connection_specific_headers() {
    let server = serve(|_| respond(200, &[], r#"{"id":"h2"}"#)).await;
    let mut config = settings(server.url());
    config.headers.extend([
        ("Keep-Alive".into(), "timeout=5".into()),
        ("Proxy-Connection".into(), "keep-alive".into()),
        ("Upgrade".into(), "websocket".into()),
        ("TE".into(), "gzip".into()),
    ]);
    let webhook = HttpProvider::new(HttpSettings {
        connection: ConnectionSettings {
            http2: true,
            ..support::connection()
        },
        ..config
    })
    .unwrap();
    let accepted = webhook
        .send(&msg(TO, "hi"))
        .await
        .expect("accepted over h2");
    assert_eq!(accepted.provider_id, "h2");
    let requests = server.requests();
    let sent = &requests[0];
    assert_eq!(sent.version, http::Version::HTTP_2);
    assert_eq!(sent.header("x-tenant"), Some("acme"));
    assert_eq!(sent.header("authorization"), Some("Bearer wh-secret"));
    for hop in ["keep-alive", "proxy-connection", "upgrade", "te"] {
        assert_eq!(sent.header(hop), None, "{hop}");
    }
}

// ---- failure modes below HTTP ------------------------------------------------------

#[tokio::test]
async fn connection_refused_is_transient() {
    let webhook = provider(refused_url().await);
    match webhook.send(&msg(TO, "hi")).await {
        Err(SendError::Transient {
            code: None,
            retry_after: None,
            message,
        }) => assert!(message.contains("connecting to the webhook"), "{message}"),
        other => panic!("expected Transient, got {other:?}"),
    }
}

#[tokio::test]
async fn timeout_after_the_request_was_written_is_ambiguous() {
    let (addr, mut requests) = raw_server(Behaviour::Silent).await;
    let webhook = HttpProvider::new(HttpSettings {
        connection: ConnectionSettings {
            request_timeout: Duration::from_millis(300),
            ..support::connection()
        },
        ..settings(format!("http://{addr}/hook"))
    })
    .unwrap();
    match webhook.send(&msg(TO, "hi")).await {
        Err(SendError::Ambiguous { .. }) => {}
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    // Ambiguous because the server did read the whole request.
    let request = String::from_utf8(requests.recv().await.expect("a request")).unwrap();
    assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
    assert!(
        request.ends_with(r#""body":"hi","category":"collections"}"#),
        "{request}"
    );
}

#[tokio::test]
async fn connection_closed_after_the_request_is_ambiguous() {
    let (addr, mut requests) = raw_server(Behaviour::CloseAfterRequest).await;
    let webhook = provider(format!("http://{addr}"));
    match webhook.send(&msg(TO, "hi")).await {
        Err(SendError::Ambiguous { .. }) => {}
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    assert!(requests.recv().await.is_some());
    assert!(requests.try_recv().is_err(), "the request was sent twice");
}

/// The status line is the acceptance: a 2xx whose body stalls is still
/// accepted (re-sending would text the person twice), without an id.
#[tokio::test]
async fn success_with_a_stalled_body_is_accepted_without_an_id() {
    let (addr, _requests) = raw_server(Behaviour::Answer(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":"
            .to_vec(),
    ))
    .await;
    let webhook = HttpProvider::new(HttpSettings {
        connection: ConnectionSettings {
            request_timeout: Duration::from_millis(300),
            ..support::connection()
        },
        ..settings(format!("http://{addr}"))
    })
    .unwrap();
    let accepted = webhook.send(&msg(TO, "hi")).await.expect("accepted");
    assert_eq!(accepted.provider_id, "");
}
