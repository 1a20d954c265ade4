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

use super::outcome::{Decision, Outcome, OutcomeKind, Status, StatusCounts};
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
}

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 1024;

/// Run until every sender is dropped and the channel is drained.
pub async fn run_writer(
    mut conn: Conn,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    cfg: WriterConfig,
) {
    let mut batch: Vec<Outcome> = Vec::with_capacity(MAX_BATCH);
    let mut backoff = Backoff::new();
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
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    telemetry::redis_error("write_outcomes");
                    tracing::warn!(error = %e, batch = batch.len(), "recording outcomes failed; retrying");
                    backoff.wait().await;
                }
            }
        }
        for o in &batch {
            super::events::recorded(o, &cfg.counts);
        }
        batch.clear();
    }
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
                record::add_step(&mut pipe, &m.tenant, &m.id, &entry, ttl_ms);
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
    if d.pin
        && let Some(p) = &d.provider
    {
        hset.arg(msg::PIN).arg(&**p);
    }
    let scheduled = d.requeue.as_ref().map(|rq| Scheduled {
        raw: &rq.raw,
        partition: o.partition,
        due: rq.due,
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
    if let Some(s) = &scheduled {
        s.add_timer(pipe, key, &m.tenant, &m.id, now, ttl_ms);
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
        reason: d.reason.map(Reason::as_str),
        detail: d.detail.as_deref(),
        until,
        provider: d.provider.as_deref(),
        provider_id: d.provider_id.as_deref(),
        attempt: d.attempt,
        entry: o.entry.to_string(),
        rules: &d.fired,
    };
    record::add_step(pipe, &m.tenant, &m.id, &entry, ttl_ms);
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
