//! The webhook body and the classification of answers, table-driven. Wire
//! tests against a local server are in `adapters/tests/http.rs`.

use std::time::Duration;

use super::config::validate;
use super::request::{Outgoing, choose_from, json_body};
use super::service::{accepted, classify};
use super::{HttpProvider, HttpSettings};
use crate::{ConnectionSettings, PermanentKind, SendError};

#[test]
fn body_is_one_fixed_shape() {
    let cases = [
        (
            Outgoing {
                to: "+14155550123",
                from: Some("+15005550006"),
                body: "Pay \"now\" \\ é ✓\n",
                category: "collections",
            },
            serde_json::json!({
                "to": "+14155550123",
                "from": "+15005550006",
                "body": "Pay \"now\" \\ é ✓\n",
                "category": "collections",
            }),
        ),
        (
            Outgoing {
                to: "+14155550123",
                from: None,
                body: "",
                category: "marketing",
            },
            serde_json::json!({
                "to": "+14155550123",
                "from": null,
                "body": "",
                "category": "marketing",
            }),
        ),
    ];
    for (message, want) in cases {
        let bytes = json_body(&message).unwrap();
        let got: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(got, want);
    }
}

#[test]
fn sender_precedence() {
    let cases = [
        (Some("+1555"), Some("+1666"), Some("+1555")),
        (None, Some("+1666"), Some("+1666")),
        (Some(""), Some("+1666"), Some("+1666")),
        (Some("+1555"), None, Some("+1555")),
        (None, None, None),
    ];
    for (requested, configured, want) in cases {
        assert_eq!(
            choose_from(requested, configured),
            want,
            "{requested:?} {configured:?}"
        );
    }
}

#[test]
fn accepted_reads_the_id_at_the_pointer() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"id":"msg-1","status":"queued"}"#, "/id", "msg-1"),
        (r#"{"id":42}"#, "/id", "42"),
        (r#"{"data":{"sid":"SM1"}}"#, "/data/sid", "SM1"),
        (
            r#"{"messages":[{"id":"a"},{"id":"b"}]}"#,
            "/messages/0/id",
            "a",
        ),
        (r#""bare-id""#, "", "bare-id"),
        (r#"{"a/b":"slash"}"#, "/a~1b", "slash"),
        // No usable id: still accepted (the 2xx is the acceptance), id empty.
        (r#"{"status":"queued"}"#, "/id", ""),
        (r#"{"id":null}"#, "/id", ""),
        (r#"{"id":{"nested":1}}"#, "/id", ""),
        ("", "/id", ""),
        ("OK", "/id", ""),
        ("<html>accepted</html>", "/id", ""),
    ];
    for (body, pointer, want) in cases {
        let got = accepted(Some(body.as_bytes()), pointer);
        assert_eq!(got.provider_id, *want, "{body} at {pointer:?}");
        assert_eq!(got.segments, None);
    }
    // The body could not be read at all.
    assert_eq!(accepted(None, "/id").provider_id, "");
}

#[derive(Debug, PartialEq)]
enum Want {
    Transient { retry_after: Option<u64> },
    Permanent(PermanentKind),
}

#[test]
fn error_statuses_are_classified() {
    use PermanentKind::*;
    const T: Want = Want::Transient { retry_after: None };
    let cases: &[(u16, Option<u64>, Want)] = &[
        (
            429,
            Some(3),
            Want::Transient {
                retry_after: Some(3),
            },
        ),
        (429, None, T),
        (408, None, T),
        (500, None, T),
        (
            503,
            Some(10),
            Want::Transient {
                retry_after: Some(10),
            },
        ),
        (504, None, T),
        (599, None, T),
        (401, None, Want::Permanent(Unauthorized)),
        (403, None, Want::Permanent(Unauthorized)),
        (400, None, Want::Permanent(Other)),
        (404, None, Want::Permanent(Other)),
        (409, None, Want::Permanent(Other)),
        (413, None, Want::Permanent(Other)),
        (422, None, Want::Permanent(Other)),
        // Redirects are not followed: nothing was taken.
        (301, None, T),
        (307, None, T),
    ];
    for (status, retry_after, want) in cases {
        let got = match classify(*status, None, retry_after.map(Duration::from_secs)) {
            SendError::Transient {
                retry_after, code, ..
            } => {
                assert_eq!(code, Some(u32::from(*status)));
                Want::Transient {
                    retry_after: retry_after.map(|d| d.as_secs()),
                }
            }
            SendError::Permanent { kind, code, .. } => {
                assert_eq!(code, Some(u32::from(*status)));
                Want::Permanent(kind)
            }
            SendError::Ambiguous { message } => panic!("{status} ambiguous: {message}"),
        };
        assert_eq!(&got, want, "status {status}");
    }
}

#[test]
fn error_message_quotes_the_start_of_the_body() {
    let message = |status, body: Option<&str>| {
        let (SendError::Transient { message, .. } | SendError::Permanent { message, .. }) =
            classify(status, body.map(str::as_bytes), None)
        else {
            panic!("ambiguous")
        };
        message
    };
    assert_eq!(
        message(422, Some(r#"{"error": "to is not a mobile number"}"#)),
        r#"{"error": "to is not a mobile number"} (HTTP 422)"#
    );
    assert_eq!(
        message(502, Some("<html>\n  <body>bad\n gateway</body>\n</html>")),
        "<html> <body>bad gateway</body> </html> (HTTP 502)"
    );
    assert_eq!(message(503, Some("  ")), "Service Unavailable (HTTP 503)");
    assert_eq!(message(401, None), "Unauthorized (HTTP 401)");
    let long = message(400, Some(&"é".repeat(1000)));
    assert_eq!(long, format!("{}… (HTTP 400)", "é".repeat(200)));
}

fn settings() -> HttpSettings {
    HttpSettings {
        url: "https://sms-gateway.example/v1/messages".into(),
        headers: vec![("Authorization".into(), "Bearer top-secret".into())],
        ..Default::default()
    }
}

#[test]
fn validation_names_the_key() {
    let key = |s: HttpSettings| validate(&s).err().map(|e| e.key);
    let header = |k: &str, v: &str| HttpSettings {
        headers: vec![(k.into(), v.into())],
        ..settings()
    };
    let cases: Vec<(HttpSettings, Option<&str>)> = vec![
        (settings(), None),
        (
            HttpSettings {
                url: String::new(),
                ..settings()
            },
            Some("url"),
        ),
        (
            HttpSettings {
                url: "ftp://gateway.example".into(),
                ..settings()
            },
            Some("url"),
        ),
        (
            HttpSettings {
                url: "/v1/messages".into(),
                ..settings()
            },
            Some("url"),
        ),
        (
            HttpSettings {
                url: "http://127.0.0.1:9000/hook?token=abc".into(),
                ..settings()
            },
            None,
        ),
        (header("X-Api-Key", "k"), None),
        (header("Bad Header", "v"), Some("headers")),
        (header("X-Key", "line\nbreak"), Some("headers")),
        (header("Content-Type", "text/plain"), Some("headers")),
        (header("content-length", "5"), Some("headers")),
        (header("Host", "evil.example"), Some("headers")),
        (header("Transfer-Encoding", "chunked"), Some("headers")),
        (
            HttpSettings {
                id_field: "id".into(),
                ..settings()
            },
            Some("id_field"),
        ),
        (
            HttpSettings {
                id_field: String::new(),
                ..settings()
            },
            None,
        ),
        (
            HttpSettings {
                from: Some("".into()),
                ..settings()
            },
            Some("from"),
        ),
        (
            HttpSettings {
                connection: ConnectionSettings {
                    request_timeout: Duration::ZERO,
                    ..Default::default()
                },
                ..settings()
            },
            Some("request_timeout"),
        ),
    ];
    for (s, want) in cases {
        let shown = format!("{s:?}");
        assert_eq!(key(s), want, "{shown}");
    }
}

#[test]
fn header_values_stay_out_of_debug() {
    let s = settings();
    let p = HttpProvider::new(s.clone()).unwrap();
    for shown in [format!("{s:?}"), format!("{p:?}")] {
        assert!(!shown.contains("top-secret"), "{shown}");
        assert!(
            shown.to_ascii_lowercase().contains("authorization"),
            "{shown}"
        );
    }
    assert_eq!(
        p.uri().to_string(),
        "https://sms-gateway.example/v1/messages"
    );
}
