//! Twilio's Messages API wire format as the mock reads and writes it: the
//! create form and its validation, the Message resource, the error body.

use std::borrow::Cow;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::rules::ServerError;

pub(super) const MESSAGES_PREFIX: &str = "/2010-04-01/Accounts/";
pub(super) const MESSAGES_SUFFIX: &str = "/Messages.json";
/// Twilio caps `Body` at 1,600 characters (error 21617).
const MAX_BODY_CHARS: usize = 1600;
/// A form with a 1,600-character body is well under this.
pub(super) const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A Message SID as Twilio writes one: `SM` and 32 hex digits. Fixed size,
/// so minting one on the hot path allocates nothing.
#[derive(Clone, Copy)]
pub(super) struct Sid([u8; 34]);

impl Sid {
    /// `prefix` is random per mock instance and `n` counts up, so SIDs are
    /// unique across instances and runs.
    pub(super) fn new(prefix: u64, n: u64) -> Sid {
        let mut sid = [0u8; 34];
        let _ = write!(&mut sid[..], "SM{prefix:016x}{n:016x}");
        Sid(sid)
    }

    pub(super) fn as_str(&self) -> &str {
        // Always ASCII: written by the format string above.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The form fields the Messages API reads, borrowed from the request body
/// unless percent-decoding had to allocate.
pub(super) struct Fields<'a> {
    pub(super) to: Cow<'a, str>,
    pub(super) from: Option<Cow<'a, str>>,
    pub(super) messaging_service_sid: Option<Cow<'a, str>>,
    pub(super) body: Cow<'a, str>,
    pub(super) status_callback: Option<Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    /// Twilio's validation of a create: required fields (`To` 21604, `Body`
    /// 21602, a sender 21603), the `To` format (21211), the test-credential
    /// magic numbers, the 1,600-character body limit (21617).
    pub(super) fn parse(form: &'a [u8]) -> Result<Self, (u32, String)> {
        let (mut to, mut from, mut service, mut body, mut callback) =
            (None, None, None, None, None);
        for (key, value) in form_urlencoded::parse(form) {
            let slot = match key.as_ref() {
                "To" => &mut to,
                "From" => &mut from,
                "MessagingServiceSid" => &mut service,
                "Body" => &mut body,
                "StatusCallback" => &mut callback,
                _ => continue,
            };
            *slot = Some(value);
        }
        let non_empty = |v: Option<Cow<'a, str>>| v.filter(|s| !s.is_empty());
        let (to, from, service, body) = (
            non_empty(to),
            non_empty(from),
            non_empty(service),
            non_empty(body),
        );

        let Some(to) = to else {
            return Err((21604, "A 'To' phone number is required.".to_owned()));
        };
        let Some(body) = body else {
            return Err((21602, "Message body is required.".to_owned()));
        };
        if from.is_none() && service.is_none() {
            return Err((21603, "A 'From' phone number is required.".to_owned()));
        }
        if !is_e164(&to) {
            return Err((
                21211,
                format!("The 'To' number {to} is not a valid phone number."),
            ));
        }
        match to.as_ref() {
            "+15005550001" => {
                return Err((
                    21211,
                    format!("The 'To' number {to} is not a valid phone number."),
                ));
            }
            "+15005550002" => {
                return Err((
                    21612,
                    format!(
                        "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS."
                    ),
                ));
            }
            "+15005550003" => {
                return Err((
                    21408,
                    format!(
                        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."
                    ),
                ));
            }
            "+15005550004" => {
                return Err((
                    21610,
                    "Attempt to send to unsubscribed recipient".to_owned(),
                ));
            }
            "+15005550009" => {
                return Err((
                    21614,
                    format!("'To' number {to} is not a valid mobile number"),
                ));
            }
            _ => {}
        }
        match from.as_deref() {
            Some(f @ "+15005550001") => {
                return Err((
                    21212,
                    format!(
                        "The 'From' number {f} is not a valid phone number, shortcode, or alphanumeric sender ID."
                    ),
                ));
            }
            Some(f @ "+15005550007") => {
                return Err((
                    21606,
                    format!(
                        "The 'From' phone number provided ({f}) is not a valid message-capable Twilio phone number for this destination."
                    ),
                ));
            }
            Some(f @ "+15005550008") => {
                return Err((
                    21611,
                    format!(
                        "This 'From' number ({f}) has exceeded the maximum number of queued messages"
                    ),
                ));
            }
            _ => {}
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err((
                21617,
                "The concatenated message body exceeds the 1600 character limit.".to_owned(),
            ));
        }
        Ok(Fields {
            to,
            from,
            messaging_service_sid: service,
            body,
            status_callback: callback,
        })
    }
}

/// `+` then 8–15 digits.
pub(super) fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `201 Created` with a Message resource shaped like Twilio's.
pub(super) fn created(account: &str, f: &Fields<'_>, sid: &Sid) -> Response<Full<Bytes>> {
    let date = rfc2822_now();
    // A messaging service picks the sender later: Twilio answers `accepted`,
    // `from: null` and `num_segments: "0"` until then.
    let (status, segments) = match f.from {
        Some(_) => ("queued", segments(&f.body)),
        None => ("accepted", 0),
    };
    let sid = sid.as_str();

    let mut out = Vec::with_capacity(900 + f.body.len() * 2);
    let _ = write!(
        out,
        r#"{{"account_sid":"{account}","api_version":"2010-04-01","body":"#
    );
    let _ = serde_json::to_writer(&mut out, f.body.as_ref());
    let _ = write!(
        out,
        r#","date_created":"{date}","date_sent":null,"date_updated":"{date}","direction":"outbound-api","error_code":null,"error_message":null,"from":"#
    );
    let _ = serde_json::to_writer(&mut out, &f.from.as_deref());
    out.extend_from_slice(br#","messaging_service_sid":"#);
    let _ = serde_json::to_writer(&mut out, &f.messaging_service_sid.as_deref());
    let _ = write!(
        out,
        r#","num_media":"0","num_segments":"{segments}","price":null,"price_unit":"USD","sid":"{sid}","status":"{status}","subresource_uris":{{"media":"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"}},"to":"#
    );
    let _ = serde_json::to_writer(&mut out, f.to.as_ref());
    let _ = write!(
        out,
        r#","uri":"/2010-04-01/Accounts/{account}/Messages/{sid}.json"}}"#
    );
    json(StatusCode::CREATED, out)
}

/// `429` / 20429 with `Retry-After`, as Twilio answers when an account sends
/// faster than its limits allow.
pub(super) fn too_many_requests(retry_after_secs: u64) -> Response<Full<Bytes>> {
    let mut response = twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// `500` / 20500 or `503` / 20503 with Twilio's error body.
pub(super) fn server_error(error: ServerError) -> Response<Full<Bytes>> {
    match error {
        ServerError::Internal => twilio_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "Internal Server Error",
        ),
        ServerError::Unavailable => twilio_error(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service Unavailable",
        ),
    }
}

/// Twilio's error body: `{"code", "message", "more_info", "status"}`.
pub(super) fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response<Full<Bytes>> {
    let mut out = Vec::with_capacity(128 + message.len());
    let _ = write!(out, r#"{{"code":{code},"message":"#);
    let _ = serde_json::to_writer(&mut out, message);
    let _ = write!(
        out,
        r#","more_info":"https://www.twilio.com/docs/errors/{code}","status":{}}}"#,
        status.as_u16()
    );
    json(status, out)
}

pub(super) fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Segments Twilio would bill for `body`: GSM-7 160 / 153 per segment, else
/// UCS-2 70 / 67. A copy of `herald_adapters::sandbox::segments` in spirit,
/// kept here so the mock does not depend on the crate it tests; it treats
/// only ASCII (minus the backtick) as GSM-7, extension characters as two.
pub(super) fn segments(body: &str) -> usize {
    let mut septets = 0usize;
    for b in body.bytes() {
        match b {
            b'^' | b'{' | b'}' | b'\\' | b'[' | b'~' | b']' | b'|' => septets += 2,
            b'`' => return ucs2_segments(body),
            b'\n' | b'\r' | 0x20..=0x7e => septets += 1,
            _ => return ucs2_segments(body),
        }
    }
    if septets <= 160 {
        1
    } else {
        septets.div_ceil(153)
    }
}

fn ucs2_segments(body: &str) -> usize {
    let units = body.encode_utf16().count();
    if units <= 70 { 1 } else { units.div_ceil(67) }
}

/// Now as RFC 2822 in GMT, as Twilio writes dates: `Thu, 24 Aug 2023 05:01:45 +0000`.
/// Formatted once a second per thread: the mock answers tens of thousands of
/// requests a second on the machine it is measuring.
fn rfc2822_now() -> std::rc::Rc<str> {
    thread_local! {
        static NOW: std::cell::RefCell<(u64, std::rc::Rc<str>)> =
            std::cell::RefCell::new((u64::MAX, std::rc::Rc::from("")));
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = std::rc::Rc::from(rfc2822(secs));
        }
        text.clone()
    })
}

pub(super) fn rfc2822(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31). Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
