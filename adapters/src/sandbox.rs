//! In-process simulated provider for demos and local runs: latency, jitter and
//! failure knobs, no network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::{Accepted, PermanentKind, Provider, SendError, SendRequest};

/// Knobs of the [`SandboxProvider`].
#[derive(Debug, Clone, Default)]
pub struct SandboxSettings {
    /// Fixed delay before every answer, like a provider's round trip.
    pub latency: Duration,
    /// Extra random delay, uniform in `0..=jitter`, added to `latency`.
    pub jitter: Duration,
    /// Fraction (0–1) of sends answered with a transient failure.
    pub failure_rate: f64,
    /// Fraction (0–1) of sends answered with a permanent failure.
    pub permanent_failure_rate: f64,
    /// A send whose body contains this text panics: a fault test of the
    /// dispatch path's panic handling (a bug in an adapter).
    pub panic_on: Option<String>,
}

/// `providers.<name>` with `kind = "sandbox"`, as the operator writes it
/// (the engine takes `kind` and `max_concurrency` off first).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub latency_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    pub failure_rate: Option<f64>,
    pub permanent_failure_rate: Option<f64>,
    pub panic_on: Option<String>,
}

impl SandboxConfig {
    pub fn into_settings(self) -> Result<SandboxSettings, ConfigError> {
        let rate = |key: &'static str, v: Option<f64>| {
            let v = v.unwrap_or(0.0);
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(ConfigError::new(KIND, key, "must be between 0.0 and 1.0"))
            }
        };
        Ok(SandboxSettings {
            latency: Duration::from_millis(self.latency_ms.unwrap_or(0)),
            jitter: Duration::from_millis(self.jitter_ms.unwrap_or(0)),
            failure_rate: rate("failure_rate", self.failure_rate)?,
            permanent_failure_rate: rate("permanent_failure_rate", self.permanent_failure_rate)?,
            panic_on: self.panic_on.filter(|p| !p.is_empty()),
        })
    }
}

const KIND: &str = "sandbox";

/// Accepts (or fails) messages after a simulated delay.
#[derive(Debug)]
pub struct SandboxProvider {
    settings: SandboxSettings,
    /// Random per instance, so ids from two runs (or two instances) differ.
    id_prefix: u64,
    /// Makes ids unique within the instance.
    next_id: AtomicU64,
}

impl SandboxProvider {
    pub fn new(settings: SandboxSettings) -> Result<Self, ConfigError> {
        for (key, rate) in [
            ("failure_rate", settings.failure_rate),
            ("permanent_failure_rate", settings.permanent_failure_rate),
        ] {
            // `contains` is false for NaN too.
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::new(
                    KIND,
                    key,
                    format!("{rate} is not between 0 and 1"),
                ));
            }
        }
        // One roll decides the outcome, so the two fractions share [0, 1).
        if settings.failure_rate + settings.permanent_failure_rate > 1.0 {
            return Err(ConfigError::new(
                KIND,
                "permanent_failure_rate",
                format!(
                    "failure_rate + permanent_failure_rate = {} is more than 1",
                    settings.failure_rate + settings.permanent_failure_rate
                ),
            ));
        }
        Ok(SandboxProvider {
            settings,
            id_prefix: rand::random(),
            next_id: AtomicU64::new(0),
        })
    }

    pub fn settings(&self) -> &SandboxSettings {
        &self.settings
    }
}

impl Provider for SandboxProvider {
    fn kind(&self) -> &'static str {
        "sandbox"
    }

    async fn send(&self, req: &SendRequest<'_>) -> Result<Accepted, SendError> {
        if let Some(p) = &self.settings.panic_on
            && req.body.contains(p.as_str())
        {
            panic!("sandbox: the body contains panic_on `{p}`");
        }
        // Draw everything before the first await: the thread-local RNG is not Send.
        let (delay, roll) = {
            let mut rng = rand::rng();
            let jitter = if self.settings.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.settings
                    .jitter
                    .mul_f64(rand::Rng::random::<f64>(&mut rng))
            };
            (
                self.settings.latency + jitter,
                rand::Rng::random::<f64>(&mut rng),
            )
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }

        if roll < self.settings.failure_rate {
            return Err(SendError::Transient {
                code: None,
                message: "sandbox: simulated transient failure".to_owned(),
                retry_after: None,
            });
        }
        if roll < self.settings.failure_rate + self.settings.permanent_failure_rate {
            return Err(SendError::Permanent {
                kind: PermanentKind::Other,
                code: None,
                message: "sandbox: simulated permanent failure".to_owned(),
            });
        }

        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(Accepted {
            provider_id: format!("SB{:016x}{:016x}", self.id_prefix, n),
            segments: Some(segments(req.body)),
        })
    }
}

/// Segments an SMS body needs, as carriers count them: GSM-7 text fits 160
/// septets in one segment and 153 per segment when concatenated (the UDH takes
/// 7); anything outside GSM-7 goes as UCS-2, 70 code units or 67 per segment.
/// Characters of the GSM extension table (`^{}\[~]|€`, form feed) take two
/// septets.
pub fn segments(body: &str) -> u32 {
    let mut septets = 0usize;
    for c in body.chars() {
        match gsm_septets(c) {
            Some(n) => septets += n,
            None => {
                let units = body.encode_utf16().count();
                return if units <= 70 {
                    1
                } else {
                    units.div_ceil(67) as u32
                };
            }
        }
    }
    if septets <= 160 {
        1
    } else {
        septets.div_ceil(153) as u32
    }
}

/// Septets `c` takes in GSM 03.38 (basic table 1, extension table 2), or
/// `None` when it has no GSM-7 encoding.
fn gsm_septets(c: char) -> Option<usize> {
    match c {
        'A'..='Z' | 'a'..='z' | '0'..='9' => Some(1),
        ' ' | '\n' | '\r' | '!' | '"' | '#' | '$' | '%' | '&' | '\'' | '(' | ')' | '*' | '+'
        | ',' | '-' | '.' | '/' | ':' | ';' | '<' | '=' | '>' | '?' | '@' | '_' => Some(1),
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' | '\u{0c}' => Some(2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn segment_counts() {
        assert_eq!(segments(""), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        // Extension characters take two septets.
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
        // One non-GSM character switches the whole message to UCS-2.
        assert_eq!(segments(&format!("{}✓", "a".repeat(69))), 1);
        assert_eq!(segments(&format!("{}✓", "a".repeat(70))), 2);
        assert_eq!(segments(&"✓".repeat(134)), 2);
        assert_eq!(segments(&"✓".repeat(135)), 3);
        // Emoji are two UTF-16 units.
        assert_eq!(segments(&"😀".repeat(35)), 1);
        assert_eq!(segments(&"😀".repeat(36)), 2);
        // Backtick is not in GSM-7.
        assert_eq!(segments(&format!("{}`", "a".repeat(100))), 2);
    }
}
