//! A Twilio webhook as `http::twilio` reads it: the form body parsed by
//! `inbound::form::form_params`, then `X-Twilio-Signature` checked by
//! `inbound::signature::verify_twilio`.
//!
//! Input: `token \n url \n header \n body`. With fewer than three lines
//! there is no header (a request without `X-Twilio-Signature`); the body
//! is everything after the third newline, so it may hold newlines itself.
#![no_main]

use herald_engine::inbound::form::form_params;
use herald_engine::inbound::signature::{twilio_signature, verify_twilio};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let token = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let url = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let header = parts.next().map(String::from_utf8_lossy);
    let body = parts.next().unwrap_or_default();

    let params = form_params(body);
    // Parsing keeps every pair: serialising them again and parsing gives
    // the same pairs, in the same order.
    let again = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    assert_eq!(form_params(again.as_bytes()), params);

    let verified = verify_twilio(&token, &url, &params, header.as_deref());
    let signature = twilio_signature(&token, &url, &params);
    // What Herald would sign, it accepts, whatever the parameters' order.
    assert!(verify_twilio(&token, &url, &params, Some(&signature)));
    let mut reversed = params.clone();
    reversed.reverse();
    assert!(verify_twilio(&token, &url, &reversed, Some(&signature)));
    // Padded with whitespace it is still accepted; cut short, never.
    assert!(verify_twilio(
        &token,
        &url,
        &params,
        Some(&format!(" {signature}\t"))
    ));
    assert!(!verify_twilio(
        &token,
        &url,
        &params,
        Some(&signature[..signature.len() - 2])
    ));
    // A header it accepts is that signature (Base64 is read strictly:
    // no other spelling of the same bytes gets in).
    if verified {
        assert_eq!(header.as_deref().map(str::trim), Some(signature.as_str()));
    }
});
