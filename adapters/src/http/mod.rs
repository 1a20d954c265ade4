//! Generic JSON webhook adapter: one `POST` per message to a configured URL.
//!
//! For SMS gateways Herald has no adapter for, and for in-house relays:
//! `POST {url}` with `{"to", "from", "body", "category"}` as JSON and the
//! configured headers (an `Authorization`, typically); a 2xx answer is
//! acceptance, the id read at a JSON pointer.
//!
//! - `config.rs`: [`HttpSettings`] and its validation;
//! - `request.rs`: the JSON body;
//! - `service.rs`: sending and the classification by status.

mod config;
mod request;
mod service;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;

use crate::config::ConfigError;
pub use config::{HttpProviderConfig, HttpSettings};

use crate::transport::HttpClient;
use crate::{Accepted, PermanentKind, Provider, SendError, SendRequest};

/// Posts each message as JSON to one webhook over one pooled HTTP client.
///
/// A handle: cloning shares the client and its connection pool; the state
/// sits behind one `Arc`, which also keeps [`AnyProvider`](crate::AnyProvider)
/// small.
#[derive(Clone)]
pub struct HttpProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpClient,
    uri: Uri,
    /// Configured extra headers, values marked sensitive.
    headers: HeaderMap,
    id_field: String,
    from: Option<String>,
    request_timeout: Duration,
}

impl HttpProvider {
    /// Validate `settings` and build the client. Needs no runtime; sends do.
    pub fn new(settings: HttpSettings) -> Result<Self, ConfigError> {
        let valid = config::validate(&settings)?;
        Ok(HttpProvider {
            inner: Arc::new(Inner {
                client: settings.connection.build_client(),
                uri: valid.uri,
                headers: valid.headers,
                id_field: valid.id_field,
                from: valid.from,
                request_timeout: settings.connection.request_timeout,
            }),
        })
    }

    /// The URL messages are posted to.
    pub fn uri(&self) -> &Uri {
        &self.inner.uri
    }
}

impl fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let this = &self.inner;
        f.debug_struct("HttpProvider")
            .field("uri", &this.uri)
            .field("headers", &this.headers.keys().collect::<Vec<_>>())
            .field("id_field", &this.id_field)
            .field("from", &this.from)
            .field("request_timeout", &this.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Provider for HttpProvider {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn send(&self, req: &SendRequest<'_>) -> Result<Accepted, SendError> {
        let this = &*self.inner;
        let message = request::Outgoing {
            to: req.to,
            from: request::choose_from(req.from, this.from.as_deref()),
            body: req.body,
            category: req.category,
        };
        let body = match request::json_body(&message) {
            Ok(body) => body,
            // Unreachable for string fields; if it happens nothing was sent
            // and no attempt can do better.
            Err(e) => {
                return Err(SendError::Permanent {
                    kind: PermanentKind::Other,
                    code: None,
                    message: format!("encoding the webhook body failed: {e}"),
                });
            }
        };

        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = this.uri.clone();
        let headers = request.headers_mut();
        headers.clone_from(&this.headers);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if !headers.contains_key(header::ACCEPT) {
            headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        }
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(
                header::USER_AGENT,
                HeaderValue::from_static(concat!("herald/", env!("CARGO_PKG_VERSION"))),
            );
        }

        service::send(
            &this.client,
            move || request,
            this.request_timeout,
            &this.id_field,
        )
        .await
    }
}
