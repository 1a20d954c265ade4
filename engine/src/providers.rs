//! The providers Herald routes to, built from config, each with its
//! concurrency bound (`providers.<name>.max_concurrency`).

use std::sync::Arc;

use herald_adapters::{AnyProvider, SandboxProvider, TwilioProvider};
use tokio::sync::Semaphore;

use crate::config::{Config, ProviderKind};

/// One configured provider.
#[derive(Debug)]
pub struct ProviderSlot {
    pub name: Arc<str>,
    pub provider: AnyProvider,
    /// Bound on this account's concurrent requests; `None` means only the
    /// global `dispatch.max_in_flight` applies.
    pub limit: Option<Arc<Semaphore>>,
    /// Pre-registered metric handles: no label hashing per message.
    pub latency_ok: metrics::Histogram,
    pub latency_err: metrics::Histogram,
}

/// All providers and the default route.
#[derive(Debug)]
pub struct Providers {
    pub slots: Vec<ProviderSlot>,
    pub default_route: Vec<usize>,
}

impl Providers {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Providers> {
        let mut slots = Vec::with_capacity(cfg.providers.len());
        for p in &cfg.providers {
            let provider = match &p.kind {
                ProviderKind::Twilio(s) => AnyProvider::Twilio(
                    TwilioProvider::new(s.clone())
                        .map_err(|e| anyhow::anyhow!("providers.{}: {e}", p.name))?,
                ),
                ProviderKind::Sandbox(s) => AnyProvider::Sandbox(
                    SandboxProvider::new(s.clone())
                        .map_err(|e| anyhow::anyhow!("providers.{}: {e}", p.name))?,
                ),
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
                name,
                provider,
                limit: p.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            });
        }
        Ok(Providers {
            slots,
            default_route: cfg.default_route.clone(),
        })
    }

    /// The provider for a message. Failover along the route when a provider's
    /// circuit is open comes with the circuit breaker; today the first
    /// provider of the route takes every message.
    pub fn primary(&self) -> &ProviderSlot {
        &self.slots[self.default_route[0]]
    }
}
