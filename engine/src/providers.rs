//! The providers Herald routes to, built from config, each with its
//! concurrency bound (`providers.<name>.max_concurrency`) and its circuit
//! breaker; and the routes (DESIGN §4): per tenant and category an ordered
//! list of providers, skipping those whose circuit is open.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, Ordering};

use herald_adapters::{AnyProvider, HttpProvider, SandboxProvider, SnsProvider, TwilioProvider};
use tokio::sync::Semaphore;

use crate::config::{BreakerConfig, Config, ProviderKind};
use crate::model::Category;

/// One configured provider.
#[derive(Debug)]
pub struct ProviderSlot {
    pub name: Arc<str>,
    pub provider: AnyProvider,
    /// Bound on this account's concurrent requests; `None` means only the
    /// global `dispatch.max_in_flight` applies.
    pub limit: Option<Arc<Semaphore>>,
    pub breaker: Breaker,
    /// The provider calls back with delivery receipts (twilio with a
    /// `status_callback`): sent messages get a provider-id mapping.
    pub receipts: bool,
    /// The sender used when a message names none: the sender lane it is
    /// throttled in.
    pub default_sender: Option<Arc<str>>,
    /// Pre-registered metric handles: no label hashing per message.
    pub latency_ok: metrics::Histogram,
    pub latency_err: metrics::Histogram,
}

/// All providers and the routes.
#[derive(Debug)]
pub struct Providers {
    pub slots: Vec<ProviderSlot>,
    pub default_route: Vec<usize>,
    /// (tenant, category or `None` for the tenant's default) → route.
    pub routes: hashbrown::HashMap<(String, Option<Category>), Vec<usize>>,
    /// Attempts on one provider before a transient failure fails over to
    /// the next in the route.
    pub failover_after: u32,
}

/// Where a send goes.
pub enum Pick<'a> {
    Slot(&'a ProviderSlot),
    /// Every provider of the route has its circuit open: try again at this
    /// instant (ms), when the first one lets a probe through.
    AllOpen {
        retry_at: i64,
    },
}

impl Providers {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Providers> {
        let mut slots = Vec::with_capacity(cfg.providers.len());
        for p in &cfg.providers {
            let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("providers.{}: {e}", p.name);
            let provider = match &p.kind {
                ProviderKind::Twilio(s) => {
                    AnyProvider::Twilio(TwilioProvider::new(s.clone()).map_err(|e| err(&e))?)
                }
                ProviderKind::Sandbox(s) => {
                    AnyProvider::Sandbox(SandboxProvider::new(s.clone()).map_err(|e| err(&e))?)
                }
                ProviderKind::Sns(s) => {
                    AnyProvider::Sns(SnsProvider::new(s.clone()).map_err(|e| err(&e))?)
                }
                ProviderKind::Http(s) => {
                    AnyProvider::Http(HttpProvider::new(s.clone()).map_err(|e| err(&e))?)
                }
            };
            let name: Arc<str> = Arc::from(p.name.as_str());
            slots.push(ProviderSlot {
                latency_ok: metrics::histogram!(
                    crate::telemetry::names::PROVIDER_LATENCY,
                    "provider" => p.name.clone(), "result" => "ok"
                ),
                latency_err: metrics::histogram!(
                    crate::telemetry::names::PROVIDER_LATENCY,
                    "provider" => p.name.clone(), "result" => "error"
                ),
                breaker: Breaker::new(Arc::clone(&name), cfg.breaker),
                receipts: matches!(&p.kind, ProviderKind::Twilio(s) if s.status_callback.is_some()),
                default_sender: match &p.kind {
                    ProviderKind::Twilio(s) => s.from.clone().or(s.messaging_service_sid.clone()),
                    ProviderKind::Sns(s) => s.origination_number.clone(),
                    ProviderKind::Http(s) => s.from.clone(),
                    ProviderKind::Sandbox(_) => None,
                }
                .map(Arc::from),
                name,
                provider,
                limit: p.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            });
        }
        Ok(Providers {
            slots,
            default_route: cfg.default_route.clone(),
            routes: cfg.routes.clone().into_iter().collect(),
            failover_after: cfg.dispatch.failover_after,
        })
    }

    /// The slot of the provider named `name` (a pin read from Redis).
    pub fn slot_index(&self, name: &str) -> Option<u16> {
        self.slots
            .iter()
            .position(|s| &*s.name == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// The route of a tenant's messages of one category: the tenant's
    /// category route, else the tenant's default, else `routes.default`.
    pub fn route(&self, tenant: &str, category: Category) -> &[usize] {
        if !self.routes.is_empty() {
            for key in [Some(category), None] {
                if let Some(r) = self.routes.get(&(tenant.to_string(), key)) {
                    return r;
                }
            }
        }
        &self.default_route
    }

    /// The provider for attempt `attempt` (1-based) of a message: the
    /// route's `(attempt - 1) / failover_after`-th provider — a transient
    /// failure retries on the same provider, then fails over to the next —
    /// skipping providers whose circuit is open. `pinned` (an ambiguous
    /// send's provider) wins: the message may already be there, so it is
    /// never re-sent through another provider (DESIGN §4).
    pub fn pick(
        &self,
        route: &[usize],
        attempt: u32,
        pinned: Option<u16>,
        now_ms: i64,
    ) -> Pick<'_> {
        if let Some(slot) = pinned.and_then(|i| self.slots.get(usize::from(i))) {
            return Pick::Slot(slot);
        }
        let per = self.failover_after.max(1);
        let first = ((attempt.saturating_sub(1) / per) as usize).min(route.len().saturating_sub(1));
        let mut retry_at = i64::MAX;
        for i in (first..route.len()).chain(0..first) {
            let slot = &self.slots[route[i]];
            match slot.breaker.allow(now_ms) {
                Ok(()) => {
                    if i != first {
                        crate::telemetry::failover(&self.slots[route[first]].name, &slot.name);
                    }
                    return Pick::Slot(slot);
                }
                Err(at) => retry_at = retry_at.min(at),
            }
        }
        Pick::AllOpen { retry_at }
    }
}

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
    pub fn allow(&self, now_ms: i64) -> Result<(), i64> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(()),
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

    fn take_probe(&self, now_ms: i64) -> Result<(), i64> {
        let n = self.probes.fetch_add(1, Ordering::AcqRel);
        if n < self.cfg.half_open_probes {
            Ok(())
        } else {
            // Probes are out; their answers decide. Look again shortly.
            Err(now_ms + self.cfg.open_ms.min(1_000))
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
        assert_eq!(b.allow(t), Ok(()), "2 failures: still closed");
        b.record(false, t);
        assert!(b.is_open());
        assert_eq!(
            b.allow(t + 999),
            Err(t + 1_000),
            "open until open_ms passed"
        );
        assert_eq!(b.allow(t + 1_000), Ok(()), "half-open: one probe");
        assert!(b.allow(t + 1_000).is_err(), "only one probe at a time");
        b.record(true, t + 1_100);
        assert_eq!(b.allow(t + 1_100), Ok(()), "the probe succeeded: closed");
        assert!(!b.is_open());
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = breaker();
        let t = 5_000_000;
        for _ in 0..3 {
            b.record(false, t);
        }
        assert_eq!(b.allow(t + 1_000), Ok(()));
        b.record(false, t + 1_000);
        assert!(b.is_open());
        assert_eq!(b.allow(t + 1_500), Err(t + 2_000));
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
