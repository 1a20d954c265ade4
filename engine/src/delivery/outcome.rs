//! What happened to a message (docs/contracts.md#outcomes): its
//! [`Status`], the [`Decision`] the dispatch path made, and the
//! [`Outcome`] of one queue entry that the writer records.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::ingest::stream::StreamId;
use crate::model::{Message, Reason, Rejection};

/// A message's status (docs/contracts.md#outcomes). The strings are a
/// contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Deferred,
    Retrying,
    Sent,
    Delivered,
    Undelivered,
    Suppressed,
    Rejected,
    Failed,
    Expired,
    Duplicate,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Deferred,
        Status::Retrying,
        Status::Sent,
        Status::Delivered,
        Status::Undelivered,
        Status::Suppressed,
        Status::Rejected,
        Status::Failed,
        Status::Expired,
        Status::Duplicate,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Deferred => "deferred",
            Status::Retrying => "retrying",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Undelivered => "undelivered",
            Status::Suppressed => "suppressed",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::Duplicate => "duplicate",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Outcomes recorded by this instance since it started, by status: atomics,
/// for `GetStats`.
#[derive(Debug, Default)]
pub struct StatusCounts([std::sync::atomic::AtomicU64; 11]);

impl StatusCounts {
    pub fn add(&self, status: Status) {
        self.0[status as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Status::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str(),
                    self.0[*s as usize].load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// Where a message goes after a non-terminal outcome: back into the queue
/// through the delayed set at `due` (ms epoch), or, `held`, into its paused
/// tenant's held set until a resume (`due` is then the instant it was held).
#[derive(Debug)]
pub struct Requeue {
    pub due: i64,
    /// The entry's original `msg` bytes, stored until release.
    pub raw: Vec<u8>,
    /// Held for a resume, with no instant: the event carries no `until`.
    pub held: bool,
}

impl Requeue {
    /// Back into the queue at `due`.
    pub fn at(due: i64, raw: Vec<u8>) -> Requeue {
        Requeue {
            due,
            raw,
            held: false,
        }
    }

    /// The instant the event announces (`until`): none for a held message.
    pub fn until(&self) -> Option<i64> {
        (!self.held).then_some(self.due)
    }
}

/// A decision about a valid message.
#[derive(Debug)]
pub struct Decision {
    pub msg: Message,
    pub status: Status,
    pub reason: Option<Reason>,
    /// Human-readable detail (provider error text…).
    pub detail: Option<String>,
    pub provider: Option<Arc<str>>,
    pub provider_id: Option<String>,
    pub attempt: u32,
    pub segments: Option<u32>,
    /// `until` of a deferral / retry.
    pub requeue: Option<Requeue>,
    /// The compliance rules behind the decision, for the trail.
    pub fired: Vec<crate::policy::Fired>,
    /// Frequency-cap places this message reserved: given back in the same
    /// transaction unless it was sent.
    pub caps: Vec<crate::policy::caps::CapKey>,
    /// The provider reports delivery receipts: map its message id to this
    /// message, under the provider's kind (`twilio`).
    pub receipts: Option<&'static str>,
    /// It went out from a sender no tenant owns: remember that this tenant
    /// texted the recipient, so a reply to that sender reaches it
    /// (`herald:texted:{n}`).
    pub remember_recipient: bool,
    /// Pin the message to `provider` for its next attempt (an ambiguous
    /// send: never re-sent through another provider).
    pub pin: bool,
    /// A ledger change the decision implies (a carrier-held opt-out, Twilio
    /// 21610), recorded atomically with it.
    pub consent: Option<crate::consent::ledger::OwnedChange>,
    /// Write no trail entry for this decision: the record's hash holds it
    /// (an enrolment's steps, 2 KB of Redis per sequence saved).
    pub skip_trail: bool,
}

impl Decision {
    pub fn new(msg: Message, status: Status, reason: Option<Reason>, attempt: u32) -> Self {
        Decision {
            msg,
            status,
            reason,
            detail: None,
            provider: None,
            provider_id: None,
            attempt,
            segments: None,
            requeue: None,
            fired: Vec::new(),
            caps: Vec::new(),
            pin: false,
            remember_recipient: false,
            receipts: None,
            consent: None,
            skip_trail: false,
        }
    }
}

#[derive(Debug)]
pub enum OutcomeKind {
    /// The entry was decided before a crash; only its ack was lost.
    AckOnly,
    /// A decision about a valid message.
    Decided(Box<Decision>),
    /// Another entry already carried this tenant + id: record `duplicate`
    /// without touching the original's state.
    Duplicate(Box<Message>),
    /// An enrolment: its sequence record, and each step as a `deferred`
    /// decision (record, timer, event), in the batch's one transaction.
    Enrolled(Box<Enrolment>),
    /// The entry breaks the ingest contract; it is copied whole to the DLQ.
    Rejected { rejection: Rejection, raw: Vec<u8> },
    /// Handling the entry panicked, or it was delivered more than
    /// `dispatch.max_deliveries` times: it is copied to the DLQ and its
    /// message recorded `failed` / `poison`, so it cannot stop a shard
    /// again. `detail` says which.
    Poison { detail: String },
}

/// An enrolment as the writer records it.
#[derive(Debug)]
pub struct Enrolment {
    /// The enrolling message.
    pub parent: Message,
    pub plan: crate::sequences::Plan,
    /// One `deferred` / `send_at` decision per step, in step order.
    pub steps: Vec<Decision>,
}

/// One queue entry's outcome, carrying the in-flight permit it held: the
/// permit is released only once the outcome is in Redis, so memory is
/// bounded by `dispatch.max_in_flight` even while Redis is slow.
#[derive(Debug)]
pub struct Outcome {
    pub partition: u16,
    pub entry: StreamId,
    pub kind: OutcomeKind,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// What a shard tells its writer, in order.
#[derive(Debug)]
pub enum ToWriter {
    /// These entries were read and are being handled: keep them claimed
    /// (the writer's heartbeat) until their outcomes are recorded.
    Reading(Vec<(u16, StreamId)>),
    Outcome(Outcome),
}

/// Where each shard's outcomes go: its writer task.
pub type OutcomeSender = mpsc::UnboundedSender<ToWriter>;
