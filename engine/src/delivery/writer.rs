//! The outcome writer: each state change of a message is recorded in one
//! atomic Redis transaction together with the acknowledgement of its queue
//! entry — the message's record, its `herald:events` entry, its decision
//! trail, the `XACK` (and the trim of the stream's acknowledged head).
//! Because they commit together, a crash leaves either all of them or none:
//! a redelivered entry whose decision was recorded is only acknowledged,
//! never decided (or sent) twice.
//!
//! Outcomes are written in batches by one writer task per shard, so the
//! per-message path never makes its own Redis round trip.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::outcome::{Decision, Outcome, OutcomeKind, Status, StatusCounts, ToWriter};
use super::record::{self, TrailEntry};
use crate::conn::{Backoff, Conn};
use crate::ingest::delayed::Scheduled;
use crate::ingest::stream::StreamId;
use crate::keys::{self, msg};
use crate::model::{Reason, Rejection};
use crate::telemetry;

/// Settings the writer needs.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub events_max_len: u64,
    pub dlq_max_len: u64,
    pub delete_acked: bool,
    pub state_ttl: Duration,
    pub streams: Arc<[String]>,
    pub counts: Arc<StatusCounts>,
    /// This instance's consumer name: the heartbeat keeps its entries.
    pub consumer: String,
    /// `dispatch.claim_idle_ms`: entries idle this long are taken over by
    /// other instances, so the heartbeat keeps ours well below it.
    pub claim_idle: Duration,
}

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 1024;

/// How long a recipient is remembered as texted by a tenant from a sender
/// no tenant owns: a STOP may come long after the text.
const TEXTED_TTL_MS: u64 = 400 * 24 * 3_600_000;

/// How long the mark of a committed batch is kept: longer than any retry
/// of it can take.
const WRITTEN_TTL_MS: u64 = 600_000;

/// Run until every sender is dropped and the channel is drained.
///
/// Besides recording outcomes, the writer keeps the entries its shard is
/// handling claimed: every `claim_idle / 4` it resets their idle time
/// (`XCLAIM … JUSTID`), so a slow send is never taken over by another
/// instance's `XAUTOCLAIM` while this one is alive (BullMQ renews a job's
/// lock the same way). The writer knows exactly which entries are in
/// flight — the shard tells it what it read, in order, before their
/// outcomes — so an entry whose outcome never comes (a lost task) stops
/// being renewed after `10 × claim_idle` and is recovered like a dead
/// consumer's.
pub async fn run_writer(
    mut conn: Conn,
    mut rx: mpsc::UnboundedReceiver<ToWriter>,
    cfg: WriterConfig,
) {
    let mut msgs: Vec<ToWriter> = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<Outcome> = Vec::with_capacity(MAX_BATCH);
    let mut backoff = Backoff::new();
    let mut heartbeat = Heartbeat::new(&cfg);
    let mut tick = tokio::time::interval(heartbeat.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut msgs, MAX_BATCH) => {
                if n == 0 {
                    return;
                }
            }
            _ = tick.tick() => {
                heartbeat.beat(&mut conn, &cfg).await;
                continue;
            }
        }
        let now = crate::clock::now_ms();
        for m in msgs.drain(..) {
            match m {
                ToWriter::Reading(entries) => heartbeat.reading(entries, now),
                ToWriter::Outcome(o) => batch.push(o),
            }
        }
        if batch.is_empty() {
            continue;
        }
        let token = rand::random::<u64>();
        let pipe = build(&batch, &cfg, now, token);
        // Redis errors: keep retrying. The entries stay pending meanwhile, so
        // a crash here loses nothing; the permits held by `batch` keep the
        // shards from reading more than they can record. A retry first asks
        // whether the last try committed (its reply may have been lost):
        // the batch's mark says so, and then nothing is written twice.
        let mut tried = false;
        loop {
            if tried {
                match committed(&mut conn, token).await {
                    Ok(true) => {
                        tracing::info!(
                            batch = batch.len(),
                            "an outcome batch had committed; its reply was lost"
                        );
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        telemetry::redis_error("write_outcomes");
                        tracing::warn!(error = %e, "checking an outcome batch failed; retrying");
                        heartbeat.beat_if_due(&mut conn, &cfg).await;
                        backoff.wait().await;
                        continue;
                    }
                }
            }
            tried = true;
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => {
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    telemetry::redis_error("write_outcomes");
                    tracing::warn!(error = %e, batch = batch.len(), "recording outcomes failed; retrying");
                    heartbeat.beat_if_due(&mut conn, &cfg).await;
                    backoff.wait().await;
                }
            }
        }
        for o in &batch {
            heartbeat.done(o.partition, o.entry);
            super::events::recorded(o, &cfg.counts);
        }
        batch.clear();
        // A steady stream of outcomes must not starve the heartbeat.
        heartbeat.beat_if_due(&mut conn, &cfg).await;
    }
}

/// Whether the batch marked `token` committed.
async fn committed(conn: &mut Conn, token: u64) -> redis::RedisResult<bool> {
    redis::cmd("EXISTS")
        .arg(keys::written(token))
        .query_async::<i64>(conn)
        .await
        .map(|n| n > 0)
}

/// The entries this shard is handling, kept claimed while they are.
struct Heartbeat {
    /// (partition, entry) → when it was read (ms).
    in_flight: hashbrown::HashMap<(u16, StreamId), i64>,
    every: Duration,
    next: tokio::time::Instant,
    /// Entries in flight longer than this are stuck: no longer renewed.
    give_up_ms: i64,
}

impl Heartbeat {
    fn new(cfg: &WriterConfig) -> Heartbeat {
        let every = (cfg.claim_idle / 4).max(Duration::from_millis(10));
        Heartbeat {
            in_flight: hashbrown::HashMap::new(),
            every,
            next: tokio::time::Instant::now() + every,
            give_up_ms: 10 * cfg.claim_idle.as_millis() as i64,
        }
    }

    fn reading(&mut self, entries: Vec<(u16, StreamId)>, now: i64) {
        for e in entries {
            self.in_flight.insert(e, now);
        }
    }

    fn done(&mut self, partition: u16, entry: StreamId) {
        self.in_flight.remove(&(partition, entry));
    }

    /// Beat now if a tick came due while the writer was busy retrying.
    async fn beat_if_due(&mut self, conn: &mut Conn, cfg: &WriterConfig) {
        if tokio::time::Instant::now() >= self.next {
            self.beat(conn, cfg).await;
        }
    }

    /// Reset the idle time of every entry in flight that is still ours.
    /// Entries another consumer took meanwhile (after an outage longer than
    /// `claim_idle`) are left to it: `XPENDING` for our consumer lists only
    /// ours.
    async fn beat(&mut self, conn: &mut Conn, cfg: &WriterConfig) {
        self.next = tokio::time::Instant::now() + self.every;
        if self.in_flight.is_empty() {
            return;
        }
        let now = crate::clock::now_ms();
        let mut by_partition: Vec<usize> = vec![0; cfg.streams.len()];
        let mut stuck = 0;
        for (&(p, _), &since) in &self.in_flight {
            if now - since > self.give_up_ms {
                stuck += 1;
            } else if let Some(n) = by_partition.get_mut(usize::from(p)) {
                *n += 1;
            }
        }
        if stuck > 0 {
            tracing::warn!(
                stuck,
                "entries in flight for more than 10 × claim_idle are no longer renewed"
            );
        }
        let min_idle = (self.every.as_millis() / 2) as u64;
        let mut pending = redis::pipe();
        let mut asked = Vec::new();
        for (p, n) in by_partition.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            pending
                .cmd("XPENDING")
                .arg(&cfg.streams[p])
                .arg(keys::GROUP)
                .arg("IDLE")
                .arg(min_idle)
                .arg("-")
                .arg("+")
                .arg(*n + 64)
                .arg(&cfg.consumer);
            asked.push(p);
        }
        let replies: Vec<redis::Value> = match pending.query_async(conn).await {
            Ok(r) => r,
            Err(e) => {
                telemetry::redis_error("heartbeat");
                tracing::warn!(error = %e, "renewing claims failed");
                return;
            }
        };
        let mut claim = redis::pipe();
        let mut renewed = 0;
        for (p, reply) in asked.into_iter().zip(replies) {
            let ids: Vec<StreamId> = crate::ingest::stream::pending_counts(&reply)
                .into_iter()
                .map(|(id, _)| id)
                .filter(|id| {
                    self.in_flight
                        .get(&(p as u16, *id))
                        .is_some_and(|since| now - since <= self.give_up_ms)
                })
                .collect();
            if ids.is_empty() {
                continue;
            }
            renewed += ids.len();
            claim
                .cmd("XCLAIM")
                .arg(&cfg.streams[p])
                .arg(keys::GROUP)
                .arg(&cfg.consumer)
                .arg(0)
                .arg(&ids)
                .arg("JUSTID")
                .ignore();
        }
        if renewed == 0 {
            return;
        }
        if let Err(e) = claim.query_async::<()>(conn).await {
            telemetry::redis_error("heartbeat");
            tracing::warn!(error = %e, "renewing claims failed");
            return;
        }
        telemetry::claims_renewed(renewed);
    }
}

/// How long a number's experiment variants are remembered for attributing
/// its replies and payments.
const EXPERIMENT_WHO_TTL_MS: u64 = 90 * 86_400_000;

fn build(batch: &[Outcome], cfg: &WriterConfig, now: i64, token: u64) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    // The batch's mark: committed with everything else, or not at all.
    pipe.cmd("SET")
        .arg(keys::written(token))
        .arg(1)
        .arg("PX")
        .arg(WRITTEN_TTL_MS)
        .ignore();
    // Acks are grouped per partition: one XACK (and trim) per stream per
    // batch instead of one per message.
    let mut acks: Vec<Vec<StreamId>> = vec![Vec::new(); cfg.streams.len()];
    // One key buffer for the batch: commands copy their arguments.
    let mut key = String::with_capacity(64);
    let ttl_ms = cfg.state_ttl.as_millis() as u64;
    let mut ts = itoa::Buffer::new();
    let ts = ts.format(now).to_owned();
    for o in batch {
        match &o.kind {
            OutcomeKind::AckOnly => {}
            OutcomeKind::Decided(d) => decided(&mut pipe, o, d, cfg, &ts, now, ttl_ms, &mut key),
            OutcomeKind::Duplicate(m) => {
                let mut ev = event(cfg, &m.id, &m.tenant, Status::Duplicate, &ts);
                ev.arg("reason").arg("duplicate");
                if let Some(meta) = &m.meta {
                    ev.arg("meta").arg(meta.get());
                }
                pipe.add_command(ev).ignore();
                let entry = TrailEntry {
                    ts: now,
                    status: "duplicate",
                    reason: Some("duplicate"),
                    detail: Some("a message with this tenant and id was already accepted"),
                    until: None,
                    provider: None,
                    provider_id: None,
                    attempt: 0,
                    entry: o.entry.to_string(),
                    rules: &[],
                };
                record::add_step(&mut pipe, &m.tenant, &m.id, &entry, ttl_ms);
            }
            OutcomeKind::Rejected { rejection, raw } => {
                rejected(&mut pipe, o, rejection, raw, cfg, &ts, now, ttl_ms)
            }
            OutcomeKind::Enrolled(e) => {
                for d in &e.steps {
                    decided(&mut pipe, o, d, cfg, &ts, now, ttl_ms, &mut key);
                }
                crate::sequences::add_enrolment(&mut pipe, &e.parent, &e.plan, now, ttl_ms);
            }
            OutcomeKind::Poison { detail } => poison(&mut pipe, o, detail, cfg, &ts, ttl_ms),
        }
        if let Some(ids) = acks.get_mut(usize::from(o.partition)) {
            ids.push(o.entry);
        }
    }
    for (stream, ids) in cfg.streams.iter().zip(&acks) {
        if ids.is_empty() {
            continue;
        }
        pipe.cmd("XACK")
            .arg(stream)
            .arg(keys::GROUP)
            .arg(ids)
            .ignore();
        if cfg.delete_acked {
            // After the acks, in the same transaction: the head of the
            // stream that no group needs any more goes.
            crate::ingest::trim::add_trim(&mut pipe, stream);
        }
    }
    pipe
}

fn event(cfg: &WriterConfig, id: &str, tenant: &str, status: Status, ts: &str) -> redis::Cmd {
    let mut ev = redis::cmd("XADD");
    ev.arg(keys::EVENTS)
        .arg("MAXLEN")
        .arg("~")
        .arg(cfg.events_max_len)
        .arg("*")
        .arg("id")
        .arg(id)
        .arg("tenant")
        .arg(tenant)
        .arg("status")
        .arg(status.as_str())
        .arg("ts")
        .arg(ts);
    ev
}

#[allow(clippy::too_many_arguments)]
fn decided(
    pipe: &mut redis::Pipeline,
    o: &Outcome,
    d: &Decision,
    cfg: &WriterConfig,
    ts: &str,
    now: i64,
    ttl_ms: u64,
    key: &mut String,
) {
    let m = &d.msg;
    let mut ev = event(cfg, &m.id, &m.tenant, d.status, ts);
    if let Some(r) = d.reason {
        ev.arg("reason").arg(r.as_str());
    }
    let until = d.requeue.as_ref().and_then(|r| r.until());
    if let Some(u) = until {
        ev.arg("until").arg(u);
    }
    if let Some(p) = &d.provider {
        ev.arg("provider").arg(&**p);
    }
    if let Some(p) = &d.provider_id {
        ev.arg("provider_id").arg(p);
    }
    ev.arg("attempt").arg(d.attempt);
    if let Some(s) = d.segments {
        ev.arg("segments").arg(s);
    }
    if let Some(detail) = &d.detail {
        ev.arg("detail").arg(detail);
    }
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
        ev.arg("sequence").arg(&*st.schedule).arg("step").arg(st.n);
    }
    let variant = m
        .template
        .as_deref()
        .and_then(|t| Some((t.experiment.as_deref()?, t.variant.as_deref()?)));
    if let Some((e, v)) = variant {
        ev.arg("experiment").arg(e).arg("variant").arg(v);
    }
    pipe.add_command(ev).ignore();

    keys::message_into(key, &m.tenant, &m.id);
    let key: &str = key;
    let mut hset = redis::cmd("HSET");
    hset.arg(key)
        .arg(msg::STATE)
        .arg(d.status.as_str())
        .arg(msg::TS)
        .arg(ts)
        .arg(msg::ATTEMPT)
        .arg(d.attempt);
    if let Some(r) = d.reason {
        hset.arg(msg::REASON).arg(r.as_str());
    }
    if let Some(p) = &d.provider {
        hset.arg(msg::PROVIDER).arg(&**p);
    }
    if let Some(p) = &d.provider_id {
        hset.arg(msg::PROVIDER_ID).arg(p);
    }
    if let Some(s) = d.segments {
        hset.arg(msg::SEGMENTS).arg(s);
    }
    if let Some(t) = &m.template
        && let Some(v) = t.version
    {
        hset.arg(msg::TEMPLATE)
            .arg(&*t.name)
            .arg(msg::TEMPLATE_VERSION)
            .arg(v)
            .arg(msg::BODY_SHA256)
            .arg(crate::secret::sha256_hex(m.body.as_bytes()));
    }
    if let Some((e, v)) = variant {
        hset.arg(msg::EXPERIMENT).arg(e).arg(msg::VARIANT).arg(v);
        if d.status == Status::Sent {
            // The experiment's counts, in the same transaction as the send.
            let mut field = String::with_capacity(v.len() + 9);
            field.push_str(v);
            field.push_str(":messages");
            pipe.cmd("HINCRBY")
                .arg(keys::experiment(&m.tenant, e))
                .arg(field)
                .arg(1)
                .ignore();
            pipe.cmd("SADD")
                .arg(keys::experiment_people(&m.tenant, e, v, "sent"))
                .arg(m.to)
                .ignore();
            let who = keys::experiments_of(m.to);
            pipe.cmd("HSET")
                .arg(&who)
                .arg(keys::member(&m.tenant, e))
                .arg(v)
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&who)
                .arg(EXPERIMENT_WHO_TTL_MS)
                .ignore();
        }
    }
    if d.pin
        && let Some(p) = &d.provider
    {
        hset.arg(msg::PIN).arg(&**p);
    }
    let scheduled = d.requeue.as_ref().map(|rq| Scheduled {
        raw: &rq.raw,
        partition: o.partition,
        due: rq.due,
        held: rq.held,
    });
    if let Some(s) = &scheduled {
        s.add_fields(&mut hset);
    }
    pipe.add_command(hset).ignore();
    if d.status != Status::Sent && !d.caps.is_empty() {
        // Not sent: give back the cap places it reserved.
        crate::policy::caps::add_release(pipe, &d.caps, &keys::member(&m.tenant, &m.id));
    }
    if d.status == Status::Sent
        && let (Some(kind), Some(p), Some(pid)) = (d.receipts, &d.provider, &d.provider_id)
    {
        // `provider\ntenant\nid`: the receipt names who sent it.
        let mut v = String::with_capacity(p.len() + m.tenant.len() + m.id.len() + 2);
        v.push_str(p);
        v.push('\n');
        v.push_str(&m.tenant);
        v.push('\n');
        v.push_str(&m.id);
        pipe.cmd("SET")
            .arg(keys::provider_id(kind, pid))
            .arg(v)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
    }
    if d.status == Status::Sent && d.remember_recipient {
        let k = keys::texted(m.to);
        pipe.cmd("SADD").arg(&k).arg(&m.tenant).ignore();
        pipe.cmd("PEXPIRE").arg(&k).arg(TEXTED_TTL_MS).ignore();
    }
    if let Some(ch) = &d.consent {
        crate::consent::ledger::add_eval(pipe, &ch.as_change());
    }
    if let Some(s) = &scheduled {
        s.add_timer(pipe, key, &m.tenant, &m.id, now, ttl_ms);
    }
    // The hash holds the latest decision; `GET /v1/messages` shows it as the
    // trail's last step. Only the steps before it need the list, so the
    // common case — sent on the first try — writes no trail entry (two
    // commands per message saved, measured in the throughput scenario).
    if (d.status == Status::Sent && d.attempt <= 1) || d.skip_trail {
        return;
    }
    let entry = TrailEntry {
        ts: now,
        status: d.status.as_str(),
        reason: d.reason.map(Reason::as_str),
        detail: d.detail.as_deref(),
        until,
        provider: d.provider.as_deref(),
        provider_id: d.provider_id.as_deref(),
        attempt: d.attempt,
        entry: o.entry.to_string(),
        rules: &d.fired,
    };
    // A held message's trail lives as long as its record (no end date).
    let keep = match &d.requeue {
        Some(rq) if rq.held => ttl_ms + crate::ingest::delayed::HELD_KEEP_MS,
        _ => ttl_ms,
    };
    record::add_step(pipe, &m.tenant, &m.id, &entry, keep);
}

#[allow(clippy::too_many_arguments)]
fn rejected(
    pipe: &mut redis::Pipeline,
    o: &Outcome,
    r: &Rejection,
    raw: &[u8],
    cfg: &WriterConfig,
    ts: &str,
    now: i64,
    ttl_ms: u64,
) {
    let id = r.id.as_deref().unwrap_or("");
    let tenant = r.tenant.as_deref().unwrap_or(crate::model::DEFAULT_TENANT);
    let mut ev = event(cfg, id, tenant, Status::Rejected, ts);
    ev.arg("reason")
        .arg(r.reason.as_str())
        .arg("detail")
        .arg(&r.detail)
        .arg("entry")
        .arg(o.entry)
        .arg("partition")
        .arg(o.partition);
    pipe.add_command(ev).ignore();
    // Every rejected entry is kept whole in the DLQ: the queue entry is
    // deleted after the ack, and nothing may be lost.
    pipe.cmd("XADD")
        .arg(keys::DLQ)
        .arg("MAXLEN")
        .arg("~")
        .arg(cfg.dlq_max_len)
        .arg("*")
        .arg("reason")
        .arg(r.reason.as_str())
        .arg("detail")
        .arg(&r.detail)
        .arg("stream")
        .arg(&cfg.streams[usize::from(o.partition)])
        .arg("entry")
        .arg(o.entry)
        .arg("msg")
        .arg(raw)
        .ignore();
    // A trail for a rejection that names a usable tenant + id, so
    // `GET /v1/messages/{tenant}/{id}` can say why.
    if let (Some(id), Some(tenant)) = (r.id.as_deref(), r.tenant.as_deref())
        && !id.is_empty()
        && !tenant.contains(':')
    {
        let entry = TrailEntry {
            ts: now,
            status: "rejected",
            reason: Some(r.reason.as_str()),
            detail: Some(&r.detail),
            until: None,
            provider: None,
            provider_id: None,
            attempt: 0,
            entry: o.entry.to_string(),
            rules: &[],
        };
        record::add_step(pipe, tenant, id, &entry, ttl_ms);
    }
}

/// A poison entry: copied from its stream to the DLQ, and its message (as
/// far as its JSON can be read) recorded `failed` / `poison`. In Lua
/// because only Redis has the entry's bytes at hand: the task that
/// panicked took its copy with it.
///
/// KEYS: the stream, the DLQ, the events stream. ARGV: entry id, detail,
/// ts, events max len, DLQ max len, record prefix, trail prefix, ttl (ms).
pub const POISON_LUA: &str = r#"
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
local raw = ''
if e[1] then
  local f = e[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'msg' then raw = f[i + 1] end
  end
end
local id, tenant = '', 'default'
local ok, m = pcall(cjson.decode, raw)
if ok and type(m) == 'table' then
  if type(m.id) == 'string' then id = m.id end
  if type(m.tenant) == 'string' then tenant = m.tenant end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'reason', 'poison', 'detail', ARGV[2],
  'stream', KEYS[1], 'entry', ARGV[1], 'msg', raw)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'id', id, 'tenant', tenant,
  'status', 'failed', 'reason', 'poison', 'detail', ARGV[2], 'entry', ARGV[1], 'ts', ARGV[3])
if id ~= '' and not string.find(tenant, ':', 1, true) then
  local k = ARGV[6] .. tenant .. ':' .. id
  if redis.call('HGET', k, 'entry') == ARGV[1] then
    redis.call('HSET', k, 'state', 'failed', 'reason', 'poison', 'ts', ARGV[3])
  end
  local t = ARGV[7] .. tenant .. ':' .. id
  redis.call('RPUSH', t, cjson.encode({ts = tonumber(ARGV[3]), status = 'failed',
    reason = 'poison', detail = ARGV[2], entry = ARGV[1], attempt = 0}))
  redis.call('PEXPIRE', t, ARGV[8])
end
return 1
"#;

fn poison(
    pipe: &mut redis::Pipeline,
    o: &Outcome,
    detail: &str,
    cfg: &WriterConfig,
    ts: &str,
    ttl_ms: u64,
) {
    let Some(stream) = cfg.streams.get(usize::from(o.partition)) else {
        return;
    };
    pipe.cmd("EVAL")
        .arg(POISON_LUA)
        .arg(3)
        .arg(stream)
        .arg(keys::DLQ)
        .arg(keys::EVENTS)
        .arg(o.entry)
        .arg(detail)
        .arg(ts)
        .arg(cfg.events_max_len)
        .arg(cfg.dlq_max_len)
        .arg(keys::MSG_PREFIX)
        .arg(keys::TRAIL_PREFIX)
        .arg(ttl_ms)
        .ignore();
}
