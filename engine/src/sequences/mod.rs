//! Sequences: a recipient enrolled in a reminder schedule, one message per
//! step, and "paid always beats send".
//!
//! - **Enrolment** ([`plan`]): a message with `"sequence": {"schedule",
//!   "anchor"}` becomes one step message per step of the tenant's schedule,
//!   ids `<id>/1` … `<id>/N`, each due at the anchor date plus its offset at
//!   its local time in the recipient's zone (DST handled: a local time that
//!   does not exist moves later, a repeated one takes the first). Every step
//!   is rendered at enrolment with the given `vars`, so a missing variable
//!   rejects the enrolment at once, and each step pins the template version
//!   it rendered (`name@N`): a template published later changes only later
//!   enrolments. The outcome writer records the plan in the batch's one
//!   transaction ([`add_enrolment`]): the sequence record, each step's
//!   message record and timer in the delayed set, and each step's
//!   `deferred` / `send_at` event. A step then goes through the whole
//!   dispatch path when due: consent, quiet hours, caps, throttles.
//! - **Cancel** ([`cancel`], `CANCEL_LUA`): marks the sequence cancelled and
//!   puts its waiting steps back into the queue at once, where the claim's
//!   gate (`ingest::claim::GATE_LUA`, the same atomic step that marks a step
//!   `sending`) turns each into `cancelled`. A step the gate passed before
//!   the cancel is on its way to the provider; every step after it is not.
//!   A cancel that comes before its enrolment leaves a tombstone, so the
//!   enrolment's steps are cancelled too.
//! - **STOP** ends every sequence to the number ([`end_for_number`]).
//! - **Reconciler** ([`run_reconciler`]): walks the sequences and puts back
//!   any waiting step's timer that is missing from the delayed set.
//!
//! Redis Cluster: the cancel and reconcile scripts touch the sequence record,
//! the step records, the delayed set and the queue in one script, so they
//! need one slot; they are not cluster-ready yet.

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::ingest::decode::{Limits, decode};
use crate::keys::{self, seq};
use crate::model::{E164, Message, Reason, StepRef};
use crate::policy::Policy;
use crate::policy::zones::{self, Zone};
use crate::telemetry;

/// One step of an enrolment, ready to be recorded.
#[derive(Debug)]
pub struct PlannedStep {
    pub n: u16,
    /// Its instant (ms epoch).
    pub due: i64,
    /// The step message, as decoded from `raw`.
    pub msg: Message,
    /// The step message as it waits in the delayed set.
    pub raw: Vec<u8>,
}

/// An enrolment, expanded.
#[derive(Debug)]
pub struct Plan {
    pub schedule: Box<str>,
    pub anchor: jiff::civil::Date,
    /// The zones the local times were computed in (comma-separated names;
    /// empty: UTC).
    pub zone: Box<str>,
    /// Each step's `day at max_late_ms`, comma-separated: what a re-anchor
    /// recomputes from, whatever the schedule says by then.
    pub defs: Box<str>,
    pub steps: Vec<PlannedStep>,
}

impl Plan {
    /// The last step's instant plus its `max_late`: how long the sequence
    /// can still send.
    pub fn ends_at(&self) -> i64 {
        self.steps
            .iter()
            .map(|s| s.msg.expires_at.unwrap_or(s.due))
            .max()
            .unwrap_or(0)
    }
}

#[derive(Serialize)]
struct Recipient<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tz: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
}

/// A step message on the wire: the ingest contract, plus `step`.
#[derive(Serialize)]
struct StepWire<'a> {
    id: &'a str,
    tenant: &'a str,
    to: &'a str,
    template: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vars: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locale: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    send_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<Recipient<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    debt_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    carrier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a RawValue>,
    step: &'a StepRef,
}

/// Expand an enrolment (`msg.enrol`) on the policy `pol`. `Err`: why it is
/// rejected (`unknown_schedule`, `unknown_template`, `missing_variable`),
/// naming the step and variable.
pub fn plan(pol: &Policy, msg: &Message, limits: &Limits) -> Result<Plan, (Reason, String)> {
    let Some(enrol) = msg.enrol.as_deref() else {
        return Err((Reason::UnknownSchedule, "not an enrolment".into()));
    };
    let Some(schedule) = pol.schedule(&msg.tenant, &enrol.schedule) else {
        return Err((
            Reason::UnknownSchedule,
            format!(
                "tenant `{}` has no schedule `{}`",
                msg.tenant, enrol.schedule
            ),
        ));
    };
    let vars: serde_json::Map<String, serde_json::Value> = match &enrol.vars {
        Some(raw) => serde_json::from_str(raw.get())
            .map_err(|e| (Reason::MissingVariable, format!("`vars`: {e}")))?,
        None => serde_json::Map::new(),
    };
    let zones = send_zones(pol, msg);
    let tenant_locale = &pol.tenant(&msg.tenant).locale;
    let to = E164::render(msg.to);
    let mut steps = Vec::with_capacity(schedule.steps.len());
    let mut body = String::new();
    for (i, st) in schedule.steps.iter().enumerate() {
        let n = u16::try_from(i + 1).unwrap_or(u16::MAX);
        // An experiment on the step's template picks the variant here,
        // once: the step pins it, so one person sees one variant throughout.
        let picked = pol
            .experiment_on(&msg.tenant, &st.template)
            .map(|e| (e, e.assign(&msg.tenant, msg.to)));
        let found = match picked {
            Some((_, v)) => pol.template(&msg.tenant, &v.template, Some(v.version)),
            None => pol.template(&msg.tenant, &st.template, None),
        };
        let Some(t) = found else {
            return Err((
                Reason::UnknownTemplate,
                format!(
                    "step {n} of `{}`: tenant `{}` has no template `{}`",
                    schedule.name, msg.tenant, st.template
                ),
            ));
        };
        t.render(enrol.locale.as_deref(), tenant_locale, &vars, &mut body)
            .map_err(|e| {
                (
                    Reason::MissingVariable,
                    format!(
                        "step {n} of `{}` (template `{}@{}`): {e}",
                        schedule.name, t.name, t.version
                    ),
                )
            })?;
        let due = step_instant(enrol.anchor, st.day, st.at, &zones).ok_or_else(|| {
            (
                Reason::UnknownSchedule,
                format!("step {n}: the anchor plus {} days is not a date", st.day),
            )
        })?;
        let mut expires = due.saturating_add(st.max_late_ms);
        if let Some(e) = msg.expires_at {
            expires = expires.min(e);
        }
        let id = format!("{}/{n}", msg.id);
        let template = format!("{}@{}", t.name, t.version);
        let step = StepRef {
            sequence: msg.id.as_str().into(),
            schedule: schedule.name.clone(),
            n,
            experiment: picked.map(|(e, _)| e.name.clone()),
            variant: picked.map(|(_, v)| v.name.clone()),
        };
        let wire = StepWire {
            id: &id,
            tenant: &msg.tenant,
            to: to.as_str(),
            template: &template,
            vars: enrol.vars.as_deref(),
            locale: enrol.locale.as_deref(),
            from: msg.from.as_deref(),
            send_at: rfc3339(due),
            expires_at: rfc3339(expires),
            recipient: (msg.recipient_tz.is_some() || msg.recipient_state.is_some()).then_some(
                Recipient {
                    tz: msg.recipient_tz.as_deref(),
                    state: msg.recipient_state.as_deref(),
                },
            ),
            debt_id: msg.debt_id.as_deref(),
            carrier: msg.carrier.as_deref(),
            meta: msg.meta.as_deref(),
            step: &step,
        };
        let raw = serde_json::to_vec(&wire)
            .map_err(|e| (Reason::UnknownSchedule, format!("step {n}: {e}")))?;
        let step_msg = decode(&raw, limits)
            .map_err(|r| (Reason::UnknownSchedule, format!("step {n}: {}", r.detail)))?;
        steps.push(PlannedStep {
            n,
            due,
            msg: step_msg,
            raw,
        });
    }
    Ok(Plan {
        schedule: schedule.name.clone(),
        anchor: enrol.anchor,
        zone: zones
            .iter()
            .map(|z| z.name())
            .collect::<Vec<_>>()
            .join(",")
            .into(),
        defs: schedule
            .steps
            .iter()
            .map(|s| format!("{} {} {}", s.day, s.at.strftime("%H:%M"), s.max_late_ms))
            .collect::<Vec<_>>()
            .join(",")
            .into(),
        steps,
    })
}

/// The zones a step's local time is computed in: `recipient.tz` when
/// given; else every zone the number and address may be in (the latest
/// instant wins, so no candidate zone gets it before its local time); else
/// the tenant's `time_zone`. Empty: UTC.
fn send_zones(pol: &Policy, msg: &Message) -> Vec<Zone> {
    if let Some(z) = msg.recipient_tz.as_deref().and_then(Zone::by_name) {
        return vec![z];
    }
    let st = msg.recipient_state.as_deref().and_then(|s| s.parse().ok());
    let c = zones::candidates(msg.to, None, st);
    let v: Vec<Zone> = c.zones.iter().copied().collect();
    if !v.is_empty() {
        return v;
    }
    pol.tenant(&msg.tenant).time_zone.into_iter().collect()
}

/// The instant of `anchor + day` at local `at`, the latest over `zones`
/// (UTC when empty). jiff's `compatible` disambiguation: a local time in a
/// spring-forward gap moves later by the gap, a repeated one in the fall
/// takes its first (earlier) instant.
pub fn step_instant(
    anchor: jiff::civil::Date,
    day: i32,
    at: jiff::civil::Time,
    zones: &[Zone],
) -> Option<i64> {
    let date = anchor.checked_add(jiff::Span::new().days(day)).ok()?;
    let dt = date.to_datetime(at);
    if zones.is_empty() {
        return dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_millisecond());
    }
    zones
        .iter()
        .filter_map(|z| dt.to_zoned(z.tz().clone()).ok())
        .map(|z| z.timestamp().as_millisecond())
        .max()
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Add an enrolment's sequence record and indexes to the outcome writer's
/// transaction (the steps' records, timers and events are written as
/// ordinary `deferred` decisions beside it). `HSETNX state`: a cancel that
/// came first left a tombstone, which wins. The enrolment's own record
/// ends `enrolled`, so a redelivered enrolment is not expanded again.
pub fn add_enrolment(
    pipe: &mut redis::Pipeline,
    parent: &Message,
    plan: &Plan,
    now: i64,
    ttl_ms: u64,
) {
    let key = keys::sequence(&parent.tenant, &parent.id);
    let member = keys::member(&parent.tenant, &parent.id);
    let keep = (plan.ends_at() - now).max(0) as u64 + ttl_ms;
    pipe.cmd("HSETNX")
        .arg(&key)
        .arg(seq::STATE)
        .arg(seq::ACTIVE)
        .ignore();
    let due: Vec<String> = plan.steps.iter().map(|s| s.due.to_string()).collect();
    pipe.cmd("HSET")
        .arg(&key)
        .arg(seq::SCHEDULE)
        .arg(&*plan.schedule)
        .arg(seq::ANCHOR)
        .arg(plan.anchor.to_string())
        .arg(seq::STEPS)
        .arg(plan.steps.len())
        .arg(seq::TO)
        .arg(parent.to)
        .arg(seq::ZONE)
        .arg(&*plan.zone)
        .arg(seq::DEFS)
        .arg(&*plan.defs)
        .arg(seq::DUE)
        .arg(due.join(","))
        .arg(seq::ENROLLED_AT)
        .arg(now)
        .ignore();
    if let Some(debt) = parent.debt_id.as_deref() {
        pipe.cmd("HSET").arg(&key).arg(seq::DEBT).arg(debt).ignore();
    }
    pipe.cmd("PEXPIRE").arg(&key).arg(keep).ignore();
    let to = keys::sequences_to(parent.to);
    pipe.cmd("SADD").arg(&to).arg(&member).ignore();
    pipe.cmd("PEXPIRE").arg(&to).arg(keep).arg("GT").ignore();
    // `GT` cannot extend a key without a TTL; a fresh set has none.
    pipe.cmd("PEXPIRE").arg(&to).arg(keep).arg("NX").ignore();
    if let Some(debt) = parent.debt_id.as_deref() {
        let k = keys::sequences_of_debt(&parent.tenant, debt);
        pipe.cmd("SADD").arg(&k).arg(&parent.id).ignore();
        pipe.cmd("PEXPIRE").arg(&k).arg(keep).arg("GT").ignore();
        pipe.cmd("PEXPIRE").arg(&k).arg(keep).arg("NX").ignore();
    }
    pipe.cmd("ZADD")
        .arg(keys::SEQUENCES)
        .arg(plan.ends_at())
        .arg(&member)
        .ignore();
    let rec = keys::message(&parent.tenant, &parent.id);
    pipe.cmd("HSET")
        .arg(&rec)
        .arg(keys::msg::STATE)
        .arg(keys::msg::ENROLLED)
        .arg(keys::msg::TS)
        .arg(now)
        .ignore();
    pipe.cmd("PEXPIRE").arg(&rec).arg(keep).ignore();
}

/// Cancel a sequence. Keys: the sequence record, the delayed set, the
/// tenant's held set. Args: the step record prefix (`herald:msg:t:id/`), the
/// step member prefix (`t:id/`), the queue prefix, reason, now, detail,
/// tombstone TTL (ms). Returns {what, released}: what 0 = it had already
/// ended, 1 = cancelled, 2 = no such sequence (a tombstone is left, so a
/// later enrolment with this id is cancelled too). Each waiting step is
/// released into its partition now, where the claim's gate records it
/// `cancelled` (with its event and metrics, like every outcome).
pub const CANCEL_LUA: &str = r#"
local st = redis.call('HGET', KEYS[1], 'state')
if st and st ~= 'active' then return {0, 0} end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'reason', ARGV[4], 'ended_at', ARGV[5], 'detail', ARGV[6])
if not st then
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  return {2, 0}
end
local n = tonumber(redis.call('HGET', KEYS[1], 'steps') or '0') or 0
local moved = 0
for i = 1, n do
  local m = ARGV[2] .. i
  local a = redis.call('ZREM', KEYS[2], m) + redis.call('ZREM', KEYS[3], m)
  if a > 0 then
    local k = ARGV[1] .. i
    local v = redis.call('HMGET', k, 'msg', 'part')
    if v[1] and v[2] then
      local id = redis.call('XADD', ARGV[3] .. v[2] .. '}', '*', 'msg', v[1])
      redis.call('HSET', k, 'entry', id, 'state', 'queued')
      redis.call('HDEL', k, 'msg', 'part')
      moved = moved + 1
    end
  end
end
return {1, moved}
"#;

/// How long a cancel of a sequence not (yet) enrolled is remembered.
pub const TOMBSTONE_MS: u64 = 30 * 86_400_000;

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cancelled {
    /// It was active; `released` waiting steps go to `cancelled` now.
    Cancelled { released: u32 },
    /// It had ended already (cancelled before): nothing changes.
    AlreadyEnded,
    /// No such sequence: a later enrolment with this id is cancelled.
    NotEnrolled,
}

impl Cancelled {
    pub fn as_str(self) -> &'static str {
        match self {
            Cancelled::Cancelled { .. } => "cancelled",
            Cancelled::AlreadyEnded => "already_ended",
            Cancelled::NotEnrolled => "not_enrolled",
        }
    }
}

/// Add a cancel of `tenant` / `id` to `pipe` (one reply: `{what, released}`).
pub fn add_cancel(
    pipe: &mut redis::Pipeline,
    tenant: &str,
    id: &str,
    reason: Reason,
    detail: &str,
    now: i64,
) {
    let mut prefix = keys::message(tenant, id);
    prefix.push('/');
    let mut member = keys::member(tenant, id);
    member.push('/');
    pipe.cmd("EVAL")
        .arg(CANCEL_LUA)
        .arg(3)
        .arg(keys::sequence(tenant, id))
        .arg(keys::DELAYED)
        .arg(keys::held(tenant))
        .arg(prefix)
        .arg(member)
        .arg(keys::QUEUE_PREFIX)
        .arg(reason.as_str())
        .arg(now)
        .arg(detail)
        .arg(TOMBSTONE_MS);
}

/// Interpret a cancel's reply.
pub fn parse_cancel(v: &redis::Value) -> Option<Cancelled> {
    let redis::Value::Array(a) = v else {
        return None;
    };
    let int = |i: usize| match a.get(i) {
        Some(redis::Value::Int(n)) => Some(*n),
        _ => None,
    };
    let (what, released) = (int(0)?, int(1)?);
    Some(match what {
        0 => Cancelled::AlreadyEnded,
        2 => Cancelled::NotEnrolled,
        _ => Cancelled::Cancelled {
            released: u32::try_from(released).unwrap_or(0),
        },
    })
}

/// Cancel one sequence now (HTTP, gRPC).
pub async fn cancel(
    conn: &mut Conn,
    tenant: &str,
    id: &str,
    reason: Reason,
    detail: &str,
) -> redis::RedisResult<Cancelled> {
    let mut pipe = redis::pipe();
    add_cancel(
        &mut pipe,
        tenant,
        id,
        reason,
        detail,
        crate::clock::now_ms(),
    );
    let v: Vec<redis::Value> = pipe.query_async(conn).await?;
    let c = v.first().and_then(parse_cancel).ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "cancel reply"))
    })?;
    telemetry::sequence_cancel(c.as_str());
    Ok(c)
}

/// End every sequence of `tenants` (all, when `None`) to `number`: a STOP
/// ends them (`cancelled` / `opted_out`). Returns how many it ended.
pub async fn end_for_number(
    conn: &mut Conn,
    number: u64,
    tenants: Option<&[&str]>,
    reason: Reason,
    detail: &str,
) -> redis::RedisResult<usize> {
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::sequences_to(number))
        .query_async(conn)
        .await?;
    let mut pipe = redis::pipe();
    let mut n = 0;
    let now = crate::clock::now_ms();
    for m in &members {
        let Some((tenant, id)) = m.split_once(':') else {
            continue;
        };
        if tenants.is_some_and(|t| !t.contains(&tenant)) {
            continue;
        }
        add_cancel(&mut pipe, tenant, id, reason, detail, now);
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    let v: Vec<redis::Value> = pipe.query_async(conn).await?;
    let ended = v
        .iter()
        .filter_map(parse_cancel)
        .filter(|c| matches!(c, Cancelled::Cancelled { .. }))
        .count();
    for c in v.iter().filter_map(parse_cancel) {
        telemetry::sequence_cancel(c.as_str());
    }
    Ok(ended)
}

/// Re-anchor a sequence (the due date moved). Keys: the sequence record,
/// the delayed set. Args: the anchor read (a compare-and-set), the new
/// anchor, the new instants (comma-separated), the step record prefix, the
/// step member prefix, how long to keep the records (ms), then `n, due,
/// bytes` per step. A step is moved only while it waits (in the delayed
/// set, `deferred` or `retrying`): one sent, cancelled, in the queue or
/// being sent keeps its course. Returns {1, moved steps…}, {0} when the
/// sequence is not active, {2} when its anchor changed meanwhile.
pub const REANCHOR_LUA: &str = r#"
local s = redis.call('HMGET', KEYS[1], 'state', 'anchor')
if s[1] ~= 'active' then return {0} end
if s[2] ~= ARGV[1] then return {2} end
redis.call('HSET', KEYS[1], 'anchor', ARGV[2], 'due', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6], 'GT')
local out = {1}
local i = 7
while i + 2 <= #ARGV do
  local n, due, raw = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local m = ARGV[5] .. n
  local k = ARGV[4] .. n
  local st = redis.call('HGET', k, 'state')
  if redis.call('ZSCORE', KEYS[2], m) and (st == 'deferred' or st == 'retrying') then
    redis.call('ZADD', KEYS[2], due, m)
    redis.call('HSET', k, 'msg', raw, 'until', due)
    redis.call('PEXPIRE', k, ARGV[6], 'GT')
    out[#out + 1] = tonumber(n)
  end
  i = i + 3
end
return out
"#;

/// What a re-anchor reads of a sequence: state, anchor, step definitions,
/// zones, step count.
type SeqHead = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<usize>,
);

/// What a re-anchor did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reanchored {
    /// These steps (1-based) were waiting and now wait for their new instant.
    Moved { steps: Vec<u16> },
    /// The sequence is not active (cancelled, or never enrolled).
    NotActive,
}

/// Re-anchor `tenant` / `id` on `anchor`: every step still waiting gets the
/// instant the new anchor gives it (the step definitions and zones kept at
/// enrolment, so a schedule edited since changes nothing here), and a new
/// `deferred` / `send_at` event announcing it. A step whose new instant is
/// already past goes at once, or `expired` / `max_late` past its
/// `max_late`. `ttl_ms`: the records' keep after their last instant;
/// `events_max_len`: the events stream's cap.
pub async fn reanchor(
    conn: &mut Conn,
    tenant: &str,
    id: &str,
    anchor: jiff::civil::Date,
    limits: &Limits,
    ttl_ms: u64,
    events_max_len: u64,
) -> redis::RedisResult<Reanchored> {
    let key = keys::sequence(tenant, id);
    for _ in 0..3 {
        let (state, old, defs, zones, n): SeqHead = redis::cmd("HMGET")
            .arg(&key)
            .arg(seq::STATE)
            .arg(seq::ANCHOR)
            .arg(seq::DEFS)
            .arg(seq::ZONE)
            .arg(seq::STEPS)
            .query_async(conn)
            .await?;
        if state.as_deref() != Some(seq::ACTIVE) {
            return Ok(Reanchored::NotActive);
        }
        let (Some(old), Some(defs)) = (old, defs) else {
            return Ok(Reanchored::NotActive);
        };
        let zones: Vec<Zone> = zones
            .unwrap_or_default()
            .split(',')
            .filter_map(Zone::by_name)
            .collect();
        let defs: Vec<(i32, jiff::civil::Time, i64)> = defs
            .split(',')
            .filter_map(|d| {
                let mut it = d.split(' ');
                let day = it.next()?.parse().ok()?;
                let at = jiff::civil::Time::strptime("%H:%M", it.next()?).ok()?;
                let late = it.next()?.parse().ok()?;
                Some((day, at, late))
            })
            .collect();
        let n = n.unwrap_or(0).min(defs.len());
        let mut read = redis::pipe();
        for i in 1..=n {
            read.cmd("HGET")
                .arg(keys::message(tenant, &format!("{id}/{i}")))
                .arg(keys::msg::RAW);
        }
        let raws: Vec<Option<Vec<u8>>> = if n == 0 {
            Vec::new()
        } else {
            read.query_async(conn).await?
        };
        let mut due_all = Vec::with_capacity(n);
        let mut args: Vec<(u16, i64, Vec<u8>)> = Vec::new();
        let mut ends = 0i64;
        for (i, (day, at, late)) in defs.iter().take(n).enumerate() {
            let due = step_instant(anchor, *day, *at, &zones).unwrap_or(0);
            due_all.push(due.to_string());
            ends = ends.max(due + late);
            let Some(Some(raw)) = raws.get(i) else {
                continue;
            };
            let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(raw) else {
                continue;
            };
            m.insert("send_at".into(), rfc3339(due).into());
            m.insert(
                "expires_at".into(),
                rfc3339(due.saturating_add(*late)).into(),
            );
            if let Ok(b) = serde_json::to_vec(&m) {
                args.push((u16::try_from(i + 1).unwrap_or(u16::MAX), due, b));
            }
        }
        let now = crate::clock::now_ms();
        let keep = (ends - now).max(0) as u64 + ttl_ms;
        let mut prefix = keys::message(tenant, id);
        prefix.push('/');
        let mut member = keys::member(tenant, id);
        member.push('/');
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(REANCHOR_LUA)
            .arg(2)
            .arg(&key)
            .arg(keys::DELAYED)
            .arg(&old)
            .arg(anchor.to_string())
            .arg(due_all.join(","))
            .arg(prefix)
            .arg(member)
            .arg(keep);
        for (n, due, raw) in &args {
            cmd.arg(n).arg(due).arg(raw.as_slice());
        }
        let reply: Vec<i64> = cmd.query_async(conn).await?;
        match reply.first() {
            Some(1) => {}
            Some(2) => continue,
            _ => return Ok(Reanchored::NotActive),
        }
        let moved: Vec<u16> = reply[1..]
            .iter()
            .filter_map(|n| u16::try_from(*n).ok())
            .collect();
        // Announce each moved step's new instant, as its enrolment did, and
        // keep the indexes (STOP, payments, the reconciler, the enrolment's
        // own record for dedupe) as long as the sequence now runs.
        let mut pipe = redis::pipe();
        let (to, debt): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg(seq::TO)
            .arg(seq::DEBT)
            .query_async(conn)
            .await?;
        let mut extend = vec![keys::message(tenant, id)];
        extend.extend(to.map(keys::sequences_to));
        extend.extend(debt.map(|d| keys::sequences_of_debt(tenant, &d)));
        for k in &extend {
            pipe.cmd("PEXPIRE").arg(k).arg(keep).arg("GT").ignore();
        }
        pipe.cmd("ZADD")
            .arg(keys::SEQUENCES)
            .arg("XX")
            .arg(ends)
            .arg(keys::member(tenant, id))
            .ignore();
        let detail = format!("re-anchored on {anchor}");
        for (n, due, raw) in args.iter().filter(|(n, ..)| moved.contains(n)) {
            let Ok(m) = decode(raw, limits) else {
                continue;
            };
            let mut ev = redis::cmd("XADD");
            ev.arg(keys::EVENTS)
                .arg("MAXLEN")
                .arg("~")
                .arg(events_max_len)
                .arg("*")
                .arg("id")
                .arg(&m.id)
                .arg("tenant")
                .arg(&m.tenant)
                .arg("status")
                .arg("deferred")
                .arg("reason")
                .arg(Reason::SendAt.as_str())
                .arg("until")
                .arg(due)
                .arg("ts")
                .arg(now)
                .arg("attempt")
                .arg(0)
                .arg("detail")
                .arg(&detail);
            if let Some(meta) = &m.meta {
                ev.arg("meta").arg(meta.get());
            }
            if let Some(t) = &m.template {
                ev.arg("template").arg(&*t.name);
                if let Some(v) = t.version {
                    ev.arg("template_version").arg(v);
                }
            }
            if let Some(st) = &m.step {
                // `sequence` is the schedule, as on every step event.
                ev.arg("sequence").arg(&*st.schedule).arg("step").arg(*n);
            }
            pipe.add_command(ev).ignore();
        }
        pipe.query_async::<()>(conn).await?;
        return Ok(Reanchored::Moved { steps: moved });
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "the anchor kept changing",
    )))
}

/// A sequence and its steps' states, for `GET /v1/sequences/{tenant}/{id}`
/// and `heraldctl sequence get`. `None`: no record.
pub async fn read(
    conn: &mut Conn,
    tenant: &str,
    id: &str,
) -> redis::RedisResult<Option<serde_json::Value>> {
    let rec: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::sequence(tenant, id))
        .query_async(conn)
        .await?;
    if rec.is_empty() {
        return Ok(None);
    }
    let n: usize = rec
        .get(seq::STEPS)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let due: Vec<i64> = rec
        .get(seq::DUE)
        .map(|d| d.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    let mut pipe = redis::pipe();
    for i in 1..=n {
        pipe.cmd("HMGET")
            .arg(keys::message(tenant, &format!("{id}/{i}")))
            .arg(keys::msg::STATE)
            .arg(keys::msg::REASON)
            .arg(keys::msg::UNTIL);
    }
    let steps: Vec<(Option<String>, Option<String>, Option<i64>)> = if n == 0 {
        Vec::new()
    } else {
        pipe.query_async(conn).await?
    };
    let steps: Vec<serde_json::Value> = steps
        .into_iter()
        .enumerate()
        .map(|(i, (state, reason, until))| {
            serde_json::json!({
                "step": i + 1,
                "id": format!("{id}/{}", i + 1),
                "due": due.get(i),
                "state": state,
                "reason": reason,
                "until": until,
            })
        })
        .collect();
    let field = |k: &str| rec.get(k).cloned();
    Ok(Some(serde_json::json!({
        "tenant": tenant,
        "id": id,
        "state": field(seq::STATE),
        "reason": field(seq::REASON),
        "detail": field(seq::DETAIL),
        "schedule": field(seq::SCHEDULE),
        "anchor": field(seq::ANCHOR),
        "zone": field(seq::ZONE),
        "enrolled_at": rec.get(seq::ENROLLED_AT).and_then(|s| s.parse::<i64>().ok()),
        "ended_at": rec.get(seq::ENDED_AT).and_then(|s| s.parse::<i64>().ok()),
        "steps": steps,
    })))
}

/// Put back missing timers of one page of sequences. Keys: the sequences
/// index, the delayed set. Args: page start, page size, the message record
/// prefix, the sequence record prefix, prune-before (ms). A step is waiting
/// when its record holds its bytes (`msg`), its state is `deferred` or
/// `retrying` and it is not held for a paused tenant; one missing from the
/// delayed set gets its timer back at its `until`. Returns {walked, fixed}.
pub const RECONCILE_LUA: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[5])
local start = tonumber(ARGV[1])
local seqs = redis.call('ZRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)
local fixed = 0
for _, m in ipairs(seqs) do
  local s = redis.call('HMGET', ARGV[4] .. m, 'state', 'steps')
  if s[1] == 'active' then
    for i = 1, (tonumber(s[2] or '0') or 0) do
      local member = m .. '/' .. i
      local v = redis.call('HMGET', ARGV[3] .. member, 'state', 'until', 'msg', 'reason')
      if v[3] and v[2] and (v[1] == 'deferred' or v[1] == 'retrying') and v[4] ~= 'paused' then
        if not redis.call('ZSCORE', KEYS[2], member) then
          redis.call('ZADD', KEYS[2], v[2], member)
          fixed = fixed + 1
        end
      end
    end
  end
end
return {#seqs, fixed}
"#;

/// Walk every sequence, one page per `every`, and put back any waiting
/// step's missing timer. Safe on every instance (each page is one atomic
/// script; a timer put back twice is one `ZADD`). Sequences whose last step
/// is more than `keep` past are dropped from the index.
pub async fn run_reconciler(
    mut conn: Conn,
    every: Duration,
    keep: Duration,
    shutdown: CancellationToken,
) {
    const PAGE: i64 = 200;
    let script = redis::Script::new(RECONCILE_LUA);
    let mut start: i64 = 0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let prune = crate::clock::now_ms() - keep.as_millis() as i64;
        let res: redis::RedisResult<(i64, i64)> = script
            .key(keys::SEQUENCES)
            .key(keys::DELAYED)
            .arg(start)
            .arg(PAGE)
            .arg(keys::MSG_PREFIX)
            .arg(keys::SEQ_PREFIX)
            .arg(prune)
            .invoke_async(&mut conn)
            .await;
        match res {
            Ok((walked, fixed)) => {
                if fixed > 0 {
                    tracing::warn!(fixed, "sequence steps had lost their timer; put back");
                    telemetry::sequence_timers_restored(fixed as u64);
                }
                start = if walked < PAGE { 0 } else { start + PAGE };
            }
            Err(e) => {
                telemetry::redis_error("reconcile_sequences");
                tracing::debug!(error = %e, "reconciling sequences failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn zone(name: &str) -> Vec<Zone> {
        vec![Zone::by_name(name).expect("a zone")]
    }

    fn at(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>()
            .expect("instant")
            .as_millisecond()
    }

    /// 2026-03-08 is the US spring-forward day (02:00 → 03:00), 2026-11-01
    /// the fall-back day (02:00 → 01:00).
    #[test]
    fn local_send_times_follow_the_zone_across_dst() {
        let ten = time(10, 0, 0, 0);
        let ny = zone("America/New_York");
        // EST (UTC-5) before, EDT (UTC-4) after the change.
        assert_eq!(
            step_instant(date(2026, 3, 7), 0, ten, &ny),
            Some(at("2026-03-07T15:00:00Z"))
        );
        assert_eq!(
            step_instant(date(2026, 3, 7), 1, ten, &ny),
            Some(at("2026-03-08T14:00:00Z"))
        );
        let la = zone("America/Los_Angeles");
        assert_eq!(
            step_instant(date(2026, 11, 1), -1, ten, &la),
            Some(at("2026-10-31T17:00:00Z"))
        );
        assert_eq!(
            step_instant(date(2026, 11, 1), 0, ten, &la),
            Some(at("2026-11-01T18:00:00Z"))
        );
        // 02:30 does not exist on 2026-03-08 in New York: it moves later,
        // to 03:30 EDT.
        let gap = time(2, 30, 0, 0);
        assert_eq!(
            step_instant(date(2026, 3, 8), 0, gap, &ny),
            Some(at("2026-03-08T07:30:00Z"))
        );
        // 01:30 happens twice on 2026-11-01: the first (EDT, UTC-4).
        let fold = time(1, 30, 0, 0);
        assert_eq!(
            step_instant(date(2026, 11, 1), 0, fold, &ny),
            Some(at("2026-11-01T05:30:00Z"))
        );
        // Several candidate zones: the latest instant, so none is early.
        let both = [ny[0], la[0]];
        assert_eq!(
            step_instant(date(2026, 12, 1), 0, ten, &both),
            Some(at("2026-12-01T18:00:00Z"))
        );
        // No zone at all: UTC.
        assert_eq!(
            step_instant(date(2026, 12, 1), 0, ten, &[]),
            Some(at("2026-12-01T10:00:00Z"))
        );
    }

    #[test]
    fn a_cancel_reply_is_read_or_refused() {
        use redis::Value::{Array, Int};
        assert_eq!(
            parse_cancel(&Array(vec![Int(1), Int(4)])),
            Some(Cancelled::Cancelled { released: 4 })
        );
        assert_eq!(
            parse_cancel(&Array(vec![Int(0), Int(0)])),
            Some(Cancelled::AlreadyEnded)
        );
        assert_eq!(
            parse_cancel(&Array(vec![Int(2), Int(0)])),
            Some(Cancelled::NotEnrolled)
        );
        assert_eq!(parse_cancel(&Int(1)), None);
    }

    /// The scripts write only fields of the records' layouts.
    #[test]
    fn the_scripts_write_the_record_layouts() {
        for f in ["'state'", "'reason'", "'ended_at'", "'detail'", "'steps'"] {
            assert!(CANCEL_LUA.contains(f), "{f}");
        }
        for f in [
            seq::STATE,
            seq::REASON,
            seq::ENDED_AT,
            seq::DETAIL,
            seq::STEPS,
        ] {
            assert!(CANCEL_LUA.contains(&format!("'{f}'")), "{f}");
        }
        assert!(CANCEL_LUA.contains(&format!("'{}'", seq::CANCELLED)));
        for f in ["msg", "part", "entry", "state", "until", "reason"] {
            assert!(keys::msg::FIELDS.contains(&f), "{f}");
        }
    }
}
