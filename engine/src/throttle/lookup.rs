//! A [`CarrierLookup`] backed by Twilio Lookup v2 (Line Type Intelligence)
//! and shared through Redis, so a number is paid for once per TTL across
//! the fleet and across restarts, not once per instance and start.
//!
//! One lookup (from [`run_lookups`](super::run_lookups), one number at a
//! time, off the per-message path):
//! 1. `GET herald:carrier:{<number>}` — a hit answers, Twilio is not asked;
//! 2. otherwise Twilio Lookup;
//! 3. `SET herald:carrier:{<number>} <carrier name, or "-"> PX <ttl>`.
//!
//! "Twilio knows no carrier" is stored as `-`, so a number without carrier
//! data is not paid for again on its next message. Twilio failures (429,
//! 5xx, credentials) are not stored: the engine asks again later and the
//! prefix table answers meanwhile.
//!
//! Redis is a cache here, never a dependency: a failed read or write is
//! logged and the lookup goes on (to Twilio, or with its answer unshared).
//!
//! Redis keeps the name as Twilio wrote it ("T-Mobile USA, Inc."); the
//! lookup answers it in the table's spelling ([`table_spelling`]: "T-Mobile
//! USA"), because the table's aliases are matched whole.

use std::time::Duration;

use herald_adapters::twilio::lookup::TwilioLookup;

use super::carrier::{CarrierLookup, LookupError};
use crate::conn::Conn;

/// The stored value for "looked up, no carrier known".
pub const UNKNOWN: &str = "-";

/// Default cache lifetime. Numbers move between carriers (porting) rarely;
/// 30 days bounds how long a ported number stays in its old lane and what a
/// lookup costs per active number (one per TTL).
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The cache key of `number` (E.164 digits): `herald:carrier:{<number>}`,
/// hash-tagged by the number as `herald:cap:{<number>}:…` is, so one
/// number's keys share a slot.
pub fn key(number: u64) -> String {
    crate::keys::carrier_lookup(number)
}

/// `name` as a carrier table spells carriers: the trading name after a
/// legal one ("Cellco Partnership dba Verizon Wireless" → "Verizon
/// Wireless") without a corporate suffix ("T-Mobile USA, Inc." →
/// "T-Mobile USA"). Twilio reports the names carriers registered; the
/// shipped table lists the names people write, and matches an alias whole.
pub fn table_spelling(name: &str) -> &str {
    let mut name = name.trim();
    if let Some(i) = find_ignore_ascii_case(name, " dba ") {
        name = name[i + 5..].trim();
    }
    const SUFFIXES: [&str; 6] = ["inc.", "inc", "llc", "l.p.", "lp", "corp."];
    'strip: loop {
        for suffix in SUFFIXES {
            let Some(head) = strip_suffix_ignore_ascii_case(name, suffix) else {
                continue;
            };
            // A whole word only: "Zinc" keeps its "inc".
            if head.ends_with([' ', ',']) {
                let rest = head.trim_end_matches([' ', ',']);
                if !rest.is_empty() {
                    name = rest;
                    continue 'strip;
                }
            }
        }
        return name;
    }
}

fn find_ignore_ascii_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn strip_suffix_ignore_ascii_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let tail = s.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &s[..cut])
}

/// Carrier lookups through Twilio, cached in Redis.
pub struct TwilioCarrierLookup {
    twilio: TwilioLookup,
    /// A reconnecting connection; cloned per lookup (an `Arc` clone), as
    /// commands need `&mut`.
    redis: Conn,
    /// TTL in ms, at least 1 (Redis refuses `PX 0`).
    ttl_ms: u64,
}

impl TwilioCarrierLookup {
    /// `ttl` is how long an answer (or "unknown") is kept; a zero TTL is
    /// raised to 1 ms (the config layer should refuse it first).
    pub fn new(twilio: TwilioLookup, redis: Conn, ttl: Duration) -> TwilioCarrierLookup {
        TwilioCarrierLookup {
            twilio,
            redis,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// `Some(answer)` when Redis holds one; `None` on a miss or when Redis
    /// cannot be read (then Twilio is asked).
    async fn cached(&self, conn: &mut Conn, key: &str) -> Option<Option<String>> {
        match redis::cmd("GET")
            .arg(key)
            .query_async::<Option<String>>(conn)
            .await
        {
            Ok(Some(v)) if v == UNKNOWN => Some(None),
            Ok(Some(v)) => Some(Some(table_spelling(&v).to_owned())),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "carrier cache read failed; asking Twilio");
                None
            }
        }
    }

    /// Remember `name` (`None`: unknown) for the TTL; a failure only costs
    /// a later lookup.
    async fn store(&self, conn: &mut Conn, key: &str, name: Option<&str>) {
        let result = redis::cmd("SET")
            .arg(key)
            .arg(name.unwrap_or(UNKNOWN))
            .arg("PX")
            .arg(self.ttl_ms)
            .query_async::<()>(conn)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "carrier cache write failed; the answer is used but not shared");
        }
    }
}

impl CarrierLookup for TwilioCarrierLookup {
    async fn lookup(&self, number: u64) -> Result<Option<String>, LookupError> {
        let key = key(number);
        let mut conn = self.redis.clone();
        if let Some(answer) = self.cached(&mut conn, &key).await {
            return Ok(answer);
        }
        let name = self
            .twilio
            .carrier_name(&format!("+{number}"))
            .await
            .map_err(|e| LookupError(e.to_string()))?;
        // A carrier literally named "-" would read back as unknown: no real
        // carrier is, and the prefix table still answers for it.
        self.store(&mut conn, &key, name.as_deref()).await;
        Ok(name.map(|n| table_spelling(&n).to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_the_tables_spelling() {
        let cases = [
            ("Verizon Wireless", "Verizon Wireless"),
            (
                "Cellco Partnership dba Verizon Wireless",
                "Verizon Wireless",
            ),
            (
                "Cellco Partnership DBA Verizon Wireless - SVR",
                "Verizon Wireless - SVR",
            ),
            ("T-Mobile USA, Inc.", "T-Mobile USA"),
            ("T-Mobile USA, Inc", "T-Mobile USA"),
            ("AT&T Wireless", "AT&T Wireless"),
            (
                "New Cingular Wireless PCS, LLC",
                "New Cingular Wireless PCS",
            ),
            ("Bandwidth.com CLEC, LLC", "Bandwidth.com CLEC"),
            ("Sprint Spectrum, L.P.", "Sprint Spectrum"),
            ("  US Cellular Corp. ", "US Cellular"),
            // Not a suffix word, or nothing before it: kept.
            ("Zinc", "Zinc"),
            ("Inc", "Inc"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(table_spelling(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn keys_hash_tag_the_number() {
        assert_eq!(key(14155550123), "herald:carrier:{14155550123}");
        assert_eq!(key(447700900123), "herald:carrier:{447700900123}");
    }
}
