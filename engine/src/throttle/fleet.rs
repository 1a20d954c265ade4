//! Fleet-wide lanes (docs/architecture.md#throughput-control): a carrier limit that holds for every
//! instance on one Redis, not once per instance.
//!
//! The bucket lives in Redis as one GCRA key per lane (`herald:throttle:{att}`
//! holds the lane's theoretical arrival time). No instance asks Redis per
//! message: each keeps a small local **lease** of segments, spends it with an
//! atomic subtraction on the hot path, and a background task per lane (not
//! per message) tops it up with one script call — "give me up to K tokens" —
//! before it runs out. When the lease is empty and Redis says the lane is
//! empty too, the message is deferred to the instant Redis said the next
//! token appears (spread by the lane's pacer).
//!
//! Bound: Redis never grants more than `burst + rate × T` in any T, and an
//! instance spends only what it was granted; it holds at most one lease
//! unspent and gives it up after `lease_max_age` without demand, so a window
//! of T sees at most `burst + rate × T + instances × lease` sent fleet-wide.
//! Tokens leased and not spent (a crash, a shutdown, an aged lease) are lost:
//! the fleet under-uses, never over-sends.
//!
//! Redis down: leases stop, the lease runs dry, and the lane defers (retried
//! with backoff) — a carrier limit is never exceeded for want of Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bucket::{Limit, Pacer, ns_to_ms_ceil};
use super::carrier::Carrier;
use crate::conn::Conn;

/// The key of `carrier`'s fleet lane: `herald:throttle:{<carrier>}`, one
/// key per lane (the braces are a Redis Cluster hash tag).
pub fn key(carrier: Carrier) -> String {
    crate::keys::fleet_lane(carrier.name())
}

/// GCRA over one key, taking up to `want` tokens at once.
///
/// `KEYS[1]`: the lane (holds the TAT, µs since the epoch, as a decimal
/// string; absent = a full bucket). ARGV: the emission interval T (µs per
/// segment, ≥ 1), the burst b (≥ 1), want (≥ 1), and optionally "now" in µs
/// (tests; otherwise Redis `TIME`, one clock for the whole fleet).
///
/// With tat = max(stored, now), the bucket holds floor((now + b·T − tat)/T)
/// tokens (0..=b); the script grants g = min(want, that), stores
/// tat + g·T (expiring when it falls behind `now`, as a full bucket equals
/// no key), and replies `{g, wait_us, now_us}`: wait_us is how long until
/// the next token, 0 if some are left. Atomic: a script runs alone.
///
/// Lua numbers are doubles: epoch µs (~2^51) and b·T stay below 2^53, so
/// the arithmetic is exact; the floor is corrected by hand because a
/// double quotient can round up to the next integer.
pub const GCRA_LUA: &str = r#"
local t = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local tm = redis.call('TIME')
  now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = now + burst * t - tat
local avail = math.floor(room / t)
if avail * t > room then avail = avail - 1 end
if (avail + 1) * t <= room then avail = avail + 1 end
if avail > burst then avail = burst end
if avail < 0 then avail = 0 end
local got = want
if got > avail then got = avail end
if got > 0 then
  tat = tat + got * t
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
end
local next_at = tat - (burst - 1) * t
if next_at < now then next_at = now end
return {got, next_at - now, now}
"#;

/// One script call's answer, and the arithmetic it does, in Rust: the
/// reference the script is tested against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens granted, 0..=want.
    pub granted: u64,
    /// The TAT written back (µs), when anything was granted.
    pub tat_us: Option<u64>,
    /// µs from `now` until the next token (0 if the bucket is not empty).
    pub wait_us: u64,
}

/// [`GCRA_LUA`]'s arithmetic: `stored` is the key's TAT (None = absent).
pub fn gcra_take(stored: Option<u64>, now_us: u64, t_us: u64, burst: u64, want: u64) -> Grant {
    let t = t_us.max(1);
    let burst = burst.max(1);
    let tat = stored.unwrap_or(now_us).max(now_us);
    let room = (now_us + burst * t).saturating_sub(tat);
    let avail = (room / t).min(burst);
    let granted = want.min(avail);
    let new_tat = tat + granted * t;
    let next_at = new_tat.saturating_sub((burst - 1) * t).max(now_us);
    Grant {
        granted,
        tat_us: (granted > 0).then_some(new_tat),
        wait_us: next_at - now_us,
    }
}

/// A lease call that failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from the lease script: {0}")]
    Reply(String),
}

impl FleetError {
    /// Always true: a lease is not a send. A call that timed out may still
    /// have been granted in Redis; asking again leases anew, so the fleet
    /// under-uses by at most one lease — the safe side.
    pub fn retry_safe(&self) -> bool {
        true
    }
}

/// The lane's fleet limit, in the units the script and the lease use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetParams {
    pub limit: Limit,
    /// µs per segment, rounded up (never above the configured rate).
    pub t_us: u64,
    /// Segments per lease (K), 1..=burst.
    pub lease: u32,
    /// Ask for more when the lease falls below this: half a lease, so the
    /// refill's Redis round trip overlaps spending the rest.
    pub low_water: i64,
}

impl FleetParams {
    pub fn new(limit: Limit, lease: u32) -> FleetParams {
        let lease = lease.clamp(1, limit.burst());
        FleetParams {
            limit,
            t_us: limit.period_ns().div_ceil(1000).max(1),
            lease,
            low_water: i64::from(lease.div_ceil(2)),
        }
    }
}

/// The lane is empty here and in Redis (as far as this instance knows):
/// come back at `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetEmpty {
    pub until_ms: i64,
}

/// When the lease is empty but Redis may still have tokens: the refill's
/// round trip, rounded up. The pacer spreads messages from there.
const REFILL_WAIT_MS: i64 = 10;

/// One fleet-wide carrier lane, as seen by this instance.
pub struct FleetLane {
    carrier: Carrier,
    key: String,
    /// None: the limit was removed at run time; the lane is open.
    params: ArcSwapOption<FleetParams>,
    /// Segments on hand. Negative: a message longer than the lease took a
    /// full lease and owes the rest, repaid from the next leases.
    lease: AtomicI64,
    /// Local-clock instant (ms) Redis last said its next token appears.
    next_at_ms: AtomicI64,
    /// Set by a take that leaves the lease low (or finds it empty), cleared
    /// by the refill task when it starts a top-up: the task leases only on
    /// demand, so an idle instance takes nothing from the fleet.
    refill_wanted: AtomicBool,
    /// Wakes the refill task. Signalled once per refill cycle (the flag
    /// above is swapped first), so the per-message path stays lock-free.
    wake: Notify,
    /// When the lease was last topped up (ms), to age it out.
    leased_at_ms: AtomicI64,
    lease_max_age: Duration,
    pacer: Pacer,
    leased_total: AtomicU64,
    spent_total: AtomicU64,
}

impl FleetLane {
    pub fn new(carrier: Carrier, limit: Limit, lease: u32, lease_max_age: Duration) -> FleetLane {
        FleetLane {
            carrier,
            key: key(carrier),
            params: ArcSwapOption::from_pointee(FleetParams::new(limit, lease)),
            lease: AtomicI64::new(0),
            next_at_ms: AtomicI64::new(0),
            // Fill the first lease at start, before the first message.
            refill_wanted: AtomicBool::new(true),
            wake: Notify::new(),
            leased_at_ms: AtomicI64::new(0),
            lease_max_age,
            pacer: Pacer::default(),
            leased_total: AtomicU64::new(0),
            spent_total: AtomicU64::new(0),
        }
    }

    pub fn carrier(&self) -> Carrier {
        self.carrier
    }

    /// The Redis key all instances share for this lane.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn params(&self) -> Option<FleetParams> {
        self.params.load().as_deref().copied()
    }

    /// Segments this instance holds unspent (negative: owed).
    pub fn on_hand(&self) -> i64 {
        self.lease.load(Ordering::Acquire)
    }

    /// Segments leased from Redis since start.
    pub fn leased_total(&self) -> u64 {
        self.leased_total.load(Ordering::Relaxed)
    }

    /// Segments spent from leases since start (refunds subtracted).
    pub fn spent_total(&self) -> u64 {
        self.spent_total.load(Ordering::Relaxed)
    }

    /// Change the limit live. The Redis TAT carries over (it is an instant,
    /// valid under any rate), as does the lease on hand (those segments were
    /// granted under the old rate). `None` opens the lane.
    pub fn set_limit(&self, limit: Option<Limit>, lease: Option<u32>) {
        self.params.store(
            limit.map(|l| Arc::new(FleetParams::new(l, lease.unwrap_or(l.default_lease())))),
        );
        self.wake.notify_one();
    }

    /// Spend `segments` from the lease. Lock-free: a compare-and-swap loop on
    /// one atomic. A message longer than the lease waits for a full lease and
    /// takes it into debt.
    pub fn try_take(&self, segments: u32, now_ms: i64) -> Result<(), FleetEmpty> {
        let params = self.params.load();
        let Some(p) = params.as_deref() else {
            return Ok(());
        };
        let n = i64::from(segments.max(1));
        let need = n.min(i64::from(p.lease));
        let mut cur = self.lease.load(Ordering::Acquire);
        while cur >= need {
            match self.lease.compare_exchange_weak(
                cur,
                cur - n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.spent_total.fetch_add(n as u64, Ordering::Relaxed);
                    if cur - n < p.low_water {
                        self.want_refill();
                    }
                    return Ok(());
                }
                Err(actual) => cur = actual,
            }
        }
        self.want_refill();
        let refilled_ms = now_ms.saturating_add(REFILL_WAIT_MS);
        let next_at_ms = self.next_at_ms.load(Ordering::Acquire);
        if next_at_ms <= refilled_ms {
            // Redis had tokens at the last lease: the lease is only waiting
            // for its refill, a round trip away. Not a full lane: no pacing.
            return Err(FleetEmpty {
                until_ms: refilled_ms,
            });
        }
        // Redis is dry until `next_at_ms`: spread the deferrals from there at
        // the lane's (fleet) rate.
        let base_ns = u64::try_from(next_at_ms)
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        let slot = self
            .pacer
            .slot(base_ns, segments, p.t_us.saturating_mul(1000));
        Err(FleetEmpty {
            until_ms: ns_to_ms_ceil(slot),
        })
    }

    /// Return segments taken by [`FleetLane::try_take`] for a message that
    /// did not go (its sender lane refused it).
    pub fn give_back(&self, segments: u32) {
        let n = i64::from(segments.max(1));
        self.lease.fetch_add(n, Ordering::AcqRel);
        self.spent_total.fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// Put the lease and Redis's last answer in a given state (unit tests
    /// of the hot path, without a refill task).
    #[cfg(test)]
    pub(crate) fn set_state(&self, on_hand: i64, next_at_ms: i64) {
        self.lease.store(on_hand, Ordering::Release);
        self.next_at_ms.store(next_at_ms, Ordering::Release);
    }

    fn want_refill(&self) {
        if !self.refill_wanted.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// One script call: lease up to `want` segments under `p`.
    pub async fn lease_once(
        &self,
        conn: &mut Conn,
        script: &redis::Script,
        p: &FleetParams,
        want: u64,
    ) -> Result<Grant, FleetError> {
        let reply: Vec<i64> = script
            .key(&self.key)
            .arg(p.t_us)
            .arg(p.limit.burst())
            .arg(want.max(1))
            .invoke_async(conn)
            .await?;
        let [granted, wait_us, _now_us] = reply[..] else {
            return Err(FleetError::Reply(format!("{reply:?}")));
        };
        let (Ok(granted), Ok(wait_us)) = (u64::try_from(granted), u64::try_from(wait_us)) else {
            return Err(FleetError::Reply(format!("{reply:?}")));
        };
        Ok(Grant {
            granted,
            tat_us: None,
            wait_us,
        })
    }

    /// The lane's refill task, until `shutdown`: tops the lease up whenever
    /// a take leaves it below half, waits for Redis's next token when Redis
    /// is empty, backs off while Redis fails, and gives up an aged lease.
    pub async fn run(self: Arc<Self>, mut conn: Conn, shutdown: CancellationToken) {
        let script = redis::Script::new(GCRA_LUA);
        let mut backoff = crate::conn::Backoff::new();
        while !shutdown.is_cancelled() {
            let Some(p) = self.params.load_full() else {
                // Open lane: nothing to lease until a limit is set.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {}
                }
                continue;
            };
            if !self.refill_wanted.swap(false, Ordering::AcqRel) {
                self.idle(&shutdown).await;
                continue;
            }
            let want = i64::from(p.lease) - self.lease.load(Ordering::Acquire);
            if want <= 0 {
                continue;
            }
            match self.lease_once(&mut conn, &script, &p, want as u64).await {
                Ok(g) => {
                    backoff.reset();
                    let now = crate::clock::now_ms();
                    if g.granted > 0 {
                        self.lease.fetch_add(g.granted as i64, Ordering::AcqRel);
                        self.leased_total.fetch_add(g.granted, Ordering::Relaxed);
                        self.leased_at_ms.store(now, Ordering::Release);
                    }
                    let wait = Duration::from_micros(g.wait_us);
                    let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                    self.next_at_ms
                        .store(now.saturating_add(wait_ms), Ordering::Release);
                    if (g.granted as i64) < want {
                        // Redis is empty: ask again when its next token is
                        // due, or at once if the limit changes meanwhile.
                        self.refill_wanted.store(true, Ordering::Release);
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = self.wake.notified() => {}
                            _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                        }
                    }
                }
                Err(e) => {
                    crate::telemetry::redis_error("fleet_lease");
                    tracing::debug!(lane = %self.carrier, error = %e, "leasing throughput failed; the lane defers until Redis answers");
                    let now = crate::clock::now_ms();
                    let wait = backoff.next_delay();
                    let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                    self.next_at_ms
                        .store(now.saturating_add(ms), Ordering::Release);
                    self.refill_wanted.store(true, Ordering::Release);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// No demand: wait for a take to ask, and give up the lease if it ages.
    async fn idle(&self, shutdown: &CancellationToken) {
        let held = self.lease.load(Ordering::Acquire) > 0;
        let max_age = i64::try_from(self.lease_max_age.as_millis()).unwrap_or(i64::MAX);
        let age = crate::clock::now_ms() - self.leased_at_ms.load(Ordering::Acquire);
        let left = Duration::from_millis(u64::try_from(max_age - age).unwrap_or(0));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = self.wake.notified() => return,
            _ = tokio::time::sleep(left), if held => {}
        }
        // The lease sat unspent for `lease_max_age`: the fleet's bucket has
        // refilled meanwhile, so spending it now would add to a full burst.
        let _ = self
            .lease
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                (l > 0).then_some(0)
            });
    }
}
