//! A webhook's `application/x-www-form-urlencoded` body as name–value
//! pairs, in the order sent: what Twilio's webhooks post and what their
//! `X-Twilio-Signature` covers ([`super::signature`]).

/// The form parameters of `body`. `+` is a space and `%XX` a byte; bytes
/// that are not UTF-8 after decoding become U+FFFD, so any body parses
/// (a malformed one just fails the signature check). Repeated names are
/// kept, each in its place.
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_inbound_body() {
        let got = form_params(
            b"From=%2B14155552671&To=%2B15005550006&Body=Stop+texting+me%21&MediaUrl=a&MediaUrl=b",
        );
        let want: Vec<(String, String)> = [
            ("From", "+14155552671"),
            ("To", "+15005550006"),
            ("Body", "Stop texting me!"),
            ("MediaUrl", "a"),
            ("MediaUrl", "b"),
        ]
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn odd_bodies_parse_without_failing() {
        assert!(form_params(b"").is_empty());
        assert_eq!(form_params(b"a"), [("a".to_owned(), String::new())]);
        assert_eq!(form_params(b"=x&&"), [(String::new(), "x".to_owned())]);
        // A stray `%` stays as it is; a non-UTF-8 byte becomes U+FFFD.
        assert_eq!(
            form_params(b"a=%zz%"),
            [("a".to_owned(), "%zz%".to_owned())]
        );
        assert_eq!(
            form_params(b"a=%FF"),
            [("a".to_owned(), "\u{FFFD}".to_owned())]
        );
    }
}
