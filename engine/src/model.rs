//! The ingest contract (DESIGN §2): decoding and validating one queued message.
//!
//! Decoding is a single serde pass that borrows from the entry's bytes; only
//! the fields a send needs are copied out. Anything that is not JSON, or JSON
//! that breaks the contract, becomes a [`Rejection`] with a machine-readable
//! reason and a human-readable detail — never a panic, never a silent drop.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The consent purpose and legal regime of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Transactional,
    Collections,
    Marketing,
}

impl Category {
    /// Every category, in the order the consent ledger stores purposes.
    pub const ALL: [Category; 3] = [
        Category::Transactional,
        Category::Collections,
        Category::Marketing,
    ];

    /// The category named `name` (`transactional`, `collections`,
    /// `marketing`).
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transactional => "transactional",
            Category::Collections => "collections",
            Category::Marketing => "marketing",
        }
    }
}

/// Why a message was rejected (DESIGN §3, status `rejected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    InvalidJson,
    InvalidUtf8,
    EntryTooLarge,
    MissingField,
    InvalidField,
    InvalidNumber,
    InvalidTenant,
    BodyTooLong,
    UnknownTemplate,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::EntryTooLarge => "entry_too_large",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::InvalidNumber => "invalid_number",
            RejectReason::InvalidTenant => "invalid_tenant",
            RejectReason::BodyTooLong => "body_too_long",
            RejectReason::UnknownTemplate => "unknown_template",
        }
    }

    /// Entries whose bytes are not even a JSON object go to `herald:dlq`
    /// whole (DESIGN §3). Every rejected entry is copied there, in fact, so
    /// that nothing is lost when the queue entry is deleted after the ack.
    pub fn is_undecodable(self) -> bool {
        matches!(self, RejectReason::InvalidJson | RejectReason::InvalidUtf8)
    }
}

/// A message that breaks the ingest contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    /// What exactly is wrong, for the event and the DLQ entry.
    pub detail: String,
    /// The producer's id and tenant, when they could be read, so the
    /// producer can match the rejection to its message.
    pub id: Option<String>,
    pub tenant: Option<String>,
}

/// A validated message, owned, ready for policy and sending. Optional text
/// fields are `Box<str>` (16 bytes, not 24): every in-flight send holds a
/// `Message`, so its size is Herald's memory per send.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub tenant: String,
    /// E.164 digits as an integer (`+14155550123` → 14155550123): 8 bytes, cheap
    /// to hash and compare, rendered back with [`E164::render`].
    pub to: u64,
    pub body: String,
    pub category: Category,
    pub from: Option<Box<str>>,
    /// ms since the epoch.
    pub send_at: Option<i64>,
    /// ms since the epoch.
    pub expires_at: Option<i64>,
    pub recipient_tz: Option<Box<str>>,
    pub recipient_state: Option<Box<str>>,
    pub debt_id: Option<Box<str>>,
    /// The recipient's carrier, when the producer knows it (DESIGN §7: the
    /// message's hint picks the carrier lane). An extension of the ingest
    /// contract; older producers simply omit it.
    pub carrier: Option<Box<str>>,
    /// `meta`, exactly as the producer wrote it, echoed in every event.
    pub meta: Option<Box<RawValue>>,
}

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
}

/// Only the identifying fields, read leniently to label a rejection.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tenant: Option<Cow<'a, str>>,
}

pub const DEFAULT_TENANT: &str = "default";
const MAX_ID_CHARS: usize = 128;
const MAX_TENANT_CHARS: usize = 64;

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

    let body = match (raw.body, raw.template) {
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
            // Templates are not part of this release: refuse clearly rather
            // than send an unrendered name.
            let _ = (raw.vars, raw.locale);
            return Err(fail(
                RejectReason::UnknownTemplate,
                format!("template `{name}` is not defined"),
            ));
        }
        (Some(body), None) => body,
    };
    if body.is_empty() {
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
        from: raw.from.map(|f| Box::from(&*f)),
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
    })
}

/// A tenant name: 1–64 letters, digits, `_`, `-`, `.` (no `:`, so Redis
/// keys that embed it stay unambiguous).
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TENANT_CHARS
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn parse_instant(s: &str) -> Result<i64, jiff::Error> {
    let ts: jiff::Timestamp = s.parse()?;
    Ok(ts.as_millisecond())
}

/// Parse and validate an E.164 number, returning its digits as an integer.
///
/// The syntax check (`+`, 8–15 digits, no leading zero) is done by hand first
/// because it rejects most garbage for a few nanoseconds; then the number is
/// checked against libphonenumber's metadata (country code, length and
/// number plan) as the `phonenumber` crate checks it (`crate::numbering`).
pub fn parse_e164(s: &str) -> Result<u64, String> {
    let digits = s
        .strip_prefix('+')
        .ok_or_else(|| format!("`to` `{s}` is not E.164: it must start with `+`"))?;
    if digits.len() < 8 || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`to` `{s}` is not E.164: `+` then 8 to 15 digits"));
    }
    if digits.starts_with('0') {
        return Err(format!(
            "`to` `{s}` is not E.164: no country code starts with 0"
        ));
    }
    let n = digits
        .parse::<u64>()
        .map_err(|e| format!("`to` `{s}`: {e}"))?;
    match crate::numbering::validate(digits) {
        Ok(()) => Ok(n),
        Err(crate::numbering::Invalid::CountryCode) => Err(format!(
            "`to` `{s}` is not a phone number: no country calling code starts it"
        )),
        Err(crate::numbering::Invalid::NumberPlan) => Err(format!(
            "`to` `{s}` is not a valid number for its country's numbering plan"
        )),
    }
}

/// Renders an E.164 integer back to `+digits` without allocating.
pub struct E164 {
    buf: [u8; 16],
    len: usize,
}

impl E164 {
    pub fn render(n: u64) -> E164 {
        let mut itoa_buf = itoa::Buffer::new();
        let digits = itoa_buf.format(n).as_bytes();
        let mut buf = [0u8; 16];
        buf[0] = b'+';
        let len = 1 + digits.len().min(15);
        buf[1..len].copy_from_slice(&digits[..len - 1]);
        E164 { buf, len }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and '+' are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("+")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn ok(json: &str) -> Message {
        match decode(json.as_bytes(), &limits()) {
            Ok(m) => m,
            Err(r) => panic!("expected valid, got {r:?}"),
        }
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
                br#"{"id":"m10","to":"+14155552671","template":"welcome"}"#,
                RejectReason::UnknownTemplate,
                Some("m10"),
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

    #[test]
    fn cached_validity_never_admits_an_invalid_number() {
        // Valid first (cached), then numbers that differ only slightly.
        assert!(parse_e164("+14155552671").is_ok());
        assert!(parse_e164("+14155552671").is_ok());
        for bad in ["+10155552671", "+1415555267", "+141555526711"] {
            assert!(parse_e164(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn e164_round_trips() {
        for n in ["+14155552671", "+442071838750", "+61291234567"] {
            let v = parse_e164(n).expect("valid");
            assert_eq!(E164::render(v).as_str(), n);
        }
    }
}
