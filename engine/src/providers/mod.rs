//! The providers Herald routes to, built from config, each with its
//! concurrency bound (`providers.<name>.max_concurrency`) and its circuit
//! breaker; and the routes (docs/contracts.md#providers): per tenant and category an ordered
//! list of providers, skipping those whose circuit is open.

use std::sync::Arc;

pub mod breaker;
pub mod config;

use herald_adapters::{AnyProvider, HttpProvider, SandboxProvider, SnsProvider, TwilioProvider};
use tokio::sync::Semaphore;

pub use self::breaker::Breaker;
use self::config::{BreakerConfig, ProviderConfig, ProviderKind};
use crate::error::Error;

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
    /// Attempts on one provider before a transient failure fails over to
    /// the next in the route.
    pub failover_after: u32,
}

/// Where a send goes: the route decision, made once per send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// `slots[index]`. `probe`: the send is its half-open circuit's probe;
    /// if it is not sent after all (throttled, capped), the probe is given
    /// back ([`Breaker::return_probe`]) so the circuit can still close.
    Slot { index: u16, probe: bool },
    /// Every provider of the route has its circuit open: try again at this
    /// instant (ms), when the first one lets a probe through.
    AllOpen { retry_at: i64 },
}

impl Providers {
    /// Build every provider; `failover_after` is `dispatch.failover_after`.
    pub fn new(
        providers: &[ProviderConfig],
        breaker: BreakerConfig,
        failover_after: u32,
    ) -> Result<Providers, Error> {
        let mut slots = Vec::with_capacity(providers.len());
        for p in providers {
            let err = |e: &dyn std::fmt::Display| Error::Provider {
                provider: p.name.clone(),
                reason: e.to_string(),
            };
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
                breaker: Breaker::new(Arc::clone(&name), breaker),
                receipts: matches!(&p.kind, ProviderKind::Twilio(s) if s.status_callback.is_some()),
                default_sender: match &p.kind {
                    ProviderKind::Twilio(s) => s.from.clone().or(s.messaging_service_sid.clone()),
                    ProviderKind::Sns(s) => s.origination_number.clone(),
                    ProviderKind::Http(s) => s.from.clone(),
                    ProviderKind::Sandbox(_) => None,
                }
                // As ingest spells senders, so `from` and a tenant's senders
                // compare with it.
                .map(|s| crate::model::parse_sender(&s).map_or_else(|_| Arc::from(s), Arc::from)),
                name,
                provider,
                limit: p.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            });
        }
        Ok(Providers {
            slots,
            failover_after,
        })
    }

    /// Whether `sender` is some provider's default sender: the senders a
    /// tenant that declared none may name in `from`.
    pub fn is_default_sender(&self, sender: &str) -> bool {
        self.slots
            .iter()
            .any(|s| s.default_sender.as_deref() == Some(sender))
    }

    /// The slot of the provider named `name` (a pin read from Redis).
    pub fn slot_index(&self, name: &str) -> Option<u16> {
        self.slots
            .iter()
            .position(|s| &*s.name == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// The provider for attempt `attempt` (1-based) of a message: the
    /// route's `(attempt - 1) / failover_after`-th provider — a transient
    /// failure retries on the same provider, then fails over to the next —
    /// skipping providers whose circuit is open. `pinned` (an ambiguous
    /// send's provider) wins: the message may already be there, so it is
    /// never re-sent through another provider (docs/contracts.md#providers).
    pub fn pick(&self, route: &[usize], attempt: u32, pinned: Option<u16>, now_ms: i64) -> Pick {
        if let Some(i) = pinned.filter(|i| usize::from(*i) < self.slots.len()) {
            return Pick::Slot {
                index: i,
                probe: false,
            };
        }
        let per = self.failover_after.max(1);
        let first = ((attempt.saturating_sub(1) / per) as usize).min(route.len().saturating_sub(1));
        let mut retry_at = i64::MAX;
        for i in (first..route.len()).chain(0..first) {
            let slot = &self.slots[route[i]];
            match slot.breaker.allow(now_ms) {
                Ok(admit) => {
                    if i != first {
                        crate::telemetry::failover(&self.slots[route[first]].name, &slot.name);
                    }
                    return Pick::Slot {
                        index: route[i] as u16,
                        probe: admit == breaker::Admit::Probe,
                    };
                }
                Err(at) => retry_at = retry_at.min(at),
            }
        }
        Pick::AllOpen { retry_at }
    }
}
