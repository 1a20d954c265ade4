//! The consent ledger (DESIGN §6): consent state per (tenant, number,
//! purpose), with Redis as the source of truth and a lock-free replica in
//! every instance.

pub mod import;
pub mod ledger;
pub mod replica;

pub use ledger::ConsentLedger;
