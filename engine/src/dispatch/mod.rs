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
pub mod pipeline;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::keys;
use crate::model::Limits;
use crate::outcome::{self, OutcomeSender, WriterConfig};
use crate::providers::Providers;
use crate::queue::{self, Conn};
use crate::telemetry;

/// What every shard and send task shares. Immutable after start-up.
pub struct Dispatcher {
    pub cfg: Config,
    pub limits: Limits,
    pub providers: Providers,
    /// `dispatch.max_in_flight` permits.
    pub in_flight: Arc<Semaphore>,
    pub release_script: redis::Script,
    pub shutdown: CancellationToken,
    pub streams: Arc<[String]>,
    /// Paused tenants (lock-free snapshot, refreshed from Redis).
    pub pauses: Arc<crate::tenants::TenantPauses>,
    /// Outcomes recorded since start, by status.
    pub counts: Arc<outcome::StatusCounts>,
    /// Permits shards hold for a read still waiting on Redis: reserved, not
    /// messages in flight.
    pub reserved_for_reads: std::sync::atomic::AtomicUsize,
    /// Compliance rules and tenant policies (immutable).
    pub policy: Arc<crate::policy::Policy>,
    /// Consent state (lock-free replica fed by the audit stream).
    pub consent: Arc<crate::consent::ConsentLedger>,
    /// The frequency-cap script.
    pub cap_script: redis::Script,
    /// Carrier lanes and token buckets (`None`: `throttle.enabled = false`).
    pub throttle: Option<(Arc<crate::throttle::Carriers>, crate::throttle::Throttle)>,
    /// Numbers waiting for a carrier lookup, taken by the lookup task at
    /// start (`None` when lookups are off).
    pub lookups: std::sync::Mutex<Option<crate::throttle::carrier::LookupRequests>>,
}

impl Dispatcher {
    pub fn new(
        cfg: Config,
        providers: Providers,
        consent: Arc<crate::consent::ConsentLedger>,
        shutdown: CancellationToken,
    ) -> Dispatcher {
        let streams: Arc<[String]> = (0..cfg.partitions).map(keys::queue).collect();
        let mut lookups = None;
        let throttle = cfg.throttle.as_ref().map(|t| {
            let carriers = match &cfg.carrier_lookup {
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
                max_body_chars: cfg.dispatch.max_body_chars,
                max_entry_bytes: cfg.dispatch.max_entry_bytes,
            },
            in_flight: Arc::new(Semaphore::new(cfg.dispatch.max_in_flight)),
            release_script: redis::Script::new(queue::RELEASE_LUA),
            providers,
            shutdown,
            streams,
            pauses: Arc::default(),
            counts: Arc::default(),
            reserved_for_reads: std::sync::atomic::AtomicUsize::new(0),
            policy: Arc::clone(&cfg.policy),
            consent,
            cap_script: redis::Script::new(crate::policy::caps::CAP_LUA),
            throttle,
            lookups: std::sync::Mutex::new(lookups),
            cfg,
        }
    }

    /// Messages currently held between read and recorded outcome.
    pub fn in_flight(&self) -> usize {
        let held = self.cfg.dispatch.max_in_flight - self.in_flight.available_permits();
        held.saturating_sub(
            self.reserved_for_reads
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub fn writer_config(&self) -> WriterConfig {
        WriterConfig {
            events_max_len: self.cfg.events_max_len,
            dlq_max_len: self.cfg.dlq_max_len,
            delete_acked: self.cfg.delete_acked,
            state_ttl: self.cfg.dispatch.idempotency_ttl,
            streams: Arc::clone(&self.streams),
            counts: Arc::clone(&self.counts),
        }
    }
}

/// Spawn the shards; each returns when shutdown is signalled. The returned
/// handles finish once the shard stopped reading and its outcome writer
/// drained (in-flight sends hold writer senders, so the writer outlives
/// them).
pub fn spawn_shards(
    d: &Arc<Dispatcher>,
    read_conns: Vec<Conn>,
    work_conns: Vec<Conn>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let shards = d.cfg.dispatch.shards.min(usize::from(d.cfg.partitions));
    let mut handles = Vec::with_capacity(shards * 2);
    for (i, (read_conn, work_conn)) in read_conns
        .into_iter()
        .zip(work_conns)
        .take(shards)
        .enumerate()
    {
        let parts: Vec<u16> = (0..d.cfg.partitions)
            .filter(|p| usize::from(*p) % shards == i)
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        handles.push(tokio::spawn(outcome::run_writer(
            work_conn.clone(),
            rx,
            d.writer_config(),
        )));
        let shard = Shard {
            index: i,
            streams: parts.iter().map(|p| keys::queue(*p)).collect(),
            parts,
            d: Arc::clone(d),
            read_conn,
            work_conn,
            outcomes: tx,
        };
        handles.push(tokio::spawn(shard.run()));
    }
    handles
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
        let batch = d.cfg.dispatch.batch_size;
        let mut next_reclaim = Instant::now();
        let mut cursors: Vec<String> = vec!["0-0".into(); self.parts.len()];
        let mut backoff = Duration::from_millis(100);
        tracing::info!(shard = self.index, partitions = ?self.parts, "shard started");
        loop {
            // Backpressure: wait for at least one in-flight permit, then take
            // as many more as are free, up to a batch.
            let mut permits = tokio::select! {
                _ = d.shutdown.cancelled() => break,
                p = Arc::clone(&d.in_flight).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let extra = (batch - 1).min(d.in_flight.available_permits());
            if extra > 0
                && let Ok(more) = Arc::clone(&d.in_flight).try_acquire_many_owned(extra as u32)
            {
                permits.merge(more);
            }
            let want = permits.num_permits();
            telemetry::in_flight(d.in_flight());

            // Crash recovery first: entries whose consumer died.
            let mut entries = Vec::new();
            if Instant::now() >= next_reclaim {
                entries = self.reclaim(&mut cursors, want).await;
                if entries.is_empty() {
                    next_reclaim = Instant::now() + d.cfg.dispatch.claim_interval;
                } else {
                    telemetry::entries_read("reclaimed", entries.len());
                }
            }
            if entries.is_empty() {
                // COUNT applies to each stream: spread the permits over them.
                let per_stream = (want / self.streams.len()).max(1);
                let read = queue::read_new(
                    &mut self.read_conn,
                    &d.cfg.dispatch.consumer,
                    &self.parts,
                    &self.streams,
                    per_stream,
                    d.cfg.dispatch.block,
                );
                // Held permits are not messages until the read returns.
                d.reserved_for_reads
                    .fetch_add(want, std::sync::atomic::Ordering::Relaxed);
                tokio::pin!(read);
                let res = tokio::select! {
                    r = &mut read => r,
                    // A read already sent may return entries that Redis now
                    // counts as ours: finish it (at most block_ms) and
                    // process them, instead of leaving them pending for
                    // another instance to reclaim after claim_idle_ms.
                    _ = d.shutdown.cancelled() => read.await,
                };
                d.reserved_for_reads
                    .fetch_sub(want, std::sync::atomic::Ordering::Relaxed);
                match res {
                    Ok(e) => {
                        backoff = Duration::from_millis(100);
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
                                queue::ensure_groups(&mut self.work_conn, d.cfg.partitions).await
                            {
                                tracing::warn!(error = %e, "recreating consumer groups failed");
                            }
                        } else {
                            tracing::warn!(shard = self.index, error = %e, "reading the queue failed; retrying");
                        }
                        drop(permits);
                        tokio::select! {
                            _ = d.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            if entries.is_empty() {
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
                    Err(_) => break,
                }
            }
            pipeline::process_batch(&d, &mut self.work_conn, entries, permits, &self.outcomes)
                .await;
        }
        tracing::info!(shard = self.index, "shard stopped reading");
    }

    /// XAUTOCLAIM each partition from its cursor, up to `want` entries.
    async fn reclaim(&mut self, cursors: &mut [String], want: usize) -> Vec<queue::Entry> {
        let d = &self.d;
        let mut out = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            if out.len() >= want {
                break;
            }
            match queue::autoclaim(
                &mut self.work_conn,
                &d.cfg.dispatch.consumer,
                *part,
                d.cfg.dispatch.claim_idle,
                &cursors[i],
                want - out.len(),
            )
            .await
            {
                Ok((next, mut entries)) => {
                    cursors[i] = next;
                    out.append(&mut entries);
                }
                Err(e) => {
                    telemetry::redis_error("autoclaim");
                    tracing::debug!(error = %e, partition = part, "XAUTOCLAIM failed");
                }
            }
        }
        out
    }
}

/// Move due messages from the delayed set back into the queue, every
/// `dispatch.delayed_poll_ms`. Safe to run on every instance: the script is
/// atomic.
pub async fn run_delayed_mover(d: Arc<Dispatcher>, mut conn: Conn) {
    const LIMIT: usize = 1000;
    let mut tick = tokio::time::interval(d.cfg.dispatch.delayed_poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = d.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            let res: redis::RedisResult<usize> = d
                .release_script
                .key(keys::DELAYED)
                .arg(crate::clock::now_ms())
                .arg(LIMIT)
                .arg(keys::MSG_PREFIX)
                .arg(keys::QUEUE_PREFIX)
                .invoke_async(&mut conn)
                .await;
            match res {
                Ok(n) if n >= LIMIT => continue,
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
