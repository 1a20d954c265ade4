//! What a user of the mock sets: [`MockSettings`] and its validation.

use std::time::Duration;

/// Knobs of the mock. Every knob added after the first version defaults to
/// "off", so `MockSettings { latency, error_rate, .., ..Default::default() }`
/// behaves as it always did.
///
/// The rate knobs apply to numbers that are not magic numbers (see the module
/// documentation): a magic number decides its message's whole behaviour, so a
/// test can pick one outcome per message whatever the rates say.
#[derive(Debug, Clone)]
pub struct MockSettings {
    /// Delay before answering a valid request, like Twilio's API latency.
    pub latency: Duration,
    /// Fraction (0–1) of valid requests answered with an error instead: half
    /// `429` / 20429 with `Retry-After`, half `500` / 20500.
    pub error_rate: f64,
    /// Account id expected in the path and as the Basic-auth user; also the
    /// `AccountSid` of status callbacks.
    pub account_sid: String,
    /// Basic-auth password expected; also the key that signs status callbacks
    /// (`X-Twilio-Signature`), as Twilio signs with the account's auth token.
    pub auth_token: String,
    /// Keep every accepted message for [`super::MockProvider::recorded`].
    pub record: bool,

    /// Fraction (0–1) of valid requests answered `429` / 20429 with
    /// `Retry-After`: the provider's rate limit, which Herald must honour.
    pub rate_limit_rate: f64,
    /// Seconds in the `Retry-After` header of every `429`.
    pub retry_after_secs: u64,
    /// Fraction (0–1) of valid requests answered `500` / 20500 or `503` /
    /// 20503 (half each): transient provider failures.
    pub server_error_rate: f64,
    /// Fraction (0–1) of valid requests read in full and then left without an
    /// answer, the connection closed (HTTP/2: the stream reset). The message
    /// is not accepted, but the client cannot know that: Herald must treat the
    /// outcome as ambiguous, never as a safe retry.
    pub drop_rate: f64,
    /// Fraction (0–1) of valid requests answered `slow_delay` late (after
    /// `latency`), to drive the client into its request timeout.
    pub slow_rate: f64,
    /// The extra delay of a slow answer. The default (15 s) outlasts the
    /// Twilio adapter's default request timeout (10 s).
    pub slow_delay: Duration,

    /// POST Twilio status callbacks to each accepted message's
    /// `StatusCallback` URL. Off by default: tests that pass a made-up
    /// callback URL must not make the mock call it.
    pub status_callbacks: bool,
    /// Delay before each callback of a message (so `sent` comes this long
    /// after the `201`, and the final status this long after `sent`).
    pub callback_delay: Duration,
    /// Fraction (0–1) of accepted messages whose final status is
    /// `undelivered`, with `ErrorCode` 30003, 30005 or 30007 (a third each),
    /// instead of `delivered`.
    pub undelivered_rate: f64,
    /// Fraction (0–1) of accepted messages whose every callback is POSTed
    /// twice, as Twilio may: Herald must record one receipt.
    pub duplicate_callbacks: f64,
    /// Fraction (0–1) of accepted messages whose final status is POSTed before
    /// `sent`, as callbacks racing on separate connections arrive: a late
    /// `sent` must not undo a receipt.
    pub reorder_callbacks: f64,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            latency: Duration::ZERO,
            error_rate: 0.0,
            account_sid: "ACmock0000000000000000000000000000".to_owned(),
            auth_token: "mock-token".to_owned(),
            record: false,
            rate_limit_rate: 0.0,
            retry_after_secs: 1,
            server_error_rate: 0.0,
            drop_rate: 0.0,
            slow_rate: 0.0,
            slow_delay: Duration::from_secs(15),
            status_callbacks: false,
            callback_delay: Duration::from_secs(1),
            undelivered_rate: 0.0,
            duplicate_callbacks: 0.0,
            reorder_callbacks: 0.0,
        }
    }
}

/// Settings the mock refuses to start with; each names the knob at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("{field} {value} is not between 0 and 1")]
    RateOutOfRange { field: &'static str, value: f64 },
    /// The answer rates are shares of one roll per request, so together they
    /// cannot exceed every request.
    #[error(
        "error_rate + rate_limit_rate + server_error_rate + drop_rate is {sum}, above 1: \
         each request gets at most one of these answers"
    )]
    AnswerRatesAboveOne { sum: f64 },
}

impl MockSettings {
    /// Every rate within 0–1 (NaN is not) and the answer rates summing to at
    /// most 1.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let rates = [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("server_error_rate", self.server_error_rate),
            ("drop_rate", self.drop_rate),
            ("slow_rate", self.slow_rate),
            ("undelivered_rate", self.undelivered_rate),
            ("duplicate_callbacks", self.duplicate_callbacks),
            ("reorder_callbacks", self.reorder_callbacks),
        ];
        for (field, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(SettingsError::RateOutOfRange { field, value });
            }
        }
        let sum = self.error_rate + self.rate_limit_rate + self.server_error_rate + self.drop_rate;
        // Rates like 0.7 + 0.3 add up to 1.0000000000000002 in binary.
        if sum > 1.0 + 1e-9 {
            return Err(SettingsError::AnswerRatesAboveOne { sum });
        }
        Ok(())
    }
}
