//! A mock SMS provider speaking Twilio's Messages API wire format, so load
//! tests and the adapter's integration tests drive the real Twilio adapter,
//! and Herald's retry, ambiguity and receipt handling meet the failures a real
//! provider produces.
//!
//! - `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: HTTP Basic
//!   `AccountSid:AuthToken`, form fields `To`, `From` / `MessagingServiceSid`,
//!   `Body`, `StatusCallback`; `201` with a Message resource, or Twilio's error
//!   JSON `{"code", "message", "more_info", "status"}`.
//! - `GET /v2/PhoneNumbers/{number}?Fields=line_type_intelligence`: Twilio
//!   Lookup v2 with the same Basic auth, a carrier chosen by the number's
//!   last digit (see `lookup.rs` for the table and its magic numbers).
//! - `GET /stats`: [`MockStats`] as JSON.
//!
//! # Magic numbers
//!
//! Twilio's test-credential magic numbers are mirrored
//! (twilio.com/docs/iam/test-credentials): `To` `+15005550001` → 21211
//! invalid, `+15005550002` → 21612 cannot route, `+15005550003` → 21408 no
//! permission for the region, `+15005550004` → 21610 opted out ("blocked"),
//! `+15005550009` → 21614 not a mobile number; `From` `+15005550001` → 21212,
//! `+15005550007` → 21606, `+15005550008` → 21611 queue full.
//!
//! Fault rules, keyed by `To` in the same test range, give tests one
//! deterministic behaviour per message. A magic number decides its message's
//! whole behaviour; the rate knobs of [`MockSettings`] apply to every other
//! number.
//!
//! | `To` | behaviour |
//! |---|---|
//! | `+15005550429` | `429` / 20429 with `Retry-After: retry_after_secs` (default 1) |
//! | `+15005550500` | `500` / 20500 |
//! | `+15005550503` | `503` / 20503 |
//! | `+15005550555` | the request is read in full, then the connection is closed without an answer (HTTP/2: the stream is reset); not accepted |
//! | `+15005550556` | accepted (recorded, callbacks follow), then closed without an answer as above |
//! | `+15005550777` | accepted, answered `slow_delay` late (after `latency`) |
//! | `+15005550030` | accepted; callbacks `sent`, then `undelivered` with `ErrorCode` 30003 |
//! | `+15005550031` | likewise with `ErrorCode` 30005 |
//! | `+15005550032` | likewise with `ErrorCode` 30007 |
//! | `+15005550033` | accepted; one callback, `failed` with `ErrorCode` 30001 |
//! | `+15005550021` | accepted; callbacks `delivered`, then `sent` |
//! | `+15005550022` | accepted; `sent` and `delivered`, each POSTed twice |
//!
//! # Rates
//!
//! For other numbers one roll per request picks at most one of `error_rate`
//! (half 429, half 500), `rate_limit_rate`, `server_error_rate` (half 500,
//! half 503) and `drop_rate`, which must add up to at most 1; separate rolls
//! pick `slow_rate`, and for the callbacks `undelivered_rate` (30003, 30005
//! or 30007), `duplicate_callbacks` and `reorder_callbacks`. A rate of 1
//! applies to every request.
//!
//! # Status callbacks
//!
//! With `status_callbacks` on, an accepted message that carries an `http://`
//! `StatusCallback` gets Twilio's status callbacks POSTed there, each
//! `callback_delay` after the previous step: `sent`, then `delivered` unless a
//! rule or rate says otherwise. Form fields `MessageSid`, `MessageStatus`,
//! `AccountSid`, `From` (when the create had one), `To`, `SmsSid`,
//! `SmsStatus`, `ApiVersion=2010-04-01`, `ErrorCode` for `undelivered` /
//! `failed`, `MessagingServiceSid` when the create had one; header
//! `X-Twilio-Signature` = Base64(HMAC-SHA1(auth_token, URL + each parameter's
//! name and value in name order)).
//!
//! Built for 50k+ requests/s on two cores next to Herald and Redis: one task
//! per keep-alive connection, counters are relaxed atomics, each answer is
//! written into one pre-sized buffer, the behaviour of a request is one table
//! scan plus a roll per knob that is on, and the only lock is the optional
//! recording of accepted messages (test tooling).

mod callbacks;
mod config;
mod lookup;
mod rules;
mod service;
mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{MockSettings, SettingsError};
pub use rules::RULES_HELP;
use service::Shared;

/// A snapshot of the mock's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MockStats {
    /// Requests to the Messages route, whatever their outcome.
    pub requests: u64,
    /// Messages accepted: answered `201 Created`, or accepted and then
    /// dropped (`+15005550556`).
    pub accepted: u64,
    /// Answered with an injected error: `rate_limited` + `server_errors`.
    pub errors: u64,
    /// Answered `401` (wrong credentials or account).
    pub rejected_auth: u64,
    /// Answered `400`: missing or invalid fields, magic numbers.
    pub rejected_invalid: u64,
    /// Messages-route requests being handled right now.
    pub in_flight: u64,
    /// Highest `in_flight` seen.
    pub max_in_flight: u64,
    /// TCP connections open right now.
    pub connections_open: u64,
    /// TCP connections accepted since start: far fewer than `requests` means
    /// the client reuses its pooled connections.
    pub connections_accepted: u64,
    /// Answered `429` / 20429.
    pub rate_limited: u64,
    /// Answered `500` / 20500 or `503` / 20503.
    pub server_errors: u64,
    /// Requests left without an answer (connection closed, HTTP/2 stream
    /// reset), accepted or not.
    pub dropped: u64,
    /// Requests answered `slow_delay` late.
    pub slowed: u64,
    /// Accepted messages whose status callbacks were scheduled.
    pub receipts: u64,
    /// Of `receipts`, those ending `undelivered` or `failed`.
    pub receipts_undelivered: u64,
    /// Of `receipts`, those whose callbacks are each POSTed twice.
    pub receipts_duplicated: u64,
    /// Of `receipts`, those whose final status is POSTed before `sent`.
    pub receipts_reordered: u64,
    /// Callback POSTs answered `2xx`.
    pub callbacks_sent: u64,
    /// Callback POSTs that failed: no connection, timeout, non-`2xx`, or a URL
    /// the mock cannot call (not `http://`).
    pub callbacks_failed: u64,
    /// Messages whose callbacks are not all POSTed yet; 0 once a run's
    /// receipts have all gone out.
    pub callbacks_pending: u64,
    /// Requests to the Lookup route, whatever their outcome (not counted in
    /// `requests`).
    pub lookups: u64,
}

/// One accepted message as the mock received it (with `record: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedMessage {
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: String,
    pub status_callback: Option<String>,
    /// The `sid` the mock answered with.
    pub sid: String,
}

/// A running mock provider. Dropping it stops accepting connections, closes
/// idle ones and cancels pending status callbacks; [`MockProvider::shutdown`]
/// also waits for the accept loop.
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<()>,
    accept_loop: Option<JoinHandle<()>>,
}

impl MockProvider {
    /// Bind `addr` (port 0 picks a free port) and start serving. Settings that
    /// fail [`MockSettings::validate`] are an `InvalidInput` error whose
    /// inner error is the [`SettingsError`].
    pub async fn start(addr: SocketAddr, settings: MockSettings) -> std::io::Result<MockProvider> {
        settings
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = service::listen(addr)?;
        let addr = listener.local_addr()?;

        let (shutdown, stopping) = watch::channel(());
        let shared = Arc::new(Shared::new(settings, stopping));
        let accept_loop = tokio::spawn(service::accept_loop(
            listener,
            shared.clone(),
            shutdown.subscribe(),
        ));
        Ok(MockProvider {
            addr,
            shared,
            shutdown,
            accept_loop: Some(accept_loop),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, to use as the Twilio adapter's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn settings(&self) -> &MockSettings {
        &self.shared.settings
    }

    pub fn stats(&self) -> MockStats {
        self.shared.stats()
    }

    /// Accepted messages in arrival order; empty unless `record` is set.
    pub fn recorded(&self) -> Vec<RecordedMessage> {
        match &self.shared.recorded {
            Some(r) => r.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => Vec::new(),
        }
    }

    /// Stop accepting, ask open connections to close once their in-flight
    /// request is answered, cancel pending status callbacks, and wait for the
    /// accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(());
        if let Some(task) = self.accept_loop.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        // Receivers also see the sender's drop; sending makes it explicit.
        let _ = self.shutdown.send(());
    }
}

/// Run a mock provider on `addr` until SIGINT or SIGTERM, printing its address
/// and a stats line every few seconds.
pub async fn serve_until_signal(addr: SocketAddr, settings: MockSettings) -> anyhow::Result<()> {
    // One descriptor per client connection: the concurrency scenario holds
    // ~20k open, above the usual 1024 soft limit.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit raised"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let account_sid = settings.account_sid.clone();
    let mock = MockProvider::start(addr, settings)
        .await
        .with_context(|| format!("starting the mock provider on {addr}"))?;
    println!(
        "mock provider listening on {}  (POST /2010-04-01/Accounts/{account_sid}/Messages.json, GET /v2/PhoneNumbers/{{number}}, GET /stats)",
        mock.base_url()
    );

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let period = Duration::from_secs(5);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = mock.stats();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {
                let now = mock.stats();
                println!("{}", stats_line(&now, &last, period));
                last = now;
            }
        }
    }
    let last = mock.stats();
    mock.shutdown().await;
    println!(
        "mock provider stopped: {}",
        stats_line(&last, &MockStats::default(), Duration::ZERO)
    );
    Ok(())
}

fn stats_line(now: &MockStats, before: &MockStats, period: Duration) -> String {
    let rate = if period.is_zero() {
        String::new()
    } else {
        format!(
            "{:.0} req/s  ",
            (now.requests - before.requests) as f64 / period.as_secs_f64()
        )
    };
    let mut line = format!(
        "{rate}requests={} accepted={} errors={} rejected_auth={} rejected_invalid={} in_flight={} \
         max_in_flight={} connections_open={} connections_accepted={}",
        now.requests,
        now.accepted,
        now.errors,
        now.rejected_auth,
        now.rejected_invalid,
        now.in_flight,
        now.max_in_flight,
        now.connections_open,
        now.connections_accepted
    );
    // Only when used, so a plain load run's line stays as short as before.
    if now.rate_limited + now.server_errors + now.dropped + now.slowed > 0 {
        line.push_str(&format!(
            " rate_limited={} server_errors={} dropped={} slowed={}",
            now.rate_limited, now.server_errors, now.dropped, now.slowed
        ));
    }
    if now.lookups > 0 {
        line.push_str(&format!(" lookups={}", now.lookups));
    }
    if now.receipts > 0 {
        line.push_str(&format!(
            " receipts={} undelivered={} duplicated={} reordered={} callbacks_sent={} \
             callbacks_failed={} callbacks_pending={}",
            now.receipts,
            now.receipts_undelivered,
            now.receipts_duplicated,
            now.receipts_reordered,
            now.callbacks_sent,
            now.callbacks_failed,
            now.callbacks_pending
        ));
    }
    line
}
