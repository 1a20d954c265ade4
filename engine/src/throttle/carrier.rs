//! Which carrier lane a message goes through (docs/architecture.md#throughput-control): the message's hint
//! if it names a known carrier, else the lookup cache, else the longest
//! matching prefix of the configured table, else `unknown`.
//!
//! Everything here is read on the per-message path, so resolution takes no
//! lock and allocates nothing: the hint is compared against a short list,
//! the cache is a fixed table of atomics, and the prefix table is a few
//! sorted arrays searched by binary search.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use super::carrier_name::Carrier;
use super::table::ThrottleConfig;

// ---------------------------------------------------------------------------
// Prefix table
// ---------------------------------------------------------------------------

/// Prefixes grouped by length, longest first; each group sorted by value.
/// A lookup is one binary search per distinct length (the shipped table has
/// two lengths), longest first, so the first hit is the longest match.
#[derive(Debug, Default)]
struct PrefixTable {
    by_len: Vec<(u8, Vec<(u64, Carrier)>)>,
}

/// Powers of ten up to 10^15 (E.164 has at most 15 digits).
const POW10: [u64; 16] = {
    let mut p = [1u64; 16];
    let mut i = 1;
    while i < 16 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

impl PrefixTable {
    fn new(entries: impl IntoIterator<Item = ((u64, u8), Carrier)>) -> PrefixTable {
        let mut by_len: Vec<(u8, Vec<(u64, Carrier)>)> = Vec::new();
        for ((value, len), c) in entries {
            match by_len.iter_mut().find(|(l, _)| *l == len) {
                Some((_, v)) => v.push((value, c)),
                None => by_len.push((len, vec![(value, c)])),
            }
        }
        by_len.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, v) in &mut by_len {
            v.sort_by_key(|e| e.0);
        }
        PrefixTable { by_len }
    }

    fn longest_match(&self, number: u64) -> Option<Carrier> {
        if number == 0 {
            return None;
        }
        let digits = number.ilog10() as u8 + 1;
        for (len, entries) in &self.by_len {
            let Some(drop) = digits.checked_sub(*len) else {
                continue;
            };
            let head = number / POW10[usize::from(drop.min(15))];
            if let Ok(i) = entries.binary_search_by_key(&head, |e| e.0) {
                return Some(entries[i].1);
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Lookup cache
// ---------------------------------------------------------------------------

/// Slot code for "a lookup is on its way" (not a carrier id).
const PENDING: u64 = 0x3FFF;
const CODE_BITS: u32 = 14;

/// What the cache knows about a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// Looked up: this carrier (possibly [`Carrier::UNKNOWN`]: the lookup
    /// found nothing the table knows, so don't ask again).
    Known(u16),
    /// A lookup was requested and has not answered yet.
    Pending,
}

/// Numbers whose carrier a lookup found. A direct-mapped table of atomics:
/// lock-free, allocation-free after start,
/// fixed size (8 bytes a slot); a collision just evicts the older number,
/// which costs at most one more lookup. Each slot packs the number (E.164 <
/// 10^15 < 2^50) above a 14-bit code; 0 is an empty slot (no E.164 number is
/// 0).
pub struct CarrierCache {
    slots: Box<[AtomicU64]>,
    shift: u32,
}

impl CarrierCache {
    /// `slots` is rounded up to a power of two (at least 2).
    pub fn new(slots: usize) -> CarrierCache {
        let slots = slots.max(2).next_power_of_two();
        CarrierCache {
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            shift: 64 - slots.trailing_zeros(),
        }
    }

    fn slot(&self, number: u64) -> &AtomicU64 {
        // Fibonacci hashing spreads neighbouring numbers over the table.
        let h = number.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift;
        &self.slots[h as usize]
    }

    pub fn get(&self, number: u64) -> Option<Cached> {
        let v = self.slot(number).load(Ordering::Relaxed);
        if v == 0 || v >> CODE_BITS != number {
            return None;
        }
        Some(match v & ((1 << CODE_BITS) - 1) {
            PENDING => Cached::Pending,
            id => Cached::Known(id as u16),
        })
    }

    /// Record what a lookup found for `number`.
    pub fn put(&self, number: u64, carrier: Carrier) {
        self.slot(number).store(
            (number << CODE_BITS) | u64::from(carrier.id()),
            Ordering::Relaxed,
        );
    }

    /// Mark `number` as being looked up, unless the slot already says so.
    /// True when this call made the mark (and so should send the request).
    fn mark_pending(&self, number: u64) -> bool {
        let slot = self.slot(number);
        let want = (number << CODE_BITS) | PENDING;
        let cur = slot.load(Ordering::Relaxed);
        cur != want
            && slot
                .compare_exchange(cur, want, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Drop a pending mark (the request could not be queued or failed), so
    /// a later message asks again.
    fn clear_pending(&self, number: u64) {
        let want = (number << CODE_BITS) | PENDING;
        let _ = self
            .slot(number)
            .compare_exchange(want, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Default cache size: 64 Ki numbers, 512 KiB.
pub const DEFAULT_CACHE_SLOTS: usize = 1 << 16;

// ---------------------------------------------------------------------------
// The lookup hook
// ---------------------------------------------------------------------------

/// A carrier lookup failed; the number will be asked about again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("carrier lookup failed: {0}")]
pub struct LookupError(pub String);

/// Where a number's carrier can be asked (e.g. a provider's number-lookup
/// API). Herald ships no implementation: a lookup costs money per number and
/// needs the provider's credentials, so it is the deployment's choice.
pub trait CarrierLookup: Send + Sync + 'static {
    /// The carrier name the service reports for `number` (E.164 digits), to
    /// be matched against the table's names and aliases; `None` when it
    /// does not know.
    fn lookup(
        &self,
        number: u64,
    ) -> impl Future<Output = Result<Option<String>, LookupError>> + Send;
}

/// Numbers waiting for a lookup, from [`Carriers::with_lookups`].
pub struct LookupRequests(mpsc::Receiver<u64>);

// ---------------------------------------------------------------------------
// Carriers
// ---------------------------------------------------------------------------

/// Carrier resolution for one table: immutable except for the cache.
pub struct Carriers {
    /// Names and aliases, lower-cased once at load; matched in a scan with
    /// `eq_ignore_ascii_case`. A table has tens of spellings: a scan of short
    /// strings costs less than lower-casing the hint into a buffer to hash.
    hints: Box<[(Box<str>, Carrier)]>,
    prefixes: PrefixTable,
    /// Carrier by interned id, for the ids this table knows.
    by_id: Box<[Option<Carrier>]>,
    cache: CarrierCache,
    /// Where cache misses are sent when a lookup is configured. Bounded: a
    /// full queue drops the request (the number is asked about again on a
    /// later message), so a slow lookup never holds up dispatch.
    lookups: Option<mpsc::Sender<u64>>,
}

impl Carriers {
    /// Resolution from `config`, with a cache of [`DEFAULT_CACHE_SLOTS`] and
    /// no lookup (the cache is filled only through [`Carriers::remember`]).
    pub fn new(config: &ThrottleConfig) -> Carriers {
        Carriers::build(config, DEFAULT_CACHE_SLOTS, None)
    }

    /// Resolution that asks a lookup about numbers it has not seen: run
    /// [`run_lookups`] with the returned requests. `queue` bounds the
    /// numbers waiting for a lookup.
    pub fn with_lookups(
        config: &ThrottleConfig,
        cache_slots: usize,
        queue: usize,
    ) -> (Carriers, LookupRequests) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        (
            Carriers::build(config, cache_slots, Some(tx)),
            LookupRequests(rx),
        )
    }

    fn build(
        config: &ThrottleConfig,
        cache_slots: usize,
        lookups: Option<mpsc::Sender<u64>>,
    ) -> Carriers {
        let mut hints = Vec::new();
        let mut max_id = 0;
        for c in &config.carriers {
            max_id = max_id.max(c.carrier.id());
            hints.push((Box::from(c.carrier.name()), c.carrier));
            for a in &c.aliases {
                hints.push((a.to_ascii_lowercase().into_boxed_str(), c.carrier));
            }
        }
        let mut by_id = vec![None; usize::from(max_id) + 1];
        by_id[0] = Some(Carrier::UNKNOWN);
        for c in &config.carriers {
            by_id[usize::from(c.carrier.id())] = Some(c.carrier);
        }
        let prefixes = PrefixTable::new(
            config
                .carriers
                .iter()
                .flat_map(|c| c.prefixes.iter().map(move |p| (*p, c.carrier))),
        );
        Carriers {
            hints: hints.into_boxed_slice(),
            prefixes,
            by_id: by_id.into_boxed_slice(),
            cache: CarrierCache::new(cache_slots),
            lookups,
        }
    }

    /// The carrier lane of a message to `number` (E.164 digits) with an
    /// optional `hint` (the message's `carrier` field). Lock-free, no
    /// allocation; at most one non-blocking channel send on a cache miss
    /// when a lookup is configured.
    pub fn resolve(&self, hint: Option<&str>, number: u64) -> Carrier {
        if let Some(c) = hint.and_then(|h| self.by_hint(h)) {
            return c;
        }
        match self.cache.get(number) {
            Some(Cached::Known(id)) if id != 0 => {
                if let Some(c) = self.known(id) {
                    return c;
                }
            }
            Some(_) => {}
            None => self.request_lookup(number),
        }
        self.prefixes
            .longest_match(number)
            .unwrap_or(Carrier::UNKNOWN)
    }

    /// The carrier a hint names (its name or an alias, any ASCII case).
    pub fn by_hint(&self, hint: &str) -> Option<Carrier> {
        let hint = hint.trim();
        self.hints
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(hint))
            .map(|(_, c)| *c)
    }

    /// The carrier this table calls `name` (exact name, not alias).
    pub fn by_name(&self, name: &str) -> Option<Carrier> {
        self.by_id
            .iter()
            .flatten()
            .find(|c| c.name() == name)
            .copied()
    }

    fn known(&self, id: u16) -> Option<Carrier> {
        self.by_id.get(usize::from(id)).copied().flatten()
    }

    /// Remember what a lookup (or a provider's receipt) said `number`'s
    /// carrier is. A name the table does not know is remembered as "looked
    /// up, unknown" so it is not asked about again.
    pub fn remember(&self, number: u64, carrier_name: Option<&str>) {
        let c = carrier_name
            .and_then(|n| self.by_hint(n))
            .unwrap_or(Carrier::UNKNOWN);
        self.cache.put(number, c);
    }

    /// What the cache holds for `number`.
    pub fn cached(&self, number: u64) -> Option<Cached> {
        self.cache.get(number)
    }

    fn request_lookup(&self, number: u64) {
        let Some(tx) = &self.lookups else { return };
        if self.cache.mark_pending(number) && tx.try_send(number).is_err() {
            // Queue full (or the lookup task is gone): forget the mark so a
            // later message asks again.
            self.cache.clear_pending(number);
        }
    }
}

/// Answer lookup requests one at a time until `shutdown`, writing each answer
/// into the cache. One at a time bounds what a slow or failing lookup
/// service can cost; requests beyond the queue are dropped and asked again.
pub async fn run_lookups<L: CarrierLookup>(
    carriers: Arc<Carriers>,
    lookup: L,
    mut requests: LookupRequests,
    shutdown: CancellationToken,
) {
    loop {
        let number = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = requests.0.recv() => match n {
                Some(n) => n,
                None => return,
            },
        };
        let answer = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = lookup.lookup(number) => a,
        };
        match answer {
            Ok(name) => carriers.remember(number, name.as_deref()),
            Err(e) => {
                tracing::debug!(error = %e, "carrier lookup failed; the prefix table answers meanwhile");
                carriers.cache.clear_pending(number);
            }
        }
    }
}
