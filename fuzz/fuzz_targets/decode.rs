//! The ingest decoder (docs/contracts.md#ingest): any bytes become a
//! validated `Message` or a `Rejection` with a reason, never a panic; and
//! what it accepts keeps the contract's limits.
#![no_main]

use herald_engine::ingest::decode::{Limits, decode, decode_cancel};
use herald_engine::model::{
    E164, MAX_ID_CHARS, MAX_TENANT_CHARS, RejectReason, parse_e164, valid_locale, valid_tenant,
};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8], limits: &Limits) {
    match decode(data, limits) {
        Ok(m) => {
            assert!(data.len() <= limits.max_entry_bytes);
            let id_chars = m.id.chars().count();
            assert!((1..=MAX_ID_CHARS).contains(&id_chars), "id {:?}", m.id);
            assert!(valid_tenant(&m.tenant), "tenant {:?}", m.tenant);
            if let Some(e) = &m.enrol {
                // An enrolment is expanded into its steps, never sent: no
                // body, no template, an id its steps can extend.
                assert!(m.body.is_empty() && m.template.is_none() && m.step.is_none());
                assert!(!m.id.contains('/') && id_chars <= MAX_ID_CHARS - 3);
                assert!((1..=64).contains(&e.schedule.len()));
                assert!(e.locale.as_deref().is_none_or(valid_locale));
            }
            match &m.template {
                _ if m.enrol.is_some() => {}
                // A templated message's body is rendered at dispatch.
                Some(t) => {
                    assert!(m.body.is_empty());
                    assert!((1..=64).contains(&t.name.len()), "template {:?}", t.name);
                    assert!(t.version.is_none_or(|v| v > 0));
                    assert!(t.locale.as_deref().is_none_or(valid_locale));
                    assert!(
                        t.vars
                            .as_deref()
                            .is_none_or(|v| v.get().trim_start().starts_with('{'))
                    );
                }
                None => {
                    assert!(!m.body.is_empty());
                    assert!(m.body.chars().count() <= limits.max_body_chars);
                }
            }
            // The number is stored as an integer and rendered back: the
            // rendering must be the same valid number.
            assert_eq!(parse_e164(E164::render(m.to).as_str()), Ok(m.to));
        }
        Err(r) => {
            assert!(!r.detail.is_empty(), "{r:?}");
            assert!(
                r.id.as_ref()
                    .is_none_or(|id| id.chars().count() <= MAX_ID_CHARS)
            );
            assert!(
                r.tenant
                    .as_ref()
                    .is_none_or(|t| t.chars().count() <= MAX_TENANT_CHARS)
            );
            if data.len() > limits.max_entry_bytes {
                assert_eq!(r.reason, RejectReason::EntryTooLarge);
            }
        }
    }
}

fn check_cancel(data: &[u8]) {
    // A cancel entry names a valid tenant and an enrolment id.
    if let Some(Ok(c)) = decode_cancel(data) {
        assert!(valid_tenant(&c.tenant));
        let n = c.id.chars().count();
        assert!((1..=MAX_ID_CHARS).contains(&n) && !c.id.contains('/'));
        assert!(c.detail.as_deref().is_none_or(|d| d.chars().count() <= 200));
    }
}

fuzz_target!(|data: &[u8]| {
    check_cancel(data);
    check(data, &Limits::default());
    // Tight limits reach the too-large and too-long paths with short inputs.
    check(
        data,
        &Limits {
            max_body_chars: 8,
            max_entry_bytes: 256,
        },
    );
});
