//! Live throttle changes, fleet-wide: the control plane stores limit
//! overrides in the Redis hash `herald:throttles` (lane → JSON), and every
//! instance re-reads it every 500 ms and swaps in the limiters that changed
//! (`Throttle::set_carrier_limit` / `set_sender_limit`) — no restart.
//!
//! Lanes are named `carrier:<name>` or `sender:<number or service id>`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Limit, Throttle};
use crate::conn::Conn;

use crate::keys::THROTTLES;

/// How often each instance re-reads it.
pub const REFRESH: Duration = Duration::from_millis(500);

/// One stored override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// 0: not throttled.
    pub segments: u32,
    /// `second`, `minute`, `hour` or `day`.
    pub per: String,
    /// 0: the default burst.
    pub burst: u32,
    pub set_at_ms: i64,
}

impl Override {
    /// The limit it stands for (`None`: not throttled).
    pub fn limit(&self) -> Result<Option<Limit>, String> {
        Limit::parse(
            self.segments,
            &self.per,
            (self.burst > 0).then_some(self.burst),
        )
    }
}

/// A lane name, checked: `carrier:<known carrier>` or `sender:<id>`.
pub enum Lane<'a> {
    Carrier(&'a str),
    Sender(&'a str),
}

pub fn parse_lane(lane: &str) -> Option<Lane<'_>> {
    match lane.split_once(':') {
        Some(("carrier", c)) if !c.is_empty() => Some(Lane::Carrier(c)),
        Some(("sender", s)) if !s.is_empty() => Some(Lane::Sender(s)),
        _ => None,
    }
}

/// Apply one override to this instance's throttle.
pub fn apply(throttle: &Throttle, lane: &str, o: &Override) -> Result<(), String> {
    let limit = o.limit()?;
    match parse_lane(lane) {
        Some(Lane::Carrier(c)) => throttle
            .set_carrier_limit(c, limit)
            .map_err(|e| e.to_string()),
        Some(Lane::Sender(s)) => {
            throttle.set_sender_limit(s, limit);
            Ok(())
        }
        None => Err(format!(
            "lane `{lane}`: write carrier:<name> or sender:<number>"
        )),
    }
}

/// Every stored override.
pub async fn list(conn: &mut Conn) -> redis::RedisResult<BTreeMap<String, Override>> {
    let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(THROTTLES)
        .query_async(conn)
        .await?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|o| (k, o)))
        .collect())
}

/// Store an override (the instances apply it within `REFRESH`).
pub async fn store(conn: &mut Conn, lane: &str, o: &Override) -> redis::RedisResult<()> {
    let json = serde_json::to_string(o).unwrap_or_default();
    redis::cmd("HSET")
        .arg(THROTTLES)
        .arg(lane)
        .arg(json)
        .query_async(conn)
        .await
}

/// Re-read the overrides every `REFRESH` and apply the ones that changed.
pub async fn run_refresher(throttle: &Throttle, mut conn: Conn, shutdown: CancellationToken) {
    let mut applied: BTreeMap<String, Override> = BTreeMap::new();
    loop {
        match list(&mut conn).await {
            Ok(all) => {
                for (lane, o) in &all {
                    if applied.get(lane) == Some(o) {
                        continue;
                    }
                    match apply(throttle, lane, o) {
                        Ok(()) => {
                            tracing::info!(%lane, segments = o.segments, per = %o.per, "throttle changed")
                        }
                        Err(e) => tracing::warn!(%lane, error = %e, "ignoring a stored throttle"),
                    }
                }
                applied = all;
            }
            Err(e) => {
                crate::telemetry::redis_error("throttles");
                tracing::warn!(error = %e, "reading throttle overrides failed");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}
