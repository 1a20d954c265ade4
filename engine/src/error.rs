//! Herald's error type: where a failure came from, and whether trying the
//! same thing again is safe.
//!
//! "Safe" follows Pingora's rule for re-sending a request, which is the
//! right one for an SMS, where a duplicate is a real cost to a real person:
//! a retry is safe only when the failure certainly left nothing behind (the
//! command or request never ran). A Redis timeout or a dropped connection
//! after the command was written is *not* safe: the command may have run,
//! and only an idempotent write may be repeated.

use std::time::Duration;

use redis::RetryMethod;

use crate::check::ConfigError;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Redis: a command failed or did not answer.
    Redis,
    /// An SMS provider (or its lookup API).
    Provider,
    /// Whoever called Herald: an HTTP or gRPC request, an import file.
    Caller,
    /// The configuration.
    Config,
    /// The machine: a port to bind, a file to read.
    Host,
}

/// A failure inside Herald's library code. Binaries add context with
/// `anyhow`; the library never does.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Redis command failed; `op` names what Herald was doing.
    #[error("redis ({op}): {source}")]
    Redis {
        op: &'static str,
        #[source]
        source: redis::RedisError,
    },
    /// Redis did not answer in time.
    #[error("redis ({op}): no answer within {after:?}")]
    RedisTimeout { op: &'static str, after: Duration },
    /// A provider could not be set up or refused a request.
    #[error("provider `{provider}`: {reason}")]
    Provider { provider: String, reason: String },
    /// The caller's input cannot be used; `reason` says why.
    #[error("{reason}")]
    Caller { reason: String },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The host refused: `what` names the address or file.
    #[error("{what}: {source}")]
    Host {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn redis(op: &'static str, source: redis::RedisError) -> Error {
        Error::Redis { op, source }
    }

    pub fn caller(reason: impl Into<String>) -> Error {
        Error::Caller {
            reason: reason.into(),
        }
    }

    pub fn host(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Host {
            what: what.into(),
            source,
        }
    }

    pub fn origin(&self) -> Origin {
        match self {
            Error::Redis { .. } | Error::RedisTimeout { .. } => Origin::Redis,
            Error::Provider { .. } => Origin::Provider,
            Error::Caller { .. } => Origin::Caller,
            Error::Config(_) => Origin::Config,
            Error::Host { .. } => Origin::Host,
        }
    }

    /// Whether the same operation may be tried again without risk of doing
    /// it twice: the failure certainly left nothing behind. A caller error
    /// or a bad config fails the same way again, so it is not "safe" either:
    /// retrying is pointless.
    pub fn retry_safe(&self) -> bool {
        match self {
            Error::Redis { source, .. } => {
                // Refused before the command left, or refused by the server
                // without running it (LOADING, TRYAGAIN, MASTERDOWN…).
                source.is_connection_refusal()
                    || matches!(source.retry_method(), RetryMethod::WaitAndRetry)
            }
            // The request may have been written before the answer timed out.
            Error::RedisTimeout { .. } => false,
            Error::Provider { .. } | Error::Caller { .. } | Error::Config(_) => false,
            Error::Host { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_and_retry_safety() {
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let reset =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let e = Error::redis("claim", refused);
        assert_eq!(e.origin(), Origin::Redis);
        assert!(e.retry_safe(), "a refused connection ran nothing");
        // A reset after the command was written: it may have run.
        assert!(!Error::redis("claim", reset).retry_safe());
        let timeout = Error::RedisTimeout {
            op: "write_outcomes",
            after: Duration::from_secs(5),
        };
        assert!(!timeout.retry_safe());
        assert_eq!(Error::caller("bad line").origin(), Origin::Caller);
        assert!(!Error::caller("bad line").retry_safe());
        assert!(e.to_string().starts_with("redis (claim): "), "{e}");
    }
}
