//! Metrics and logs. Metric names live in [`names`]; each observable outcome
//! is recorded through one function here so a log line and its counters never
//! drift apart.

pub mod config;
pub mod names;

use metrics::{counter, gauge, histogram};

use crate::error::Error;

/// Install the Prometheus recorder (rendered by Herald's own HTTP listener).
pub fn install_recorder() -> Result<metrics_exporter_prometheus::PrometheusHandle, Error> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::host("the metrics recorder", std::io::Error::other(e.to_string()))
    };
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(names::PROVIDER_LATENCY.into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .map_err(|e| failed(&e))?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(names::ENQUEUE_TO_SEND.into()),
            &[
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ],
        )
        .map_err(|e| failed(&e))?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| failed(&format!("already installed: {e}")))?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::MESSAGES, "Messages by outcome status and reason");
    describe_counter!(
        names::ENTRIES_READ,
        "Queue entries read (new and reclaimed)"
    );
    describe_counter!(
        names::AMBIGUOUS,
        "Redelivered messages whose earlier send may have reached the provider, by policy"
    );
    describe_counter!(names::REDIS_ERRORS, "Redis command failures by operation");
    describe_gauge!(
        names::POLICY_VERSION,
        "The policy-store version this instance runs"
    );
    describe_counter!(
        names::POLICY_REJECTED,
        "Stored policy versions this instance could not compile (it kept the one it ran)"
    );
    describe_histogram!(
        names::PROVIDER_LATENCY,
        Unit::Seconds,
        "Provider request latency by provider and result"
    );
    describe_histogram!(
        names::ENQUEUE_TO_SEND,
        Unit::Seconds,
        "From the queue entry's id timestamp to the provider's answer"
    );
    describe_gauge!(
        names::IN_FLIGHT,
        "Messages being processed (bounded by dispatch.max_in_flight)"
    );
    describe_gauge!(
        names::QUEUE_LAG,
        "Entries in a partition not yet read by the group"
    );
    describe_gauge!(
        names::QUEUE_PENDING,
        "Entries read but not yet acknowledged"
    );
    describe_gauge!(names::DELAYED, "Messages in the delayed set");
    describe_counter!(
        names::SEGMENTS,
        "SMS segments of messages sent, by encoding (gsm7, ucs2)"
    );
    describe_counter!(
        names::CONSENT_CHANGES,
        "Consent changes applied to this instance's replica from the feed"
    );
    describe_gauge!(
        names::CONSENT_NUMBERS,
        "Numbers with a consent record in this instance's replica"
    );
    describe_counter!(
        names::INBOUND,
        "Inbound replies by classification (opt_out, opt_in, help, ambiguous, other)"
    );
    describe_gauge!(
        names::CIRCUIT_STATE,
        "Circuit breaker per provider: 0 closed, 1 open, 2 half-open"
    );
    describe_counter!(
        names::FAILOVERS,
        "Sends that went to another provider of the route than the preferred one"
    );
    describe_counter!(
        names::RECEIPTS,
        "Delivery receipts by result (delivered, undelivered, ignored, duplicate, orphan)"
    );
    describe_counter!(
        names::THROTTLED,
        "Messages deferred by a token bucket, by lane (carrier, sender)"
    );
    describe_counter!(
        names::POLICY_DEFERRALS,
        "Messages deferred by policy, by reason (quiet_hours, frequency_cap)"
    );
    describe_counter!(
        names::VANISHED,
        "Tracked items that vanished from Redis (entry_deleted, record_lost, receipt_unmatched); each is in the DLQ"
    );
    describe_counter!(
        names::SEQUENCES_ENROLLED,
        "Enrolments recorded, by schedule"
    );
    describe_counter!(
        names::SEQUENCE_CANCELS,
        "Sequence cancels, by result (cancelled, already_ended, not_enrolled)"
    );
    describe_counter!(
        names::SIGNALS,
        "Upstream signals read from herald:signals, by event and result (applied, refused)"
    );
    describe_counter!(
        names::SEQUENCE_TIMERS_RESTORED,
        "Waiting sequence steps whose timer was missing and the reconciler put back"
    );
    describe_gauge!(
        names::REDIS_VOLATILE,
        "1 when Redis has no append-only file or may evict (sending stops unless redis.allow_volatile)"
    );
    describe_gauge!(
        names::LEDGER_SUSPECT,
        "1 when the consent ledger looks wiped or restored: sending stops until an operator confirms it"
    );
    describe_counter!(
        names::TASK_RESTARTS,
        "Supervised tasks (shards, outcome writers) that died and were started again"
    );
    describe_counter!(
        names::INBOUND_UNOWNED,
        "Replies to a number no tenant owns, applied to every tenant that texted the person"
    );
    describe_counter!(
        names::CLAIMS_RENEWED,
        "Queue entries in flight whose claim was renewed, so no other instance takes them over"
    );
    describe_gauge!(
        names::REDIS_UP,
        "1 when Redis answered the last health ping"
    );
    describe_gauge!(
        names::HTTP_CONNECTIONS,
        "Open connections to the HTTP listener (bounded by http.max_connections)"
    );
    describe_counter!(
        names::HTTP_REFUSED,
        "Connections to the HTTP listener closed at once because http.max_connections were open"
    );
    describe_counter!(
        names::HTTP_TIMEOUTS,
        "HTTP connections or requests ended by a timeout, by kind (header, body, idle)"
    );
}

/// A message reached a status (sent, rejected, …).
///
/// Counter handles are cached per thread: `counter!` with labels builds and
/// hashes a key on every call, once per message otherwise. A thread-local
/// map takes no lock.
#[inline]
pub fn message_outcome(status: &'static str, reason: &'static str) {
    thread_local! {
        static COUNTERS: std::cell::RefCell<std::collections::HashMap<(&'static str, &'static str), metrics::Counter>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    COUNTERS.with(|c| {
        c.borrow_mut()
            .entry((status, reason))
            .or_insert_with(|| counter!(names::MESSAGES, "status" => status, "reason" => reason))
            .increment(1);
    });
}

/// A message of an A/B experiment reached a status: the series carry its
/// template and variant too.
pub fn message_outcome_variant(
    status: &'static str,
    reason: &'static str,
    template: &str,
    variant: &str,
) {
    counter!(names::MESSAGES, "status" => status, "reason" => reason,
        "template" => template.to_string(), "variant" => variant.to_string())
    .increment(1);
}

#[inline]
pub fn enqueue_to_send(seconds: f64) {
    static HANDLE: std::sync::OnceLock<metrics::Histogram> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| histogram!(names::ENQUEUE_TO_SEND))
        .record(seconds);
}

#[inline]
pub fn in_flight(n: usize) {
    gauge!(names::IN_FLIGHT).set(n as f64);
}

#[inline]
pub fn entries_read(kind: &'static str, n: usize) {
    counter!(names::ENTRIES_READ, "kind" => kind).increment(n as u64);
}

#[inline]
pub fn ambiguous(policy: &'static str) {
    counter!(names::AMBIGUOUS, "policy" => policy).increment(1);
}

#[inline]
pub fn redis_error(op: &'static str) {
    counter!(names::REDIS_ERRORS, "op" => op).increment(1);
}

/// Segments of a sent message, by encoding (`gsm7` / `ucs2`): two cached
/// handles, no map lookup per message.
#[inline]
pub fn segments(encoding: &'static str, n: u32) {
    static GSM7: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    static UCS2: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    let (cell, label) = if encoding == "ucs2" {
        (&UCS2, "ucs2")
    } else {
        (&GSM7, "gsm7")
    };
    cell.get_or_init(|| counter!(names::SEGMENTS, "encoding" => label))
        .increment(u64::from(n));
}

pub fn consent_changes(n: usize) {
    counter!(names::CONSENT_CHANGES).increment(n as u64);
}

/// The policy-store version this instance runs.
pub fn policy_version(v: u64) {
    gauge!(names::POLICY_VERSION).set(v as f64);
}

/// A stored policy version this instance could not compile (it stays on
/// the one it runs).
pub fn policy_rejected() {
    counter!(names::POLICY_REJECTED).increment(1);
}

pub fn consent_numbers(n: usize) {
    gauge!(names::CONSENT_NUMBERS).set(n as f64);
}

pub fn inbound(kind: &'static str) {
    counter!(names::INBOUND, "kind" => kind).increment(1);
}

pub fn policy_deferral(reason: &'static str) {
    counter!(names::POLICY_DEFERRALS, "reason" => reason).increment(1);
}

pub fn circuit_state(provider: &str, state: u8) {
    gauge!(names::CIRCUIT_STATE, "provider" => provider.to_string()).set(f64::from(state));
}

pub fn failover(from: &str, to: &str) {
    counter!(names::FAILOVERS, "from" => from.to_string(), "to" => to.to_string()).increment(1);
}

pub fn receipt(result: &'static str) {
    counter!(names::RECEIPTS, "result" => result).increment(1);
}

pub fn throttled(lane: &'static str) {
    counter!(names::THROTTLED, "lane" => lane).increment(1);
}

/// Entries whose claim the writer's heartbeat renewed.
pub fn claims_renewed(n: usize) {
    counter!(names::CLAIMS_RENEWED).increment(n as u64);
}

/// Something Herald was tracking vanished from Redis (`entry_deleted`,
/// `record_lost`, `receipt_unmatched`): recorded in the DLQ and counted.
pub fn vanished(what: &'static str, n: usize) {
    counter!(names::VANISHED, "what" => what).increment(n as u64);
}

/// An enrolment was recorded.
pub fn sequence_enrolled(schedule: &str) {
    counter!(names::SEQUENCES_ENROLLED, "schedule" => schedule.to_string()).increment(1);
}

/// A sequence cancel ran (`cancelled`, `already_ended`, `not_enrolled`).
pub fn sequence_cancel(result: &'static str) {
    counter!(names::SEQUENCE_CANCELS, "result" => result).increment(1);
}

/// A signal was applied or refused.
pub fn signal(event: &str, result: &'static str) {
    counter!(names::SIGNALS, "event" => event.to_string(), "result" => result).increment(1);
}

/// The reconciler put back waiting steps' missing timers.
pub fn sequence_timers_restored(n: u64) {
    counter!(names::SEQUENCE_TIMERS_RESTORED).increment(n);
}

/// A supervised task died and was started again.
pub fn task_restart(task: &'static str) {
    counter!(names::TASK_RESTARTS, "task" => task).increment(1);
}

/// A reply to a number no tenant owns, applied to `tenants` tenants (0:
/// none texted the person; applied to `default`).
pub fn inbound_unowned(tenants: usize) {
    let to = if tenants == 0 { "default" } else { "texted" };
    counter!(names::INBOUND_UNOWNED, "to" => to).increment(1);
}

/// A connection to the HTTP listener opened.
pub fn http_connection_opened() {
    gauge!(names::HTTP_CONNECTIONS).increment(1.0);
}

/// A connection to the HTTP listener closed.
pub fn http_connection_closed() {
    gauge!(names::HTTP_CONNECTIONS).decrement(1.0);
}

/// A connection closed at once at `http.max_connections`.
pub fn http_refused() {
    counter!(names::HTTP_REFUSED).increment(1);
}

/// An HTTP timeout: `header`, `body` or `idle`.
pub fn http_timeout(kind: &'static str) {
    counter!(names::HTTP_TIMEOUTS, "kind" => kind).increment(1);
}
