//! The SNS adapter against a mock SNS on loopback that checks SigV4 the way
//! SNS does (with an independent implementation) and answers in SNS's XML,
//! and against raw TCP servers for the failure modes below HTTP.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use herald_adapters::{
    Accepted, AnyProvider, ConnectionSettings, PermanentKind, Provider, SendError, SendRequest,
    SnsProvider, SnsSettings,
};
use http::Response;
use http_body_util::Full;
use support::sigv4::{self, Signed};
use support::{Behaviour, Recorded, raw_server, refused_url, respond, serve};

const AKID: &str = "AKIAHERALDTEST000001";
const SECRET: &str = "herald/test+Secret0123456789abcdefghijk";
const REGION: &str = "us-east-1";
const TO: &str = "+14155550123";

fn settings(endpoint: String) -> SnsSettings {
    SnsSettings {
        region: REGION.into(),
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        endpoint: Some(endpoint),
        connection: support::connection(),
        ..Default::default()
    }
}

fn provider(endpoint: String) -> SnsProvider {
    SnsProvider::new(settings(endpoint)).expect("valid settings")
}

fn msg<'a>(to: &'a str, body: &'a str) -> SendRequest<'a> {
    SendRequest {
        to,
        from: None,
        body,
        category: "transactional",
    }
}

fn xml(status: u16, body: String) -> Response<Full<Bytes>> {
    respond(status, &[("content-type", "text/xml")], body)
}

fn aws_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error>\
             <Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>42d59b56-7407-4c4a-be0f-4c88daeea257</RequestId></ErrorResponse>"
        ),
    )
}

// ---- the mock SNS ------------------------------------------------------------------

/// Check a request the way SNS does, then publish. `token` is the session
/// token the credentials carry, if any.
fn sns(token: Option<&'static str>) -> impl Fn(&Recorded) -> Response<Full<Bytes>> {
    let next_id = AtomicU64::new(1);
    move |req: &Recorded| {
        let Some(authorization) = req.header("authorization") else {
            return aws_error(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            );
        };
        let lookup = |name: &str| -> Vec<String> {
            if name == "host" {
                return vec![req.host.clone()];
            }
            req.headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect()
        };
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let signed = Signed {
            method: req.method.as_str(),
            path,
            query,
            header: &lookup,
            body: &req.body,
        };
        let auth = match sigv4::parse_authorization(authorization) {
            Ok(auth) => auth,
            Err(e) => return aws_error(400, "IncompleteSignature", &e),
        };
        if auth.access_key_id != AKID {
            return aws_error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            );
        }
        if auth.region != REGION || auth.service != "sns" {
            return aws_error(
                403,
                "SignatureDoesNotMatch",
                "Credential should be scoped to a valid region and service.",
            );
        }
        if let Err(why) = sigv4::verify(SECRET, authorization, &signed) {
            return aws_error(
                403,
                "SignatureDoesNotMatch",
                &format!(
                    "The request signature we calculated does not match the signature you provided. ({why})"
                ),
            );
        }
        let sent_token = req.header("x-amz-security-token");
        let token_signed = auth
            .signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token");
        if sent_token != token || (token.is_some() && !token_signed) {
            return aws_error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            );
        }

        let form: HashMap<String, String> = req.form().into_iter().collect();
        if form.get("Action").map(String::as_str) != Some("Publish")
            || form.get("Version").map(String::as_str) != Some("2010-03-31")
        {
            return aws_error(400, "InvalidAction", "Could not find operation");
        }
        let phone = form.get("PhoneNumber").cloned().unwrap_or_default();
        let e164 = phone.len() >= 9
            && phone.len() <= 16
            && phone.starts_with('+')
            && phone[1..].bytes().all(|b| b.is_ascii_digit());
        if !e164 {
            return aws_error(
                400,
                "InvalidParameter",
                &format!(
                    "Invalid parameter: PhoneNumber Reason: {phone} is not valid to publish to"
                ),
            );
        }
        let n = next_id.fetch_add(1, Ordering::Relaxed);
        xml(
            200,
            format!(
                "<PublishResponse xmlns=\"https://sns.amazonaws.com/doc/2010-03-31/\">\
                 <PublishResult><MessageId>{n:08x}-659e-55d4-8ccb-5aaf14679dc0</MessageId></PublishResult>\
                 <ResponseMetadata><RequestId>d74b8436-ae13-5ab4-a9ff-ce54dfea72a0</RequestId></ResponseMetadata>\
                 </PublishResponse>"
            ),
        )
    }
}

/// The mock's signature check reproduces AWS's own test suite
/// (`aws-signing-test-suite/v4`, as shipped with aws-sigv4): it refuses what
/// SNS would refuse.
#[test]
fn verifier_agrees_with_the_aws_test_suite() {
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    struct Vector {
        headers: &'static [(&'static str, &'static str)],
        body: &'static [u8],
        authorization: &'static str,
    }
    let vectors = [
        // post-x-www-form-urlencoded
        Vector {
            headers: &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("host", "example.amazonaws.com"),
                ("content-length", "13"),
                ("x-amz-date", "20150830T123600Z"),
                (
                    "x-amz-content-sha256",
                    "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
                ),
            ],
            body: b"Param1=value1",
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
        },
        // post-vanilla
        Vector {
            headers: &[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", "20150830T123600Z"),
            ],
            body: b"",
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        },
    ];
    for v in vectors {
        let lookup = |name: &str| -> Vec<String> {
            v.headers
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .collect()
        };
        let request = Signed {
            method: "POST",
            path: "/",
            query: "",
            header: &lookup,
            body: v.body,
        };
        assert!(
            sigv4::verify(SECRET, v.authorization, &request).is_ok(),
            "{}",
            v.authorization
        );
        // One byte of body or one letter of the secret off: refused.
        let tampered = Signed {
            body: b"Param1=value2",
            ..request
        };
        assert!(sigv4::verify(SECRET, v.authorization, &tampered).is_err());
        let request = Signed {
            body: v.body,
            ..tampered
        };
        assert!(
            sigv4::verify(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz",
                v.authorization,
                &request
            )
            .is_err()
        );
    }
}

// ---- against the mock ------------------------------------------------------------------

#[tokio::test]
async fn publish_is_signed_and_accepted() {
    let server = serve(sns(None)).await;
    let sns = provider(server.url());

    let text = "Your payment of $42.00 is due on 3 May. Reply STOP to opt out & é ✓";
    let accepted = sns.send(&msg(TO, text)).await.expect("accepted");
    assert_eq!(
        accepted,
        Accepted {
            provider_id: "00000001-659e-55d4-8ccb-5aaf14679dc0".into(),
            segments: None
        }
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method, http::Method::POST);
    assert_eq!(req.target, "/");
    assert_eq!(req.host, server.addr.to_string());
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded; charset=utf-8")
    );
    assert_eq!(
        req.form(),
        [
            ("Action", "Publish"),
            ("Version", "2010-03-31"),
            ("PhoneNumber", TO),
            ("Message", text),
            ("MessageAttributes.entry.1.Name", "AWS.SNS.SMS.SMSType"),
            ("MessageAttributes.entry.1.Value.DataType", "String"),
            (
                "MessageAttributes.entry.1.Value.StringValue",
                "Transactional"
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );

    // Shape of the signature headers; the mock already verified the value.
    let amz_date = req.header("x-amz-date").expect("x-amz-date");
    assert_eq!(amz_date.len(), 16, "{amz_date}");
    assert!(
        amz_date[..8].bytes().all(|b| b.is_ascii_digit())
            && &amz_date[8..9] == "T"
            && amz_date[9..15].bytes().all(|b| b.is_ascii_digit())
            && amz_date.ends_with('Z'),
        "{amz_date}"
    );
    let authorization = req.header("authorization").expect("authorization");
    let prefix = format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/{}/us-east-1/sns/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, Signature=",
        &amz_date[..8]
    );
    let signature = authorization
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{authorization}"));
    assert_eq!(signature.len(), 64);
    assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(req.header("x-amz-security-token"), None);
}

#[tokio::test]
async fn sms_type_and_senders_reach_sns() {
    let server = serve(sns(None)).await;
    let plain = provider(server.url());
    let configured = SnsProvider::new(SnsSettings {
        origination_number: Some("+18005550100".into()),
        sender_id: Some("HERALD".into()),
        ..settings(server.url())
    })
    .unwrap();

    struct Case {
        provider: &'static str,
        category: &'static str,
        from: Option<&'static str>,
        want: &'static [(&'static str, &'static str)],
    }
    let cases = [
        Case {
            provider: "plain",
            category: "marketing",
            from: None,
            want: &[("AWS.SNS.SMS.SMSType", "Promotional")],
        },
        Case {
            provider: "plain",
            category: "collections",
            from: None,
            want: &[("AWS.SNS.SMS.SMSType", "Transactional")],
        },
        Case {
            provider: "plain",
            category: "transactional",
            from: Some("+18005550111"),
            want: &[
                ("AWS.SNS.SMS.SMSType", "Transactional"),
                ("AWS.MM.SMS.OriginationNumber", "+18005550111"),
            ],
        },
        Case {
            provider: "configured",
            category: "marketing",
            from: None,
            want: &[
                ("AWS.SNS.SMS.SMSType", "Promotional"),
                ("AWS.MM.SMS.OriginationNumber", "+18005550100"),
                ("AWS.SNS.SMS.SenderID", "HERALD"),
            ],
        },
        // Routing's sender wins over the configured origination number.
        Case {
            provider: "configured",
            category: "transactional",
            from: Some("+18005550111"),
            want: &[
                ("AWS.SNS.SMS.SMSType", "Transactional"),
                ("AWS.MM.SMS.OriginationNumber", "+18005550111"),
                ("AWS.SNS.SMS.SenderID", "HERALD"),
            ],
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let sns = if case.provider == "plain" {
            &plain
        } else {
            &configured
        };
        sns.send(&SendRequest {
            to: TO,
            from: case.from,
            body: "hi",
            category: case.category,
        })
        .await
        .expect("accepted");
        let form: HashMap<String, String> = server.requests()[i].form().into_iter().collect();
        let mut attributes = Vec::new();
        for n in 1.. {
            let Some(name) = form.get(&format!("MessageAttributes.entry.{n}.Name")) else {
                break;
            };
            assert_eq!(
                form.get(&format!("MessageAttributes.entry.{n}.Value.DataType"))
                    .map(String::as_str),
                Some("String")
            );
            let value = form[&format!("MessageAttributes.entry.{n}.Value.StringValue")].clone();
            attributes.push((name.clone(), value));
        }
        let want: Vec<(String, String)> = case
            .want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            attributes, want,
            "case {i}: {} {}",
            case.provider, case.category
        );
    }
}

#[tokio::test]
async fn session_token_is_sent_and_signed() {
    const TOKEN: &str = "FwoGZXIvYXdzEXAMPLE//session+token==";
    let server = serve(sns(Some(TOKEN))).await;
    let sns = SnsProvider::new(SnsSettings {
        session_token: Some(TOKEN.into()),
        ..settings(server.url())
    })
    .unwrap();
    sns.send(&msg(TO, "hi")).await.expect("accepted");
    let req = &server.requests()[0];
    assert_eq!(req.header("x-amz-security-token"), Some(TOKEN));
    assert!(
        req.header("authorization")
            .unwrap()
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"),
        "{:?}",
        req.header("authorization")
    );

    // Without the token the same account is refused.
    let no_token = provider(server.url());
    match no_token.send(&msg(TO, "hi")).await {
        Err(SendError::Permanent {
            kind: PermanentKind::Unauthorized,
            code: Some(403),
            message,
        }) => assert!(message.starts_with("InvalidClientTokenId"), "{message}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized() {
    let server = serve(sns(None)).await;
    let cases = [
        (
            SnsSettings {
                secret_access_key: "not-the-secret".into(),
                ..settings(server.url())
            },
            "SignatureDoesNotMatch",
        ),
        (
            SnsSettings {
                access_key_id: "AKIAUNKNOWN000000001".into(),
                ..settings(server.url())
            },
            "InvalidClientTokenId",
        ),
        // Signed for another region than the endpoint serves.
        (
            SnsSettings {
                region: "eu-west-1".into(),
                ..settings(server.url())
            },
            "SignatureDoesNotMatch",
        ),
    ];
    for (s, code) in cases {
        let sns = SnsProvider::new(s).unwrap();
        match sns.send(&msg(TO, "hi")).await {
            Err(SendError::Permanent {
                kind: PermanentKind::Unauthorized,
                code: Some(403),
                message,
            }) => assert!(message.starts_with(code), "{message}"),
            other => panic!("expected Unauthorized {code}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn invalid_number_is_permanent() {
    let server = serve(sns(None)).await;
    let sns = provider(server.url());
    for to in ["+1555", "4155550123", "+1415555O123"] {
        match sns.send(&msg(to, "hi")).await {
            Err(SendError::Permanent {
                kind: PermanentKind::InvalidNumber,
                code: Some(400),
                message,
            }) => assert!(message.contains(to), "{message}"),
            other => panic!("{to}: expected InvalidNumber, got {other:?}"),
        }
    }
}

/// SNS's answers over the wire, one scripted server each.
#[tokio::test]
async fn answers_over_the_wire_are_classified() {
    #[derive(Debug, PartialEq)]
    enum Want {
        Accepted(String),
        Transient(Option<u64>),
        Permanent(PermanentKind),
        Ambiguous,
    }
    let error = |code: &str, message: &str| {
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
             <Message>{message}</Message></Error></ErrorResponse>"
        )
    };
    let cases: Vec<(u16, Option<&str>, String, Want)> = vec![
        (
            200,
            None,
            "<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult>\
             </PublishResponse>"
                .into(),
            Want::Accepted("m-1".into()),
        ),
        (
            429,
            Some("2"),
            error("Throttled", "Rate exceeded"),
            Want::Transient(Some(2)),
        ),
        (
            400,
            None,
            error("Throttling", "Rate exceeded"),
            Want::Transient(None),
        ),
        (
            500,
            None,
            error("InternalError", "Internal error"),
            Want::Transient(None),
        ),
        (
            503,
            Some("1"),
            error("ServiceUnavailable", "Service is unavailable"),
            Want::Transient(Some(1)),
        ),
        (
            502,
            None,
            "<html>bad gateway</html>".into(),
            Want::Transient(None),
        ),
        (
            403,
            None,
            error(
                "AuthorizationError",
                "User is not authorized to perform: SNS:Publish",
            ),
            Want::Permanent(PermanentKind::Unauthorized),
        ),
        (
            400,
            None,
            error("OptedOut", "Phone number is opted out"),
            Want::Permanent(PermanentKind::CarrierOptOut),
        ),
        (
            400,
            None,
            error("InvalidParameter", "Invalid parameter: Message too long"),
            Want::Permanent(PermanentKind::Other),
        ),
        // SNS took it but the id is unreadable: never re-sent silently.
        (200, None, "<html>ok</html>".into(), Want::Ambiguous),
    ];
    for (status, retry_after, body, want) in cases {
        let server = serve({
            let body = body.clone();
            move |_| {
                let mut headers = vec![("content-type", "text/xml")];
                headers.extend(retry_after.map(|v| ("retry-after", v)));
                respond(status, &headers, body.clone())
            }
        })
        .await;
        let got = match provider(server.url()).send(&msg(TO, "hi")).await {
            Ok(a) => {
                assert_eq!(a.segments, None);
                Want::Accepted(a.provider_id)
            }
            Err(SendError::Transient { retry_after, .. }) => {
                Want::Transient(retry_after.map(|d| d.as_secs()))
            }
            Err(SendError::Permanent { kind, .. }) => Want::Permanent(kind),
            Err(SendError::Ambiguous { .. }) => Want::Ambiguous,
        };
        assert_eq!(got, want, "{status} {body}");
        assert_eq!(server.requests().len(), 1, "exactly one attempt");
    }
}

/// `http2 = true`: the signed host is what travels as `:authority`.
#[tokio::test]
async fn http2_requests_verify_too() {
    let server = serve(sns(None)).await;
    let sns = SnsProvider::new(SnsSettings {
        connection: ConnectionSettings {
            http2: true,
            ..support::connection()
        },
        ..settings(server.url())
    })
    .unwrap();
    sns.send(&msg(TO, "over h2"))
        .await
        .expect("accepted over h2");
    let req = &server.requests()[0];
    assert_eq!(req.version, http::Version::HTTP_2);
    assert_eq!(req.header("host"), None);
    assert_eq!(req.host, server.addr.to_string());
}

#[tokio::test]
async fn any_provider_dispatches_to_sns() {
    let server = serve(sns(None)).await;
    let any = AnyProvider::Sns(provider(server.url()));
    assert_eq!(any.kind(), "sns");
    assert!(any.send(&msg(TO, "hi")).await.is_ok());
    assert_eq!(server.requests().len(), 1);
}

// ---- failure modes below HTTP ------------------------------------------------------

#[tokio::test]
async fn connection_refused_is_transient() {
    let sns = provider(refused_url().await);
    match sns.send(&msg(TO, "hi")).await {
        Err(SendError::Transient {
            code: None,
            retry_after: None,
            message,
        }) => assert!(message.contains("connecting to SNS"), "{message}"),
        other => panic!("expected Transient, got {other:?}"),
    }
}

#[tokio::test]
async fn timeout_after_the_request_was_written_is_ambiguous() {
    let (addr, mut requests) = raw_server(Behaviour::Silent).await;
    let sns = SnsProvider::new(SnsSettings {
        connection: ConnectionSettings {
            request_timeout: Duration::from_millis(300),
            ..support::connection()
        },
        ..settings(format!("http://{addr}"))
    })
    .unwrap();
    match sns.send(&msg(TO, "hi")).await {
        Err(SendError::Ambiguous { message }) => {
            assert!(message.contains("after the request was sent"), "{message}")
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    // Ambiguous because the server did read the whole signed request.
    let request = String::from_utf8(requests.recv().await.expect("a request")).unwrap();
    assert!(request.starts_with("POST / HTTP/1.1\r\n"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: aws4-hmac-sha256 credential="),
        "{request}"
    );
    assert!(
        request.ends_with("&MessageAttributes.entry.1.Value.StringValue=Transactional"),
        "{request}"
    );
}

#[tokio::test]
async fn connection_closed_after_the_request_is_ambiguous() {
    let (addr, mut requests) = raw_server(Behaviour::CloseAfterRequest).await;
    let sns = provider(format!("http://{addr}"));
    match sns.send(&msg(TO, "hi")).await {
        Err(SendError::Ambiguous { .. }) => {}
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    assert!(requests.recv().await.is_some());
    // The adapter must not have quietly re-sent it.
    assert!(requests.try_recv().is_err(), "the request was sent twice");
}
