//! Twilio Programmable Messaging adapter.
//!
//! `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form
//! encoded, HTTP Basic `AccountSid:AuthToken`; `201 Created` with a Message
//! resource on success, `{"code", "message", "more_info", "status"}` on error.
//!
//! - `config.rs`: [`TwilioSettings`] and its validation;
//! - `request.rs`: the sender field and the form body;
//! - `service.rs`: the pooled client, the send and the classification.

mod config;
pub mod lookup;
mod request;
mod service;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;

use crate::config::ConfigError;
pub use config::{TwilioConfig, TwilioSettings};

use crate::transport::HttpClient;
use crate::{Accepted, PermanentKind, Provider, SendError, SendRequest};

/// Sends SMS through Twilio's Messages API over one pooled HTTP/1.1 client.
///
/// A handle: cloning shares the client and its connection pool. The state
/// sits behind one `Arc`, which also keeps [`AnyProvider`](crate::AnyProvider)
/// small (the pool and its connector are several hundred bytes).
#[derive(Clone)]
pub struct TwilioProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpClient,
    /// `…/2010-04-01/Accounts/{sid}/Messages.json`, parsed once.
    messages_uri: Uri,
    /// `Basic base64(sid:token)`, encoded once; marked sensitive.
    authorization: HeaderValue,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    /// `StatusCallback=<url>` already form-encoded.
    status_callback: Option<String>,
    request_timeout: Duration,
    account_sid: String,
}

impl TwilioProvider {
    /// Validate `settings` and build the client. Needs no runtime; sends do.
    pub fn new(settings: TwilioSettings) -> Result<Self, ConfigError> {
        let valid = config::validate(&settings)?;
        let credentials = format!("{}:{}", settings.account_sid, settings.auth_token);
        let mut authorization = HeaderValue::try_from(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ))
        .map_err(|_| {
            ConfigError::new(
                "twilio",
                "auth_token",
                "contains characters not allowed in an HTTP header",
            )
        })?;
        authorization.set_sensitive(true);

        Ok(TwilioProvider {
            inner: Arc::new(Inner {
                client: settings.connection.build_client(),
                messages_uri: valid.messages_uri,
                authorization,
                from: valid.from,
                messaging_service_sid: valid.messaging_service_sid,
                status_callback: valid
                    .status_callback
                    .as_deref()
                    .map(request::encoded_status_callback),
                request_timeout: settings.connection.request_timeout,
                account_sid: settings.account_sid,
            }),
        })
    }

    /// The Messages endpoint this provider posts to.
    pub fn messages_uri(&self) -> &Uri {
        &self.inner.messages_uri
    }
}

impl fmt::Debug for TwilioProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let this = &self.inner;
        f.debug_struct("TwilioProvider")
            .field("messages_uri", &this.messages_uri)
            .field("account_sid", &this.account_sid)
            .field("from", &this.from)
            .field("messaging_service_sid", &this.messaging_service_sid)
            .field("request_timeout", &this.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Provider for TwilioProvider {
    fn kind(&self) -> &'static str {
        "twilio"
    }

    async fn send(&self, req: &SendRequest<'_>) -> Result<Accepted, SendError> {
        let this = &*self.inner;
        let Some(sender) = request::choose_sender(
            req.from,
            this.from.as_deref(),
            this.messaging_service_sid.as_deref(),
        ) else {
            // Nothing was sent; no attempt can succeed until config changes.
            return Err(SendError::Permanent {
                kind: PermanentKind::Other,
                code: None,
                message: "no sender: routing gave no `from` and twilio has neither `from` nor \
                          `messaging_service_sid` configured"
                    .to_owned(),
            });
        };
        let body = request::form_body(req.to, sender, req.body, this.status_callback.as_deref());
        // Built when the exchange starts, not here: see `transport::exchange`.
        let request = move || {
            let mut request = Request::new(Full::new(Bytes::from(body)));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = this.messages_uri.clone();
            let headers = request.headers_mut();
            headers.insert(header::AUTHORIZATION, this.authorization.clone());
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
            headers.insert(
                header::USER_AGENT,
                HeaderValue::from_static(concat!("herald/", env!("CARGO_PKG_VERSION"))),
            );
            request
        };

        service::send(&this.client, request, this.request_timeout).await
    }
}
