//! The SNS request, its signature and the classification of SNS's answers,
//! table-driven. Wire-level tests against a signature-checking mock are in
//! `adapters/tests/sns.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;
use http::StatusCode;

use super::config::validate;
use super::request::{CONTENT_TYPE, SERVICE, Unsigned, form_body, sigv4_headers, sms_type};
use super::service::{XmlFields, classify, parse_published, read_xml};
use super::{SnsProvider, SnsSettings};
use crate::{Accepted, ConnectionSettings, PermanentKind, SendError};

// ---- request -----------------------------------------------------------------

#[test]
fn sms_type_by_category() {
    let cases = [
        ("marketing", "Promotional"),
        ("MARKETING", "Promotional"),
        ("transactional", "Transactional"),
        ("collections", "Transactional"),
        // Unknown categories get the delivery-optimised route: a text the
        // engine let through is never worth losing to the cheap route.
        ("", "Transactional"),
        ("reminder", "Transactional"),
    ];
    for (category, want) in cases {
        assert_eq!(sms_type(category), want, "{category:?}");
    }
}

fn decode(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn publish_form_fields() {
    let text = "Pay $5 & save 10%+ now: é ✓ a=b\nReply STOP to opt out";
    let base = [
        ("Action", "Publish"),
        ("Version", "2010-03-31"),
        ("PhoneNumber", "+14155550123"),
        ("Message", text),
        ("MessageAttributes.entry.1.Name", "AWS.SNS.SMS.SMSType"),
        ("MessageAttributes.entry.1.Value.DataType", "String"),
    ];
    let with = |sms: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut v = base.to_vec();
        v.push(("MessageAttributes.entry.1.Value.StringValue", sms));
        v.extend_from_slice(extra);
        pairs(&v)
    };
    let origination = [
        (
            "MessageAttributes.entry.2.Name",
            "AWS.MM.SMS.OriginationNumber",
        ),
        ("MessageAttributes.entry.2.Value.DataType", "String"),
        (
            "MessageAttributes.entry.2.Value.StringValue",
            "+18005550199",
        ),
    ];
    let sender_id_2 = [
        ("MessageAttributes.entry.2.Name", "AWS.SNS.SMS.SenderID"),
        ("MessageAttributes.entry.2.Value.DataType", "String"),
        ("MessageAttributes.entry.2.Value.StringValue", "HERALD"),
    ];
    let sender_id_3 = [
        ("MessageAttributes.entry.3.Name", "AWS.SNS.SMS.SenderID"),
        ("MessageAttributes.entry.3.Value.DataType", "String"),
        ("MessageAttributes.entry.3.Value.StringValue", "HERALD"),
    ];
    let both: Vec<_> = origination.iter().chain(&sender_id_3).copied().collect();

    let cases: Vec<(String, Vec<(String, String)>)> = vec![
        (
            form_body("+14155550123", text, "Transactional", None, None),
            with("Transactional", &[]),
        ),
        (
            form_body(
                "+14155550123",
                text,
                "Promotional",
                Some("+18005550199"),
                None,
            ),
            with("Promotional", &origination),
        ),
        // Entries are numbered without gaps.
        (
            form_body("+14155550123", text, "Transactional", None, Some("HERALD")),
            with("Transactional", &sender_id_2),
        ),
        (
            form_body(
                "+14155550123",
                text,
                "Transactional",
                Some("+18005550199"),
                Some("HERALD"),
            ),
            with("Transactional", &both),
        ),
    ];
    for (encoded, want) in cases {
        assert_eq!(decode(&encoded), want, "{encoded}");
    }
}

#[test]
fn publish_form_is_percent_encoded() {
    assert_eq!(
        form_body("+14155550123", "a&b=c d", "Transactional", None, None),
        "Action=Publish&Version=2010-03-31&PhoneNumber=%2B14155550123&Message=a%26b%3Dc+d\
         &MessageAttributes.entry.1.Name=AWS.SNS.SMS.SMSType\
         &MessageAttributes.entry.1.Value.DataType=String\
         &MessageAttributes.entry.1.Value.StringValue=Transactional"
    );
}

// ---- signature ------------------------------------------------------------------

const AWS_EXAMPLE_KEY: &str = "AKIDEXAMPLE";
const AWS_EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn identity(akid: &str, secret: &str, token: Option<&str>) -> Identity {
    Identity::from(Credentials::new(
        akid,
        secret,
        token.map(str::to_owned),
        None,
        "test",
    ))
}

fn at(unix_seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds)
}

/// 2015-08-30T12:36:00Z, the instant of AWS's SigV4 test suite.
const AWS_SUITE_TIME: u64 = 1_440_938_160;
/// 2026-01-01T00:00:00Z.
const NEW_YEAR_2026: u64 = 1_767_225_600;

fn header<'a>(headers: &'a [(http::HeaderName, http::HeaderValue)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
}

/// The signer against AWS's published SigV4 test suite (`post-vanilla`,
/// `get-vanilla-with-session-token`; shipped in aws-sigv4's
/// `aws-signing-test-suite/v4`): the exact `Authorization` AWS expects.
#[test]
fn signature_matches_the_aws_test_suite() {
    let cases = [
        (
            "POST",
            None,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        (
            "GET",
            Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        ),
    ];
    for (method, token, want) in cases {
        let headers = sigv4_headers(
            &identity(AWS_EXAMPLE_KEY, AWS_EXAMPLE_SECRET, token),
            "us-east-1",
            "service",
            at(AWS_SUITE_TIME),
            &Unsigned {
                method,
                uri: "https://example.amazonaws.com/",
                headers: &[("host", "example.amazonaws.com")],
                body: b"",
            },
        )
        .unwrap();
        assert_eq!(header(&headers, "authorization"), want, "{method}");
        assert_eq!(header(&headers, "x-amz-date"), "20150830T123600Z");
        if let Some(token) = token {
            assert_eq!(header(&headers, "x-amz-security-token"), token);
        }
    }
}

fn sign_publish(body: &str, time: SystemTime) -> Vec<(http::HeaderName, http::HeaderValue)> {
    sigv4_headers(
        &identity("AKID", "secret", None),
        "us-east-1",
        SERVICE,
        time,
        &Unsigned {
            method: "POST",
            uri: "https://sns.us-east-1.amazonaws.com/",
            headers: &[
                ("content-type", CONTENT_TYPE),
                ("host", "sns.us-east-1.amazonaws.com"),
            ],
            body: body.as_bytes(),
        },
    )
    .unwrap()
}

fn signature_of(headers: &[(http::HeaderName, http::HeaderValue)]) -> String {
    let auth = header(headers, "authorization");
    auth.rsplit_once("Signature=").unwrap().1.to_owned()
}

#[test]
fn publish_signature_shape_and_determinism() {
    let body = form_body("+14155550123", "hi", "Transactional", None, None);
    let signed = sign_publish(&body, at(NEW_YEAR_2026));

    let auth = header(&signed, "authorization");
    let prefix = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sns/aws4_request, \
                  SignedHeaders=content-type;host;x-amz-date, Signature=";
    assert!(auth.starts_with(prefix), "{auth}");
    let signature = signature_of(&signed);
    assert_eq!(signature.len(), 64, "{signature}");
    assert!(
        signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{signature}"
    );
    assert_eq!(header(&signed, "x-amz-date"), "20260101T000000Z");
    assert!(
        signed.iter().all(|(k, _)| k != "x-amz-security-token"),
        "no token configured, none sent: {signed:?}"
    );
    let (_, auth_value) = signed.iter().find(|(k, _)| k == "authorization").unwrap();
    assert!(auth_value.is_sensitive());

    // Same request, same instant: same signature.
    assert_eq!(
        signature_of(&sign_publish(&body, at(NEW_YEAR_2026))),
        signature
    );
    // The body is covered: one character changes it.
    let other = form_body("+14155550124", "hi", "Transactional", None, None);
    assert_ne!(
        signature_of(&sign_publish(&other, at(NEW_YEAR_2026))),
        signature
    );
    // So is the instant.
    assert_ne!(
        signature_of(&sign_publish(&body, at(NEW_YEAR_2026 + 1))),
        signature
    );
}

// ---- answers ---------------------------------------------------------------------

/// An error answer as SNS writes it (Query protocol, docs.aws.amazon.com/sns
/// "Common Errors" / API_Publish "Errors").
fn aws_error(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error>
    <Type>Sender</Type>
    <Code>{code}</Code>
    <Message>{message}</Message>
  </Error>
  <RequestId>9dd01905-5012-5f99-8663-4b3ecd0dfaef</RequestId>
</ErrorResponse>"#
    )
}

#[derive(Debug, PartialEq)]
enum Want {
    Transient { retry_after: Option<u64> },
    Permanent(PermanentKind),
}

fn outcome(e: SendError) -> Want {
    match e {
        SendError::Transient { retry_after, .. } => Want::Transient {
            retry_after: retry_after.map(|d| d.as_secs()),
        },
        SendError::Permanent { kind, .. } => Want::Permanent(kind),
        SendError::Ambiguous { message } => {
            panic!("an error status must never be ambiguous: {message}")
        }
    }
}

#[test]
fn error_answers_are_classified() {
    use PermanentKind::*;
    const T: Want = Want::Transient { retry_after: None };
    let cases: Vec<(u16, String, Option<u64>, Want)> = vec![
        (400, aws_error("Throttling", "Rate exceeded"), None, T),
        (
            400,
            aws_error("ThrottlingException", "Rate exceeded"),
            None,
            T,
        ),
        (
            429,
            aws_error("Throttled", "Rate exceeded"),
            Some(2),
            Want::Transient {
                retry_after: Some(2),
            },
        ),
        (
            400,
            aws_error("ThrottledException", "Rate exceeded"),
            None,
            T,
        ),
        (500, aws_error("InternalError", "Internal error"), None, T),
        (500, aws_error("InternalFailure", "unknown error"), None, T),
        (
            503,
            aws_error("ServiceUnavailable", "Service is unavailable"),
            Some(1),
            Want::Transient {
                retry_after: Some(1),
            },
        ),
        // A 5xx is transient whatever code it carries.
        (500, aws_error("InvalidParameter", "PhoneNumber"), None, T),
        (502, "<html>bad gateway</html>".into(), None, T),
        (503, String::new(), None, T),
        // A server fault code through a proxy that rewrote the status.
        (400, aws_error("InternalError", "Internal error"), None, T),
        (
            400,
            aws_error(
                "RequestExpired",
                "Request has expired. Timestamp date is 20260101T000000Z",
            ),
            None,
            T,
        ),
        (
            400,
            aws_error(
                "InvalidParameter",
                "Invalid parameter: PhoneNumber Reason: +1555 is not valid to publish to",
            ),
            None,
            Want::Permanent(InvalidNumber),
        ),
        (
            400,
            aws_error(
                "InvalidParameterValue",
                "Invalid parameter: PhoneNumber Reason: input incorrectly formatted",
            ),
            None,
            Want::Permanent(InvalidNumber),
        ),
        (
            400,
            aws_error("ParameterValueInvalid", "Invalid phone number: +99"),
            None,
            Want::Permanent(InvalidNumber),
        ),
        (
            400,
            aws_error("InvalidParameter", "Invalid parameter: Message too long"),
            None,
            Want::Permanent(Other),
        ),
        (
            400,
            aws_error(
                "InvalidParameter",
                "Invalid parameter: MessageAttributes Reason: AWS.SNS.SMS.SenderID is invalid",
            ),
            None,
            Want::Permanent(Other),
        ),
        (
            400,
            aws_error(
                "InvalidParameter",
                "Invalid parameter: PhoneNumber Reason: +14155550123 is opted out",
            ),
            None,
            Want::Permanent(CarrierOptOut),
        ),
        (
            400,
            aws_error("OptedOut", "Phone number is opted out"),
            None,
            Want::Permanent(CarrierOptOut),
        ),
        (
            403,
            aws_error(
                "AuthorizationError",
                "User: arn:aws:iam::123456789012:user/herald is not authorized to perform: SNS:Publish",
            ),
            None,
            Want::Permanent(Unauthorized),
        ),
        (
            403,
            aws_error(
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ),
            None,
            Want::Permanent(Unauthorized),
        ),
        (
            403,
            aws_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            ),
            None,
            Want::Permanent(Unauthorized),
        ),
        (
            403,
            aws_error("AccessDenied", "Access Denied"),
            None,
            Want::Permanent(Unauthorized),
        ),
        (
            400,
            aws_error("AccessDeniedException", "no access"),
            None,
            Want::Permanent(Unauthorized),
        ),
        (
            403,
            aws_error(
                "ExpiredToken",
                "The security token included in the request is expired",
            ),
            None,
            Want::Permanent(Unauthorized),
        ),
        (403, String::new(), None, Want::Permanent(Unauthorized)),
        (401, "nope".into(), None, Want::Permanent(Unauthorized)),
        (
            400,
            aws_error("ValidationException", "1 validation error detected"),
            None,
            Want::Permanent(Other),
        ),
        (404, String::new(), None, Want::Permanent(Other)),
        (400, "not xml".into(), None, Want::Permanent(Other)),
        (301, String::new(), None, T),
    ];
    for (status, body, retry_after, want) in cases {
        let fields = read_xml(body.as_bytes()).ok();
        let got = outcome(classify(
            status,
            fields.as_ref(),
            retry_after.map(Duration::from_secs),
        ));
        assert_eq!(got, want, "status {status}, body {body:?}");
    }
}

#[test]
fn error_message_names_the_aws_code_and_status() {
    let cases = [
        (
            400,
            aws_error("Throttling", "Rate exceeded"),
            "Throttling: Rate exceeded (HTTP 400)",
        ),
        (502, String::new(), "Bad Gateway (HTTP 502)"),
        (
            400,
            "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>".into(),
            "Throttling (HTTP 400)",
        ),
    ];
    for (status, body, want) in cases {
        let fields = read_xml(body.as_bytes()).ok();
        let e = classify(status, fields.as_ref(), None);
        let (SendError::Transient { code, message, .. }
        | SendError::Permanent { code, message, .. }) = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(message, want);
        assert_eq!(code, Some(u32::from(status)));
    }
}

#[test]
fn publish_answers() {
    let ok = |id: &str| {
        Ok::<_, String>(Accepted {
            provider_id: id.into(),
            segments: None,
        })
    };
    let cases: Vec<(&str, Result<Accepted, String>)> = vec![
        (
            // The example in SNS's API_Publish reference.
            r#"<PublishResponse xmlns="https://sns.amazonaws.com/doc/2010-03-31/">
    <PublishResult>
        <MessageId>567910cd-659e-55d4-8ccb-5aaf14679dc0</MessageId>
    </PublishResult>
    <ResponseMetadata>
        <RequestId>d74b8436-ae13-5ab4-a9ff-ce54dfea72a0</RequestId>
    </ResponseMetadata>
</PublishResponse>"#,
            ok("567910cd-659e-55d4-8ccb-5aaf14679dc0"),
        ),
        (
            r#"<?xml version="1.0"?><sns:PublishResponse xmlns:sns="x"><sns:PublishResult><sns:MessageId>a&amp;b&#x2d;c</sns:MessageId></sns:PublishResult></sns:PublishResponse>"#,
            ok("a&b-c"),
        ),
        (
            "<PublishResponse><PublishResult><MessageId><![CDATA[id-1]]></MessageId></PublishResult></PublishResponse>",
            ok("id-1"),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            parse_published(StatusCode::OK, body.as_bytes()).map_err(|e| e.to_string()),
            want,
            "{body}"
        );
    }
    // A 2xx SNS took but whose id we cannot read: never re-sent silently.
    for body in [
        "",
        "{\"MessageId\":\"x\"}",
        "<PublishResponse><PublishResult></PublishResult></PublishResponse>",
        "<PublishResponse><PublishResult><MessageId> </MessageId></PublishResult></PublishResponse>",
        // The RequestId is not the message's id.
        "<PublishResponse><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishResponse>",
        "<PublishResponse><PublishResult><MessageId>x</Oops></PublishResult></PublishResponse>",
    ] {
        assert!(
            matches!(
                parse_published(StatusCode::OK, body.as_bytes()),
                Err(SendError::Ambiguous { .. })
            ),
            "a 2xx with body {body:?} must be ambiguous"
        );
    }
}

#[test]
fn xml_fields_are_read_by_parent() {
    let got = read_xml(aws_error("Throttling", "Rate &lt; limit").as_bytes()).unwrap();
    assert_eq!(
        got,
        XmlFields {
            message_id: None,
            code: Some("Throttling".into()),
            message: Some("Rate < limit".into()),
        }
    );
    // `<Code>` outside `<Error>` is not the error code.
    let got = read_xml(b"<X><Code>nope</Code></X>").unwrap();
    assert_eq!(got, XmlFields::default());
    // Deeply nested input is refused, not followed.
    let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
    assert!(read_xml(deep.as_bytes()).is_err());
}

// ---- settings ----------------------------------------------------------------------

fn settings() -> SnsSettings {
    SnsSettings {
        region: "us-east-1".into(),
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "very-secret".into(),
        ..Default::default()
    }
}

#[test]
fn validation_names_the_key() {
    let key = |s: SnsSettings| validate(&s).err().map(|e| e.key);
    let cases: Vec<(SnsSettings, Option<&str>)> = vec![
        (settings(), None),
        (
            SnsSettings {
                region: String::new(),
                ..settings()
            },
            Some("region"),
        ),
        (
            SnsSettings {
                region: "us-east-1.evil.com/".into(),
                ..settings()
            },
            Some("region"),
        ),
        (
            SnsSettings {
                access_key_id: String::new(),
                ..settings()
            },
            Some("access_key_id"),
        ),
        (
            SnsSettings {
                access_key_id: "AKIA/2026".into(),
                ..settings()
            },
            Some("access_key_id"),
        ),
        (
            SnsSettings {
                secret_access_key: String::new(),
                ..settings()
            },
            Some("secret_access_key"),
        ),
        (
            SnsSettings {
                session_token: Some(" ".into()),
                ..settings()
            },
            Some("session_token"),
        ),
        (
            SnsSettings {
                session_token: Some("tok\nen".into()),
                ..settings()
            },
            Some("session_token"),
        ),
        (
            SnsSettings {
                session_token: Some("FwoGZXIvYXdzEXAMPLE//token==".into()),
                ..settings()
            },
            None,
        ),
        (
            SnsSettings {
                endpoint: Some("ftp://sns".into()),
                ..settings()
            },
            Some("endpoint"),
        ),
        (
            SnsSettings {
                endpoint: Some("sns.us-east-1.amazonaws.com".into()),
                ..settings()
            },
            Some("endpoint"),
        ),
        (
            SnsSettings {
                endpoint: Some("https://sns.us-east-1.amazonaws.com/?a=1".into()),
                ..settings()
            },
            Some("endpoint"),
        ),
        (
            SnsSettings {
                origination_number: Some("".into()),
                ..settings()
            },
            Some("origination_number"),
        ),
        (
            SnsSettings {
                sender_id: Some("HERALD".into()),
                ..settings()
            },
            None,
        ),
        (
            SnsSettings {
                sender_id: Some("TWELVECHARSX".into()),
                ..settings()
            },
            Some("sender_id"),
        ),
        (
            SnsSettings {
                sender_id: Some("12345".into()),
                ..settings()
            },
            Some("sender_id"),
        ),
        (
            SnsSettings {
                sender_id: Some("MY BANK".into()),
                ..settings()
            },
            Some("sender_id"),
        ),
        (
            SnsSettings {
                connection: ConnectionSettings {
                    connect_timeout: Duration::ZERO,
                    ..Default::default()
                },
                ..settings()
            },
            Some("connect_timeout"),
        ),
    ];
    for (s, want) in cases {
        let shown = format!("{s:?}");
        assert_eq!(key(s), want, "{shown}");
    }
}

#[test]
fn endpoint_default_and_normalisation() {
    let uri = |endpoint: Option<&str>, region: &str| {
        SnsProvider::new(SnsSettings {
            endpoint: endpoint.map(str::to_owned),
            region: region.into(),
            ..settings()
        })
        .unwrap()
        .publish_uri()
        .to_string()
    };
    let cases = [
        (None, "us-east-1", "https://sns.us-east-1.amazonaws.com/"),
        (None, "eu-west-2", "https://sns.eu-west-2.amazonaws.com/"),
        (
            Some("http://127.0.0.1:4566"),
            "us-east-1",
            "http://127.0.0.1:4566/",
        ),
        // A default port is dropped: it is not part of the signed Host.
        (
            Some("https://sns.us-east-1.amazonaws.com:443/"),
            "us-east-1",
            "https://sns.us-east-1.amazonaws.com/",
        ),
        (
            Some("http://localhost:80"),
            "us-east-1",
            "http://localhost/",
        ),
        (
            Some("https://vpce-1.sns.us-east-1.vpce.amazonaws.com"),
            "us-east-1",
            "https://vpce-1.sns.us-east-1.vpce.amazonaws.com/",
        ),
    ];
    for (endpoint, region, want) in cases {
        assert_eq!(uri(endpoint, region), want, "{endpoint:?}");
    }
}

#[test]
fn secrets_stay_out_of_debug() {
    let s = SnsSettings {
        session_token: Some("session-secret".into()),
        ..settings()
    };
    let p = SnsProvider::new(s.clone()).unwrap();
    for shown in [format!("{s:?}"), format!("{p:?}")] {
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("session-secret"), "{shown}");
        assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"), "{shown}");
    }
}
