//! Twilio Lookup v2 with Line Type Intelligence as the mock serves it:
//! `GET /v2/PhoneNumbers/{number}?Fields=line_type_intelligence`, the same
//! Basic auth as the Messages route, and a PhoneNumber resource shaped like
//! Twilio's (twilio.com/docs/lookup/v2-api/line-type-intelligence).
//!
//! The carrier is a function of the number, so a test knows the answer
//! without configuring anything: last digit 0–3 → AT&T, 4–6 → T-Mobile,
//! 7–9 → Verizon (names, MCC and MNC as Twilio reports those carriers).
//! Magic numbers, in the Messages route's test range:
//!
//! | number | answer |
//! |---|---|
//! | `+15005550404` | `404` / 20404: Twilio cannot resolve the number |
//! | `+15005550429` | `429` / 20429 with `Retry-After: retry_after_secs` |
//! | `+15005550500` | `500` / 20500 |
//! | `+15005550503` | `503` / 20503 |
//!
//! A number that is not E.164 (`+` or `%2B`, then 8–15 digits) is answered
//! as Twilio answers one: `200` with `"valid": false` and no package data.
//! Without `line_type_intelligence` in `Fields` the package does not run:
//! `"line_type_intelligence": null`, as Twilio's free basic lookup. The rate
//! knobs of [`MockSettings`](super::MockSettings) apply to the Messages
//! route only.

use std::borrow::Cow;
use std::io::Write as _;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::rules::ServerError;
use super::wire::{self, is_e164};

/// The route's path prefix; the rest of the path is the number.
pub(super) const PREFIX: &str = "/v2/PhoneNumbers/";

/// A carrier as Line Type Intelligence reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MockCarrier {
    pub(super) name: &'static str,
    pub(super) mcc: &'static str,
    pub(super) mnc: &'static str,
}

pub(super) const ATT: MockCarrier = MockCarrier {
    name: "AT&T Wireless",
    mcc: "310",
    mnc: "410",
};
pub(super) const TMOBILE: MockCarrier = MockCarrier {
    name: "T-Mobile USA, Inc.",
    mcc: "310",
    mnc: "260",
};
pub(super) const VERIZON: MockCarrier = MockCarrier {
    name: "Verizon Wireless",
    mcc: "311",
    mnc: "480",
};

/// What the mock answers for one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LookupAnswer {
    /// `200`, valid, with this carrier.
    Carrier(MockCarrier),
    /// `200`, `"valid": false`.
    Invalid,
    /// `404` / 20404.
    NotFound,
    /// `429` / 20429 with `Retry-After`.
    RateLimited,
    ServerError(ServerError),
}

/// The path segment as a number: a leading `%2B` (either case) is the
/// percent-encoded `+` Twilio's own examples send; a raw `+` is accepted too.
pub(super) fn decode_number(segment: &str) -> Cow<'_, str> {
    match segment.get(..3) {
        Some(p) if p.eq_ignore_ascii_case("%2B") => Cow::Owned(format!("+{}", &segment[3..])),
        _ => Cow::Borrowed(segment),
    }
}

/// The answer for `number` (decoded, e.g. `+14155550123`).
pub(super) fn plan(number: &str) -> LookupAnswer {
    match number {
        "+15005550404" => return LookupAnswer::NotFound,
        "+15005550429" => return LookupAnswer::RateLimited,
        "+15005550500" => return LookupAnswer::ServerError(ServerError::Internal),
        "+15005550503" => return LookupAnswer::ServerError(ServerError::Unavailable),
        _ => {}
    }
    if !is_e164(number) {
        return LookupAnswer::Invalid;
    }
    match number.bytes().last() {
        Some(b'0'..=b'3') => LookupAnswer::Carrier(ATT),
        Some(b'4'..=b'6') => LookupAnswer::Carrier(TMOBILE),
        _ => LookupAnswer::Carrier(VERIZON),
    }
}

/// Whether a query string asks for Line Type Intelligence: `Fields` is a
/// comma-separated list of packages.
pub(super) fn wants_line_type(query: Option<&str>) -> bool {
    let Some(query) = query else { return false };
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "Fields")
        .any(|(_, v)| v.split(',').any(|f| f.trim() == "line_type_intelligence"))
}

/// The answer as Twilio writes it.
pub(super) fn respond(
    number: &str,
    answer: LookupAnswer,
    line_type: bool,
    retry_after_secs: u64,
) -> Response<Full<Bytes>> {
    match answer {
        LookupAnswer::Carrier(c) => phone_number(number, true, line_type.then_some(c)),
        LookupAnswer::Invalid => phone_number(number, false, None),
        LookupAnswer::NotFound => wire::twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource /PhoneNumbers/{number} was not found"),
        ),
        LookupAnswer::RateLimited => wire::too_many_requests(retry_after_secs),
        LookupAnswer::ServerError(e) => wire::server_error(e),
    }
}

/// `200` with a PhoneNumber resource. Packages other than Line Type
/// Intelligence were not asked for: `null`, as Twilio writes them.
fn phone_number(number: &str, valid: bool, carrier: Option<MockCarrier>) -> Response<Full<Bytes>> {
    // The mock knows only NANP well enough to format it.
    let nanp = valid
        .then(|| number.strip_prefix("+1"))
        .flatten()
        .filter(|n| n.len() == 10);
    let mut out = Vec::with_capacity(640);
    match nanp {
        Some(n) => {
            let _ = write!(
                out,
                r#"{{"calling_country_code":"1","country_code":"US","national_format":"({}) {}-{}","#,
                &n[..3],
                &n[3..6],
                &n[6..]
            );
        }
        None => out.extend_from_slice(
            br#"{"calling_country_code":null,"country_code":null,"national_format":null,"#,
        ),
    }
    out.extend_from_slice(br#""phone_number":"#);
    let _ = serde_json::to_writer(&mut out, number);
    if valid {
        out.extend_from_slice(br#","valid":true,"validation_errors":null"#);
    } else {
        out.extend_from_slice(br#","valid":false,"validation_errors":["NOT_A_NUMBER"]"#);
    }
    out.extend_from_slice(
        br#","caller_name":null,"sim_swap":null,"call_forwarding":null,"line_status":null,"line_type_intelligence":"#,
    );
    match carrier {
        Some(c) => {
            let _ = write!(
                out,
                r#"{{"error_code":null,"mobile_country_code":"{}","mobile_network_code":"{}","carrier_name":"#,
                c.mcc, c.mnc
            );
            let _ = serde_json::to_writer(&mut out, c.name);
            out.extend_from_slice(br#","type":"mobile"}"#);
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(
        br#","identity_match":null,"reassigned_number":null,"sms_pumping_risk":null,"phone_number_quality_score":null,"pre_fill":null,"url":"#,
    );
    let _ = serde_json::to_writer(
        &mut out,
        &format!("https://lookups.twilio.com/v2/PhoneNumbers/{number}"),
    );
    out.push(b'}');
    wire::json(StatusCode::OK, out)
}
