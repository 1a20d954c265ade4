//! Who may call the control service: named bearer tokens with roles.
//!
//! `control.token` is the bootstrap admin (named `bootstrap`, never stored).
//! Every other token is created by an admin (`CreateToken`), shown once, and
//! stored only as its SHA-256 in `herald:tokens` (name → JSON `{hash, role,
//! created_at_ms, created_by}`), so a copy of Redis holds no usable token.
//! A presented token is hashed and compared with every stored hash in
//! constant time. Roles:
//!
//! | role | may |
//! |---|---|
//! | `read` | read: stats, pauses, throttles, consent of a number, tokens |
//! | `operator` | read, pause and resume tenants, set throttles |
//! | `compliance` | read, change consent, confirm the ledger, export consent and the audit trail |
//! | `admin` | everything, including tokens |

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::conn::Conn;
use crate::keys;

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Operator,
    Compliance,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Read, Role::Operator, Role::Compliance, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operator => "operator",
            Role::Compliance => "compliance",
            Role::Admin => "admin",
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// May this role do what `need` asks?
    pub fn allows(self, need: Need) -> bool {
        matches!(
            (self, need),
            (Role::Admin, _)
                | (_, Need::Read)
                | (Role::Operator, Need::Operate)
                | (Role::Compliance, Need::Comply)
        )
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    /// Pause, resume, throttles.
    Operate,
    /// Consent, the ledger, audit exports.
    Comply,
    /// Tokens.
    Admin,
}

impl Need {
    pub(crate) fn roles(self) -> &'static str {
        match self {
            Need::Read => "any role",
            Need::Operate => "operator or admin",
            Need::Comply => "compliance or admin",
            Need::Admin => "admin",
        }
    }
}

/// The caller, once its token is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// A stored token (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredToken {
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub role: Role,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// The name `control.token` goes by in the audit trail.
pub const BOOTSTRAP: &str = "bootstrap";

/// Hex SHA-256 of a token.
pub fn hash(token: &[u8]) -> String {
    crate::secret::sha256_hex(token)
}

/// A new random token: `hrld_` and 32 random bytes, base64url.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "hrld_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A token name: 1–64 letters, digits, `_`, `-`, `.`, `@`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
        && name != BOOTSTRAP
}

/// Who presents `metadata`'s token, if it may do what `need` asks.
/// UNAUTHENTICATED for a missing, malformed or unknown token (and for
/// every call when no token exists at all: fail closed), PERMISSION_DENIED
/// when its role does not allow `what`.
pub async fn authorize(
    conn: &mut Conn,
    metadata: &MetadataMap,
    bootstrap: &str,
    need: Need,
    what: &str,
) -> Result<Principal, Status> {
    let presented = herald_control::auth::presented_token(metadata)?;
    let principal = if !bootstrap.is_empty()
        && herald_control::auth::constant_time_eq(presented, bootstrap.as_bytes())
    {
        Principal {
            name: BOOTSTRAP.into(),
            role: Role::Admin,
        }
    } else {
        let stored = list(conn).await?;
        let h = hash(presented);
        let mut found = None;
        // Every hash is compared, whichever matches: the time taken says
        // nothing about which token was close.
        for (name, t) in stored {
            if herald_control::auth::constant_time_eq(h.as_bytes(), t.hash.as_bytes()) {
                found = Some(Principal { name, role: t.role });
            }
        }
        found.ok_or_else(|| Status::unauthenticated("invalid token"))?
    };
    if !principal.role.allows(need) {
        return Err(Status::permission_denied(format!(
            "token `{}` has role `{}`; {what} needs {}",
            principal.name,
            principal.role.as_str(),
            need.roles()
        )));
    }
    Ok(principal)
}

/// Every stored token, by name.
pub async fn list(conn: &mut Conn) -> Result<BTreeMap<String, StoredToken>, Status> {
    let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::TOKENS)
        .query_async(conn)
        .await
        .map_err(|e| Status::unavailable(format!("redis: {e}")))?;
    Ok(raw
        .into_iter()
        .filter_map(|(name, json)| match serde_json::from_str(&json) {
            Ok(t) => Some((name, t)),
            Err(e) => {
                tracing::warn!(token = %name, error = %e, "unreadable stored token ignored");
                None
            }
        })
        .collect())
}

/// Store a new token named `name`; returns the token (shown once).
/// ALREADY_EXISTS when the name is taken.
pub async fn create(
    conn: &mut Conn,
    name: &str,
    role: Role,
    by: &str,
    now_ms: i64,
) -> Result<(String, StoredToken), Status> {
    if !valid_name(name) {
        return Err(Status::invalid_argument(
            "token name: 1–64 letters, digits, `_`, `-`, `.`, `@` (and not `bootstrap`)",
        ));
    }
    let token = new_token();
    let stored = StoredToken {
        hash: hash(token.as_bytes()),
        role,
        created_at_ms: now_ms,
        created_by: by.into(),
    };
    let json = serde_json::to_string(&stored).map_err(|e| Status::internal(e.to_string()))?;
    let created: bool = redis::cmd("HSETNX")
        .arg(keys::TOKENS)
        .arg(name)
        .arg(json)
        .query_async(conn)
        .await
        .map_err(|e| Status::unavailable(format!("redis: {e}")))?;
    if !created {
        return Err(Status::already_exists(format!(
            "a token named `{name}` exists; revoke it first"
        )));
    }
    Ok((token, stored))
}

/// Remove the token `name`; returns what was stored, if anything.
pub async fn revoke(conn: &mut Conn, name: &str) -> Result<Option<StoredToken>, Status> {
    let (old, _): (Option<String>, i64) = redis::pipe()
        .cmd("HGET")
        .arg(keys::TOKENS)
        .arg(name)
        .cmd("HDEL")
        .arg(keys::TOKENS)
        .arg(name)
        .query_async(conn)
        .await
        .map_err(|e| Status::unavailable(format!("redis: {e}")))?;
    Ok(old.and_then(|j| serde_json::from_str(&j).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/contracts.md#grpc-herald-control-v1: what each role may do.
    #[test]
    fn role_table() {
        use Need::*;
        let rows = [
            (Role::Read, [true, false, false, false]),
            (Role::Operator, [true, true, false, false]),
            (Role::Compliance, [true, false, true, false]),
            (Role::Admin, [true, true, true, true]),
        ];
        for (role, want) in rows {
            let got = [Read, Operate, Comply, Admin].map(|n| role.allows(n));
            assert_eq!(got, want, "{role:?}");
            assert_eq!(Role::from_name(role.as_str()), Some(role));
        }
        assert_eq!(Role::from_name("root"), None);
    }

    #[test]
    fn tokens_are_random_and_stored_as_their_hash() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("hrld_") && a.len() > 40, "{a}");
        assert_eq!(hash(a.as_bytes()).len(), 64);
        assert_ne!(hash(a.as_bytes()), hash(b.as_bytes()));
        // A published vector: SHA-256 of "abc".
        assert_eq!(
            hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        herald_control::auth::validate_token(&a).expect("a new token is valid metadata");
    }

    #[test]
    fn names() {
        for ok in ["ops", "alice@acme", "ci-bot.1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "bootstrap", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
