//! The consent ledger (docs/compliance.md): consent state per (tenant, number,
//! purpose), with Redis as the source of truth and a lock-free replica in
//! every instance.

pub mod guard;
pub mod import;
pub mod ledger;
pub mod replica;

pub use ledger::ConsentLedger;

use serde::{Deserialize, Serialize};

/// The kind of consent on file for a purpose (47 USC 227(b)(1)(A)(iii);
/// 47 CFR 64.1200(a)(2), (f)(9)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentKind {
    /// Prior express consent: enough for informational and collection texts.
    Express,
    /// Prior express written consent: required for marketing.
    ExpressWritten,
}

impl ConsentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentKind::Express => "express",
            ConsentKind::ExpressWritten => "express_written",
        }
    }
}
