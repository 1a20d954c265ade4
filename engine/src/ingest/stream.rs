//! The queue streams `herald:q:{n}`: consumer groups, batched reads, crash
//! recovery (`XAUTOCLAIM`) and the group's bookkeeping (`XINFO`).

use std::time::Duration;

use redis::{RedisResult, Value};
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::keys;

/// A stream entry id (`<ms>-<seq>`), kept as two integers: 16 bytes, no
/// allocation, and the milliseconds give the enqueue time for free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub fn parse(s: &[u8]) -> Option<StreamId> {
        let s = std::str::from_utf8(s).ok()?;
        let (ms, seq) = s.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// Write `<ms>-<seq>` into a stack buffer.
    pub fn render(&self) -> StreamIdText {
        let mut buf = [0u8; 41];
        let mut a = itoa::Buffer::new();
        let ms = a.format(self.ms).as_bytes();
        buf[..ms.len()].copy_from_slice(ms);
        let mut len = ms.len();
        buf[len] = b'-';
        len += 1;
        let mut b = itoa::Buffer::new();
        let seq = b.format(self.seq).as_bytes();
        buf[len..len + seq.len()].copy_from_slice(seq);
        len += seq.len();
        StreamIdText { buf, len }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

pub struct StreamIdText {
    buf: [u8; 41],
    len: usize,
}

impl StreamIdText {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl redis::ToRedisArgs for StreamId {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        out.write_arg(self.render().as_bytes());
    }
}

/// One entry read from `herald:q:{partition}`.
#[derive(Debug)]
pub struct Entry {
    pub partition: u16,
    pub id: StreamId,
    /// The `msg` field. `Err` holds every field of an entry without `msg`,
    /// rendered for the dead-letter stream.
    pub msg: Result<Vec<u8>, String>,
    /// Read with `>`: never delivered before, so nothing can have been
    /// sent for it yet (a taken-over entry is not fresh).
    pub fresh: bool,
    /// How often Redis has delivered it (1 when read new).
    pub deliveries: u32,
}

/// Create the consumer group on every partition (from id 0, with MKSTREAM),
/// tolerating groups that already exist.
pub async fn ensure_groups(conn: &mut Conn, partitions: u16) -> RedisResult<()> {
    for p in 0..partitions {
        let res: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys::queue(p))
            .arg(keys::GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match res {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `XREADGROUP` over a shard's partitions. `streams[i]` is `herald:q:{parts[i]}`.
pub async fn read_new(
    conn: &mut Conn,
    consumer: &str,
    parts: &[u16],
    streams: &[String],
    count: usize,
    block: Duration,
) -> RedisResult<Vec<Entry>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(keys::GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(block.as_millis() as u64)
        .arg("STREAMS")
        .arg(streams);
    for _ in streams {
        cmd.arg(">");
    }
    let reply: Value = cmd.query_async(conn).await?;
    let mut out = Vec::with_capacity(count);
    // Reply: nil, or [[stream, [[id, [f, v, …]], …]], …] (RESP2) /
    // a map {stream: [[id, [f, v …]], …]} (RESP3).
    let per_stream: Vec<(Value, Value)> = match reply {
        Value::Nil => return Ok(out),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop()?;
                    let key = kv.pop()?;
                    Some((key, entries))
                }
                _ => None,
            })
            .collect(),
        Value::Map(m) => m,
        other => {
            return Err(unexpected("XREADGROUP", &other));
        }
    };
    for (key, entries) in per_stream {
        let partition = partition_of(&key, parts, streams);
        if let Value::Array(entries) = entries {
            parse_entries(partition, entries, true, &mut out);
        }
    }
    Ok(out)
}

/// What one `XAUTOCLAIM` took over.
#[derive(Debug, Default)]
pub struct Reclaimed {
    /// Where the next scan continues (`0-0` when it wrapped).
    pub cursor: String,
    /// The entries, with their delivery counts.
    pub entries: Vec<Entry>,
    /// Entries that were pending but no longer in the stream (deleted by
    /// someone): Redis drops them from the pending list as it reports them.
    pub deleted: Vec<StreamId>,
}

/// `XAUTOCLAIM` one partition: take over entries idle longer than
/// `min_idle` (their consumer died), then read how often each was
/// delivered (`XPENDING` over the claimed range), for
/// `dispatch.max_deliveries`.
pub async fn autoclaim(
    conn: &mut Conn,
    consumer: &str,
    partition: u16,
    min_idle: Duration,
    start: &str,
    count: usize,
) -> RedisResult<Reclaimed> {
    let stream = keys::queue(partition);
    let reply: Value = redis::cmd("XAUTOCLAIM")
        .arg(&stream)
        .arg(keys::GROUP)
        .arg(consumer)
        .arg(min_idle.as_millis() as u64)
        .arg(start)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let Value::Array(mut parts) = reply else {
        return Err(unexpected("XAUTOCLAIM", &reply));
    };
    if parts.len() < 2 {
        return Err(unexpected("XAUTOCLAIM", &Value::Array(parts)));
    }
    // [cursor, entries, deleted-ids (Redis ≥ 7)]
    let deleted = if parts.len() > 2 { parts.pop() } else { None };
    parts.truncate(2);
    let entries = parts.pop();
    let cursor = match parts.pop() {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Some(Value::SimpleString(s)) => s,
        _ => "0-0".into(),
    };
    let mut out = Reclaimed {
        cursor,
        ..Default::default()
    };
    if let Some(Value::Array(entries)) = entries {
        parse_entries(partition, entries, false, &mut out.entries);
    }
    if let Some(Value::Array(ids)) = deleted {
        out.deleted = ids
            .iter()
            .filter_map(|v| match v {
                Value::BulkString(b) => StreamId::parse(b),
                Value::SimpleString(s) => StreamId::parse(s.as_bytes()),
                _ => None,
            })
            .collect();
    }
    if let (Some(first), Some(last)) = (
        out.entries.iter().map(|e| e.id).min(),
        out.entries.iter().map(|e| e.id).max(),
    ) {
        let rows: Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(keys::GROUP)
            .arg(first)
            .arg(last)
            .arg(out.entries.len() + 64)
            .arg(consumer)
            .query_async(conn)
            .await?;
        let counts = pending_counts(&rows);
        for e in &mut out.entries {
            e.deliveries = counts
                .iter()
                .find(|(id, _)| *id == e.id)
                .map_or(1, |(_, n)| *n);
        }
    }
    Ok(out)
}

/// (id, delivery count) of each row of an `XPENDING` extended reply
/// (`[[id, consumer, idle ms, deliveries], …]`).
pub fn pending_counts(reply: &Value) -> Vec<(StreamId, u32)> {
    let Value::Array(rows) = reply else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|r| {
            let Value::Array(f) = r else { return None };
            let id = match f.first()? {
                Value::BulkString(b) => StreamId::parse(b)?,
                Value::SimpleString(s) => StreamId::parse(s.as_bytes())?,
                _ => return None,
            };
            let n = match f.get(3)? {
                Value::Int(n) => u32::try_from(*n).ok()?,
                _ => return None,
            };
            Some((id, n))
        })
        .collect()
}

/// The records of an XINFO GROUPS / CONSUMERS reply, each as (field, value)
/// pairs with text field names (RESP2 flat arrays or RESP3 maps).
pub fn info_records(reply: redis::Value) -> Vec<Vec<(String, redis::Value)>> {
    let redis::Value::Array(records) = reply else {
        return Vec::new();
    };
    records
        .into_iter()
        .filter_map(|r| {
            let pairs: Vec<(redis::Value, redis::Value)> = match r {
                redis::Value::Map(m) => m,
                redis::Value::Array(a) => {
                    let mut it = a.into_iter();
                    let mut v = Vec::new();
                    while let (Some(k), Some(val)) = (it.next(), it.next()) {
                        v.push((k, val));
                    }
                    v
                }
                _ => return None,
            };
            Some(
                pairs
                    .into_iter()
                    .filter_map(|(k, v)| match k {
                        redis::Value::BulkString(b) => {
                            Some((String::from_utf8_lossy(&b).into_owned(), v))
                        }
                        redis::Value::SimpleString(s) => Some((s, v)),
                        _ => None,
                    })
                    .collect(),
            )
        })
        .collect()
}

/// `lag` and `pending` of group `herald` in an XINFO GROUPS reply.
pub fn group_lag(reply: redis::Value) -> Option<(i64, i64)> {
    for record in info_records(reply) {
        let mut name = None;
        let (mut lag, mut pending) = (0, 0);
        for (key, v) in record {
            match (key.as_str(), v) {
                ("name", redis::Value::BulkString(b)) => name = Some(b),
                ("lag", redis::Value::Int(n)) => lag = n,
                ("pending", redis::Value::Int(n)) => pending = n,
                _ => {}
            }
        }
        if name.as_deref() == Some(keys::GROUP.as_bytes()) {
            return Some((lag, pending));
        }
    }
    None
}

fn partition_of(key: &Value, parts: &[u16], streams: &[String]) -> u16 {
    let name: &[u8] = match key {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.as_bytes(),
        _ => &[],
    };
    streams
        .iter()
        .position(|s| s.as_bytes() == name)
        .map(|i| parts[i])
        .unwrap_or(0)
}

fn parse_entries(partition: u16, entries: Vec<Value>, fresh: bool, out: &mut Vec<Entry>) {
    for e in entries {
        // [id, [field, value, …]]; a deleted entry has a nil field list.
        let Value::Array(mut pair) = e else { continue };
        if pair.len() != 2 {
            continue;
        }
        let fields = pair.pop();
        let id = match pair.pop() {
            Some(Value::BulkString(b)) => StreamId::parse(&b),
            Some(Value::SimpleString(s)) => StreamId::parse(s.as_bytes()),
            _ => None,
        };
        let Some(id) = id else { continue };
        let mut msg = None;
        let mut others = Vec::new();
        let fields = match fields {
            Some(Value::Array(f)) => f,
            Some(Value::Map(m)) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => Vec::new(),
        };
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let k = bytes_of(k);
            let v = bytes_of(v);
            if k == b"msg" && msg.is_none() {
                msg = Some(v);
            } else {
                others.push(format!(
                    "{}={}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                ));
            }
        }
        out.push(Entry {
            partition,
            id,
            msg: msg.ok_or_else(|| others.join(" ")),
            fresh,
            deliveries: 1,
        });
    }
}

fn bytes_of(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn unexpected(cmd: &'static str, v: &Value) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        format!("{cmd}: {v:?}"),
    ))
}

/// Remove dead consumers from the group. Consumer names are unique per
/// process, so every restart leaves one behind; once XAUTOCLAIM has taken
/// its pending entries it holds nothing and only clutters XINFO. A consumer
/// with pending entries is never removed (that would drop them from the
/// pending list), whatever its idle time.
pub async fn consumer_janitor(
    mut conn: Conn,
    partitions: u16,
    ours: String,
    idle: Duration,
    stop: CancellationToken,
) {
    let idle_ms = idle.as_millis() as i64;
    let every = (idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for p in 0..partitions {
            let stream = keys::queue(p);
            let Ok(reply) = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg(keys::GROUP)
                .query_async::<redis::Value>(&mut conn)
                .await
            else {
                continue;
            };
            for name in dead_consumers(reply, &ours, idle_ms) {
                let removed: redis::RedisResult<i64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&stream)
                    .arg(keys::GROUP)
                    .arg(&name)
                    .query_async(&mut conn)
                    .await;
                if removed == Ok(0) {
                    tracing::info!(consumer = %name, partition = p, "removed a dead consumer");
                }
            }
        }
    }
}

/// Names of consumers with nothing pending, idle past the threshold.
fn dead_consumers(reply: redis::Value, ours: &str, idle_ms: i64) -> Vec<String> {
    let mut dead = Vec::new();
    for record in info_records(reply) {
        let (mut name, mut pending, mut idle) = (None, None, None);
        for (key, v) in record {
            match (key.as_str(), v) {
                ("name", redis::Value::BulkString(b)) => {
                    name = Some(String::from_utf8_lossy(&b).into_owned())
                }
                ("pending", redis::Value::Int(n)) => pending = Some(n),
                ("idle", redis::Value::Int(n)) => idle = Some(n),
                _ => {}
            }
        }
        if let (Some(name), Some(0), Some(idle)) = (name, pending, idle)
            && idle > idle_ms
            && name != ours
        {
            dead.push(name);
        }
    }
    dead
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_round_trip() {
        let id = StreamId::parse(b"1700000000000-42").expect("valid");
        assert_eq!(
            id,
            StreamId {
                ms: 1_700_000_000_000,
                seq: 42
            }
        );
        assert_eq!(id.render().as_bytes(), b"1700000000000-42");
        let max = StreamId {
            ms: u64::MAX,
            seq: u64::MAX,
        };
        assert_eq!(StreamId::parse(max.render().as_bytes()), Some(max));
        assert_eq!(StreamId::parse(b"nope"), None);
        assert_eq!(StreamId::parse(b"1-"), None);
    }

    fn consumer(name: &str, pending: i64, idle: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(b"name".to_vec()),
            Value::BulkString(name.as_bytes().to_vec()),
            Value::BulkString(b"pending".to_vec()),
            Value::Int(pending),
            Value::BulkString(b"idle".to_vec()),
            Value::Int(idle),
        ])
    }

    #[test]
    fn only_idle_consumers_with_nothing_pending_are_dead() {
        let hour = 3_600_000;
        let reply = Value::Array(vec![
            consumer("gone", 0, hour + 1),
            consumer("gone-but-holding", 3, hour * 10),
            consumer("recent", 0, hour - 1),
            consumer("me", 0, hour * 10),
        ]);
        assert_eq!(dead_consumers(reply, "me", hour), vec!["gone".to_string()]);
        assert!(dead_consumers(Value::Nil, "me", hour).is_empty());
    }
}
