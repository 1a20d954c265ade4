//! Herald: a compliance-aware SMS dispatch engine.
//!
//! Upstream systems queue messages in Redis streams (`herald:q:{n}`); Herald
//! reads them in sharded batches, decides for each whether and when it may be
//! sent, sends it through a pooled provider connection, and records exactly
//! one decision per message on `herald:events`. docs/architecture.md walks
//! through the parts; docs/contracts.md lists the contracts.
#![forbid(unsafe_code)]

pub mod check;
pub mod clock;
pub mod config;
pub mod conn;
pub mod consent;
pub mod content;
pub mod control;
pub mod delivery;
pub mod dispatch;
pub mod error;
pub mod experiments;
pub mod health;
pub mod http;
pub mod inbound;
pub mod ingest;
pub mod keys;
pub mod model;
pub mod numbering;
pub mod policy;
pub mod providers;
pub mod secret;
pub mod sequences;
pub mod server;
pub mod signals;
pub mod telemetry;
pub mod tenants;
pub mod throttle;
