//! Twilio webhook request validation (docs/contracts.md#http-and-grpc: a bad or missing signature
//! gets 403 and changes nothing).
//!
//! Twilio signs every webhook request with `X-Twilio-Signature`: the Base64 of
//! HMAC-SHA1, keyed with the account's auth token, over the full URL Twilio
//! requested (scheme, host, path, query exactly as configured) followed by
//! each POST parameter's name and value, concatenated without separators, in
//! parameter-name order (twilio.com/docs/usage/webhooks/webhooks-security).
//! Twilio's helper libraries sort a repeated parameter's values and drop
//! exact duplicates before concatenating; so does this module.
//!
//! Not covered here: JSON webhooks (signed over the URL with a `bodySHA256`
//! query parameter), which Twilio does not use for SMS status or inbound
//! callbacks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// The MAC over `url` and `params` in Twilio's order.
fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    // HMAC takes a key of any length (RFC 2104: long keys are hashed, short
    // ones padded), so this cannot fail whatever the token.
    let mut mac =
        HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    // Sort by name, then value: byte order of UTF-8 is code-point order.
    // References, not copies; webhooks carry a few dozen parameters.
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The `X-Twilio-Signature` Twilio sends for a request to `url` with form
/// parameters `params`, signed with `auth_token`.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `header` (the request's `X-Twilio-Signature`) is Twilio's signature
/// of this request. Missing, malformed (not Base64, wrong length) or wrong
/// headers are all `false`. The comparison is constant-time
/// (`Mac::verify_slice`): a forger learns nothing from how long a rejection
/// takes.
pub fn verify_twilio(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> bool {
    let Some(header) = header else {
        return false;
    };
    // A SHA-1 tag is 20 bytes (28 Base64 characters); the buffer has room for
    // the decoder's length estimate, and anything longer fails to decode.
    let mut tag = [0u8; 32];
    let Ok(len) = STANDARD.decode_slice(header.trim().as_bytes(), &mut tag) else {
        return false;
    };
    mac(auth_token, url, params)
        .verify_slice(&tag[..len])
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params(caller: &str) -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", caller),
            ("Digits", "1234"),
            ("From", caller),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Twilio's published examples: auth token `12345`, this URL and five
    /// parameters. The helper-library docs and SDK tests use caller
    /// +14158675309; the current webhook-security page uses +12349013030.
    #[test]
    fn twilio_documented_vectors() {
        let rows = [
            ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            ("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        ];
        for (caller, want) in rows {
            assert_eq!(
                twilio_signature(TOKEN, URL, &params(caller)),
                want,
                "{caller}"
            );
            assert!(
                verify_twilio(TOKEN, URL, &params(caller), Some(want)),
                "{caller}"
            );
        }
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let mut shuffled = params("+14158675309");
        shuffled.reverse();
        assert_eq!(
            twilio_signature(TOKEN, URL, &shuffled),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn repeated_names_sort_by_value_and_drop_duplicates() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        let a = twilio_signature(
            TOKEN,
            URL,
            &p(&[("MediaUrl", "b"), ("A", "1"), ("MediaUrl", "a")]),
        );
        let b = twilio_signature(
            TOKEN,
            URL,
            &p(&[("A", "1"), ("MediaUrl", "a"), ("MediaUrl", "b")]),
        );
        assert_eq!(a, b);
        // The signed string is URL + "A1MediaUrlaMediaUrlb".
        let mut mac = HmacSha1::new_from_slice(TOKEN.as_bytes()).unwrap();
        mac.update(format!("{URL}A1MediaUrlaMediaUrlb").as_bytes());
        assert_eq!(a, STANDARD.encode(mac.finalize().into_bytes()));
        let dup = twilio_signature(
            TOKEN,
            URL,
            &p(&[
                ("A", "1"),
                ("MediaUrl", "a"),
                ("MediaUrl", "b"),
                ("MediaUrl", "a"),
            ]),
        );
        assert_eq!(dup, a);
    }

    /// (token, url, params, header, expected, why): docs/contracts.md#http-and-grpc, a bad or
    /// missing signature is rejected.
    #[test]
    fn rejection_rows() {
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        let p = params("+14158675309");
        let mut tampered = p.clone();
        tampered[2].1 = "9999".to_owned();
        let mut extra = p.clone();
        extra.push(("Body".to_owned(), "STOP".to_owned()));
        let long = "QUFB".repeat(40);
        let (p, tampered, extra) = (&p[..], &tampered[..], &extra[..]);
        type Row<'a> = (
            &'a str,
            &'a str,
            &'a [(String, String)],
            Option<&'a str>,
            bool,
            &'a str,
        );
        let rows: Vec<Row<'_>> = vec![
            (TOKEN, URL, p, Some(good), true, "documented example"),
            (
                TOKEN,
                URL,
                p,
                Some(" RSOYDt4T1cUTdK1PDd93/VVr8B8= "),
                true,
                "surrounding whitespace",
            ),
            (
                TOKEN,
                URL,
                tampered,
                Some(good),
                false,
                "tampered parameter value",
            ),
            (TOKEN, URL, extra, Some(good), false, "injected parameter"),
            (TOKEN, URL, &p[..4], Some(good), false, "dropped parameter"),
            ("54321", URL, p, Some(good), false, "wrong auth token"),
            (
                TOKEN,
                "https://mycompany.com/myapp.php?foo=1&bar=3",
                p,
                Some(good),
                false,
                "different query",
            ),
            (
                TOKEN,
                "http://mycompany.com/myapp.php?foo=1&bar=2",
                p,
                Some(good),
                false,
                "http vs https",
            ),
            (TOKEN, URL, p, None, false, "missing header"),
            (TOKEN, URL, p, Some(""), false, "empty header"),
            (
                TOKEN,
                URL,
                p,
                Some("not base64!!"),
                false,
                "malformed header",
            ),
            (
                TOKEN,
                URL,
                p,
                Some("RSOYDt4T1cUTdK1PDd93/VVr8B8"),
                false,
                "truncated Base64",
            ),
            (
                TOKEN,
                URL,
                p,
                Some("RSOYDt4T1cUTdK1PDd93/VVr"),
                false,
                "truncated tag (valid Base64, 18 bytes)",
            ),
            (
                TOKEN,
                URL,
                p,
                Some("RSOYDt4T1cUTdK1PDd93/VVr8B8AAAAA"),
                false,
                "over-long tag (24 bytes)",
            ),
            (TOKEN, URL, p, Some(&long), false, "far too long"),
            (
                TOKEN,
                URL,
                p,
                Some("rsoydt4t1cutdk1pdd93/vvr8b8="),
                false,
                "Base64 is case-sensitive",
            ),
        ];
        for (token, url, params, header, want, why) in rows {
            assert_eq!(verify_twilio(token, url, params, header), want, "{why}");
        }
    }
}
