//! Herald's load-testing kit: a mock provider that speaks Twilio's wire format
//! and a scenario runner that drives Herald through its Redis contracts.
#![forbid(unsafe_code)]

pub mod mock;
pub mod scenario;
