//! The per-message path, top to bottom, one batch at a time:
//!
//! 1. decode — `ingest::decode`: the entry's JSON, or a rejection;
//! 2. screen — in memory: pause, `send_at` / `expires_at`, policy
//!    (consent, quiet hours: `policy`), content (opt-out instructions,
//!    encoding, segments: `content`);
//! 3. claim — `ingest::claim`: dedupe and record the attempt before any
//!    request leaves (one pipeline per batch);
//! 4. clear — act on each claim: record duplicates, redeliveries and held
//!    messages; for the rest, decide the route once (`providers`);
//! 5. throttle — the carrier and sender token buckets (`throttle`), in
//!    memory; a full lane defers, it never blocks;
//! 6. caps — `policy::caps`: reserve frequency-cap places (one pipeline,
//!    only for messages a cap applies to);
//! 7. send — `send`: one task per message, bounded by its permit;
//! 8. outcome — `delivery::writer`: batched, atomic with the ack.
//!
//! Nothing here takes a lock or makes an unbatched Redis round trip.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::Dispatcher;
use super::config::AmbiguousPolicy;
use super::hold::{self, Hold};
use super::send::{self, Outgoing, emit, record};
use crate::clock::now_ms;
use crate::conn::Conn;
use crate::delivery::outcome::{Decision, OutcomeKind, OutcomeSender, Status, ToWriter};
use crate::ingest::claim::{self, Claim, ClaimRequest, Claimed, Intent};
use crate::ingest::decode::decode;
use crate::ingest::stream::{Entry, StreamId};
use crate::model::{Lane, Message, Reason, RejectReason, Rejection};
use crate::policy::{self, rules::CapRule};
use crate::providers::Pick;
use crate::{content, telemetry};

/// A decoded message waiting for its claim.
struct Pending {
    partition: u16,
    entry: StreamId,
    /// Read new, not taken over.
    fresh: bool,
    msg: Message,
    raw: Vec<u8>,
    /// Why it is not sent now, if it is not: decided after the claim.
    hold: Option<Hold>,
    /// Segments of the body as it will be sent.
    segments: u32,
    /// Frequency caps that apply if it is sent.
    caps: Vec<Arc<CapRule>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Pending {
    fn intent(&self) -> Intent {
        if self.hold.is_some() {
            Intent::Hold
        } else {
            Intent::Send
        }
    }
}

/// Process one batch of entries. `permits` holds one in-flight permit per
/// entry (at least `entries.len()`).
pub async fn process_batch(
    d: &Arc<Dispatcher>,
    conn: &mut Conn,
    entries: Vec<Entry>,
    permits: OwnedSemaphorePermit,
    outcomes: &OutcomeSender,
) {
    let now = now_ms();
    // The writer keeps these entries claimed until their outcomes are in.
    let reading = entries.iter().map(|e| (e.partition, e.id)).collect();
    let _ = outcomes.send(ToWriter::Reading(reading));
    // 1–2. decode and screen, in memory.
    let (pending, cancels) = screen_all(d, entries, permits, outcomes, now);
    if !cancels.is_empty() && !cancel_all(d, conn, cancels, outcomes).await {
        return;
    }
    if pending.is_empty() {
        return;
    }
    // 3. claim.
    let Some(claims) = claim_all(d, conn, &pending).await else {
        // Redis is gone and we are shutting down: the entries stay pending
        // for XAUTOCLAIM; nothing was sent.
        return;
    };
    // 4. clear: decide what the claims leave to decide; route the rest.
    let mut outgoing = clear(d, pending, claims, outcomes, now);
    // 5. throttle.
    if d.throttle.is_some() {
        throttle(d, &mut outgoing, outcomes, now);
    }
    // 6. frequency caps, counted when sent.
    if outgoing.iter().any(|o| !o.caps.is_empty()) {
        reserve_caps(d, conn, &mut outgoing, outcomes, now).await;
    }
    // 7. send, off the shard's loop.
    for o in outgoing {
        tokio::spawn(send::guarded(Arc::clone(d), outcomes.clone(), o));
    }
}

/// Decode every entry and screen the valid ones; rejections are recorded
/// at once.
fn screen_all(
    d: &Dispatcher,
    entries: Vec<Entry>,
    mut permits: OwnedSemaphorePermit,
    outcomes: &OutcomeSender,
    now: i64,
) -> (Vec<Pending>, Vec<CancelPending>) {
    let mut pending = Vec::with_capacity(entries.len());
    let mut cancels = Vec::new();
    // One load of the live policy for the batch: every message of it is
    // decided on the same version.
    let pol = d.policy.load();
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
                let raw = fields.into_bytes();
                let kind = OutcomeKind::Rejected { rejection, raw };
                emit(outcomes, entry.partition, entry.id, permit, kind);
                continue;
            }
        };
        if entry.deliveries > d.dispatch.max_deliveries {
            let detail = format!(
                "delivered {} times (dispatch.max_deliveries = {})",
                entry.deliveries, d.dispatch.max_deliveries
            );
            emit(
                outcomes,
                entry.partition,
                entry.id,
                permit,
                OutcomeKind::Poison { detail },
            );
            continue;
        }
        // A panic in the in-memory stages ends this entry, not the shard.
        let screened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decode(&raw, &d.limits).map(|mut msg| {
                let s = screen(d, &pol, &mut msg, now);
                (msg, s)
            })
        }));
        let (msg, screened) = match screened {
            Ok(Ok(screened)) => screened,
            Ok(Err(rejection)) => {
                let rejection = match crate::ingest::decode::decode_cancel(&raw) {
                    None => rejection,
                    Some(Err(r)) => r,
                    Some(Ok(c)) => {
                        cancels.push(CancelPending {
                            partition: entry.partition,
                            entry: entry.id,
                            cancel: c,
                            permit,
                        });
                        continue;
                    }
                };
                let kind = OutcomeKind::Rejected { rejection, raw };
                emit(outcomes, entry.partition, entry.id, permit, kind);
                continue;
            }
            Err(panic) => {
                let detail = format!("screening it panicked: {}", send::panic_text(&panic));
                emit(
                    outcomes,
                    entry.partition,
                    entry.id,
                    permit,
                    OutcomeKind::Poison { detail },
                );
                continue;
            }
        };
        let (hold, segments, caps) = match screened {
            Ok((segments, caps)) => (None, segments, caps),
            Err(h) => (Some(h), 0, Vec::new()),
        };
        pending.push(Pending {
            partition: entry.partition,
            entry: entry.id,
            fresh: entry.fresh,
            msg,
            raw,
            hold,
            segments,
            caps,
            permit,
        });
    }
    (pending, cancels)
}

/// A cancel entry (`{"cancel": id}`) waiting for its script.
struct CancelPending {
    partition: u16,
    entry: StreamId,
    cancel: crate::ingest::decode::CancelEntry,
    permit: Option<OwnedSemaphorePermit>,
}

/// Run the batch's cancel entries in one pipeline, then ack them: a cancel
/// is acked only once it is in Redis. `false`: Redis is gone and we are
/// shutting down (the entries stay pending; a cancel is safe to repeat).
async fn cancel_all(
    d: &Dispatcher,
    conn: &mut Conn,
    cancels: Vec<CancelPending>,
    outcomes: &OutcomeSender,
) -> bool {
    let (reanchors, cancels): (Vec<CancelPending>, Vec<CancelPending>) =
        cancels.into_iter().partition(|c| c.cancel.anchor.is_some());
    for r in reanchors {
        // Rare, and a few round trips each: one at a time.
        let Some(anchor) = r.cancel.anchor else {
            continue;
        };
        let c = &r.cancel;
        let result = loop {
            match crate::sequences::reanchor(
                conn,
                &c.tenant,
                &c.id,
                anchor,
                &d.limits,
                d.dispatch.idempotency_ttl.as_millis() as u64,
                d.events.max_len,
            )
            .await
            {
                Ok(r) => break r,
                Err(e) => {
                    telemetry::redis_error("reanchor_sequence");
                    tracing::warn!(error = %e, "re-anchoring a sequence failed; retrying");
                    if d.shutdown.is_cancelled() {
                        return false;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        };
        tracing::info!(tenant = %c.tenant, id = %c.id, ?result, "sequence re-anchor from the queue");
        emit(
            outcomes,
            r.partition,
            r.entry,
            r.permit,
            OutcomeKind::AckOnly,
        );
    }
    if cancels.is_empty() {
        return true;
    }
    let now = now_ms();
    let mut pipe = redis::pipe();
    for c in &cancels {
        let detail = c
            .cancel
            .detail
            .as_deref()
            .unwrap_or("cancelled by a queue entry");
        crate::sequences::add_cancel(
            &mut pipe,
            &c.cancel.tenant,
            &c.cancel.id,
            Reason::SequenceCancelled,
            detail,
            now,
        );
    }
    let n = cancels.len();
    let Some(replies) = crate::conn::query_retrying::<Vec<redis::Value>>(
        conn,
        &pipe,
        "cancel_sequence",
        |v: &Vec<redis::Value>| v.len() == n,
        || d.shutdown.is_cancelled(),
    )
    .await
    else {
        return false;
    };
    for (c, v) in cancels.into_iter().zip(&replies) {
        let result = crate::sequences::parse_cancel(v).map_or("unreadable", |r| r.as_str());
        telemetry::sequence_cancel(result);
        tracing::info!(tenant = %c.cancel.tenant, id = %c.cancel.id, result, "sequence cancel from the queue");
        emit(
            outcomes,
            c.partition,
            c.entry,
            c.permit,
            OutcomeKind::AckOnly,
        );
    }
    true
}

/// Everything decided in memory before the claim: pause, timing, policy and
/// content. `Ok`: the segments of the body as it will be sent and the caps
/// that apply; `Err`: why it is held. The body is rewritten in place when
/// content rules change it.
fn screen(
    d: &Dispatcher,
    pol: &policy::Policy,
    msg: &mut Message,
    now: i64,
) -> Result<(u32, Vec<Arc<CapRule>>), Hold> {
    if let Some(from) = msg.from.as_deref() {
        check_sender(d, pol, &msg.tenant, from)?;
    }
    if msg.enrol.is_some() {
        // Enrolled now, paused or not: each step is decided when due.
        return match crate::sequences::plan(pol, msg, &d.limits) {
            Ok(plan) => Err(Hold::Enrol(Box::new(plan))),
            Err((reason, detail)) => Err(Hold::Template(reason, detail)),
        };
    }
    if let Some(drop) = d.pauses.paused(&msg.tenant) {
        return Err(Hold::Paused { drop });
    }
    if let Some(h) = hold::timing(msg, now) {
        return Err(h);
    }
    // The body and category of a templated message, before the policy
    // judges it (a collections template is a collections text).
    render_template(pol, msg)?;
    // 15 U.S.C. 1692c(c), 11 U.S.C. 362: a cease stops collections texts.
    if msg.category == crate::model::Category::Collections
        && d.ceased.is_ceased(&msg.tenant, msg.to)
    {
        return Err(Hold::Ceased);
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
    let tp = pol.tenant(&msg.tenant);
    let eval = pol.evaluate_for(tp, &input, on_file);
    if eval.verdict != policy::Verdict::Allow {
        return Err(Hold::Policy(Box::new(eval)));
    }
    let prepared =
        content::prepare(&tp.content, msg, d.limits.max_body_chars).map_err(Hold::Content)?;
    let seg = prepared.segments;
    telemetry::segments(seg.encoding.as_str(), seg.segments);
    Ok((seg.segments, eval.caps))
}

/// Render a templated message's body from the in-memory policy: the
/// template's newest version (or the one named), the message's `locale`
/// with the tenant's as the fallback. A missing or ill-typed variable
/// rejects it, naming the variable; never a text with a hole in it.
fn render_template(pol: &policy::Policy, msg: &mut Message) -> Result<(), Hold> {
    let Some(tu) = msg.template.as_deref_mut() else {
        return Ok(());
    };
    if let Some(st) = msg.step.as_deref() {
        // A step's variant was picked (and its version pinned) at enrolment.
        tu.experiment.clone_from(&st.experiment);
        tu.variant.clone_from(&st.variant);
    } else if tu.version.is_none()
        && let Some(e) = pol.experiment_on(&msg.tenant, &tu.name)
    {
        // One person sees one variant: a stable pick by recipient.
        let v = e.assign(&msg.tenant, msg.to);
        tu.experiment = Some(e.name.clone());
        tu.variant = Some(v.name.clone());
        tu.name = v.template.clone();
        tu.version = Some(v.version);
    }
    let Some(t) = pol.template(&msg.tenant, &tu.name, tu.version) else {
        let which = tu
            .version
            .map_or_else(|| tu.name.to_string(), |v| format!("{}@{v}", tu.name));
        return Err(Hold::Template(
            Reason::UnknownTemplate,
            format!("tenant `{}` has no template `{which}`", msg.tenant),
        ));
    };
    let vars: serde_json::Map<String, serde_json::Value> = match &tu.vars {
        Some(raw) => serde_json::from_str(raw.get())
            .map_err(|e| Hold::Template(Reason::MissingVariable, format!("`vars`: {e}")))?,
        None => serde_json::Map::new(),
    };
    let mut body = String::new();
    t.render(
        tu.locale.as_deref(),
        &pol.tenant(&msg.tenant).locale,
        &vars,
        &mut body,
    )
    .map_err(|e| {
        Hold::Template(
            Reason::MissingVariable,
            format!("template `{}@{}`: {e}", t.name, t.version),
        )
    })?;
    tu.version = Some(t.version);
    msg.body = body;
    msg.category = t.category;
    Ok(())
}

/// A tenant may send only from its own senders (`tenants.<name>.senders`);
/// one that declared none, only from a provider's default sender no other
/// tenant owns. So replies come back to the tenant that sent, and a tenant
/// cannot send as another (docs/contracts.md#ingest, `unknown_sender`).
fn check_sender(
    d: &Dispatcher,
    pol: &policy::Policy,
    tenant: &str,
    from: &str,
) -> Result<(), Hold> {
    let owner = pol.tenant_of_sender(from);
    let allowed = if pol.declares_senders(tenant) {
        owner == Some(tenant)
    } else {
        owner.is_none_or(|o| o == tenant) && d.providers.is_default_sender(from)
    };
    if allowed {
        return Ok(());
    }
    Err(Hold::UnknownSender(match owner {
        Some(o) if o != tenant => format!("`from` {from} is a sender of another tenant"),
        _ if pol.declares_senders(tenant) => {
            format!("`from` {from} is not one of tenant `{tenant}`'s senders")
        }
        _ => format!(
            "`from` {from} is not a provider's default sender, and tenant `{tenant}` declares no senders (tenants.{tenant}.senders)"
        ),
    }))
}

/// The claim of every pending message, in one pipeline.
async fn claim_all(d: &Dispatcher, conn: &mut Conn, pending: &[Pending]) -> Option<Vec<Claimed>> {
    let batch: Vec<ClaimRequest<'_>> = pending
        .iter()
        .map(|p| ClaimRequest {
            tenant: &p.msg.tenant,
            id: &p.msg.id,
            entry: p.entry,
            intent: p.intent(),
            fresh: p.fresh,
            sequence: p.msg.step.as_deref().map(|s| &*s.sequence),
        })
        .collect();
    let ttl_ms = d.dispatch.idempotency_ttl.as_millis() as u64;
    claim::claim_batch(conn, &batch, ttl_ms, || d.shutdown.is_cancelled()).await
}

/// Act on each claim: record duplicates, entries already decided, held
/// messages and (under `ambiguous_policy = fail`) interrupted sends; route
/// the rest — the one route decision of each send.
fn clear(
    d: &Dispatcher,
    pending: Vec<Pending>,
    claims: Vec<Claimed>,
    outcomes: &OutcomeSender,
    now: i64,
) -> Vec<Outgoing> {
    let mut outgoing = Vec::with_capacity(pending.len());
    // One load of the live policy for the batch.
    let pol = d.policy.load();
    for (p, Claimed { claim, pin }) in pending.into_iter().zip(claims) {
        let Pending {
            partition,
            entry,
            fresh: _,
            msg,
            raw,
            hold,
            segments,
            caps,
            permit,
        } = p;
        let attempt = match claim {
            Claim::Duplicate => {
                let kind = OutcomeKind::Duplicate(Box::new(msg));
                emit(outcomes, partition, entry, permit, kind);
                continue;
            }
            Claim::AlreadyDone => {
                emit(outcomes, partition, entry, permit, OutcomeKind::AckOnly);
                continue;
            }
            Claim::Ended(why) => {
                let (reason, detail) = match why {
                    claim::Ended::Cancelled => {
                        (Reason::SequenceCancelled, "its sequence was cancelled")
                    }
                    claim::Ended::OptedOut => (
                        Reason::OptedOut,
                        "its sequence ended: the recipient opted out",
                    ),
                    claim::Ended::Missing => (
                        Reason::SequenceCancelled,
                        "its sequence record is gone: not sent",
                    ),
                };
                let mut dec = Decision::new(msg, Status::Cancelled, Some(reason), 0);
                dec.detail = Some(detail.into());
                dec.caps = Vec::new();
                record(outcomes, partition, entry, permit, dec);
                continue;
            }
            Claim::Proceed { attempt } => attempt,
            Claim::Redelivered { attempt } => {
                if hold.is_none() {
                    // The consumer that read this entry died while sending
                    // it: the provider may have it
                    // (docs/contracts.md#providers, ambiguous results).
                    match d.dispatch.ambiguous_policy {
                        AmbiguousPolicy::Resend => telemetry::ambiguous("resend"),
                        AmbiguousPolicy::Fail => {
                            telemetry::ambiguous("fail");
                            let mut dec = Decision::new(
                                msg,
                                Status::Failed,
                                Some(Reason::Ambiguous),
                                attempt.saturating_sub(1),
                            );
                            dec.detail = Some("redelivered after a crash during its send; dispatch.ambiguous_policy = fail".into());
                            record(outcomes, partition, entry, permit, dec);
                            continue;
                        }
                    }
                }
                attempt
            }
        };
        if let Some(Hold::Enrol(plan)) = hold {
            let steps = plan
                .steps
                .iter()
                .map(|st| {
                    let mut dec =
                        Decision::new(st.msg.clone(), Status::Deferred, Some(Reason::SendAt), 0);
                    dec.requeue = Some(crate::delivery::outcome::Requeue::at(
                        st.due,
                        st.raw.clone(),
                    ));
                    // Its first decision is in its record; the trail starts
                    // with its next.
                    dec.skip_trail = true;
                    dec
                })
                .collect();
            let e = crate::delivery::outcome::Enrolment {
                parent: msg,
                plan: *plan,
                steps,
            };
            emit(
                outcomes,
                partition,
                entry,
                permit,
                OutcomeKind::Enrolled(Box::new(e)),
            );
            continue;
        }
        if let Some(hold) = hold {
            let spread = pol.release_spread_ms;
            let dec = hold::decide(hold, msg, raw, attempt, now, spread);
            record(outcomes, partition, entry, permit, dec);
            continue;
        }
        let pin = pin.and_then(|name| d.providers.slot_index(&name));
        let route = pol.route(&msg.tenant, msg.category);
        let (slot, probe) = match d.providers.pick(route, attempt, pin, now) {
            Pick::Slot { index, probe } => (index, probe),
            Pick::AllOpen { retry_at } => {
                // Every provider of the route is failing: nothing was sent,
                // so the attempt does not count; wait for the first probe.
                let mut dec = hold::defer(
                    msg,
                    raw,
                    attempt.saturating_sub(1),
                    retry_at,
                    Reason::ProvidersUnavailable,
                );
                if dec.status == Status::Deferred {
                    dec.status = Status::Retrying;
                }
                dec.detail = Some("every provider of the route has its circuit open".into());
                record(outcomes, partition, entry, permit, dec);
                continue;
            }
        };
        let caps = if caps.is_empty() {
            Vec::new()
        } else {
            policy::caps::keys(&caps, msg.to, msg.debt_id.as_deref())
        };
        outgoing.push(Outgoing {
            partition,
            entry,
            msg,
            raw,
            attempt,
            segments,
            caps,
            slot,
            probe,
            permit,
        });
    }
    outgoing
}

/// The token-bucket stage (docs/architecture.md#throughput-control): each
/// message takes its segments from its carrier's lane and from its
/// sender's — the message's `from`, else the sending provider's default
/// sender; one that finds no room is `deferred` / `throttled` until the
/// lane's pacer gives it a slot.
fn throttle(d: &Dispatcher, sends: &mut Vec<Outgoing>, outcomes: &OutcomeSender, now: i64) {
    let Some((carriers, throttle)) = &d.throttle else {
        return;
    };
    let mut kept = Vec::with_capacity(sends.len());
    for s in sends.drain(..) {
        let carrier = carriers.resolve(s.msg.carrier.as_deref(), s.msg.to);
        let sender = s
            .msg
            .from
            .as_deref()
            .or(d.providers.slots[usize::from(s.slot)]
                .default_sender
                .as_deref());
        match throttle.admit(carrier, sender, s.segments.max(1), now) {
            crate::throttle::Admission::Go => kept.push(s),
            crate::throttle::Admission::Defer { until_ms, lane } => {
                let (lane, name) = match lane {
                    "carrier" => (Lane::Carrier, carrier.name()),
                    _ => (Lane::Sender, sender.unwrap_or("-")),
                };
                let detail = format!("the {} lane ({name}) is full", lane.as_str());
                let reason = Reason::Throttled(lane);
                s.defer(d, outcomes, until_ms, reason, Some(detail), Vec::new());
            }
        }
    }
    *sends = kept;
}

/// Reserve cap places for every send that has caps, in one pipeline; the
/// ones without room are deferred until a place frees (and checked again,
/// quiet hours included, when released).
async fn reserve_caps(
    d: &Dispatcher,
    conn: &mut Conn,
    sends: &mut Vec<Outgoing>,
    outcomes: &OutcomeSender,
    now: i64,
) {
    let batch: Vec<(&[policy::caps::CapKey], String)> = sends
        .iter()
        .filter(|s| !s.caps.is_empty())
        .map(|s| (&s.caps[..], crate::keys::member(&s.msg.tenant, &s.msg.id)))
        .collect();
    let mut free_at = policy::caps::reserve_batch(conn, &d.cap_script, &batch, now)
        .await
        .into_iter();
    drop(batch);
    let mut kept = Vec::with_capacity(sends.len());
    for s in sends.drain(..) {
        if s.caps.is_empty() {
            kept.push(s);
            continue;
        }
        let Some(at) = free_at.next().unwrap_or(Some(now + 5_000)) else {
            kept.push(s);
            continue;
        };
        let fired = policy::caps::deferred_by(&s.caps, s.msg.to);
        // The script reserves all of a message's caps or none: nothing to
        // give back.
        s.defer(d, outcomes, at, Reason::FrequencyCap, None, fired);
    }
    *sends = kept;
}
