//! Live throttle changes, fleet-wide: limit overrides live in the policy
//! document's `[throttles]` (lane → limit, `policy::document`); when an
//! instance swaps in a new policy version it applies the lanes that changed
//! ([`apply_changes`]: `Throttle::set_carrier_limit` / `set_sender_limit`)
//! — no restart. Before the policy store they lived in the hash
//! `herald:throttles`, which now only seeds an empty store ([`list`]).
//!
//! Lanes are named `carrier:<name>` or `sender:<number or service id>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Limit, Throttle};
use crate::conn::Conn;

use crate::keys::THROTTLES;

/// One override: a lane's limit in the policy document's `[throttles]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// 0: not throttled.
    pub segments: u32,
    /// `second`, `minute`, `hour` or `day`.
    pub per: String,
    /// 0: the default burst.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub burst: u32,
    /// When it was set (ms epoch; 0: unknown, e.g. written by hand).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub set_at_ms: i64,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
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

/// Apply the change from `before` to `after` (two policy versions'
/// `[throttles]`) to this instance's throttle: new and changed lanes take
/// their override; a lane whose override is gone returns to the carrier
/// table's limit or its sender kind's default.
pub fn apply_changes(
    throttle: &Throttle,
    base: &super::ThrottleConfig,
    before: &BTreeMap<String, Override>,
    after: &BTreeMap<String, Override>,
) {
    for (lane, o) in after {
        if before.get(lane) == Some(o) {
            continue;
        }
        match apply(throttle, lane, o) {
            Ok(()) => {
                tracing::info!(%lane, segments = o.segments, per = %o.per, "throttle changed")
            }
            Err(e) => tracing::warn!(%lane, error = %e, "ignoring a throttle override"),
        }
    }
    for lane in before.keys().filter(|l| !after.contains_key(*l)) {
        let result = match parse_lane(lane) {
            Some(Lane::Carrier(c)) => {
                let limit = base.carrier(c).and_then(|spec| spec.limit);
                throttle
                    .set_carrier_limit(c, limit)
                    .map_err(|e| e.to_string())
            }
            // Back to the configured override if the files give one,
            // else to the sender kind's default.
            Some(Lane::Sender(s)) => {
                match base.senders.overrides.get(s) {
                    Some(limit) => throttle.set_sender_limit(s, *limit),
                    None => throttle.clear_sender_limit(s),
                }
                Ok(())
            }
            None => Ok(()),
        };
        match result {
            Ok(()) => tracing::info!(%lane, "throttle override removed; back to the table's limit"),
            Err(e) => tracing::warn!(%lane, error = %e, "could not restore a throttle"),
        }
    }
}
