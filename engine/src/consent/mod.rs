//! The consent ledger (DESIGN §6): consent state per (tenant, number,
//! purpose), with Redis as the source of truth and a lock-free replica in
//! every instance.

pub mod replica;
