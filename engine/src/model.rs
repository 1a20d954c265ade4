//! The vocabulary every part shares: a message's category, the validated
//! [`Message`], why one is rejected, tenants and E.164 numbers. The wire
//! format that produces them is in `ingest::decode`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The consent purpose and legal regime of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// Why a decided message got its status: the event's `reason`
/// (docs/contracts.md#outcomes). One variant per reason string, so a
/// deferral or suppression carries a typed reason from the stage that made
/// it to the one place that records it (`delivery::events`). Rejections of
/// undecodable input have their own [`RejectReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    // deferred
    /// A sending window is closed in some candidate zone.
    QuietHours,
    /// A frequency cap has no room.
    FrequencyCap,
    /// `send_at` is ahead.
    SendAt,
    /// A token bucket (carrier or sender lane) is full.
    Throttled(Lane),
    /// Every provider of the route has its circuit open (with `retrying`).
    ProvidersUnavailable,
    // suppressed
    /// The purpose's consent was revoked.
    OptedOut,
    /// The purpose needs consent that is not on file.
    NoConsent,
    /// An ambiguous reply is under review.
    ReviewHold,
    /// No sending window opens in the rule table's horizon.
    NoSendingWindow,
    /// The body matches a blocked-content pattern.
    ContentBlocked,
    /// The tenant is paused.
    Paused,
    /// A collections text to a number under a cease (a cease request, a
    /// bankruptcy, a dispute: `signals`).
    Ceased,
    // rejected after decoding
    /// Over the length limit once opt-out instructions are appended.
    BodyTooLong,
    /// `from` is not one of the tenant's senders.
    UnknownSender,
    /// The message names a template the tenant does not have.
    UnknownTemplate,
    /// A template variable is missing or of the wrong type.
    MissingVariable,
    /// An enrolment names a schedule the tenant does not have.
    UnknownSchedule,
    // cancelled
    /// The sequence was cancelled (paid, or by an operator).
    SequenceCancelled,
    // expired
    /// A sequence step could not go within its `max_late`.
    MaxLate,
    // retrying / failed: the provider's answer
    ProviderTransient,
    InvalidNumber,
    CarrierOptOut,
    ProviderUnauthorized,
    ProviderRejected,
    /// The provider may have the message (a timeout after the request was
    /// written, a crash during the send).
    Ambiguous,
    AttemptsExhausted,
    /// Handling it panicked, or it was delivered more than
    /// `dispatch.max_deliveries` times.
    Poison,
    // expired
    ExpiresAt,
    ExpiresBeforeSendAt,
}

/// The token bucket a throttled message found full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Carrier,
    Sender,
    /// A provider account's `max_concurrency`.
    Account,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Carrier => "carrier",
            Lane::Sender => "sender",
            Lane::Account => "account",
        }
    }
}

impl Reason {
    /// The reason as events, records and metrics spell it (a contract).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::QuietHours => "quiet_hours",
            Reason::FrequencyCap => "frequency_cap",
            Reason::SendAt => "send_at",
            Reason::Throttled(_) => "throttled",
            Reason::ProvidersUnavailable => "providers_unavailable",
            Reason::OptedOut => "opted_out",
            Reason::NoConsent => "no_consent",
            Reason::ReviewHold => "review_hold",
            Reason::NoSendingWindow => "no_sending_window",
            Reason::ContentBlocked => "content_blocked",
            Reason::Paused => "paused",
            Reason::Ceased => "ceased",
            Reason::BodyTooLong => "body_too_long",
            Reason::UnknownSender => "unknown_sender",
            Reason::UnknownTemplate => "unknown_template",
            Reason::MissingVariable => "missing_variable",
            Reason::UnknownSchedule => "unknown_schedule",
            Reason::SequenceCancelled => "sequence_cancelled",
            Reason::MaxLate => "max_late",
            Reason::ProviderTransient => "provider_transient",
            Reason::InvalidNumber => "invalid_number",
            Reason::CarrierOptOut => "carrier_opt_out",
            Reason::ProviderUnauthorized => "provider_unauthorized",
            Reason::ProviderRejected => "provider_rejected",
            Reason::Ambiguous => "ambiguous",
            Reason::AttemptsExhausted => "attempts_exhausted",
            Reason::Poison => "poison",
            Reason::ExpiresAt => "expires_at",
            Reason::ExpiresBeforeSendAt => "expires_before_send_at",
        }
    }
}

/// Why a message was rejected (docs/contracts.md#outcomes, status `rejected`).
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
    /// whole (docs/contracts.md#outcomes). Every rejected entry is copied there, in fact, so
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
    /// The recipient's carrier, when the producer knows it (docs/architecture.md#throughput-control: the
    /// message's hint picks the carrier lane). An extension of the ingest
    /// contract; older producers simply omit it.
    pub carrier: Option<Box<str>>,
    /// `meta`, exactly as the producer wrote it, echoed in every event.
    pub meta: Option<Box<RawValue>>,
    /// `template` (with `vars`, `locale`): `body` is rendered from it at
    /// the send decision, from the in-memory policy.
    pub template: Option<Box<TemplateUse>>,
    /// `sequence`: this message enrols the recipient in a schedule; it is
    /// expanded into one message per step and never sent itself.
    pub enrol: Option<Box<Enrol>>,
    /// A step of a sequence (written by Herald at enrolment, field `step`):
    /// its claim re-checks that the sequence is still active.
    pub step: Option<Box<StepRef>>,
}

/// An enrolment: `{"sequence": {"schedule": "payment_reminder", "anchor":
/// "2026-12-01"}}` with the message's `vars` and `locale`.
#[derive(Debug, Clone)]
pub struct Enrol {
    pub schedule: Box<str>,
    /// The date the steps count from (a loan's due date).
    pub anchor: jiff::civil::Date,
    pub vars: Option<Box<RawValue>>,
    pub locale: Option<Box<str>>,
}

/// Which sequence a step message belongs to: `{"sequence": <enrolment id>,
/// "schedule": <name>, "n": <1-based index>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    pub sequence: Box<str>,
    pub schedule: Box<str>,
    pub n: u16,
    /// The experiment and variant its template was picked by, at enrolment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Box<str>>,
}

/// A message's template, as the producer named it.
#[derive(Debug, Clone)]
pub struct TemplateUse {
    pub name: Box<str>,
    /// `name@3`: that version. `None`: the tenant's newest, filled in with
    /// the version rendered.
    pub version: Option<u32>,
    /// The `vars` object, as written.
    pub vars: Option<Box<RawValue>>,
    pub locale: Option<Box<str>>,
    /// The experiment and variant that picked the template rendered
    /// (`policy::experiments`), filled in at the send decision.
    pub experiment: Option<Box<str>>,
    pub variant: Option<Box<str>>,
}

/// `en`, `es-US`, `pt-BR`: a language code, optionally a region.
pub fn valid_locale(l: &str) -> bool {
    let (lang, region) = match l.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (l, None),
    };
    (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()))
}

pub const DEFAULT_TENANT: &str = "default";
/// Longest producer id (`id`).
pub const MAX_ID_CHARS: usize = 128;
/// Longest tenant name.
pub const MAX_TENANT_CHARS: usize = 64;

/// A tenant name: 1–64 letters, digits, `_`, `-`, `.` (no `:`, so Redis
/// keys that embed it stay unambiguous).
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TENANT_CHARS
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
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

/// A sender as Herald keeps it: `+` and E.164 digits, a short code (5–6
/// digits), a Twilio messaging-service id (`MG` and 32 hex digits), or an
/// alphanumeric sender id (1–11 letters, digits and spaces, at least one
/// letter). Anything else is refused with the reason: `from` comes from
/// producers, and per-sender lanes and reply routing key on it.
pub fn parse_sender(s: &str) -> Result<Box<str>, String> {
    let s = s.trim();
    if s.starts_with('+') {
        let n = parse_e164(s).map_err(|e| e.replacen("`to`", "`from`", 1))?;
        return Ok(E164::render(n).as_str().into());
    }
    if (5..=6).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0') {
        return Ok(s.into());
    }
    if let Some(hex) = s.strip_prefix("MG")
        && hex.len() == 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(s.into());
    }
    if (1..=11).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && s.bytes().any(|b| b.is_ascii_alphabetic())
    {
        return Ok(s.into());
    }
    Err(format!(
        "`from` `{s}` is not a sender: an E.164 number, a 5–6 digit short code, a messaging service id (MG…) or an alphanumeric sender id (1–11 characters)"
    ))
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
    fn senders_are_numbers_short_codes_services_or_alphanumeric_ids() {
        let ok = [
            ("+14155552671", "+14155552671"),
            (" +14155552671 ", "+14155552671"),
            ("12345", "12345"),
            ("898211", "898211"),
            (
                "MG0123456789abcdef0123456789ABCDEF",
                "MG0123456789abcdef0123456789ABCDEF",
            ),
            ("ACME Bank", "ACME Bank"),
        ];
        for (s, want) in ok {
            assert_eq!(parse_sender(s).as_deref(), Ok(want), "{s}");
        }
        for bad in [
            "",
            "+1415",
            "1234",
            "01234",
            "MG-123",
            "ACME Bank Loans",
            "123456789",
            "acme;drop",
            "+10005552671",
        ] {
            assert!(parse_sender(bad).is_err(), "{bad:?}");
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
