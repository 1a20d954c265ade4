//! The outcome events, Vector's way: each recorded outcome is one typed
//! event, and this is the one place that turns it into its log line and
//! its metrics (names in `telemetry::names`). The writer calls [`recorded`]
//! once a batch is in Redis, so a metric never counts an outcome that was
//! not recorded.

use super::outcome::{Outcome, OutcomeKind, Status, StatusCounts};
use crate::model::Reason;
use crate::telemetry;

/// One recorded outcome: counters, and a debug line (off by default; the
/// event itself is on `herald:events`).
pub fn recorded(o: &Outcome, counts: &StatusCounts) {
    match &o.kind {
        OutcomeKind::AckOnly => {}
        OutcomeKind::Decided(d) => decided(d, counts),
        OutcomeKind::Enrolled(e) => {
            telemetry::sequence_enrolled(&e.plan.schedule);
            e.steps.iter().for_each(|d| decided(d, counts));
            tracing::debug!(tenant = %e.parent.tenant, id = %e.parent.id, steps = e.steps.len(), "enrolment recorded");
        }
        OutcomeKind::Duplicate(m) => {
            counts.add(Status::Duplicate);
            telemetry::message_outcome("duplicate", "");
            tracing::debug!(tenant = %m.tenant, id = %m.id, "duplicate recorded");
        }
        OutcomeKind::Poison { detail } => {
            counts.add(Status::Failed);
            telemetry::message_outcome("failed", Reason::Poison.as_str());
            tracing::warn!(entry = %o.entry, partition = o.partition, detail, "poison entry sent to the DLQ");
        }
        OutcomeKind::Rejected { rejection, .. } => {
            counts.add(Status::Rejected);
            telemetry::message_outcome("rejected", rejection.reason.as_str());
            tracing::debug!(
                tenant = rejection.tenant.as_deref().unwrap_or(""),
                id = rejection.id.as_deref().unwrap_or(""),
                reason = rejection.reason.as_str(),
                entry = %o.entry,
                "rejection recorded"
            );
        }
    }
}

fn decided(d: &super::outcome::Decision, counts: &StatusCounts) {
    counts.add(d.status);
    let reason = d.reason.map_or("", Reason::as_str);
    match d
        .msg
        .template
        .as_deref()
        .and_then(|t| Some((&*t.name, t.variant.as_deref()?)))
    {
        // A message of an experiment: its series carry template and variant
        // (`herald_messages_total{status,reason,template,variant}`), instead
        // of the plain series, so a sum over all still counts it once.
        Some((template, variant)) => {
            telemetry::message_outcome_variant(d.status.as_str(), reason, template, variant)
        }
        None => telemetry::message_outcome(d.status.as_str(), reason),
    }
    match (d.status, d.reason) {
        (Status::Deferred, Some(r @ (Reason::QuietHours | Reason::FrequencyCap))) => {
            telemetry::policy_deferral(r.as_str())
        }
        (Status::Deferred, Some(Reason::Throttled(lane))) => telemetry::throttled(lane.as_str()),
        _ => {}
    }
    tracing::debug!(
        tenant = %d.msg.tenant,
        id = %d.msg.id,
        status = d.status.as_str(),
        reason,
        attempt = d.attempt,
        until = d.requeue.as_ref().and_then(|r| r.until()),
        "outcome recorded"
    );
}
