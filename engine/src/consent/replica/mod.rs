//! This instance's lock-free replica of the consent ledger (docs/compliance.md).
//!
//! Redis holds the ledger; every instance keeps a copy so that the
//! per-message consent check is a lock-free, allocation-free memory lookup.
//! Only numbers with a non-default state are stored.
//!
//! Layout. A [`Replica`] is an `ArcSwap<View>`. A [`View`] is immutable:
//! - a **base** per tenant: one sorted `Vec<u64>` of `number << 9 | state`
//!   (8 bytes an entry; E.164 numbers are below 2^50) and a radix index over
//!   the numbers' range that narrows a lookup to about one cache line
//!   (0.5 byte an entry), see `base.rs`;
//! - an **overlay**, a hash map of the changes since the base was built,
//!   read first. A change back to the default state is kept there, since it
//!   overrides the base, and dropped when the overlay is merged.
//!
//! Tenants are interned to a small id by a table inside the view, so a
//! lookup hashes the tenant name once and allocates nothing; a new tenant
//! only appears through [`Replica::apply`], which builds a new view anyway.
//!
//! Writes. [`Replica::apply`] builds a new view (the overlay cloned and
//! extended: time in the size of the overlay, not of the base) and swaps it
//! in; readers holding the old view keep it until they drop it, so a write
//! never waits for a reader nor a reader for a write. Once the overlay
//! outgrows `max(64Ki, 1% of the base)` entries it is merged into new bases
//! (one linear pass per changed tenant), which keeps lookups fast and the
//! overlay's clone cheap. Apply is meant for one writer, the change-stream
//! follower; see its documentation for the cost of a merge.
//!
//! Measured (`cargo bench -p herald-benches --bench consent`: 10M random US
//! numbers, 3 tenants, on a busy 2-core KVM EPYC): `from_records` 0.6 s
//! (the stable sort is ~0.37 s of it); 8.3 bytes an entry (80 MiB); one
//! lookup p50 0.37–0.52 µs, p99 0.7–0.9 µs over two runs, most of it one
//! DRAM and TLB miss, about 0.1 µs more with a 40k-entry overlay; 3.8–5.0M
//! lookups/s on one core; `apply` of 1,000 changes 0.33–0.37 ms at p50 (the
//! overlay's clone), 0.14 s when it merges.

mod base;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use hashbrown::HashMap;

use self::base::{NUMBER_LIMIT, TenantBase, pack};
pub use self::state::{NumberState, ParseStateError, PurposeState};

/// Overlay entries that always fit before a merge. Below it a merge would
/// rewrite a small base for a handful of changes; at it the overlay's
/// clone per `apply` is still under a millisecond (measured with a 10M
/// base: 0.4 ms p50, 1 ms p99 per 1,000-change batch).
const MERGE_FLOOR: usize = 64 * 1024;

/// The overlay may also grow to `base / MERGE_DIVISOR` (1%): a merge costs
/// time in the size of the base, so on a large base merges are spread out
/// to keep their amortised cost per change small.
const MERGE_DIVISOR: usize = 100;

/// A key of the overlay: (interned tenant, number).
type Key = (usize, u64);

/// The lock-free consent replica: see the module documentation.
pub struct Replica {
    view: ArcSwap<View>,
    /// Serialises [`Replica::apply`]. There is meant to be one writer; with
    /// two, the second would otherwise build on a view the first is about
    /// to replace, and one of them would lose its changes. Readers never
    /// take it.
    writer: Mutex<()>,
    /// Overlay entries allowed before a merge, at least: [`MERGE_FLOOR`]
    /// (tests set it low to exercise merges).
    merge_floor: usize,
}

/// One immutable state of the replica. [`Replica::snapshot`] hands one out
/// for a batch of lookups.
pub struct View {
    /// Tenant ids and bases, shared by views until a tenant is added or the
    /// overlay is merged.
    catalog: Arc<Catalog>,
    /// Changes since the bases were built, read before them. Holds default
    /// states that override a base entry, and every number too large for a
    /// base entry (see `wide`).
    overlay: HashMap<Key, NumberState>,
    /// Overlay entries with numbers at or above `NUMBER_LIMIT`: not valid
    /// E.164, so none are expected, but if the ledger holds one it is kept
    /// here, never merged, rather than dropped.
    wide: usize,
    /// (tenant, number) pairs with a non-default state.
    len: usize,
}

#[derive(Clone, Default)]
struct Catalog {
    /// Tenant name → id, the index into `bases`.
    ids: HashMap<Box<str>, usize>,
    /// One per tenant id; `Arc` so that a merge shares the bases of tenants
    /// it did not change.
    bases: Vec<Arc<TenantBase>>,
    /// Entries in all bases.
    base_len: usize,
}

impl Catalog {
    /// The id of `tenant`, interning it with an empty base if it is new.
    fn intern(&mut self, tenant: &str) -> usize {
        if let Some(&id) = self.ids.get(tenant) {
            return id;
        }
        let id = self.bases.len();
        self.ids.insert(tenant.into(), id);
        self.bases.push(Arc::new(TenantBase::empty()));
        id
    }

    fn base_state(&self, id: usize, number: u64) -> NumberState {
        self.bases
            .get(id)
            .map_or(NumberState::DEFAULT, |base| base.get(number))
    }
}

impl Default for Replica {
    fn default() -> Replica {
        Replica::new()
    }
}

/// Collects records for a bulk build.
#[derive(Default)]
struct Builder {
    ids: HashMap<Box<str>, usize>,
    entries: Vec<Vec<u64>>,
    overlay: HashMap<(usize, u64), NumberState>,
}

impl Builder {
    fn tenant_id(&mut self, tenant: &str) -> usize {
        if let Some(&id) = self.ids.get(tenant) {
            return id;
        }
        let id = self.entries.len();
        self.ids.insert(tenant.into(), id);
        self.entries.push(Vec::new());
        id
    }

    fn push(&mut self, id: usize, number: u64, state: NumberState) {
        if number < NUMBER_LIMIT {
            self.entries[id].push(pack(number, state));
        } else if state.is_default() {
            self.overlay.remove(&(id, number));
        } else {
            self.overlay.insert((id, number), state);
        }
    }

    fn build(self) -> Replica {
        let Builder {
            ids,
            entries,
            overlay,
        } = self;
        let bases: Vec<Arc<TenantBase>> = entries
            .into_iter()
            .map(|e| Arc::new(TenantBase::from_unsorted(e)))
            .collect();
        let base_len = bases.iter().map(|b| b.len()).sum();
        Replica::with_view(View {
            catalog: Arc::new(Catalog {
                ids,
                bases,
                base_len,
            }),
            wide: overlay.len(),
            len: base_len + overlay.len(),
            overlay,
        })
    }
}

impl Replica {
    /// An empty replica: unknown everywhere.
    pub fn new() -> Replica {
        Replica::with_view(View {
            catalog: Arc::default(),
            overlay: HashMap::new(),
            wide: 0,
            len: 0,
        })
    }

    fn with_view(view: View) -> Replica {
        Replica {
            view: ArcSwap::from_pointee(view),
            writer: Mutex::new(()),
            merge_floor: MERGE_FLOOR,
        }
    }

    /// Bulk build at start-up from the ledger's records, in any order: for
    /// a (tenant, number) given twice the last record wins, and a default
    /// state removes it. Sorts once per tenant.
    pub fn from_records(records: impl IntoIterator<Item = (String, u64, NumberState)>) -> Replica {
        let mut b = Builder::default();
        for (tenant, number, state) in records {
            let id = b.tenant_id(&tenant);
            b.push(id, number, state);
        }
        b.build()
    }

    /// Bulk build from records grouped by tenant, as the ledger's start-up
    /// load reads them (one tenant hash at a time): no tenant string per
    /// record. Same rules as [`Replica::from_records`].
    pub fn from_tenant_records<'a, R>(tenants: impl IntoIterator<Item = (&'a str, R)>) -> Replica
    where
        R: IntoIterator<Item = (u64, NumberState)>,
    {
        let mut b = Builder::default();
        for (tenant, records) in tenants {
            let id = b.tenant_id(tenant);
            for (number, state) in records {
                b.push(id, number, state);
            }
        }
        b.build()
    }

    /// The consent state of `number` for `tenant`; unknown everywhere when
    /// nothing is on file. Lock-free and allocation-free: one atomic load of
    /// the current view, then [`View::lookup`].
    #[inline]
    pub fn lookup(&self, tenant: &str, number: u64) -> NumberState {
        self.view.load().lookup(tenant, number)
    }

    /// The current view, for a batch of lookups against one consistent
    /// state. Hold it for a batch, not for long: it keeps its memory alive
    /// after newer views replace it.
    pub fn snapshot(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Apply changes from the change stream, in order (a later change to the
    /// same (tenant, number) wins). Visible to every lookup that starts
    /// after this returns.
    ///
    /// One writer: the change-stream follower calls it, one batch at a time
    /// (a second caller waits on a writer lock that readers never touch).
    /// Cost: the overlay's size per call; when the call pushes the overlay
    /// past its limit, it also merges it into the bases, which takes time in
    /// the size of the changed tenants' bases (measured: 0.15 s at 10M
    /// entries) and briefly holds both copies. Call it from a blocking-safe
    /// context (`spawn_blocking` or a dedicated thread), not from a task
    /// that shares a runtime thread with the send path.
    pub fn apply(&self, changes: &[(String, u64, NumberState)]) {
        if changes.is_empty() {
            return;
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.view.load_full();
        let mut catalog = Arc::clone(&current.catalog);
        let mut overlay = current.overlay.clone();
        let (mut wide, mut len) = (current.wide, current.len);
        for (tenant, number, state) in changes {
            let (number, state) = (*number, *state);
            let id = match catalog.ids.get(tenant.as_str()) {
                Some(&id) => id,
                // Copies the catalog (names and base pointers, not bases)
                // once per call that brings a new tenant.
                None => Arc::make_mut(&mut catalog).intern(tenant),
            };
            let key = (id, number);
            let below = catalog.base_state(id, number);
            let before = overlay.get(&key).copied().unwrap_or(below);
            match (before.is_default(), state.is_default()) {
                (true, false) => len += 1,
                (false, true) => len -= 1,
                _ => {}
            }
            if number >= NUMBER_LIMIT {
                // Never merged: count it so that it does not trigger merges.
                if state.is_default() {
                    wide -= usize::from(overlay.remove(&key).is_some());
                } else {
                    wide += usize::from(overlay.insert(key, state).is_none());
                }
            } else if state.is_default() && below.is_default() {
                // Nothing below to override: the entry can go now rather
                // than at the merge.
                overlay.remove(&key);
            } else {
                overlay.insert(key, state);
            }
        }
        let limit = self.merge_floor.max(catalog.base_len / MERGE_DIVISOR);
        let view = if overlay.len() - wide > limit {
            merge(&catalog, overlay, len)
        } else {
            View {
                catalog,
                overlay,
                wide,
                len,
            }
        };
        self.view.store(Arc::new(view));
    }

    /// (tenant, number) pairs with a non-default state.
    pub fn len(&self) -> usize {
        self.view.load().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap held by the current view (bases, index, overlay,
    /// tenant table), for the benchmark and a metric. A view that readers
    /// still hold after a swap is not counted.
    pub fn heap_bytes(&self) -> usize {
        self.view.load().heap_bytes()
    }
}

/// A view with `overlay` merged into new bases: the numbers too large for a
/// base stay in the new overlay, everything else leaves it.
fn merge(catalog: &Catalog, overlay: HashMap<Key, NumberState>, len: usize) -> View {
    let mut changes: Vec<Vec<(u64, NumberState)>> = vec![Vec::new(); catalog.bases.len()];
    let mut kept = HashMap::new();
    for ((id, number), state) in overlay {
        match changes.get_mut(id) {
            Some(tenant) if number < NUMBER_LIMIT => tenant.push((number, state)),
            _ => {
                kept.insert((id, number), state);
            }
        }
    }
    let bases: Vec<Arc<TenantBase>> = catalog
        .bases
        .iter()
        .zip(changes)
        .map(|(base, mut changes)| {
            if changes.is_empty() {
                Arc::clone(base)
            } else {
                changes.sort_unstable_by_key(|&(number, _)| number);
                Arc::new(base.merged(&changes))
            }
        })
        .collect();
    let base_len = bases.iter().map(|b| b.len()).sum();
    View {
        catalog: Arc::new(Catalog {
            ids: catalog.ids.clone(),
            bases,
            base_len,
        }),
        wide: kept.len(),
        overlay: kept,
        len,
    }
}

impl View {
    /// The consent state of `number` for `tenant`; unknown everywhere when
    /// nothing is on file. Allocation-free: a hash of the tenant name, a
    /// probe of the overlay (skipped while it is empty), then the tenant's
    /// base.
    #[inline]
    pub fn lookup(&self, tenant: &str, number: u64) -> NumberState {
        let Some(&id) = self.catalog.ids.get(tenant) else {
            return NumberState::DEFAULT;
        };
        if !self.overlay.is_empty()
            && let Some(&state) = self.overlay.get(&(id, number))
        {
            return state;
        }
        self.catalog.base_state(id, number)
    }

    /// (tenant, number) pairs with a non-default state.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every (tenant, number, state) with a non-default state, tenant by
    /// tenant (for restoring a wiped ledger from a replica: not a hot path).
    pub fn for_each(&self, mut f: impl FnMut(&str, u64, NumberState)) {
        for (name, &id) in &self.catalog.ids {
            self.catalog.bases[id].for_each(|number, state| {
                if !self.overlay.contains_key(&(id, number)) {
                    f(name, number, state);
                }
            });
        }
        for (&(id, number), &state) in &self.overlay {
            if state.is_default() {
                continue;
            }
            if let Some((name, _)) = self.catalog.ids.iter().find(|(_, i)| **i == id) {
                f(name, number, state);
            }
        }
    }

    /// Approximate heap held by this view.
    pub fn heap_bytes(&self) -> usize {
        let catalog = &self.catalog;
        let names: usize = catalog.ids.keys().map(|name| name.len()).sum();
        let bases: usize = catalog
            .bases
            .iter()
            .map(|b| size_of::<TenantBase>() + b.heap_bytes())
            .sum();
        size_of::<Catalog>()
            + catalog.ids.allocation_size()
            + names
            + catalog.bases.capacity() * size_of::<Arc<TenantBase>>()
            + bases
            + self.overlay.allocation_size()
    }
}
