//! Twilio Lookup v2 with Line Type Intelligence: which carrier serves a
//! number, so the engine can put its messages in the right carrier lane
//! (docs/architecture.md#throughput-control) when the prefix table cannot know (number portability).
//!
//! `GET {base_url}/v2/PhoneNumbers/{E.164}?Fields=line_type_intelligence`,
//! HTTP Basic `account_sid:auth_token`. The answer is a PhoneNumber resource
//! (twilio.com/docs/lookup/v2-api/line-type-intelligence):
//!
//! ```json
//! {"phone_number": "+14159929960", "valid": true, "validation_errors": null,
//!  "line_type_intelligence": {"carrier_name": "Verizon Wireless", "type": "mobile",
//!    "mobile_country_code": "311", "mobile_network_code": "480", "error_code": null}, …}
//! ```
//!
//! The same layout as the other providers, in one file because the client is
//! small: settings and their validation, building the request, sending it
//! over the pooled client (`transport.rs`) and classifying the answer.
//!
//! Unlike a send, a lookup is a GET that changes nothing: a failure after the
//! request was written may have been billed but cannot text anyone, so there
//! is no "ambiguous" outcome — every failure is either worth retrying later
//! ([`LookupError::Transient`]) or not until someone changes configuration
//! ([`LookupError::Permanent`]). An answer that says "no carrier for this
//! number" is not an error: it is `Ok(None)`, which the caller may cache.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::Full;
use serde::Deserialize;

use super::TwilioSettings;
use crate::SendError;
use crate::config::ConfigError;
use crate::pool::{Pool, PoolSettings};
use crate::transport::{self, HttpClient};

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// Where Twilio serves Lookup v2 (a different host from the Messages API).
pub const DEFAULT_BASE_URL: &str = "https://lookups.twilio.com";

/// Settings for [`TwilioLookup`]. A plain struct, like
/// [`TwilioSettings`]: the engine's config layer fills it, and
/// [`TwilioLookup::new`] validates it once.
#[derive(Clone)]
pub struct TwilioLookupSettings {
    /// Scheme and authority (and optionally a path prefix, for a proxy) in
    /// front of Lookup v2. Tests point it at the mock over plain http.
    pub base_url: String,
    /// `AC…` account id (or an `SK…` API key): the Basic-auth user.
    pub account_sid: String,
    /// Basic-auth password. Never printed by `Debug`.
    pub auth_token: String,
    /// Budget for one lookup: waiting for a connection, writing the request
    /// and reading the whole answer.
    pub request_timeout: Duration,
    /// Budget for the TCP connect of a new connection.
    pub connect_timeout: Duration,
    /// Idle connections kept. The engine asks one number at a time
    /// (`throttle::run_lookups`), so a handful is plenty.
    pub pool_max_idle_per_host: usize,
    /// How long an idle connection stays in the pool.
    pub pool_idle_timeout: Duration,
}

impl Default for TwilioLookupSettings {
    fn default() -> Self {
        TwilioLookupSettings {
            base_url: DEFAULT_BASE_URL.to_owned(),
            account_sid: String::new(),
            auth_token: String::new(),
            // Lookups run off the per-message path; a slow one only delays
            // the next lookup, so a shorter budget than a send's is enough.
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 4,
            // Below common load-balancer idle timeouts (AWS ALB: 60 s), as
            // for the Messages client.
            pool_idle_timeout: Duration::from_secs(30),
        }
    }
}

impl TwilioLookupSettings {
    /// The credentials and connect timeout of a configured Twilio messaging
    /// provider, against `base_url` (usually [`DEFAULT_BASE_URL`]): one set
    /// of credentials serves both APIs.
    pub fn from_messaging(messaging: &TwilioSettings, base_url: impl Into<String>) -> Self {
        TwilioLookupSettings {
            base_url: base_url.into(),
            account_sid: messaging.account_sid.clone(),
            auth_token: messaging.auth_token.clone(),
            connect_timeout: messaging.connection.connect_timeout,
            ..Default::default()
        }
    }
}

impl fmt::Debug for TwilioLookupSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioLookupSettings")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .finish()
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new("twilio", key, reason)
}

/// `{base_url}/v2/PhoneNumbers/%2B`: the number's digits and the query are
/// appended per lookup.
fn validate(s: &TwilioLookupSettings) -> Result<String, ConfigError> {
    let base = s.base_url.trim();
    let uri = transport::absolute_http_url(base).map_err(|reason| invalid("base_url", reason))?;
    if uri.query().is_some() {
        return Err(invalid(
            "base_url",
            format!("`{base}` must not have a query string"),
        ));
    }
    if s.account_sid.is_empty() {
        return Err(invalid("account_sid", "is empty"));
    }
    // The Basic-auth user, where a `:` would split it.
    if !s.account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            "account_sid",
            "must be letters and digits only (e.g. AC…)",
        ));
    }
    if s.auth_token.is_empty() {
        return Err(invalid("auth_token", "is empty"));
    }
    if s.request_timeout.is_zero() {
        return Err(invalid("request_timeout", "must be greater than zero"));
    }
    if s.connect_timeout.is_zero() {
        return Err(invalid("connect_timeout", "must be greater than zero"));
    }
    Ok(format!(
        "{}/v2/PhoneNumbers/%2B",
        base.trim_end_matches('/')
    ))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A lookup that gave no answer about the number. Not cached by callers:
/// "no carrier known" is `Ok(None)`, not an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Asking again later may work: 429 / 20429, 5xx, no connection, no
    /// (whole) answer in time, an answer that is not a PhoneNumber resource.
    /// Repeating a GET is safe; at worst Twilio bills the lookup twice.
    #[error("transient lookup failure (code {code:?}): {message}")]
    Transient {
        /// HTTP status or Twilio error code.
        code: Option<u32>,
        message: String,
        /// Twilio's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// No lookup will work until configuration changes: credentials (401,
    /// 20003), the package not enabled on the account (60606), the wrong
    /// Twilio region (60614, 60619), another 4xx, or a caller's number that
    /// is not E.164.
    #[error("lookup refused (code {code:?}): {message}")]
    Permanent { code: Option<u32>, message: String },
}

impl LookupError {
    /// Whether asking again, unchanged, may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LookupError::Transient { .. })
    }

    /// The HTTP status or Twilio error code, when there was one.
    pub fn code(&self) -> Option<u32> {
        match self {
            LookupError::Transient { code, .. } | LookupError::Permanent { code, .. } => *code,
        }
    }
}

impl From<SendError> for LookupError {
    /// The transport's errors are about a send; for a GET, "the request may
    /// have been processed" ([`SendError::Ambiguous`]) is as safe to repeat
    /// as "it never left".
    fn from(e: SendError) -> Self {
        match e {
            SendError::Transient {
                code,
                message,
                retry_after,
            } => LookupError::Transient {
                code,
                message,
                retry_after,
            },
            SendError::Ambiguous { message } => LookupError::Transient {
                code: None,
                message,
                retry_after: None,
            },
            SendError::Permanent { code, message, .. } => LookupError::Permanent { code, message },
        }
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// Asks Twilio Lookup v2 for a number's carrier over one pooled client.
///
/// A handle: cloning shares the client and its connection pool.
#[derive(Clone)]
pub struct TwilioLookup {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpClient,
    /// `{base_url}/v2/PhoneNumbers/%2B`, checked once.
    prefix: String,
    /// `Basic base64(sid:token)`, encoded once; marked sensitive.
    authorization: HeaderValue,
    request_timeout: Duration,
    account_sid: String,
}

/// The query that asks for the carrier (a paid package; without it Twilio
/// answers only the free format validation).
const QUERY: &str = "?Fields=line_type_intelligence";

/// A PhoneNumber resource is about 1 KiB; anything past this is not Twilio.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

impl TwilioLookup {
    /// Validate `settings` and build the client. Needs no runtime; lookups do.
    pub fn new(settings: TwilioLookupSettings) -> Result<Self, ConfigError> {
        let prefix = validate(&settings)?;
        let credentials = format!("{}:{}", settings.account_sid, settings.auth_token);
        let mut authorization = HeaderValue::try_from(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ))
        .map_err(|_| {
            invalid(
                "auth_token",
                "contains characters not allowed in an HTTP header",
            )
        })?;
        authorization.set_sensitive(true);
        Ok(TwilioLookup {
            inner: Arc::new(Inner {
                client: Pool::new(PoolSettings {
                    connect_timeout: settings.connect_timeout,
                    pool_max_idle_per_host: settings.pool_max_idle_per_host,
                    pool_idle_timeout: settings.pool_idle_timeout,
                    // One lookup at a time: nothing for HTTP/2 to multiplex.
                    http2: false,
                }),
                prefix,
                authorization,
                request_timeout: settings.request_timeout,
                account_sid: settings.account_sid,
            }),
        })
    }

    /// The URL a lookup of `e164` (`+` and digits) requests. The `+` is
    /// sent percent-encoded, as Twilio's own examples do.
    pub fn lookup_uri(&self, e164: &str) -> Result<Uri, LookupError> {
        let digits = e164_digits(e164).ok_or_else(|| LookupError::Permanent {
            code: None,
            message: format!("`{e164}` is not an E.164 number (`+` and 1–15 digits)"),
        })?;
        let mut url = String::with_capacity(self.inner.prefix.len() + digits.len() + QUERY.len());
        url.push_str(&self.inner.prefix);
        url.push_str(digits);
        url.push_str(QUERY);
        // Cannot fail: the prefix parsed at start and digits are URL-safe;
        // mapped anyway rather than unwrapped.
        url.parse().map_err(|e| LookupError::Permanent {
            code: None,
            message: format!("`{url}` is not a valid URL: {e}"),
        })
    }

    /// The carrier Twilio reports for `e164`: `Ok(None)` when Twilio has no
    /// carrier for it (404, an invalid number, a type without carrier data,
    /// a per-number Lookup error code), so the caller may remember that.
    pub async fn carrier_name(&self, e164: &str) -> Result<Option<String>, LookupError> {
        let this = &*self.inner;
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = Method::GET;
        *request.uri_mut() = self.lookup_uri(e164)?;
        let headers = request.headers_mut();
        headers.insert(header::AUTHORIZATION, this.authorization.clone());
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("herald/", env!("CARGO_PKG_VERSION"))),
        );
        let answer = transport::exchange(
            &this.client,
            move || request,
            this.request_timeout,
            "Twilio Lookup",
            MAX_RESPONSE_BYTES,
        )
        .await?;
        let retry_after = transport::retry_after(&answer.headers);
        classify(answer.status, answer.body, retry_after)
    }
}

impl fmt::Debug for TwilioLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioLookup")
            .field("prefix", &self.inner.prefix)
            .field("account_sid", &self.inner.account_sid)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The digits of `+` and 1–15 digits (E.164's maximum).
fn e164_digits(e164: &str) -> Option<&str> {
    e164.strip_prefix('+')
        .filter(|d| (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

// ---------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------

/// The fields of the PhoneNumber resource a carrier lookup reads.
#[derive(Deserialize)]
struct PhoneNumber<'a> {
    /// `false`: not a number a carrier can hold; no package ran.
    #[serde(default)]
    valid: Option<bool>,
    #[serde(default, borrow)]
    line_type_intelligence: Option<LineTypeIntelligence<'a>>,
}

#[derive(Deserialize)]
struct LineTypeIntelligence<'a> {
    /// Null for types without carrier data (`tollFree`, `premium`,
    /// `unknown`…).
    #[serde(default, borrow)]
    carrier_name: Option<Cow<'a, str>>,
    #[serde(default)]
    error_code: Option<u32>,
}

/// Twilio's error body: `{"code", "message", "more_info", "status"}`.
#[derive(Deserialize)]
struct TwilioError<'a> {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// Line Type Intelligence error codes that are about the account, not the
/// number: caching "no carrier" for every number asked meanwhile would keep
/// the lanes wrong for the whole cache TTL after the account is fixed.
/// 60606 package not enabled; 60614 / 60619 wrong Twilio region. Every other
/// code (60600 unprovisioned, 60601 Canadian data not enabled, 60607
/// unsupported country, 60610 out of coverage…) says this number has no
/// carrier data to give: `Ok(None)`.
const ACCOUNT_ERROR_CODES: &[u32] = &[60606, 60614, 60619];

fn classify(
    status: StatusCode,
    body: Result<Bytes, String>,
    retry_after: Option<Duration>,
) -> Result<Option<String>, LookupError> {
    if status.is_success() {
        let bytes = body.map_err(|reason| LookupError::Transient {
            code: None,
            message: format!("Twilio Lookup answered {status} but {reason}"),
            retry_after: None,
        })?;
        return parse_phone_number(status, &bytes);
    }
    let body = body.ok();
    let error = body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<TwilioError<'_>>(b).ok());
    let code = error.as_ref().and_then(|e| e.code);
    let message = {
        let mut m = match error.as_ref().and_then(|e| e.message.as_deref()) {
            Some(text) => text.to_owned(),
            None => transport::status_text(status.as_u16()).to_owned(),
        };
        let _ = write!(m, " (HTTP {})", status.as_u16());
        m
    };
    let code = Some(code.unwrap_or(u32::from(status.as_u16())));
    match status.as_u16() {
        // Twilio's answer for a number it cannot resolve: nothing to know.
        404 => Ok(None),
        // 429 / 20429: "requests that receive 429 responses aren't processed
        // and are safe to retry" (twilio.com/docs/api/errors/20429).
        429 => Err(LookupError::Transient {
            code,
            message,
            retry_after,
        }),
        400..=499 if code == Some(20429) => Err(LookupError::Transient {
            code,
            message,
            retry_after,
        }),
        400..=499 => Err(LookupError::Permanent { code, message }),
        // 5xx, and 1xx/3xx (a proxy or a wrong base_url, not Lookup): try
        // again later rather than record "unknown" for the number.
        _ => Err(LookupError::Transient {
            code,
            message,
            retry_after,
        }),
    }
}

fn parse_phone_number(status: StatusCode, bytes: &[u8]) -> Result<Option<String>, LookupError> {
    let resource: PhoneNumber<'_> =
        serde_json::from_slice(bytes).map_err(|e| LookupError::Transient {
            code: None,
            message: format!(
                "Twilio Lookup answered {status} with a body that is not a PhoneNumber resource: {e}"
            ),
            retry_after: None,
        })?;
    if resource.valid == Some(false) {
        return Ok(None);
    }
    let Some(lti) = resource.line_type_intelligence else {
        // The package did not run for this number (Twilio answers `null`
        // for a number it cannot classify).
        return Ok(None);
    };
    if let Some(code) = lti.error_code {
        if ACCOUNT_ERROR_CODES.contains(&code) {
            return Err(LookupError::Permanent {
                code: Some(code),
                message: format!(
                    "Line Type Intelligence error {code} (twilio.com/docs/api/errors/{code})"
                ),
            });
        }
        return Ok(None);
    }
    Ok(lti
        .carrier_name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TwilioLookupSettings {
        TwilioLookupSettings {
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            auth_token: "secret".into(),
            ..Default::default()
        }
    }

    fn lti(carrier: &str, error_code: &str) -> String {
        format!(
            r#"{{"calling_country_code":"1","country_code":"US","phone_number":"+14159929960",
            "national_format":"(415) 992-9960","valid":true,"validation_errors":null,
            "caller_name":null,"line_type_intelligence":{{"error_code":{error_code},
            "mobile_country_code":"311","mobile_network_code":"480","carrier_name":{carrier},
            "type":"mobile"}},"url":"https://lookups.twilio.com/v2/PhoneNumbers/+14159929960"}}"#
        )
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Carrier(Option<String>),
        Transient(Option<u32>, Option<u64>),
        Permanent(Option<u32>),
    }

    fn carrier(name: &str) -> Want {
        Want::Carrier(Some(name.to_owned()))
    }

    #[test]
    fn answers_are_classified() {
        let twilio_error = |code: u32, status: u16| {
            format!(
                r#"{{"code":{code},"message":"no","more_info":"https://www.twilio.com/docs/errors/{code}","status":{status}}}"#
            )
        };
        // (status, body or why it could not be read, Retry-After, outcome)
        type Case = (u16, Result<String, String>, Option<u64>, Want);
        let cases: Vec<Case> = vec![
            (
                200,
                Ok(lti(r#""Verizon Wireless""#, "null")),
                None,
                carrier("Verizon Wireless"),
            ),
            (
                200,
                Ok(lti(r#"" T-Mobile USA, Inc. ""#, "null")),
                None,
                carrier("T-Mobile USA, Inc."),
            ),
            // tollFree, premium, unknown…: carrier fields are null.
            (200, Ok(lti("null", "null")), None, Want::Carrier(None)),
            (200, Ok(lti(r#""""#, "null")), None, Want::Carrier(None)),
            // Per-number Lookup errors: no carrier data for this number.
            (200, Ok(lti("null", "60600")), None, Want::Carrier(None)),
            (200, Ok(lti("null", "60607")), None, Want::Carrier(None)),
            (200, Ok(lti("null", "60610")), None, Want::Carrier(None)),
            // Account-level errors: never cached as "unknown".
            (200, Ok(lti("null", "60606")), None, Want::Permanent(Some(60606))),
            (200, Ok(lti("null", "60614")), None, Want::Permanent(Some(60614))),
            (
                200,
                Ok(r#"{"phone_number":"+1415","valid":false,"validation_errors":["TOO_SHORT"],"line_type_intelligence":null}"#.into()),
                None,
                Want::Carrier(None),
            ),
            (
                200,
                Ok(r#"{"phone_number":"+14159929960","valid":true,"line_type_intelligence":null}"#.into()),
                None,
                Want::Carrier(None),
            ),
            (200, Ok("<html>ok</html>".into()), None, Want::Transient(None, None)),
            (200, Ok(r#"{"valid":"yes"}"#.into()), None, Want::Transient(None, None)),
            (200, Err("the body was cut short".into()), None, Want::Transient(None, None)),
            (404, Ok(twilio_error(20404, 404)), None, Want::Carrier(None)),
            (404, Ok(String::new()), None, Want::Carrier(None)),
            (429, Ok(twilio_error(20429, 429)), Some(3), Want::Transient(Some(20429), Some(3))),
            (429, Ok(String::new()), None, Want::Transient(Some(429), None)),
            (400, Ok(twilio_error(20429, 400)), Some(1), Want::Transient(Some(20429), Some(1))),
            (500, Ok(twilio_error(20500, 500)), None, Want::Transient(Some(20500), None)),
            (503, Ok("<html>busy</html>".into()), Some(2), Want::Transient(Some(503), Some(2))),
            (502, Err("reset".into()), None, Want::Transient(Some(502), None)),
            (301, Ok(String::new()), None, Want::Transient(Some(301), None)),
            (401, Ok(twilio_error(20003, 401)), None, Want::Permanent(Some(20003))),
            (403, Ok(String::new()), None, Want::Permanent(Some(403))),
            (400, Ok(twilio_error(60606, 400)), None, Want::Permanent(Some(60606))),
        ];
        for (status, body, retry_after, want) in cases {
            let got = classify(
                StatusCode::from_u16(status).unwrap(),
                body.clone().map(Bytes::from),
                retry_after.map(Duration::from_secs),
            );
            let got = match got {
                Ok(name) => Want::Carrier(name),
                Err(LookupError::Transient {
                    code, retry_after, ..
                }) => Want::Transient(code, retry_after.map(|d| d.as_secs())),
                Err(LookupError::Permanent { code, .. }) => Want::Permanent(code),
            };
            assert_eq!(got, want, "status {status}, body {body:?}");
        }
    }

    #[test]
    fn error_message_keeps_twilio_text_and_status() {
        let e = classify(
            StatusCode::UNAUTHORIZED,
            Ok(Bytes::from_static(
                br#"{"code":20003,"message":"Authenticate","status":401}"#,
            )),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            LookupError::Permanent {
                code: Some(20003),
                message: "Authenticate (HTTP 401)".into()
            }
        );
        assert!(!e.is_retryable());
        assert_eq!(e.code(), Some(20003));
    }

    #[test]
    fn transport_errors_are_all_retryable() {
        let cases = [
            SendError::Transient {
                code: None,
                message: "refused".into(),
                retry_after: None,
            },
            SendError::Ambiguous {
                message: "no answer in time".into(),
            },
        ];
        for e in cases {
            assert!(LookupError::from(e.clone()).is_retryable(), "{e:?}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let key = |s: TwilioLookupSettings| validate(&s).err().map(|e| e.key);
        let cases: Vec<(TwilioLookupSettings, Option<&str>)> = vec![
            (settings(), None),
            (
                TwilioLookupSettings {
                    base_url: "ftp://lookups.twilio.com".into(),
                    ..settings()
                },
                Some("base_url"),
            ),
            (
                TwilioLookupSettings {
                    base_url: "lookups.twilio.com".into(),
                    ..settings()
                },
                Some("base_url"),
            ),
            (
                TwilioLookupSettings {
                    base_url: "https://x/?a=1".into(),
                    ..settings()
                },
                Some("base_url"),
            ),
            (
                TwilioLookupSettings {
                    account_sid: String::new(),
                    ..settings()
                },
                Some("account_sid"),
            ),
            (
                TwilioLookupSettings {
                    account_sid: "AC:x".into(),
                    ..settings()
                },
                Some("account_sid"),
            ),
            (
                TwilioLookupSettings {
                    auth_token: String::new(),
                    ..settings()
                },
                Some("auth_token"),
            ),
            (
                TwilioLookupSettings {
                    request_timeout: Duration::ZERO,
                    ..settings()
                },
                Some("request_timeout"),
            ),
            (
                TwilioLookupSettings {
                    connect_timeout: Duration::ZERO,
                    ..settings()
                },
                Some("connect_timeout"),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(key(s.clone()), want, "{s:?}");
        }
    }

    #[test]
    fn lookup_uris() {
        let lookup = TwilioLookup::new(settings()).unwrap();
        assert_eq!(
            lookup.lookup_uri("+14159929960").unwrap().to_string(),
            "https://lookups.twilio.com/v2/PhoneNumbers/%2B14159929960?Fields=line_type_intelligence"
        );
        let proxied = TwilioLookup::new(TwilioLookupSettings {
            base_url: "http://127.0.0.1:9090/twilio/".into(),
            ..settings()
        })
        .unwrap();
        assert_eq!(
            proxied.lookup_uri("+447700900123").unwrap().to_string(),
            "http://127.0.0.1:9090/twilio/v2/PhoneNumbers/%2B447700900123?Fields=line_type_intelligence"
        );
        for bad in [
            "",
            "+",
            "14159929960",
            "+1415 992 9960",
            "+1234567890123456",
            "+1415/../x",
        ] {
            assert!(
                matches!(
                    lookup.lookup_uri(bad),
                    Err(LookupError::Permanent { code: None, .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn credentials_are_reused_and_never_printed() {
        let messaging = TwilioSettings {
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            auth_token: "secret".into(),
            connection: crate::ConnectionSettings {
                connect_timeout: Duration::from_secs(2),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = TwilioLookupSettings::from_messaging(&messaging, DEFAULT_BASE_URL);
        assert_eq!(
            (
                s.account_sid.as_str(),
                s.auth_token.as_str(),
                s.connect_timeout
            ),
            (
                "AC0123456789abcdef0123456789abcdef",
                "secret",
                Duration::from_secs(2)
            )
        );
        assert!(!format!("{s:?}").contains("secret"));
        let lookup = TwilioLookup::new(s).unwrap();
        assert!(!format!("{lookup:?}").contains("secret"));
    }
}
