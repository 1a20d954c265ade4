//! What an operator writes to configure the SNS adapter, and its validation.

use std::fmt;

use http::Uri;
use serde::Deserialize;

use crate::config::{ConfigError, required};
use crate::connection;
use crate::{ConnectionSettings, transport};

const KIND: &str = "sns";

/// `providers.<name>` with `kind = "sns"`, as the operator writes it (the
/// engine takes `kind` and `max_concurrency` off first).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub endpoint: Option<String>,
    pub origination_number: Option<String>,
    /// Another name for `origination_number`, as the other providers spell
    /// their default sender.
    pub from: Option<String>,
    pub sender_id: Option<String>,
    pub timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub http2: Option<bool>,
}

impl fmt::Debug for SnsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("SnsConfig")
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("endpoint", &self.endpoint)
            .field("origination_number", &self.origination_number)
            .field("from", &self.from)
            .field("sender_id", &self.sender_id)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("http2", &self.http2)
            .finish()
    }
}

impl SnsConfig {
    /// The settings, validated as [`SnsProvider::new`](super::SnsProvider::new)
    /// validates them, or the first key that cannot work.
    pub fn into_settings(self) -> Result<SnsSettings, ConfigError> {
        let what = "an sns provider";
        let s = SnsSettings {
            region: required(KIND, "region", self.region, what)?,
            access_key_id: required(KIND, "access_key_id", self.access_key_id, what)?,
            secret_access_key: required(KIND, "secret_access_key", self.secret_access_key, what)?,
            session_token: self.session_token.filter(|v| !v.is_empty()),
            endpoint: self.endpoint.filter(|v| !v.is_empty()),
            origination_number: self
                .origination_number
                .or(self.from)
                .filter(|v| !v.is_empty()),
            sender_id: self.sender_id.filter(|v| !v.is_empty()),
            connection: connection::from_keys(
                KIND,
                self.timeout_ms,
                self.connect_timeout_ms,
                self.http2,
            )?,
        };
        super::SnsProvider::new(s.clone())?;
        Ok(s)
    }
}

/// Settings for [`SnsProvider`](super::SnsProvider).
///
/// A plain struct: the engine's config layer maps `providers.<name>.*` onto
/// it and [`SnsProvider::new`](super::SnsProvider::new) validates it once.
#[derive(Clone, Default)]
pub struct SnsSettings {
    /// AWS region (`us-east-1`): picks the default endpoint and is part of
    /// the SigV4 credential scope, so it must match the endpoint's region.
    pub region: String,
    /// `AKIA…` / `ASIA…` access key id: sent in the clear in every
    /// `Authorization` header.
    pub access_key_id: String,
    /// Signs every request. Never printed by `Debug`.
    pub secret_access_key: String,
    /// For temporary (STS) credentials: sent as `X-Amz-Security-Token` and
    /// signed. Never printed by `Debug`. Herald does not refresh it: when it
    /// expires SNS answers `ExpiredToken` and sends fail as unauthorized.
    pub session_token: Option<String>,
    /// Scheme and host of the SNS Query API; `None` means
    /// `https://sns.{region}.amazonaws.com`. Tests and VPC endpoints set it.
    pub endpoint: Option<String>,
    /// Default `AWS.MM.SMS.OriginationNumber` (an E.164 number or short code
    /// registered in the account) when routing gives no `from`. `None` lets
    /// SNS pick one from the account's pool.
    pub origination_number: Option<String>,
    /// `AWS.SNS.SMS.SenderID`: an alphanumeric sender shown instead of a
    /// number where the destination country supports it (not the US).
    pub sender_id: Option<String>,
    /// Timeouts, connection pool and protocol, as for every HTTP provider.
    pub connection: ConnectionSettings,
}

impl fmt::Debug for SnsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SnsSettings");
        d.field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("endpoint", &self.endpoint)
            .field("origination_number", &self.origination_number)
            .field("sender_id", &self.sender_id);
        self.connection.debug_fields(&mut d).finish()
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(KIND, key, reason)
}

/// The parts of [`SnsSettings`] the hot path uses, checked and precomputed.
pub(super) struct ValidSettings {
    /// Where `Publish` is posted: the endpoint with its default port dropped,
    /// so the `Host` that is signed is the one that is sent.
    pub publish_uri: Uri,
    /// `Host` header value, signed in every request.
    pub host: String,
    pub origination_number: Option<String>,
    pub sender_id: Option<String>,
    pub session_token: Option<String>,
}

pub(super) fn validate(s: &SnsSettings) -> Result<ValidSettings, ConfigError> {
    let region = s.region.trim();
    if region.is_empty() {
        return Err(invalid("region", "is empty"));
    }
    // It becomes part of a host name and of the signed credential scope.
    if !region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            "region",
            format!("`{region}` is not a region name (like us-east-1)"),
        ));
    }
    if s.access_key_id.is_empty() {
        return Err(invalid("access_key_id", "is empty"));
    }
    // It is written into the Authorization header and the credential scope,
    // where `/`, `,` or spaces would change the header's meaning.
    if !s.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid("access_key_id", "must be letters and digits only"));
    }
    if s.secret_access_key.is_empty() {
        return Err(invalid("secret_access_key", "is empty"));
    }
    let session_token =
        transport::non_empty(&s.session_token).map_err(|r| invalid("session_token", r))?;
    if let Some(token) = &session_token
        && http::HeaderValue::from_str(token).is_err()
    {
        return Err(invalid(
            "session_token",
            "contains characters not allowed in an HTTP header",
        ));
    }

    let endpoint = transport::non_empty(&s.endpoint)
        .map_err(|r| invalid("endpoint", r))?
        .unwrap_or_else(|| format!("https://sns.{region}.amazonaws.com"));
    let uri = transport::absolute_http_url(&endpoint).map_err(|r| invalid("endpoint", r))?;
    if uri.query().is_some() {
        return Err(invalid(
            "endpoint",
            format!("`{endpoint}` must not have a query string"),
        ));
    }
    let (publish_uri, host) = normalise(&uri).map_err(|r| invalid("endpoint", r))?;

    let origination_number = transport::non_empty(&s.origination_number)
        .map_err(|r| invalid("origination_number", r))?;
    let sender_id = transport::non_empty(&s.sender_id).map_err(|r| invalid("sender_id", r))?;
    if let Some(id) = &sender_id {
        // SNS: "up to 11 alphanumeric characters, including at least one
        // letter and no spaces".
        let ok = id.len() <= 11
            && id.bytes().all(|b| b.is_ascii_alphanumeric())
            && id.bytes().any(|b| b.is_ascii_alphabetic());
        if !ok {
            return Err(invalid(
                "sender_id",
                format!(
                    "`{id}` must be 1–11 letters and digits with at least one letter (SNS's rule)"
                ),
            ));
        }
    }

    s.connection.validate(invalid)?;

    Ok(ValidSettings {
        publish_uri,
        host,
        origination_number,
        sender_id,
        session_token,
    })
}

/// The URI to post to and its `Host`, with a default port (`:443` for https,
/// `:80` for http) dropped the way HTTP clients and the SigV4 signer drop it:
/// the signed host and the sent host must be byte-equal.
fn normalise(uri: &Uri) -> Result<(Uri, String), String> {
    let scheme = uri.scheme_str().unwrap_or("https");
    let host = uri.host().unwrap_or_default();
    let default_port = match scheme {
        "https" => 443,
        _ => 80,
    };
    let host = match uri.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    let full = format!("{scheme}://{host}{path}");
    let publish_uri = full
        .parse()
        .map_err(|e| format!("`{full}` is not a valid URL: {e}"))?;
    Ok((publish_uri, host))
}
