//! Decoding the ingest contract (docs/contracts.md#ingest): one queued
//! entry's `msg` bytes become a validated [`Message`] or a [`Rejection`].
//!
//! Decoding is a single serde pass that borrows from the entry's bytes; only
//! the fields a send needs are copied out. Anything that is not JSON, or JSON
//! that breaks the contract, becomes a [`Rejection`] with a machine-readable
//! reason and a human-readable detail — never a panic, never a silent drop.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{
    Category, DEFAULT_TENANT, MAX_ID_CHARS, MAX_TENANT_CHARS, Message, RejectReason, Rejection,
    parse_e164, parse_sender, valid_tenant,
};

/// Limits applied while validating, from config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_chars: usize,
    pub max_entry_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_chars: 1_600,
            max_entry_bytes: 64 * 1024,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSequence<'a> {
    #[serde(borrow)]
    schedule: Cow<'a, str>,
    #[serde(borrow)]
    anchor: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RawRecipient<'a> {
    #[serde(borrow, default)]
    tz: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    state: Option<Cow<'a, str>>,
}

/// The wire shape. Unknown fields are ignored (forward compatibility with
/// newer producers); wrong types are errors.
#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    tenant: Option<Cow<'a, str>>,
    #[serde(borrow)]
    to: Cow<'a, str>,
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    template: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    vars: Option<&'a RawValue>,
    #[serde(borrow, default)]
    locale: Option<Cow<'a, str>>,
    #[serde(default)]
    category: Option<Category>,
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    send_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    expires_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recipient: Option<RawRecipient<'a>>,
    #[serde(borrow, default)]
    debt_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    carrier: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    meta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sequence: Option<RawSequence<'a>>,
    /// Written by Herald on a sequence's step messages.
    #[serde(default)]
    step: Option<crate::model::StepRef>,
}

/// Only the identifying fields, read leniently to label a rejection.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tenant: Option<Cow<'a, str>>,
}

/// Decode and validate one entry's `msg` bytes.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, Rejection> {
    if bytes.len() > limits.max_entry_bytes {
        let mut r = reject(
            RejectReason::EntryTooLarge,
            format!(
                "entry is {} bytes, the limit is {} (dispatch.max_entry_bytes)",
                bytes.len(),
                limits.max_entry_bytes
            ),
        );
        label(&mut r, bytes);
        return Err(r);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        reject(
            RejectReason::InvalidUtf8,
            format!("entry is not UTF-8: {e}"),
        )
    })?;
    let raw: RawMessage<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(classify_serde_error(text, e)),
    };
    validate(raw, limits)
}

/// A queue entry that acts on a sequence: `{"cancel": "<enrolment id>",
/// "tenant": "acme", "detail": "paid"}` ends it; `{"reanchor": "<id>",
/// "tenant": "acme", "anchor": "2026-12-15"}` moves its waiting steps to a
/// new anchor date (docs/contracts.md#sequences).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelEntry {
    pub tenant: String,
    pub id: String,
    pub detail: Option<String>,
    /// `Some`: a re-anchor to this date, not a cancel.
    pub anchor: Option<jiff::civil::Date>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCancel<'a> {
    #[serde(borrow, default)]
    cancel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reanchor: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    anchor: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tenant: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    detail: Option<Cow<'a, str>>,
}

/// Read a cancel or re-anchor entry. `None`: the entry is neither (it has
/// no `cancel` or `reanchor` field), so its ordinary rejection stands. Only
/// entries that failed to decode as messages are tried, so messages pay
/// nothing for it.
pub fn decode_cancel(bytes: &[u8]) -> Option<Result<CancelEntry, Rejection>> {
    let raw: RawCancel<'_> = serde_json::from_slice(bytes).ok()?;
    let tenant = raw.tenant.unwrap_or(Cow::Borrowed(DEFAULT_TENANT));
    let (id, reanchor) = match (raw.cancel, raw.reanchor) {
        (Some(id), None) => (id, false),
        (None, Some(id)) => (id, true),
        (None, None) => return None,
        (Some(id), Some(_)) => {
            return Some(Err(Rejection {
                reason: RejectReason::InvalidField,
                detail: "give one of `cancel` or `reanchor`, not both".into(),
                id: Some(truncate(&id, MAX_ID_CHARS)),
                tenant: Some(truncate(&tenant, MAX_TENANT_CHARS)),
            }));
        }
    };
    let fail = |detail: String| Rejection {
        reason: RejectReason::InvalidField,
        detail,
        id: Some(truncate(&id, MAX_ID_CHARS)),
        tenant: Some(truncate(&tenant, MAX_TENANT_CHARS)),
    };
    if !valid_tenant(&tenant) {
        return Some(Err(fail(format!(
            "`tenant` must be 1–{MAX_TENANT_CHARS} characters of letters, digits, `_`, `-`, `.`"
        ))));
    }
    let n = id.chars().count();
    if n == 0 || n > MAX_ID_CHARS || id.contains('/') {
        return Some(Err(fail(format!(
            "the sequence must be an enrolment id: 1–{MAX_ID_CHARS} characters, no `/`"
        ))));
    }
    let anchor = match (reanchor, raw.anchor.as_deref()) {
        (false, None) => None,
        (false, Some(_)) => return Some(Err(fail("`anchor` goes with `reanchor`".into()))),
        (true, None) => return Some(Err(fail("`reanchor` needs `anchor` (YYYY-MM-DD)".into()))),
        (true, Some(a)) => match a.parse::<jiff::civil::Date>() {
            Ok(d) => Some(d),
            Err(e) => {
                return Some(Err(fail(format!(
                    "`anchor` is not a date `YYYY-MM-DD`: {e}"
                ))));
            }
        },
    };
    Some(Ok(CancelEntry {
        tenant: tenant.into_owned(),
        id: id.into_owned(),
        detail: raw.detail.map(|d| d.chars().take(200).collect()),
        anchor,
    }))
}

/// Check `recipient.tz` (an IANA zone) and `recipient.state` (a US state or
/// territory code): a typo must not silently drop a quiet-hours candidate.
pub fn validate_recipient(tz: Option<&str>, state: Option<&str>) -> Result<(), String> {
    if let Some(tz) = tz
        && crate::policy::zones::Zone::by_name(tz).is_none()
    {
        return Err(format!("`recipient.tz` `{tz}` is not an IANA time zone"));
    }
    if let Some(st) = state
        && st.parse::<crate::policy::zones::StateCode>().is_err()
    {
        return Err(format!(
            "`recipient.state` `{st}` is not a US state or territory code"
        ));
    }
    Ok(())
}

fn reject(reason: RejectReason, detail: String) -> Rejection {
    Rejection {
        reason,
        detail,
        id: None,
        tenant: None,
    }
}

/// Best effort: attach id and tenant to a rejection if the entry is a JSON
/// object that has them as strings.
fn label(r: &mut Rejection, bytes: &[u8]) {
    if let Ok(ids) = serde_json::from_slice::<IdOnly<'_>>(bytes) {
        r.id = ids.id.map(|s| truncate(&s, MAX_ID_CHARS));
        r.tenant = ids.tenant.map(|s| truncate(&s, MAX_TENANT_CHARS));
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

fn classify_serde_error(text: &str, e: serde_json::Error) -> Rejection {
    use serde_json::error::Category as C;
    let reason = match e.classify() {
        C::Syntax | C::Eof | C::Io => RejectReason::InvalidJson,
        C::Data => {
            let msg = e.to_string();
            if msg.starts_with("missing field") {
                RejectReason::MissingField
            } else if !text.trim_start().starts_with('{') {
                // Valid JSON, but not an object (an array, a string…).
                RejectReason::InvalidJson
            } else {
                RejectReason::InvalidField
            }
        }
    };
    let mut r = reject(reason, e.to_string());
    if reason != RejectReason::InvalidJson {
        label(&mut r, text.as_bytes());
    }
    r
}

fn validate(raw: RawMessage<'_>, limits: &Limits) -> Result<Message, Rejection> {
    let id = raw.id;
    let tenant = raw.tenant.unwrap_or(Cow::Borrowed(DEFAULT_TENANT));
    let fail = |reason: RejectReason, detail: String| Rejection {
        reason,
        detail,
        id: Some(truncate(&id, MAX_ID_CHARS)),
        tenant: Some(truncate(&tenant, MAX_TENANT_CHARS)),
    };

    let id_chars = id.chars().count();
    if id_chars == 0 || id_chars > MAX_ID_CHARS {
        return Err(fail(
            RejectReason::InvalidField,
            format!("`id` must be 1–{MAX_ID_CHARS} characters, got {id_chars}"),
        ));
    }
    if !valid_tenant(&tenant) {
        return Err(fail(
            RejectReason::InvalidTenant,
            format!(
                "`tenant` must be 1–{MAX_TENANT_CHARS} characters of letters, digits, `_`, `-`, `.`"
            ),
        ));
    }

    let to = match parse_e164(&raw.to) {
        Ok(n) => n,
        Err(why) => return Err(fail(RejectReason::InvalidNumber, why)),
    };

    let mut template = None;
    let mut enrol = None;
    if let Some(sq) = raw.sequence {
        if raw.body.is_some() || raw.template.is_some() || raw.step.is_some() {
            return Err(fail(
                RejectReason::InvalidField,
                "an enrolment (`sequence`) takes no `body` or `template`: its schedule's steps name their templates".into(),
            ));
        }
        if sq.schedule.is_empty() || sq.schedule.len() > 64 {
            return Err(fail(
                RejectReason::InvalidField,
                "`sequence.schedule` must be a name of 1–64 characters".into(),
            ));
        }
        let anchor = match sq.anchor.parse::<jiff::civil::Date>() {
            Ok(d) => d,
            Err(e) => {
                return Err(fail(
                    RejectReason::InvalidField,
                    format!("`sequence.anchor` is not a date `YYYY-MM-DD`: {e}"),
                ));
            }
        };
        if id.contains('/') {
            return Err(fail(
                RejectReason::InvalidField,
                "an enrolment's `id` may not contain `/`: its steps are `<id>/<step>`".into(),
            ));
        }
        if id.chars().count() > MAX_ID_CHARS - 3 {
            return Err(fail(
                RejectReason::InvalidField,
                format!(
                    "an enrolment's `id` is at most {} characters (its steps add `/<step>`)",
                    MAX_ID_CHARS - 3
                ),
            ));
        }
        if let Err(why) = check_vars_and_locale(raw.vars, raw.locale.as_deref()) {
            return Err(fail(RejectReason::InvalidField, why));
        }
        enrol = Some(Box::new(crate::model::Enrol {
            schedule: Box::from(&*sq.schedule),
            anchor,
            vars: raw.vars.map(RawValue::to_owned),
            locale: raw.locale.as_deref().map(Box::from),
        }));
    }
    let body = match (raw.body, raw.template) {
        (None, None) if enrol.is_some() => Cow::Borrowed(""),
        (Some(_), Some(_)) => {
            return Err(fail(
                RejectReason::InvalidField,
                "give one of `body` or `template`, not both".into(),
            ));
        }
        (None, None) => {
            return Err(fail(
                RejectReason::MissingField,
                "one of `body` or `template` is required".into(),
            ));
        }
        (None, Some(name)) => {
            let (base, version) = match name.split_once('@') {
                Some((n, v)) => match v.parse::<u32>() {
                    Ok(v) if v > 0 => (n, Some(v)),
                    _ => {
                        return Err(fail(
                            RejectReason::InvalidField,
                            format!("`template` {name:?}: write `name` or `name@VERSION`"),
                        ));
                    }
                },
                None => (&*name, None),
            };
            if base.is_empty() || base.len() > 64 {
                return Err(fail(
                    RejectReason::InvalidField,
                    "`template` must be a name of 1–64 characters".into(),
                ));
            }
            if let Err(why) = check_vars_and_locale(raw.vars, raw.locale.as_deref()) {
                return Err(fail(RejectReason::InvalidField, why));
            }
            template = Some(Box::new(crate::model::TemplateUse {
                name: Box::from(base),
                version,
                vars: raw.vars.map(RawValue::to_owned),
                locale: raw.locale.map(|l| Box::from(&*l)),
                experiment: None,
                variant: None,
            }));
            Cow::Borrowed("")
        }
        (Some(body), None) => body,
    };
    if template.is_none() && enrol.is_none() && body.is_empty() {
        return Err(fail(
            RejectReason::InvalidField,
            "`body` must not be empty".into(),
        ));
    }
    let chars = body.chars().count();
    if chars > limits.max_body_chars {
        return Err(fail(
            RejectReason::BodyTooLong,
            format!(
                "`body` is {chars} characters, the limit is {}",
                limits.max_body_chars
            ),
        ));
    }

    let from = match raw.from.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => match parse_sender(f) {
            Ok(f) => Some(f),
            Err(e) => return Err(fail(RejectReason::InvalidField, e)),
        },
    };

    let send_at = match raw.send_at.as_deref().map(parse_instant) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            return Err(fail(
                RejectReason::InvalidField,
                format!("`send_at` is not RFC 3339: {e}"),
            ));
        }
    };
    let expires_at = match raw.expires_at.as_deref().map(parse_instant) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            return Err(fail(
                RejectReason::InvalidField,
                format!("`expires_at` is not RFC 3339: {e}"),
            ));
        }
    };

    let (recipient_tz, recipient_state) = match raw.recipient {
        None => (None, None),
        Some(r) => {
            if let Err(e) = validate_recipient(r.tz.as_deref(), r.state.as_deref()) {
                return Err(fail(RejectReason::InvalidField, e));
            }
            (
                r.tz.map(|t| Box::from(&*t)),
                r.state.map(|s| s.to_ascii_uppercase().into_boxed_str()),
            )
        }
    };

    Ok(Message {
        id: id.into_owned(),
        tenant: tenant.into_owned(),
        to,
        body: body.into_owned(),
        category: raw.category.unwrap_or(Category::Transactional),
        from,
        send_at,
        expires_at,
        recipient_tz,
        recipient_state,
        debt_id: raw.debt_id.map(|d| Box::from(&*d)),
        carrier: raw
            .carrier
            .filter(|c| !c.is_empty())
            .map(|c| Box::from(&*c)),
        meta: raw.meta.map(RawValue::to_owned),
        template,
        enrol,
        step: raw.step.map(Box::new),
    })
}

/// `vars` is an object and `locale` a locale, for a template or an
/// enrolment.
fn check_vars_and_locale(vars: Option<&RawValue>, locale: Option<&str>) -> Result<(), String> {
    if vars.is_some_and(|v| !v.get().trim_start().starts_with('{')) {
        return Err("`vars` must be an object".into());
    }
    match locale {
        Some(l) if !crate::model::valid_locale(l) => {
            Err(format!("`locale` {l:?} is not a locale (`en`, `es-US`)"))
        }
        _ => Ok(()),
    }
}

fn parse_instant(s: &str) -> Result<i64, jiff::Error> {
    let ts: jiff::Timestamp = s.parse()?;
    Ok(ts.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::E164;

    fn limits() -> Limits {
        Limits::default()
    }

    fn ok(json: &str) -> Message {
        match decode(json.as_bytes(), &limits()) {
            Ok(m) => m,
            Err(r) => panic!("expected valid, got {r:?}"),
        }
    }

    /// Sequence entries: an enrolment, a cancel, a re-anchor, and what each
    /// refuses.
    #[test]
    fn enrolments_cancels_and_reanchors_decode_or_say_why_not() {
        let m = ok(
            r#"{"id":"L-1","to":"+14155552671","sequence":{"schedule":"payment_reminder","anchor":"2026-12-01"},"vars":{"name":"Ana"},"locale":"es"}"#,
        );
        let e = m.enrol.as_deref().expect("an enrolment");
        assert_eq!(
            (&*e.schedule, e.anchor.to_string().as_str()),
            ("payment_reminder", "2026-12-01")
        );
        assert_eq!(e.locale.as_deref(), Some("es"));
        assert!(m.body.is_empty() && m.template.is_none());
        for (bad, why) in [
            (
                r#"{"id":"L/1","to":"+14155552671","sequence":{"schedule":"s","anchor":"2026-12-01"}}"#,
                "`/`",
            ),
            (
                r#"{"id":"L","to":"+14155552671","sequence":{"schedule":"s","anchor":"12/01/2026"}}"#,
                "anchor",
            ),
            (
                r#"{"id":"L","to":"+14155552671","body":"hi","sequence":{"schedule":"s","anchor":"2026-12-01"}}"#,
                "no `body`",
            ),
            (
                r#"{"id":"L","to":"+14155552671","sequence":{"schedule":"","anchor":"2026-12-01"}}"#,
                "schedule",
            ),
            (
                r#"{"id":"L","to":"+14155552671","sequence":{"schedule":"s","anchor":"2026-12-01","x":1}}"#,
                "unknown field",
            ),
        ] {
            let r = decode(bad.as_bytes(), &limits()).expect_err(bad);
            assert!(r.detail.contains(why), "{bad}: {}", r.detail);
        }
        let c = decode_cancel(br#"{"cancel":"L-1","tenant":"acme","detail":"paid"}"#)
            .expect("a cancel")
            .expect("valid");
        assert_eq!(
            (
                c.tenant.as_str(),
                c.id.as_str(),
                c.detail.as_deref(),
                c.anchor
            ),
            ("acme", "L-1", Some("paid"), None)
        );
        let r = decode_cancel(br#"{"reanchor":"L-1","anchor":"2026-12-15"}"#)
            .expect("a re-anchor")
            .expect("valid");
        assert_eq!(
            (r.tenant.as_str(), r.anchor.map(|d| d.to_string())),
            ("default", Some("2026-12-15".into()))
        );
        for bad in [
            r#"{"reanchor":"L-1"}"#,
            r#"{"cancel":"L-1","anchor":"2026-12-15"}"#,
            r#"{"cancel":"L-1","reanchor":"L-1"}"#,
            r#"{"cancel":"L/1"}"#,
            r#"{"cancel":"L-1","tenant":"a:b"}"#,
        ] {
            assert!(
                matches!(decode_cancel(bad.as_bytes()), Some(Err(_))),
                "{bad}"
            );
        }
        // Not a sequence entry at all: the ordinary rejection stands.
        assert!(decode_cancel(br#"{"id":"x"}"#).is_none());
        assert!(decode_cancel(b"not json").is_none());
    }

    #[test]
    fn a_template_message_keeps_its_name_version_vars_and_locale() {
        let m = ok(
            r#"{"id":"t1","to":"+14155552671","template":"payment_due@2","vars":{"name":"Ana"},"locale":"es-US"}"#,
        );
        let t = m.template.as_deref().expect("template");
        assert_eq!((&*t.name, t.version), ("payment_due", Some(2)));
        assert_eq!(
            t.vars.as_deref().map(RawValue::get),
            Some(r#"{"name":"Ana"}"#)
        );
        assert_eq!(t.locale.as_deref(), Some("es-US"));
        assert!(m.body.is_empty(), "rendered at the send decision");
        let m = ok(r#"{"id":"t2","to":"+14155552671","template":"welcome"}"#);
        assert_eq!(m.template.as_deref().map(|t| t.version), Some(None));
    }

    fn rejected(json: &[u8]) -> Rejection {
        match decode(json, &limits()) {
            Ok(m) => panic!("expected rejection, got {m:?}"),
            Err(r) => r,
        }
    }

    #[test]
    fn minimal_message_gets_contract_defaults() {
        let m = ok(r#"{"id":"a1","to":"+14155552671","body":"hi"}"#);
        assert_eq!(m.tenant, "default");
        assert_eq!(m.category, Category::Transactional);
        assert_eq!(m.to, 14155552671);
        assert_eq!(E164::render(m.to).as_str(), "+14155552671");
        assert!(m.meta.is_none());
    }

    #[test]
    fn every_contract_field_is_read() {
        let m = ok(
            r#"{"id":"a1","tenant":"acme","to":"+14155552671","body":"hi",
            "category":"collections","from":"+15005550006",
            "send_at":"2026-12-01T15:00:00Z","expires_at":"2026-12-02T15:00:00-05:00",
            "recipient":{"tz":"America/Phoenix","state":"az"},"debt_id":"D-9",
            "meta":{"loan":"L-1","n":[1,2]}, "unknown_future_field": {"x": 1}}"#,
        );
        assert_eq!(m.tenant, "acme");
        assert_eq!(m.category, Category::Collections);
        assert_eq!(m.from.as_deref(), Some("+15005550006"));
        assert_eq!(m.send_at, Some(1_796_137_200_000));
        assert_eq!(m.expires_at, Some(1_796_241_600_000));
        assert_eq!(m.recipient_tz.as_deref(), Some("America/Phoenix"));
        assert_eq!(m.recipient_state.as_deref(), Some("AZ"));
        assert_eq!(m.debt_id.as_deref(), Some("D-9"));
        // meta is echoed byte for byte
        assert_eq!(
            m.meta.as_ref().map(|r| r.get()),
            Some(r#"{"loan":"L-1","n":[1,2]}"#)
        );
    }

    #[test]
    fn bad_input_is_rejected_with_a_reason() {
        let long_body = format!(
            r#"{{"id":"x","to":"+14155552671","body":"{}"}}"#,
            "a".repeat(1601)
        );
        let huge = format!(
            r#"{{"id":"big","to":"+14155552671","body":"hi","meta":"{}"}}"#,
            "z".repeat(100 * 1024)
        );
        let cases: Vec<(&[u8], RejectReason, Option<&str>)> = vec![
            (b"not json", RejectReason::InvalidJson, None),
            (b"{\"id\":", RejectReason::InvalidJson, None),
            (b"[1,2,3]", RejectReason::InvalidJson, None),
            (b"\"a string\"", RejectReason::InvalidJson, None),
            (b"{\"id\":\"x\xff\"}", RejectReason::InvalidUtf8, None),
            (
                br#"{"to":"+14155552671","body":"hi"}"#,
                RejectReason::MissingField,
                None,
            ),
            (
                br#"{"id":"m1","body":"hi"}"#,
                RejectReason::MissingField,
                Some("m1"),
            ),
            (
                br#"{"id":"m2","to":"+14155552671"}"#,
                RejectReason::MissingField,
                Some("m2"),
            ),
            (
                br#"{"id":"m3","to":"4155552671","body":"hi"}"#,
                RejectReason::InvalidNumber,
                Some("m3"),
            ),
            (
                br#"{"id":"m4","to":"+1415555","body":"hi"}"#,
                RejectReason::InvalidNumber,
                Some("m4"),
            ),
            (
                br#"{"id":"m5","to":"+10005552671","body":"hi"}"#,
                RejectReason::InvalidNumber,
                Some("m5"),
            ),
            (
                br#"{"id":"m6","to":"+14155552671","body":5}"#,
                RejectReason::InvalidField,
                Some("m6"),
            ),
            (
                br#"{"id":7,"to":"+14155552671","body":"hi"}"#,
                RejectReason::InvalidField,
                None,
            ),
            (
                br#"{"id":"m8","to":"+14155552671","body":"hi","category":"spam"}"#,
                RejectReason::InvalidField,
                Some("m8"),
            ),
            (
                br#"{"id":"m9","to":"+14155552671","body":"hi","send_at":"tomorrow"}"#,
                RejectReason::InvalidField,
                Some("m9"),
            ),
            (
                br#"{"id":"m10","to":"+14155552671","template":"welcome@x"}"#,
                RejectReason::InvalidField,
                Some("m10"),
            ),
            (
                br#"{"id":"m10b","to":"+14155552671","template":"welcome","vars":[1]}"#,
                RejectReason::InvalidField,
                Some("m10b"),
            ),
            (
                br#"{"id":"m10c","to":"+14155552671","template":"welcome","locale":"Spanish"}"#,
                RejectReason::InvalidField,
                Some("m10c"),
            ),
            (
                br#"{"id":"m10d","to":"+14155552671","template":"@2"}"#,
                RejectReason::InvalidField,
                Some("m10d"),
            ),
            (
                br#"{"id":"m11","to":"+14155552671","body":"a","template":"b"}"#,
                RejectReason::InvalidField,
                Some("m11"),
            ),
            (
                br#"{"id":"","to":"+14155552671","body":"hi"}"#,
                RejectReason::InvalidField,
                Some(""),
            ),
            (
                br#"{"id":"m13","tenant":"a:b","to":"+14155552671","body":"hi"}"#,
                RejectReason::InvalidTenant,
                Some("m13"),
            ),
            (
                br#"{"id":"m14","to":"+14155552671","body":"hi","recipient":{"tz":"Mars/Olympus"}}"#,
                RejectReason::InvalidField,
                Some("m14"),
            ),
            (
                br#"{"id":"m15","to":"+14155552671","body":"hi","from":"x; DROP"}"#,
                RejectReason::InvalidField,
                Some("m15"),
            ),
            (long_body.as_bytes(), RejectReason::BodyTooLong, Some("x")),
            (huge.as_bytes(), RejectReason::EntryTooLarge, Some("big")),
        ];
        for (input, reason, id) in cases {
            let r = rejected(input);
            assert_eq!(
                r.reason,
                reason,
                "{:?}: {r:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(r.id.as_deref(), id, "{:?}", String::from_utf8_lossy(input));
            assert!(!r.detail.is_empty());
        }
    }

    #[test]
    fn body_limit_counts_characters_not_bytes() {
        // 1,600 two-byte characters is within Twilio's 1,600-character cap.
        let body = "é".repeat(1600);
        let json = format!(r#"{{"id":"u","to":"+14155552671","body":"{body}"}}"#);
        assert_eq!(ok(&json).body.chars().count(), 1600);
    }

    #[test]
    fn escaped_json_strings_are_unescaped() {
        let m = ok(r#"{"id":"e","to":"+14155552671","body":"line1\nline2 \u00e9"}"#);
        assert_eq!(m.body, "line1\nline2 é");
    }
}
