//! Frequency caps per recipient across all senders (docs/compliance.md): FL / OK /
//! MD 3 marketing texts per rolling 24 h (Fla. Stat. 501.616(6); 15 O.S.
//! 775C.4; Md. Com. Law 14-4501), MA 2 collection texts per 7 days per debt
//! (940 CMR 7.04(1)(f)).
//!
//! Each cap is a Redis sorted set of the texts sent in its window (member
//! `tenant:id`, score = send time), shared by every instance. A send first
//! *reserves* its place atomically (one script call for all of a message's
//! caps, pipelined per batch), so two instances can never both take the
//! last slot; a send that does not happen gives its place back in the same
//! transaction that records the outcome. A crash between the reservation
//! and the send leaves the place taken — the error is on the safe side.
//!
//! Keys: [`crate::keys::cap`].

use std::sync::Arc;

use super::rules::CapRule;
use super::{Effect, Fired};
use crate::conn::Conn;
use crate::telemetry;

/// One cap that applies to one message.
#[derive(Debug, Clone)]
pub struct CapKey {
    pub rule: Arc<CapRule>,
    pub key: String,
}

/// The keys of the caps that apply to a message.
pub fn keys(rules: &[Arc<CapRule>], number: u64, debt_id: Option<&str>) -> Vec<CapKey> {
    rules
        .iter()
        .map(|rule| {
            // 940 CMR 7.04(1)(f) counts per debt. Without a `debt_id` every
            // collection text to the number counts as one debt: stricter.
            let debt = debt_id.filter(|_| rule.per_debt);
            CapKey {
                rule: Arc::clone(rule),
                key: crate::keys::cap(number, &rule.id, debt),
            }
        })
        .collect()
}

/// KEYS: the caps' sorted sets. ARGV: now (ms), member, mode (`reserve` or
/// `peek`), then window (ms) and limit for each key. `peek` changes
/// nothing, so it may be asked about a future instant. Returns 0 when every
/// cap has room (and, with `reserve`, takes a place in each), else the
/// earliest instant (ms) at which all of them will have room.
///
/// A member already present (a redelivered or re-released message) keeps
/// its place and is not counted twice.
pub const CAP_LUA: &str = r#"
local now = tonumber(ARGV[1])
local free_at = 0
for i, k in ipairs(KEYS) do
  local w = tonumber(ARGV[2 + 2 * i])
  local lim = tonumber(ARGV[3 + 2 * i])
  -- texts still in the rolling window: sent after now - w
  local from = string.format('(%d', now - w)
  if not redis.call('ZSCORE', k, ARGV[2]) then
    local n = redis.call('ZCOUNT', k, from, '+inf')
    if n >= lim then
      -- room appears when the (n - lim + 1)-th oldest text leaves the window
      local r = redis.call('ZRANGEBYSCORE', k, from, '+inf', 'WITHSCORES', 'LIMIT', n - lim, 1)
      local t = tonumber(r[2]) + w
      if t > free_at then free_at = t end
    end
  end
end
if free_at > 0 then return free_at end
if ARGV[3] == 'reserve' then
  for i, k in ipairs(KEYS) do
    local w = tonumber(ARGV[2 + 2 * i])
    redis.call('ZREMRANGEBYSCORE', k, '-inf', string.format('%d', now - w))
    redis.call('ZADD', k, now, ARGV[2])
    redis.call('PEXPIRE', k, w)
  end
end
return 0
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Reserve,
    Peek,
}

/// Add one message's cap check to a pipeline.
pub fn add_check(
    pipe: &mut redis::Pipeline,
    script: &redis::Script,
    caps: &[CapKey],
    member: &str,
    now_ms: i64,
    mode: Mode,
) {
    let mut inv = script.prepare_invoke();
    for c in caps {
        inv.key(&c.key);
    }
    inv.arg(now_ms).arg(member).arg(match mode {
        Mode::Reserve => "reserve",
        Mode::Peek => "peek",
    });
    for c in caps {
        inv.arg(c.rule.window_ms).arg(c.rule.limit);
    }
    pipe.invoke_script(&inv);
}

/// Check (or reserve) one message's caps now: `Ok(None)` when there is
/// room, `Ok(Some(ms))` when the first place frees.
pub async fn check<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    script: &redis::Script,
    caps: &[CapKey],
    member: &str,
    now_ms: i64,
    mode: Mode,
) -> redis::RedisResult<Option<i64>> {
    if caps.is_empty() {
        return Ok(None);
    }
    let mut pipe = redis::pipe();
    pipe.load_script(script).ignore();
    add_check(&mut pipe, script, caps, member, now_ms, mode);
    let (free_at,): (i64,) = pipe.query_async(conn).await?;
    Ok((free_at > 0).then_some(free_at))
}

/// Reserve places for a batch of messages, in one pipeline: for each
/// message (its caps and its member), `None` when every cap had room (a
/// place is now taken in each), else the instant (ms) the first place
/// frees. A Redis error defers every message of the batch by 5 s rather
/// than send it uncounted.
pub async fn reserve_batch(
    conn: &mut Conn,
    script: &redis::Script,
    batch: &[(&[CapKey], String)],
    now_ms: i64,
) -> Vec<Option<i64>> {
    let mut pipe = redis::pipe();
    pipe.load_script(script).ignore();
    for (caps, member) in batch {
        add_check(&mut pipe, script, caps, member, now_ms, Mode::Reserve);
    }
    match pipe.query_async::<Vec<i64>>(conn).await {
        Ok(r) if r.len() == batch.len() => r.into_iter().map(|t| (t > 0).then_some(t)).collect(),
        Ok(_) | Err(_) => {
            telemetry::redis_error("frequency_cap");
            vec![Some(now_ms + 5_000); batch.len()]
        }
    }
}

/// Give back the places `member` reserved (a message that was not sent),
/// inside the outcome's transaction.
pub fn add_release(pipe: &mut redis::Pipeline, caps: &[CapKey], member: &str) {
    for c in caps {
        pipe.cmd("ZREM").arg(&c.key).arg(member).ignore();
    }
}

/// The rules behind a message deferred by its caps, for its trail.
pub fn deferred_by(caps: &[CapKey], number: u64) -> Vec<Fired> {
    fired(caps, |r| {
        format!(
            "{} per {} h reached for +{number}",
            r.limit,
            r.window_ms / 3_600_000
        )
    })
}

/// The rules behind a peeked deferral (`/v1/policy/evaluate`): room again
/// at `free_at_ms`.
pub fn full_until(caps: &[CapKey], free_at_ms: i64) -> Vec<Fired> {
    let at = jiff::Timestamp::from_millisecond(free_at_ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| free_at_ms.to_string());
    fired(caps, |r| {
        format!(
            "at most {} per {} h; room again at {at}",
            r.limit,
            r.window_ms / 3_600_000
        )
    })
}

fn fired(caps: &[CapKey], detail: impl Fn(&CapRule) -> String) -> Vec<Fired> {
    caps.iter()
        .map(|c| Fired {
            rule: Arc::clone(&c.rule.id),
            citation: Arc::clone(&c.rule.citation),
            effect: Effect::Defer,
            detail: detail(&c.rule).into(),
        })
        .collect()
}
