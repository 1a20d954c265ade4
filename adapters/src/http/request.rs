//! Building the wire request: one JSON object per message.
//!
//! `POST {url}`, `Content-Type: application/json`, body
//! `{"to": "+1…", "from": "+1…" | null, "body": "…", "category": "…"}`:
//! the same four fields for every message, `from` `null` when neither routing
//! nor the settings name a sender, so a receiver can validate one fixed shape.

use serde::Serialize;

/// The body posted for one message.
#[derive(Debug, Serialize)]
pub(super) struct Outgoing<'a> {
    pub to: &'a str,
    pub from: Option<&'a str>,
    pub body: &'a str,
    pub category: &'a str,
}

/// Routing's sender wins; then the configured `from`; else none.
pub(super) fn choose_from<'a>(
    requested: Option<&'a str>,
    configured: Option<&'a str>,
) -> Option<&'a str> {
    requested.filter(|s| !s.is_empty()).or(configured)
}

/// The JSON body. Serialising borrowed strings cannot fail; the `Result` is
/// serde_json's signature, passed on rather than unwrapped.
pub(super) fn json_body(message: &Outgoing<'_>) -> Result<Vec<u8>, serde_json::Error> {
    // Fixed keys and quotes take ~50 bytes; escapes are rare.
    let mut out = Vec::with_capacity(
        64 + message.to.len()
            + message.from.map_or(4, str::len)
            + message.body.len()
            + message.category.len(),
    );
    serde_json::to_writer(&mut out, message)?;
    Ok(out)
}
