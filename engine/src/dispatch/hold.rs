//! Why a valid message is not sent now — a [`Hold`] — and the decision
//! that records it: `deferred` to a later instant through the delayed set,
//! or `expired`, `suppressed`, `rejected`. "Hold" is the dispatch path's
//! one word for "not now"; `deferred` is the status a hold may end in.

use crate::content::Refused;
use crate::delivery::outcome::{Decision, Requeue, Status};
use crate::keys;
use crate::model::{Message, Reason};
use crate::policy::{self, Evaluation, Verdict};

/// Why a valid message is not sent now.
#[derive(Debug)]
pub enum Hold {
    /// An admin paused the tenant (control plane): held until a resume, or
    /// suppressed when the pause says `drop`.
    Paused { drop: bool },
    /// `send_at` (ms) is ahead.
    NotYet(i64),
    /// `expires_at` passed.
    Expired,
    /// The compliance policy defers or suppresses it.
    Policy(Box<Evaluation>),
    /// Its content is blocked or cannot be sent.
    Content(Refused),
    /// Its `from` is not one of the tenant's senders.
    UnknownSender(String),
    /// Its template is unknown or cannot be rendered (`rejected` /
    /// `unknown_template`, `missing_variable`).
    Template(Reason, String),
    /// A collections text to a number under a cease (`signals`).
    Ceased,
    /// An enrolment: it is expanded into its steps, never sent itself.
    Enrol(Box<crate::sequences::Plan>),
}

/// The reason an expiry gets: a sequence step's validity is its
/// `max_late`.
fn expired_reason(msg: &Message) -> Reason {
    if msg.step.is_some() {
        Reason::MaxLate
    } else {
        Reason::ExpiresAt
    }
}

/// `send_at` and `expires_at` against `now`: a hold, or `None` to go on.
pub fn timing(msg: &Message, now: i64) -> Option<Hold> {
    if let Some(exp) = msg.expires_at
        && exp <= now
    {
        return Some(Hold::Expired);
    }
    match msg.send_at {
        Some(at) if at > now => Some(Hold::NotYet(at)),
        _ => None,
    }
}

/// The decision for a held message. `release_spread_ms`: how far past a
/// window's opening quiet-hour deferrals are spread.
pub fn decide(
    hold: Hold,
    msg: Message,
    raw: Vec<u8>,
    attempt: u32,
    now: i64,
    release_spread_ms: i64,
) -> Decision {
    match hold {
        Hold::Paused { drop: true } => {
            let mut dec = Decision::new(msg, Status::Suppressed, Some(Reason::Paused), attempt);
            dec.detail = Some("the tenant is paused with drop (control plane)".into());
            dec
        }
        Hold::Paused { drop: false } => {
            // Held with no instant: released when the tenant is resumed,
            // then decided again (expiry, quiet hours, caps, consent).
            let mut dec = Decision::new(msg, Status::Deferred, Some(Reason::Paused), attempt);
            dec.detail = Some("the tenant is paused (control plane); held until resumed".into());
            dec.requeue = Some(Requeue {
                due: now,
                raw,
                held: true,
            });
            dec
        }
        Hold::NotYet(at) => {
            if msg.expires_at.is_some_and(|exp| exp <= at) {
                let mut dec = Decision::new(
                    msg,
                    Status::Expired,
                    Some(Reason::ExpiresBeforeSendAt),
                    attempt,
                );
                dec.detail = Some("`expires_at` is not after `send_at`".into());
                return dec;
            }
            let mut dec = Decision::new(msg, Status::Deferred, Some(Reason::SendAt), attempt);
            dec.requeue = Some(Requeue::at(at, raw));
            dec
        }
        Hold::Expired => {
            let reason = expired_reason(&msg);
            Decision::new(msg, Status::Expired, Some(reason), attempt)
        }
        Hold::Ceased => {
            let mut dec = Decision::new(msg, Status::Suppressed, Some(Reason::Ceased), attempt);
            dec.detail = Some(
                "collections texts to this number have ceased (a cease request, bankruptcy or dispute signal)"
                    .into(),
            );
            dec
        }
        Hold::Enrol(_) => {
            // The pipeline records enrolments itself (`Enrolled`); one that
            // reaches here is a defect, recorded rather than dropped.
            let mut dec = Decision::new(
                msg,
                Status::Rejected,
                Some(Reason::UnknownSchedule),
                attempt,
            );
            dec.detail = Some("an enrolment reached the hold decision".into());
            dec
        }
        Hold::Template(reason, detail) => {
            let mut dec = Decision::new(msg, Status::Rejected, Some(reason), attempt);
            dec.detail = Some(detail);
            dec
        }
        Hold::UnknownSender(detail) => {
            let mut dec =
                Decision::new(msg, Status::Rejected, Some(Reason::UnknownSender), attempt);
            dec.detail = Some(detail);
            dec
        }
        Hold::Content(refused) => {
            let (status, reason) = match refused {
                Refused::Blocked { .. } => (Status::Suppressed, Reason::ContentBlocked),
                Refused::TooLong { .. } => (Status::Rejected, Reason::BodyTooLong),
            };
            let mut dec = Decision::new(msg, status, Some(reason), attempt);
            dec.detail = Some(refused.detail());
            dec
        }
        Hold::Policy(eval) => {
            let eval = *eval;
            match eval.verdict {
                // Not held: unreachable by construction; defer at once
                // rather than send without the cap stage.
                Verdict::Allow => defer(msg, raw, attempt, now, Reason::QuietHours),
                Verdict::Suppress { reason } => {
                    let mut dec = Decision::new(msg, Status::Suppressed, Some(reason), attempt);
                    dec.detail = eval
                        .fired
                        .iter()
                        .find(|f| f.effect == policy::Effect::Suppress)
                        .map(|f| f.detail.to_string());
                    dec.fired = eval.fired;
                    dec
                }
                Verdict::Defer {
                    until,
                    closes_at,
                    reason,
                } => {
                    // docs/compliance.md#quiet-hours: releases are spread
                    // over the first minutes of the window, not one burst at
                    // its opening.
                    let open = until.as_millisecond();
                    let room = (closes_at.as_millisecond() - open) / 2;
                    let spread = release_spread_ms.min(room).max(0);
                    let due = open + spread_offset(&msg.tenant, &msg.id, spread);
                    let mut dec = defer(msg, raw, attempt, due, reason);
                    dec.detail = Some(format!("{} until {}", reason.as_str(), until));
                    dec.fired = eval.fired;
                    dec
                }
            }
        }
    }
}

/// A deferral to `due`, or `expired` when the message's validity ends first.
pub fn defer(msg: Message, raw: Vec<u8>, attempt: u32, due: i64, reason: Reason) -> Decision {
    if msg.expires_at.is_some_and(|exp| exp <= due) {
        let reason = expired_reason(&msg);
        let mut dec = Decision::new(msg, Status::Expired, Some(reason), attempt);
        dec.detail = Some(format!("deferred ({}) past `expires_at`", reason.as_str()));
        return dec;
    }
    let mut dec = Decision::new(msg, Status::Deferred, Some(reason), attempt);
    dec.requeue = Some(Requeue::at(due, raw));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(send_at: Option<i64>, expires_at: Option<i64>) -> Message {
        let mut m = crate::ingest::decode::decode(
            br#"{"id":"t","to":"+14155552671","body":"hi"}"#,
            &Default::default(),
        )
        .expect("valid");
        m.send_at = send_at;
        m.expires_at = expires_at;
        m
    }

    #[derive(Debug, PartialEq)]
    enum Timing {
        Expired,
        NotYet(i64),
    }

    fn timing_of(m: &Message, now: i64) -> Option<Timing> {
        match timing(m, now) {
            None => None,
            Some(Hold::Expired) => Some(Timing::Expired),
            Some(Hold::NotYet(at)) => Some(Timing::NotYet(at)),
            Some(other) => panic!("not a timing hold: {other:?}"),
        }
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
                timing_of(&msg(send_at, expires_at), now),
                want,
                "{send_at:?} {expires_at:?}"
            );
        }
    }

    #[test]
    fn hold_defers_until_send_at_or_expires() {
        let now = 1_000_000;
        let held = |m: Message| {
            let hold = timing(&m, now).expect("held");
            decide(hold, m, b"raw".to_vec(), 0, now, 0)
        };
        let d = held(msg(Some(now + 60_000), None));
        assert_eq!(d.status, Status::Deferred);
        assert_eq!(d.requeue.as_ref().map(|r| r.due), Some(now + 60_000));
        let d = held(msg(Some(now + 60_000), Some(now + 30_000)));
        assert_eq!(d.status, Status::Expired);
        assert_eq!(d.reason, Some(Reason::ExpiresBeforeSendAt));
        let d = held(msg(None, Some(now - 1)));
        assert_eq!(d.status, Status::Expired);
    }
}
