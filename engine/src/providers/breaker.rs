//! The circuit breaker of one provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, Ordering};

use super::config::BreakerConfig;

/// A circuit breaker per provider (lock-free: atomics only).
///
/// Closed: every send goes through; `consecutive_failures` failures in a
/// row, or a failure rate of at least `failure_rate` over at least
/// `min_requests` sends in the current `window_ms`, open it. Open: nothing
/// goes through for `open_ms`. Half-open: `half_open_probes` sends go
/// through; one success closes it, one failure opens it again.
///
/// Only failures that say something about the provider count: transient
/// errors, ambiguous results and refused credentials — not an invalid
/// number.
#[derive(Debug)]
pub struct Breaker {
    name: Arc<str>,
    cfg: BreakerConfig,
    state: AtomicU8,
    consecutive: AtomicU32,
    window_start: AtomicI64,
    window_ok: AtomicU32,
    window_failed: AtomicU32,
    opened_at: AtomicI64,
    probes: AtomicU32,
}

/// How [`Breaker::allow`] let a send through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The circuit is closed.
    Closed,
    /// The send is one of a half-open circuit's probes.
    Probe,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

impl Breaker {
    pub fn new(name: Arc<str>, cfg: BreakerConfig) -> Breaker {
        let b = Breaker {
            name,
            cfg,
            state: AtomicU8::new(CLOSED),
            consecutive: AtomicU32::new(0),
            window_start: AtomicI64::new(0),
            window_ok: AtomicU32::new(0),
            window_failed: AtomicU32::new(0),
            opened_at: AtomicI64::new(0),
            probes: AtomicU32::new(0),
        };
        crate::telemetry::circuit_state(&b.name, CLOSED);
        b
    }

    /// May a send go through now? `Err(at)`: not before `at` (ms).
    pub fn allow(&self, now_ms: i64) -> Result<Admit, i64> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(Admit::Closed),
            OPEN => {
                let reopen = self.opened_at.load(Ordering::Acquire) + self.cfg.open_ms;
                if now_ms < reopen {
                    return Err(reopen);
                }
                // One caller moves it to half-open; everyone then competes
                // for the probes.
                if self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.probes.store(0, Ordering::Release);
                    crate::telemetry::circuit_state(&self.name, HALF_OPEN);
                    tracing::info!(provider = %self.name, "circuit half-open: probing");
                }
                self.take_probe(now_ms)
            }
            _ => self.take_probe(now_ms),
        }
    }

    fn take_probe(&self, now_ms: i64) -> Result<Admit, i64> {
        // Counts the probes out, never past the bound: a refused caller
        // takes none, so one given back is one another send may take.
        let max = self.cfg.half_open_probes;
        let took = self
            .probes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if took {
            Ok(Admit::Probe)
        } else {
            // Probes are out; their answers decide. Look again shortly.
            Err(now_ms + self.cfg.open_ms.min(1_000))
        }
    }

    /// A probe [`Breaker::allow`] handed out that was not sent after all:
    /// another send may probe instead. Without it, a half-open circuit
    /// whose probe was deferred would wait for an answer that never comes.
    pub fn return_probe(&self) {
        if self.state.load(Ordering::Acquire) == HALF_OPEN {
            let _ = self
                .probes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// The outcome of a send that went through.
    pub fn record(&self, ok: bool, now_ms: i64) {
        let start = self.window_start.load(Ordering::Acquire);
        if now_ms - start >= self.cfg.window_ms
            && self
                .window_start
                .compare_exchange(start, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.window_ok.store(0, Ordering::Release);
            self.window_failed.store(0, Ordering::Release);
        }
        let state = self.state.load(Ordering::Acquire);
        if ok {
            self.consecutive.store(0, Ordering::Release);
            self.window_ok.fetch_add(1, Ordering::AcqRel);
            if state == HALF_OPEN
                && self
                    .state
                    .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                self.window_ok.store(0, Ordering::Release);
                self.window_failed.store(0, Ordering::Release);
                crate::telemetry::circuit_state(&self.name, CLOSED);
                tracing::info!(provider = %self.name, "circuit closed: the probe succeeded");
            }
            return;
        }
        let consecutive = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let failed = self.window_failed.fetch_add(1, Ordering::AcqRel) + 1;
        let total = failed + self.window_ok.load(Ordering::Acquire);
        let rate_tripped = total >= self.cfg.min_requests
            && f64::from(failed) / f64::from(total) >= self.cfg.failure_rate;
        let trip = match state {
            HALF_OPEN => true,
            CLOSED => consecutive >= self.cfg.consecutive_failures || rate_tripped,
            _ => false,
        };
        if trip
            && self
                .state
                .compare_exchange(state, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.opened_at.store(now_ms, Ordering::Release);
            crate::telemetry::circuit_state(&self.name, OPEN);
            tracing::warn!(
                provider = %self.name,
                consecutive,
                failed,
                total,
                "circuit open: sends skip this provider for {} ms",
                self.cfg.open_ms
            );
        }
    }

    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            Arc::from("p"),
            BreakerConfig {
                consecutive_failures: 3,
                failure_rate: 0.5,
                min_requests: 10,
                window_ms: 10_000,
                open_ms: 1_000,
                half_open_probes: 1,
            },
        )
    }

    #[test]
    fn opens_after_consecutive_failures_then_probes_and_closes() {
        let b = breaker();
        let t = 1_000_000;
        b.record(false, t);
        b.record(false, t);
        assert_eq!(b.allow(t), Ok(Admit::Closed), "2 failures: still closed");
        b.record(false, t);
        assert!(b.is_open());
        assert_eq!(
            b.allow(t + 999),
            Err(t + 1_000),
            "open until open_ms passed"
        );
        assert_eq!(b.allow(t + 1_000), Ok(Admit::Probe), "half-open: one probe");
        assert!(b.allow(t + 1_000).is_err(), "only one probe at a time");
        b.record(true, t + 1_100);
        assert_eq!(
            b.allow(t + 1_100),
            Ok(Admit::Closed),
            "the probe succeeded: closed"
        );
        assert!(!b.is_open());
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = breaker();
        let t = 5_000_000;
        for _ in 0..3 {
            b.record(false, t);
        }
        assert_eq!(b.allow(t + 1_000), Ok(Admit::Probe));
        b.record(false, t + 1_000);
        assert!(b.is_open());
        assert_eq!(b.allow(t + 1_500), Err(t + 2_000));
    }

    /// A probe that was not sent after all is given back: the next send
    /// probes, and its answer closes the circuit.
    #[test]
    fn a_returned_probe_lets_another_send_probe() {
        let b = breaker();
        let t = 7_000_000;
        for _ in 0..3 {
            b.record(false, t);
        }
        assert_eq!(b.allow(t + 1_000), Ok(Admit::Probe));
        assert!(b.allow(t + 1_000).is_err(), "the probe is out");
        b.return_probe();
        assert_eq!(b.allow(t + 1_000), Ok(Admit::Probe), "given back");
        b.record(true, t + 1_100);
        assert_eq!(b.allow(t + 1_100), Ok(Admit::Closed));
        // Giving back on a closed circuit changes nothing.
        b.return_probe();
        assert_eq!(b.allow(t + 1_100), Ok(Admit::Closed));
    }

    #[test]
    fn failure_rate_over_the_window_opens() {
        let b = breaker();
        let t = 9_000_000;
        // Alternate: never 3 in a row, but 50% of 10.
        for i in 0..10 {
            b.record(i % 2 == 0, t);
        }
        assert!(b.is_open());
        // A new window forgets the old counts.
        let b = breaker();
        for i in 0..8 {
            b.record(i % 2 == 0, t);
        }
        for _ in 0..2 {
            b.record(true, t + 10_000);
        }
        assert!(!b.is_open());
    }
}
