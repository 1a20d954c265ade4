//! Building the wire request: which sender field to use and the form body.
//!
//! Wire format (Twilio Messages API, `POST …/Messages.json`):
//! `application/x-www-form-urlencoded` with `To`, `From` *or*
//! `MessagingServiceSid`, `Body` and optionally `StatusCallback`.

/// The sender of one message, as Twilio wants it spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sender<'a> {
    /// A phone number, short code or alphanumeric id: the `From` field.
    From(&'a str),
    /// A messaging service (`MG…`): the `MessagingServiceSid` field; Twilio
    /// picks the number from the service's pool.
    Service(&'a str),
}

impl<'a> Sender<'a> {
    fn classify(sender: &'a str) -> Self {
        if sender.starts_with("MG") {
            Sender::Service(sender)
        } else {
            Sender::From(sender)
        }
    }

    fn field(&self) -> (&'static str, &'a str) {
        match *self {
            Sender::From(v) => ("From", v),
            Sender::Service(v) => ("MessagingServiceSid", v),
        }
    }
}

/// Routing's sender wins; then the configured `from`; then the configured
/// messaging service. `None` when nothing names a sender.
pub(super) fn choose_sender<'a>(
    requested: Option<&'a str>,
    default_from: Option<&'a str>,
    messaging_service_sid: Option<&'a str>,
) -> Option<Sender<'a>> {
    if let Some(s) = requested.filter(|s| !s.is_empty()).or(default_from) {
        return Some(Sender::classify(s));
    }
    messaging_service_sid.map(Sender::Service)
}

/// `StatusCallback=<encoded url>`, computed once per provider.
pub(super) fn encoded_status_callback(url: &str) -> String {
    form_urlencoded::Serializer::new(String::with_capacity(16 + encoded_len(url)))
        .append_pair("StatusCallback", url)
        .finish()
}

/// The form body, in one allocation of exactly the right size.
pub(super) fn form_body(
    to: &str,
    sender: Sender<'_>,
    body: &str,
    status_callback: Option<&str>,
) -> String {
    let (sender_key, sender_value) = sender.field();
    // "To=" + "&" + key + "=" + "&Body=" (+ "&" + pre-encoded callback)
    let capacity = 3
        + encoded_len(to)
        + 2
        + sender_key.len()
        + encoded_len(sender_value)
        + 6
        + encoded_len(body)
        + status_callback.map_or(0, |cb| 1 + cb.len());
    let mut out = form_urlencoded::Serializer::new(String::with_capacity(capacity))
        .append_pair("To", to)
        .append_pair(sender_key, sender_value)
        .append_pair("Body", body)
        .finish();
    if let Some(cb) = status_callback {
        out.push('&');
        out.push_str(cb);
    }
    debug_assert_eq!(out.len(), capacity, "form body capacity estimate is exact");
    out
}

/// Length of `s` after `application/x-www-form-urlencoded` encoding, as
/// `form_urlencoded::byte_serialize` does it: unreserved bytes and space
/// (→ `+`) stay one byte, everything else becomes `%XX`.
fn encoded_len(s: &str) -> usize {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_' | b' ') {
                1
            } else {
                3
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn sender_precedence() {
        assert_eq!(
            choose_sender(Some("+1555"), Some("+1666"), Some("MGx")),
            Some(Sender::From("+1555"))
        );
        assert_eq!(
            choose_sender(Some("MGabc"), Some("+1666"), None),
            Some(Sender::Service("MGabc"))
        );
        assert_eq!(
            choose_sender(None, Some("+1666"), Some("MGx")),
            Some(Sender::From("+1666"))
        );
        assert_eq!(
            choose_sender(Some(""), Some("+1666"), None),
            Some(Sender::From("+1666"))
        );
        assert_eq!(
            choose_sender(None, Some("MGdef"), None),
            Some(Sender::Service("MGdef"))
        );
        assert_eq!(
            choose_sender(None, None, Some("MGx")),
            Some(Sender::Service("MGx"))
        );
        assert_eq!(choose_sender(None, None, None), None);
    }

    #[test]
    fn form_body_round_trips_and_is_sized_exactly() {
        let cb =
            encoded_status_callback("https://herald.example/v1/webhooks/twilio/status?x=1&y=2");
        let body = "Pay $5 & save 10%+ now: é ✓ a=b\nnext";
        let encoded = form_body(
            "+14155550123",
            Sender::From("+15005550006"),
            body,
            Some(&cb),
        );
        assert_eq!(encoded.len(), encoded.capacity());
        assert_eq!(
            decode(&encoded),
            vec![
                ("To".into(), "+14155550123".into()),
                ("From".into(), "+15005550006".into()),
                ("Body".into(), body.into()),
                (
                    "StatusCallback".into(),
                    "https://herald.example/v1/webhooks/twilio/status?x=1&y=2".into()
                ),
            ]
        );
    }

    #[test]
    fn messaging_service_uses_its_own_field() {
        let encoded = form_body("+14155550123", Sender::Service("MG123"), "hi", None);
        assert_eq!(
            encoded,
            "To=%2B14155550123&MessagingServiceSid=MG123&Body=hi"
        );
    }
}
