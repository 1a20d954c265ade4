//! The per-message path, top to bottom:
//!
//! decode → validate → timing (send_at / expires_at) → policy (consent,
//! quiet hours: in-memory) → content (blocked patterns, opt-out
//! instructions, encoding, segments) → claim (dedupe + attempt record, one
//! pipeline per batch) → frequency caps (one pipeline per batch, only for
//! messages a cap applies to) → route → send (bounded) → outcome (batched,
//! atomic with the ack).
//!
//! Nothing here takes a lock or makes an unbatched Redis round trip.

use std::sync::Arc;
use std::time::Instant;

use herald_adapters::{SendError, SendRequest};
use tokio::sync::OwnedSemaphorePermit;

use crate::clock::now_ms;
use crate::config::AmbiguousPolicy;
use crate::keys;
use crate::model::{self, Category, E164, Message, RejectReason, Rejection};
use crate::outcome::{Decision, Outcome, OutcomeKind, OutcomeSender, Requeue, Status};
use crate::policy;
use crate::queue::{self, Claim, Entry, Intent, StreamId};
use crate::telemetry;

use super::Dispatcher;
use crate::providers::Pick;

/// A decoded message waiting for its claim.
struct Pending {
    partition: u16,
    entry: StreamId,
    msg: Message,
    raw: Vec<u8>,
    intent: Intent,
    /// Why it is not sent now, if it is not: decided after the claim.
    held: Option<Held>,
    /// Segments of the body as it will be sent.
    segments: u32,
    /// Frequency caps that apply if it is sent.
    caps: Vec<Arc<policy::rules::CapRule>>,
    permit: Option<OwnedSemaphorePermit>,
}

/// The in-memory stages' result for one message.
struct Screened {
    held: Option<Held>,
    segments: u32,
    caps: Vec<Arc<policy::rules::CapRule>>,
}

/// Why a valid message is not sent now.
#[derive(Debug)]
enum Held {
    /// An admin paused the tenant (control plane).
    Paused,
    /// `send_at` is ahead, or `expires_at` passed.
    Timing,
    /// The compliance policy defers or suppresses it.
    Policy(Box<policy::Evaluation>),
    /// Its content is blocked or cannot be sent.
    Content {
        status: Status,
        reason: &'static str,
        detail: String,
    },
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
        // 2. pause, timing, policy, content: all in memory.
        let mut msg = msg;
        let Screened {
            held,
            segments,
            caps,
        } = screen(d, &mut msg, now);
        let intent = if held.is_some() {
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
            held,
            segments,
            caps,
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

    // 4. act on each claim; collect the sends.
    let mut sends: Vec<Send> = Vec::with_capacity(pending.len());
    for (p, (claim, pin)) in pending.into_iter().zip(claims) {
        let Pending {
            partition,
            entry,
            msg,
            raw,
            intent,
            held,
            segments,
            caps,
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
        if let Some(held) = held {
            let dec = decide_held(d, held, msg, raw, attempt, now);
            decide(outcomes, partition, entry, permit, dec);
            continue;
        }
        let caps = if caps.is_empty() {
            Vec::new()
        } else {
            policy::caps::keys(&caps, msg.to, msg.debt_id.as_deref())
        };
        sends.push(Send {
            partition,
            entry,
            msg,
            raw,
            attempt,
            segments,
            caps,
            pin: pin.and_then(|name| d.providers.slot_index(&name)),
            permit,
        });
    }

    // 5. carrier lane and sender token buckets (in memory): a full lane
    //    defers its messages to the delayed set, never blocks the shard.
    if d.throttle.is_some() {
        throttle(d, &mut sends, outcomes, now);
    }

    // 6. frequency caps, counted when sent: reserve a place for each message
    //    a cap applies to (one pipeline), defer the ones with no room.
    if sends.iter().any(|s| !s.caps.is_empty()) {
        reserve_caps(d, conn, &mut sends, outcomes, now).await;
    }

    // 7. send, off the shard's loop: one task per message, holding its
    //    in-flight permit until the outcome is recorded.
    for s in sends {
        tokio::spawn(send_task(Arc::clone(d), outcomes.clone(), s));
    }
}

/// A message cleared for sending.
struct Send {
    partition: u16,
    entry: StreamId,
    msg: Message,
    raw: Vec<u8>,
    attempt: u32,
    segments: u32,
    caps: Vec<policy::caps::CapKey>,
    /// The provider an earlier ambiguous send went to.
    /// The provider (slot index) an earlier ambiguous send went to.
    pin: Option<u16>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Send {
    /// Defer this message to `due` without sending it: the attempt does not
    /// count (nothing reached a provider).
    fn defer(
        self,
        outcomes: &OutcomeSender,
        due: i64,
        reason: &'static str,
        detail: Option<String>,
        fired: Vec<policy::Fired>,
    ) {
        let mut dec = defer(
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
        decide(outcomes, self.partition, self.entry, self.permit, dec);
    }
}

/// Everything decided in memory before the claim: pause, timing, policy and
/// content. Returns why the message is held (if it is) and its segments.
/// The body is rewritten in place when content rules change it.
fn screen(d: &Dispatcher, msg: &mut Message, now: i64) -> Screened {
    let held = |h: Held| Screened {
        held: Some(h),
        segments: 0,
        caps: Vec::new(),
    };
    if d.pauses.is_paused(&msg.tenant) {
        return held(Held::Paused);
    }
    if timing(msg, now).is_some() {
        return held(Held::Timing);
    }
    let at = jiff::Timestamp::from_millisecond(now).unwrap_or_else(|_| jiff::Timestamp::now());
    let input = policy::Input {
        tenant: &msg.tenant,
        to: msg.to,
        category: msg.category,
        recipient_tz: msg.recipient_tz.as_deref(),
        recipient_state: msg.recipient_state.as_deref(),
        at,
        consent: None,
        explain: false,
    };
    let on_file = d.consent.lookup(&msg.tenant, msg.to);
    let tp = d.policy.tenant(&msg.tenant);
    let eval = d.policy.evaluate_for(tp, &input, on_file);
    if eval.verdict != policy::Verdict::Allow {
        return held(Held::Policy(Box::new(eval)));
    }
    match prepare_content(tp, msg, d.limits.max_body_chars) {
        Ok(segments) => Screened {
            held: None,
            segments,
            caps: eval.caps,
        },
        Err(h) => held(h),
    }
}

/// The content stage (DESIGN §6): blocked patterns, opt-out instructions,
/// smart encoding; returns the segments of the body as it will be sent.
fn prepare_content(
    tp: &policy::TenantPolicy,
    msg: &mut Message,
    max_chars: usize,
) -> Result<u32, Held> {
    use policy::content;
    if let Some(pattern) = tp.blocked.check(&msg.body) {
        return Err(Held::Content {
            status: Status::Suppressed,
            reason: "content_blocked",
            detail: format!("the body matches the tenant's blocked pattern `{pattern}`"),
        });
    }
    // Reg F 12 CFR 1006.6(e): each electronic communication carries a clear
    // opt-out; CTIA asks the same of marketing.
    if matches!(msg.category, Category::Collections | Category::Marketing)
        && let std::borrow::Cow::Owned(b) =
            content::with_opt_out(&msg.body, &tp.opt_out_instructions)
    {
        msg.body = b;
    }
    if tp.smart_encoding
        && let std::borrow::Cow::Owned(b) = content::smart_encode(&msg.body)
    {
        msg.body = b;
    }
    let chars = msg.body.chars().count();
    if chars > max_chars {
        return Err(Held::Content {
            status: Status::Rejected,
            reason: "body_too_long",
            detail: format!(
                "the body is {chars} characters with its opt-out instructions; the limit is {max_chars}"
            ),
        });
    }
    let seg = content::segments(&msg.body);
    telemetry::segments(seg.encoding.as_str(), seg.segments);
    Ok(seg.segments)
}

/// The token-bucket stage (DESIGN §7): each message takes its segments from
/// its carrier's lane and its sender's; one that finds no room is
/// `deferred` / `throttled` until the lane's pacer gives it a slot.
fn throttle(d: &Dispatcher, sends: &mut Vec<Send>, outcomes: &OutcomeSender, now: i64) {
    let Some((carriers, throttle)) = &d.throttle else {
        return;
    };
    let mut kept = Vec::with_capacity(sends.len());
    for s in sends.drain(..) {
        let carrier = carriers.resolve(s.msg.carrier.as_deref(), s.msg.to);
        let sender = match s.msg.from.as_deref() {
            Some(f) => Some(f),
            None => {
                let route = d.providers.route(&s.msg.tenant, s.msg.category);
                route
                    .first()
                    .and_then(|i| d.providers.slots[*i].default_sender.as_deref())
            }
        };
        match throttle.admit(carrier, sender, s.segments.max(1), now) {
            crate::throttle::Admission::Go => kept.push(s),
            crate::throttle::Admission::Defer { until_ms, lane } => {
                telemetry::throttled(lane);
                let detail = format!(
                    "the {lane} lane ({}) is full",
                    if lane == "carrier" {
                        carrier.name()
                    } else {
                        sender.unwrap_or("-")
                    }
                );
                s.defer(outcomes, until_ms, "throttled", Some(detail), Vec::new());
            }
        }
    }
    *sends = kept;
}

/// Reserve cap places for every send that has caps, in one pipeline; the
/// ones without room are deferred until a place frees (and checked again,
/// quiet hours included, when released). Redis errors: those messages are
/// deferred briefly rather than sent uncounted.
async fn reserve_caps(
    d: &Arc<Dispatcher>,
    conn: &mut queue::Conn,
    sends: &mut Vec<Send>,
    outcomes: &OutcomeSender,
    now: i64,
) {
    let mut pipe = redis::pipe();
    pipe.load_script(&d.cap_script).ignore();
    let mut n = 0;
    for s in sends.iter().filter(|s| !s.caps.is_empty()) {
        let member = keys::member(&s.msg.tenant, &s.msg.id);
        policy::caps::add_check(
            &mut pipe,
            &d.cap_script,
            &s.caps,
            &member,
            now,
            policy::caps::Mode::Reserve,
        );
        n += 1;
    }
    let replies: Vec<i64> = match pipe.query_async::<Vec<i64>>(conn).await {
        Ok(r) if r.len() == n => r,
        Ok(_) | Err(_) => {
            telemetry::redis_error("frequency_cap");
            vec![now + 5_000; n]
        }
    };
    let mut replies = replies.into_iter();
    let mut kept = Vec::with_capacity(sends.len());
    for s in sends.drain(..) {
        if s.caps.is_empty() {
            kept.push(s);
            continue;
        }
        let free_at = replies.next().unwrap_or(now + 5_000);
        if free_at <= 0 {
            kept.push(s);
            continue;
        }
        let mut fired = Vec::with_capacity(s.caps.len());
        for c in &s.caps {
            fired.push(policy::Fired {
                rule: Arc::clone(&c.rule.id),
                citation: Arc::clone(&c.rule.citation),
                effect: policy::Effect::Defer,
                detail: format!(
                    "{} per {} h reached for +{}",
                    c.rule.limit,
                    c.rule.window_ms / 3_600_000,
                    s.msg.to
                )
                .into(),
            });
        }
        telemetry::policy_deferral("frequency_cap");
        // The script reserves all of a message's caps or none: nothing to
        // give back.
        s.defer(outcomes, free_at, "frequency_cap", None, fired);
    }
    *sends = kept;
}

/// Decide a message held before the claim.
fn decide_held(
    d: &Dispatcher,
    held: Held,
    msg: Message,
    raw: Vec<u8>,
    attempt: u32,
    now: i64,
) -> Decision {
    match held {
        Held::Paused => {
            let mut dec = Decision::new(msg, Status::Suppressed, Some("paused"), attempt);
            dec.detail = Some("the tenant is paused (control plane)".into());
            dec
        }
        Held::Timing => hold(msg, raw, attempt, now),
        Held::Content {
            status,
            reason,
            detail,
        } => {
            let mut dec = Decision::new(msg, status, Some(reason), attempt);
            dec.detail = Some(detail);
            dec
        }
        Held::Policy(eval) => {
            let eval = *eval;
            match eval.verdict {
                policy::Verdict::Allow => {
                    // Not held: unreachable by construction; defer at once
                    // rather than send without the cap stage.
                    defer(msg, raw, attempt, now, "quiet_hours")
                }
                policy::Verdict::Suppress { reason } => {
                    let mut dec = Decision::new(msg, Status::Suppressed, Some(reason), attempt);
                    dec.detail = eval
                        .fired
                        .iter()
                        .find(|f| f.effect == policy::Effect::Suppress)
                        .map(|f| f.detail.to_string());
                    dec.fired = eval.fired;
                    dec
                }
                policy::Verdict::Defer {
                    until,
                    closes_at,
                    reason,
                } => {
                    // DESIGN §6: releases are spread over the first minutes of
                    // the window, not one burst at its opening.
                    let open = until.as_millisecond();
                    let room = (closes_at.as_millisecond() - open) / 2;
                    let spread = d.policy.release_spread_ms.min(room).max(0);
                    let due = open + spread_offset(&msg.tenant, &msg.id, spread);
                    telemetry::policy_deferral(reason);
                    let mut dec = defer(msg, raw, attempt, due, reason);
                    dec.detail = Some(format!("{} until {}", reason, until));
                    dec.fired = eval.fired;
                    dec
                }
            }
        }
    }
}

/// A deferral to `due`, or `expired` when the message's validity ends first.
fn defer(msg: Message, raw: Vec<u8>, attempt: u32, due: i64, reason: &'static str) -> Decision {
    if msg.expires_at.is_some_and(|exp| exp <= due) {
        let mut dec = Decision::new(msg, Status::Expired, Some("expires_at"), attempt);
        dec.detail = Some(format!("deferred ({reason}) past `expires_at`"));
        return dec;
    }
    let mut dec = Decision::new(msg, Status::Deferred, Some(reason), attempt);
    dec.requeue = Some(Requeue { due, raw });
    dec
}

/// A stable offset in `[0, spread)` for a message: FNV-1a of tenant and id,
/// so a redelivered deferral lands on the same instant.
fn spread_offset(tenant: &str, id: &str, spread: i64) -> i64 {
    if spread <= 0 {
        return 0;
    }
    let h = keys::fnv1a(&[tenant.as_bytes(), b":", id.as_bytes()]);
    (h % spread as u64) as i64
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

/// Claim every pending message in one pipeline, then read back the few
/// hashes the claim did not create (duplicates, redeliveries, releases) and
/// make their remaining state changes. Each round trip is retried on its
/// own while Redis is unavailable: a claim that was applied is never
/// re-run, or every message of the batch would look redelivered. `None`
/// only when shutting down.
async fn claim_all(
    d: &Dispatcher,
    conn: &mut queue::Conn,
    pending: &[Pending],
) -> Option<Vec<(Claim, Option<String>)>> {
    let ttl_ms = d.cfg.dispatch.idempotency_ttl.as_millis() as u64;
    let mut key = String::with_capacity(64);
    let mut pipe = redis::pipe();
    for p in pending {
        keys::message_into(&mut key, &p.msg.tenant, &p.msg.id);
        queue::add_claim(&mut pipe, &key, p.entry, p.intent, ttl_ms);
    }
    let values: Vec<redis::Value> = retrying(d, conn, &pipe, "claim", |v: &Vec<_>| {
        v.len() == pending.len() * queue::CLAIM_REPLIES
    })
    .await?;

    // The hashes that existed already: read what they hold.
    let mut read = redis::pipe();
    let mut existing = Vec::new();
    for (i, (replies, p)) in values.chunks(queue::CLAIM_REPLIES).zip(pending).enumerate() {
        if !queue::claim_created(replies) {
            keys::message_into(&mut key, &p.msg.tenant, &p.msg.id);
            queue::add_claim_read(&mut read, &key);
            existing.push(i);
        }
    }
    let mut found: Vec<Option<queue::Found>> = vec![None; pending.len()];
    if !existing.is_empty() {
        let replies: Vec<redis::Value> = retrying(d, conn, &read, "claim", |v: &Vec<_>| {
            v.len() == existing.len() && v.iter().all(|r| queue::parse_found(r).is_some())
        })
        .await?;
        for (i, r) in existing.iter().zip(&replies) {
            found[*i] = queue::parse_found(r);
        }
    }

    let mut follow = redis::pipe();
    let mut claims = Vec::with_capacity(pending.len());
    for ((replies, p), found) in values.chunks(queue::CLAIM_REPLIES).zip(pending).zip(found) {
        let (claim, next) = match queue::parse_claim(replies, found.as_ref(), p.entry, p.intent) {
            Some(decided) => decided,
            None => {
                // Cannot happen with the replies `retrying` accepted (the
                // count, and a read-back for every hash not created); if it
                // does, leave the entries pending rather than guess:
                // XAUTOCLAIM retries them.
                telemetry::redis_error("claim");
                tracing::warn!(entry = %p.entry, "unexpected claim reply; left pending");
                return None;
            }
        };
        if let Some(f) = next {
            keys::message_into(&mut key, &p.msg.tenant, &p.msg.id);
            f.add_to(&mut follow, &key);
        }
        claims.push((claim, found.and_then(|f| f.pin)));
    }
    if !follow.is_empty() {
        retrying::<()>(d, conn, &follow, "claim", |_| true).await?;
    }
    Some(claims)
}

/// Run `pipe` until Redis answers with a reply `valid` accepts, backing off
/// between tries; `None` only when shutting down.
async fn retrying<T: redis::FromRedisValue>(
    d: &Dispatcher,
    conn: &mut queue::Conn,
    pipe: &redis::Pipeline,
    op: &'static str,
    valid: impl Fn(&T) -> bool,
) -> Option<T> {
    let mut backoff = std::time::Duration::from_millis(50);
    loop {
        match pipe.query_async::<T>(conn).await {
            Ok(v) if valid(&v) => return Some(v),
            Ok(_) => {
                telemetry::redis_error(op);
                tracing::warn!(op, "unexpected reply from Redis; retrying");
            }
            Err(e) => {
                telemetry::redis_error(op);
                tracing::warn!(op, error = %e, "Redis round trip failed; retrying");
            }
        }
        if d.shutdown.is_cancelled() {
            return None;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
    }
}

/// Send one message and record its outcome: the task of one in-flight send.
///
/// Every in-flight send holds this future, so its size is Herald's memory
/// per send (with 20,000 in flight, each 100 bytes is 2 MB). It takes the
/// whole [`Send`] and borrows from it across the provider call, moving
/// fields out only after the last await: a struct destructured, or a value
/// passed on to an inner async fn, before an await is stored twice in the
/// state. Measured (release, `size_of_val` of this future): 2,976 bytes
/// with the earlier shape (a task destructuring its `Send` and awaiting an
/// inner `send(msg, …)`), 2,424 now; 2,328 before issues 3–4 added policy,
/// caps, pins and more providers.
async fn send_task(d: Arc<Dispatcher>, outcomes: OutcomeSender, s: Send) {
    let pick = {
        let route = d.providers.route(&s.msg.tenant, s.msg.category);
        d.providers.pick(route, s.attempt, s.pin, now_ms())
    };
    let slot = match pick {
        Pick::Slot(slot) => slot,
        Pick::AllOpen { retry_at } => {
            // Every provider of the route is failing: nothing was sent, so
            // the attempt does not count; wait for the first probe.
            let Send {
                partition,
                entry,
                msg,
                raw,
                attempt,
                permit,
                ..
            } = s;
            let mut dec = defer(
                msg,
                raw,
                attempt.saturating_sub(1),
                retry_at,
                "providers_unavailable",
            );
            if dec.status == Status::Deferred {
                dec.status = Status::Retrying;
            }
            dec.detail = Some("every provider of the route has its circuit open".into());
            decide(&outcomes, partition, entry, permit, dec);
            return;
        }
    };
    let _account_permit = match &slot.limit {
        Some(limit) => limit.clone().acquire_owned().await.ok(),
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
    let Send {
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
            dec.receipts = slot.receipts;
            dec
        }
        Err(err) => {
            // Only failures that say something about the provider's health.
            let provider_fault = match &err {
                SendError::Transient { .. } | SendError::Ambiguous { .. } => true,
                SendError::Permanent { kind, .. } => {
                    *kind == herald_adapters::PermanentKind::Unauthorized
                }
            };
            // Any other answer (an invalid number…) shows a healthy
            // provider: it counts as a success, and it must — a half-open
            // circuit waits for its probe's outcome.
            slot.breaker.record(!provider_fault, now);
            slot.latency_err.record(elapsed.as_secs_f64());
            failed_send(&d, msg, raw, attempt, &slot.name, err, now)
        }
    };
    dec.segments = dec.segments.or(Some(segments));
    dec.caps = caps;
    decide(&outcomes, partition, entry, permit, dec);
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
    let ambiguous = matches!(err, SendError::Ambiguous { .. });
    let fail = |msg: Message, reason: &'static str, detail: Option<String>| {
        let mut dec = Decision::new(msg, Status::Failed, Some(reason), attempt);
        dec.provider = Some(Arc::clone(provider));
        dec.detail = detail;
        dec
    };
    let Some(retry_after) = retry_after else {
        let carrier_opt_out = matches!(
            err,
            SendError::Permanent {
                kind: herald_adapters::PermanentKind::CarrierOptOut,
                ..
            }
        );
        let tenant = msg.tenant.clone();
        let (number, id) = (msg.to, msg.id.clone());
        let mut dec = fail(msg, reason, detail);
        if carrier_opt_out {
            // DESIGN §4: Twilio 21610 means the carrier holds an opt-out
            // (the person texted STOP to the sender): record it in the
            // ledger, all purposes, with the failed message as evidence.
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
    // DESIGN §4: an ambiguous send may have reached this provider; its
    // re-send goes nowhere else.
    dec.pin = ambiguous;
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
