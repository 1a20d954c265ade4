//! What an operator writes to configure the Twilio adapter, and its validation.

use std::fmt;

use http::Uri;
use serde::Deserialize;

use crate::config::{ConfigError, required};
use crate::connection::{self, ConnectionSettings};

const KIND: &str = "twilio";

/// `providers.<name>` with `kind = "twilio"`, as the operator writes it
/// (the engine takes `kind` and `max_concurrency` off first). Every key is
/// optional to serde, so a missing one is refused by
/// [`TwilioConfig::into_settings`] with the key's name and the reason.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub base_url: Option<String>,
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub status_callback: Option<String>,
    pub timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub http2: Option<bool>,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("status_callback", &self.status_callback)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("http2", &self.http2)
            .finish()
    }
}

impl TwilioConfig {
    /// The settings, or the first key that cannot work. The URL and ids
    /// are checked again, fully, by [`TwilioProvider::new`](super::TwilioProvider::new).
    pub fn into_settings(self) -> Result<TwilioSettings, ConfigError> {
        let mut s = TwilioSettings::default();
        if let Some(url) = self.base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("base_url", "must be an http:// or https:// URL"));
            }
            s.base_url = url.trim_end_matches('/').to_string();
        }
        s.account_sid = required(KIND, "account_sid", self.account_sid, "a twilio provider")?;
        s.auth_token = required(KIND, "auth_token", self.auth_token, "a twilio provider")?;
        s.from = self.from.filter(|v| !v.is_empty());
        s.messaging_service_sid = self.messaging_service_sid.filter(|v| !v.is_empty());
        if s.from.is_none() && s.messaging_service_sid.is_none() {
            return Err(invalid(
                "from",
                "a twilio provider needs `from` or `messaging_service_sid`",
            ));
        }
        s.status_callback = self.status_callback;
        s.connection =
            connection::from_keys(KIND, self.timeout_ms, self.connect_timeout_ms, self.http2)?;
        Ok(s)
    }
}

/// Settings for [`TwilioProvider`](super::TwilioProvider).
///
/// A plain struct: the engine's config layer maps its TOML/env into it and
/// [`TwilioProvider::new`](super::TwilioProvider::new) validates it once.
#[derive(Clone)]
pub struct TwilioSettings {
    /// Scheme and authority (and optionally a path prefix, for a proxy) in
    /// front of Twilio's REST API. Tests point it at the mock over plain http.
    pub base_url: String,
    /// `AC…` account id: goes into the URL path and is the Basic-auth user.
    pub account_sid: String,
    /// Basic-auth password. Never printed by `Debug`.
    pub auth_token: String,
    /// Default sender when routing gives none. A value starting with `MG` is
    /// sent as `MessagingServiceSid`.
    pub from: Option<String>,
    /// Messaging service used when neither routing nor `from` gives a sender.
    pub messaging_service_sid: Option<String>,
    /// Sent as `StatusCallback` so Twilio posts delivery receipts to Herald.
    pub status_callback: Option<String>,
    /// Timeouts, connection pool and protocol, as for every HTTP provider.
    pub connection: ConnectionSettings,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        TwilioSettings {
            base_url: "https://api.twilio.com".to_owned(),
            account_sid: String::new(),
            auth_token: String::new(),
            from: None,
            messaging_service_sid: None,
            status_callback: None,
            connection: ConnectionSettings::default(),
        }
    }
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TwilioSettings");
        d.field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("status_callback", &self.status_callback);
        self.connection.debug_fields(&mut d).finish()
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(KIND, key, reason)
}

/// The parts of [`TwilioSettings`] the hot path uses, checked and precomputed.
pub(super) struct ValidSettings {
    /// `{base_url}/2010-04-01/Accounts/{sid}/Messages.json`.
    pub messages_uri: Uri,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub status_callback: Option<String>,
}

pub(super) fn validate(s: &TwilioSettings) -> Result<ValidSettings, ConfigError> {
    let base = s.base_url.trim();
    let base_uri: Uri = base
        .parse()
        .map_err(|e| invalid("base_url", format!("`{base}` is not a URL: {e}")))?;
    match base_uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(invalid(
                "base_url",
                format!("`{base}` must start with http:// or https://"),
            ));
        }
    }
    if base_uri.authority().is_none() {
        return Err(invalid("base_url", format!("`{base}` has no host")));
    }
    if base_uri.query().is_some() {
        return Err(invalid(
            "base_url",
            format!("`{base}` must not have a query string"),
        ));
    }

    if s.account_sid.is_empty() {
        return Err(invalid("account_sid", "is empty"));
    }
    // It is spliced into the URL path unescaped and is the Basic-auth user,
    // where a `:` would split it.
    if !s.account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            "account_sid",
            "must be letters and digits only (e.g. AC…)",
        ));
    }
    if s.auth_token.is_empty() {
        return Err(invalid("auth_token", "is empty"));
    }

    let from = non_empty("from", &s.from)?;
    let messaging_service_sid = non_empty("messaging_service_sid", &s.messaging_service_sid)?;
    if let Some(mg) = &messaging_service_sid
        && (!mg.starts_with("MG") || !mg.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(invalid(
            "messaging_service_sid",
            format!("`{mg}` is not a messaging service id (MG…)"),
        ));
    }
    let status_callback = non_empty("status_callback", &s.status_callback)?;
    if let Some(cb) = &status_callback {
        let ok = cb.parse::<Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        });
        if !ok {
            return Err(invalid(
                "status_callback",
                format!("`{cb}` is not an absolute http(s) URL"),
            ));
        }
    }

    s.connection.validate(invalid)?;

    let messages = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        base.trim_end_matches('/'),
        s.account_sid
    );
    let messages_uri = messages
        .parse()
        .map_err(|e| invalid("base_url", format!("`{messages}` is not a valid URL: {e}")))?;

    Ok(ValidSettings {
        messages_uri,
        from,
        messaging_service_sid,
        status_callback,
    })
}

fn non_empty(key: &'static str, v: &Option<String>) -> Result<Option<String>, ConfigError> {
    match v {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Err(invalid(key, "is set but empty")),
        Some(s) => Ok(Some(s.trim().to_owned())),
    }
}
