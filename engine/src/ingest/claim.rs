//! The claim: before a message is sent (or held), its record
//! `herald:msg:<tenant>:<id>` remembers which stream entry carried it and
//! that a send is on its way, so a redelivered entry is recognised — a
//! duplicate, a send interrupted by a crash, or one already decided — and
//! never sent twice by accident. One pipeline per batch.

use redis::Value;

use super::stream::StreamId;
use crate::conn::{Conn, query_retrying};
use crate::keys::{self, msg};
use crate::telemetry;

/// What Herald intends to do with a message it is claiming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Send now: the claim records the attempt before the request leaves.
    Send,
    /// Defer or expire: no attempt is recorded.
    Hold,
}

/// What the claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time (or released from the delayed set): go ahead. `attempt`
    /// is the attempt number recorded (0 for a hold).
    Proceed { attempt: u32 },
    /// Another stream entry already carried this tenant + id.
    Duplicate,
    /// This very entry was being sent when its consumer died: the provider
    /// may or may not have it (docs/contracts.md#providers, ambiguous). `attempt` is the new
    /// attempt number when the intent is to send.
    Redelivered { attempt: u32 },
    /// This entry was already decided (sent, rejected…); only the ack was lost.
    AlreadyDone,
    /// A sequence step whose sequence has ended: the gate ([`GATE_LUA`])
    /// refused it, so it is `cancelled`, never sent.
    Ended(Ended),
}

/// Why a step's sequence refused it at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Cancelled (paid, an operator).
    Cancelled,
    /// A STOP from the recipient ended it.
    OptedOut,
    /// The sequence record is gone: nothing says the step may go.
    Missing,
}

/// The gate of a sequence step, in the same atomic step as its claim's
/// state change: a step goes only while its sequence is active. Keys: the
/// step's record, its sequence's record. Args: `send` or `hold`, the
/// attempt. For `send` it marks the step `sending` with the attempt (what
/// [`FollowUp`] does for other messages). Returns `ok`, or the ended
/// sequence's reason (`missing` when the record is gone). A cancel
/// (`sequences::CANCEL_LUA`) that runs after it finds the step `sending`
/// and leaves it to the provider; one that runs before it wins.
pub const GATE_LUA: &str = r#"
local s = redis.call('HMGET', KEYS[2], 'state', 'reason')
if s[1] ~= 'active' then
  if not s[1] then return 'missing' end
  return s[2] or 'sequence_cancelled'
end
if ARGV[1] == 'send' then
  redis.call('HSET', KEYS[1], 'state', 'sending', 'attempt', ARGV[2])
end
return 'ok'
"#;

/// Replies the claim adds to a pipeline per message.
pub const CLAIM_REPLIES: usize = 3;

/// Append one message's claim to `pipe`: three plain commands, no script.
///
/// The hash remembers which stream entry first carried this tenant + id
/// (`entry`) and where that message is (`state`): a different entry is a
/// duplicate; the same entry again is a redelivery after a crash. Every
/// command is a no-op on an existing hash (`HSETNX`, `PEXPIRE … NX`), so a
/// duplicate never disturbs the original. Only a claim that did not create
/// the hash needs to know what is there: [`add_claim_read`] reads it in a
/// second round trip, for those few messages alone. This replaced a Lua
/// script that cost Redis 6.1 µs a call — 40% of its time in the
/// throughput scenario (`INFO commandstats`); four commands (with the read
/// for every message) cost ~2.5 µs together, and the read was a four-value
/// array reply per message for Herald to parse.
pub fn add_claim(
    pipe: &mut redis::Pipeline,
    key: &str,
    entry: StreamId,
    intent: Intent,
    ttl_ms: u64,
) {
    let state = match intent {
        Intent::Send => msg::SENDING,
        Intent::Hold => msg::HOLDING,
    };
    pipe.cmd("HSETNX").arg(key).arg(msg::ENTRY).arg(entry);
    pipe.cmd("HSETNX").arg(key).arg(msg::STATE).arg(state);
    pipe.cmd("PEXPIRE").arg(key).arg(ttl_ms).arg("NX");
}

/// Whether a claim created the message's hash (its first reply): the
/// common case, decided without reading the hash back.
pub fn claim_created(replies: &[Value]) -> bool {
    matches!(replies.first(), Some(Value::Int(1)))
}

/// Read back the hash of a claim that did not create it.
pub fn add_claim_read(pipe: &mut redis::Pipeline, key: &str) {
    pipe.cmd("HMGET")
        .arg(key)
        .arg(msg::ENTRY)
        .arg(msg::STATE)
        .arg(msg::ATTEMPT)
        .arg(msg::PIN);
}

/// What a claim's read-back found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    pub entry: Option<StreamId>,
    pub state: Option<Vec<u8>>,
    pub attempt: Option<u32>,
    /// The provider a message is pinned to (an ambiguous send through it
    /// was re-queued: it may not go through another provider).
    pub pin: Option<String>,
}

/// Interpret the `HMGET` of [`add_claim_read`].
pub fn parse_found(reply: &Value) -> Option<Found> {
    let Value::Array(current) = reply else {
        return None;
    };
    let field = |i: usize| match current.get(i) {
        Some(Value::BulkString(b)) => Some(b.as_slice()),
        Some(Value::SimpleString(s)) => Some(s.as_bytes()),
        _ => None,
    };
    Some(Found {
        entry: field(0).and_then(StreamId::parse),
        state: field(1).map(<[u8]>::to_vec),
        attempt: field(2)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok()),
        pin: field(3).and_then(|b| String::from_utf8(b.to_vec()).ok()),
    })
}

/// A state change the claim still has to make before the message is sent
/// (rare: redeliveries and releases from the delayed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// `state = sending`, `attempt = n`.
    Sending { attempt: u32 },
    /// `attempt = n`.
    Attempt { attempt: u32 },
}

impl FollowUp {
    pub fn add_to(self, pipe: &mut redis::Pipeline, key: &str) {
        match self {
            FollowUp::Sending { attempt } => {
                pipe.cmd("HSET")
                    .arg(key)
                    .arg(msg::STATE)
                    .arg(msg::SENDING)
                    .arg(msg::ATTEMPT)
                    .arg(attempt)
                    .ignore();
            }
            FollowUp::Attempt { attempt } => {
                pipe.cmd("HSET")
                    .arg(key)
                    .arg(msg::ATTEMPT)
                    .arg(attempt)
                    .ignore();
            }
        }
    }
}

/// Interpret one message's claim: its replies (`CLAIM_REPLIES` values) and,
/// when it did not create the hash, what the read-back found.
pub fn parse_claim(
    replies: &[Value],
    found: Option<&Found>,
    ours: StreamId,
    intent: Intent,
    fresh: bool,
) -> Option<(Claim, Option<FollowUp>)> {
    let [_, state_set, _expire] = replies else {
        return None;
    };
    let state_set = matches!(state_set, Value::Int(1));
    if claim_created(replies) {
        return Some(decide_claim(
            true, state_set, None, None, None, ours, intent, fresh,
        ));
    }
    let found = found?;
    Some(decide_claim(
        false,
        state_set,
        found.entry,
        found.state.as_deref(),
        found.attempt,
        ours,
        intent,
        fresh,
    ))
}

/// The claim's decision table. `fresh`: the entry was read new (`>`), not
/// taken over, so a record already saying `sending` for it can only be
/// this very claim, retried after its reply was lost: nothing was sent.
#[allow(clippy::too_many_arguments)]
pub fn decide_claim(
    created: bool,
    state_set: bool,
    entry: Option<StreamId>,
    state: Option<&[u8]>,
    attempt: Option<u32>,
    ours: StreamId,
    intent: Intent,
    fresh: bool,
) -> (Claim, Option<FollowUp>) {
    let send = intent == Intent::Send;
    if created {
        return (
            Claim::Proceed {
                attempt: u32::from(send),
            },
            None,
        );
    }
    if entry != Some(ours) {
        return (Claim::Duplicate, None);
    }
    let prev = attempt.unwrap_or(0);
    if state_set {
        // Our entry was recorded but its state was not (a connection lost
        // between the commands): nothing can have been sent.
        return if send {
            (
                Claim::Proceed { attempt: prev + 1 },
                Some(FollowUp::Sending { attempt: prev + 1 }),
            )
        } else {
            (Claim::Proceed { attempt: prev }, None)
        };
    }
    let state = state.map(|s| std::str::from_utf8(s).unwrap_or(""));
    match state {
        // Our own claim, retried after its reply was lost.
        Some(msg::SENDING) if fresh => (
            Claim::Proceed {
                attempt: if send { prev.max(1) } else { prev },
            },
            None,
        ),
        // Being sent when its consumer died: the provider may have it.
        Some(msg::SENDING) => {
            let next = prev.max(1) + 1;
            if send {
                (
                    Claim::Redelivered { attempt: next },
                    Some(FollowUp::Attempt { attempt: next }),
                )
            } else {
                (
                    Claim::Redelivered {
                        attempt: prev.max(1),
                    },
                    None,
                )
            }
        }
        // Released from the delayed set, or held before a crash.
        Some(msg::QUEUED) | Some(msg::HOLDING) | None => {
            if send {
                (
                    Claim::Proceed { attempt: prev + 1 },
                    Some(FollowUp::Sending { attempt: prev + 1 }),
                )
            } else {
                (Claim::Proceed { attempt: prev }, None)
            }
        }
        Some(_) => (Claim::AlreadyDone, None),
    }
}

/// One message to claim.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    pub tenant: &'a str,
    pub id: &'a str,
    pub entry: StreamId,
    pub intent: Intent,
    /// Read new, not taken over ([`super::stream::Entry::fresh`]).
    pub fresh: bool,
    /// A sequence step: the enrolment id of its sequence, checked by the
    /// gate before it may go.
    pub sequence: Option<&'a str>,
}

/// A claim's result: the decision, and the provider the message is pinned
/// to (an earlier ambiguous send went there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub claim: Claim,
    pub pin: Option<String>,
}

/// Claim every message of a batch in one pipeline, then read back the few
/// hashes the claim did not create (duplicates, redeliveries, releases) and
/// make their remaining state changes. Each round trip is retried on its
/// own while Redis is unavailable: a claim that was applied is never
/// re-run, or every message of the batch would look redelivered. `None`
/// only when `stop` says to give up (shutting down): the entries stay
/// pending for `XAUTOCLAIM`, and nothing was sent.
pub async fn claim_batch(
    conn: &mut Conn,
    batch: &[ClaimRequest<'_>],
    ttl_ms: u64,
    stop: impl Fn() -> bool + Copy,
) -> Option<Vec<Claimed>> {
    let mut key = String::with_capacity(64);
    let mut pipe = redis::pipe();
    for r in batch {
        keys::message_into(&mut key, r.tenant, r.id);
        add_claim(&mut pipe, &key, r.entry, r.intent, ttl_ms);
    }
    let values: Vec<Value> = query_retrying(
        conn,
        &pipe,
        "claim",
        |v: &Vec<_>| v.len() == batch.len() * CLAIM_REPLIES,
        stop,
    )
    .await?;

    // The hashes that existed already: read what they hold.
    let mut read = redis::pipe();
    let mut existing = Vec::new();
    for (i, (replies, r)) in values.chunks(CLAIM_REPLIES).zip(batch).enumerate() {
        if !claim_created(replies) {
            keys::message_into(&mut key, r.tenant, r.id);
            add_claim_read(&mut read, &key);
            existing.push(i);
        }
    }
    let mut found: Vec<Option<Found>> = vec![None; batch.len()];
    if !existing.is_empty() {
        let replies: Vec<Value> = query_retrying(
            conn,
            &read,
            "claim",
            |v: &Vec<_>| v.len() == existing.len() && v.iter().all(|r| parse_found(r).is_some()),
            stop,
        )
        .await?;
        for (i, r) in existing.iter().zip(&replies) {
            found[*i] = parse_found(r);
        }
    }

    let mut follow = redis::pipe();
    let mut gated = Vec::new();
    let mut claims = Vec::with_capacity(batch.len());
    for ((replies, r), found) in values.chunks(CLAIM_REPLIES).zip(batch).zip(found) {
        let Some((claim, next)) = parse_claim(replies, found.as_ref(), r.entry, r.intent, r.fresh)
        else {
            // Cannot happen with the replies `query_retrying` accepted (the
            // count, and a read-back for every hash not created); if it
            // does, leave the entries pending rather than guess:
            // XAUTOCLAIM retries them.
            telemetry::redis_error("claim");
            tracing::warn!(entry = %r.entry, "unexpected claim reply; left pending");
            return None;
        };
        let attempt = match claim {
            Claim::Proceed { attempt } | Claim::Redelivered { attempt } => Some(attempt),
            _ => None,
        };
        keys::message_into(&mut key, r.tenant, r.id);
        match (r.sequence, attempt) {
            (Some(sequence), Some(attempt)) => {
                let send = if r.intent == Intent::Send {
                    "send"
                } else {
                    "hold"
                };
                follow
                    .cmd("EVAL")
                    .arg(GATE_LUA)
                    .arg(2)
                    .arg(&key)
                    .arg(keys::sequence(r.tenant, sequence))
                    .arg(send)
                    .arg(attempt);
                gated.push(claims.len());
            }
            _ => {
                if let Some(f) = next {
                    f.add_to(&mut follow, &key);
                }
            }
        }
        claims.push(Claimed {
            claim,
            pin: found.and_then(|f| f.pin),
        });
    }
    if !follow.is_empty() {
        // Every command is safe to repeat: the gate sets what it set.
        let replies: Vec<Value> = query_retrying(
            conn,
            &follow,
            "claim",
            |v: &Vec<Value>| v.len() == gated.len(),
            stop,
        )
        .await?;
        for (i, v) in gated.iter().zip(&replies) {
            if let Some(ended) = parse_gate(v) {
                claims[*i].claim = Claim::Ended(ended);
            }
        }
    }
    Some(claims)
}

/// The gate's answer: `None` to go on, else why the sequence ended.
pub fn parse_gate(v: &Value) -> Option<Ended> {
    let s = match v {
        Value::BulkString(b) => std::str::from_utf8(b).unwrap_or(""),
        Value::SimpleString(s) => s.as_str(),
        Value::Okay => return None,
        _ => "",
    };
    match s {
        "ok" => None,
        "missing" => Some(Ended::Missing),
        "opted_out" => Some(Ended::OptedOut),
        _ => Some(Ended::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim reads a hash back only when it did not create it; what it
    /// read decides, and a reply of the wrong shape decides nothing.
    #[test]
    fn a_claim_is_decided_from_its_replies_and_the_read_back() {
        let ours = StreamId { ms: 5, seq: 1 };
        let int = Value::Int;
        let created = [int(1), int(1), int(1)];
        assert_eq!(
            parse_claim(&created, None, ours, Intent::Send, false),
            Some((Claim::Proceed { attempt: 1 }, None))
        );
        let existed = [int(0), int(0), int(0)];
        // Not created and nothing read back: no decision.
        assert_eq!(parse_claim(&existed, None, ours, Intent::Send, false), None);
        assert_eq!(
            parse_claim(&created[..2], None, ours, Intent::Send, false),
            None
        );
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let read = Value::Array(vec![
            bulk("5-1"),
            bulk("sending"),
            bulk("1"),
            bulk("twilio"),
        ]);
        let found = parse_found(&read).expect("an HMGET reply");
        assert_eq!(found.pin.as_deref(), Some("twilio"));
        assert_eq!(
            parse_claim(&existed, Some(&found), ours, Intent::Send, false),
            Some((
                Claim::Redelivered { attempt: 2 },
                Some(FollowUp::Attempt { attempt: 2 })
            ))
        );
        let other = Value::Array(vec![bulk("4-0"), bulk("sent"), bulk("1"), Value::Nil]);
        let found = parse_found(&other).expect("an HMGET reply");
        assert_eq!(found.pin, None);
        assert_eq!(
            parse_claim(&existed, Some(&found), ours, Intent::Send, false),
            Some((Claim::Duplicate, None))
        );
        assert_eq!(parse_found(&int(0)), None);
    }

    /// A claim retried after its reply was lost finds its own record: for
    /// an entry read new that is not a redelivery (nothing was sent), for a
    /// taken-over one it is.
    #[test]
    fn a_fresh_entry_finding_its_own_sending_record_proceeds() {
        let ours = StreamId { ms: 5, seq: 1 };
        let sending = Some(b"sending".as_slice());
        assert_eq!(
            decide_claim(
                false,
                false,
                Some(ours),
                sending,
                None,
                ours,
                Intent::Send,
                true
            ),
            (Claim::Proceed { attempt: 1 }, None)
        );
        assert_eq!(
            decide_claim(
                false,
                false,
                Some(ours),
                sending,
                None,
                ours,
                Intent::Send,
                false
            ),
            (
                Claim::Redelivered { attempt: 2 },
                Some(FollowUp::Attempt { attempt: 2 })
            )
        );
        // Another entry's record is a duplicate, fresh or not.
        let other = StreamId { ms: 4, seq: 0 };
        assert_eq!(
            decide_claim(
                false,
                false,
                Some(other),
                sending,
                None,
                ours,
                Intent::Send,
                true
            ),
            (Claim::Duplicate, None)
        );
    }

    #[test]
    fn claim_decision_table() {
        use Claim::*;
        let ours = StreamId { ms: 10, seq: 0 };
        let other = StreamId { ms: 9, seq: 0 };
        let send = Intent::Send;
        let hold = Intent::Hold;
        // (created, state_set, entry, state, attempt, intent) -> (claim, follow-up)
        type Case<'a> = (
            bool,
            bool,
            Option<StreamId>,
            Option<&'a [u8]>,
            Option<u32>,
            Intent,
            Claim,
            Option<FollowUp>,
        );
        let cases: Vec<Case<'_>> = vec![
            // New message.
            (
                true,
                true,
                Some(ours),
                Some(b"sending"),
                None,
                send,
                Proceed { attempt: 1 },
                None,
            ),
            (
                true,
                true,
                Some(ours),
                Some(b"holding"),
                None,
                hold,
                Proceed { attempt: 0 },
                None,
            ),
            // Another entry carried this tenant + id first.
            (
                false,
                false,
                Some(other),
                Some(b"sent"),
                Some(1),
                send,
                Duplicate,
                None,
            ),
            (
                false,
                false,
                Some(other),
                Some(b"sending"),
                Some(1),
                hold,
                Duplicate,
                None,
            ),
            // Same entry, its send was in flight at a crash.
            (
                false,
                false,
                Some(ours),
                Some(b"sending"),
                None,
                send,
                Redelivered { attempt: 2 },
                Some(FollowUp::Attempt { attempt: 2 }),
            ),
            (
                false,
                false,
                Some(ours),
                Some(b"sending"),
                Some(2),
                send,
                Redelivered { attempt: 3 },
                Some(FollowUp::Attempt { attempt: 3 }),
            ),
            (
                false,
                false,
                Some(ours),
                Some(b"sending"),
                Some(2),
                hold,
                Redelivered { attempt: 2 },
                None,
            ),
            // Released from the delayed set (retry or send_at).
            (
                false,
                false,
                Some(ours),
                Some(b"queued"),
                Some(1),
                send,
                Proceed { attempt: 2 },
                Some(FollowUp::Sending { attempt: 2 }),
            ),
            (
                false,
                false,
                Some(ours),
                Some(b"queued"),
                None,
                send,
                Proceed { attempt: 1 },
                Some(FollowUp::Sending { attempt: 1 }),
            ),
            (
                false,
                false,
                Some(ours),
                Some(b"queued"),
                Some(1),
                hold,
                Proceed { attempt: 1 },
                None,
            ),
            // Entry recorded, state lost mid-pipeline: set now by us.
            (
                false,
                true,
                Some(ours),
                Some(b"sending"),
                None,
                send,
                Proceed { attempt: 1 },
                Some(FollowUp::Sending { attempt: 1 }),
            ),
            // Already decided: only the ack was lost.
            (
                false,
                false,
                Some(ours),
                Some(b"sent"),
                Some(1),
                send,
                AlreadyDone,
                None,
            ),
            (
                false,
                false,
                Some(ours),
                Some(b"rejected"),
                None,
                send,
                AlreadyDone,
                None,
            ),
            (
                false,
                false,
                Some(ours),
                Some(b"deferred"),
                Some(0),
                send,
                AlreadyDone,
                None,
            ),
        ];
        for (created, state_set, entry, state, attempt, intent, claim, follow) in cases {
            assert_eq!(
                decide_claim(
                    created, state_set, entry, state, attempt, ours, intent, false
                ),
                (claim, follow),
                "created={created} state_set={state_set} entry={entry:?} state={:?} attempt={attempt:?} {intent:?}",
                state.map(String::from_utf8_lossy)
            );
        }
    }
}
