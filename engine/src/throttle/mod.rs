//! Throughput control (docs/architecture.md#throughput-control): carrier lanes and token buckets, counted
//! in segments, local or fleet-wide, changeable at run time.
//!
//! The dispatcher's part is two calls per message:
//!
//! ```ignore
//! let carrier = carriers.resolve(msg.carrier.as_deref(), msg.to);
//! match throttle.admit(carrier, Some(sender), segments, now_ms) {
//!     Admission::Go => send(msg),
//!     Admission::Defer { until_ms, lane } => defer(msg, "throttled", until_ms), // delayed set
//! }
//! ```
//!
//! plus, at start, `throttle.spawn_fleet(conn, shutdown)` for the refill
//! tasks of fleet-wide lanes, and `set_carrier_limit` / `set_sender_limit`
//! from the control service.
//!
//! - [`carrier`] — which lane a number belongs to ([`Carriers::resolve`]).
//! - [`bucket`] — local governor buckets, the clock they share, the pacer.
//! - [`fleet`] — fleet-wide lanes: leases from a GCRA key in Redis.
//! - [`table`] — `config/carriers.toml`, the carrier table.
//! - [`config`] — `[throttle]` in `herald.toml`.
//!
//! A full lane never blocks: `admit` answers at once, with `Defer` and the
//! instant the lane will have room, so one carrier's backlog waits in the
//! delayed set while every other carrier's traffic flows. Nothing here
//! sleeps per message or touches Redis on the per-message path.
//!
//! Hot path: `admit` is lock-free and allocation-free for a sender already
//! seen — two `ArcSwap` loads, a hash probe by `&str`, one or two governor
//! compare-and-swaps (or one atomic subtraction from a fleet lease). The
//! first message of a sender not seen before makes its lane (one allocation
//! and a copy-on-write of the sender map under a writers' mutex): senders
//! are a servicer's own numbers, a few to a few thousand, met in the first
//! seconds; pre-registering them would need every `from` in config, and a
//! concurrent map (dashmap) would put shard locks on every call instead of
//! once per sender. The map is capped at [`MAX_SENDERS`]; senders beyond it
//! share one lane per kind.

pub mod bucket;
pub mod carrier;
mod carrier_name;
pub mod config;
pub mod fleet;
pub mod live;
pub mod lookup;
pub mod table;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hashbrown::HashMap;
use tokio_util::sync::CancellationToken;

pub use bucket::{LaneClock, Limit, LimitError};
pub use carrier::{
    Cached, Carrier, CarrierCache, CarrierLookup, Carriers, LookupError, LookupRequests,
    run_lookups,
};
pub use fleet::{FleetEmpty, FleetError, FleetLane, FleetParams};
pub use table::{CarrierSpec, SenderClass, SenderLimits, ThrottleConfig};

use bucket::Lane;

/// Most senders with a lane of their own (see the module doc).
pub const MAX_SENDERS: usize = 65_536;

/// A configuration or control request that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThrottleError {
    /// `carriers.toml` is invalid: where (`carrier[1].prefixes[0]`) and why.
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    /// A control request named a carrier the table does not have.
    #[error("unknown carrier `{0}`")]
    UnknownCarrier(String),
}

impl ThrottleError {
    pub(crate) fn config(path: impl Into<String>, reason: impl Into<String>) -> ThrottleError {
        ThrottleError::Config {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// What the throttle says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Its segments are taken from every lane it goes through: send it.
    Go,
    /// A lane is full: defer it (status `deferred`, reason `throttled`) to
    /// `until_ms`, the earliest instant that lane will have room for it,
    /// spread by the lane's pacer. `lane` is `"carrier"` or `"sender"`.
    Defer { until_ms: i64, lane: &'static str },
}

/// A carrier's lane.
enum CarrierLane {
    /// No limit.
    Open,
    Local(Arc<Lane>),
    Fleet(Arc<FleetLane>),
}

/// A sender's lane; `lane: None` = that sender is not throttled (cached so
/// the decision is made once per sender).
#[derive(Clone)]
struct SenderLane {
    class: SenderClass,
    /// Set by `set_sender_limit` or `[senders.overrides]`: a class change
    /// leaves it alone.
    overridden: bool,
    lane: Option<Arc<Lane>>,
}

#[derive(Default)]
struct SenderLanes {
    by_name: HashMap<Box<str>, SenderLane>,
    /// Shared lanes of senders past [`MAX_SENDERS`], by class.
    overflow: [Option<Arc<Lane>>; 5],
}

/// Every lane of one instance.
pub struct Throttle {
    clock: LaneClock,
    /// By carrier id. Swapped whole when a limit changes (a handful of
    /// entries); readers never wait.
    carriers: ArcSwap<Vec<CarrierLane>>,
    senders: ArcSwap<SenderLanes>,
    sender_limits: ArcSwap<SenderLimits>,
    /// The table's carriers by name, for control requests.
    names: HashMap<&'static str, Carrier>,
    /// Serialises writers (limit changes, new senders); never taken by a
    /// reader.
    write: Mutex<()>,
}

impl Throttle {
    /// Lanes for `config`, all full.
    pub fn new(config: &ThrottleConfig) -> Throttle {
        let clock = LaneClock::default();
        let len = config
            .carriers
            .iter()
            .map(|c| usize::from(c.carrier.id()) + 1)
            .max()
            .unwrap_or(1);
        let mut lanes: Vec<CarrierLane> = (0..len).map(|_| CarrierLane::Open).collect();
        let mut names = HashMap::new();
        for c in &config.carriers {
            names.insert(c.carrier.name(), c.carrier);
            lanes[usize::from(c.carrier.id())] = match (c.limit, c.fleet_lease) {
                (None, _) => CarrierLane::Open,
                (Some(l), None) => CarrierLane::Local(Arc::new(Lane::new(l, &clock))),
                (Some(l), Some(lease)) => CarrierLane::Fleet(Arc::new(FleetLane::new(
                    c.carrier,
                    l,
                    lease,
                    config.lease_max_age,
                ))),
            };
        }
        names.insert(Carrier::UNKNOWN.name(), Carrier::UNKNOWN);
        let senders = config.senders.clone();
        let mut overflow: [Option<Arc<Lane>>; 5] = Default::default();
        for class in SenderClass::ALL {
            overflow[class.index()] =
                senders.by_class[class.index()].map(|l| Arc::new(Lane::new(l, &clock)));
        }
        Throttle {
            clock,
            carriers: ArcSwap::from_pointee(lanes),
            senders: ArcSwap::from_pointee(SenderLanes {
                by_name: HashMap::new(),
                overflow,
            }),
            sender_limits: ArcSwap::from_pointee(senders),
            names,
            write: Mutex::new(()),
        }
    }

    /// Take `segments` from the sender's lane and the carrier's lane, or say
    /// when to try again. `now_ms` is the dispatcher's clock (ms since the
    /// epoch); the buckets run on it. `segments` 0 counts as 1 (a message
    /// sends at least one).
    ///
    /// Both lanes or neither: the sender lane is taken first (per-number
    /// rates are usually the tighter), and given back if the carrier lane
    /// refuses, so a full carrier never uses up its senders' tokens and slows
    /// their traffic to other carriers.
    pub fn admit(
        &self,
        carrier: Carrier,
        sender: Option<&str>,
        segments: u32,
        now_ms: i64,
    ) -> Admission {
        let segments = segments.max(1);
        self.clock.advance_to_ms(now_ms);

        let senders = self.senders.load();
        let new_lane;
        let sender_lane: Option<&Arc<Lane>> = match sender {
            None => None,
            Some(s) => match senders.by_name.get(s) {
                Some(entry) => entry.lane.as_ref(),
                None => {
                    new_lane = self.register_sender(s);
                    new_lane.as_ref()
                }
            },
        };
        if let Some(lane) = sender_lane
            && let Err(until_ms) = lane.take(segments)
        {
            return Admission::Defer {
                until_ms,
                lane: "sender",
            };
        }

        let carriers = self.carriers.load();
        let refused = match carriers.get(usize::from(carrier.id())) {
            None | Some(CarrierLane::Open) => None,
            Some(CarrierLane::Local(lane)) => lane.take(segments).err(),
            Some(CarrierLane::Fleet(lane)) => {
                lane.try_take(segments, now_ms).err().map(|e| e.until_ms)
            }
        };
        match refused {
            None => Admission::Go,
            Some(until_ms) => {
                if let Some(lane) = sender_lane {
                    lane.refund(segments);
                }
                Admission::Defer {
                    until_ms,
                    lane: "carrier",
                }
            }
        }
    }

    /// Make (or find) the lane of a sender seen for the first time.
    fn register_sender(&self, sender: &str) -> Option<Arc<Lane>> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.senders.load_full();
        if let Some(entry) = cur.by_name.get(sender) {
            return entry.lane.clone();
        }
        let class = SenderClass::of(sender);
        if cur.by_name.len() >= MAX_SENDERS {
            return cur.overflow[class.index()].clone();
        }
        let (limit, overridden) = self.sender_limits.load().for_sender(sender, class);
        let lane = limit.map(|l| Arc::new(Lane::new(l, &self.clock)));
        let mut by_name = cur.by_name.clone();
        by_name.insert(
            Box::from(sender),
            SenderLane {
                class,
                overridden,
                lane: lane.clone(),
            },
        );
        self.senders.store(Arc::new(SenderLanes {
            by_name,
            overflow: cur.overflow.clone(),
        }));
        lane
    }

    /// Change a carrier's limit live (`None`: no limit). A local lane gets a
    /// new bucket holding what the old one had left (at most the new burst)
    /// — see [`bucket`] for tokens in flight; a fleet lane keeps its Redis
    /// state and its lease. Whether a lane is fleet-wide is fixed at start
    /// (a fleet lane needs its refill task): a fleet lane given `None` is
    /// open until a limit is set again.
    pub fn set_carrier_limit(&self, name: &str, limit: Option<Limit>) -> Result<(), ThrottleError> {
        let carrier = *self
            .names
            .get(name)
            .ok_or_else(|| ThrottleError::UnknownCarrier(name.to_owned()))?;
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.carriers.load_full();
        let id = usize::from(carrier.id());
        let replacement = match (cur.get(id), limit) {
            (Some(CarrierLane::Fleet(f)), l) => {
                f.set_limit(l, None);
                return Ok(());
            }
            (_, None) => CarrierLane::Open,
            (Some(CarrierLane::Local(old)), Some(l)) => {
                CarrierLane::Local(Arc::new(old.with_limit(l, &self.clock)))
            }
            (_, Some(l)) => CarrierLane::Local(Arc::new(Lane::new(l, &self.clock))),
        };
        let mut next: Vec<CarrierLane> = cur
            .iter()
            .map(|l| match l {
                CarrierLane::Open => CarrierLane::Open,
                CarrierLane::Local(a) => CarrierLane::Local(Arc::clone(a)),
                CarrierLane::Fleet(a) => CarrierLane::Fleet(Arc::clone(a)),
            })
            .collect();
        if next.len() <= id {
            next.resize_with(id + 1, || CarrierLane::Open);
        }
        next[id] = replacement;
        self.carriers.store(Arc::new(next));
        Ok(())
    }

    /// The limit a carrier's lane runs under now.
    pub fn carrier_limit(&self, name: &str) -> Result<Option<Limit>, ThrottleError> {
        let carrier = *self
            .names
            .get(name)
            .ok_or_else(|| ThrottleError::UnknownCarrier(name.to_owned()))?;
        Ok(match self.carriers.load().get(usize::from(carrier.id())) {
            Some(CarrierLane::Local(l)) => Some(l.limit()),
            Some(CarrierLane::Fleet(f)) => f.params().map(|p| p.limit),
            _ => None,
        })
    }

    /// Set one sender's limit live (`None`: not throttled), overriding its
    /// kind's default until the process restarts.
    pub fn set_sender_limit(&self, sender: &str, limit: Option<Limit>) {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut limits = SenderLimits::clone(&self.sender_limits.load());
        limits.overrides.insert(Box::from(sender), limit);
        self.sender_limits.store(Arc::new(limits));

        let cur = self.senders.load_full();
        let class = cur
            .by_name
            .get(sender)
            .map_or_else(|| SenderClass::of(sender), |e| e.class);
        let old = cur.by_name.get(sender).and_then(|e| e.lane.as_ref());
        let lane = self.relimit(old, limit);
        let mut by_name = cur.by_name.clone();
        by_name.insert(
            Box::from(sender),
            SenderLane {
                class,
                overridden: true,
                lane,
            },
        );
        self.senders.store(Arc::new(SenderLanes {
            by_name,
            overflow: cur.overflow.clone(),
        }));
    }

    /// Drop one sender's override: its lane follows its kind's default again.
    pub fn clear_sender_limit(&self, sender: &str) {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut limits = SenderLimits::clone(&self.sender_limits.load());
        limits.overrides.remove(sender);
        let class_limit = |class: SenderClass| limits.by_class[class.index()];
        let cur = self.senders.load_full();
        let mut by_name = cur.by_name.clone();
        if let Some(entry) = by_name.get_mut(sender) {
            entry.overridden = false;
            entry.lane = self.relimit(entry.lane.as_ref(), class_limit(entry.class));
        }
        self.sender_limits.store(Arc::new(limits));
        self.senders.store(Arc::new(SenderLanes {
            by_name,
            overflow: cur.overflow.clone(),
        }));
    }

    /// Set the default limit of a kind of sender live (`None`: not
    /// throttled); every sender of that kind without an override follows.
    pub fn set_sender_class_limit(&self, class: SenderClass, limit: Option<Limit>) {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut limits = SenderLimits::clone(&self.sender_limits.load());
        limits.by_class[class.index()] = limit;
        self.sender_limits.store(Arc::new(limits));

        let cur = self.senders.load_full();
        let mut by_name = cur.by_name.clone();
        for entry in by_name.values_mut() {
            if entry.class == class && !entry.overridden {
                entry.lane = self.relimit(entry.lane.as_ref(), limit);
            }
        }
        let mut overflow = cur.overflow.clone();
        overflow[class.index()] = self.relimit(overflow[class.index()].as_ref(), limit);
        self.senders
            .store(Arc::new(SenderLanes { by_name, overflow }));
    }

    /// A lane under `limit`, taking over `old`'s tokens and pacer if any.
    fn relimit(&self, old: Option<&Arc<Lane>>, limit: Option<Limit>) -> Option<Arc<Lane>> {
        let limit = limit?;
        Some(Arc::new(match old {
            Some(old) => old.with_limit(limit, &self.clock),
            None => Lane::new(limit, &self.clock),
        }))
    }

    /// The fleet-wide lanes, whose refill tasks must run
    /// ([`FleetLane::run`]); [`Throttle::spawn_fleet`] starts them all.
    pub fn fleet_lanes(&self) -> Vec<Arc<FleetLane>> {
        self.carriers
            .load()
            .iter()
            .filter_map(|l| match l {
                CarrierLane::Fleet(f) => Some(Arc::clone(f)),
                _ => None,
            })
            .collect()
    }

    /// Start one refill task per fleet-wide lane, each until `shutdown`.
    /// Without them a fleet lane never has tokens and defers everything.
    pub fn spawn_fleet(
        &self,
        conn: crate::conn::Conn,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        for lane in self.fleet_lanes() {
            set.spawn(lane.run(conn.clone(), shutdown.clone()));
        }
        set
    }
}
