//! What the mock does with one valid request: a magic `To` number decides it
//! outright; any other number rolls the rate knobs of [`MockSettings`].
//!
//! Deciding the whole plan up front, in one pure function, keeps the serving
//! code a straight line and lets the unit tests drive every branch with
//! scripted rolls instead of randomness.

use super::config::MockSettings;

/// The behaviour picked for one valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    /// Answer `slow_delay` late.
    pub(super) slow: bool,
    pub(super) answer: Answer,
    /// The status callbacks of the message, if it is accepted and callbacks
    /// are on.
    pub(super) receipt: Receipt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// `201 Created` with a Message resource.
    Accept,
    /// `429` / 20429 with `Retry-After`.
    RateLimited,
    ServerError(ServerError),
    /// Read the request, then close without answering; not accepted.
    Drop,
    /// Accept the message (recorded, callbacks follow), then close without
    /// answering: the message is out although the client saw a failure, the
    /// case where a re-send is a duplicate SMS.
    AcceptThenDrop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerError {
    /// `500` / 20500.
    Internal,
    /// `503` / 20503.
    Unavailable,
}

/// A `MessageStatus` Twilio reports in a status callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MessageStatus {
    Sent,
    Delivered,
    /// The carrier could not deliver it; `ErrorCode` says why.
    Undelivered(u32),
    /// Twilio could not send it at all: there is no `sent` before it.
    Failed(u32),
}

impl MessageStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered(_) => "undelivered",
            MessageStatus::Failed(_) => "failed",
        }
    }

    pub(super) fn error_code(self) -> Option<u32> {
        match self {
            MessageStatus::Undelivered(code) | MessageStatus::Failed(code) => Some(code),
            MessageStatus::Sent | MessageStatus::Delivered => None,
        }
    }
}

/// The status callbacks of one accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Receipt {
    /// `Delivered`, `Undelivered` or `Failed`.
    pub(super) final_status: MessageStatus,
    /// POST every callback twice.
    pub(super) duplicate: bool,
    /// POST the final status before `sent`.
    pub(super) reorder: bool,
}

impl Receipt {
    pub(super) const DELIVERED: Receipt = Receipt {
        final_status: MessageStatus::Delivered,
        duplicate: false,
        reorder: false,
    };

    /// The statuses in the order they are POSTed (each once; duplicates are
    /// the sender's business): `sent` then the final status, or the reverse
    /// when reordered; a lone `failed`, which has no `sent` to swap with.
    pub(super) fn sequence(self) -> impl Iterator<Item = MessageStatus> {
        let pair = match self.final_status {
            MessageStatus::Failed(_) => [Some(self.final_status), None],
            last if self.reorder => [Some(last), Some(MessageStatus::Sent)],
            last => [Some(MessageStatus::Sent), Some(last)],
        };
        pair.into_iter().flatten()
    }

    /// Whether [`Receipt::sequence`] puts the final status first.
    pub(super) fn is_reordered(self) -> bool {
        self.reorder && !matches!(self.final_status, MessageStatus::Failed(_))
    }
}

/// `ErrorCode`s of an undelivered message picked by `undelivered_rate`:
/// 30003 unreachable handset, 30005 unknown handset, 30007 carrier filtering
/// (twilio.com/docs/api/errors).
const UNDELIVERED_CODES: [u32; 3] = [30003, 30005, 30007];

const fn answer(answer: Answer) -> Plan {
    Plan {
        slow: false,
        answer,
        receipt: Receipt::DELIVERED,
    }
}

const fn receipt(final_status: MessageStatus, duplicate: bool, reorder: bool) -> Plan {
    Plan {
        slow: false,
        answer: Answer::Accept,
        receipt: Receipt {
            final_status,
            duplicate,
            reorder,
        },
    }
}

/// Magic `To` numbers of the fault rules, in Twilio's test range
/// (`+1500555xxxx`, never a real handset). The validation magic numbers
/// (`+15005550001` → 21211 …) are checked earlier, with the form.
const MAGIC_NUMBERS: [(&str, Plan); 12] = [
    ("+15005550429", answer(Answer::RateLimited)),
    (
        "+15005550500",
        answer(Answer::ServerError(ServerError::Internal)),
    ),
    (
        "+15005550503",
        answer(Answer::ServerError(ServerError::Unavailable)),
    ),
    ("+15005550555", answer(Answer::Drop)),
    ("+15005550556", answer(Answer::AcceptThenDrop)),
    (
        "+15005550777",
        Plan {
            slow: true,
            ..answer(Answer::Accept)
        },
    ),
    (
        "+15005550030",
        receipt(MessageStatus::Undelivered(30003), false, false),
    ),
    (
        "+15005550031",
        receipt(MessageStatus::Undelivered(30005), false, false),
    ),
    (
        "+15005550032",
        receipt(MessageStatus::Undelivered(30007), false, false),
    ),
    // 30001 queue overflow: Twilio drops it before sending, status `failed`.
    (
        "+15005550033",
        receipt(MessageStatus::Failed(30001), false, false),
    ),
    (
        "+15005550021",
        receipt(MessageStatus::Delivered, false, true),
    ),
    (
        "+15005550022",
        receipt(MessageStatus::Delivered, true, false),
    ),
];

/// The rules above for `--help`; the module documentation has the same table.
pub const RULES_HELP: &str = "\
Magic `To` numbers (each decides its message's whole behaviour; rates apply to all other numbers):
  +15005550001  400 / 21211 invalid number      +15005550002  400 / 21612 cannot route
  +15005550003  400 / 21408 region not enabled  +15005550004  400 / 21610 recipient opted out
  +15005550009  400 / 21614 not a mobile number
  +15005550429  429 / 20429 with Retry-After: --retry-after-secs
  +15005550500  500 / 20500                     +15005550503  503 / 20503
  +15005550555  request read, connection closed without an answer (HTTP/2: stream reset);
                not accepted
  +15005550556  accepted (recorded, callbacks follow), then closed without an answer
  +15005550777  accepted, answered --slow-ms late (after --latency-ms)
  +15005550030  accepted; callbacks `sent`, then `undelivered` with ErrorCode 30003
  +15005550031  likewise with ErrorCode 30005    +15005550032  likewise with ErrorCode 30007
  +15005550033  accepted; one callback: `failed` with ErrorCode 30001
  +15005550021  accepted; callbacks `delivered` before `sent`
  +15005550022  accepted; every callback POSTed twice
Magic `From` numbers: +15005550001 → 21212, +15005550007 → 21606, +15005550008 → 21611.
Any other number is accepted (201) unless a rate picks otherwise: one roll per request among
--error-rate, --rate-limit-rate, --server-error-rate and --drop-rate (together at most 1), and
separate rolls for --slow-rate, --undelivered-rate, --duplicate-callbacks, --reorder-callbacks.
Status callbacks (with --status-callbacks, to a message's http:// StatusCallback) are Twilio's
form fields MessageSid, MessageStatus, AccountSid, From, To, SmsSid, SmsStatus, ApiVersion
(+ ErrorCode, MessagingServiceSid), signed with X-Twilio-Signature using --auth-token, each
--callback-delay-ms after the previous step: `sent`, then `delivered` unless a rule says otherwise.";

/// The magic number's plan, if `to` is one.
fn magic_number(to: &str) -> Option<Plan> {
    MAGIC_NUMBERS
        .iter()
        .find(|(number, _)| *number == to)
        .map(|&(_, plan)| plan)
}

/// The plan for a valid request to `to`. `roll` yields uniform numbers in
/// `[0, 1)`; it is called only for knobs that are on, so a mock with every
/// rate at zero costs one table scan per request.
pub(super) fn plan(settings: &MockSettings, to: &str, roll: &mut impl FnMut() -> f64) -> Plan {
    if let Some(plan) = magic_number(to) {
        return plan;
    }
    Plan {
        slow: chance(settings.slow_rate, roll),
        answer: pick_answer(settings, roll),
        receipt: pick_receipt(settings, roll),
    }
}

/// True with probability `rate`, without a roll when the knob is off. A
/// rate of 1 is always true: rolls are below 1.
fn chance(rate: f64, roll: &mut impl FnMut() -> f64) -> bool {
    rate > 0.0 && roll() < rate
}

/// One roll shared by the answer rates: consecutive slices of `[0, 1)`, so
/// they exclude each other and add up (validated to at most 1).
fn pick_answer(s: &MockSettings, roll: &mut impl FnMut() -> f64) -> Answer {
    if s.error_rate + s.rate_limit_rate + s.server_error_rate + s.drop_rate <= 0.0 {
        return Answer::Accept;
    }
    let r = roll();
    let mut edge = s.error_rate;
    if r < edge {
        // The original knob: half 429, half 500.
        return if roll() < 0.5 {
            Answer::RateLimited
        } else {
            Answer::ServerError(ServerError::Internal)
        };
    }
    edge += s.rate_limit_rate;
    if r < edge {
        return Answer::RateLimited;
    }
    edge += s.server_error_rate;
    if r < edge {
        return Answer::ServerError(if roll() < 0.5 {
            ServerError::Internal
        } else {
            ServerError::Unavailable
        });
    }
    edge += s.drop_rate;
    if r < edge {
        return Answer::Drop;
    }
    Answer::Accept
}

fn pick_receipt(s: &MockSettings, roll: &mut impl FnMut() -> f64) -> Receipt {
    if !s.status_callbacks {
        return Receipt::DELIVERED;
    }
    let final_status = if chance(s.undelivered_rate, roll) {
        // `as usize` truncates toward zero; `min` guards a roll of exactly 1.
        let i =
            ((roll() * UNDELIVERED_CODES.len() as f64) as usize).min(UNDELIVERED_CODES.len() - 1);
        MessageStatus::Undelivered(UNDELIVERED_CODES[i])
    } else {
        MessageStatus::Delivered
    };
    Receipt {
        final_status,
        duplicate: chance(s.duplicate_callbacks, roll),
        reorder: chance(s.reorder_callbacks, roll),
    }
}
