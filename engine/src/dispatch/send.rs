//! The send stage: one task per message cleared for sending, holding its
//! in-flight permit until the outcome is recorded; the provider's answer
//! becomes `sent`, `retrying` (through the delayed set) or `failed`.

use std::sync::Arc;
use std::time::Instant;

use herald_adapters::{PermanentKind, SendError, SendRequest};
use tokio::sync::OwnedSemaphorePermit;

use super::Dispatcher;
use super::config::AmbiguousPolicy;
use super::hold;
use crate::clock::now_ms;
use crate::delivery::outcome::{
    Decision, Outcome, OutcomeKind, OutcomeSender, Requeue, Status, ToWriter,
};
use crate::ingest::stream::StreamId;
use crate::model::{Category, E164, Lane, Message, Reason};
use crate::policy;
use crate::telemetry;

/// A message cleared for sending, with its route decided.
pub(super) struct Outgoing {
    pub partition: u16,
    pub entry: StreamId,
    pub msg: Message,
    pub raw: Vec<u8>,
    pub attempt: u32,
    pub segments: u32,
    /// Frequency caps it counts against once sent.
    pub caps: Vec<policy::caps::CapKey>,
    /// The provider it goes to (slot index): chosen once, so the sender
    /// lane it is throttled in is the sending provider's.
    pub slot: u16,
    /// Its send is the half-open circuit's probe.
    pub probe: bool,
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Outgoing {
    /// Defer this message to `due` without sending it: the attempt does not
    /// count (nothing reached a provider), and a circuit probe it held is
    /// given back.
    pub fn defer(
        self,
        d: &Dispatcher,
        outcomes: &OutcomeSender,
        due: i64,
        reason: Reason,
        detail: Option<String>,
        fired: Vec<policy::Fired>,
    ) {
        if self.probe {
            d.providers.slots[usize::from(self.slot)]
                .breaker
                .return_probe();
        }
        let mut dec = hold::defer(
            self.msg,
            self.raw,
            self.attempt.saturating_sub(1),
            due,
            reason,
        );
        if detail.is_some() {
            dec.detail = detail;
        }
        dec.fired = fired;
        record(outcomes, self.partition, self.entry, self.permit, dec);
    }
}

impl Outgoing {
    /// Reject the message without a request (its cap places are given
    /// back by the writer).
    fn reject(self, d: &Dispatcher, outcomes: &OutcomeSender, reason: Reason, detail: String) {
        if self.probe {
            d.providers.slots[usize::from(self.slot)]
                .breaker
                .return_probe();
        }
        let mut dec = Decision::new(self.msg, Status::Rejected, Some(reason), self.attempt);
        dec.detail = Some(detail);
        dec.caps = self.caps;
        record(outcomes, self.partition, self.entry, self.permit, dec);
    }
}

/// Record a decision about a valid message.
pub(super) fn record(
    outcomes: &OutcomeSender,
    partition: u16,
    entry: StreamId,
    permit: Option<OwnedSemaphorePermit>,
    dec: Decision,
) {
    emit(
        outcomes,
        partition,
        entry,
        permit,
        OutcomeKind::Decided(Box::new(dec)),
    );
}

/// Hand an outcome to the shard's writer.
pub(super) fn emit(
    outcomes: &OutcomeSender,
    partition: u16,
    entry: StreamId,
    permit: Option<OwnedSemaphorePermit>,
    kind: OutcomeKind,
) {
    // The writer only stops after every sender is gone, so this cannot fail
    // while we hold `outcomes`; if it ever does, the entry stays pending and
    // is recovered by XAUTOCLAIM.
    let _ = outcomes.send(ToWriter::Outcome(Outcome {
        partition,
        entry,
        kind,
        permit,
    }));
}

/// [`send_task`], with a panic turned into a poison outcome: the entry goes
/// to the DLQ and its message is `failed` / `poison`, and the daemon goes on.
pub(super) async fn guarded(d: Arc<Dispatcher>, outcomes: OutcomeSender, s: Outgoing) {
    use futures::FutureExt;
    let (partition, entry) = (s.partition, s.entry);
    let watch = outcomes.clone();
    let task = std::panic::AssertUnwindSafe(send_task(d, outcomes, s));
    if let Err(panic) = task.catch_unwind().await {
        let detail = format!("sending it panicked: {}", panic_text(&panic));
        emit(
            &watch,
            partition,
            entry,
            None,
            OutcomeKind::Poison { detail },
        );
    }
}

/// A panic's message, when it has one.
pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// Send one message and record its outcome: the task of one in-flight send.
///
/// Every in-flight send holds this future, so its size is Herald's memory
/// per send (with 20,000 in flight, each 100 bytes is 2 MB). It takes the
/// whole [`Outgoing`] and borrows from it across the provider call, moving
/// fields out only after the last await: a struct destructured, or a value
/// passed on to an inner async fn, before an await is stored twice in the
/// state. Measured (release, `size_of_val` of this future): 2,976 bytes
/// with the earlier shape (a task destructuring its message and awaiting an
/// inner `send(msg, …)`), 2,424 later; 2,328 before issues 3–4 added
/// policy, caps, pins and more providers.
pub(super) async fn send_task(d: Arc<Dispatcher>, outcomes: OutcomeSender, s: Outgoing) {
    let slot = &d.providers.slots[usize::from(s.slot)];
    let pol = d.policy.load_full();
    // Without `from` the provider's default sender is used: never one that
    // another tenant owns, or that tenant would get this one's replies —
    // a STOP among them (docs/contracts.md#ingest, `unknown_sender`).
    if s.msg.from.is_none()
        && let Some(default) = slot.default_sender.as_deref()
        && let Some(owner) = pol.tenant_of_sender(default)
        && owner != s.msg.tenant
    {
        let detail = format!(
            "provider `{}` sends from {default} by default, a sender of tenant `{owner}`; give tenant `{}` a `from` of its own",
            slot.name, s.msg.tenant
        );
        s.reject(&d, &outcomes, Reason::UnknownSender, detail);
        return;
    }
    // The account's concurrency bound: waited for at most half of
    // `claim_idle`, so no wait on the path lets the entry look abandoned;
    // past it the message goes back to the delayed set, unsent.
    let _account_permit = match &slot.limit {
        Some(limit) => {
            let wait = d.dispatch.claim_idle / 2;
            match tokio::time::timeout(wait, limit.clone().acquire_owned()).await {
                Ok(permit) => permit.ok(),
                Err(_) => {
                    let detail = format!(
                        "provider `{}` stayed at its max_concurrency for {} ms",
                        slot.name,
                        wait.as_millis()
                    );
                    let due = now_ms() + 1_000;
                    let reason = Reason::Throttled(Lane::Account);
                    s.defer(&d, &outcomes, due, reason, Some(detail), Vec::new());
                    return;
                }
            }
        }
        None => None,
    };
    let started = Instant::now();
    let result = {
        let to = E164::render(s.msg.to);
        let req = SendRequest {
            to: to.as_str(),
            from: s.msg.from.as_deref(),
            body: &s.msg.body,
            category: s.msg.category.as_str(),
        };
        slot.provider.send(&req).await
    };
    let elapsed = started.elapsed();
    let now = now_ms();
    let Outgoing {
        partition,
        entry,
        msg,
        raw,
        attempt,
        segments,
        caps,
        permit,
        ..
    } = s;
    telemetry::enqueue_to_send(((now - entry.ms as i64).max(0) as f64) / 1000.0);

    let mut dec = match result {
        Ok(accepted) => {
            slot.breaker.record(true, now);
            slot.latency_ok.record(elapsed.as_secs_f64());
            let mut dec = Decision::new(msg, Status::Sent, None, attempt);
            dec.provider = Some(Arc::clone(&slot.name));
            dec.provider_id = Some(accepted.provider_id);
            dec.segments = accepted.segments;
            dec.receipts = slot.receipts.then(|| slot.provider.kind());
            let sender = dec.msg.from.as_deref().or(slot.default_sender.as_deref());
            dec.remember_recipient = sender.is_none_or(|s| pol.tenant_of_sender(s).is_none());
            dec
        }
        Err(err) => {
            // Only failures that say something about the provider's health.
            let provider_fault = match &err {
                SendError::Transient { .. } | SendError::Ambiguous { .. } => true,
                SendError::Permanent { kind, .. } => *kind == PermanentKind::Unauthorized,
            };
            // Any other answer (an invalid number…) shows a healthy
            // provider: it counts as a success, and it must — a half-open
            // circuit waits for its probe's outcome.
            slot.breaker.record(!provider_fault, now);
            slot.latency_err.record(elapsed.as_secs_f64());
            failed(&d, msg, raw, attempt, &slot.name, err, now)
        }
    };
    dec.segments = dec.segments.or(Some(segments));
    dec.caps = caps;
    record(&outcomes, partition, entry, permit, dec);
}

/// The reason a provider's refusal is recorded with.
fn reason_of(err: &SendError) -> Reason {
    match err {
        SendError::Transient { .. } => Reason::ProviderTransient,
        SendError::Permanent { kind, .. } => match kind {
            PermanentKind::InvalidNumber => Reason::InvalidNumber,
            PermanentKind::CarrierOptOut => Reason::CarrierOptOut,
            PermanentKind::Unauthorized => Reason::ProviderUnauthorized,
            PermanentKind::Other => Reason::ProviderRejected,
        },
        SendError::Ambiguous { .. } => Reason::Ambiguous,
    }
}

/// A failed send: retry through the delayed set when that is safe and there
/// is time and attempts left, else fail.
fn failed(
    d: &Dispatcher,
    msg: Message,
    raw: Vec<u8>,
    attempt: u32,
    provider: &Arc<str>,
    err: SendError,
    now: i64,
) -> Decision {
    let retry_after = match &err {
        SendError::Transient { retry_after, .. } => Some(*retry_after),
        SendError::Ambiguous { .. } => match d.dispatch.ambiguous_policy {
            // The provider may have the message: re-sending risks a second
            // text, so only when the operator chose that (counted).
            AmbiguousPolicy::Resend => {
                telemetry::ambiguous("resend");
                Some(None)
            }
            AmbiguousPolicy::Fail => {
                telemetry::ambiguous("fail");
                None
            }
        },
        SendError::Permanent { .. } => None,
    };
    let reason = reason_of(&err);
    let detail = Some(err.to_string());
    let ambiguous = matches!(err, SendError::Ambiguous { .. });
    let fail = |msg: Message, reason: Reason, detail: Option<String>| {
        let mut dec = Decision::new(msg, Status::Failed, Some(reason), attempt);
        dec.provider = Some(Arc::clone(provider));
        dec.detail = detail;
        dec
    };
    let Some(retry_after) = retry_after else {
        let carrier_opt_out = matches!(
            err,
            SendError::Permanent {
                kind: PermanentKind::CarrierOptOut,
                ..
            }
        );
        let tenant = msg.tenant.clone();
        let (number, id) = (msg.to, msg.id.clone());
        let mut dec = fail(msg, reason, detail);
        if carrier_opt_out {
            // docs/contracts.md#providers: Twilio 21610 means the carrier
            // holds an opt-out (the person texted STOP to the sender):
            // record it in the ledger, all purposes, with the failed
            // message as evidence.
            dec.consent = Some(crate::consent::ledger::OwnedChange {
                tenant,
                number,
                purposes: Category::ALL.to_vec(),
                state: crate::consent::replica::PurposeState::Revoked,
                source: "carrier",
                by: provider.to_string(),
                evidence: format!("{provider} refused message `{id}`: {err}"),
                at_ms: now,
            });
        }
        return dec;
    };
    if attempt >= d.dispatch.max_attempts {
        return fail(msg, Reason::AttemptsExhausted, detail);
    }
    let delay = d
        .dispatch
        .retry
        .delay(attempt, rand::random::<f64>(), retry_after);
    let due = now + delay.as_millis() as i64;
    if msg.expires_at.is_some_and(|exp| exp <= due) {
        let mut dec = Decision::new(msg, Status::Expired, Some(Reason::ExpiresAt), attempt);
        dec.detail = detail;
        return dec;
    }
    let mut dec = Decision::new(msg, Status::Retrying, Some(reason), attempt);
    dec.provider = Some(Arc::clone(provider));
    dec.detail = detail;
    dec.requeue = Some(Requeue::at(due, raw));
    // docs/contracts.md#providers: an ambiguous send may have reached this
    // provider; its re-send goes nowhere else.
    dec.pin = ambiguous;
    dec
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's reasons spell what the adapters' classification does.
    #[test]
    fn send_error_reasons_match_the_adapters() {
        let errors = [
            SendError::Transient {
                code: Some(503),
                message: String::new(),
                retry_after: None,
            },
            SendError::Ambiguous {
                message: String::new(),
            },
            SendError::Permanent {
                kind: PermanentKind::InvalidNumber,
                code: None,
                message: String::new(),
            },
            SendError::Permanent {
                kind: PermanentKind::CarrierOptOut,
                code: None,
                message: String::new(),
            },
            SendError::Permanent {
                kind: PermanentKind::Unauthorized,
                code: None,
                message: String::new(),
            },
            SendError::Permanent {
                kind: PermanentKind::Other,
                code: None,
                message: String::new(),
            },
        ];
        for e in errors {
            assert_eq!(reason_of(&e).as_str(), e.reason(), "{e:?}");
        }
    }
}
