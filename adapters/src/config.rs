//! The one error type of a provider's settings.

/// A provider setting that cannot work: which kind of provider, the key (as
/// written under `providers.<name>`, or the settings field) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} setting `{key}`: {reason}")]
pub struct ConfigError {
    /// `twilio`, `sns`, `http provider`, `sandbox`, `twilio lookup`.
    pub kind: &'static str,
    pub key: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(kind: &'static str, key: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            kind,
            key,
            reason: reason.into(),
        }
    }
}

/// A string key that must be set and not empty.
pub(crate) fn required(
    kind: &'static str,
    key: &'static str,
    v: Option<String>,
    what: &str,
) -> Result<String, ConfigError> {
    v.filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::new(kind, key, format!("is required for {what}")))
}
