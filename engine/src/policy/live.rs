//! The policy every shard reads: one immutable [`Policy`] behind an
//! `ArcSwap`, replaced whole when the policy store has a new version. A
//! read is a lock-free load; a swap never pauses sending (a message being
//! decided finishes on the version it loaded).

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Policy;

#[derive(Debug)]
pub struct LivePolicy {
    current: ArcSwap<Policy>,
}

impl LivePolicy {
    pub fn new(p: Policy) -> LivePolicy {
        LivePolicy {
            current: ArcSwap::from_pointee(p),
        }
    }

    /// The current version, for a decision made now (do not hold it across
    /// an `.await`: use [`LivePolicy::load_full`] there).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.current.load()
    }

    /// The current version, owned.
    pub fn load_full(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Swap in `next`; returns the version it replaced.
    pub fn store(&self, next: Policy) -> Arc<Policy> {
        self.current.swap(Arc::new(next))
    }

    pub fn version(&self) -> u64 {
        self.current.load().version
    }
}
