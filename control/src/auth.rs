//! Admin bearer-token authentication for the control service.
//!
//! Every call carries `authorization: Bearer <token>` ([`TOKEN_METADATA`]).
//! The server side is [`bearer_interceptor`] (or [`check_bearer`] for callers
//! that already hold the metadata); the client side is [`attach_bearer`].
//!
//! **Fail closed.** A server configured with an empty token refuses every
//! call with `UNAUTHENTICATED`: `control.token` left unset must never leave
//! the admin surface — which can pause tenants and, later, change consent —
//! open to anyone who can reach the port.

use std::{fmt, sync::Arc};

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataMap, MetadataValue},
    service::Interceptor,
};

use crate::TOKEN_METADATA;

/// The authentication scheme in front of the token. Compared
/// case-insensitively, as RFC 7235 §2.1 requires of auth schemes.
const SCHEME: &str = "Bearer";

/// Check that `metadata` carries `authorization: Bearer <expected_token>`.
///
/// Returns `UNAUTHENTICATED` when the entry is missing, malformed or carries
/// another token, and also — whatever the request carries — when
/// `expected_token` is empty (fail closed, see the module docs). The token
/// itself is compared in constant time and never echoed in the status.
pub fn check_bearer(metadata: &MetadataMap, expected_token: &str) -> Result<(), Status> {
    if expected_token.is_empty() {
        return Err(Status::unauthenticated(
            "this Herald instance has no control.token configured, so its control service refuses every call",
        ));
    }
    let presented = presented_token(metadata)?;
    if constant_time_eq(presented, expected_token.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated("invalid admin token"))
    }
}

/// The token `metadata` presents (`authorization: Bearer <token>`), for a
/// server that looks it up itself (named tokens with roles).
/// `UNAUTHENTICATED` when the entry is missing or malformed.
pub fn presented_token(metadata: &MetadataMap) -> Result<&[u8], Status> {
    let Some(value) = metadata.get(TOKEN_METADATA) else {
        return Err(Status::unauthenticated(
            "missing token: send metadata `authorization: Bearer <token>`",
        ));
    };
    strip_scheme(value.as_bytes()).ok_or_else(|| {
        Status::unauthenticated("malformed authorization metadata: expected `Bearer <token>`")
    })
}

/// `Bearer <token>` → `<token>`; `None` when the scheme is not `Bearer` or
/// the token is empty. Spaces between scheme and token are skipped
/// (RFC 6750 §2.1: `"Bearer" 1*SP b64token`).
fn strip_scheme(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME.as_bytes()) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    let token = rest.trim_ascii_start();
    // At least one space must separate scheme and token: "Bearerxyz" is not
    // a bearer credential.
    (token.len() < rest.len() && !token.is_empty()).then_some(token)
}

/// Compare two byte strings in time that depends only on their lengths, not on
/// where they first differ, so response timing does not reveal how much of a
/// guessed token was right.
///
/// The length itself may leak (the comparison stops at once when lengths
/// differ); a token's length is not the secret, its bytes are.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold back into an early-exit loop.
    std::hint::black_box(diff) == 0
}

/// Server-side interceptor: let a request through only if [`check_bearer`]
/// accepts it. Build with [`bearer_interceptor`].
///
/// Cheap to clone (the token is shared), as tonic clones the service per
/// connection.
#[derive(Clone)]
pub struct BearerInterceptor {
    expected_token: Arc<str>,
}

/// The interceptor for `ControlServer::with_interceptor(service,
/// bearer_interceptor(token))`, where `token` is `control.token`.
///
/// An empty `token` yields an interceptor that refuses every call (fail
/// closed): the engine may wire the service up unconditionally and still be
/// safe when no token is configured.
pub fn bearer_interceptor(token: String) -> BearerInterceptor {
    BearerInterceptor {
        expected_token: token.into(),
    }
}

impl Interceptor for BearerInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        check_bearer(request.metadata(), &self.expected_token)?;
        Ok(request)
    }
}

impl fmt::Debug for BearerInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerInterceptor")
            .field("expected_token", &Redacted(&self.expected_token))
            .finish()
    }
}

/// Why a token cannot be sent by a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token at all; a server never accepts an empty one.
    #[error("the admin token is empty")]
    Empty,
    /// Tokens are visible ASCII without spaces (RFC 6750 `b64token` is
    /// narrower still); anything else cannot travel intact in gRPC metadata.
    #[error("the admin token contains characters other than visible ASCII (no spaces)")]
    NotAscii,
}

/// Whether `token` can be sent by a client: non-empty, visible ASCII, no
/// spaces. The engine can call this when it loads `control.token`, so a token
/// no client could ever present is reported at start-up, naming the key.
pub fn validate_token(token: &str) -> Result<(), TokenError> {
    if token.is_empty() {
        Err(TokenError::Empty)
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Err(TokenError::NotAscii)
    } else {
        Ok(())
    }
}

/// Client-side interceptor that adds `authorization: Bearer <token>` to every
/// call. Build with [`attach_bearer`].
#[derive(Clone)]
pub struct AttachBearer {
    value: MetadataValue<Ascii>,
}

/// The interceptor for `ControlClient::with_interceptor(channel,
/// attach_bearer(token)?)`.
pub fn attach_bearer(token: &str) -> Result<AttachBearer, TokenError> {
    validate_token(token)?;
    let mut value: MetadataValue<Ascii> = format!("{SCHEME} {token}")
        .parse()
        .map_err(|_| TokenError::NotAscii)?;
    // Keeps the token out of HPACK's dynamic table and out of debug output.
    value.set_sensitive(true);
    Ok(AttachBearer { value })
}

impl Interceptor for AttachBearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(TOKEN_METADATA, self.value.clone());
        Ok(request)
    }
}

impl fmt::Debug for AttachBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachBearer")
            .field("value", &Redacted(""))
            .finish()
    }
}

/// Debug-prints as `<redacted>` (or `<empty>`), never the secret.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<empty>"
        } else {
            "<redacted>"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata_with(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(TOKEN_METADATA, value.parse().unwrap());
        metadata
    }

    #[test]
    fn constant_time_eq_matches_slice_equality() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a", b"a"),
            (b"a", b"b"),
            (b"secret", b"secreT"),
            (b"secret", b"Secret"),
            (b"secret", b"secret!"),
            (b"", b"x"),
        ];
        for (a, b) in cases {
            assert_eq!(constant_time_eq(a, b), a == b, "{a:?} vs {b:?}");
            assert_eq!(constant_time_eq(b, a), a == b, "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn accepts_the_configured_token() {
        assert!(check_bearer(&metadata_with("Bearer s3cret"), "s3cret").is_ok());
        // Scheme is case-insensitive; extra spaces before the token are allowed.
        assert!(check_bearer(&metadata_with("bearer   s3cret"), "s3cret").is_ok());
    }

    #[test]
    fn rejects_missing_malformed_and_wrong_tokens() {
        let cases = [
            ("s3cret", "no scheme"),
            ("Bearers3cret", "no space after scheme"),
            ("Basic s3cret", "other scheme"),
            ("Bearer ", "empty token"),
            ("Bearer s3cre", "prefix of the token"),
            ("Bearer s3cret2", "token plus suffix"),
            ("Bearer S3CRET", "token in other case"),
        ];
        for (value, why) in cases {
            let status = check_bearer(&metadata_with(value), "s3cret").unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{why}");
            assert!(!status.message().contains("s3cret"), "{why}: token echoed");
        }
        let status = check_bearer(&MetadataMap::new(), "s3cret").unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn empty_expected_token_refuses_everything() {
        for value in ["Bearer ", "Bearer  ", "Bearer x", "", "Bearer"] {
            let mut metadata = MetadataMap::new();
            if let Ok(v) = value.parse() {
                metadata.insert(TOKEN_METADATA, v);
            }
            let status = check_bearer(&metadata, "").unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{value:?}");
            assert!(status.message().contains("no control.token"), "{status:?}");
        }
    }

    #[test]
    fn attach_bearer_round_trips_through_check_bearer() {
        let mut attach = attach_bearer("tok-123").unwrap();
        let request = attach.call(Request::new(())).unwrap();
        assert!(check_bearer(request.metadata(), "tok-123").is_ok());
        assert!(check_bearer(request.metadata(), "tok-124").is_err());
    }

    #[test]
    fn attach_bearer_refuses_unsendable_tokens() {
        assert_eq!(attach_bearer("").unwrap_err(), TokenError::Empty);
        assert_eq!(attach_bearer("tök").unwrap_err(), TokenError::NotAscii);
        assert_eq!(attach_bearer("a\nb").unwrap_err(), TokenError::NotAscii);
        assert_eq!(attach_bearer("a b").unwrap_err(), TokenError::NotAscii);
        assert!(attach_bearer("A-z_0.9~+/=").is_ok());
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let server = format!("{:?}", bearer_interceptor("hunter2".into()));
        let client = format!("{:?}", attach_bearer("hunter2").unwrap());
        assert!(!server.contains("hunter2") && !client.contains("hunter2"));
    }
}
