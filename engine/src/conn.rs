//! Redis connections: the `[redis]` settings, the one connection type every
//! part holds, and the one retry policy every Redis loop follows.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

use crate::check::{ConfigError, key_err, ms, positive};
use crate::error::Error;
use crate::telemetry;

/// Every Redis connection Herald holds: multiplexed, and reconnecting after a
/// Redis restart.
pub type Conn = ConnectionManager;

/// `[redis]`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// `redis://`, `rediss://` (TLS) or `unix://`; a password in it is never
    /// printed.
    pub url: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    /// Run on a Redis without an append-only file or with eviction (demos
    /// and benchmarks only): Herald warns loudly and says so in a metric.
    pub allow_volatile: bool,
    /// PEM file of the certificate authority a `rediss://` server's
    /// certificate is checked against (unset: the system's roots).
    pub tls_ca_file: Option<String>,
}

impl std::fmt::Debug for RedisSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSection")
            .field("url", &redact_url(&self.url))
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("response_timeout_ms", &self.response_timeout_ms)
            .field("allow_volatile", &self.allow_volatile)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// `url` with its password (and user) replaced: what logs and `Debug` show.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://<redacted>@{host}"),
        None => url.to_string(),
    }
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            connect_timeout_ms: 2_000,
            response_timeout_ms: 5_000,
            allow_volatile: false,
            tls_ca_file: None,
        }
    }
}

/// Validated `[redis]`.
#[derive(Clone)]
pub struct RedisConfig {
    pub url: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub allow_volatile: bool,
    /// The CA certificate(s) of `tls_ca_file`, PEM.
    pub tls_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("allow_volatile", &self.allow_volatile)
            .field("tls_ca", &self.tls_ca.as_ref().map(|c| c.len()))
            .finish()
    }
}

impl RedisConfig {
    /// A client for the URL, with the configured CA for `rediss://`.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.tls_ca {
            Some(ca) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => redis::Client::open(self.url.as_str()),
        }
    }
}

impl RedisSection {
    pub fn validate(self) -> Result<RedisConfig, ConfigError> {
        if !(self.url.starts_with("redis://")
            || self.url.starts_with("rediss://")
            || self.url.starts_with("redis+unix://")
            || self.url.starts_with("unix://"))
        {
            return Err(key_err(
                "redis.url",
                "must start with redis://, rediss:// or unix://",
            ));
        }
        if redis::Client::open(self.url.as_str()).is_err() {
            return Err(key_err("redis.url", "not a valid Redis URL"));
        }
        positive("redis.connect_timeout_ms", self.connect_timeout_ms)?;
        positive("redis.response_timeout_ms", self.response_timeout_ms)?;
        let tls_ca =
            match &self.tls_ca_file {
                None => None,
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    key_err("redis.tls_ca_file", format!("cannot read {path}: {e}"))
                })?),
            };
        if tls_ca.is_some() && !self.url.starts_with("rediss://") {
            return Err(key_err("redis.tls_ca_file", "is for a rediss:// url (TLS)"));
        }
        Ok(RedisConfig {
            url: self.url,
            connect_timeout: ms(self.connect_timeout_ms),
            response_timeout: ms(self.response_timeout_ms),
            allow_volatile: self.allow_volatile,
            tls_ca,
        })
    }
}

/// Open a reconnecting connection. `response_timeout` must exceed any
/// blocking read made on it: redis 1.x times out a read after 500 ms unless
/// told otherwise.
pub async fn connect(cfg: &RedisConfig, response_timeout: Duration) -> Result<Conn, Error> {
    let client = cfg.client().map_err(|e| Error::redis("connect", e))?;
    let mcfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    match tokio::time::timeout(
        cfg.connect_timeout + Duration::from_secs(1),
        ConnectionManager::new_with_config(client, mcfg),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(Error::redis("connect", e)),
        Err(_) => Err(Error::RedisTimeout {
            op: "connect",
            after: cfg.connect_timeout,
        }),
    }
}

/// Whether the Redis server keeps what Herald writes: the append-only file
/// on (`aof_enabled:1`, its last write ok, `appendfsync` `always` or
/// `everysec` when `CONFIG` may be read) and nothing evicted
/// (`maxmemory_policy:noeviction`). `Err` says what is missing. Read with
/// `INFO`, which managed services allow where `CONFIG` is renamed away.
pub async fn durability(conn: &mut Conn) -> Result<Result<(), String>, Error> {
    let (persistence, memory): (String, String) = redis::pipe()
        .cmd("INFO")
        .arg("persistence")
        .cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .map_err(|e| Error::redis("durability", e))?;
    let fsync: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query_async(conn)
        .await;
    let fsync = fsync.ok().and_then(|v| v.get(1).cloned());
    Ok(judge_durability(&persistence, &memory, fsync.as_deref()))
}

/// The verdict on `INFO persistence`, `INFO memory` and `appendfsync`.
pub fn judge_durability(
    persistence: &str,
    memory: &str,
    fsync: Option<&str>,
) -> Result<(), String> {
    let field = |text: &str, name: &str| -> Option<String> {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(name)?
                .strip_prefix(':')
                .map(str::to_string)
        })
    };
    let mut missing = Vec::new();
    match field(persistence, "aof_enabled").as_deref() {
        Some("1") => {
            if let Some(status) = field(persistence, "aof_last_write_status")
                && status != "ok"
            {
                missing.push(format!(
                    "the append-only file's last write failed ({status})"
                ));
            }
            if let Some(f) = fsync
                && !matches!(f, "always" | "everysec")
            {
                missing.push(format!(
                    "appendfsync is `{f}` (always or everysec keeps writes across a crash)"
                ));
            }
        }
        _ => missing.push("the append-only file is off (appendonly no)".into()),
    }
    match field(memory, "maxmemory_policy").as_deref() {
        Some("noeviction") => {}
        Some(p) => missing.push(format!(
            "maxmemory-policy is `{p}`: Redis may evict consent and claims (noeviction)"
        )),
        None => missing.push("maxmemory-policy is unknown".into()),
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

/// The retry policy of every Redis loop (reads, claims, outcome writes, the
/// consent feed): wait 50 ms after the first failure, double each time, at
/// most 2 s; back to 50 ms after a success. Redis failures are outages or
/// restarts, not overload, so the waits stay short: a restart is noticed
/// within 2 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(50);
    pub const MAX: Duration = Duration::from_secs(2);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// Sleep for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Run `pipe` until Redis answers with a reply `valid` accepts, backing off
/// between tries ([`Backoff`]); `None` only when `stop` says to give up (the
/// work stays in Redis for another try). Each failure is counted under `op`.
pub async fn query_retrying<T: redis::FromRedisValue>(
    conn: &mut Conn,
    pipe: &redis::Pipeline,
    op: &'static str,
    valid: impl Fn(&T) -> bool,
    stop: impl Fn() -> bool,
) -> Option<T> {
    let mut backoff = Backoff::new();
    loop {
        match pipe.query_async::<T>(conn).await {
            Ok(v) if valid(&v) => return Some(v),
            Ok(_) => {
                telemetry::redis_error(op);
                tracing::warn!(op, "unexpected reply from Redis; retrying");
            }
            Err(e) => {
                telemetry::redis_error(op);
                tracing::warn!(op, error = %e, "Redis round trip failed; retrying");
            }
        }
        if stop() {
            return None;
        }
        backoff.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_needs_the_aof_and_no_eviction() {
        let aof = "# Persistence\r\naof_enabled:1\r\naof_last_write_status:ok\r\n";
        let no_aof = "# Persistence\r\naof_enabled:0\r\n";
        let keep = "# Memory\r\nmaxmemory_policy:noeviction\r\n";
        let evict = "# Memory\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(judge_durability(aof, keep, Some("everysec")), Ok(()));
        assert_eq!(judge_durability(aof, keep, None), Ok(()), "CONFIG refused");
        let cases = [
            (no_aof, keep, Some("everysec"), "append-only file is off"),
            (aof, evict, Some("always"), "allkeys-lru"),
            (aof, keep, Some("no"), "appendfsync is `no`"),
            (
                "aof_enabled:1\r\naof_last_write_status:err\r\n",
                keep,
                None,
                "last write failed",
            ),
            ("", "", None, "maxmemory-policy is unknown"),
        ];
        for (p, m, f, want) in cases {
            let why = judge_durability(p, m, f).expect_err(want);
            assert!(why.contains(want), "{why}");
        }
    }

    #[test]
    fn a_redis_password_is_never_printed() {
        let url = "redis://herald:s3cret-pass@10.0.0.5:6379/0";
        assert_eq!(redact_url(url), "redis://<redacted>@10.0.0.5:6379/0");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let section = RedisSection {
            url: url.into(),
            ..Default::default()
        };
        assert!(!format!("{section:?}").contains("s3cret"));
        let cfg = section.validate().expect("valid");
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), Backoff::FIRST);
    }
}
