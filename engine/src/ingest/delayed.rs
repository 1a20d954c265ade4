//! The delayed set `herald:delayed`: messages deferred to a later instant
//! (quiet hours, caps, `send_at`, throttles, retries) wait there, scored by
//! due time, and the mover puts them back into their partition when due.
//!
//! [`Scheduled`] is how anything puts a message there: the message record
//! keeps the entry's bytes and partition until the mover re-queues it (and
//! gives the record's `entry` the new stream id, so the claim knows the
//! re-queued entry is the same message, not a duplicate).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::keys::{self, msg};
use crate::telemetry;

/// Move due messages from the delayed set back into their partition. Keys:
/// delayed set, DLQ. Args: now (ms), limit, message-hash prefix, queue
/// prefix, DLQ max len. Returns {due, lost}: a member whose record vanished
/// is recorded in the DLQ (`record_lost`), never dropped silently.
/// The message hash's `entry` is updated to the new stream entry so the
/// claim recognises the re-queued entry as the same message, not a duplicate.
pub const RELEASE_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local lost = 0
for _, m in ipairs(due) do
  local k = ARGV[3] .. m
  local v = redis.call('HMGET', k, 'msg', 'part')
  redis.call('ZREM', KEYS[1], m)
  if v[1] and v[2] then
    local id = redis.call('XADD', ARGV[4] .. v[2] .. '}', '*', 'msg', v[1])
    redis.call('HSET', k, 'entry', id, 'state', 'queued')
    redis.call('HDEL', k, 'msg', 'part')
  else
    -- Its record expired or was deleted: what is left goes to the DLQ.
    lost = lost + 1
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'reason', 'record_lost',
      'detail', 'a deferred message whose record vanished before it was due', 'member', m)
  end
end
return {#due, lost}
"#;

/// A message to be put back into partition `partition` at `due` (ms), or,
/// `held`, kept in its paused tenant's held set until a resume moves it to
/// the delayed set (`tenants::release_held`).
#[derive(Debug, Clone, Copy)]
pub struct Scheduled<'a> {
    /// The entry's `msg` bytes, re-queued as they are.
    pub raw: &'a [u8],
    pub partition: u16,
    pub due: i64,
    pub held: bool,
}

/// How long a held message's record is kept past `dispatch.idempotency_ttl`:
/// a pause has no end date, and the record is the message until resumed.
pub const HELD_KEEP_MS: u64 = 400 * 86_400_000;

impl Scheduled<'_> {
    /// Add the record's fields to an `HSET` of the message record being
    /// built (the outcome writer's decision, one command for both).
    pub fn add_fields(&self, hset: &mut redis::Cmd) {
        hset.arg(msg::RAW)
            .arg(self.raw)
            .arg(msg::PART)
            .arg(self.partition);
        if !self.held {
            hset.arg(msg::UNTIL).arg(self.due);
        }
    }

    /// Keep the record `key` of `tenant` / `id` at least until the message
    /// is due, plus `ttl_ms`, and add it to the delayed set.
    pub fn add_timer(
        &self,
        pipe: &mut redis::Pipeline,
        key: &str,
        tenant: &str,
        id: &str,
        now: i64,
        ttl_ms: u64,
    ) {
        if self.held {
            pipe.cmd("PEXPIRE")
                .arg(key)
                .arg(ttl_ms + HELD_KEEP_MS)
                .ignore();
            pipe.cmd("ZADD")
                .arg(keys::held(tenant))
                .arg(self.due)
                .arg(keys::member(tenant, id))
                .ignore();
            pipe.cmd("SADD")
                .arg(keys::HELD_TENANTS)
                .arg(tenant)
                .ignore();
            return;
        }
        let keep = (self.due - now).max(0) as u64 + ttl_ms;
        pipe.cmd("PEXPIRE").arg(key).arg(keep).ignore();
        pipe.cmd("ZADD")
            .arg(keys::DELAYED)
            .arg(self.due)
            .arg(keys::member(tenant, id))
            .ignore();
    }
}

/// Schedule a message on its own (not as part of a decision): its record's
/// fields and its timer, in `pipe`.
#[allow(clippy::too_many_arguments)]
pub fn schedule(
    pipe: &mut redis::Pipeline,
    tenant: &str,
    id: &str,
    s: &Scheduled<'_>,
    now: i64,
    ttl_ms: u64,
) {
    let key = keys::message(tenant, id);
    let mut hset = redis::cmd("HSET");
    hset.arg(&key);
    s.add_fields(&mut hset);
    pipe.add_command(hset).ignore();
    s.add_timer(pipe, &key, tenant, id, now, ttl_ms);
}

/// Move due messages back into the queue every `every`, until `shutdown`.
/// Safe to run on every instance: the script is atomic.
pub async fn run_mover(
    mut conn: Conn,
    every: Duration,
    dlq_max_len: u64,
    shutdown: CancellationToken,
) {
    const LIMIT: usize = 1000;
    let script = redis::Script::new(RELEASE_LUA);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            let res: redis::RedisResult<(usize, usize)> = script
                .key(keys::DELAYED)
                .key(keys::DLQ)
                .arg(crate::clock::now_ms())
                .arg(LIMIT)
                .arg(keys::MSG_PREFIX)
                .arg(keys::QUEUE_PREFIX)
                .arg(dlq_max_len)
                .invoke_async(&mut conn)
                .await;
            if let Ok((_, lost)) = res
                && lost > 0
            {
                tracing::warn!(
                    lost,
                    "deferred messages whose record vanished; kept in the DLQ"
                );
                telemetry::vanished("record_lost", lost);
            }
            match res {
                Ok((n, _)) if n >= LIMIT => continue,
                Ok(_) => break,
                Err(e) => {
                    telemetry::redis_error("release_delayed");
                    tracing::debug!(error = %e, "releasing delayed messages failed");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script writes only fields of the message record's layout.
    #[test]
    fn the_release_script_writes_the_record_layout() {
        for field in ["'msg'", "'part'", "'entry'", "'state'"] {
            assert!(RELEASE_LUA.contains(field), "{field}");
            let name = field.trim_matches('\'');
            assert!(msg::FIELDS.contains(&name), "{name}");
        }
        assert!(RELEASE_LUA.contains(&format!("'{}'", msg::QUEUED)));
    }
}
