//! The control plane's audit trail: every accepted change, appended to the
//! stream `herald:audit` (never trimmed by Herald) with who made it, their
//! role, what changed, the state before and after, when, and the request id.
//! `ExportAudit` / `heraldctl audit export` read it back.

use serde_json::Value;
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::access::Principal;
use crate::conn::Conn;
use crate::keys;

/// The metadata entry a client may set to tie a change to its own request;
/// without it the server makes one up.
pub const REQUEST_ID: &str = "x-request-id";

/// One accepted change.
#[derive(Debug)]
pub struct Change<'a> {
    pub who: &'a Principal,
    /// `tenant.pause`, `tenant.resume`, `throttle.set`, `consent.set`,
    /// `ledger.confirm`, `token.create`, `token.revoke`.
    pub what: &'a str,
    /// What it applies to: a tenant, a lane, `tenant/number`, a token name.
    pub target: &'a str,
    pub before: Value,
    pub after: Value,
    pub request_id: &'a str,
    pub at_ms: i64,
}

/// The request id of a call: the client's `x-request-id` (up to 128
/// visible characters) or a new random one.
pub fn request_id(metadata: &MetadataMap) -> String {
    if let Some(v) = metadata.get(REQUEST_ID).and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 128
        && v.bytes().all(|b| b.is_ascii_graphic())
    {
        return v.to_string();
    }
    let r: u64 = rand::random();
    format!("req-{r:016x}")
}

/// Append `change` to `herald:audit`; returns the entry id.
pub async fn append(conn: &mut Conn, change: &Change<'_>) -> Result<String, Status> {
    redis::cmd("XADD")
        .arg(keys::AUDIT)
        .arg("*")
        .arg("who")
        .arg(&change.who.name)
        .arg("role")
        .arg(change.who.role.as_str())
        .arg("what")
        .arg(change.what)
        .arg("target")
        .arg(change.target)
        .arg("before")
        .arg(change.before.to_string())
        .arg("after")
        .arg(change.after.to_string())
        .arg("at")
        .arg(change.at_ms)
        .arg("request_id")
        .arg(change.request_id)
        .query_async(conn)
        .await
        .map_err(|e| {
            // The change itself is stored; say so rather than pretend it
            // failed.
            Status::unavailable(format!(
                "the change was applied but its audit entry could not be written: {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_come_from_the_client_or_are_made_up() {
        let mut m = MetadataMap::new();
        let made = request_id(&m);
        assert!(made.starts_with("req-") && made.len() == 20, "{made}");
        assert_ne!(request_id(&m), made);
        m.insert(REQUEST_ID, "ticket-42".parse().unwrap());
        assert_eq!(request_id(&m), "ticket-42");
        m.insert(REQUEST_ID, "x".repeat(200).parse().unwrap());
        assert!(request_id(&m).starts_with("req-"));
    }
}
