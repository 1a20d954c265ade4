//! Message content rules (DESIGN §6 "Content"; COMPLIANCE.md "Carrier rules" and Reg F 1006.6(e)).
//!
//! - [`segments`]: how many billable segments a body is, as carriers count them
//!   (throughput is counted in segments, DESIGN §7);
//! - [`smart_encode`]: the optional per-tenant rewrite of Unicode look-alikes
//!   (curly quotes, dashes, odd spaces) that would otherwise force UCS-2;
//! - [`has_opt_out_instruction`] / [`with_opt_out`]: the opt-out instruction that
//!   collections (Reg F 12 CFR 1006.6(e)) and marketing (CTIA) texts must carry;
//! - [`BlockedContent`]: a tenant's blocked-content patterns.
//!
//! Everything here is pure and lock-free; the per-message functions do not
//! allocate unless they have to return a changed body.

mod blocked;
mod opt_out;
mod segments;
mod smart_encoding;

pub use blocked::BlockedContent;
pub use opt_out::{has_opt_out_instruction, with_opt_out};
pub use segments::{Encoding, Segments, segments};
pub use smart_encoding::smart_encode;
