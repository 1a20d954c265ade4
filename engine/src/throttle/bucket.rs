//! Local token buckets (crate `governor`, GCRA), counted in segments, and the
//! pacer that spreads the deferrals of a full lane.
//!
//! Three choices shape this module:
//!
//! - **Time is the caller's.** [`LaneClock`] is the governor clock of every
//!   bucket of one `Throttle`: an atomic that `admit(now_ms)` advances
//!   (`fetch_max`, so it never runs backwards when callers race with
//!   slightly different `now_ms`). Decisions are then a pure function of
//!   the instants the dispatcher passes in, the same instants it writes in
//!   `deferred` events, and tests drive time without sleeping.
//! - **Refundable state.** The bucket's GCRA state (the "theoretical arrival
//!   time", TAT) lives in our own `TatCell` rather than governor's
//!   `InMemoryState`, so we can also move it by hand: give segments back
//!   when the *other* lane of a message refuses it (otherwise a full carrier
//!   lane would burn its senders' tokens, and one carrier's backlog would
//!   slow the senders' traffic to every other carrier), and charge the rest
//!   of a message longer than the burst (governor refuses `check_n(n)` with
//!   `n > burst` outright, and such a message must still go eventually).
//! - **No sleeping.** A refused message is deferred to an instant; the
//!   dispatcher parks it in the delayed set. The `Pacer` gives successive
//!   deferrals on one lane distinct instants at the lane's rate.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

const NS_PER_MS: u64 = 1_000_000;

// ---------------------------------------------------------------------------
// Limit
// ---------------------------------------------------------------------------

/// A limit that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("`segments` must be at least 1")]
    ZeroSegments,
    #[error("`burst` must be at least 1")]
    ZeroBurst,
    #[error("the period must be at least 1 ms")]
    ZeroPeriod,
    #[error("the period must be at most 366 days")]
    PeriodTooLong,
}

/// A rate in segments: `segments` per `per`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    segments: NonZeroU32,
    per: Duration,
    burst: NonZeroU32,
}

impl Limit {
    /// A limit as an admin writes it (`herald.toml`'s sender limits, the
    /// control plane's `SetThrottle`): `segments` per `per` (`second`,
    /// `minute`, `hour`, `day`); `segments = 0` means not throttled
    /// (`None`); `burst` `None` means the default.
    pub fn parse(segments: u32, per: &str, burst: Option<u32>) -> Result<Option<Limit>, String> {
        if segments == 0 {
            return Ok(None);
        }
        let per = match per {
            "second" => Duration::from_secs(1),
            "minute" => Duration::from_secs(60),
            "hour" => Duration::from_secs(3_600),
            "day" => Duration::from_secs(86_400),
            other => return Err(format!("`per` `{other}`: second, minute, hour or day")),
        };
        Limit::new(segments, per, burst)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// `burst` defaults to one second's worth (at least 1, at most
    /// `segments`): any window of T seconds then carries at most
    /// `burst + rate × T`, which keeps a sliding minute of a per-minute limit
    /// within one second's worth of the limit. A burst of a full minute's
    /// worth would allow twice the limit in a sliding minute.
    pub fn new(segments: u32, per: Duration, burst: Option<u32>) -> Result<Limit, LimitError> {
        let segments = NonZeroU32::new(segments).ok_or(LimitError::ZeroSegments)?;
        if per < Duration::from_millis(1) {
            return Err(LimitError::ZeroPeriod);
        }
        if per > Duration::from_secs(366 * 86_400) {
            return Err(LimitError::PeriodTooLong);
        }
        let burst = match burst {
            Some(b) => NonZeroU32::new(b).ok_or(LimitError::ZeroBurst)?,
            None => {
                let per_ns = per.as_nanos();
                let one_second = (u128::from(segments.get()) * 1_000_000_000).div_ceil(per_ns);
                let b = one_second.clamp(1, u128::from(segments.get())) as u32;
                NonZeroU32::new(b).ok_or(LimitError::ZeroBurst)?
            }
        };
        Ok(Limit {
            segments,
            per,
            burst,
        })
    }

    pub fn per_second(segments: u32) -> Result<Limit, LimitError> {
        Limit::new(segments, Duration::from_secs(1), None)
    }

    pub fn per_minute(segments: u32) -> Result<Limit, LimitError> {
        Limit::new(segments, Duration::from_secs(60), None)
    }

    /// The same rate with another burst.
    pub fn with_burst(self, burst: u32) -> Result<Limit, LimitError> {
        Limit::new(self.segments.get(), self.per, Some(burst))
    }

    pub fn segments(&self) -> u32 {
        self.segments.get()
    }

    pub fn per(&self) -> Duration {
        self.per
    }

    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// Time one segment occupies the lane, in ns, rounded up (so the rate
    /// enforced is never above the one configured). At least 1.
    pub fn period_ns(&self) -> u64 {
        let ns = self
            .per
            .as_nanos()
            .div_ceil(u128::from(self.segments.get()));
        u64::try_from(ns).unwrap_or(u64::MAX).max(1)
    }

    /// Segments a fleet instance leases per Redis call by default: 100 ms of
    /// the rate, at least 1, at most the burst. Small enough that instances
    /// share a lane fairly, large enough that a busy lane costs ~10 Redis
    /// calls a second per instance.
    pub fn default_lease(&self) -> u32 {
        let per_100ms = (100 * NS_PER_MS).div_ceil(self.period_ns().max(1));
        (per_100ms.clamp(1, u64::from(self.burst.get()))) as u32
    }

    fn quota(&self) -> Quota {
        let period = Duration::from_nanos(self.period_ns());
        // `with_period` refuses only a zero period, and `period_ns` is ≥ 1.
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

// ---------------------------------------------------------------------------
// Clock and state
// ---------------------------------------------------------------------------

/// The governor clock of one `Throttle`: ns since the Unix epoch, as last
/// told by a caller. Shared by all its buckets (an `Arc<AtomicU64>`).
#[derive(Debug, Clone, Default)]
pub struct LaneClock(Arc<AtomicU64>);

impl LaneClock {
    /// Move the clock to `now_ms` unless it is already later; returns the
    /// clock's time in ns.
    pub fn advance_to_ms(&self, now_ms: i64) -> u64 {
        let ns = u64::try_from(now_ms).unwrap_or(0).saturating_mul(NS_PER_MS);
        self.0.fetch_max(ns, Ordering::AcqRel).max(ns)
    }

    pub fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

impl Clock for LaneClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.load(Ordering::Acquire))
    }
}

/// A bucket's GCRA state: the TAT in ns after the limiter's start, 0 = never
/// used (governor's convention). Shared between the limiter and the
/// [`Bucket`] so the bucket can refund and over-charge.
#[derive(Debug, Clone, Default)]
struct TatCell(Arc<AtomicU64>);

impl StateStore for TatCell {
    type Key = NotKeyed;

    /// Governor's own compare-and-swap loop (as in its `InMemoryState`):
    /// lock-free; a lost race re-runs the decision on the fresh value.
    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let cell = &self.0;
        let mut prev = cell.load(Ordering::Acquire);
        loop {
            let seen = (prev != 0).then(|| Nanos::from(prev));
            let (result, next) = f(seen)?;
            match cell.compare_exchange_weak(
                prev,
                next.as_u64(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(result),
                Err(actual) => prev = actual,
            }
        }
    }
}

type Limiter = RateLimiter<NotKeyed, TatCell, LaneClock, NoOpMiddleware<Nanos>>;

// ---------------------------------------------------------------------------
// Bucket
// ---------------------------------------------------------------------------

/// One governor token bucket, in segments.
pub(crate) struct Bucket {
    limiter: Limiter,
    tat: TatCell,
    limit: Limit,
    period_ns: u64,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(limit: Limit, clock: &LaneClock) -> Bucket {
        let tat = TatCell::default();
        Bucket {
            limiter: RateLimiter::new(limit.quota(), tat.clone(), clock.clone()),
            tat,
            limit,
            period_ns: limit.period_ns(),
        }
    }

    /// A bucket holding `tokens` (at most its burst): a changed limit takes
    /// over what the old bucket had left, neither more nor less.
    pub(crate) fn with_tokens(limit: Limit, clock: &LaneClock, tokens: u32) -> Bucket {
        let b = Bucket::new(limit, clock);
        let spend = limit.burst().saturating_sub(tokens);
        if let Some(n) = NonZeroU32::new(spend) {
            // A fresh bucket holds `burst`, and spend ≤ burst: this succeeds.
            let _ = b.limiter.check_n(n);
        }
        b
    }

    pub(crate) fn limit(&self) -> Limit {
        self.limit
    }

    pub(crate) fn period_ns(&self) -> u64 {
        self.period_ns
    }

    /// Take `segments` tokens, or say the earliest instant (ns since the
    /// epoch, per governor's `NotUntil::earliest_possible`) they could be
    /// taken. A message longer than the burst waits for a full bucket, takes
    /// it, and owes the rest: the TAT moves on by the excess, so the lane
    /// stays shut until the debt is repaid at the lane's rate.
    pub(crate) fn take(&self, segments: u32) -> Result<(), u64> {
        let burst = self.limit.burst();
        let cells = segments.clamp(1, burst);
        let n = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_n(n) {
            Ok(Ok(())) => {
                if segments > burst {
                    let debt = u64::from(segments - burst).saturating_mul(self.period_ns);
                    self.tat.0.fetch_add(debt, Ordering::AcqRel);
                }
                Ok(())
            }
            Ok(Err(not_until)) => Err(not_until.earliest_possible().as_u64()),
            // Unreachable: `cells` ≤ burst. Answer "a full bucket from now"
            // rather than panic on the hot path.
            Err(_) => {
                Err(self.limiter.clock().now_ns() + u64::from(burst).saturating_mul(self.period_ns))
            }
        }
    }

    /// Give back `segments` taken by [`Bucket::take`] for a message that did
    /// not go after all: the TAT moves back by their time, so takes that
    /// happened in between keep theirs. Called within the same `admit`, so
    /// the only slack is the clock moving in between (another caller's later
    /// `now_ms`, a millisecond or so): a take in that gap that found the
    /// bucket refilling was charged from its own instant, and the refund can
    /// return up to the gap's worth of refill early — a fraction of a
    /// segment at carrier rates.
    pub(crate) fn refund(&self, segments: u32) {
        let back = u64::from(segments.max(1)).saturating_mul(self.period_ns);
        let _ = self
            .tat
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                // 0 is "never used": a full bucket, as is any TAT in the past.
                (tat != 0).then(|| tat.saturating_sub(back))
            });
    }

    /// Take every token left and say how many there were. Used when the
    /// limit changes: the old bucket is emptied into the new one, so a
    /// message racing with the change cannot spend the same token twice.
    /// Greedy halving: O(log burst) governor calls.
    pub(crate) fn drain(&self) -> u32 {
        let mut left = 0u32;
        let mut k = self.limit.burst();
        while let Some(n) = NonZeroU32::new(k) {
            match self.limiter.check_n(n) {
                Ok(Ok(())) => left += k,
                _ => k /= 2,
            }
        }
        left
    }
}

// ---------------------------------------------------------------------------
// Pacer
// ---------------------------------------------------------------------------

/// Spreads the deferrals of one lane over time.
///
/// Without it, every message refused while a lane is empty would be told the
/// same instant (the bucket's next free token) and come back together, one
/// would pass and the rest be deferred again, round after round. The pacer
/// keeps the lane's "next free slot": each deferral takes the slot
/// `max(next_free, earliest)` and moves `next_free` on by the message's
/// segments × the lane's period, so N deferred messages get N distinct
/// instants at the lane's rate, in the order they were refused. One atomic
/// `fetch_update`, no task, no lock.
///
/// The slots are a forecast, not a reservation: the bucket still decides
/// when a message comes back, and messages arriving fresh compete for the
/// same tokens. A message that loses is deferred again, to the end of the
/// line. Under steady overload the lane still runs at its rate and the
/// deferred messages come back about as fast as it can take them.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    next_free_ns: AtomicU64,
}

impl Pacer {
    /// The instant (ns) a message of `segments` refused until `earliest_ns`
    /// should come back.
    pub(crate) fn slot(&self, earliest_ns: u64, segments: u32, period_ns: u64) -> u64 {
        let cost = u64::from(segments.max(1)).saturating_mul(period_ns);
        let prev = self
            .next_free_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |next| {
                Some(next.max(earliest_ns).saturating_add(cost))
            })
            .unwrap_or_else(|p| p);
        prev.max(earliest_ns)
    }
}

/// ns since the epoch → ms, rounded up: a message told to come back at
/// `until_ms` must find its token there, not 0.4 ms before it.
pub(crate) fn ns_to_ms_ceil(ns: u64) -> i64 {
    i64::try_from(ns.div_ceil(NS_PER_MS)).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------
// Lane
// ---------------------------------------------------------------------------

/// A local lane: a bucket and its pacer. A changed limit makes a new lane
/// with the same pacer (the forecast of deferred slots stays valid) and the
/// old bucket's tokens.
pub(crate) struct Lane {
    bucket: Bucket,
    pacer: Arc<Pacer>,
}

impl Lane {
    pub(crate) fn new(limit: Limit, clock: &LaneClock) -> Lane {
        Lane {
            bucket: Bucket::new(limit, clock),
            pacer: Arc::default(),
        }
    }

    /// This lane under a new limit. Tokens in flight: the old bucket is
    /// drained and the new one starts with what it had left (at most the new
    /// burst); segments already admitted are not refunded, and a debt of an
    /// over-long message is forgiven (at most one message's excess).
    /// Messages already deferred keep the instants they were given and are
    /// judged by the new bucket when they come back.
    pub(crate) fn with_limit(&self, limit: Limit, clock: &LaneClock) -> Lane {
        let left = self.bucket.drain();
        Lane {
            bucket: Bucket::with_tokens(limit, clock, left),
            pacer: Arc::clone(&self.pacer),
        }
    }

    pub(crate) fn limit(&self) -> Limit {
        self.bucket.limit()
    }

    /// Take `segments`, or the instant (ms) to come back.
    pub(crate) fn take(&self, segments: u32) -> Result<(), i64> {
        self.bucket.take(segments).map_err(|earliest| {
            let slot = self.pacer.slot(earliest, segments, self.bucket.period_ns());
            ns_to_ms_ceil(slot)
        })
    }

    pub(crate) fn refund(&self, segments: u32) {
        self.bucket.refund(segments);
    }
}
