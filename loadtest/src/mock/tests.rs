//! Unit tests of the mock's parts; the behaviour over real HTTP is tested in
//! `loadtest/tests/mock.rs`.

use std::net::SocketAddr;

use http::StatusCode;
use http_body_util::BodyExt as _;
use tokio::net::TcpStream;

use super::callbacks::{CallbackMessage, twilio_signature};
use super::config::{MockSettings, SettingsError};
use super::rules::{Answer, MessageStatus, Plan, Receipt, ServerError, plan};
use super::wire::{Fields, Sid, created, is_e164, rfc2822, segments};
use super::{MockProvider, callbacks};

#[test]
fn dates_are_rfc2822() {
    assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    assert_eq!(rfc2822(1_692_853_305), "Thu, 24 Aug 2023 05:01:45 +0000");
    assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
}

#[test]
fn e164() {
    assert!(is_e164("+14155550123"));
    assert!(is_e164("+12345678"));
    assert!(!is_e164("+1234567"));
    assert!(!is_e164("+1234567890123456"));
    assert!(!is_e164("14155550123"));
    assert!(!is_e164("+1415555012a"));
}

#[test]
fn validation_codes() {
    let code = |form: &str| Fields::parse(form.as_bytes()).err().map(|(c, _)| c);
    assert_eq!(code("To=%2B14155550123&From=%2B15005550006&Body=hi"), None);
    assert_eq!(
        code("To=%2B14155550123&MessagingServiceSid=MG1&Body=hi"),
        None
    );
    assert_eq!(code("From=%2B15005550006&Body=hi"), Some(21604));
    assert_eq!(code("To=%2B14155550123&From=%2B15005550006"), Some(21602));
    assert_eq!(
        code("To=%2B14155550123&From=%2B15005550006&Body="),
        Some(21602)
    );
    assert_eq!(code("To=%2B14155550123&Body=hi"), Some(21603));
    assert_eq!(
        code("To=4155550123&From=%2B15005550006&Body=hi"),
        Some(21211)
    );
    assert_eq!(
        code("To=%2B15005550001&From=%2B15005550006&Body=hi"),
        Some(21211)
    );
    assert_eq!(
        code("To=%2B15005550002&From=%2B15005550006&Body=hi"),
        Some(21612)
    );
    assert_eq!(
        code("To=%2B15005550003&From=%2B15005550006&Body=hi"),
        Some(21408)
    );
    assert_eq!(
        code("To=%2B15005550004&From=%2B15005550006&Body=hi"),
        Some(21610)
    );
    assert_eq!(
        code("To=%2B15005550009&From=%2B15005550006&Body=hi"),
        Some(21614)
    );
    assert_eq!(
        code("To=%2B14155550123&From=%2B15005550001&Body=hi"),
        Some(21212)
    );
    assert_eq!(
        code("To=%2B14155550123&From=%2B15005550007&Body=hi"),
        Some(21606)
    );
    assert_eq!(
        code("To=%2B14155550123&From=%2B15005550008&Body=hi"),
        Some(21611)
    );
    let long = format!(
        "To=%2B14155550123&From=%2B15005550006&Body={}",
        "a".repeat(1601)
    );
    assert_eq!(code(&long), Some(21617));
}

#[test]
fn segment_estimate() {
    assert_eq!(segments("hello"), 1);
    assert_eq!(segments(&"a".repeat(161)), 2);
    assert_eq!(segments(&"{".repeat(81)), 2);
    assert_eq!(segments(&format!("{}é", "a".repeat(70))), 2);
}

#[test]
fn created_body_is_a_message_resource() {
    let account = MockSettings::default().account_sid;
    let fields =
        Fields::parse(b"To=%2B14155550123&From=%2B15005550006&Body=say+%22hi%22%0A").unwrap();
    let response = created(&account, &fields, &Sid::new(0xfeed, 7));
    assert_eq!(response.status(), StatusCode::CREATED);
    let bytes = block_on(response.into_body().collect()).unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["body"], "say \"hi\"\n");
    assert_eq!(v["to"], "+14155550123");
    assert_eq!(v["from"], "+15005550006");
    assert_eq!(v["num_segments"], "1");
    assert_eq!(v["status"], "queued");
    assert_eq!(v["messaging_service_sid"], serde_json::Value::Null);
    let sid = v["sid"].as_str().unwrap();
    assert!(
        sid.starts_with("SM") && sid.len() == 34 && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
    );
    assert_eq!(
        v["uri"],
        format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", account)
    );
}

/// One raw HTTP/1.1 exchange with `Connection: close`; returns status and body.
async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[tokio::test]
async fn routes_stats_and_shutdown() {
    let mock = MockProvider::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        MockSettings::default(),
    )
    .await
    .unwrap();
    let addr = mock.addr();
    assert_eq!(mock.base_url(), format!("http://{addr}"));

    let (status, body) = exchange(
        addr,
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["code"].as_u64(), v["status"].as_u64()),
        (Some(20404), Some(404))
    );
    assert_eq!(v["more_info"], "https://www.twilio.com/docs/errors/20404");

    let path = format!(
        "/2010-04-01/Accounts/{}/Messages.json",
        mock.settings().account_sid
    );
    let (status, _) = exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 405);
    let form = "To=%2B14155550123&From=%2B15005550006&Body=hi";
    let unauthenticated = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let (status, body) = exchange(addr, &unauthenticated).await;
    assert_eq!(status, 401);
    assert!(body.contains(r#""code":20003"#), "{body}");

    let (status, body) = exchange(
        addr,
        "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["rejected_auth"], 1);
    assert_eq!(stats["accepted"], 0);
    assert_eq!(mock.stats().connections_accepted, 4);

    mock.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// `plan` fed with `rolls` in order; fails if it asks for more or fewer.
fn plan_with(settings: &MockSettings, to: &str, rolls: &[f64]) -> Plan {
    let mut script = rolls.iter().copied();
    let plan = plan(settings, to, &mut || {
        script.next().expect("plan rolled more often than scripted")
    });
    assert_eq!(script.next(), None, "plan rolled less often than scripted");
    plan
}

fn accept(receipt: Receipt) -> Plan {
    Plan {
        slow: false,
        answer: Answer::Accept,
        receipt,
    }
}

fn receipt(final_status: MessageStatus, duplicate: bool, reorder: bool) -> Receipt {
    Receipt {
        final_status,
        duplicate,
        reorder,
    }
}

#[test]
fn magic_numbers_decide_without_rolling() {
    // Every knob on: a magic number must still get its own plan, and no roll
    // (an empty script fails on any).
    let settings = MockSettings {
        drop_rate: 1.0,
        slow_rate: 1.0,
        status_callbacks: true,
        undelivered_rate: 1.0,
        duplicate_callbacks: 1.0,
        reorder_callbacks: 1.0,
        ..MockSettings::default()
    };
    let answer = |answer| Plan {
        slow: false,
        answer,
        receipt: Receipt::DELIVERED,
    };
    let rows = [
        ("+15005550429", answer(Answer::RateLimited)),
        (
            "+15005550500",
            answer(Answer::ServerError(ServerError::Internal)),
        ),
        (
            "+15005550503",
            answer(Answer::ServerError(ServerError::Unavailable)),
        ),
        ("+15005550555", answer(Answer::Drop)),
        ("+15005550556", answer(Answer::AcceptThenDrop)),
        (
            "+15005550777",
            Plan {
                slow: true,
                ..answer(Answer::Accept)
            },
        ),
        (
            "+15005550030",
            accept(receipt(MessageStatus::Undelivered(30003), false, false)),
        ),
        (
            "+15005550031",
            accept(receipt(MessageStatus::Undelivered(30005), false, false)),
        ),
        (
            "+15005550032",
            accept(receipt(MessageStatus::Undelivered(30007), false, false)),
        ),
        (
            "+15005550033",
            accept(receipt(MessageStatus::Failed(30001), false, false)),
        ),
        (
            "+15005550021",
            accept(receipt(MessageStatus::Delivered, false, true)),
        ),
        (
            "+15005550022",
            accept(receipt(MessageStatus::Delivered, true, false)),
        ),
    ];
    for (to, want) in rows {
        assert_eq!(plan_with(&settings, to, &[]), want, "{to}");
    }
}

#[test]
fn answer_rates_are_slices_of_one_roll() {
    const TO: &str = "+14155550123";
    let errors = MockSettings {
        error_rate: 0.2,
        ..MockSettings::default()
    };
    let thirds = MockSettings {
        rate_limit_rate: 0.25,
        server_error_rate: 0.25,
        drop_rate: 0.25,
        ..MockSettings::default()
    };
    let all_dropped = MockSettings {
        drop_rate: 1.0,
        ..MockSettings::default()
    };
    let rows: [(&str, &MockSettings, &[f64], Answer); 10] = [
        (
            "all off: no roll",
            &MockSettings::default(),
            &[],
            Answer::Accept,
        ),
        (
            "error_rate, heads",
            &errors,
            &[0.1, 0.3],
            Answer::RateLimited,
        ),
        (
            "error_rate, tails",
            &errors,
            &[0.1, 0.7],
            Answer::ServerError(ServerError::Internal),
        ),
        (
            "error_rate edge is exclusive",
            &errors,
            &[0.2],
            Answer::Accept,
        ),
        ("first slice", &thirds, &[0.0], Answer::RateLimited),
        (
            "second slice, heads",
            &thirds,
            &[0.3, 0.2],
            Answer::ServerError(ServerError::Internal),
        ),
        (
            "second slice, tails",
            &thirds,
            &[0.3, 0.6],
            Answer::ServerError(ServerError::Unavailable),
        ),
        ("third slice", &thirds, &[0.6], Answer::Drop),
        ("past the slices", &thirds, &[0.8], Answer::Accept),
        (
            "rate 1 covers every roll",
            &all_dropped,
            &[0.999_999],
            Answer::Drop,
        ),
    ];
    for (name, settings, rolls, want) in rows {
        let got = plan_with(settings, TO, rolls);
        assert_eq!(got.answer, want, "{name}");
        assert!(!got.slow, "{name}");
        assert_eq!(got.receipt, Receipt::DELIVERED, "{name}");
    }
}

#[test]
fn slow_and_receipt_rates_roll_separately() {
    const TO: &str = "+14155550123";
    let callbacks = MockSettings {
        status_callbacks: true,
        undelivered_rate: 0.5,
        duplicate_callbacks: 0.5,
        reorder_callbacks: 0.5,
        ..MockSettings::default()
    };
    let slow = MockSettings {
        slow_rate: 0.5,
        ..MockSettings::default()
    };
    let callbacks_off = MockSettings {
        status_callbacks: false,
        ..callbacks.clone()
    };
    let rows: [(&str, &MockSettings, &[f64], Plan); 6] = [
        (
            "slow",
            &slow,
            &[0.4],
            Plan {
                slow: true,
                ..accept(Receipt::DELIVERED)
            },
        ),
        ("not slow", &slow, &[0.5], accept(Receipt::DELIVERED)),
        (
            // undelivered yes, code index 1, duplicate no, reorder yes
            "undelivered 30005, reordered",
            &callbacks,
            &[0.4, 0.5, 0.9, 0.1],
            accept(receipt(MessageStatus::Undelivered(30005), false, true)),
        ),
        (
            "undelivered 30003, duplicated",
            &callbacks,
            &[0.0, 0.0, 0.1, 0.9],
            accept(receipt(MessageStatus::Undelivered(30003), true, false)),
        ),
        (
            "delivered: no code roll",
            &callbacks,
            &[0.6, 0.6, 0.6],
            accept(receipt(MessageStatus::Delivered, false, false)),
        ),
        (
            "callbacks off: no receipt rolls",
            &callbacks_off,
            &[],
            accept(Receipt::DELIVERED),
        ),
    ];
    for (name, settings, rolls, want) in rows {
        assert_eq!(plan_with(settings, TO, rolls), want, "{name}");
    }
}

#[test]
fn receipt_sequences() {
    use MessageStatus::{Delivered, Failed, Sent, Undelivered};
    let rows = [
        (
            receipt(Delivered, false, false),
            vec![Sent, Delivered],
            false,
        ),
        (receipt(Delivered, true, true), vec![Delivered, Sent], true),
        (
            receipt(Undelivered(30003), false, true),
            vec![Undelivered(30003), Sent],
            true,
        ),
        (
            receipt(Failed(30001), false, false),
            vec![Failed(30001)],
            false,
        ),
        // Nothing to reorder: `failed` has no `sent` before it.
        (
            receipt(Failed(30001), false, true),
            vec![Failed(30001)],
            false,
        ),
    ];
    for (receipt, want, reordered) in rows {
        assert_eq!(receipt.sequence().collect::<Vec<_>>(), want, "{receipt:?}");
        assert_eq!(receipt.is_reordered(), reordered, "{receipt:?}");
    }
}

#[test]
fn settings_validation() {
    let base = MockSettings::default;
    let rows: [(&str, MockSettings, Result<(), SettingsError>); 8] = [
        ("defaults", base(), Ok(())),
        (
            "all answer rates adding up to 1",
            MockSettings {
                error_rate: 0.1,
                rate_limit_rate: 0.2,
                server_error_rate: 0.3,
                drop_rate: 0.4,
                ..base()
            },
            Ok(()),
        ),
        (
            "every other rate at 1",
            MockSettings {
                slow_rate: 1.0,
                undelivered_rate: 1.0,
                duplicate_callbacks: 1.0,
                reorder_callbacks: 1.0,
                drop_rate: 1.0,
                ..base()
            },
            Ok(()),
        ),
        (
            "error_rate above 1",
            MockSettings {
                error_rate: 1.5,
                ..base()
            },
            Err(SettingsError::RateOutOfRange {
                field: "error_rate",
                value: 1.5,
            }),
        ),
        (
            "negative drop_rate",
            MockSettings {
                drop_rate: -0.1,
                ..base()
            },
            Err(SettingsError::RateOutOfRange {
                field: "drop_rate",
                value: -0.1,
            }),
        ),
        (
            "reorder_callbacks above 1",
            MockSettings {
                reorder_callbacks: 2.0,
                ..base()
            },
            Err(SettingsError::RateOutOfRange {
                field: "reorder_callbacks",
                value: 2.0,
            }),
        ),
        (
            "answer rates above 1 together",
            MockSettings {
                rate_limit_rate: 0.5,
                server_error_rate: 0.6,
                ..base()
            },
            Err(SettingsError::AnswerRatesAboveOne { sum: 1.1 }),
        ),
        (
            "slow_rate is not an answer rate",
            MockSettings {
                drop_rate: 1.0,
                slow_rate: 1.0,
                ..base()
            },
            Ok(()),
        ),
    ];
    for (name, settings, want) in rows {
        assert_eq!(settings.validate(), want, "{name}");
    }
    let nan = MockSettings {
        slow_rate: f64::NAN,
        ..base()
    };
    assert!(
        matches!(
            nan.validate(),
            Err(SettingsError::RateOutOfRange {
                field: "slow_rate",
                ..
            })
        ),
        "NaN must be refused"
    );
}

#[tokio::test]
async fn start_refuses_invalid_settings() {
    let error = MockProvider::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        MockSettings {
            server_error_rate: 1.2,
            ..MockSettings::default()
        },
    )
    .await
    .err()
    .expect("start must fail");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let inner = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<SettingsError>());
    assert_eq!(
        inner,
        Some(&SettingsError::RateOutOfRange {
            field: "server_error_rate",
            value: 1.2
        })
    );
}

/// Twilio's published example (twilio.com/docs/usage/webhooks/webhooks-security
/// and the helper libraries' tests): auth token `12345`, this URL, these
/// parameters.
#[test]
fn signature_matches_twilio_documented_vector() {
    let params: Vec<(&str, String)> = [
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("CallSid", "CA1234567890ABCDE"),
        ("From", "+14158675309"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    assert_eq!(
        twilio_signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &params
        )
        .unwrap(),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
}

#[test]
fn callback_fields_are_twilios() {
    let sid = Sid::new(1, 2);
    let message = |from: Option<&str>, service: Option<&str>| CallbackMessage {
        url: "http://127.0.0.1:1/status".to_owned(),
        sid,
        to: "+14155550123".to_owned(),
        from: from.map(str::to_owned),
        messaging_service_sid: service.map(str::to_owned),
    };
    let common = |status: &str| {
        vec![
            ("AccountSid", "ACx".to_owned()),
            ("ApiVersion", "2010-04-01".to_owned()),
            ("MessageSid", sid.as_str().to_owned()),
            ("MessageStatus", status.to_owned()),
            ("SmsSid", sid.as_str().to_owned()),
            ("SmsStatus", status.to_owned()),
            ("To", "+14155550123".to_owned()),
        ]
    };
    let with = |mut fields: Vec<(&'static str, String)>, extra: &[(&'static str, &str)]| {
        fields.extend(extra.iter().map(|&(k, v)| (k, v.to_owned())));
        fields.sort();
        fields
    };
    let rows = [
        (
            message(Some("+15005550006"), None),
            MessageStatus::Sent,
            with(common("sent"), &[("From", "+15005550006")]),
        ),
        (
            message(Some("+15005550006"), None),
            MessageStatus::Undelivered(30003),
            with(
                common("undelivered"),
                &[("From", "+15005550006"), ("ErrorCode", "30003")],
            ),
        ),
        (
            message(None, Some("MG1")),
            MessageStatus::Failed(30001),
            with(
                common("failed"),
                &[("MessagingServiceSid", "MG1"), ("ErrorCode", "30001")],
            ),
        ),
    ];
    for (message, status, want) in rows {
        let mut got = callbacks::callback_params("ACx", &message, status);
        got.sort();
        assert_eq!(got, want, "{status:?}");
    }
}

/// The knobs added for fault injection must leave a mock built the old way
/// (`MockSettings { latency, error_rate, .., ..Default::default() }`)
/// behaving as before.
#[test]
fn fault_knobs_default_to_off() {
    let d = MockSettings::default();
    let rates = [
        d.rate_limit_rate,
        d.server_error_rate,
        d.drop_rate,
        d.slow_rate,
        d.undelivered_rate,
        d.duplicate_callbacks,
        d.reorder_callbacks,
    ];
    assert_eq!(rates, [0.0; 7]);
    assert!(!d.status_callbacks);
    // The original error_rate's 429 said `Retry-After: 1`.
    assert_eq!(d.retry_after_secs, 1);
    assert_eq!(
        plan_with(&d, "+14155550123", &[]),
        accept(Receipt::DELIVERED)
    );
}

// ---------------------------------------------------------------- lookup

#[test]
fn lookup_answers_by_last_digit_and_magic_number() {
    use super::lookup::LookupAnswer::{Carrier, Invalid, NotFound, RateLimited};
    use super::lookup::{ATT, LookupAnswer, TMOBILE, VERIZON, decode_number, plan};
    let cases = [
        ("+14155550120", Carrier(ATT)),
        ("+14155550123", Carrier(ATT)),
        ("+14155550124", Carrier(TMOBILE)),
        ("+14155550126", Carrier(TMOBILE)),
        ("+14155550127", Carrier(VERIZON)),
        ("+447700900129", Carrier(VERIZON)),
        ("+15005550404", NotFound),
        ("+15005550429", RateLimited),
        (
            "+15005550500",
            LookupAnswer::ServerError(ServerError::Internal),
        ),
        (
            "+15005550503",
            LookupAnswer::ServerError(ServerError::Unavailable),
        ),
        ("4155550123", Invalid),
        ("+1415", Invalid),
        ("+1415555012x", Invalid),
    ];
    for (number, want) in cases {
        assert_eq!(plan(number), want, "{number}");
    }
    for (segment, want) in [
        ("%2B14155550123", "+14155550123"),
        ("%2b14155550123", "+14155550123"),
        ("+14155550123", "+14155550123"),
        ("14155550123", "14155550123"),
        ("%2", "%2"),
    ] {
        assert_eq!(decode_number(segment), want, "{segment}");
    }
}

#[test]
fn lookup_fields_select_the_package() {
    use super::lookup::wants_line_type;
    let cases = [
        (None, false),
        (Some(""), false),
        (Some("Fields=line_type_intelligence"), true),
        (Some("Fields=caller_name%2Cline_type_intelligence"), true),
        (Some("Fields=caller_name,line_type_intelligence"), true),
        (Some("Fields=caller_name"), false),
        (Some("fields=line_type_intelligence"), false),
        (Some("CountryCode=US&Fields=line_type_intelligence"), true),
    ];
    for (query, want) in cases {
        assert_eq!(wants_line_type(query), want, "{query:?}");
    }
}

#[test]
fn lookup_body_is_a_phone_number_resource() {
    use super::lookup::{LookupAnswer, VERIZON, respond};
    let body = |number: &str, answer, line_type| {
        let response = respond(number, answer, line_type, 1);
        let status = response.status();
        let bytes = block_on(response.into_body().collect()).unwrap().to_bytes();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
        )
    };

    let (status, v) = body("+14155550127", LookupAnswer::Carrier(VERIZON), true);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["phone_number"], "+14155550127");
    assert_eq!(v["valid"], true);
    assert_eq!(v["country_code"], "US");
    assert_eq!(v["national_format"], "(415) 555-0127");
    let lti = &v["line_type_intelligence"];
    assert_eq!(lti["carrier_name"], "Verizon Wireless");
    assert_eq!(lti["type"], "mobile");
    assert_eq!(
        (&lti["mobile_country_code"], &lti["mobile_network_code"]),
        (&"311".into(), &"480".into())
    );
    assert_eq!(lti["error_code"], serde_json::Value::Null);
    assert_eq!(v["caller_name"], serde_json::Value::Null);

    // Without the package: a basic lookup.
    let (_, v) = body("+14155550127", LookupAnswer::Carrier(VERIZON), false);
    assert_eq!(v["line_type_intelligence"], serde_json::Value::Null);
    assert_eq!(v["valid"], true);

    let (status, v) = body("4155550127", LookupAnswer::Invalid, true);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["valid"], false);
    assert_eq!(v["validation_errors"][0], "NOT_A_NUMBER");
    assert_eq!(v["line_type_intelligence"], serde_json::Value::Null);

    let (status, v) = body("+15005550404", LookupAnswer::NotFound, true);
    assert_eq!(
        (status, v["code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(20404))
    );
    let (status, v) = body("+15005550429", LookupAnswer::RateLimited, true);
    assert_eq!(
        (status, v["code"].as_u64()),
        (StatusCode::TOO_MANY_REQUESTS, Some(20429))
    );
}

#[tokio::test]
async fn lookup_route_checks_method_and_credentials_and_counts() {
    use base64::Engine as _;
    let mock = MockProvider::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        MockSettings::default(),
    )
    .await
    .unwrap();
    let settings = mock.settings();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", settings.account_sid, settings.auth_token));
    let get = |auth: &str, method: &str| {
        format!(
            "{method} /v2/PhoneNumbers/%2B14155550124?Fields=line_type_intelligence HTTP/1.1\r\n\
             Host: x\r\nConnection: close\r\n{auth}\r\n"
        )
    };

    let (status, body) = exchange(
        mock.addr(),
        &get(&format!("Authorization: Basic {basic}\r\n"), "GET"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["line_type_intelligence"]["carrier_name"],
        "T-Mobile USA, Inc."
    );
    assert_eq!(v["phone_number"], "+14155550124");

    let (status, body) = exchange(mock.addr(), &get("", "GET")).await;
    assert_eq!(status, 401);
    assert!(body.contains(r#""code":20003"#), "{body}");
    let wrong =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:wrong", settings.account_sid));
    let (status, _) = exchange(
        mock.addr(),
        &get(&format!("Authorization: Basic {wrong}\r\n"), "GET"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = exchange(
        mock.addr(),
        &get(&format!("Authorization: Basic {basic}\r\n"), "DELETE"),
    )
    .await;
    assert_eq!(status, 405);

    let stats = mock.stats();
    // Lookups are counted apart from the Messages route.
    assert_eq!(
        (stats.lookups, stats.requests, stats.rejected_auth),
        (4, 0, 0)
    );
}
