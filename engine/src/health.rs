//! Whether this instance may send, and why not. `/readyz` answers 200 only
//! when every condition holds, and says which one does not; the shards do
//! not read the queue while sending is not safe (docs/faults.md):
//!
//! - Redis answers;
//! - Redis is durable: append-only file on, `maxmemory-policy` `noeviction`
//!   (a restart without persistence, or an eviction, would forget consent
//!   and claims) — unless `redis.allow_volatile` says a demo may run
//!   without;
//! - the consent ledger is intact: Redis was not wiped or restored from an
//!   older copy while this instance ran (`consent::guard`);
//! - every shard and outcome writer is alive.
//!
//! Flags only, set by the checker in `server` and by the supervisors;
//! reads are lock-free (one atomic load each).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

/// This instance's health.
pub struct Health {
    redis_up: AtomicBool,
    durable: AtomicBool,
    ledger_intact: AtomicBool,
    tasks_down: AtomicUsize,
    /// Why Redis is not durable / the ledger not intact, for `/readyz`.
    durability: ArcSwap<String>,
    ledger: ArcSwap<String>,
}

impl Health {
    /// Nothing known yet: not durable until the first check says so.
    pub fn new() -> Health {
        Health {
            redis_up: AtomicBool::new(true),
            durable: AtomicBool::new(false),
            ledger_intact: AtomicBool::new(true),
            tasks_down: AtomicUsize::new(0),
            durability: ArcSwap::from_pointee("not checked yet".into()),
            ledger: ArcSwap::from_pointee(String::new()),
        }
    }

    /// Whether the shards may read and send. Lock-free.
    #[inline]
    pub fn may_send(&self) -> bool {
        self.durable.load(Ordering::Acquire) && self.ledger_intact.load(Ordering::Acquire)
    }

    /// `Ok` when ready; else every reason, for `/readyz`.
    pub fn ready(&self) -> Result<(), String> {
        let mut why = Vec::new();
        if !self.redis_up.load(Ordering::Acquire) {
            why.push("redis unreachable".to_string());
        }
        if !self.durable.load(Ordering::Acquire) {
            why.push(format!("redis not durable: {}", self.durability.load()));
        }
        if !self.ledger_intact.load(Ordering::Acquire) {
            why.push(format!("consent ledger not intact: {}", self.ledger.load()));
        }
        let down = self.tasks_down.load(Ordering::Acquire);
        if down > 0 {
            why.push(format!("{down} dispatch task(s) restarting"));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
    }

    /// Set by the checker; returns whether it changed.
    pub fn set_redis_up(&self, up: bool) -> bool {
        self.redis_up.swap(up, Ordering::AcqRel) != up
    }

    /// Durable (`Ok`) or why not; returns whether it changed.
    pub fn set_durable(&self, state: Result<(), String>) -> bool {
        let ok = state.is_ok();
        if let Err(why) = state {
            self.durability.store(Arc::new(why));
        }
        self.durable.swap(ok, Ordering::AcqRel) != ok
    }

    /// Intact (`Ok`) or why not; returns whether it changed.
    pub fn set_ledger(&self, state: Result<(), String>) -> bool {
        let ok = state.is_ok();
        if let Err(why) = state {
            self.ledger.store(Arc::new(why));
        }
        self.ledger_intact.swap(ok, Ordering::AcqRel) != ok
    }

    /// A supervised task died; [`Health::task_up`] when it runs again.
    pub fn task_down(&self) {
        self.tasks_down.fetch_add(1, Ordering::AcqRel);
    }

    pub fn task_up(&self) {
        let _ = self
            .tasks_down
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds() {
        let h = Health::new();
        assert!(!h.may_send(), "not durable until checked");
        assert!(h.ready().unwrap_err().contains("not checked yet"));
        assert!(h.set_durable(Ok(())));
        assert!(h.may_send());
        assert_eq!(h.ready(), Ok(()));
        h.set_ledger(Err("the epoch changed".into()));
        assert!(!h.may_send());
        let why = h.ready().unwrap_err();
        assert!(
            why.contains("consent ledger not intact: the epoch changed"),
            "{why}"
        );
        h.set_ledger(Ok(()));
        h.task_down();
        assert!(h.may_send(), "a restarting task does not stop the others");
        assert!(
            h.ready()
                .unwrap_err()
                .contains("1 dispatch task(s) restarting")
        );
        h.task_up();
        h.task_up();
        assert_eq!(h.ready(), Ok(()));
        h.set_redis_up(false);
        assert_eq!(h.ready(), Err("redis unreachable".into()));
    }
}
