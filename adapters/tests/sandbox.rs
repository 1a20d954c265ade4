//! The in-process sandbox provider.

use std::collections::HashSet;
use std::time::Duration;

use herald_adapters::ConfigError;
use herald_adapters::{
    AnyProvider, PermanentKind, Provider, SandboxProvider, SandboxSettings, SendError, SendRequest,
};

fn msg(body: &str) -> SendRequest<'_> {
    SendRequest {
        to: "+14155550123",
        from: None,
        body,
        category: "transactional",
    }
}

#[test]
fn failure_rates_are_validated() {
    let key = |failure_rate, permanent_failure_rate| {
        SandboxProvider::new(SandboxSettings {
            failure_rate,
            permanent_failure_rate,
            ..Default::default()
        })
        .err()
        .map(|e: ConfigError| e.key)
    };
    assert_eq!(key(0.0, 0.0), None);
    assert_eq!(key(1.0, 0.0), None);
    assert_eq!(key(0.0, 1.0), None);
    assert_eq!(key(0.25, 0.75), None);
    assert_eq!(key(-0.1, 0.0), Some("failure_rate"));
    assert_eq!(key(1.1, 0.0), Some("failure_rate"));
    assert_eq!(key(f64::NAN, 0.0), Some("failure_rate"));
    assert_eq!(key(0.0, -0.5), Some("permanent_failure_rate"));
    assert_eq!(key(0.0, f64::INFINITY), Some("permanent_failure_rate"));
    assert_eq!(key(0.6, 0.6), Some("permanent_failure_rate"));
}

#[tokio::test]
async fn ids_are_unique_and_twilio_shaped() {
    let sandbox = SandboxProvider::new(SandboxSettings::default()).unwrap();
    let other = SandboxProvider::new(SandboxSettings::default()).unwrap();
    let mut ids = HashSet::new();
    for _ in 0..5_000 {
        for provider in [&sandbox, &other] {
            let accepted = provider
                .send(&msg("hi"))
                .await
                .expect("no failures configured");
            let id = &accepted.provider_id;
            assert!(id.starts_with("SB") && id.len() == 34, "{id}");
            assert!(id[2..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert!(ids.insert(accepted.provider_id), "duplicate id");
        }
    }
}

#[tokio::test]
async fn segments_follow_the_body() {
    let sandbox = SandboxProvider::new(SandboxSettings::default()).unwrap();
    assert_eq!(sandbox.send(&msg("hi")).await.unwrap().segments, Some(1));
    assert_eq!(
        sandbox.send(&msg(&"a".repeat(200))).await.unwrap().segments,
        Some(2)
    );
    assert_eq!(
        sandbox.send(&msg(&"✓".repeat(71))).await.unwrap().segments,
        Some(2)
    );
}

#[tokio::test]
async fn failure_knobs_produce_their_failures() {
    let transient = SandboxProvider::new(SandboxSettings {
        failure_rate: 1.0,
        ..Default::default()
    })
    .unwrap();
    let permanent = SandboxProvider::new(SandboxSettings {
        permanent_failure_rate: 1.0,
        ..Default::default()
    })
    .unwrap();
    for _ in 0..100 {
        assert!(matches!(
            transient.send(&msg("hi")).await,
            Err(SendError::Transient { .. })
        ));
        assert!(matches!(
            permanent.send(&msg("hi")).await,
            Err(SendError::Permanent {
                kind: PermanentKind::Other,
                ..
            })
        ));
    }

    let mixed = SandboxProvider::new(SandboxSettings {
        failure_rate: 0.3,
        permanent_failure_rate: 0.3,
        ..Default::default()
    })
    .unwrap();
    let (mut ok, mut transient, mut permanent) = (0, 0, 0);
    for _ in 0..2_000 {
        match mixed.send(&msg("hi")).await {
            Ok(_) => ok += 1,
            Err(SendError::Transient { .. }) => transient += 1,
            Err(SendError::Permanent { .. }) => permanent += 1,
            Err(e) => panic!("the sandbox is never ambiguous: {e}"),
        }
    }
    // Expected 800 / 600 / 600; these bounds are > 8 standard deviations wide.
    assert!((600..=1000).contains(&ok), "ok {ok}");
    assert!((420..=780).contains(&transient), "transient {transient}");
    assert!((420..=780).contains(&permanent), "permanent {permanent}");
}

#[tokio::test]
async fn latency_delays_the_answer() {
    // Deterministic, no clock reading: a zero timeout polls the send once.
    let slow = SandboxProvider::new(SandboxSettings {
        latency: Duration::from_secs(3600),
        ..Default::default()
    })
    .unwrap();
    assert!(
        tokio::time::timeout(Duration::ZERO, slow.send(&msg("hi")))
            .await
            .is_err(),
        "answered before its latency"
    );
    let jittery = SandboxProvider::new(SandboxSettings {
        jitter: Duration::from_secs(3600),
        ..Default::default()
    })
    .unwrap();
    let mut pending = 0;
    for _ in 0..20 {
        pending += usize::from(
            tokio::time::timeout(Duration::ZERO, jittery.send(&msg("hi")))
                .await
                .is_err(),
        );
    }
    // A zero jitter draw is possible but not 20 times in a row.
    assert!(pending > 0, "jitter never delayed an answer");

    let fast = AnyProvider::Sandbox(SandboxProvider::new(SandboxSettings::default()).unwrap());
    assert_eq!(fast.kind(), "sandbox");
    assert!(
        tokio::time::timeout(Duration::ZERO, fast.send(&msg("hi")))
            .await
            .is_ok(),
        "no latency configured"
    );
}
