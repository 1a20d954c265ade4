//! The sharded dispatch loop.
//!
//! Each shard is a tokio task that owns a set of partitions
//! (`p % shards == shard`), reads them with `XREADGROUP` on its own
//! connection, and hands each batch to [`pipeline::process_batch`]. The
//! global in-flight bound is a semaphore: a shard reads at most as many
//! entries as it holds permits for, and a permit is released only when the
//! entry's outcome is in Redis — so at the bound Herald stops reading, and
//! memory never grows with the queue's length.

pub mod backoff;
pub mod config;
pub mod hold;
pub mod pipeline;
mod send;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use self::config::DispatchConfig;
use crate::conn::{Backoff, Conn};
use crate::delivery::config::EventsConfig;
use crate::delivery::outcome::{OutcomeSender, StatusCounts};
use crate::delivery::writer::{self, WriterConfig};
use crate::ingest::config::QueueConfig;
use crate::ingest::decode::Limits;
use crate::ingest::stream;
use crate::keys;
use crate::providers::Providers;
use crate::telemetry;
use crate::throttle::ThrottleConfig;
use crate::throttle::config::CarrierLookupConfig;

/// What every shard and send task shares. Immutable after start-up.
pub struct Dispatcher {
    pub dispatch: DispatchConfig,
    pub queue: QueueConfig,
    pub events: EventsConfig,
    pub limits: Limits,
    pub providers: Providers,
    /// `dispatch.max_in_flight` permits.
    pub in_flight: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub streams: Arc<[String]>,
    /// Paused tenants (lock-free snapshot, refreshed from Redis).
    pub pauses: Arc<crate::tenants::TenantPauses>,
    /// Numbers no collections text may go to (`signals`): lock-free.
    pub ceased: Arc<crate::signals::Ceased>,
    /// Outcomes recorded since start, by status.
    pub counts: Arc<StatusCounts>,
    /// Permits shards hold for a read still waiting on Redis: reserved, not
    /// messages in flight.
    pub reserved_for_reads: std::sync::atomic::AtomicUsize,
    /// Compliance rules, tenant policies, routes: the policy store's
    /// current version, swapped whole (lock-free reads).
    pub policy: Arc<crate::policy::live::LivePolicy>,
    /// Consent state (lock-free replica fed by the audit stream).
    pub consent: Arc<crate::consent::ConsentLedger>,
    /// Whether sending is safe (durable Redis, intact ledger): the shards
    /// do not read while it is not.
    pub health: Arc<crate::health::Health>,
    /// The frequency-cap script.
    pub cap_script: redis::Script,
    /// Carrier lanes and token buckets (`None`: `throttle.enabled = false`).
    pub throttle: Option<(Arc<crate::throttle::Carriers>, crate::throttle::Throttle)>,
    /// Numbers waiting for a carrier lookup, taken by the lookup task at
    /// start (`None` when lookups are off).
    pub lookups: std::sync::Mutex<Option<crate::throttle::carrier::LookupRequests>>,
}

/// What a dispatcher is made of: its settings and the shared state it
/// reads (`server` takes them from the config).
pub struct Parts {
    pub dispatch: DispatchConfig,
    pub queue: QueueConfig,
    pub events: EventsConfig,
    pub throttle: Option<ThrottleConfig>,
    pub carrier_lookup: Option<CarrierLookupConfig>,
    pub policy: Arc<crate::policy::live::LivePolicy>,
    pub providers: Providers,
    pub consent: Arc<crate::consent::ConsentLedger>,
    pub health: Arc<crate::health::Health>,
    /// Stops the shards' reads.
    pub shutdown: CancellationToken,
}

impl Dispatcher {
    pub fn new(p: Parts) -> Dispatcher {
        let Parts {
            dispatch,
            queue,
            events,
            throttle,
            carrier_lookup,
            policy,
            providers,
            consent,
            health,
            shutdown,
        } = p;
        let streams: Arc<[String]> = (0..queue.partitions).map(keys::queue).collect();
        let mut lookups = None;
        let throttle = throttle.as_ref().map(|t| {
            let carriers = match &carrier_lookup {
                Some(l) => {
                    let (c, requests) =
                        crate::throttle::Carriers::with_lookups(t, l.cache_slots, l.queue);
                    lookups = Some(requests);
                    c
                }
                None => crate::throttle::Carriers::new(t),
            };
            (Arc::new(carriers), crate::throttle::Throttle::new(t))
        });
        Dispatcher {
            limits: Limits {
                max_body_chars: dispatch.max_body_chars,
                max_entry_bytes: dispatch.max_entry_bytes,
            },
            in_flight: Arc::new(Semaphore::new(dispatch.max_in_flight)),
            providers,
            shutdown,
            streams,
            pauses: Arc::default(),
            ceased: Arc::default(),
            counts: Arc::default(),
            reserved_for_reads: std::sync::atomic::AtomicUsize::new(0),
            policy,
            consent,
            health,
            cap_script: redis::Script::new(crate::policy::caps::CAP_LUA),
            throttle,
            lookups: std::sync::Mutex::new(lookups),
            dispatch,
            queue,
            events,
        }
    }

    /// Messages currently held between read and recorded outcome.
    pub fn in_flight(&self) -> usize {
        let held = self.dispatch.max_in_flight - self.in_flight.available_permits();
        held.saturating_sub(
            self.reserved_for_reads
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub fn writer_config(&self) -> WriterConfig {
        WriterConfig {
            events_max_len: self.events.max_len,
            dlq_max_len: self.events.dlq_max_len,
            delete_acked: self.queue.delete_acked,
            state_ttl: self.dispatch.idempotency_ttl,
            streams: Arc::clone(&self.streams),
            counts: Arc::clone(&self.counts),
            consumer: self.dispatch.consumer.clone(),
            claim_idle: self.dispatch.claim_idle,
        }
    }
}

/// Spawn the shards, each with its outcome writer, supervised: one that
/// dies (a panic the per-message guards did not catch) makes `/readyz`
/// false and is started again a second later. The returned handles finish
/// once every shard stopped reading and its writer drained (in-flight sends
/// hold writer senders, so the writer outlives them).
pub fn spawn_shards(
    d: &Arc<Dispatcher>,
    read_conns: Vec<Conn>,
    work_conns: Vec<Conn>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let shards = d.dispatch.shards.min(usize::from(d.queue.partitions));
    let mut handles = Vec::with_capacity(shards);
    for (i, (read_conn, work_conn)) in read_conns
        .into_iter()
        .zip(work_conns)
        .take(shards)
        .enumerate()
    {
        let parts: Vec<u16> = (0..d.queue.partitions)
            .filter(|p| usize::from(*p) % shards == i)
            .collect();
        let d = Arc::clone(d);
        let health = Arc::clone(&d.health);
        handles.push(tokio::spawn(supervise(health, i, move || {
            let (tx, rx) = mpsc::unbounded_channel();
            let writer = tokio::spawn(writer::run_writer(work_conn.clone(), rx, d.writer_config()));
            let shard = Shard {
                index: i,
                streams: parts.iter().map(|p| keys::queue(*p)).collect(),
                parts: parts.clone(),
                d: Arc::clone(&d),
                read_conn: read_conn.clone(),
                work_conn: work_conn.clone(),
                outcomes: tx,
            };
            (tokio::spawn(shard.run()), writer)
        })));
    }
    handles
}

/// Run a reader and its writer, as `start` makes them, until the reader
/// stops cleanly (shutdown) and the writer has drained. When either dies,
/// the pair is made again a second later; meanwhile `health` counts it
/// down. A writer that died loses the batch it held: those entries stay
/// pending, unrenewed, and are taken over after `claim_idle`.
pub(crate) async fn supervise<F>(health: Arc<crate::health::Health>, index: usize, mut start: F)
where
    F: FnMut() -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>),
{
    loop {
        let (mut reader, mut writer) = start();
        let died = tokio::select! {
            r = &mut reader => match r {
                // Stopped reading: let the writer drain, and done.
                Ok(()) => match writer.await {
                    Ok(()) => return,
                    Err(e) => format!("the outcome writer died while draining: {e}"),
                },
                Err(e) => {
                    // Its in-flight sends still hold the writer: let them
                    // finish and be recorded before starting again.
                    let _ = writer.await;
                    format!("the shard died: {e}")
                }
            },
            w = &mut writer => {
                reader.abort();
                let _ = reader.await;
                format!("the outcome writer died: {}", w.err().map_or("it stopped".to_string(), |e| e.to_string()))
            }
        };
        health.task_down();
        telemetry::task_restart("shard");
        tracing::error!(shard = index, %died, "restarting the shard and its writer in 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
        health.task_up();
    }
}

struct Shard {
    index: usize,
    parts: Vec<u16>,
    streams: Vec<String>,
    d: Arc<Dispatcher>,
    /// Blocking reads only: a blocked XREADGROUP holds its connection.
    read_conn: Conn,
    /// Claims (pipelined); the outcome writer has a clone.
    work_conn: Conn,
    outcomes: OutcomeSender,
}

impl Shard {
    async fn run(mut self) {
        let d = Arc::clone(&self.d);
        let batch = d.dispatch.batch_size;
        let mut next_reclaim = Instant::now();
        let mut cursors: Vec<String> = vec!["0-0".into(); self.parts.len()];
        let mut backoff = Backoff::new();
        tracing::info!(shard = self.index, partitions = ?self.parts, "shard started");
        loop {
            // Nothing is read while sending is not safe (Redis not durable,
            // the consent ledger suspect): /readyz says why.
            if !d.health.may_send() {
                tokio::select! {
                    _ = d.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            // Backpressure: wait for at least one in-flight permit, then take
            // as many more as are free, up to a batch. Permits held without
            // entries (while reclaiming or reading) are counted as reserved
            // until they are given back or become messages, so `in_flight()`
            // does not report them as messages (the extra ones are counted
            // before they are taken).
            use std::sync::atomic::Ordering::Relaxed;
            let reserved = &d.reserved_for_reads;
            let mut permits = tokio::select! {
                _ = d.shutdown.cancelled() => break,
                p = Arc::clone(&d.in_flight).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            reserved.fetch_add(1, Relaxed);
            let extra = (batch - 1).min(d.in_flight.available_permits());
            if extra > 0 {
                reserved.fetch_add(extra, Relaxed);
                match Arc::clone(&d.in_flight).try_acquire_many_owned(extra as u32) {
                    Ok(more) => permits.merge(more),
                    Err(_) => {
                        reserved.fetch_sub(extra, Relaxed);
                    }
                }
            }
            let want = permits.num_permits();
            let unreserve = || reserved.fetch_sub(want, Relaxed);
            telemetry::in_flight(d.in_flight());

            // Crash recovery first: entries whose consumer died.
            let mut entries = Vec::new();
            if Instant::now() >= next_reclaim {
                entries = self.reclaim(&mut cursors, want).await;
                if entries.is_empty() {
                    next_reclaim = Instant::now() + d.dispatch.claim_interval;
                } else {
                    telemetry::entries_read("reclaimed", entries.len());
                }
            }
            if entries.is_empty() {
                // COUNT applies to each stream: spread the permits over them.
                let per_stream = (want / self.streams.len()).max(1);
                let read = stream::read_new(
                    &mut self.read_conn,
                    &d.dispatch.consumer,
                    &self.parts,
                    &self.streams,
                    per_stream,
                    d.dispatch.block,
                );
                tokio::pin!(read);
                let res = tokio::select! {
                    r = &mut read => r,
                    // A read already sent may return entries that Redis now
                    // counts as ours: finish it (at most block_ms) and
                    // process them, instead of leaving them pending for
                    // another instance to reclaim after claim_idle_ms.
                    _ = d.shutdown.cancelled() => read.await,
                };
                match res {
                    Ok(e) => {
                        backoff.reset();
                        telemetry::entries_read("new", e.len());
                        entries = e;
                    }
                    Err(e) => {
                        telemetry::redis_error("read");
                        if e.code() == Some("NOGROUP") {
                            // Redis lost its data (restart without
                            // persistence): recreate the groups.
                            tracing::warn!("consumer group missing; recreating");
                            if let Err(e) =
                                stream::ensure_groups(&mut self.work_conn, d.queue.partitions).await
                            {
                                tracing::warn!(error = %e, "recreating consumer groups failed");
                            }
                        } else {
                            tracing::warn!(shard = self.index, error = %e, "reading the queue failed; retrying");
                        }
                        drop(permits);
                        unreserve();
                        tokio::select! {
                            _ = d.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff.next_delay()) => {}
                        }
                        continue;
                    }
                }
            }
            if entries.is_empty() {
                drop(permits);
                unreserve();
                continue;
            }
            // Sending became unsafe while the read was blocked: leave the
            // entries pending. Nothing renews them, so they are taken over
            // (by this instance too) after `claim_idle` once it is safe.
            if !d.health.may_send() {
                tracing::warn!(
                    entries = entries.len(),
                    "read while sending became unsafe; left pending"
                );
                drop(permits);
                unreserve();
                continue;
            }
            // A read can return more entries than permits held (COUNT is per
            // stream): wait for the rest, so the bound holds strictly.
            if entries.len() > permits.num_permits() {
                let short = (entries.len() - permits.num_permits()) as u32;
                // Permits free up as in-flight sends finish, shutdown or
                // not: these entries are ours and get processed.
                match Arc::clone(&d.in_flight).acquire_many_owned(short).await {
                    Ok(more) => permits.merge(more),
                    Err(_) => {
                        unreserve();
                        break;
                    }
                }
            }
            // From here the permits are messages in flight.
            unreserve();
            pipeline::process_batch(&d, &mut self.work_conn, entries, permits, &self.outcomes)
                .await;
        }
        tracing::info!(shard = self.index, "shard stopped reading");
    }

    /// XAUTOCLAIM each partition from its cursor, up to `want` entries.
    async fn reclaim(&mut self, cursors: &mut [String], want: usize) -> Vec<stream::Entry> {
        let d = &self.d;
        let mut out = Vec::new();
        let mut deleted = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            if out.len() >= want {
                break;
            }
            match stream::autoclaim(
                &mut self.work_conn,
                &d.dispatch.consumer,
                *part,
                d.dispatch.claim_idle,
                &cursors[i],
                want - out.len(),
            )
            .await
            {
                Ok(mut r) => {
                    cursors[i] = r.cursor;
                    out.append(&mut r.entries);
                    if !r.deleted.is_empty() {
                        deleted.push((*part, r.deleted));
                    }
                }
                Err(e) => {
                    telemetry::redis_error("autoclaim");
                    tracing::debug!(error = %e, partition = part, "XAUTOCLAIM failed");
                }
            }
        }
        if !deleted.is_empty() {
            self.record_deleted(deleted).await;
        }
        out
    }

    /// Entries that were pending but had been deleted from their stream
    /// (`XDEL`, `XTRIM` by someone else): their content is gone, so what is
    /// left — the stream and the entry id — goes to the DLQ, and they are
    /// counted. Nothing is dropped silently.
    async fn record_deleted(&mut self, deleted: Vec<(u16, Vec<stream::StreamId>)>) {
        let mut pipe = redis::pipe();
        let mut n = 0;
        for (part, ids) in &deleted {
            let stream = keys::queue(*part);
            for id in ids {
                n += 1;
                pipe.cmd("XADD")
                    .arg(keys::DLQ)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.d.events.dlq_max_len)
                    .arg("*")
                    .arg("reason")
                    .arg("deleted_while_pending")
                    .arg("detail")
                    .arg("the entry was deleted from its stream before it was handled")
                    .arg("stream")
                    .arg(&stream)
                    .arg("entry")
                    .arg(*id)
                    .ignore();
            }
        }
        tracing::warn!(
            entries = n,
            "pending entries had been deleted from their stream"
        );
        telemetry::vanished("entry_deleted", n);
        if let Err(e) = pipe.query_async::<()>(&mut self.work_conn).await {
            telemetry::redis_error("record_deleted");
            tracing::warn!(error = %e, "recording deleted entries in the DLQ failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A pair whose reader or writer dies is started again, `/readyz`
    /// false meanwhile; a reader that stops cleanly ends the supervision
    /// once its writer drained.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_shard_or_writer_is_restarted_and_readiness_follows() {
        let health = Arc::new(crate::health::Health::new());
        health.set_durable(Ok(()));
        let starts = Arc::new(AtomicUsize::new(0));
        let n = Arc::clone(&starts);
        let task = tokio::spawn(supervise(Arc::clone(&health), 0, move || {
            let round = n.fetch_add(1, Ordering::AcqRel);
            let reader = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if round == 0 {
                    panic!("a bug in the shard");
                }
                if round == 1 {
                    std::future::pending::<()>().await;
                }
            });
            let writer = tokio::spawn(async move {
                if round == 1 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    panic!("a bug in the writer");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
            (reader, writer)
        }));
        // First round: the reader dies, and readiness says so.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while health.ready().is_ok() {
            assert!(std::time::Instant::now() < deadline, "never reported down");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(health.ready().unwrap_err().contains("restarting"));
        // Second round: the writer dies; third: a clean stop.
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("supervision ends after a clean stop")
            .expect("no panic escapes");
        assert_eq!(starts.load(Ordering::Acquire), 3);
        assert_eq!(health.ready(), Ok(()));
    }
}
