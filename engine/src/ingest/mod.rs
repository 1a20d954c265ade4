//! Ingest: how messages come into Herald and back into the queue.
//!
//! - [`decode`] — the wire contract: an entry's `msg` JSON → a validated
//!   [`crate::model::Message`] or a [`crate::model::Rejection`];
//! - [`enqueue`] — putting validated messages on the queue
//!   (`POST /v1/messages`);
//! - [`stream`] — the queue streams `herald:q:{n}`: consumer groups, reads,
//!   crash recovery, group bookkeeping;
//! - [`claim`] — the per-message claim that makes sends idempotent across
//!   redeliveries;
//! - [`delayed`] — the delayed set and its mover: deferred messages come
//!   back here when due (`Scheduled`);
//! - [`trim`] — dropping the queue's acknowledged head.

pub mod claim;
pub mod config;
pub mod decode;
pub mod delayed;
pub mod enqueue;
pub mod stream;
pub mod trim;
