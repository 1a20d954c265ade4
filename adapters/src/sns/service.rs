//! Sending `Publish` and classifying SNS's XML answer.
//!
//! Classification decides whether a person might get the same text twice, so
//! every branch says which of three things it knows:
//! - SNS certainly did not take the message → [`SendError::Transient`]
//!   (retry / fail over) or [`SendError::Permanent`] (give up);
//! - SNS took it → [`Accepted`];
//! - we cannot tell → [`SendError::Ambiguous`] (never re-sent silently).
//!
//! Answers (Query protocol, XML):
//! `<PublishResponse><PublishResult><MessageId>…` on success;
//! `<ErrorResponse><Error><Type>Sender|Receiver</Type><Code>…</Code><Message>…`
//! on failure.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

use crate::transport::{self, HttpClient};
use crate::{Accepted, PermanentKind, SendError};

/// SNS answers a publish in well under 1 KiB; anything past this is not SNS.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Send one signed `Publish` and classify the outcome.
pub(super) async fn send(
    client: &HttpClient,
    request: impl FnOnce() -> http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Accepted, SendError> {
    let answer = transport::exchange(client, request, timeout, "SNS", MAX_RESPONSE_BYTES).await?;
    let status = answer.status;

    if status.is_success() {
        // The status line says SNS took the message; a body we cannot read
        // does not undo that. Re-sending would most likely text the person
        // twice, so this is Ambiguous rather than Transient.
        return match answer.body {
            Ok(bytes) => parse_published(status, &bytes),
            Err(reason) => Err(SendError::Ambiguous {
                message: format!("SNS answered {status} but {reason}"),
            }),
        };
    }

    let retry_after = transport::retry_after(&answer.headers);
    let fields = answer.body.ok().and_then(|b| read_xml(&b).ok());
    Err(classify(status.as_u16(), fields.as_ref(), retry_after))
}

/// A 2xx body: `PublishResult/MessageId` is the provider id. SNS reports no
/// segment count.
pub(super) fn parse_published(status: StatusCode, bytes: &[u8]) -> Result<Accepted, SendError> {
    match read_xml(bytes) {
        Ok(XmlFields {
            message_id: Some(id),
            ..
        }) if !id.is_empty() => Ok(Accepted {
            provider_id: id,
            segments: None,
        }),
        Ok(_) => Err(SendError::Ambiguous {
            message: format!("SNS answered {status} without a MessageId"),
        }),
        Err(e) => Err(SendError::Ambiguous {
            message: format!("SNS answered {status} with a body that is not XML: {e}"),
        }),
    }
}

/// The few elements of an SNS answer Herald reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct XmlFields {
    /// `PublishResult/MessageId`.
    pub message_id: Option<String>,
    /// `Error/Code`: `Throttling`, `InvalidParameter`, …
    pub code: Option<String>,
    /// `Error/Message`: SNS's words, kept for the event's reason.
    pub message: Option<String>,
}

/// Elements on the way to the fields above; everything else is `Other`, so
/// the element stack holds no strings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    PublishResult,
    MessageId,
    Error,
    Code,
    Message,
    Other,
}

impl Tag {
    fn of(local_name: &[u8]) -> Tag {
        match local_name {
            b"PublishResult" => Tag::PublishResult,
            b"MessageId" => Tag::MessageId,
            b"Error" => Tag::Error,
            b"Code" => Tag::Code,
            b"Message" => Tag::Message,
            _ => Tag::Other,
        }
    }
}

/// Deeper than any AWS answer; a bound on what a hostile body can make us keep.
const MAX_DEPTH: usize = 32;

/// Read the fields Herald needs from an SNS XML answer, by element name and
/// parent (namespaces ignored). Malformed XML is an error.
pub(super) fn read_xml(bytes: &[u8]) -> Result<XmlFields, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut reader = Reader::from_str(text);
    let mut path: Vec<Tag> = Vec::with_capacity(8);
    let mut out = XmlFields::default();
    let mut seen_element = false;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        let piece = match event {
            Event::Start(e) => {
                if path.len() == MAX_DEPTH {
                    return Err("nested too deep".to_owned());
                }
                seen_element = true;
                path.push(Tag::of(e.local_name().as_ref()));
                continue;
            }
            Event::Empty(_) => {
                seen_element = true;
                continue;
            }
            Event::End(_) => {
                path.pop();
                continue;
            }
            Event::Text(t) => t.decode().map_err(|e| e.to_string())?,
            Event::CData(t) => t.decode().map_err(|e| e.to_string())?,
            Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| e.to_string())? {
                Some(c) => c.to_string().into(),
                None => {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                        .into()
                }
            },
            Event::Eof => break,
            _ => continue,
        };
        let slot = match path.as_slice() {
            [.., Tag::PublishResult, Tag::MessageId] => &mut out.message_id,
            [.., Tag::Error, Tag::Code] => &mut out.code,
            [.., Tag::Error, Tag::Message] => &mut out.message,
            _ => continue,
        };
        slot.get_or_insert_with(String::new).push_str(&piece);
    }
    if !seen_element {
        return Err("no element".to_owned());
    }
    for v in [&mut out.message_id, &mut out.code, &mut out.message]
        .into_iter()
        .flatten()
    {
        let trimmed = v.trim();
        if trimmed.len() != v.len() {
            *v = trimmed.to_owned();
        }
    }
    Ok(out)
}

/// Classify a non-2xx answer. Every non-2xx answer means SNS did not publish
/// the message, so the only question is whether trying again can help.
///
/// `code` in the error is the HTTP status: AWS error codes are words, kept in
/// the message (`Throttling: Rate exceeded (HTTP 400)`).
pub(super) fn classify(
    status: u16,
    fields: Option<&XmlFields>,
    retry_after: Option<Duration>,
) -> SendError {
    let aws_code = fields.and_then(|f| f.code.as_deref()).unwrap_or("");
    let aws_message = fields.and_then(|f| f.message.as_deref()).unwrap_or("");
    let message = || match (aws_code, aws_message) {
        ("", "") => format!("{} (HTTP {status})", transport::status_text(status)),
        (code, "") => format!("{code} (HTTP {status})"),
        ("", text) => format!("{text} (HTTP {status})"),
        (code, text) => format!("{code}: {text} (HTTP {status})"),
    };
    let transient = || SendError::Transient {
        code: Some(u32::from(status)),
        message: message(),
        retry_after,
    };
    let permanent = |kind| SendError::Permanent {
        kind,
        code: Some(u32::from(status)),
        message: message(),
    };

    // Contract (docs/contracts.md#providers): 5xx is transient. 429 is how SNS answers
    // `Throttled`; the request was not processed.
    if status >= 500 || status == 429 {
        return transient();
    }
    match aws_code {
        // Rate limits, SNS's own (`Throttled`, 429) and the common AWS ones
        // (`Throttling`, 400): the request was refused unprocessed.
        "Throttling"
        | "ThrottlingException"
        | "Throttled"
        | "ThrottledException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => transient(),
        // Server faults that arrive with a 4xx through a proxy.
        "InternalError" | "InternalFailure" | "ServiceUnavailable" => transient(),
        // The signature's time is more than 5 minutes off SNS's clock. Every
        // attempt is signed afresh, so a later one can pass once the host
        // clock is fixed; failing the message for good would drop it.
        "RequestExpired" | "RequestTimeTooSkewed" => transient(),
        // SNS's "the phone number opted out of SMS from your account". Publish
        // to a phone number normally answers with a MessageId and reports the
        // opt-out only in delivery logs; when SNS does say it here, the
        // ledger must record it.
        "OptedOut" | "OptedOutException" => permanent(PermanentKind::CarrierOptOut),
        // SNS names the parameter: "Invalid parameter: PhoneNumber Reason:
        // +1555 is not valid to publish to".
        "InvalidParameter" | "InvalidParameterValue" | "ParameterValueInvalid" => {
            let text = aws_message.to_ascii_lowercase();
            if text.contains("opted out") || text.contains("opted-out") {
                permanent(PermanentKind::CarrierOptOut)
            } else if text.contains("phonenumber") || text.contains("phone number") {
                permanent(PermanentKind::InvalidNumber)
            } else {
                permanent(PermanentKind::Other)
            }
        }
        // Credentials, signature, permissions or account set-up: no message
        // can go until an operator fixes the config.
        "AuthorizationError"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "AccessDenied"
        | "AccessDeniedException"
        | "InvalidSecurity"
        | "MissingAuthenticationToken"
        | "ExpiredToken"
        | "UnrecognizedClientException"
        | "NotAuthorized"
        | "OptInRequired" => permanent(PermanentKind::Unauthorized),
        _ => match status {
            401 | 403 => permanent(PermanentKind::Unauthorized),
            400..=499 => permanent(PermanentKind::Other),
            // 1xx/3xx: not an answer from the SNS API (a redirecting proxy, a
            // wrong endpoint). Nothing was published; retrying / failing over
            // loses nothing, while a permanent failure would drop the message.
            _ => transient(),
        },
    }
}
