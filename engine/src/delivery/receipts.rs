//! Delivery receipts (docs/contracts.md#outcomes, docs/contracts.md#providers): a provider's status callback turns a
//! `sent` message into `delivered` or `undelivered`, at most once.
//!
//! The provider's message id is mapped to the message when `sent` is
//! recorded (`herald:pid:<provider>:<provider id>`, in the same transaction,
//! with the state's TTL), only for providers that report receipts. A
//! receipt is applied by one script: it finds the message, records the
//! first receipt (later or repeated ones change nothing), and appends the
//! event. Callbacks arrive in any order and may beat the `sent` record
//! itself (the provider answers the send and calls back before Herald's
//! outcome batch commits): such an *orphan* receipt is kept for a while
//! and applied again every second until its message is known.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::keys;

/// How long an orphan receipt waits for its message.
const ORPHAN_TTL_MS: i64 = 3_600_000;

/// What a receipt says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    Delivered,
    Undelivered,
}

impl Receipt {
    pub fn as_str(self) -> &'static str {
        match self {
            Receipt::Delivered => "delivered",
            Receipt::Undelivered => "undelivered",
        }
    }
}

/// Twilio's `MessageStatus`: `delivered`; `undelivered` and `failed` are
/// both `undelivered` for Herald (the reason is Twilio's `ErrorCode`);
/// intermediate statuses (`queued`, `sending`, `sent`, `accepted`,
/// `scheduled`, `read`…) are not receipts.
pub fn twilio_status(status: &str) -> Option<Receipt> {
    match status {
        "delivered" => Some(Receipt::Delivered),
        "undelivered" | "failed" => Some(Receipt::Undelivered),
        _ => None,
    }
}

/// KEYS: pid mapping, events stream, orphan set, orphan hash.
/// ARGV: status, reason, provider, provider id, ts, events max len, message
/// hash prefix, trail prefix, state ttl (ms).
/// Returns `applied`, `duplicate` or `orphan`.
const APPLY_LUA: &str = r#"
local m = redis.call('GET', KEYS[1])
if not m then
  redis.call('HSET', KEYS[4], 'status', ARGV[1], 'reason', ARGV[2], 'provider', ARGV[3],
    'provider_id', ARGV[4], 'ts', ARGV[5])
  redis.call('PEXPIRE', KEYS[4], 3600000)
  redis.call('ZADD', KEYS[3], 'NX', ARGV[5], KEYS[4])
  return 'orphan'
end
local nl = string.find(m, '\n', 1, true)
if not nl then return 'duplicate' end
local tenant = string.sub(m, 1, nl - 1)
local id = string.sub(m, nl + 1)
local k = ARGV[7] .. tenant .. ':' .. id
if redis.call('HSETNX', k, 'receipt', ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[3], KEYS[4])
  return 'duplicate'
end
redis.call('HSET', k, 'state', ARGV[1], 'receipt_ts', ARGV[5])
redis.call('PEXPIRE', k, ARGV[9])
if ARGV[2] ~= '' then redis.call('HSET', k, 'reason', ARGV[2]) end
local ev = {'id', id, 'tenant', tenant, 'status', ARGV[1], 'provider', ARGV[3],
  'provider_id', ARGV[4], 'ts', ARGV[5]}
if ARGV[2] ~= '' then table.insert(ev, 'reason'); table.insert(ev, ARGV[2]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', unpack(ev))
local step = {ts = tonumber(ARGV[5]), status = ARGV[1], provider = ARGV[3], provider_id = ARGV[4]}
if ARGV[2] ~= '' then step.reason = ARGV[2] end
redis.call('RPUSH', ARGV[8] .. tenant .. ':' .. id, cjson.encode(step))
redis.call('PEXPIRE', ARGV[8] .. tenant .. ':' .. id, ARGV[9])
redis.call('ZREM', KEYS[3], KEYS[4])
redis.call('DEL', KEYS[4])
return 'applied'
"#;

/// Applies receipts.
pub struct Receipts {
    script: redis::Script,
    events_max_len: u64,
    state_ttl_ms: u64,
}

impl Receipts {
    pub fn new(events_max_len: u64, state_ttl_ms: u64) -> Receipts {
        Receipts {
            script: redis::Script::new(APPLY_LUA),
            events_max_len,
            state_ttl_ms,
        }
    }

    /// Apply one receipt. Returns `applied`, `duplicate` or `orphan`.
    pub async fn apply(
        &self,
        conn: &mut Conn,
        provider: &str,
        provider_id: &str,
        receipt: Receipt,
        reason: &str,
        ts_ms: i64,
    ) -> redis::RedisResult<String> {
        let orphan = keys::orphan_receipt(provider, provider_id);
        let r: String = self
            .script
            .key(keys::provider_id(provider, provider_id))
            .key(keys::EVENTS)
            .key(keys::RECEIPT_ORPHANS)
            .key(&orphan)
            .arg(receipt.as_str())
            .arg(reason)
            .arg(provider)
            .arg(provider_id)
            .arg(ts_ms)
            .arg(self.events_max_len)
            .arg(keys::MSG_PREFIX)
            .arg(keys::TRAIL_PREFIX)
            .arg(self.state_ttl_ms)
            .invoke_async(conn)
            .await?;
        Ok(r)
    }

    /// Retry orphan receipts every `every` until `shutdown`; drop those
    /// older than an hour (their message never became known).
    pub async fn run_orphans(&self, mut conn: Conn, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.retry_orphans(&mut conn).await {
                crate::telemetry::redis_error("receipt_orphans");
                tracing::warn!(error = %e, "retrying orphan receipts failed");
            }
        }
    }

    async fn retry_orphans(&self, conn: &mut Conn) -> redis::RedisResult<()> {
        let now = crate::clock::now_ms();
        let _: () = redis::cmd("ZREMRANGEBYSCORE")
            .arg(keys::RECEIPT_ORPHANS)
            .arg("-inf")
            .arg(now - ORPHAN_TTL_MS)
            .query_async(conn)
            .await?;
        let keys: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys::RECEIPT_ORPHANS)
            .arg(0)
            .arg(99)
            .query_async(conn)
            .await?;
        for k in keys {
            let fields: std::collections::HashMap<String, String> =
                redis::cmd("HGETALL").arg(&k).query_async(conn).await?;
            let (Some(status), Some(provider), Some(pid), Some(ts)) = (
                fields.get("status"),
                fields.get("provider"),
                fields.get("provider_id"),
                fields.get("ts").and_then(|t| t.parse::<i64>().ok()),
            ) else {
                let _: () = redis::cmd("ZREM")
                    .arg(keys::RECEIPT_ORPHANS)
                    .arg(&k)
                    .query_async(conn)
                    .await?;
                continue;
            };
            let receipt = if status == "delivered" {
                Receipt::Delivered
            } else {
                Receipt::Undelivered
            };
            let reason = fields.get("reason").map(String::as_str).unwrap_or("");
            let r = self.apply(conn, provider, pid, receipt, reason, ts).await?;
            if r != "orphan" {
                crate::telemetry::receipt(if r == "applied" {
                    receipt.as_str()
                } else {
                    "duplicate"
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_statuses() {
        // Twilio's MessageStatus values (twilio.com/docs/messaging/api/message-resource#message-status-values).
        let rows = [
            ("delivered", Some(Receipt::Delivered)),
            ("undelivered", Some(Receipt::Undelivered)),
            ("failed", Some(Receipt::Undelivered)),
            ("sent", None),
            ("queued", None),
            ("sending", None),
            ("accepted", None),
            ("read", None),
            ("", None),
        ];
        for (s, want) in rows {
            assert_eq!(twilio_status(s), want, "{s}");
        }
    }
}
