//! Paused tenants, fleet-wide.
//!
//! The source of truth is the Redis hash `herald:paused` (tenant → JSON
//! `{reason, paused_at_ms}`). Every instance keeps an immutable snapshot of
//! the paused names behind an `ArcSwap`, refreshed every 500 ms, so a pause
//! taken on one instance holds on all within a second, and the per-message
//! check is a lock-free load plus a hash lookup (skipped entirely while
//! nothing is paused).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;

use crate::keys::PAUSED;

/// How often each instance re-reads `herald:paused`.
pub const REFRESH: Duration = Duration::from_millis(500);

/// One pause, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    pub paused_at_ms: i64,
}

/// This instance's view of the paused tenants.
#[derive(Default)]
pub struct TenantPauses {
    names: ArcSwap<HashSet<String>>,
}

impl TenantPauses {
    /// Is `tenant` paused? Lock-free.
    #[inline]
    pub fn is_paused(&self, tenant: &str) -> bool {
        let names = self.names.load();
        !names.is_empty() && names.contains(tenant)
    }

    fn replace(&self, names: HashSet<String>) {
        self.names.store(Arc::new(names));
    }

    /// Read every pause from Redis and swap the snapshot.
    pub async fn refresh(&self, conn: &mut Conn) -> redis::RedisResult<BTreeMap<String, Pause>> {
        let all = list(conn).await?;
        self.replace(all.keys().cloned().collect());
        Ok(all)
    }

    /// Pause `tenant` fleet-wide. Returns the pause in force and whether this
    /// call created it (an existing pause keeps its reason and time).
    pub async fn pause(
        &self,
        conn: &mut Conn,
        tenant: &str,
        reason: &str,
        now_ms: i64,
    ) -> redis::RedisResult<(Pause, bool)> {
        let pause = Pause {
            reason: reason.to_string(),
            paused_at_ms: now_ms,
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
            });
            (tenant, pause)
        })
        .collect())
}

/// Keep the snapshot fresh until `stop`.
pub async fn run_refresher(pauses: Arc<TenantPauses>, mut conn: Conn, stop: CancellationToken) {
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
        p.replace(["acme".to_string()].into_iter().collect());
        assert!(p.is_paused("acme"));
        assert!(!p.is_paused("globex"));
    }
}
