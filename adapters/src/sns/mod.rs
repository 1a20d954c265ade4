//! AWS SNS adapter: `Publish` to a phone number over the SNS Query API.
//!
//! `POST {endpoint}/`, form encoded (`Action=Publish&Version=2010-03-31&
//! PhoneNumber=…&Message=…` plus message attributes), signed with AWS
//! Signature Version 4 (service `sns`); XML answers.
//!
//! - `config.rs`: [`SnsSettings`] and its validation;
//! - `request.rs`: the form body, the SMS type by category, the signature;
//! - `service.rs`: sending and the classification of SNS's answers.

mod config;
mod request;
mod service;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;

use crate::config::ConfigError;
pub use config::{SnsConfig, SnsSettings};

use crate::transport::HttpClient;
use crate::{Accepted, Provider, SendError, SendRequest};

/// Sends SMS through AWS SNS `Publish` over one pooled HTTP client.
///
/// A handle: cloning shares the client and its connection pool; the state
/// sits behind one `Arc`, which also keeps [`AnyProvider`](crate::AnyProvider)
/// small.
#[derive(Clone)]
pub struct SnsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpClient,
    /// `{endpoint}/`, default port dropped; parsed once.
    publish_uri: Uri,
    /// The same URI as text, as the signer takes it.
    publish_uri_text: String,
    /// `Host` as sent and as signed.
    host: String,
    host_header: HeaderValue,
    /// The signing identity, built once: it holds the secret (zeroised on
    /// drop by aws-credential-types).
    identity: Identity,
    region: String,
    access_key_id: String,
    origination_number: Option<String>,
    sender_id: Option<String>,
    request_timeout: Duration,
    /// Over HTTP/2 the host travels as `:authority` (from the URI); a `Host`
    /// header is only written for HTTP/1.1.
    http2: bool,
}

impl SnsProvider {
    /// Validate `settings` and build the client. Needs no runtime; sends do.
    pub fn new(settings: SnsSettings) -> Result<Self, ConfigError> {
        let valid = config::validate(&settings)?;
        let host_header = HeaderValue::from_str(&valid.host).map_err(|_| {
            ConfigError::new(
                "sns",
                "endpoint",
                format!("host `{}` is not a valid Host header", valid.host),
            )
        })?;
        let region = settings.region.trim().to_owned();
        let identity = Identity::from(Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key,
            valid.session_token,
            None,
            "herald-config",
        ));
        Ok(SnsProvider {
            inner: Arc::new(Inner {
                client: settings.connection.build_client(),
                publish_uri_text: valid.publish_uri.to_string(),
                publish_uri: valid.publish_uri,
                host: valid.host,
                host_header,
                identity,
                region,
                access_key_id: settings.access_key_id,
                origination_number: valid.origination_number,
                sender_id: valid.sender_id,
                request_timeout: settings.connection.request_timeout,
                http2: settings.connection.http2,
            }),
        })
    }

    /// The URI `Publish` is posted to.
    pub fn publish_uri(&self) -> &Uri {
        &self.inner.publish_uri
    }
}

impl fmt::Debug for SnsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let this = &self.inner;
        f.debug_struct("SnsProvider")
            .field("publish_uri", &this.publish_uri)
            .field("region", &this.region)
            .field("access_key_id", &this.access_key_id)
            .field("origination_number", &this.origination_number)
            .field("sender_id", &this.sender_id)
            .field("request_timeout", &this.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Provider for SnsProvider {
    fn kind(&self) -> &'static str {
        "sns"
    }

    async fn send(&self, req: &SendRequest<'_>) -> Result<Accepted, SendError> {
        let this = &*self.inner;
        // Routing's sender wins over the configured origination number; with
        // neither, SNS picks a number from the account's pool.
        let origination = req
            .from
            .filter(|f| !f.is_empty())
            .or(this.origination_number.as_deref());
        let body = request::form_body(
            req.to,
            req.body,
            request::sms_type(req.category),
            origination,
            this.sender_id.as_deref(),
        );

        // Signed with the clock at send time: SNS refuses signatures more
        // than 5 minutes old, so a retry is always signed afresh.
        let signature = request::sigv4_headers(
            &this.identity,
            &this.region,
            request::SERVICE,
            SystemTime::now(),
            &request::Unsigned {
                method: "POST",
                uri: &this.publish_uri_text,
                headers: &[
                    ("content-type", request::CONTENT_TYPE),
                    ("host", &this.host),
                ],
                body: body.as_bytes(),
            },
        );
        let signature = match signature {
            Ok(headers) => headers,
            // Nothing was sent. Validation makes this unreachable in
            // practice; if it happens, another provider may still send.
            Err(reason) => {
                return Err(SendError::Transient {
                    code: None,
                    message: format!("signing the SNS request failed: {reason}"),
                    retry_after: None,
                });
            }
        };

        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = this.publish_uri.clone();
        let headers = request.headers_mut();
        if !this.http2 {
            headers.insert(header::HOST, this.host_header.clone());
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(request::CONTENT_TYPE),
        );
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("herald/", env!("CARGO_PKG_VERSION"))),
        );
        for (name, value) in signature {
            headers.insert(name, value);
        }

        service::send(&this.client, move || request, this.request_timeout).await
    }
}
