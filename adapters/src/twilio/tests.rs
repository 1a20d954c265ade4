//! Classification of Twilio answers, table-driven.

use std::time::Duration;

use super::config::validate;
use super::service::{classify_for_test, parse_created_for_test};
use super::{TwilioProvider, TwilioSettings};
use crate::{Accepted, ConnectionSettings, PermanentKind, SendError};

fn twilio_error(code: u32, status: u16) -> String {
    format!(
        r#"{{"code": {code}, "message": "twilio says no", "more_info": "https://www.twilio.com/docs/errors/{code}", "status": {status}}}"#
    )
}

#[derive(Debug, PartialEq)]
enum Want {
    Transient { code: u32, retry_after: Option<u64> },
    Permanent(PermanentKind, u32),
}

fn outcome(e: SendError) -> Want {
    match e {
        SendError::Transient {
            code, retry_after, ..
        } => Want::Transient {
            code: code.unwrap(),
            retry_after: retry_after.map(|d| d.as_secs()),
        },
        SendError::Permanent { kind, code, .. } => Want::Permanent(kind, code.unwrap()),
        SendError::Ambiguous { message } => {
            panic!("an error status must never be ambiguous: {message}")
        }
    }
}

#[test]
fn error_statuses_and_codes() {
    use PermanentKind::*;
    let json = |code, status| twilio_error(code, status);
    let cases: Vec<(u16, String, Option<&str>, Want)> = vec![
        (
            429,
            json(20429, 429),
            Some("3"),
            Want::Transient {
                code: 20429,
                retry_after: Some(3),
            },
        ),
        (
            429,
            String::new(),
            Some("7"),
            Want::Transient {
                code: 429,
                retry_after: Some(7),
            },
        ),
        (
            429,
            json(20429, 429),
            None,
            Want::Transient {
                code: 20429,
                retry_after: None,
            },
        ),
        // HTTP-date form is not parsed: no retry_after, still transient.
        (
            429,
            json(20429, 429),
            Some("Wed, 21 Oct 2015 07:28:00 GMT"),
            Want::Transient {
                code: 20429,
                retry_after: None,
            },
        ),
        // 20429 wins over the status it comes with.
        (
            400,
            json(20429, 400),
            Some("1"),
            Want::Transient {
                code: 20429,
                retry_after: Some(1),
            },
        ),
        (
            500,
            json(20500, 500),
            None,
            Want::Transient {
                code: 20500,
                retry_after: None,
            },
        ),
        (
            502,
            "<html>bad gateway</html>".into(),
            None,
            Want::Transient {
                code: 502,
                retry_after: None,
            },
        ),
        (
            503,
            String::new(),
            Some("2"),
            Want::Transient {
                code: 503,
                retry_after: Some(2),
            },
        ),
        // A 5xx is transient whatever code it carries.
        (
            500,
            json(21211, 500),
            None,
            Want::Transient {
                code: 21211,
                retry_after: None,
            },
        ),
        (
            400,
            json(21610, 400),
            None,
            Want::Permanent(CarrierOptOut, 21610),
        ),
        (
            400,
            json(21211, 400),
            None,
            Want::Permanent(InvalidNumber, 21211),
        ),
        (
            400,
            json(21614, 400),
            None,
            Want::Permanent(InvalidNumber, 21614),
        ),
        (400, json(21612, 400), None, Want::Permanent(Other, 21612)),
        (400, json(21408, 400), None, Want::Permanent(Other, 21408)),
        (400, json(21606, 400), None, Want::Permanent(Other, 21606)),
        (
            400,
            json(21611, 400),
            None,
            Want::Transient {
                code: 21611,
                retry_after: None,
            },
        ),
        (
            401,
            json(20003, 401),
            None,
            Want::Permanent(Unauthorized, 20003),
        ),
        (401, String::new(), None, Want::Permanent(Unauthorized, 401)),
        (
            403,
            json(20008, 403),
            None,
            Want::Permanent(Unauthorized, 20008),
        ),
        (404, json(20404, 404), None, Want::Permanent(Other, 20404)),
        (400, "not json".into(), None, Want::Permanent(Other, 400)),
        (413, String::new(), None, Want::Permanent(Other, 413)),
        (
            301,
            String::new(),
            None,
            Want::Transient {
                code: 301,
                retry_after: None,
            },
        ),
    ];
    for (status, body, retry_after, want) in cases {
        let got = outcome(classify_for_test(status, &body, retry_after));
        assert_eq!(
            got, want,
            "status {status}, body {body:?}, retry-after {retry_after:?}"
        );
    }
}

#[test]
fn error_message_keeps_twilio_text_and_status() {
    let e = classify_for_test(400, &twilio_error(21211, 400), None);
    let SendError::Permanent { message, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(message, "twilio says no (HTTP 400)");
    let e = classify_for_test(502, "", None);
    let SendError::Transient { message, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(message, "Bad Gateway (HTTP 502)");
}

#[test]
fn created_bodies() {
    let ok = |sid: &str, segments| {
        Ok::<_, SendError>(Accepted {
            provider_id: sid.into(),
            segments,
        })
    };
    let sid = "SM0123456789abcdef0123456789abcdef";
    let cases: Vec<(String, Result<Accepted, SendError>)> = vec![
        (
            format!(r#"{{"sid":"{sid}","num_segments":"1","status":"queued"}}"#),
            ok(sid, Some(1)),
        ),
        (
            format!(r#"{{"sid":"{sid}","num_segments":"3"}}"#),
            ok(sid, Some(3)),
        ),
        (
            format!(r#"{{"sid":"{sid}","num_segments":2}}"#),
            ok(sid, Some(2)),
        ),
        // Messaging-service sends report "0" until a sender is chosen: unknown.
        (
            format!(r#"{{"sid":"{sid}","num_segments":"0","status":"accepted"}}"#),
            ok(sid, None),
        ),
        (
            format!(r#"{{"sid":"{sid}","num_segments":null}}"#),
            ok(sid, None),
        ),
        (format!(r#"{{"sid":"{sid}"}}"#), ok(sid, None)),
        (
            format!(r#"{{"sid":"{sid}","num_segments":"many"}}"#),
            ok(sid, None),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            parse_created_for_test(&body).map_err(|e| e.to_string()),
            want.map_err(|e| e.to_string()),
            "{body}"
        );
    }
    for body in [
        "",
        "{",
        "<html>ok</html>",
        r#"{"sid":""}"#,
        r#"{"status":"queued"}"#,
        r#"{"sid":42}"#,
    ] {
        assert!(
            matches!(
                parse_created_for_test(body),
                Err(SendError::Ambiguous { .. })
            ),
            "a 2xx with body {body:?} must be ambiguous"
        );
    }
}

fn settings() -> TwilioSettings {
    TwilioSettings {
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        auth_token: "secret".into(),
        from: Some("+15005550006".into()),
        ..Default::default()
    }
}

#[test]
fn validation_names_the_key() {
    let key = |s: TwilioSettings| validate(&s).err().map(|e| e.key);
    assert_eq!(key(settings()), None);
    assert_eq!(
        key(TwilioSettings {
            base_url: "ftp://api.twilio.com".into(),
            ..settings()
        }),
        Some("base_url")
    );
    assert_eq!(
        key(TwilioSettings {
            base_url: "api.twilio.com".into(),
            ..settings()
        }),
        Some("base_url")
    );
    assert_eq!(
        key(TwilioSettings {
            base_url: "https://x/?a=1".into(),
            ..settings()
        }),
        Some("base_url")
    );
    assert_eq!(
        key(TwilioSettings {
            account_sid: String::new(),
            ..settings()
        }),
        Some("account_sid")
    );
    assert_eq!(
        key(TwilioSettings {
            account_sid: "AC/../x".into(),
            ..settings()
        }),
        Some("account_sid")
    );
    assert_eq!(
        key(TwilioSettings {
            auth_token: String::new(),
            ..settings()
        }),
        Some("auth_token")
    );
    assert_eq!(
        key(TwilioSettings {
            from: Some(" ".into()),
            ..settings()
        }),
        Some("from")
    );
    assert_eq!(
        key(TwilioSettings {
            messaging_service_sid: Some("PN123".into()),
            ..settings()
        }),
        Some("messaging_service_sid")
    );
    assert_eq!(
        key(TwilioSettings {
            status_callback: Some("/relative".into()),
            ..settings()
        }),
        Some("status_callback")
    );
    assert_eq!(
        key(TwilioSettings {
            connection: ConnectionSettings {
                request_timeout: Duration::ZERO,
                ..Default::default()
            },
            ..settings()
        }),
        Some("request_timeout")
    );
    // No sender at all is allowed: routing may supply one per message.
    assert_eq!(
        key(TwilioSettings {
            from: None,
            ..settings()
        }),
        None
    );
}

#[test]
fn messages_uri_and_debug() {
    let p = TwilioProvider::new(TwilioSettings {
        base_url: "http://127.0.0.1:9090/".into(),
        ..settings()
    })
    .unwrap();
    assert_eq!(
        p.messages_uri().to_string(),
        "http://127.0.0.1:9090/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
    );
    let p = TwilioProvider::new(settings()).unwrap();
    assert_eq!(
        p.messages_uri().to_string(),
        "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
    );
    assert!(!format!("{p:?}").contains("secret"));
    assert!(!format!("{:?}", settings()).contains("secret"));
}
