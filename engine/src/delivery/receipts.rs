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
/// hash prefix, trail prefix, state ttl (ms), experiment counts prefix.
/// Returns `applied`, `duplicate` or `orphan`.
const APPLY_LUA: &str = r#"
local m = redis.call('GET', KEYS[1])
if not m then
  redis.call('HSET', KEYS[4], 'status', ARGV[1], 'reason', ARGV[2], 'provider', ARGV[3],
    'provider_id', ARGV[4], 'ts', ARGV[5])
  redis.call('PEXPIRE', KEYS[4], 7200000)
  redis.call('ZADD', KEYS[3], 'NX', ARGV[5], KEYS[4])
  return 'orphan'
end
-- `provider\ntenant\nid` (older records: `tenant\nid`)
local provider, tenant, id = ARGV[3], nil, nil
local a = string.find(m, '\n', 1, true)
if not a then return 'duplicate' end
local b = string.find(m, '\n', a + 1, true)
if b then
  provider = string.sub(m, 1, a - 1)
  tenant = string.sub(m, a + 1, b - 1)
  id = string.sub(m, b + 1)
else
  tenant = string.sub(m, 1, a - 1)
  id = string.sub(m, a + 1)
end
local k = ARGV[7] .. tenant .. ':' .. id
if redis.call('HSETNX', k, 'receipt', ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[3], KEYS[4])
  return 'duplicate'
end
redis.call('HSET', k, 'state', ARGV[1], 'receipt_ts', ARGV[5])
redis.call('PEXPIRE', k, ARGV[9])
if ARGV[2] ~= '' then redis.call('HSET', k, 'reason', ARGV[2]) end
local ev = {'id', id, 'tenant', tenant, 'status', ARGV[1], 'provider', provider,
  'provider_id', ARGV[4], 'ts', ARGV[5]}
if ARGV[2] ~= '' then table.insert(ev, 'reason'); table.insert(ev, ARGV[2]) end
-- A message of an A/B experiment: the receipt counts for its variant.
local x = redis.call('HMGET', k, 'experiment', 'variant')
if x[1] and x[2] then
  table.insert(ev, 'experiment'); table.insert(ev, x[1])
  table.insert(ev, 'variant'); table.insert(ev, x[2])
  redis.call('HINCRBY', ARGV[10] .. tenant .. ':' .. x[1], x[2] .. ':' .. ARGV[1], 1)
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', unpack(ev))
local step = {ts = tonumber(ARGV[5]), status = ARGV[1], provider = provider, provider_id = ARGV[4]}
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
    dlq_max_len: u64,
    state_ttl_ms: u64,
}

impl Receipts {
    pub fn new(events_max_len: u64, dlq_max_len: u64, state_ttl_ms: u64) -> Receipts {
        Receipts {
            script: redis::Script::new(APPLY_LUA),
            events_max_len,
            dlq_max_len,
            state_ttl_ms,
        }
    }

    /// Apply one receipt. `provider` is the provider's kind (`twilio`): the
    /// mapping is by kind and message id, so a message sent through any
    /// provider of that kind (a failover) finds its receipt; the event names
    /// the provider that sent it. Returns `applied`, `duplicate` or
    /// `orphan`.
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
            .arg(keys::EXPERIMENT_PREFIX)
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

    /// Receipts whose message never became known within an hour: kept in
    /// the DLQ (reason `receipt_unmatched`) and counted, not dropped.
    async fn give_up_orphans(&self, conn: &mut Conn, now: i64) -> redis::RedisResult<()> {
        let old: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys::RECEIPT_ORPHANS)
            .arg("-inf")
            .arg(now - ORPHAN_TTL_MS)
            .arg("LIMIT")
            .arg(0)
            .arg(1000)
            .query_async(conn)
            .await?;
        if old.is_empty() {
            return Ok(());
        }
        for k in &old {
            let fields: Vec<(String, String)> =
                redis::cmd("HGETALL").arg(k).query_async(conn).await?;
            let mut add = redis::cmd("XADD");
            add.arg(keys::DLQ)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.dlq_max_len)
                .arg("*")
                .arg("reason")
                .arg("receipt_unmatched")
                .arg("detail")
                .arg("a delivery receipt whose message never became known within an hour")
                .arg("receipt")
                .arg(k);
            for (f, v) in &fields {
                add.arg(f).arg(v);
            }
            let _: () = redis::pipe()
                .atomic()
                .add_command(add)
                .ignore()
                .cmd("ZREM")
                .arg(keys::RECEIPT_ORPHANS)
                .arg(k)
                .ignore()
                .cmd("DEL")
                .arg(k)
                .ignore()
                .query_async(conn)
                .await?;
        }
        tracing::warn!(
            receipts = old.len(),
            "delivery receipts never matched a message; kept in the DLQ"
        );
        crate::telemetry::vanished("receipt_unmatched", old.len());
        Ok(())
    }

    async fn retry_orphans(&self, conn: &mut Conn) -> redis::RedisResult<()> {
        let now = crate::clock::now_ms();
        self.give_up_orphans(conn, now).await?;
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
