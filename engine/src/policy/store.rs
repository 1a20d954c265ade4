//! The policy store: every version of the policy [`Document`] in Redis, and
//! each instance's watcher that swaps its [`LivePolicy`] when a new one is
//! stored.
//!
//! - A change is validated ([`document::compile`], the code every instance
//!   runs), then stored by [`PUT_LUA`] as version N+1 only if the store is
//!   still at N (compare-and-set: two admins never overwrite each other).
//! - Each instance reads `herald:policy:current` every [`POLL`] (one `GET`)
//!   and, when it moved, compiles the new version and swaps it in whole: the
//!   fleet follows within a second, and sending never pauses. A version an
//!   instance cannot compile (its providers differ) is refused there, counted
//!   (`herald_policy_versions_rejected_total`) and logged; it keeps the one it
//!   runs, and `policy status` shows the split.
//! - The config files seed version 1 when the store is empty; after that the
//!   store is the truth (`heraldctl policy export` writes it back to files).
//! - A rollback is a new version with an old document: history only grows.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Policy;
use super::document::{self, Context, Document};
use super::live::LivePolicy;
use crate::clock::now_ms;
use crate::conn::Conn;
use crate::error::Error;
use crate::keys;

/// How often an instance looks for a new version.
pub const POLL: Duration = Duration::from_millis(200);
/// How often an instance reports the version it runs.
pub const REPORT: Duration = Duration::from_secs(2);
/// An instance not heard from for this long is shown as gone.
pub const STALE_MS: i64 = 10_000;

/// Store a version if the store is at `ARGV[1]` (`-1`: any).
/// KEYS: current, versions. ARGV: expected version, the record's JSON.
/// Returns `{1, new version}` or `{0, current version}`.
pub const PUT_LUA: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
if want >= 0 and want ~= cur then
  return {0, cur}
end
local n = cur + 1
redis.call('HSET', KEYS[2], tostring(n), ARGV[2])
redis.call('SET', KEYS[1], n)
return {1, n}
"#;

/// One stored version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// Filled in from the hash field when read.
    #[serde(skip)]
    pub version: u64,
    /// The TOML document.
    pub doc: String,
    pub at_ms: i64,
    /// Token name (`bootstrap`, `alice`), or `files` for the seed.
    pub who: String,
    pub role: String,
    #[serde(default)]
    pub comment: String,
    /// The version it replaced (0 for the first).
    pub base: u64,
    pub sha256: String,
}

impl Stored {
    pub fn new(doc: String, who: &str, role: &str, comment: &str, base: u64) -> Stored {
        Stored {
            version: 0,
            sha256: crate::secret::sha256_hex(doc.as_bytes()),
            doc,
            at_ms: now_ms(),
            who: who.into(),
            role: role.into(),
            comment: comment.into(),
            base,
        }
    }
}

/// Why a version was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the policy is at version {current}, not {expected}: read it again and retry")]
    Conflict { expected: u64, current: u64 },
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Store `rec` as the next version if the store is at `expected`; returns
/// the new version.
pub async fn put(conn: &mut Conn, expected: u64, rec: &Stored) -> Result<u64, PutError> {
    let json = serde_json::to_string(rec).unwrap_or_default();
    let (ok, n): (i64, u64) = redis::Script::new(PUT_LUA)
        .key(keys::POLICY_CURRENT)
        .key(keys::POLICY_VERSIONS)
        .arg(expected)
        .arg(json)
        .invoke_async(conn)
        .await?;
    if ok == 1 {
        Ok(n)
    } else {
        Err(PutError::Conflict {
            expected,
            current: n,
        })
    }
}

/// The current version (0: the store is empty).
pub async fn current(conn: &mut Conn) -> redis::RedisResult<u64> {
    let v: Option<u64> = redis::cmd("GET")
        .arg(keys::POLICY_CURRENT)
        .query_async(conn)
        .await?;
    Ok(v.unwrap_or(0))
}

fn decode(version: u64, json: &str) -> Option<Stored> {
    match serde_json::from_str::<Stored>(json) {
        Ok(mut s) => {
            s.version = version;
            Some(s)
        }
        Err(e) => {
            tracing::warn!(version, error = %e, "unreadable policy version record");
            None
        }
    }
}

/// One version, if stored.
pub async fn get(conn: &mut Conn, version: u64) -> redis::RedisResult<Option<Stored>> {
    let json: Option<String> = redis::cmd("HGET")
        .arg(keys::POLICY_VERSIONS)
        .arg(version)
        .query_async(conn)
        .await?;
    Ok(json.and_then(|j| decode(version, &j)))
}

/// Up to `limit` versions, newest first, in one `HMGET`.
pub async fn history(conn: &mut Conn, limit: usize) -> redis::RedisResult<Vec<Stored>> {
    let cur = current(conn).await?;
    let wanted: Vec<u64> = (1..=cur).rev().take(limit.max(1)).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let found: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(keys::POLICY_VERSIONS)
        .arg(&wanted)
        .query_async(conn)
        .await?;
    Ok(wanted
        .iter()
        .zip(found)
        .filter_map(|(v, j)| j.and_then(|j| decode(*v, &j)))
        .collect())
}

/// What one instance last reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    pub version: u64,
    pub seen_ms: i64,
}

/// Record that `consumer` runs `version`.
pub async fn report(conn: &mut Conn, consumer: &str, version: u64) -> redis::RedisResult<()> {
    let json = serde_json::to_string(&Seen {
        version,
        seen_ms: now_ms(),
    })
    .unwrap_or_default();
    redis::cmd("HSET")
        .arg(keys::POLICY_INSTANCES)
        .arg(consumer)
        .arg(json)
        .query_async(conn)
        .await
}

/// An instance silent this long is forgotten (each process has its own
/// consumer name, so every restart leaves one behind).
pub const FORGET_MS: i64 = 24 * 3600 * 1000;

/// Every instance's last report, by consumer name; reports older than
/// [`FORGET_MS`] are deleted.
pub async fn instances(conn: &mut Conn) -> redis::RedisResult<Vec<(String, Seen)>> {
    let all: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::POLICY_INSTANCES)
        .query_async(conn)
        .await?;
    let now = now_ms();
    let mut live = Vec::with_capacity(all.len());
    let mut gone = Vec::new();
    for (k, v) in all {
        match serde_json::from_str::<Seen>(&v) {
            Ok(s) if now - s.seen_ms <= FORGET_MS => live.push((k, s)),
            _ => gone.push(k),
        }
    }
    if !gone.is_empty() {
        let _: i64 = redis::cmd("HDEL")
            .arg(keys::POLICY_INSTANCES)
            .arg(&gone)
            .query_async(conn)
            .await?;
    }
    Ok(live)
}

/// The policy to start on: the store's current version, or — when the store
/// is empty — `seed` (the config files, plus any throttle overrides an older
/// release kept in `herald:throttles`) stored as version 1 first.
pub async fn load_or_seed(
    conn: &mut Conn,
    seed: &Document,
    ctx: &Context,
) -> Result<Policy, Error> {
    loop {
        let cur = current(conn)
            .await
            .map_err(|e| Error::redis("read the policy version", e))?;
        if cur == 0 {
            let mut doc = seed.clone();
            let legacy = crate::throttle::live::list(conn)
                .await
                .map_err(|e| Error::redis("read throttle overrides", e))?;
            doc.throttles.extend(legacy);
            // The seed must compile here first: a bad file never becomes v1.
            document::compile(&doc, 1, ctx)?;
            let rec = Stored::new(
                doc.to_text(),
                "files",
                "system",
                "seeded from the config files",
                0,
            );
            match put(conn, 0, &rec).await {
                Ok(v) => tracing::info!(version = v, "policy store seeded from the config files"),
                Err(PutError::Conflict { .. }) => {} // another instance seeded it
                Err(PutError::Redis(e)) => return Err(Error::redis("seed the policy store", e)),
            }
            continue;
        }
        let Some(stored) = get(conn, cur)
            .await
            .map_err(|e| Error::redis("read the policy", e))?
        else {
            return Err(Error::caller(format!(
                "policy version {cur} is current but not stored (herald:policy:versions)"
            )));
        };
        let doc = Document::parse(&stored.doc)?;
        let policy = document::compile(&doc, cur, ctx).map_err(|e| {
            Error::caller(format!(
                "policy version {cur} in Redis cannot run on this instance: {e} (fix it with `heraldctl policy set` or `policy rollback`)"
            ))
        })?;
        if doc.tenants != seed.tenants || doc.rules != seed.rules || doc.routes != seed.routes {
            tracing::info!(
                version = cur,
                "the policy store differs from the config files; the store wins (`heraldctl policy export` writes it to files)"
            );
        }
        return Ok(policy);
    }
}

/// Follow the store: every [`POLL`], swap in a new version; every
/// [`REPORT`], say which version runs here. `on_swap(old, new)` runs after
/// each swap (the throttle overrides are applied there).
pub async fn run_watcher(
    live: std::sync::Arc<LivePolicy>,
    ctx: Context,
    mut conn: Conn,
    consumer: String,
    on_swap: impl Fn(&Policy, &Policy) + Send,
    shutdown: CancellationToken,
) {
    let mut refused: u64 = 0;
    let mut last_report: Option<std::time::Instant> = None;
    crate::telemetry::policy_version(live.version());
    loop {
        match current(&mut conn).await {
            Ok(cur) if cur != live.version() && cur != refused && cur > 0 => {
                match get(&mut conn, cur).await {
                    Ok(Some(stored)) => {
                        let compiled = Document::parse(&stored.doc)
                            .and_then(|d| document::compile(&d, cur, &ctx));
                        match compiled {
                            Ok(next) => {
                                let old = live.store(next);
                                let new = live.load_full();
                                on_swap(&old, &new);
                                crate::telemetry::policy_version(cur);
                                tracing::info!(
                                    from = old.version,
                                    to = cur,
                                    who = %stored.who,
                                    "policy version swapped in"
                                );
                                last_report = None;
                            }
                            Err(e) => {
                                refused = cur;
                                crate::telemetry::policy_rejected();
                                tracing::error!(
                                    version = cur,
                                    running = live.version(),
                                    error = %e,
                                    "a stored policy version cannot run here; keeping the current one"
                                );
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        crate::telemetry::redis_error("policy");
                        tracing::warn!(error = %e, "reading the policy failed");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                crate::telemetry::redis_error("policy");
                tracing::warn!(error = %e, "reading the policy version failed");
            }
        }
        if last_report.is_none_or(|t| t.elapsed() >= REPORT) {
            match report(&mut conn, &consumer, live.version()).await {
                Ok(()) => last_report = Some(std::time::Instant::now()),
                Err(e) => tracing::debug!(error = %e, "reporting the policy version failed"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
