//! Herald: a compliance-aware SMS dispatch engine.
//!
//! Upstream systems queue messages in Redis streams (`herald:q:{n}`); Herald
//! reads them in sharded batches, decides for each whether and when it may be
//! sent, sends it through a pooled provider connection, and records exactly
//! one decision per message on `herald:events`. See `DESIGN.md` for the
//! contracts.
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod consent;
pub mod control;
pub mod delivery;
pub mod dispatch;
pub mod http;
pub mod inbound;
pub mod keys;
pub mod model;
pub mod numbering;
pub mod outcome;
pub mod policy;
pub mod providers;
pub mod queue;
pub mod server;
pub mod telemetry;
pub mod tenants;
pub mod throttle;
