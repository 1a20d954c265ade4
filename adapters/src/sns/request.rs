//! Building the wire request: the `Publish` form and its SigV4 signature.
//!
//! Wire format (SNS Query API, version 2010-03-31): `POST /`,
//! `application/x-www-form-urlencoded` with `Action=Publish`,
//! `Version=2010-03-31`, `PhoneNumber`, `Message` and message attributes as
//! `MessageAttributes.entry.N.{Name, Value.DataType, Value.StringValue}`.

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderName, HeaderValue};

/// The SigV4 service name of SNS (the `sns` in the credential scope).
pub(super) const SERVICE: &str = "sns";

/// The form's content type; it is signed, so it is one constant.
pub(super) const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// `AWS.SNS.SMS.SMSType` for Herald's category. SNS routes `Transactional`
/// over routes optimised for delivery (and bills more); `Promotional` over
/// the cheapest. Only marketing is promotional: collections and
/// transactional texts are time-critical and legally significant.
pub(super) fn sms_type(category: &str) -> &'static str {
    if category.eq_ignore_ascii_case("marketing") {
        "Promotional"
    } else {
        "Transactional"
    }
}

/// The `Publish` form body.
///
/// `origination_number` becomes `AWS.MM.SMS.OriginationNumber` and
/// `sender_id` `AWS.SNS.SMS.SenderID`, each only when given.
pub(super) fn form_body(
    to: &str,
    message: &str,
    sms_type: &str,
    origination_number: Option<&str>,
    sender_id: Option<&str>,
) -> String {
    // The fixed part is ~300 bytes with all three attributes; the text,
    // growing by its escapes, usually dominates.
    let mut form = form_urlencoded::Serializer::new(String::with_capacity(
        384 + to.len() + message.len() + message.len() / 2,
    ));
    form.append_pair("Action", "Publish")
        .append_pair("Version", "2010-03-31")
        .append_pair("PhoneNumber", to)
        .append_pair("Message", message);
    let attributes = [
        Some(("AWS.SNS.SMS.SMSType", sms_type)),
        origination_number.map(|n| ("AWS.MM.SMS.OriginationNumber", n)),
        sender_id.map(|id| ("AWS.SNS.SMS.SenderID", id)),
    ];
    // Entries are numbered from 1 without gaps, as the Query protocol
    // serialises a map.
    for (n, (name, value)) in attributes.into_iter().flatten().enumerate() {
        let n = n + 1;
        form.append_pair(&format!("MessageAttributes.entry.{n}.Name"), name)
            .append_pair(
                &format!("MessageAttributes.entry.{n}.Value.DataType"),
                "String",
            )
            .append_pair(
                &format!("MessageAttributes.entry.{n}.Value.StringValue"),
                value,
            );
    }
    form.finish()
}

/// A request as SigV4 covers it.
pub(super) struct Unsigned<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    /// The request's own headers to sign (lower-case names); `host` must be
    /// among them, or it is derived from `uri`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hashed whole into the signature.
    pub body: &'a [u8],
}

/// The headers SigV4 adds to `request`: `authorization`, `x-amz-date` and,
/// with temporary credentials, `x-amz-security-token`. `time` is an argument
/// so tests can sign with a fixed clock.
pub(super) fn sigv4_headers(
    identity: &Identity,
    region: &str,
    service: &str,
    time: SystemTime,
    request: &Unsigned<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("SigV4 parameters: {e}"))?
        .into();
    let signable = SignableRequest::new(
        request.method,
        request.uri,
        request.headers.iter().copied(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| format!("SigV4 request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("SigV4 signing: {e}"))?
        .into_parts();
    let (headers, _query) = instructions.into_parts();
    headers
        .into_iter()
        .map(|h| {
            let name = HeaderName::from_bytes(h.name().as_bytes())
                .map_err(|_| format!("SigV4 header name `{}` is not valid", h.name()))?;
            let mut value = HeaderValue::from_str(h.value())
                .map_err(|_| format!("SigV4 header `{}` is not a valid value", h.name()))?;
            // The signature is replayable for minutes: keep it out of HPACK
            // tables and debug output like the session token aws-sigv4 marks.
            value.set_sensitive(h.sensitive() || name == http::header::AUTHORIZATION);
            Ok((name, value))
        })
        .collect()
}
