//! `[compliance]` and `[tenants.<name>]`: where the rule tables come from,
//! how deferred messages come back, and each brand's policy and wording.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
/// without a section gets the defaults. The same shape is the policy
/// document's `[tenants.<name>]` (`policy::document`), so it serialises back
/// without the keys left at their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSection {
    /// `[tenants.<name>.consent.<purpose>]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub consent: BTreeMap<String, PurposeSection>,
    /// A plain STOP revokes every purpose (default true); `false`: only the
    /// `marketing` purpose (STOP ALL still revokes all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke_all_purposes: Option<bool>,
    /// Extra sending windows, same fields as `[[window]]` in the rule table
    /// minus `states`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<toml::Value>,
    /// The tenant's default locale (`en-US`, `es`): the last step of a
    /// template's locale fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// A tz database zone (`America/Chicago`) assumed for a recipient Herald
    /// cannot place: no `recipient.tz`, no address state, and a number the
    /// prefix table does not know. Unset: such a recipient has no zone and
    /// only consent applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_out_instructions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_out_confirmation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_in_confirmation: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub smart_encoding: bool,
    /// Regular expressions; a body matching one is `suppressed` /
    /// `content_blocked`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_content: Vec<String>,
    /// The tenant's sending numbers (E.164): inbound replies to them belong
    /// to this tenant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `[tenants.<name>.consent.<purpose>]`.
#[derive(Debug, Serialize, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PurposeSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires: Option<ConsentKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<UnknownNumber>,
}
