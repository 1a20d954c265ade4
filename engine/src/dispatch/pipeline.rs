//! The per-message path, top to bottom:
//!
//! decode → validate → timing (send_at / expires_at) → claim (dedupe +
//! attempt record, one pipelined script call per batch) → route → send
//! (bounded) → outcome (batched, atomic with the ack).
//!
//! Nothing here takes a lock or makes an unbatched Redis round trip.

use std::sync::Arc;
use std::time::Instant;

use herald_adapters::{SendError, SendRequest};
use tokio::sync::OwnedSemaphorePermit;

use crate::config::AmbiguousPolicy;
use crate::keys;
use crate::model::{self, E164, Message, RejectReason, Rejection};
use crate::outcome::{Decision, Outcome, OutcomeKind, OutcomeSender, Requeue, Status, now_ms};
use crate::queue::{self, Claim, Entry, Intent, StreamId};
use crate::telemetry;

use super::Dispatcher;

/// A decoded message waiting for its claim.
struct Pending {
    partition: u16,
    entry: StreamId,
    msg: Message,
    raw: Vec<u8>,
    intent: Intent,
    /// The tenant is paused: decided `suppressed` / `paused` after the claim.
    paused: bool,
    permit: Option<OwnedSemaphorePermit>,
}

/// Process one batch of entries. `permits` holds one in-flight permit per
/// entry (at least `entries.len()`).
pub async fn process_batch(
    d: &Arc<Dispatcher>,
    conn: &mut queue::Conn,
    entries: Vec<Entry>,
    mut permits: OwnedSemaphorePermit,
    outcomes: &OutcomeSender,
) {
    let now = now_ms();
    let mut pending = Vec::with_capacity(entries.len());
    for entry in entries {
        // `None` only if a read returned more entries than asked for.
        let permit = permits.split(1);
        let raw = match entry.msg {
            Ok(raw) => raw,
            Err(fields) => {
                // An entry without the contract's `msg` field.
                let rejection = Rejection {
                    reason: RejectReason::MissingField,
                    detail: "stream entry has no `msg` field".into(),
                    id: None,
                    tenant: None,
                };
                emit(
                    outcomes,
                    entry.partition,
                    entry.id,
                    permit,
                    OutcomeKind::Rejected {
                        rejection,
                        raw: fields.into_bytes(),
                    },
                );
                continue;
            }
        };
        // 1. decode + validate
        let msg = match model::decode(&raw, &d.limits) {
            Ok(m) => m,
            Err(rejection) => {
                emit(
                    outcomes,
                    entry.partition,
                    entry.id,
                    permit,
                    OutcomeKind::Rejected { rejection, raw },
                );
                continue;
            }
        };
        // 2. timing: a message that is not due or already expired is held,
        //    and its claim records no send attempt.
        // An admin paused the tenant (control plane): nothing is sent.
        let paused = d.pauses.is_paused(&msg.tenant);
        let intent = if paused || timing(&msg, now).is_some() {
            Intent::Hold
        } else {
            Intent::Send
        };
        pending.push(Pending {
            partition: entry.partition,
            entry: entry.id,
            msg,
            raw,
            intent,
            paused,
            permit,
        });
    }
    drop(permits);
    if pending.is_empty() {
        return;
    }

    // 3. claim: dedupe and record the attempt before any request leaves.
    let claims = match claim_all(d, conn, &pending).await {
        Some(c) => c,
        // Redis is gone and we are shutting down: the entries stay pending
        // for XAUTOCLAIM; nothing was sent.
        None => return,
    };

    // 4. act on each claim.
    for (p, claim) in pending.into_iter().zip(claims) {
        let Pending {
            partition,
            entry,
            msg,
            raw,
            intent,
            paused,
            permit,
        } = p;
        let attempt = match claim {
            Claim::Duplicate => {
                emit(
                    outcomes,
                    partition,
                    entry,
                    permit,
                    OutcomeKind::Duplicate(Box::new(msg)),
                );
                continue;
            }
            Claim::AlreadyDone => {
                emit(outcomes, partition, entry, permit, OutcomeKind::AckOnly);
                continue;
            }
            Claim::Proceed { attempt } => attempt,
            Claim::Redelivered { attempt } => {
                if intent == Intent::Send {
                    // The consumer that read this entry died while sending it:
                    // the provider may have it (DESIGN §4, ambiguous result).
                    match d.cfg.dispatch.ambiguous_policy {
                        AmbiguousPolicy::Resend => telemetry::ambiguous("resend"),
                        AmbiguousPolicy::Fail => {
                            telemetry::ambiguous("fail");
                            let mut dec = Decision::new(
                                msg,
                                Status::Failed,
                                Some("ambiguous"),
                                attempt.saturating_sub(1),
                            );
                            dec.detail = Some("redelivered after a crash during its send; dispatch.ambiguous_policy = fail".into());
                            decide(outcomes, partition, entry, permit, dec);
                            continue;
                        }
                    }
                }
                attempt
            }
        };
        if paused {
            let mut dec = Decision::new(msg, Status::Suppressed, Some("paused"), attempt);
            dec.detail = Some("the tenant is paused (control plane)".into());
            decide(outcomes, partition, entry, permit, dec);
            continue;
        }
        if intent == Intent::Hold {
            let dec = hold(msg, raw, attempt, now);
            decide(outcomes, partition, entry, permit, dec);
            continue;
        }
        // 5. send, off the shard's loop.
        let d = Arc::clone(d);
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            let dec = send(&d, msg, raw, attempt, entry).await;
            decide(&outcomes, partition, entry, permit, dec);
        });
    }
}

/// Record a decision about a valid message.
fn decide(
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

fn emit(
    outcomes: &OutcomeSender,
    partition: u16,
    entry: StreamId,
    permit: Option<OwnedSemaphorePermit>,
    kind: OutcomeKind,
) {
    // The writer only stops after every sender is gone, so this cannot fail
    // while we hold `outcomes`; if it ever does, the entry stays pending and
    // is recovered by XAUTOCLAIM.
    let _ = outcomes.send(Outcome {
        partition,
        entry,
        kind,
        permit,
    });
}

/// Why a message cannot be sent now, if it cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timing {
    Expired,
    NotYet(i64),
}

fn timing(msg: &Message, now: i64) -> Option<Timing> {
    if let Some(exp) = msg.expires_at
        && exp <= now
    {
        return Some(Timing::Expired);
    }
    match msg.send_at {
        Some(at) if at > now => Some(Timing::NotYet(at)),
        _ => None,
    }
}

/// Decide a held message: expired, or deferred until `send_at`.
fn hold(msg: Message, raw: Vec<u8>, attempt: u32, now: i64) -> Decision {
    match timing(&msg, now) {
        Some(Timing::NotYet(at)) => {
            if msg.expires_at.is_some_and(|exp| exp <= at) {
                let mut dec = Decision::new(
                    msg,
                    Status::Expired,
                    Some("expires_before_send_at"),
                    attempt,
                );
                dec.detail = Some("`expires_at` is not after `send_at`".into());
                return dec;
            }
            let mut dec = Decision::new(msg, Status::Deferred, Some("send_at"), attempt);
            dec.requeue = Some(Requeue { due: at, raw });
            dec
        }
        // Expired, or (a race with the clock) due after all: `expired` only
        // when it really is; otherwise defer for an immediate release.
        Some(Timing::Expired) => Decision::new(msg, Status::Expired, Some("expires_at"), attempt),
        None => {
            let mut dec = Decision::new(msg, Status::Deferred, Some("send_at"), attempt);
            dec.requeue = Some(Requeue { due: now, raw });
            dec
        }
    }
}

/// Claim every pending message in one pipeline (plus one more for the rare
/// claims that still change state). Retries while Redis is unavailable;
/// `None` only when shutting down.
async fn claim_all(
    d: &Dispatcher,
    conn: &mut queue::Conn,
    pending: &[Pending],
) -> Option<Vec<Claim>> {
    let ttl_ms = d.cfg.dispatch.idempotency_ttl.as_millis() as u64;
    let mut key = String::with_capacity(64);
    let mut backoff = std::time::Duration::from_millis(50);
    loop {
        let mut pipe = redis::pipe();
        for p in pending {
            keys::message_into(&mut key, &p.msg.tenant, &p.msg.id);
            queue::add_claim(&mut pipe, &key, p.entry, p.intent, ttl_ms);
        }
        let outcome = match pipe.query_async::<Vec<redis::Value>>(conn).await {
            Ok(values) if values.len() == pending.len() * queue::CLAIM_REPLIES => {
                let decided: Option<Vec<_>> = values
                    .chunks(queue::CLAIM_REPLIES)
                    .zip(pending)
                    .map(|(replies, p)| queue::parse_claim(replies, p.entry, p.intent))
                    .collect();
                match decided {
                    Some(decided) => follow_up(conn, pending, decided).await,
                    None => Err("unexpected claim reply".to_string()),
                }
            }
            Ok(_) => Err("unexpected number of claim replies".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(claims) => return Some(claims),
            Err(e) => {
                telemetry::redis_error("claim");
                tracing::warn!(error = %e, "claiming a batch failed; retrying");
            }
        }
        if d.shutdown.is_cancelled() {
            return None;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
    }
}

/// Make the claims' remaining state changes (attempt records of redeliveries
/// and releases) before anything is sent.
async fn follow_up(
    conn: &mut queue::Conn,
    pending: &[Pending],
    decided: Vec<(Claim, Option<queue::FollowUp>)>,
) -> Result<Vec<Claim>, String> {
    let mut pipe = redis::pipe();
    let mut any = false;
    for ((_, follow), p) in decided.iter().zip(pending) {
        if let Some(f) = follow {
            f.add_to(&mut pipe, &keys::message(&p.msg.tenant, &p.msg.id));
            any = true;
        }
    }
    if any {
        pipe.query_async::<()>(conn)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(decided.into_iter().map(|(c, _)| c).collect())
}

/// Send one message and decide its outcome.
async fn send(
    d: &Dispatcher,
    msg: Message,
    raw: Vec<u8>,
    attempt: u32,
    entry: StreamId,
) -> Decision {
    let slot = d.providers.primary();
    let _account_permit = match &slot.limit {
        Some(limit) => limit.clone().acquire_owned().await.ok(),
        None => None,
    };
    let to = E164::render(msg.to);
    let req = SendRequest {
        to: to.as_str(),
        from: msg.from.as_deref(),
        body: &msg.body,
        category: msg.category.as_str(),
    };
    let started = Instant::now();
    let result = slot.provider.send(&req).await;
    let elapsed = started.elapsed();
    let now = now_ms();
    telemetry::enqueue_to_send(((now - entry.ms as i64).max(0) as f64) / 1000.0);

    match result {
        Ok(accepted) => {
            slot.latency_ok.record(elapsed.as_secs_f64());
            let mut dec = Decision::new(msg, Status::Sent, None, attempt);
            dec.provider = Some(Arc::clone(&slot.name));
            dec.provider_id = Some(accepted.provider_id);
            dec.segments = accepted.segments;
            dec
        }
        Err(err) => {
            slot.latency_err.record(elapsed.as_secs_f64());
            failed_send(d, msg, raw, attempt, &slot.name, err, now)
        }
    }
}

/// A failed send: retry through the delayed set when that is safe and there
/// is time and attempts left, else fail.
fn failed_send(
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
        SendError::Ambiguous { .. } => match d.cfg.dispatch.ambiguous_policy {
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
    let reason = err.reason();
    let detail = Some(err.to_string());
    let fail = |msg: Message, reason: &'static str, detail: Option<String>| {
        let mut dec = Decision::new(msg, Status::Failed, Some(reason), attempt);
        dec.provider = Some(Arc::clone(provider));
        dec.detail = detail;
        dec
    };
    let Some(retry_after) = retry_after else {
        return fail(msg, reason, detail);
    };
    if attempt >= d.cfg.dispatch.max_attempts {
        return fail(msg, "attempts_exhausted", detail);
    }
    let delay = d
        .cfg
        .dispatch
        .retry
        .delay(attempt, rand::random::<f64>(), retry_after);
    let due = now + delay.as_millis() as i64;
    if msg.expires_at.is_some_and(|exp| exp <= due) {
        let mut dec = Decision::new(msg, Status::Expired, Some("expires_at"), attempt);
        dec.detail = detail;
        return dec;
    }
    let mut dec = Decision::new(msg, Status::Retrying, Some(reason), attempt);
    dec.provider = Some(Arc::clone(provider));
    dec.detail = detail;
    dec.requeue = Some(Requeue { due, raw });
    dec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(send_at: Option<i64>, expires_at: Option<i64>) -> Message {
        let mut m = model::decode(
            br#"{"id":"t","to":"+14155552671","body":"hi"}"#,
            &Default::default(),
        )
        .expect("valid");
        m.send_at = send_at;
        m.expires_at = expires_at;
        m
    }

    #[test]
    fn timing_table() {
        let now = 1_000_000;
        let cases = [
            (None, None, None),
            (Some(now - 1), None, None),
            (Some(now), None, None),
            (Some(now + 5), None, Some(Timing::NotYet(now + 5))),
            (None, Some(now), Some(Timing::Expired)),
            (None, Some(now + 1), None),
            (Some(now + 5), Some(now - 1), Some(Timing::Expired)),
        ];
        for (send_at, expires_at, want) in cases {
            assert_eq!(
                timing(&msg(send_at, expires_at), now),
                want,
                "{send_at:?} {expires_at:?}"
            );
        }
    }

    #[test]
    fn hold_defers_until_send_at_or_expires() {
        let now = 1_000_000;
        let d = hold(msg(Some(now + 60_000), None), b"raw".to_vec(), 0, now);
        assert_eq!(d.status, Status::Deferred);
        assert_eq!(d.requeue.as_ref().map(|r| r.due), Some(now + 60_000));
        let d = hold(msg(Some(now + 60_000), Some(now + 30_000)), vec![], 0, now);
        assert_eq!(d.status, Status::Expired);
        assert_eq!(d.reason, Some("expires_before_send_at"));
        let d = hold(msg(None, Some(now - 1)), vec![], 0, now);
        assert_eq!(d.status, Status::Expired);
    }
}
