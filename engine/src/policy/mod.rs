//! Compliance policy (DESIGN §6, COMPLIANCE.md): what may be sent, when.
//!
//! The rule tables come from configuration (`config/compliance.toml` is the
//! shipped default), never from code, so an admin can change a state's
//! window without a release. Everything here reads immutable data: the
//! per-message path takes no lock.

pub mod content;
pub mod quiet_hours;
pub mod rules;
pub mod zones;

use std::sync::Arc;

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

/// What a rule did to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Defer,
    Suppress,
}

/// A rule that took part in a decision: reported by `/v1/policy/evaluate`,
/// recorded in the message's trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fired {
    /// The rule's id from the rule table (`tcpa-calling-hours`, `fl-marketing-window`…).
    pub rule: Arc<str>,
    /// Where the rule comes from (`47 CFR 64.1200(c)(1)`).
    pub citation: Arc<str>,
    pub effect: Effect,
    /// What it found, for a human (`closed in America/Chicago until 08:00`).
    pub detail: String,
}
