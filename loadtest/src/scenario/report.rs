//! The end-of-run report: counts, rates, latency percentiles.
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::follow::{Outcomes, Status};
use super::messages::FillStats;
use crate::mock::MockStats;

/// Undecided message ids listed in the report, to start debugging from.
const MISSING_SAMPLE: usize = 10;

/// What a run measured. Counts are messages, not events.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario's `name`.
    pub scenario: String,
    /// This run's id; every message id is `lt-{run_id}-{i}`.
    pub run_id: String,
    /// Messages queued.
    pub messages: u64,
    /// Messages with a decision.
    pub decided: u64,
    /// Messages without a decision when the wait ended.
    pub missing: u64,
    /// Decision status ("sent", "rejected", …) → messages.
    pub by_status: BTreeMap<String, u64>,
    /// Decision status → reason → messages, for every decision that carried
    /// a reason.
    pub reasons: BTreeMap<String, BTreeMap<String, u64>>,
    /// Missing messages by their latest non-terminal event
    /// ("deferred: quiet_hours", "retrying: …", or "no event").
    pub missing_by_last_event: BTreeMap<String, u64>,
    /// Up to ten missing message ids.
    pub missing_sample: Vec<String>,
    /// Messages deferred / retried at least once on the way.
    pub ever_deferred: u64,
    pub ever_retrying: u64,
    /// Receipts seen before the run ended ("delivered", "undelivered").
    pub receipts: BTreeMap<String, u64>,
    /// Second decisions for an already-decided message (a contract breach).
    pub extra_decisions: u64,
    /// Events of this run with a status the contract does not name.
    pub unknown_statuses: BTreeMap<String, u64>,
    /// Events of this run that could not be read.
    pub malformed_events: u64,
    /// Wall time spent queueing.
    pub enqueue_elapsed: Duration,
    /// Messages per second queued.
    pub enqueue_rate: f64,
    /// Decisions / (last decision − first enqueue), per second.
    pub end_to_end_throughput: Option<f64>,
    /// Decisions / (last decision − first decision), per second: how fast
    /// Herald drains, independent of how the backlog was built.
    pub drain_throughput: Option<f64>,
    /// Enqueue → decision event `ts`, in milliseconds (both sides have ms
    /// resolution).
    pub latency_ms: Option<LatencySummary>,
    /// The in-process mock provider's counters, when one ran.
    pub mock: Option<MockStats>,
    /// CPU seconds Redis and this process (load tool and in-process mock)
    /// used from the end of the fill to the last decision.
    pub cpu_after_fill: Option<(Option<f64>, Option<f64>)>,
    /// How the spawned Herald ended, when one was spawned.
    pub herald_exit: Option<String>,
    /// Herald exited before the run was over.
    pub herald_died: bool,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// Records one latency (ms) into `hist`, growing the histogram to fit it.
///
/// Not `saturating_record`: that never resizes, even with auto-resize on,
/// and `Histogram::new` starts with a trackable range of 1..=2 (its bucket
/// array happens to reach 2047). Every latency above 2047 ms was clamped to
/// 2 ms, which made a slow run report p50 2 ms. `record` resizes; it can
/// only fail for a value beyond what any histogram represents (over
/// `u64::MAX / 2` ms), which is then clamped to the largest tracked value.
fn record_latency(hist: &mut Histogram<u64>, ms: u64) {
    if hist.record(ms).is_err() {
        hist.saturating_record(ms);
    }
}

impl Report {
    /// Builds the report from what the fill and the follower recorded.
    pub(super) fn build(
        scenario: String,
        run_id: String,
        id_prefix: &str,
        fill: FillStats,
        enqueued_at_ms: &[u64],
        outcomes: &Outcomes,
    ) -> Self {
        let messages = enqueued_at_ms.len() as u64;
        let mut by_status = BTreeMap::new();
        let mut reasons: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((status, reason), n) in &outcomes.reasons {
            *by_status.entry(status.as_str().to_owned()).or_default() += n;
            if !reason.is_empty() {
                *reasons
                    .entry(status.as_str().to_owned())
                    .or_default()
                    .entry(reason.clone())
                    .or_default() += n;
            }
        }

        let mut hist = Histogram::<u64>::new(3).expect("3 significant figures is valid");
        let (mut first_decision, mut last_decision) = (u64::MAX, 0);
        let mut missing_by_last_event = BTreeMap::new();
        let mut missing_sample = Vec::new();
        for (i, &enqueued) in enqueued_at_ms.iter().enumerate() {
            if outcomes.decision[i].is_some() {
                let ts = outcomes.decided_at_ms[i];
                // Clocks are the same machine's, but a decision stamped in
                // the same millisecond as the enqueue must not underflow.
                record_latency(&mut hist, ts.saturating_sub(enqueued));
                first_decision = first_decision.min(ts);
                last_decision = last_decision.max(ts);
            } else {
                let last = match outcomes.pending.get(&(i as u64)) {
                    Some((status, reason)) if reason.is_empty() => status.as_str().to_owned(),
                    Some((status, reason)) => format!("{}: {reason}", status.as_str()),
                    None => "no event".to_owned(),
                };
                *missing_by_last_event.entry(last).or_default() += 1;
                if missing_sample.len() < MISSING_SAMPLE {
                    missing_sample.push(format!("{id_prefix}{i}"));
                }
            }
        }

        let decided = outcomes.decided;
        let per_sec = |from: u64, to: u64| {
            (decided > 0 && to > from).then(|| decided as f64 * 1000.0 / (to - from) as f64)
        };
        let enqueue_secs = fill.elapsed.as_secs_f64();
        Self {
            scenario,
            run_id,
            messages,
            decided,
            missing: messages - decided,
            by_status,
            reasons,
            missing_by_last_event,
            missing_sample,
            ever_deferred: outcomes.ever_deferred,
            ever_retrying: outcomes.ever_retrying,
            receipts: outcomes
                .receipts
                .iter()
                .map(|(s, n)| (s.as_str().to_owned(), *n))
                .collect(),
            extra_decisions: outcomes.extra_decisions,
            unknown_statuses: outcomes.unknown_statuses.clone(),
            malformed_events: outcomes.malformed,
            enqueue_elapsed: fill.elapsed,
            enqueue_rate: if enqueue_secs > 0.0 {
                messages as f64 / enqueue_secs
            } else {
                0.0
            },
            end_to_end_throughput: per_sec(fill.first_enqueue_ms, last_decision),
            drain_throughput: per_sec(first_decision, last_decision),
            latency_ms: (!hist.is_empty()).then(|| LatencySummary {
                count: hist.len(),
                p50: hist.value_at_quantile(0.50),
                p90: hist.value_at_quantile(0.90),
                p99: hist.value_at_quantile(0.99),
                p999: hist.value_at_quantile(0.999),
                max: hist.max(),
            }),
            mock: None,
            cpu_after_fill: None,
            herald_exit: None,
            herald_died: false,
        }
    }

    /// Messages with decision `status`.
    pub fn count(&self, status: &str) -> u64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }

    /// Ok when every message got a decision and Herald (if spawned) lived
    /// to the end; otherwise an error saying what went wrong.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.herald_died {
            anyhow::bail!(
                "herald exited before the run ended ({}); see its log",
                self.herald_exit.as_deref().unwrap_or("unknown status")
            );
        }
        if self.missing > 0 {
            anyhow::bail!(
                "{} of {} messages got no decision before the wait ended",
                self.missing,
                self.messages
            );
        }
        Ok(())
    }
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0} msg/s"))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== herald-loadtest: {} (run {}) ==",
            self.scenario, self.run_id
        )?;
        writeln!(f, "messages          {}", self.messages)?;
        writeln!(f, "decided           {}", self.decided)?;
        for status in Status::DECISIONS {
            let n = self.count(status.as_str());
            if n == 0 {
                continue;
            }
            writeln!(f, "  {:<15} {n}", status.as_str())?;
            if status != Status::Sent {
                for (reason, n) in self.reasons.get(status.as_str()).into_iter().flatten() {
                    writeln!(f, "    {reason:<30} {n}")?;
                }
            }
        }
        writeln!(f, "missing           {}", self.missing)?;
        for (last, n) in &self.missing_by_last_event {
            writeln!(f, "  last event {last:<24} {n}")?;
        }
        if !self.missing_sample.is_empty() {
            writeln!(f, "  e.g. {}", self.missing_sample.join(", "))?;
        }
        if self.ever_deferred + self.ever_retrying > 0 {
            writeln!(
                f,
                "on the way        {} deferred, {} retried at least once",
                self.ever_deferred, self.ever_retrying
            )?;
        }
        for (receipt, n) in &self.receipts {
            writeln!(f, "receipts          {receipt} {n}")?;
        }
        if self.extra_decisions > 0 {
            writeln!(
                f,
                "CONTRACT BREACH   {} second decisions for decided messages",
                self.extra_decisions
            )?;
        }
        for (status, n) in &self.unknown_statuses {
            writeln!(f, "unknown status    {status:?} {n} events")?;
        }
        if self.malformed_events > 0 {
            writeln!(f, "malformed events  {}", self.malformed_events)?;
        }
        writeln!(
            f,
            "enqueue           {:.0} msg/s ({} in {:.2} s)",
            self.enqueue_rate,
            self.messages,
            self.enqueue_elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "end-to-end        {}  (decisions / first enqueue → last decision)",
            rate(self.end_to_end_throughput)
        )?;
        writeln!(
            f,
            "drain             {}  (decisions / first → last decision)",
            rate(self.drain_throughput)
        )?;
        match &self.latency_ms {
            Some(l) => writeln!(
                f,
                "latency ms        p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (enqueue → decision, n={})",
                l.p50, l.p90, l.p99, l.p999, l.max, l.count
            )?,
            None => writeln!(f, "latency ms        n/a (no decisions)")?,
        }
        if let Some(m) = &self.mock {
            writeln!(
                f,
                "mock provider     {} requests: {} accepted, {} injected errors, {} bad auth, {} invalid",
                m.requests, m.accepted, m.errors, m.rejected_auth, m.rejected_invalid
            )?;
            writeln!(
                f,
                "  max in flight   {}  (now {}; {} connections accepted)",
                m.max_in_flight, m.in_flight, m.connections_accepted
            )?;
        }
        if let Some((redis, own)) = self.cpu_after_fill {
            let s =
                |v: Option<f64>| v.map_or_else(|| "unknown".to_string(), |v| format!("{v:.2} s"));
            writeln!(
                f,
                "cpu after fill    redis {}, load tool + mock {}",
                s(redis),
                s(own)
            )?;
        }
        if let Some(exit) = &self.herald_exit {
            let when = if self.herald_died {
                " before the run ended"
            } else {
                ""
            };
            writeln!(f, "herald            exited{when}: {exit}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latencies well past the histogram's initial 0..=2047 ms range must
    /// be reported as they are, not clamped.
    #[test]
    fn long_latencies_are_not_clamped() {
        let latencies: Vec<u64> = (0..1000).map(|i| 1000 + i * 4).collect(); // 1000..=4996
        let enqueued_at_ms = vec![1_000_000u64; latencies.len()];
        let outcomes = Outcomes {
            decision: vec![Some(Status::Sent); latencies.len()],
            decided_at_ms: latencies.iter().map(|l| 1_000_000 + l).collect(),
            decided: latencies.len() as u64,
            ..Outcomes::default()
        };
        let fill = FillStats {
            first_enqueue_ms: 1_000_000,
            elapsed: Duration::from_millis(10),
        };
        let report = Report::build(
            "t".to_owned(),
            "run".to_owned(),
            "lt-run-",
            fill,
            &enqueued_at_ms,
            &outcomes,
        );
        let l = report.latency_ms.unwrap();
        assert_eq!(l.count, 1000);
        // 3 significant figures: within 0.1 % (plus one bucket) of exact.
        let near = |got: u64, want: u64| got.abs_diff(want) <= want / 500 + 1;
        assert!(near(l.p50, 2996), "{l:?}");
        assert!(near(l.p90, 4596), "{l:?}");
        assert!(near(l.p99, 4956), "{l:?}");
        assert!(near(l.max, 4996), "{l:?}");
    }

    #[test]
    fn same_millisecond_and_huge_latencies_are_recorded() {
        let mut hist = Histogram::<u64>::new(3).unwrap();
        record_latency(&mut hist, 0);
        record_latency(&mut hist, 86_400_000);
        record_latency(&mut hist, u64::MAX);
        assert_eq!(hist.len(), 3);
        assert_eq!(hist.min(), 0);
        assert!(hist.max() >= 86_400_000);
    }
}
