//! The consent ledger's Redis side: the source of truth, the audit stream,
//! and the change feed that keeps every instance's replica current.
//!
//! Layout:
//! - `herald:consent:state:<tenant>` — hash, number → three state letters,
//!   one per purpose in the order transactional, collections, marketing:
//!   `u` unknown, `e` granted (express), `w` granted (express written),
//!   `r` revoked, `v` review. Numbers with `uuu` are not stored. This is
//!   what an instance loads at start-up, so it is kept this small.
//! - `herald:consent:detail:<tenant>:<number>` — hash, purpose → JSON with
//!   the current state's kind, source, time, who and evidence.
//! - `herald:consent:audit` — stream, append-only and never trimmed (TCPA
//!   limitation 4 years, TSR 5 years: 28 USC 1658(a); 16 CFR 310.5): one
//!   entry per change with who, what, when and the evidence. It doubles as
//!   the change feed: each entry carries the number's new state letters, so
//!   a follower applies it without reading anything else.
//!
//! Every change is one Lua script call, so the read-modify-write of the
//! state, the detail and the audit entry are atomic even when two instances
//! take a STOP and a START for one number at the same moment.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::replica::{NumberState, PurposeState, Replica};
use crate::conn::Conn;
use crate::consent::ConsentKind;
use crate::model::Category;

use crate::keys;

pub fn state_key(tenant: &str) -> String {
    keys::consent_state(tenant)
}

pub fn detail_key(tenant: &str, number: u64) -> String {
    keys::consent_detail(tenant, number)
}

/// The storage letter of a purpose's state.
pub fn letter(state: PurposeState) -> char {
    match state {
        PurposeState::Unknown => 'u',
        PurposeState::Granted(ConsentKind::Express) => 'e',
        PurposeState::Granted(ConsentKind::ExpressWritten) => 'w',
        PurposeState::Revoked => 'r',
        PurposeState::Review => 'v',
    }
}

/// The state a storage letter stands for.
pub fn state_of_letter(c: u8) -> Option<PurposeState> {
    Some(match c {
        b'u' => PurposeState::Unknown,
        b'e' => PurposeState::Granted(ConsentKind::Express),
        b'w' => PurposeState::Granted(ConsentKind::ExpressWritten),
        b'r' => PurposeState::Revoked,
        b'v' => PurposeState::Review,
        _ => return None,
    })
}

/// Decode three state letters (`uer`…). `None` for anything else.
pub fn decode_letters(s: &[u8]) -> Option<NumberState> {
    if s.len() != Category::ALL.len() {
        return None;
    }
    let mut st = NumberState::default();
    for (c, p) in s.iter().zip(Category::ALL) {
        st = st.with(p, state_of_letter(*c)?);
    }
    Some(st)
}

pub fn encode_letters(st: NumberState) -> String {
    Category::ALL.iter().map(|p| letter(st.get(*p))).collect()
}

/// Which purposes a change may touch, by their current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// Every listed purpose.
    Any,
    /// Only purposes currently revoked or under review (an opt-in keyword
    /// restores what a STOP took, it does not upgrade consent).
    RevokedOrReview,
    /// Only purposes not revoked (an ambiguous reply puts a purpose under
    /// review, but never weakens a revocation).
    NotRevoked,
}

impl Only {
    fn letters(self) -> &'static str {
        match self {
            Only::Any => "",
            Only::RevokedOrReview => "rv",
            Only::NotRevoked => "uewv",
        }
    }
}

/// One change to the ledger, with its audit record.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub tenant: &'a str,
    pub number: u64,
    pub purposes: &'a [Category],
    pub state: PurposeState,
    pub only: Only,
    /// How the change came in: `inbound`, `api`, `import`, `carrier`, `admin`.
    pub source: &'a str,
    /// Who made it: the recipient's number, an admin, an import file.
    pub by: &'a str,
    /// What proves it: the inbound message id and text, a provider error…
    pub evidence: &'a str,
    /// When consent was given or revoked (ms epoch), as the evidence says.
    pub at_ms: i64,
}

/// A change that travels with an outcome (owned).
#[derive(Debug, Clone)]
pub struct OwnedChange {
    pub tenant: String,
    pub number: u64,
    pub purposes: Vec<Category>,
    pub state: PurposeState,
    pub source: &'static str,
    pub by: String,
    pub evidence: String,
    pub at_ms: i64,
}

impl OwnedChange {
    pub fn as_change(&self) -> Change<'_> {
        Change {
            tenant: &self.tenant,
            number: self.number,
            purposes: &self.purposes,
            state: self.state,
            only: Only::Any,
            source: self.source,
            by: &self.by,
            evidence: &self.evidence,
            at_ms: self.at_ms,
        }
    }
}

/// Add a change to a transaction as a plain `EVAL` (not `EVALSHA`): inside
/// MULTI a missing script could not be loaded and retried. For rare changes
/// only (a carrier-held opt-out).
pub fn add_eval(pipe: &mut redis::Pipeline, ch: &Change<'_>) {
    let (keys, args) = script_args(ch);
    let cmd = pipe.cmd("EVAL").arg(CHANGE_LUA).arg(keys.len());
    for k in &keys {
        cmd.arg(k);
    }
    for a in &args {
        cmd.arg(a);
    }
    cmd.ignore();
}

/// What a recorded change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub state: NumberState,
    /// The purposes whose state changed (empty: nothing changed, no audit entry).
    pub changed: Vec<Category>,
    /// The change was a replay of one already recorded (its once-key was
    /// there): nothing changed.
    pub replay: bool,
}

#[derive(Serialize)]
struct Detail<'a> {
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    source: &'a str,
    by: &'a str,
    evidence: &'a str,
    at_ms: i64,
}

pub fn state_name(s: PurposeState) -> &'static str {
    match s {
        PurposeState::Unknown => "unknown",
        PurposeState::Granted(_) => "granted",
        PurposeState::Revoked => "revoked",
        PurposeState::Review => "review",
    }
}

/// KEYS: state hash, detail hash, audit stream, and optionally the
/// change's once-key. ARGV: number, purpose letters to touch (`tcm`), new
/// letter, only-if letters (empty = any), detail JSON, tenant, source, by,
/// evidence, at_ms, and with a once-key its lifetime (ms).
/// Returns {new letters, changed purpose letters}, and a third element
/// `replay` when the once-key was there already (nothing changed).
const CHANGE_LUA: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or 'uuu'
if KEYS[4] and not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[11]) then
  return {cur, '', 'replay'}
end
local order = {'t', 'c', 'm'}
local names = {t = 'transactional', c = 'collections', m = 'marketing'}
local new, changed = '', ''
for i = 1, 3 do
  local c = string.sub(cur, i, i)
  local p = order[i]
  if string.find(ARGV[2], p, 1, true) and c ~= ARGV[3]
     and (ARGV[4] == '' or string.find(ARGV[4], c, 1, true)) then
    new = new .. ARGV[3]
    changed = changed .. p
    redis.call('HSET', KEYS[2], names[p], ARGV[5])
  else
    new = new .. c
  end
end
if changed == '' then return {cur, ''} end
if new == 'uuu' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], new)
end
redis.call('XADD', KEYS[3], '*', 'tenant', ARGV[6], 'number', ARGV[1],
  'purposes', changed, 'state', ARGV[3], 'value', new, 'previous', cur,
  'source', ARGV[7], 'by', ARGV[8], 'evidence', ARGV[9], 'at', ARGV[10])
return {new, changed}
"#;

fn purpose_letter(c: Category) -> char {
    match c {
        Category::Transactional => 't',
        Category::Collections => 'c',
        Category::Marketing => 'm',
    }
}

/// The purpose a letter of the audit stream's `purposes` stands for.
pub fn purpose_from_letter(c: char) -> Option<Category> {
    Category::ALL.into_iter().find(|p| purpose_letter(*p) == c)
}

/// The ledger: Redis writes plus this instance's lock-free replica.
pub struct ConsentLedger {
    replica: Replica,
    script: redis::Script,
    /// The last audit-stream entry this instance has applied: a Redis
    /// whose audit stream ends before it was restored from an older copy
    /// (`consent::guard`).
    applied: arc_swap::ArcSwap<String>,
}

impl Default for ConsentLedger {
    fn default() -> Self {
        Self::new(Replica::new())
    }
}

impl ConsentLedger {
    pub fn new(replica: Replica) -> Self {
        ConsentLedger {
            replica,
            script: redis::Script::new(CHANGE_LUA),
            applied: arc_swap::ArcSwap::from_pointee("0-0".to_string()),
        }
    }

    /// The consent state of a number, from the replica: lock-free, no Redis.
    #[inline]
    pub fn lookup(&self, tenant: &str, number: u64) -> NumberState {
        self.replica.lookup(tenant, number)
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The last audit-stream entry applied to this replica (`0-0`: none).
    pub fn applied(&self) -> Arc<String> {
        self.applied.load_full()
    }

    /// Record one change (atomic in Redis) and apply it to this instance's
    /// replica at once; the other instances see it through the audit feed.
    pub async fn record(&self, conn: &mut Conn, ch: &Change<'_>) -> redis::RedisResult<Recorded> {
        self.record_inner(conn, ch, None).await
    }

    /// [`ConsentLedger::record`], at most once per `once_key` (the
    /// provider's message id of an inbound reply): a replayed webhook finds
    /// the key, in the same atomic script, and changes nothing. The key is
    /// kept `once_ttl_ms`.
    pub async fn record_once(
        &self,
        conn: &mut Conn,
        ch: &Change<'_>,
        once_key: &str,
        once_ttl_ms: u64,
    ) -> redis::RedisResult<Recorded> {
        self.record_inner(conn, ch, Some((once_key, once_ttl_ms)))
            .await
    }

    async fn record_inner(
        &self,
        conn: &mut Conn,
        ch: &Change<'_>,
        once: Option<(&str, u64)>,
    ) -> redis::RedisResult<Recorded> {
        let reply = self.invoke(conn, ch, once).await?;
        let (new, changed) = match reply.as_slice() {
            [new, changed, ..] => (new, changed),
            _ => return Err(bad_reply("consent change")),
        };
        let replay = reply.get(2).is_some_and(|r| r == "replay");
        let state = decode_letters(new.as_bytes()).ok_or_else(|| bad_reply("consent state"))?;
        let changed: Vec<Category> = changed.chars().filter_map(purpose_from_letter).collect();
        if !changed.is_empty() {
            self.replica
                .apply(&[(ch.tenant.to_string(), ch.number, state)]);
        }
        Ok(Recorded {
            state,
            changed,
            replay,
        })
    }

    /// Load the change script into a pipeline (before `add_to`).
    pub fn load_into(&self, pipe: &mut redis::Pipeline) {
        pipe.load_script(&self.script).ignore();
    }

    /// Add a change to a pipeline (bulk import); the replica learns of it
    /// through the feed.
    pub fn add_to(&self, pipe: &mut redis::Pipeline, ch: &Change<'_>) {
        let (keys, args) = script_args(ch);
        let mut inv = self.script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        pipe.invoke_script(&inv);
    }
}

fn script_args(ch: &Change<'_>) -> ([String; 3], [String; 10]) {
    let purposes: String = ch.purposes.iter().map(|p| purpose_letter(*p)).collect();
    let kind = match ch.state {
        PurposeState::Granted(k) => Some(k.as_str()),
        _ => None,
    };
    let detail = serde_json::to_string(&Detail {
        state: state_name(ch.state),
        kind,
        source: ch.source,
        by: ch.by,
        evidence: ch.evidence,
        at_ms: ch.at_ms,
    })
    .unwrap_or_default();
    (
        [
            state_key(ch.tenant),
            detail_key(ch.tenant, ch.number),
            keys::CONSENT_AUDIT.to_string(),
        ],
        [
            ch.number.to_string(),
            purposes,
            letter(ch.state).to_string(),
            ch.only.letters().to_string(),
            detail,
            ch.tenant.to_string(),
            ch.source.to_string(),
            ch.by.to_string(),
            ch.evidence.to_string(),
            ch.at_ms.to_string(),
        ],
    )
}

impl ConsentLedger {
    async fn invoke(
        &self,
        conn: &mut Conn,
        ch: &Change<'_>,
        once: Option<(&str, u64)>,
    ) -> redis::RedisResult<Vec<String>> {
        let (keys, args) = script_args(ch);
        let mut inv = self.script.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        if let Some((key, _)) = once {
            inv.key(key);
        }
        for a in &args {
            inv.arg(a);
        }
        if let Some((_, ttl)) = once {
            inv.arg(ttl);
        }
        inv.invoke_async(conn).await
    }

    /// Load every tenant's state from Redis into a new ledger. Returns the
    /// ledger and the audit stream id to follow from: taken *before* the
    /// scan, so a change made during the load is applied again afterwards
    /// (changes carry the whole new state, so applying one twice is harmless).
    pub async fn load(conn: &mut Conn) -> redis::RedisResult<(ConsentLedger, String)> {
        let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(keys::CONSENT_AUDIT)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async::<redis::streams::StreamRangeReply>(conn)
            .await
            .map(|r| r.ids.into_iter().map(|i| (i.id, Vec::new())).collect())?;
        let from = last
            .first()
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| "0-0".to_string());

        let mut tenants: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", keys::CONSENT_STATE_PREFIX))
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            tenants.extend(keys.into_iter().filter_map(|k| {
                k.strip_prefix(keys::CONSENT_STATE_PREFIX)
                    .map(str::to_string)
            }));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        tenants.sort();
        tenants.dedup();

        let mut groups: Vec<Vec<(u64, NumberState)>> = Vec::with_capacity(tenants.len());
        for tenant in &tenants {
            let mut records = Vec::new();
            let key = state_key(tenant);
            let mut cursor: u64 = 0;
            loop {
                let (next, pairs): (u64, Vec<Pair>) = redis::cmd("HSCAN")
                    .arg(&key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(10_000)
                    .query_async(conn)
                    .await?;
                for (number, value) in pairs {
                    let number = std::str::from_utf8(&number)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok());
                    match (number, decode_letters(&value)) {
                        (Some(n), Some(st)) => records.push((n, st)),
                        _ => tracing::warn!(%tenant, "ignoring a malformed consent record"),
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            groups.push(records);
        }
        let n: usize = groups.iter().map(Vec::len).sum();
        let ledger = ConsentLedger::new(Replica::from_tenant_records(
            tenants.iter().map(String::as_str).zip(groups),
        ));
        tracing::info!(
            numbers = n,
            tenants = tenants.len(),
            "consent ledger loaded"
        );
        Ok((ledger, from))
    }

    /// Follow the audit feed from `from` and apply every change to the
    /// replica until `shutdown`. Blocks at most `block` per read so a
    /// revocation taken elsewhere is applied within milliseconds.
    pub async fn follow(
        self: Arc<Self>,
        mut conn: Conn,
        mut from: String,
        block: Duration,
        shutdown: CancellationToken,
    ) {
        let mut backoff = crate::conn::Backoff::new();
        self.applied.store(Arc::new(from.clone()));
        while !shutdown.is_cancelled() {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(1000)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(keys::CONSENT_AUDIT)
                .arg(&from);
            let read = cmd.query_async::<Option<redis::streams::StreamReadReply>>(&mut conn);
            let reply = tokio::select! {
                r = read => r,
                () = shutdown.cancelled() => return,
            };
            match reply {
                Ok(reply) => {
                    backoff.reset();
                    let mut changes = Vec::new();
                    for key in reply.map(|r| r.keys).unwrap_or_default() {
                        for entry in key.ids {
                            if let Some(ch) = parse_feed(&entry.map) {
                                changes.push(ch);
                            }
                            from = entry.id;
                        }
                    }
                    self.applied.store(Arc::new(from.clone()));
                    if !changes.is_empty() {
                        crate::telemetry::consent_changes(changes.len());
                        // A merge into a 10M-entry base takes ~0.14 s: off
                        // the async workers.
                        let me = Arc::clone(&self);
                        let _ = tokio::task::spawn_blocking(move || {
                            me.replica.apply(&changes);
                            crate::telemetry::consent_numbers(me.replica.len());
                        })
                        .await;
                    }
                }
                Err(e) => {
                    crate::telemetry::redis_error("consent_feed");
                    tracing::warn!(error = %e, "reading the consent feed failed; retrying");
                    backoff.wait().await;
                }
            }
        }
    }

    /// The stored detail of a number's consent, purpose → JSON, for the
    /// HTTP API and exports.
    pub async fn detail(
        conn: &mut Conn,
        tenant: &str,
        number: u64,
    ) -> redis::RedisResult<Vec<(String, serde_json::Value)>> {
        let raw: Vec<(String, String)> = conn.hgetall(detail_key(tenant, number)).await?;
        Ok(raw
            .into_iter()
            .map(|(k, v)| {
                let v = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
                (k, v)
            })
            .collect())
    }
}

/// A hash field and value, as bytes.
type Pair = (Vec<u8>, Vec<u8>);

fn parse_feed(
    map: &std::collections::HashMap<String, redis::Value>,
) -> Option<(String, u64, NumberState)> {
    let text = |k: &str| match map.get(k) {
        Some(redis::Value::BulkString(b)) => std::str::from_utf8(b).ok(),
        _ => None,
    };
    let tenant = text("tenant")?.to_string();
    let number = text("number")?.parse().ok()?;
    let state = decode_letters(text("value")?.as_bytes())?;
    Some((tenant, number, state))
}

fn bad_reply(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply",
        what.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip() {
        for s in ["uuu", "eew", "rrr", "vur", "wue"] {
            let st = decode_letters(s.as_bytes()).expect("valid");
            assert_eq!(encode_letters(st), s);
        }
        assert!(decode_letters(b"uu").is_none());
        assert!(decode_letters(b"uux").is_none());
        assert!(decode_letters(b"").is_none());
        let st = decode_letters(b"erv").expect("valid");
        assert_eq!(
            st.get(Category::Transactional),
            PurposeState::Granted(ConsentKind::Express)
        );
        assert_eq!(st.get(Category::Collections), PurposeState::Revoked);
        assert_eq!(st.get(Category::Marketing), PurposeState::Review);
    }
}
