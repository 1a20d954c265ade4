//! The Twilio Lookup v2 client against the mock provider (real HTTP over
//! loopback), against a scripted server for the exact request and answers
//! the mock does not give, and against raw TCP servers for failures below
//! HTTP.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use herald_adapters::{LookupError, TwilioLookup, TwilioLookupSettings};
use herald_loadtest::mock::{MockProvider, MockSettings};
use support::{Behaviour, raw_server, refused_url, respond, serve};

const SID: &str = "ACmock0000000000000000000000000000";
const TOKEN: &str = "mock-token";

async fn mock() -> MockProvider {
    MockProvider::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        MockSettings::default(),
    )
    .await
    .expect("mock starts")
}

fn settings(base_url: String) -> TwilioLookupSettings {
    TwilioLookupSettings {
        base_url,
        account_sid: SID.into(),
        auth_token: TOKEN.into(),
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

fn client(base_url: String) -> TwilioLookup {
    TwilioLookup::new(settings(base_url)).expect("valid settings")
}

/// What a lookup came to, comparable in a table.
#[derive(Debug, PartialEq)]
enum Got {
    Carrier(Option<String>),
    Transient {
        code: Option<u32>,
        retry_after: Option<u64>,
    },
    Permanent(Option<u32>),
}

fn got(result: Result<Option<String>, LookupError>) -> Got {
    match result {
        Ok(name) => Got::Carrier(name),
        Err(LookupError::Transient {
            code, retry_after, ..
        }) => Got::Transient {
            code,
            retry_after: retry_after.map(|d| d.as_secs()),
        },
        Err(LookupError::Permanent { code, .. }) => Got::Permanent(code),
    }
}

fn carrier(name: &str) -> Got {
    Got::Carrier(Some(name.to_owned()))
}

// ---- against the mock provider ---------------------------------------------

#[tokio::test]
async fn carriers_from_the_mock() {
    let mock = mock().await;
    let lookup = client(mock.base_url());
    let cases = [
        ("+14155550120", carrier("AT&T Wireless")),
        ("+14155550123", carrier("AT&T Wireless")),
        ("+14155550125", carrier("T-Mobile USA, Inc.")),
        ("+14155550129", carrier("Verizon Wireless")),
        ("+447700900127", carrier("Verizon Wireless")),
        ("+15005550404", Got::Carrier(None)),
        // Too short for the mock's E.164 check: `"valid": false`.
        ("+1415", Got::Carrier(None)),
        (
            "+15005550429",
            Got::Transient {
                code: Some(20429),
                retry_after: Some(1),
            },
        ),
        (
            "+15005550500",
            Got::Transient {
                code: Some(20500),
                retry_after: None,
            },
        ),
        (
            "+15005550503",
            Got::Transient {
                code: Some(20503),
                retry_after: None,
            },
        ),
    ];
    for (number, want) in &cases {
        assert_eq!(&got(lookup.carrier_name(number).await), want, "{number}");
    }
    let stats = mock.stats();
    assert_eq!(stats.lookups, cases.len() as u64);
    // No message was sent and the pooled connection was reused.
    assert_eq!(stats.requests, 0);
    assert_eq!(stats.connections_accepted, 1);
}

#[tokio::test]
async fn wrong_credentials_are_permanent() {
    let mock = mock().await;
    let lookup = TwilioLookup::new(TwilioLookupSettings {
        auth_token: "wrong".into(),
        ..settings(mock.base_url())
    })
    .unwrap();
    let result = lookup.carrier_name("+14155550123").await;
    assert_eq!(got(result.clone()), Got::Permanent(Some(20003)));
    assert!(!result.unwrap_err().is_retryable());
    assert_eq!(mock.stats().lookups, 1);
}

// ---- against a scripted server ---------------------------------------------

#[tokio::test]
async fn the_request_is_twilios() {
    let server = serve(|_| {
        respond(
            200,
            &[("content-type", "application/json")],
            r#"{"phone_number":"+14155550123","valid":true,"line_type_intelligence":{"carrier_name":"Cellco Partnership dba Verizon Wireless","type":"mobile","mobile_country_code":"311","mobile_network_code":"480","error_code":null}}"#,
        )
    })
    .await;
    let lookup = client(format!("{}/proxy/", server.url()));
    assert_eq!(
        lookup.carrier_name("+14155550123").await,
        Ok(Some("Cellco Partnership dba Verizon Wireless".to_owned()))
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, http::Method::GET);
    assert_eq!(
        r.target,
        "/proxy/v2/PhoneNumbers/%2B14155550123?Fields=line_type_intelligence"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(r.header("accept"), Some("application/json"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn answers_the_mock_does_not_give() {
    let lti_error = |code: u32| {
        format!(
            r#"{{"phone_number":"+14155550123","valid":true,"line_type_intelligence":{{"carrier_name":null,"type":null,"mobile_country_code":null,"mobile_network_code":null,"error_code":{code}}}}}"#
        )
    };
    // (status, headers, body, outcome)
    type Case = (u16, Vec<(&'static str, &'static str)>, String, Got);
    let cases: Vec<Case> = vec![
        // The package is not enabled on the account: nothing to cache.
        (200, vec![], lti_error(60606), Got::Permanent(Some(60606))),
        // This number is out of coverage: "no carrier", cacheable.
        (200, vec![], lti_error(60610), Got::Carrier(None)),
        (
            503,
            vec![("retry-after", "7")],
            String::new(),
            Got::Transient {
                code: Some(503),
                retry_after: Some(7),
            },
        ),
        (
            200,
            vec![],
            "<html>captive portal</html>".into(),
            Got::Transient {
                code: None,
                retry_after: None,
            },
        ),
        (
            403,
            vec![],
            r#"{"code":20003,"message":"Authenticate","status":403}"#.into(),
            Got::Permanent(Some(20003)),
        ),
    ];
    for (status, headers, body, want) in cases {
        let answer = (status, headers.clone(), body.clone());
        let server = serve(move |_| {
            let (status, headers, body) = answer.clone();
            respond(status, &headers, body)
        })
        .await;
        let lookup = client(server.url());
        assert_eq!(
            got(lookup.carrier_name("+14155550123").await),
            want,
            "{status} {headers:?} {body}"
        );
    }
}

#[tokio::test]
async fn a_number_that_is_not_e164_is_never_sent() {
    let server = serve(|_| respond(200, &[], "{}")).await;
    let lookup = client(server.url());
    for bad in ["14155550123", "+1 415 555 0123", "+", "+1415555012345678"] {
        assert_eq!(
            got(lookup.carrier_name(bad).await),
            Got::Permanent(None),
            "{bad}"
        );
    }
    assert!(server.requests().is_empty());
}

// ---- below HTTP ----------------------------------------------------------------

#[tokio::test]
async fn failures_below_http_are_transient() {
    // Nothing listening: the request never left.
    let lookup = client(refused_url().await);
    let e = lookup.carrier_name("+14155550123").await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");

    // Read, then closed without an answer: ambiguous for a send, but a GET
    // is safe to repeat.
    let (addr, mut requests) = raw_server(Behaviour::CloseAfterRequest).await;
    let lookup = client(format!("http://{addr}"));
    let e = lookup.carrier_name("+14155550123").await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let request = requests.recv().await.expect("the server read a request");
    assert!(
        request.starts_with(b"GET /v2/PhoneNumbers/%2B14155550123?Fields=line_type_intelligence "),
        "{}",
        String::from_utf8_lossy(&request)
    );

    // Read and never answered: the request timeout ends it.
    let (addr, _requests) = raw_server(Behaviour::Silent).await;
    let lookup = TwilioLookup::new(TwilioLookupSettings {
        request_timeout: Duration::from_millis(300),
        ..settings(format!("http://{addr}"))
    })
    .unwrap();
    let e = lookup.carrier_name("+14155550123").await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}
