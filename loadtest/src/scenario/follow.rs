//! Following `herald:events` (docs/contracts.md#outcomes) and keeping, per message of this
//! run, its first decision.
use std::collections::{BTreeMap, HashMap};

use indicatif::ProgressBar;
use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

/// The outcomes stream.
pub const EVENTS_STREAM: &str = "herald:events";

/// Longest an `XREAD` blocks. Also how late the follower notices a stop.
const BLOCK_MS: u64 = 1000;

/// Entries per `XREAD`. At 1000 a 50k events/s stream takes 50 round trips
/// a second, far below what one connection does.
const READ_COUNT: usize = 1000;

/// A status on `herald:events`, as the follower classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Sent,
    Suppressed,
    Rejected,
    Failed,
    Expired,
    Duplicate,
    Cancelled,
    Deferred,
    Retrying,
    Delivered,
    Undelivered,
}

impl Status {
    /// The decisions: every message gets exactly one (docs/contracts.md#outcomes).
    pub const DECISIONS: [Status; 7] = [
        Status::Sent,
        Status::Suppressed,
        Status::Rejected,
        Status::Failed,
        Status::Expired,
        Status::Duplicate,
        Status::Cancelled,
    ];

    pub fn parse(s: &[u8]) -> Option<Self> {
        Some(match s {
            b"sent" => Self::Sent,
            b"suppressed" => Self::Suppressed,
            b"rejected" => Self::Rejected,
            b"failed" => Self::Failed,
            b"expired" => Self::Expired,
            b"duplicate" => Self::Duplicate,
            b"cancelled" => Self::Cancelled,
            b"deferred" => Self::Deferred,
            b"retrying" => Self::Retrying,
            b"delivered" => Self::Delivered,
            b"undelivered" => Self::Undelivered,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Suppressed => "suppressed",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Duplicate => "duplicate",
            Self::Cancelled => "cancelled",
            Self::Deferred => "deferred",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
        }
    }

    pub fn is_decision(self) -> bool {
        Self::DECISIONS.contains(&self)
    }
}

/// What the follower saw for this run's messages.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Per message: its decision, `None` while undecided (one byte each).
    pub decision: Vec<Option<Status>>,
    /// Per message: its decision's `ts` (ms since the epoch).
    pub decided_at_ms: Vec<u64>,
    /// Messages decided.
    pub decided: u64,
    /// (decision, reason) → messages; reason "" when the event had none.
    pub reasons: BTreeMap<(Status, String), u64>,
    /// Per undecided message that saw a `deferred` or `retrying`: the latest
    /// such status and its reason, to explain what is missing.
    pub pending: HashMap<u64, (Status, String)>,
    /// Messages that were deferred at least once / retried at least once.
    pub ever_deferred: u64,
    pub ever_retrying: u64,
    /// `delivered` / `undelivered` receipts seen (they follow `sent`).
    pub receipts: BTreeMap<Status, u64>,
    /// A second decision for a message already decided: Herald broke the
    /// exactly-one-decision contract.
    pub extra_decisions: u64,
    /// Events of this run with a status the contract does not name.
    pub unknown_statuses: BTreeMap<String, u64>,
    /// Events of this run that could not be read (no index, no ts, …).
    pub malformed: u64,
}

impl Outcomes {
    fn new(messages: u64) -> Self {
        Self {
            decision: vec![None; messages as usize],
            decided_at_ms: vec![0; messages as usize],
            ..Self::default()
        }
    }

    /// Applies one event of this run; `index` is the number after the run's
    /// id prefix.
    fn apply(&mut self, index: u64, status: Status, reason: &[u8], ts: u64) {
        let Some(slot) = self.decision.get_mut(index as usize) else {
            self.malformed += 1;
            return;
        };
        let reason = || String::from_utf8_lossy(reason).into_owned();
        match status {
            Status::Delivered | Status::Undelivered => {
                *self.receipts.entry(status).or_default() += 1;
            }
            Status::Deferred | Status::Retrying => {
                if slot.is_none() {
                    let previous = self.pending.insert(index, (status, reason()));
                    if previous.is_none_or(|(s, _)| s != status) {
                        match status {
                            Status::Deferred => self.ever_deferred += 1,
                            _ => self.ever_retrying += 1,
                        }
                    }
                }
            }
            decision => {
                if slot.is_some() {
                    self.extra_decisions += 1;
                    return;
                }
                *slot = Some(decision);
                self.decided_at_ms[index as usize] = ts;
                self.decided += 1;
                self.pending.remove(&index);
                *self.reasons.entry((decision, reason())).or_default() += 1;
            }
        }
    }
}

/// Where to start reading `herald:events`: its current last entry id, so
/// only events written after this point are read (`0-0` when it is empty).
pub async fn last_event_id(conn: &mut MultiplexedConnection) -> redis::RedisResult<String> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(EVENTS_STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    let id = match reply {
        Value::Array(mut entries) if !entries.is_empty() => match entries.swap_remove(0) {
            Value::Array(mut parts) if !parts.is_empty() => {
                bytes(&parts.swap_remove(0)).map(|b| String::from_utf8_lossy(b).into_owned())
            }
            _ => None,
        },
        _ => None,
    };
    Ok(id.unwrap_or_else(|| "0-0".to_owned()))
}

/// Reads `herald:events` from `from` until every one of `messages` is
/// decided, or `stop` turns true. On a stop it first reads what is already
/// in the stream (without blocking), so nothing written before the stop is
/// left uncounted.
pub async fn follow(
    conn: MultiplexedConnection,
    info: redis::ConnectionInfo,
    from: String,
    run_id_prefix: String,
    messages: u64,
    mut stop: watch::Receiver<bool>,
    progress: ProgressBar,
) -> redis::RedisResult<Outcomes> {
    let mut outcomes = Outcomes::new(messages);
    let prefix = run_id_prefix.into_bytes();
    let mut last_id = from;
    let mut stopping = false;
    // Plain TCP: the cheap reader (`resp.rs`); otherwise the redis crate.
    let mut events = match super::resp::EventReader::connect(&info).await? {
        Some(reader) => Events::Resp(reader, Vec::new()),
        None => Events::Crate(conn),
    };
    while outcomes.decided < messages {
        if !stopping && *stop.borrow_and_update() {
            stopping = true;
        }
        let read = events
            .read(!stopping, &mut last_id, &prefix, &mut outcomes)
            .await?;
        progress.set_position(outcomes.decided);
        if stopping && read == 0 {
            break;
        }
    }
    Ok(outcomes)
}

/// Where the events are read from.
enum Events {
    /// A plain RESP2 connection whose replies are parsed in place, with the
    /// id of the newest entry read (kept between reads, not reallocated).
    Resp(super::resp::EventReader, Vec<u8>),
    /// The redis crate, for TLS and unix-socket URLs.
    Crate(MultiplexedConnection),
}

impl Events {
    /// One `XREAD` after `last_id` (blocking up to `BLOCK_MS` when `block`),
    /// applied to `outcomes`; moves `last_id` past what it read and returns
    /// how many entries that was.
    async fn read(
        &mut self,
        block: bool,
        last_id: &mut String,
        prefix: &[u8],
        outcomes: &mut Outcomes,
    ) -> redis::RedisResult<usize> {
        match self {
            Events::Resp(reader, newest) => {
                newest.clear();
                let block = block.then_some(BLOCK_MS);
                let read = reader
                    .xread(block, READ_COUNT, EVENTS_STREAM, last_id, |e| {
                        apply_fields(e.fields.iter().copied(), prefix, outcomes);
                        newest.clear();
                        newest.extend_from_slice(e.id);
                    })
                    .await?;
                if !newest.is_empty() {
                    last_id.clear();
                    last_id.push_str(&String::from_utf8_lossy(newest));
                }
                Ok(read)
            }
            Events::Crate(conn) => {
                let mut cmd = redis::cmd("XREAD");
                if block {
                    cmd.arg("BLOCK").arg(BLOCK_MS);
                }
                cmd.arg("COUNT")
                    .arg(READ_COUNT)
                    .arg("STREAMS")
                    .arg(EVENTS_STREAM)
                    .arg(&*last_id);
                let reply: Value = cmd.query_async(conn).await?;
                Ok(apply_reply(reply, prefix, outcomes, last_id))
            }
        }
    }
}

/// Applies an `XREAD` reply (RESP2 array or RESP3 map) and moves `last_id`
/// past it. Returns how many entries it held.
fn apply_reply(
    reply: Value,
    prefix: &[u8],
    outcomes: &mut Outcomes,
    last_id: &mut String,
) -> usize {
    let streams = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .collect::<Vec<_>>(),
        Value::Map(streams) => streams.into_iter().map(|(_, v)| v).collect(),
        _ => return 0, // Nil: the block timed out
    };
    let mut read = 0;
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let fields = parts.pop().unwrap_or_default();
            if let Some(id) = bytes(&parts[0]) {
                last_id.clear();
                last_id.push_str(&String::from_utf8_lossy(id));
            }
            read += 1;
            apply_entry(&fields, prefix, outcomes);
        }
    }
    read
}

/// One event's fields.
fn apply_entry(fields: &Value, prefix: &[u8], outcomes: &mut Outcomes) {
    fn field<'a>(k: &'a Value, v: &'a Value) -> Option<(&'a [u8], Field<'a>)> {
        let k = bytes(k)?;
        match v {
            // `ts` may come back as an integer (RESP3).
            Value::Int(n) => Some((k, Int(*n))),
            other => Some((k, Bytes(bytes(other)?))),
        }
    }
    match fields {
        Value::Array(flat) => apply_values(
            flat.chunks_exact(2).filter_map(|kv| field(&kv[0], &kv[1])),
            prefix,
            outcomes,
        ),
        Value::Map(pairs) => apply_values(
            pairs.iter().filter_map(|(k, v)| field(k, v)),
            prefix,
            outcomes,
        ),
        _ => {}
    }
}

/// A field value: bytes, or an integer (RESP3 `ts`).
enum Field<'a> {
    Bytes(&'a [u8]),
    Int(i64),
}
use Field::{Bytes, Int};

/// One event's fields as byte pairs (the RESP reader's form).
fn apply_fields<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    prefix: &[u8],
    outcomes: &mut Outcomes,
) {
    apply_values(fields.map(|(k, v)| (k, Bytes(v))), prefix, outcomes)
}

fn apply_values<'a>(
    fields: impl Iterator<Item = (&'a [u8], Field<'a>)>,
    prefix: &[u8],
    outcomes: &mut Outcomes,
) {
    let (mut id, mut status, mut reason, mut ts) = (None, None, None, None);
    for (k, v) in fields {
        match (k, v) {
            (b"id", Bytes(v)) => id = Some(v),
            (b"status", Bytes(v)) => status = Some(v),
            (b"reason", Bytes(v)) => reason = Some(v),
            (b"ts", Bytes(v)) => ts = ascii_u64(v),
            (b"ts", Int(n)) => ts = u64::try_from(n).ok(),
            _ => {}
        }
    }
    // Other producers' and other runs' events share the stream.
    let Some(rest) = id.and_then(|id| id.strip_prefix(prefix)) else {
        return;
    };
    let (Some(index), Some(status), Some(ts)) = (ascii_u64(rest), status, ts) else {
        outcomes.malformed += 1;
        return;
    };
    match Status::parse(status) {
        Some(s) => outcomes.apply(index, s, reason.unwrap_or_default(), ts),
        None => {
            *outcomes
                .unknown_statuses
                .entry(String::from_utf8_lossy(status).into_owned())
                .or_default() += 1
        }
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn ascii_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn event(stream_id: &str, fields: &[(&str, &str)]) -> Value {
        let flat = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        Value::Array(vec![bulk(stream_id), Value::Array(flat)])
    }

    #[test]
    fn first_decision_wins_and_others_runs_are_ignored() {
        let mut o = Outcomes::new(3);
        let mut last = String::new();
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(EVENTS_STREAM),
            Value::Array(vec![
                event(
                    "1-0",
                    &[
                        ("id", "lt-run-0"),
                        ("status", "deferred"),
                        ("reason", "quiet_hours"),
                        ("ts", "5"),
                    ],
                ),
                event(
                    "1-1",
                    &[("id", "lt-run-0"), ("status", "sent"), ("ts", "10")],
                ),
                event(
                    "1-2",
                    &[("id", "lt-run-0"), ("status", "failed"), ("ts", "11")],
                ),
                event(
                    "1-3",
                    &[("id", "lt-other-1"), ("status", "sent"), ("ts", "12")],
                ),
                event(
                    "1-4",
                    &[
                        ("id", "lt-run-1"),
                        ("status", "rejected"),
                        ("reason", "invalid_number"),
                        ("ts", "13"),
                    ],
                ),
                event(
                    "1-5",
                    &[("id", "lt-run-0"), ("status", "delivered"), ("ts", "14")],
                ),
                event(
                    "1-6",
                    &[
                        ("id", "lt-run-2"),
                        ("status", "retrying"),
                        ("reason", "provider_5xx"),
                        ("ts", "15"),
                    ],
                ),
                event(
                    "1-7",
                    &[("id", "lt-run-9"), ("status", "sent"), ("ts", "15")],
                ),
            ]),
        ])]);
        assert_eq!(apply_reply(reply, b"lt-run-", &mut o, &mut last), 8);
        assert_eq!(last, "1-7");
        assert_eq!(o.decided, 2);
        assert_eq!(o.decision[0], Some(Status::Sent));
        assert_eq!(o.decided_at_ms[0], 10);
        assert_eq!(o.decision[1], Some(Status::Rejected));
        assert_eq!(o.decision[2], None);
        assert_eq!(o.extra_decisions, 1);
        assert_eq!(o.malformed, 1, "index 9 is outside the run");
        assert_eq!(o.ever_deferred, 1);
        assert_eq!(
            o.pending.get(&2),
            Some(&(Status::Retrying, "provider_5xx".to_owned()))
        );
        assert!(!o.pending.contains_key(&0));
        assert_eq!(o.receipts.get(&Status::Delivered), Some(&1));
    }
}
