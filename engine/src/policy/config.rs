//! `[compliance]` and `[tenants.<name>]`: where the rule tables come from,
//! how deferred messages come back, and each brand's policy and wording.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::UnknownNumber;
use crate::consent::ConsentKind;

/// `[compliance]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceSection {
    /// A rule-table file (same format as `config/compliance.toml`); unset:
    /// the shipped tables, embedded at build time.
    pub rules_file: Option<String>,
    /// Messages deferred to a window's opening are spread over this many
    /// seconds after it opens, not released in one burst.
    pub release_spread_secs: u64,
    /// Longest wait of one read of the consent change feed.
    pub feed_block_ms: u64,
}

impl Default for ComplianceSection {
    fn default() -> Self {
        Self {
            rules_file: None,
            release_spread_secs: 600,
            feed_block_ms: 250,
        }
    }
}

/// `[tenants.<name>]`: one brand's compliance policy and wording. A tenant
/// without a section gets the defaults.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSection {
    /// `[tenants.<name>.consent.<purpose>]`.
    pub consent: BTreeMap<String, PurposeSection>,
    /// A plain STOP revokes every purpose (default true); `false`: only the
    /// `marketing` purpose (STOP ALL still revokes all).
    pub revoke_all_purposes: Option<bool>,
    /// Extra sending windows, same fields as `[[window]]` in the rule table
    /// minus `states`.
    pub windows: Vec<toml::Value>,
    pub opt_out_instructions: Option<String>,
    pub help_text: Option<String>,
    pub opt_out_confirmation: Option<String>,
    pub opt_in_confirmation: Option<String>,
    pub smart_encoding: bool,
    /// Regular expressions; a body matching one is `suppressed` /
    /// `content_blocked`.
    pub blocked_content: Vec<String>,
    /// The tenant's sending numbers (E.164): inbound replies to them belong
    /// to this tenant.
    pub senders: Vec<String>,
}

/// `[tenants.<name>.consent.<purpose>]`.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct PurposeSection {
    pub requires: Option<ConsentKind>,
    pub unknown: Option<UnknownNumber>,
}
