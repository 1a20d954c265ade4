//! Paused tenants, fleet-wide.
//!
//! The source of truth is the Redis hash `herald:paused` (tenant → JSON
//! `{reason, paused_at_ms, drop}`). Every instance keeps an immutable
//! snapshot of the paused names behind an `ArcSwap`, refreshed every 500 ms,
//! so a pause taken on one instance holds on all within a second, and the
//! per-message check is a lock-free load plus a hash lookup (skipped
//! entirely while nothing is paused).
//!
//! **A pause holds, it does not drop.** A paused tenant's messages are
//! `deferred` / `paused` (no `until`) and wait in `herald:held:<tenant>`.
//! A resume moves them into the delayed set spread at `control.resume_rate`
//! messages per second, so they are decided again (expiry, quiet hours,
//! caps, consent) and sent without a burst. The release script refuses while
//! the tenant is paused, and every instance sweeps the held sets of tenants
//! no longer paused each refresh, so a message held by an instance whose
//! snapshot was still stale at the resume is released within a second too.
//! A pause with `drop` suppresses instead (an emergency).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;

use crate::keys::{self, PAUSED};

/// How often each instance re-reads `herald:paused`.
pub const REFRESH: Duration = Duration::from_millis(500);

/// One pause, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    pub paused_at_ms: i64,
    /// Suppress the tenant's messages instead of holding them.
    #[serde(default)]
    pub drop: bool,
}

/// Move a resumed tenant's held messages into the delayed set. Keys: held
/// set, delayed set, paused hash, held-tenants set. Args: tenant, first due
/// instant (ms), ms between two releases, message-hash prefix, record TTL
/// (ms), limit. Returns the number moved, or -1 while the tenant is paused.
/// Each record's TTL is set back to its due time plus the record TTL.
pub const RELEASE_HELD_LUA: &str = r#"
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return -1 end
local held = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[6]) - 1)
local due = tonumber(ARGV[2])
local step = tonumber(ARGV[3])
for i, m in ipairs(held) do
  local at = due + (i - 1) * step
  redis.call('ZADD', KEYS[2], at, m)
  local k = ARGV[4] .. m
  redis.call('HSET', k, 'until', at)
  redis.call('PEXPIRE', k, math.floor(at - due + tonumber(ARGV[5])))
  redis.call('ZREM', KEYS[1], m)
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[4], ARGV[1]) end
return #held
"#;

/// This instance's view of the paused tenants: name → `drop`.
#[derive(Default)]
pub struct TenantPauses {
    names: ArcSwap<HashMap<String, bool>>,
}

impl TenantPauses {
    /// Is `tenant` paused? Lock-free.
    #[inline]
    pub fn is_paused(&self, tenant: &str) -> bool {
        self.paused(tenant).is_some()
    }

    /// `Some(drop)` when `tenant` is paused. Lock-free.
    #[inline]
    pub fn paused(&self, tenant: &str) -> Option<bool> {
        let names = self.names.load();
        if names.is_empty() {
            return None;
        }
        names.get(tenant).copied()
    }

    fn replace(&self, names: HashMap<String, bool>) {
        self.names.store(Arc::new(names));
    }

    /// Read every pause from Redis and swap the snapshot.
    pub async fn refresh(&self, conn: &mut Conn) -> redis::RedisResult<BTreeMap<String, Pause>> {
        let all = list(conn).await?;
        self.replace(all.iter().map(|(t, p)| (t.clone(), p.drop)).collect());
        Ok(all)
    }

    /// Pause `tenant` fleet-wide. Returns the pause in force and whether this
    /// call created it (an existing pause keeps its reason and time).
    pub async fn pause(
        &self,
        conn: &mut Conn,
        tenant: &str,
        reason: &str,
        drop: bool,
        now_ms: i64,
    ) -> redis::RedisResult<(Pause, bool)> {
        let pause = Pause {
            reason: reason.to_string(),
            paused_at_ms: now_ms,
            drop,
        };
        let json = serde_json::to_string(&pause).unwrap_or_default();
        let (created, stored): (bool, Option<String>) = redis::pipe()
            .cmd("HSETNX")
            .arg(PAUSED)
            .arg(tenant)
            .arg(json)
            .cmd("HGET")
            .arg(PAUSED)
            .arg(tenant)
            .query_async(conn)
            .await?;
        let current = stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(pause);
        self.refresh(conn).await?;
        Ok((current, created))
    }

    /// Resume `tenant`. Returns whether it was paused.
    pub async fn resume(&self, conn: &mut Conn, tenant: &str) -> redis::RedisResult<bool> {
        let removed: i64 = redis::cmd("HDEL")
            .arg(PAUSED)
            .arg(tenant)
            .query_async(conn)
            .await?;
        self.refresh(conn).await?;
        Ok(removed > 0)
    }
}

/// Every pause in Redis, by tenant name.
pub async fn list(conn: &mut Conn) -> redis::RedisResult<BTreeMap<String, Pause>> {
    let raw: BTreeMap<String, String> = redis::cmd("HGETALL").arg(PAUSED).query_async(conn).await?;
    Ok(raw
        .into_iter()
        .map(|(tenant, json)| {
            let pause = serde_json::from_str(&json).unwrap_or(Pause {
                reason: json,
                paused_at_ms: 0,
                drop: false,
            });
            (tenant, pause)
        })
        .collect())
}

/// How a resume releases held messages.
#[derive(Debug, Clone, Copy)]
pub struct Release {
    /// Messages per second put back into the queue (`control.resume_rate`).
    pub per_second: u32,
    /// The record TTL after release (`dispatch.idempotency_ttl`).
    pub record_ttl_ms: u64,
}

/// Release `tenant`'s held messages into the delayed set, spread at
/// `release.per_second` from now. Returns how many moved; `None` while the
/// tenant is still paused (nothing moves).
pub async fn release_held(
    conn: &mut Conn,
    tenant: &str,
    release: Release,
    now_ms: i64,
) -> redis::RedisResult<Option<u64>> {
    const LIMIT: i64 = 1000;
    // Hashed once: the sweep calls this every refresh on every instance.
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(RELEASE_HELD_LUA));
    let script = &*SCRIPT;
    let step = 1000.0 / f64::from(release.per_second.max(1));
    let mut moved = 0u64;
    loop {
        // The first message of each chunk follows the last one's slot.
        let due = now_ms + (moved as f64 * step) as i64;
        let n: i64 = script
            .key(keys::held(tenant))
            .key(keys::DELAYED)
            .key(keys::PAUSED)
            .key(keys::HELD_TENANTS)
            .arg(tenant)
            .arg(due)
            .arg(step.max(0.0))
            .arg(keys::MSG_PREFIX)
            .arg(release.record_ttl_ms)
            .arg(LIMIT)
            .invoke_async(conn)
            .await?;
        if n < 0 {
            return Ok(None);
        }
        moved += n as u64;
        if n < LIMIT {
            return Ok(Some(moved));
        }
    }
}

/// Release the held messages of every tenant that has some and is no
/// longer paused (stragglers held by a stale snapshot, or a resume whose
/// release was cut short).
async fn sweep(conn: &mut Conn, pauses: &TenantPauses, release: Release) -> redis::RedisResult<()> {
    let tenants: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::HELD_TENANTS)
        .query_async(conn)
        .await?;
    for t in tenants {
        if pauses.is_paused(&t) {
            continue;
        }
        if let Some(n) = release_held(conn, &t, release, crate::clock::now_ms()).await?
            && n > 0
        {
            tracing::info!(tenant = %t, released = n, "held messages of a resumed tenant released");
        }
    }
    Ok(())
}

/// Keep the snapshot fresh, and release what resumed tenants still hold,
/// until `stop`.
pub async fn run_refresher(
    pauses: Arc<TenantPauses>,
    mut conn: Conn,
    release: Release,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = pauses.refresh(&mut conn).await {
            crate::telemetry::redis_error("paused_refresh");
            tracing::debug!(error = %e, "refreshing paused tenants failed; keeping the last snapshot");
            continue;
        }
        if let Err(e) = sweep(&mut conn, &pauses, release).await {
            crate::telemetry::redis_error("release_held");
            tracing::debug!(error = %e, "releasing held messages failed; retried next refresh");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lookup() {
        let p = TenantPauses::default();
        assert!(!p.is_paused("acme"));
        p.replace([("acme".to_string(), false), ("initech".to_string(), true)].into());
        assert!(p.is_paused("acme"));
        assert_eq!(p.paused("acme"), Some(false));
        assert_eq!(p.paused("initech"), Some(true));
        assert!(!p.is_paused("globex"));
    }
}
