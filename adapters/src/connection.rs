//! The connection settings every HTTP provider (twilio, sns, http) takes
//! under the same names, their validation and the pooled client built from
//! them.

use std::fmt;
use std::time::Duration;

use crate::config::ConfigError;
use crate::pool::{Pool, PoolSettings};
use crate::transport::HttpClient;

/// How an HTTP provider talks to its server: timeouts, the connection pool
/// and the protocol. Embedded as `connection` in
/// [`TwilioSettings`](crate::TwilioSettings),
/// [`SnsSettings`](crate::SnsSettings) and
/// [`HttpSettings`](crate::HttpSettings); the engine's config layer fills it
/// from `providers.<name>.{timeout_ms, connect_timeout_ms, http2}`.
#[derive(Clone, Copy)]
pub struct ConnectionSettings {
    /// Budget for one send: waiting for a connection, writing the request and
    /// reading the whole response. Must be greater than zero.
    pub request_timeout: Duration,
    /// Budget for the TCP connect of a new connection. Must be greater than
    /// zero.
    pub connect_timeout: Duration,
    /// Idle connections kept per host. High, so the connections opened during
    /// a burst at 10k+ concurrent sends are reused instead of re-handshaked
    /// (TLS costs a round trip or two). The pool's idle queue grows with what
    /// it holds, not with this bound.
    pub pool_max_idle_per_host: usize,
    /// How long an idle connection stays in the pool.
    pub pool_idle_timeout: Duration,
    /// Speak HTTP/2 only: prior knowledge (h2c) for `http://`, ALPN `h2` for
    /// `https://`. Thousands of concurrent sends then share one connection
    /// instead of holding one HTTP/1.1 connection each: at 20,000 in flight
    /// Herald's peak RSS is 109 MiB over h2 (`scripts/bench.sh concurrency`),
    /// 264 MiB at 10,000 over HTTP/1.1; h2 also costs less CPU a send (the
    /// `throughput-h2` scenario). Off by default: the pool opens a
    /// single h2 connection per host, so a server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS (often ~100) would cap concurrency;
    /// turn it on only for a server known to speak h2.
    pub http2: bool,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 32_768,
            // Shorter than the idle timeouts of common load balancers (AWS
            // ALB: 60 s), so Herald drops an idle connection before the
            // server does: a server-side close racing a reuse is what turns
            // an otherwise clean send into an ambiguous one.
            pool_idle_timeout: Duration::from_secs(30),
            http2: false,
        }
    }
}

impl fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug_fields(&mut f.debug_struct("ConnectionSettings"))
            .finish()
    }
}

/// The connection settings from the keys every HTTP provider takes
/// (`timeout_ms`, `connect_timeout_ms`, `http2`); an unset key keeps the
/// default.
pub(crate) fn from_keys(
    kind: &'static str,
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    http2: Option<bool>,
) -> Result<ConnectionSettings, ConfigError> {
    let mut c = ConnectionSettings {
        http2: http2.unwrap_or(false),
        ..Default::default()
    };
    let positive = |key: &'static str, ms: u64| {
        if ms == 0 {
            Err(ConfigError::new(kind, key, "must be greater than 0"))
        } else {
            Ok(Duration::from_millis(ms))
        }
    };
    if let Some(t) = timeout_ms {
        c.request_timeout = positive("timeout_ms", t)?;
    }
    if let Some(t) = connect_timeout_ms {
        c.connect_timeout = positive("connect_timeout_ms", t)?;
    }
    Ok(c)
}

impl ConnectionSettings {
    /// Adds the fields to a provider's `Debug` as its own, so its output
    /// reads as if they were declared on the provider's settings.
    pub(crate) fn debug_fields<'d, 'a, 'b>(
        &self,
        d: &'d mut fmt::DebugStruct<'a, 'b>,
    ) -> &'d mut fmt::DebugStruct<'a, 'b> {
        d.field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("http2", &self.http2)
    }

    /// Checks the settings, naming the offending key as the provider's own
    /// (`request_timeout`, `connect_timeout`) through `invalid`, the
    /// provider's constructor of its config error.
    pub(crate) fn validate<E>(
        &self,
        invalid: impl Fn(&'static str, &'static str) -> E,
    ) -> Result<(), E> {
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be greater than zero"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "must be greater than zero"));
        }
        Ok(())
    }

    /// The provider's pooled client. Needs no runtime; sends do.
    pub(crate) fn build_client(&self) -> HttpClient {
        Pool::new(PoolSettings {
            connect_timeout: self.connect_timeout,
            pool_max_idle_per_host: self.pool_max_idle_per_host,
            pool_idle_timeout: self.pool_idle_timeout,
            http2: self.http2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let key = |c: ConnectionSettings| c.validate(|key, _| key).err();
        assert_eq!(key(ConnectionSettings::default()), None);
        assert_eq!(
            key(ConnectionSettings {
                request_timeout: Duration::ZERO,
                ..Default::default()
            }),
            Some("request_timeout")
        );
        assert_eq!(
            key(ConnectionSettings {
                connect_timeout: Duration::ZERO,
                ..Default::default()
            }),
            Some("connect_timeout")
        );
    }

    #[test]
    fn debug_lists_every_field() {
        const FIELDS: &str = "request_timeout: 10s, connect_timeout: 5s, \
                              pool_max_idle_per_host: 32768, pool_idle_timeout: 30s, http2: false }";
        assert_eq!(
            format!("{:?}", ConnectionSettings::default()),
            format!("ConnectionSettings {{ {FIELDS}")
        );
        // A provider's settings list them as their own, not nested.
        let http = format!("{:?}", crate::HttpSettings::default());
        assert!(http.ends_with(&format!("from: None, {FIELDS}")), "{http}");
        let twilio = format!("{:?}", crate::TwilioSettings::default());
        assert!(
            twilio.ends_with(&format!("status_callback: None, {FIELDS}")),
            "{twilio}"
        );
        let sns = format!("{:?}", crate::SnsSettings::default());
        assert!(
            sns.ends_with(&format!("sender_id: None, {FIELDS}")),
            "{sns}"
        );
    }
}
