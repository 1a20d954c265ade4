//! Delivery: what became of each message, recorded.
//!
//! - [`outcome`] — statuses, decisions and the outcome of a queue entry;
//! - [`writer`] — the outcome writer: one atomic transaction per batch,
//!   with the acks;
//! - [`events`] — the one place an outcome becomes log lines and metrics;
//! - [`record`] — the message record and its trail, as stored and as read;
//! - [`receipts`] — delivery receipts from providers' status callbacks.

pub mod config;
pub mod events;
pub mod outcome;
pub mod receipts;
pub mod record;
pub mod writer;
