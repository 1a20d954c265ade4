//! Building the scenario's messages and queueing them through the ingest
//! contract (docs/contracts.md#ingest): `XADD herald:q:{n} * msg <json>`.
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::config::LoadSection;
use super::now_ms;

/// Area codes recipients are drawn from, in order: the first
/// [`NUMBERS_PER_AREA`] recipients are in 415, the next in 212, and so on.
/// All are real, assigned US area codes, so `phonenumber` (and Herald's
/// validator) accepts the numbers as valid US numbers.
const AREA_CODES: [u32; 8] = [415, 212, 312, 617, 206, 305, 713, 404];

/// Local numbers per area code: exchanges 200–999 (an exchange may not start
/// with 0 or 1 under the NANP), minus exchange 555, whose numbers are
/// reserved for fiction and directory assistance.
const NUMBERS_PER_AREA: u64 = 800 * 10_000 - 10_000;

/// Most distinct recipients a scenario can ask for.
pub const MAX_RECIPIENTS: u64 = AREA_CODES.len() as u64 * NUMBERS_PER_AREA;

/// Writes recipient number `r` (`0..MAX_RECIPIENTS`) in E.164 into `out`,
/// e.g. recipient 0 is `+14152000000`.
pub fn recipient_number(r: u64, out: &mut String) {
    let area = AREA_CODES[(r / NUMBERS_PER_AREA) as usize % AREA_CODES.len()];
    let mut local = 2_000_000 + r % NUMBERS_PER_AREA;
    if local >= 5_550_000 {
        local += 10_000; // step over exchange 555
    }
    let _ = write!(out, "+1{area}{local:07}");
}

/// FNV-1a, 64-bit, over `bytes`.
///
/// Offset basis 0xcbf29ce484222325, prime 0x100000001b3 (the published
/// constants). Chosen because it is tiny, has no seed, and gives the same
/// answer in every language, so any producer can compute the same partition.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The partition a message to `to` goes to: FNV-1a 64 of the UTF-8 bytes of
/// `to`, modulo `partitions`. One recipient always lands on one stream, which
/// keeps that recipient's messages in order (docs/contracts.md#ingest); Herald uses the
/// same function when it re-queues.
pub fn partition_of(to: &str, partitions: u32) -> u32 {
    (fnv1a64(to.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// The ingest stream for partition `n`; the braces are literal.
pub fn stream_name(n: u32) -> String {
    format!("herald:q:{{{n}}}")
}

/// One ingest entry's `msg`, borrowing everything from reused buffers.
#[derive(Serialize)]
struct QueuedMessage<'a> {
    id: &'a str,
    tenant: &'a str,
    to: &'a str,
    category: &'a str,
    body: &'a str,
}

/// Builds message `i` of a run into reused buffers, so encoding allocates
/// nothing per message once the buffers have grown.
pub struct MessageEncoder {
    id_prefix: String,
    tenant: String,
    category: String,
    /// The body split at each `{n}`; one part means no placeholder.
    body_parts: Vec<String>,
    recipients: u64,
    partitions: u32,
    id: String,
    to: String,
    body: String,
    /// The JSON of the last encoded message.
    pub json: Vec<u8>,
}

impl MessageEncoder {
    pub fn new(run_id: &str, load: &LoadSection, partitions: u32) -> Self {
        Self {
            id_prefix: id_prefix(run_id),
            tenant: load.tenant.clone(),
            category: load.category.clone(),
            body_parts: load.body.split("{n}").map(str::to_owned).collect(),
            recipients: load.recipients,
            partitions,
            id: String::with_capacity(32),
            to: String::with_capacity(16),
            body: String::with_capacity(load.body.len() + 16),
            json: Vec::with_capacity(256 + load.body.len()),
        }
    }

    /// Encodes message `i` into [`Self::json`] and returns its partition.
    pub fn encode(&mut self, i: u64) -> u32 {
        self.id.clear();
        self.id.push_str(&self.id_prefix);
        let _ = write!(self.id, "{i}");

        self.to.clear();
        recipient_number(i % self.recipients, &mut self.to);

        self.body.clear();
        for (k, part) in self.body_parts.iter().enumerate() {
            if k > 0 {
                let _ = write!(self.body, "{i}");
            }
            self.body.push_str(part);
        }

        self.json.clear();
        let msg = QueuedMessage {
            id: &self.id,
            tenant: &self.tenant,
            to: &self.to,
            category: &self.category,
            body: &self.body,
        };
        serde_json::to_writer(&mut self.json, &msg).expect("serialising to a Vec cannot fail");
        partition_of(&self.to, self.partitions)
    }
}

/// The prefix every message id of run `run_id` starts with; the number
/// after it is the message's index.
pub fn id_prefix(run_id: &str) -> String {
    format!("lt-{run_id}-")
}

/// How the fill went.
#[derive(Debug, Clone, Copy)]
pub struct FillStats {
    /// When the first pipeline was sent, ms since the epoch.
    pub first_enqueue_ms: u64,
    /// Wall time from the first pipeline sent to the last acknowledged.
    pub elapsed: Duration,
}

/// Queues every message of the scenario, pipelining `batch` XADDs per round
/// trip and pacing to `rate`. Writes each message's enqueue instant (ms since
/// the epoch, taken just before its pipeline is sent, so a decision can never
/// precede it) into `enqueued_at_ms[i]`.
pub async fn fill(
    conn: &MultiplexedConnection,
    encoder: &mut MessageEncoder,
    load: &LoadSection,
    partitions: u32,
    enqueued_at_ms: &mut [u64],
    progress: &ProgressBar,
) -> anyhow::Result<FillStats> {
    let streams: Vec<String> = (0..partitions).map(stream_name).collect();
    let chunk = chunk_size(load);
    let mut pacer = (load.rate > 0).then(|| {
        // Burst (the default) catches up after a slow round trip, so the
        // average rate holds.
        let period = Duration::from_secs_f64(chunk as f64 / load.rate as f64);
        tokio::time::interval(period)
    });

    // One pipeline in flight while the next is built: overlaps encoding with
    // the round trip, and still sends batches in order.
    let mut in_flight: Option<JoinHandle<redis::RedisResult<()>>> = None;
    let mut first_enqueue_ms = None;
    let started = Instant::now();
    let mut next: u64 = 0;
    while next < load.messages {
        let end = (next + chunk).min(load.messages);
        let mut pipe = redis::Pipeline::with_capacity((end - next) as usize);
        for i in next..end {
            let p = encoder.encode(i);
            pipe.cmd("XADD")
                .arg(&streams[p as usize])
                .arg("*")
                .arg("msg")
                .arg(&encoder.json[..])
                .ignore();
        }
        if let Some(pacer) = pacer.as_mut() {
            pacer.tick().await;
        }
        if let Some(previous) = in_flight.take() {
            previous.await??;
            progress.set_position(next);
        }
        let at = now_ms();
        first_enqueue_ms.get_or_insert(at);
        enqueued_at_ms[next as usize..end as usize].fill(at);
        let mut conn = conn.clone();
        in_flight = Some(tokio::spawn(
            async move { pipe.exec_async(&mut conn).await },
        ));
        next = end;
    }
    if let Some(previous) = in_flight.take() {
        previous.await??;
    }
    progress.set_position(load.messages);
    Ok(FillStats {
        first_enqueue_ms: first_enqueue_ms.unwrap_or_else(now_ms),
        elapsed: started.elapsed(),
    })
}

/// Messages per round trip. Unpaced: `batch`. Paced: at most a twentieth of
/// a second's worth, so a modest rate is a steady stream rather than one
/// burst of `batch` every few seconds.
fn chunk_size(load: &LoadSection) -> u64 {
    let batch = u64::from(load.batch.max(1));
    if load.rate == 0 {
        batch
    } else {
        batch.min((load.rate / 20).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_skip_exchange_555_and_stay_ten_digits() {
        let mut s = String::new();
        recipient_number(0, &mut s);
        assert_eq!(s, "+14152000000");
        s.clear();
        recipient_number(3_549_999, &mut s);
        assert_eq!(s, "+14155549999");
        s.clear();
        recipient_number(3_550_000, &mut s);
        assert_eq!(s, "+14155560000");
        s.clear();
        recipient_number(NUMBERS_PER_AREA - 1, &mut s);
        assert_eq!(s, "+14159999999");
        s.clear();
        recipient_number(NUMBERS_PER_AREA, &mut s);
        assert_eq!(s, "+12122000000");
    }

    #[test]
    fn body_placeholder_is_replaced_everywhere() {
        let load = LoadSection {
            body: "{n} of {n}!".to_owned(),
            ..LoadSection::default()
        };
        let mut enc = MessageEncoder::new("abcd1234", &load, 8);
        enc.encode(42);
        let v: serde_json::Value = serde_json::from_slice(&enc.json).unwrap();
        assert_eq!(v["body"], "42 of 42!");
        assert_eq!(v["id"], "lt-abcd1234-42");
    }

    #[test]
    fn paced_chunks_are_small() {
        let load = LoadSection {
            rate: 1000,
            batch: 500,
            ..LoadSection::default()
        };
        assert_eq!(chunk_size(&load), 50);
        let load = LoadSection {
            rate: 0,
            batch: 500,
            ..LoadSection::default()
        };
        assert_eq!(chunk_size(&load), 500);
        let load = LoadSection {
            rate: 3,
            batch: 500,
            ..LoadSection::default()
        };
        assert_eq!(chunk_size(&load), 1);
    }
}
