//! Retry delay: exponential backoff with full jitter, honouring the
//! provider's `Retry-After` (docs/contracts.md#providers).
//!
//! Full jitter (a uniform draw in `[0, min(max, base·2^(n-1))]`) spreads the
//! retries of a burst of failures instead of re-synchronising them against a
//! provider that is already struggling.

use std::time::Duration;

/// A validated backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// `base` must be positive and no larger than `max`.
    pub fn new(base: Duration, max: Duration) -> Result<Backoff, String> {
        if base.is_zero() {
            return Err("the base delay must be greater than 0".into());
        }
        if base > max {
            return Err(format!(
                "the base delay ({base:?}) must not exceed the maximum ({max:?})"
            ));
        }
        Ok(Backoff { base, max })
    }

    /// Upper bound of the delay before attempt `attempt + 1`, after `attempt`
    /// failed attempts (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << exp)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay to wait after `attempt` failed attempts. `unit` is a uniform
    /// draw in `[0, 1)`; a `Retry-After` is a floor (the provider asked for
    /// at least that), capped by `max` so one bad header can't park a message
    /// for a day.
    pub fn delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let jittered = self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0));
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.max)),
            None => jittered,
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_invalid_bounds() {
        assert!(Backoff::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
        assert!(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000)).unwrap();
        let got: Vec<u128> = (1..=6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
    }

    proptest! {
        #[test]
        fn delay_stays_within_bounds(
            base_ms in 1u64..10_000,
            extra_ms in 0u64..1_000_000,
            attempt in 0u32..200,
            unit in 0.0f64..1.0,
            retry_after_ms in proptest::option::of(0u64..10_000_000),
        ) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(base_ms + extra_ms);
            let b = Backoff::new(base, max).unwrap();
            let ra = retry_after_ms.map(Duration::from_millis);
            let d = b.delay(attempt, unit, ra);
            prop_assert!(d <= max, "{d:?} > max {max:?}");
            prop_assert!(d <= b.ceiling(attempt).max(ra.unwrap_or_default().min(max)));
            if let Some(ra) = ra {
                prop_assert!(d >= ra.min(max), "Retry-After {ra:?} not honoured: {d:?}");
            }
            prop_assert!(b.ceiling(attempt + 1) >= b.ceiling(attempt));
        }
    }
}
