//! Outcomes (DESIGN §3): each state change of a message is recorded in one
//! atomic Redis transaction together with the acknowledgement of its queue
//! entry — the message's state hash, its `herald:events` entry, its decision
//! trail, the `XACK` (and the trim of the stream's acknowledged head).
//! Because they commit together, a crash leaves either all of them or none:
//! a redelivered entry whose decision was recorded is only acknowledged,
//! never decided (or sent) twice.
//!
//! Outcomes are written in batches by one writer task per shard, so the
//! per-message path never makes its own Redis round trip.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::keys;
use crate::model::{Message, Rejection};
use crate::queue::StreamId;
use crate::telemetry;

/// A message's status (DESIGN §3). The strings are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Deferred,
    Retrying,
    Sent,
    Delivered,
    Undelivered,
    Suppressed,
    Rejected,
    Failed,
    Expired,
    Duplicate,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Deferred,
        Status::Retrying,
        Status::Sent,
        Status::Delivered,
        Status::Undelivered,
        Status::Suppressed,
        Status::Rejected,
        Status::Failed,
        Status::Expired,
        Status::Duplicate,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Deferred => "deferred",
            Status::Retrying => "retrying",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Undelivered => "undelivered",
            Status::Suppressed => "suppressed",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::Duplicate => "duplicate",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Outcomes recorded by this instance since it started, by status: atomics,
/// for `GetStats`.
#[derive(Debug, Default)]
pub struct StatusCounts([std::sync::atomic::AtomicU64; 11]);

impl StatusCounts {
    pub fn add(&self, status: Status) {
        self.0[status as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Status::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str(),
                    self.0[*s as usize].load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// Where a message goes after a non-terminal outcome: back into the queue
/// through the delayed set at `due` (ms epoch).
#[derive(Debug)]
pub struct Requeue {
    pub due: i64,
    /// The entry's original `msg` bytes, stored until release.
    pub raw: Vec<u8>,
}

/// A decision about a valid message.
#[derive(Debug)]
pub struct Decision {
    pub msg: Message,
    pub status: Status,
    pub reason: Option<&'static str>,
    /// Human-readable detail (provider error text…).
    pub detail: Option<String>,
    pub provider: Option<Arc<str>>,
    pub provider_id: Option<String>,
    pub attempt: u32,
    pub segments: Option<u32>,
    /// `until` of a deferral / retry.
    pub requeue: Option<Requeue>,
    /// The compliance rules behind the decision, for the trail.
    pub fired: Vec<crate::policy::Fired>,
    /// Frequency-cap places this message reserved: given back in the same
    /// transaction unless it was sent.
    pub caps: Vec<crate::policy::caps::CapKey>,
    /// The provider reports delivery receipts: map its message id to this
    /// message.
    pub receipts: bool,
    /// Pin the message to `provider` for its next attempt (an ambiguous
    /// send: never re-sent through another provider).
    pub pin: bool,
    /// A ledger change the decision implies (a carrier-held opt-out, Twilio
    /// 21610), recorded atomically with it.
    pub consent: Option<crate::consent::ledger::OwnedChange>,
}

impl Decision {
    pub fn new(msg: Message, status: Status, reason: Option<&'static str>, attempt: u32) -> Self {
        Decision {
            msg,
            status,
            reason,
            detail: None,
            provider: None,
            provider_id: None,
            attempt,
            segments: None,
            requeue: None,
            fired: Vec::new(),
            caps: Vec::new(),
            pin: false,
            receipts: false,
            consent: None,
        }
    }
}

#[derive(Debug)]
pub enum OutcomeKind {
    /// The entry was decided before a crash; only its ack was lost.
    AckOnly,
    /// A decision about a valid message.
    Decided(Box<Decision>),
    /// Another entry already carried this tenant + id: record `duplicate`
    /// without touching the original's state.
    Duplicate(Box<Message>),
    /// The entry breaks the ingest contract; it is copied whole to the DLQ.
    Rejected { rejection: Rejection, raw: Vec<u8> },
}

/// One queue entry's outcome, carrying the in-flight permit it held: the
/// permit is released only once the outcome is in Redis, so memory is
/// bounded by `dispatch.max_in_flight` even while Redis is slow.
#[derive(Debug)]
pub struct Outcome {
    pub partition: u16,
    pub entry: StreamId,
    pub kind: OutcomeKind,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Settings the writer needs.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub events_max_len: u64,
    pub dlq_max_len: u64,
    pub delete_acked: bool,
    pub state_ttl: Duration,
    pub streams: Arc<[String]>,
    pub counts: Arc<StatusCounts>,
}

pub type OutcomeSender = mpsc::UnboundedSender<Outcome>;

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 1024;

/// Run until every sender is dropped and the channel is drained.
pub async fn run_writer(
    mut conn: ConnectionManager,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    cfg: WriterConfig,
) {
    let mut batch: Vec<Outcome> = Vec::with_capacity(MAX_BATCH);
    let mut backoff = Duration::from_millis(50);
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let now = crate::clock::now_ms();
        let pipe = build(&batch, &cfg, now);
        // Redis errors: keep retrying. The entries stay pending meanwhile, so
        // a crash here loses nothing; the permits held by `batch` keep the
        // shards from reading more than they can record.
        loop {
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => {
                    backoff = Duration::from_millis(50);
                    break;
                }
                Err(e) => {
                    telemetry::redis_error("write_outcomes");
                    tracing::warn!(error = %e, batch = batch.len(), "recording outcomes failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        for o in &batch {
            count(o, &cfg.counts);
        }
        batch.clear();
    }
}

fn count(o: &Outcome, counts: &StatusCounts) {
    match &o.kind {
        OutcomeKind::AckOnly => {}
        OutcomeKind::Decided(d) => {
            counts.add(d.status);
            telemetry::message_outcome(d.status.as_str(), d.reason.unwrap_or(""))
        }
        OutcomeKind::Duplicate(_) => {
            counts.add(Status::Duplicate);
            telemetry::message_outcome("duplicate", "")
        }
        OutcomeKind::Rejected { rejection, .. } => {
            counts.add(Status::Rejected);
            telemetry::message_outcome("rejected", rejection.reason.as_str())
        }
    }
}

/// One trail entry, stored as JSON in `herald:trail:<tenant>:<id>`.
#[derive(Serialize)]
struct TrailEntry<'a> {
    ts: i64,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_id: Option<&'a str>,
    attempt: u32,
    entry: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    rules: &'a [crate::policy::Fired],
}

fn build(batch: &[Outcome], cfg: &WriterConfig, now: i64) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
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
                trail(&mut pipe, &m.tenant, &m.id, &entry, ttl_ms);
            }
            OutcomeKind::Rejected { rejection, raw } => {
                rejected(&mut pipe, o, rejection, raw, cfg, &ts, now, ttl_ms)
            }
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
            pipe.cmd("EVAL")
                .arg(crate::queue::TRIM_LUA)
                .arg(1)
                .arg(stream)
                .ignore();
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

fn trail(pipe: &mut redis::Pipeline, tenant: &str, id: &str, entry: &TrailEntry<'_>, ttl_ms: u64) {
    let key = keys::trail(tenant, id);
    let json = serde_json::to_string(entry).unwrap_or_default();
    pipe.cmd("RPUSH").arg(&key).arg(json).ignore();
    pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
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
        ev.arg("reason").arg(r);
    }
    let until = d.requeue.as_ref().map(|r| r.due);
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
    pipe.add_command(ev).ignore();

    keys::message_into(key, &m.tenant, &m.id);
    let key: &str = key;
    let mut hset = redis::cmd("HSET");
    hset.arg(key)
        .arg("state")
        .arg(d.status.as_str())
        .arg("ts")
        .arg(ts)
        .arg("attempt")
        .arg(d.attempt);
    if let Some(r) = d.reason {
        hset.arg("reason").arg(r);
    }
    if let Some(p) = &d.provider {
        hset.arg("provider").arg(&**p);
    }
    if let Some(p) = &d.provider_id {
        hset.arg("provider_id").arg(p);
    }
    if let Some(s) = d.segments {
        hset.arg("segments").arg(s);
    }
    if d.pin
        && let Some(p) = &d.provider
    {
        hset.arg("pin").arg(&**p);
    }
    if let Some(rq) = &d.requeue {
        hset.arg("msg")
            .arg(&rq.raw[..])
            .arg("part")
            .arg(o.partition)
            .arg("until")
            .arg(rq.due);
    }
    pipe.add_command(hset).ignore();
    if d.status != Status::Sent && !d.caps.is_empty() {
        // Not sent: give back the cap places it reserved.
        let member = keys::member(&m.tenant, &m.id);
        for c in &d.caps {
            pipe.cmd("ZREM").arg(&c.key).arg(&member).ignore();
        }
    }
    if d.status == Status::Sent
        && d.receipts
        && let (Some(p), Some(pid)) = (&d.provider, &d.provider_id)
    {
        let mut v = String::with_capacity(m.tenant.len() + m.id.len() + 1);
        v.push_str(&m.tenant);
        v.push('\n');
        v.push_str(&m.id);
        pipe.cmd("SET")
            .arg(keys::provider_id(p, pid))
            .arg(v)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
    }
    if let Some(ch) = &d.consent {
        crate::consent::ledger::add_eval(pipe, &ch.as_change());
    }
    if let Some(rq) = &d.requeue {
        // Keep the state at least until the message is due, plus the TTL.
        let keep = (rq.due - now).max(0) as u64 + ttl_ms;
        pipe.cmd("PEXPIRE").arg(key).arg(keep).ignore();
        pipe.cmd("ZADD")
            .arg(keys::DELAYED)
            .arg(rq.due)
            .arg(keys::member(&m.tenant, &m.id))
            .ignore();
    }
    // The hash holds the latest decision; `GET /v1/messages` shows it as the
    // trail's last step. Only the steps before it need the list, so the
    // common case — sent on the first try — writes no trail entry (two
    // commands per message saved, measured in the throughput scenario).
    if d.status == Status::Sent && d.attempt <= 1 {
        return;
    }
    let entry = TrailEntry {
        ts: now,
        status: d.status.as_str(),
        reason: d.reason,
        detail: d.detail.as_deref(),
        until,
        provider: d.provider.as_deref(),
        provider_id: d.provider_id.as_deref(),
        attempt: d.attempt,
        entry: o.entry.to_string(),
        rules: &d.fired,
    };
    trail(pipe, &m.tenant, &m.id, &entry, ttl_ms);
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
        trail(pipe, tenant, id, &entry, ttl_ms);
    }
}
