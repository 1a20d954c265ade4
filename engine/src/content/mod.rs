//! Content: everything that turns a message into the text that is sent
//! (docs/compliance.md#content; docs/compliance.md#carrier-rules; Reg F
//! 12 CFR 1006.6(e)), and message templates ([`templates`]).
//!
//! - [`prepare`]: the content stage of the dispatch path, with a tenant's
//!   [`ContentRules`];
//! - [`segments`]: how many billable segments a body is, as carriers count them
//!   (throughput is counted in segments, docs/architecture.md#throughput-control);
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
pub mod templates;

pub use blocked::BlockedContent;
pub use opt_out::{has_opt_out_instruction, with_opt_out};
pub use segments::{Encoding, Segments, segments};
pub use smart_encoding::smart_encode;

use std::borrow::Cow;

use crate::model::{Category, Message};

/// A tenant's content rules.
#[derive(Debug)]
pub struct ContentRules {
    /// Appended to collections and marketing texts that carry none.
    pub opt_out_instructions: String,
    /// Rewrite Unicode look-alikes that would force UCS-2.
    pub smart_encoding: bool,
    pub blocked: BlockedContent,
}

/// A body ready to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    pub segments: Segments,
}

/// Why a body cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// It matches the tenant's blocked pattern (`suppressed` /
    /// `content_blocked`).
    Blocked { pattern: String },
    /// With its opt-out instructions it is over the limit (`rejected` /
    /// `body_too_long`).
    TooLong { chars: usize, max: usize },
}

impl Refused {
    pub fn detail(&self) -> String {
        match self {
            Refused::Blocked { pattern } => {
                format!("the body matches the tenant's blocked pattern `{pattern}`")
            }
            Refused::TooLong { chars, max } => format!(
                "the body is {chars} characters with its opt-out instructions; the limit is {max}"
            ),
        }
    }
}

/// The content stage: blocked patterns, opt-out instructions, smart
/// encoding; the body is rewritten in place when a rule changes it, and its
/// segments are counted as it will be sent.
pub fn prepare(
    rules: &ContentRules,
    msg: &mut Message,
    max_chars: usize,
) -> Result<Prepared, Refused> {
    prepare_body(rules, msg.category, &mut msg.body, max_chars)
}

/// [`prepare`] on a body of a category: what the send path does to a text,
/// and what `heraldctl template preview` shows.
pub fn prepare_body(
    rules: &ContentRules,
    category: Category,
    body: &mut String,
    max_chars: usize,
) -> Result<Prepared, Refused> {
    if let Some(pattern) = rules.blocked.check(body) {
        return Err(Refused::Blocked {
            pattern: pattern.to_string(),
        });
    }
    // Reg F 12 CFR 1006.6(e): each electronic communication carries a clear
    // opt-out; CTIA asks the same of marketing.
    if matches!(category, Category::Collections | Category::Marketing)
        && let Cow::Owned(b) = with_opt_out(body, &rules.opt_out_instructions)
    {
        *body = b;
    }
    if rules.smart_encoding
        && let Cow::Owned(b) = smart_encode(body)
    {
        *body = b;
    }
    let chars = body.chars().count();
    if chars > max_chars {
        return Err(Refused::TooLong {
            chars,
            max: max_chars,
        });
    }
    Ok(Prepared {
        segments: segments(body),
    })
}
