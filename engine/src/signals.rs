//! Upstream events on the stream `herald:signals` (a payment arrived, a
//! cease request, a bankruptcy…) and the rules that turn them into actions:
//! cancel the debt's sequences, stop every collections text to the person,
//! start a sequence, send a template.
//!
//! An entry has one field `signal`, a JSON object:
//!
//! ```json
//! {"id": "sig-1", "event": "payment_received", "tenant": "acme",
//!  "debt_id": "L-42", "to": "+14155550123"}
//! ```
//!
//! `sequence` (an enrolment id), `anchor`, `vars` and `detail` are optional.
//! Each instance reads the stream in consumer group `herald`, applies an
//! entry's actions (each safe to repeat) and acks it; an entry whose reader
//! died is taken over after 30 s. An entry that is not a valid signal goes to
//! the DLQ with the reason; nothing is dropped.
//!
//! The rules: the tenant's `[signals.<tenant>]` in the policy document
//! (`event = ["action", …]`), else the built-in ones ([`built_in`]). A cease
//! (`suppress_collections`) is kept in `herald:ceased` and in every
//! instance's lock-free snapshot ([`Ceased`]): from then on each collections
//! text to that number is `suppressed` / `ceased` (15 U.S.C. 1692c(c): a
//! written cease request; 11 U.S.C. 362: the bankruptcy stay; 15 U.S.C.
//! 1692g(b): collection stops while a dispute is verified). It is kept per
//! number, not per debt: stricter than the law, never looser.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::keys;
use crate::model::{Reason, parse_e164, valid_tenant};
use crate::policy::live::LivePolicy;
use crate::policy::signal_rules::valid_name;
pub use crate::policy::signal_rules::{Action, EVENTS, RulesSection, built_in};
use crate::telemetry;

/// A signal as written on the stream.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    pub id: String,
    pub event: String,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default)]
    pub debt_id: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub sequence: Option<String>,
    #[serde(default)]
    pub anchor: Option<String>,
    #[serde(default)]
    pub vars: Option<serde_json::Value>,
    #[serde(default)]
    pub detail: Option<String>,
}

fn default_tenant() -> String {
    crate::model::DEFAULT_TENANT.to_string()
}

/// Numbers no collections text may go to, per tenant: a lock-free
/// snapshot of `herald:ceased`, reloaded when `herald:ceased:version` moves.
#[derive(Debug, Default)]
pub struct Ceased {
    by_number: ArcSwap<HashMap<u64, Box<[Box<str>]>>>,
}

impl Ceased {
    /// Has `tenant` been told to stop collections texts to `number`?
    #[inline]
    pub fn is_ceased(&self, tenant: &str, number: u64) -> bool {
        self.by_number
            .load()
            .get(&number)
            .is_some_and(|t| t.iter().any(|t| &**t == tenant))
    }

    /// Reload from `herald:ceased` (fields `tenant:number`).
    pub async fn reload(&self, conn: &mut Conn) -> redis::RedisResult<usize> {
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(keys::CEASED)
            .query_async(conn)
            .await?;
        let mut map: HashMap<u64, Vec<Box<str>>> = HashMap::new();
        for f in &fields {
            if let Some((t, n)) = f.rsplit_once(':')
                && let Ok(n) = n.parse::<u64>()
            {
                map.entry(n).or_default().push(t.into());
            }
        }
        let n = map.len();
        self.by_number.store(Arc::new(
            map.into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
        ));
        Ok(n)
    }
}

/// What applying one signal did, for the log and the metric.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub cancelled: usize,
    pub ceased: bool,
    pub queued: usize,
}

/// Why a signal entry is refused (it goes to the DLQ).
fn refuse(why: impl Into<String>) -> String {
    why.into()
}

/// Parse and check one entry's `signal` bytes.
pub fn parse(bytes: &[u8]) -> Result<(Signal, Option<u64>), String> {
    let s: Signal =
        serde_json::from_slice(bytes).map_err(|e| refuse(format!("not a signal: {e}")))?;
    if s.id.is_empty() || s.id.chars().count() > 100 || s.id.contains('/') {
        return Err(refuse("`id` must be 1–100 characters, no `/`"));
    }
    if !valid_name(&s.event) {
        return Err(refuse(format!(
            "`event` `{}` is not an event name",
            s.event
        )));
    }
    if !valid_tenant(&s.tenant) {
        return Err(refuse("`tenant` is not a tenant name"));
    }
    let to = match s.to.as_deref() {
        None => None,
        Some(t) => Some(parse_e164(t)?),
    };
    if let Some(a) = s.anchor.as_deref()
        && a.parse::<jiff::civil::Date>().is_err()
    {
        return Err(refuse(format!("`anchor` `{a}` is not a date")));
    }
    if s.vars.as_ref().is_some_and(|v| !v.is_object()) {
        return Err(refuse("`vars` must be an object"));
    }
    Ok((s, to))
}

/// Apply a signal's actions. Every action is safe to repeat: cancels end
/// what is active, a cease is a set, a queued message has a stable id
/// (`<signal id>-<n>`, n the action's index) that the claim dedupes.
pub async fn apply(
    conn: &mut Conn,
    policy: &LivePolicy,
    partitions: u16,
    s: &Signal,
    to: Option<u64>,
) -> Result<Applied, String> {
    let pol = policy.load_full();
    let actions: Vec<Action> = match pol.signal_actions(&s.tenant, &s.event) {
        Some(a) => a.to_vec(),
        None => built_in(&s.event).to_vec(),
    };
    let detail = s
        .detail
        .clone()
        .unwrap_or_else(|| format!("signal `{}` ({})", s.event, s.id));
    let mut out = Applied::default();
    if s.event == "payment_received"
        && let Some(n) = to
    {
        // A payment counts for the experiment variants the payer got.
        crate::experiments::attribute(conn, n, &[s.tenant.as_str()], "paid")
            .await
            .map_err(|e| format!("redis: {e}"))?;
    }
    let redis_err = |e: redis::RedisError| format!("redis: {e}");
    for (i, a) in actions.iter().enumerate() {
        match a {
            Action::CancelSequences => {
                out.cancelled += cancel_named(conn, s, to, &detail)
                    .await
                    .map_err(redis_err)?;
            }
            Action::SuppressCollections => {
                let Some(n) = to else {
                    return Err(refuse(format!(
                        "`{}` stops collections texts to a number: `to` is required",
                        s.event
                    )));
                };
                let ev = serde_json::json!({"event": s.event, "signal": s.id,
                    "debt_id": s.debt_id, "at_ms": crate::clock::now_ms()})
                .to_string();
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("HSET")
                    .arg(keys::CEASED)
                    .arg(format!("{}:{n}", s.tenant))
                    .arg(ev)
                    .ignore()
                    .cmd("INCR")
                    .arg(keys::CEASED_VERSION)
                    .ignore();
                pipe.query_async::<()>(conn).await.map_err(redis_err)?;
                out.ceased = true;
                // Its sequences end too: a stay or a cease covers reminders.
                out.cancelled += crate::sequences::end_for_number(
                    conn,
                    n,
                    Some(&[s.tenant.as_str()]),
                    Reason::SequenceCancelled,
                    &detail,
                )
                .await
                .map_err(redis_err)?;
            }
            Action::StartSequence(schedule) => {
                let (Some(n), Some(anchor)) = (to, s.anchor.as_deref()) else {
                    return Err(refuse(format!(
                        "start_sequence:{schedule} needs `to` and `anchor`"
                    )));
                };
                let msg = serde_json::json!({
                    "id": format!("{}-{i}", s.id), "tenant": s.tenant,
                    "to": crate::model::E164::render(n).as_str(),
                    "sequence": {"schedule": schedule, "anchor": anchor},
                    "vars": s.vars, "debt_id": s.debt_id,
                });
                queue(conn, partitions, n, &msg).await.map_err(redis_err)?;
                out.queued += 1;
            }
            Action::Send(template) => {
                let Some(n) = to else {
                    return Err(refuse(format!("send:{template} needs `to`")));
                };
                let msg = serde_json::json!({
                    "id": format!("{}-{i}", s.id), "tenant": s.tenant,
                    "to": crate::model::E164::render(n).as_str(),
                    "template": template, "vars": s.vars, "debt_id": s.debt_id,
                });
                queue(conn, partitions, n, &msg).await.map_err(redis_err)?;
                out.queued += 1;
            }
        }
    }
    Ok(out)
}

async fn queue(
    conn: &mut Conn,
    partitions: u16,
    to: u64,
    msg: &serde_json::Value,
) -> redis::RedisResult<()> {
    let e164 = crate::model::E164::render(to);
    let p = keys::partition_for(e164.as_str(), partitions);
    redis::cmd("XADD")
        .arg(keys::queue(p))
        .arg("*")
        .arg("msg")
        .arg(msg.to_string())
        .query_async::<String>(conn)
        .await
        .map(|_| ())
}

/// The sequences a cancel names: `sequence`, else the debt's, else every
/// one of the tenant to `to`.
async fn cancel_named(
    conn: &mut Conn,
    s: &Signal,
    to: Option<u64>,
    detail: &str,
) -> redis::RedisResult<usize> {
    if let Some(id) = s.sequence.as_deref() {
        let c = crate::sequences::cancel(conn, &s.tenant, id, Reason::SequenceCancelled, detail)
            .await?;
        return Ok(usize::from(matches!(
            c,
            crate::sequences::Cancelled::Cancelled { .. }
        )));
    }
    if let Some(debt) = s.debt_id.as_deref() {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::sequences_of_debt(&s.tenant, debt))
            .query_async(conn)
            .await?;
        let mut n = 0;
        for id in ids {
            let c =
                crate::sequences::cancel(conn, &s.tenant, &id, Reason::SequenceCancelled, detail)
                    .await?;
            n += usize::from(matches!(c, crate::sequences::Cancelled::Cancelled { .. }));
        }
        return Ok(n);
    }
    match to {
        Some(n) => {
            crate::sequences::end_for_number(
                conn,
                n,
                Some(&[s.tenant.as_str()]),
                Reason::SequenceCancelled,
                detail,
            )
            .await
        }
        None => Ok(0),
    }
}

/// How long an entry may sit with a dead reader before another takes it.
const TAKE_OVER_MS: u64 = 30_000;

/// Read `herald:signals` and apply each entry until `stop`; keep `ceased`
/// fresh (one `GET` per tick; a reload only when the version moved).
pub async fn run(
    mut conn: Conn,
    consumer: String,
    policy: Arc<LivePolicy>,
    ceased: Arc<Ceased>,
    partitions: u16,
    dlq_max_len: u64,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `None`: not loaded by this task yet (the server loaded it at start,
    // before the shards; reloading once more is harmless).
    let mut seen_version: Option<i64> = None;
    let mut group = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match redis::cmd("GET")
            .arg(keys::CEASED_VERSION)
            .query_async::<Option<i64>>(&mut conn)
            .await
        {
            Ok(v) if Some(v.unwrap_or(0)) != seen_version => match ceased.reload(&mut conn).await {
                Ok(_) => seen_version = Some(v.unwrap_or(0)),
                Err(e) => {
                    telemetry::redis_error("ceased_reload");
                    tracing::debug!(error = %e, "reloading ceased numbers failed");
                }
            },
            Ok(_) => {}
            Err(e) => {
                telemetry::redis_error("ceased_reload");
                tracing::debug!(error = %e, "reading the ceased version failed");
                continue;
            }
        }
        if !group {
            let r: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(keys::SIGNALS)
                .arg(keys::GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            group = match r {
                Ok(()) => true,
                Err(e) if e.code() == Some("BUSYGROUP") => true,
                Err(e) => {
                    tracing::debug!(error = %e, "creating the signals group failed");
                    false
                }
            };
            if !group {
                continue;
            }
        }
        if let Err(e) = read_and_apply(&mut conn, &consumer, &policy, partitions, dlq_max_len).await
        {
            telemetry::redis_error("signals");
            tracing::debug!(error = %e, "reading signals failed; retried next tick");
        }
    }
}

async fn read_and_apply(
    conn: &mut Conn,
    consumer: &str,
    policy: &LivePolicy,
    partitions: u16,
    dlq_max_len: u64,
) -> redis::RedisResult<()> {
    // Entries of a reader that died, then new ones.
    let claimed: (String, redis::streams::StreamRangeReply, Vec<String>) = redis::cmd("XAUTOCLAIM")
        .arg(keys::SIGNALS)
        .arg(keys::GROUP)
        .arg(consumer)
        .arg(TAKE_OVER_MS)
        .arg("0-0")
        .arg("COUNT")
        .arg(100)
        .query_async(conn)
        .await?;
    let fresh: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(keys::GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(keys::SIGNALS)
        .arg(">")
        .query_async(conn)
        .await?;
    let fresh = fresh.unwrap_or_default();
    let entries = claimed
        .1
        .ids
        .into_iter()
        .chain(fresh.keys.into_iter().flat_map(|k| k.ids));
    for e in entries {
        let raw: Option<Vec<u8>> = e
            .map
            .get("signal")
            .and_then(|v| redis::from_redis_value::<Vec<u8>>(v.clone()).ok());
        let result = match raw.as_deref().map(parse) {
            None => Err("the entry has no `signal` field".to_string()),
            Some(Err(why)) => Err(why),
            Some(Ok((s, to))) => match apply(conn, policy, partitions, &s, to).await {
                Ok(a) => {
                    tracing::info!(id = %s.id, event = %s.event, tenant = %s.tenant,
                        cancelled = a.cancelled, ceased = a.ceased, queued = a.queued, "signal applied");
                    telemetry::signal(&s.event, "applied");
                    Ok(())
                }
                // Redis failed mid-way: leave it pending, retried (every
                // action is safe to repeat).
                Err(why) if why.starts_with("redis: ") => {
                    tracing::warn!(id = %s.id, error = %why, "applying a signal failed; retried");
                    continue;
                }
                Err(why) => Err(why),
            },
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Err(why) = &result {
            tracing::warn!(entry = %e.id, reason = %why, "a signal was refused; kept in the DLQ");
            telemetry::signal("invalid", "refused");
            pipe.cmd("XADD")
                .arg(keys::DLQ)
                .arg("MAXLEN")
                .arg("~")
                .arg(dlq_max_len)
                .arg("*")
                .arg("reason")
                .arg("invalid_signal")
                .arg("detail")
                .arg(why)
                .arg("stream")
                .arg(keys::SIGNALS)
                .arg("entry")
                .arg(&e.id)
                .arg("signal")
                .arg(raw.as_deref().unwrap_or(b""))
                .ignore();
        }
        pipe.cmd("XACK")
            .arg(keys::SIGNALS)
            .arg(keys::GROUP)
            .arg(&e.id)
            .ignore();
        pipe.query_async::<()>(conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_or_say_why_not() {
        let (s, to) = parse(
            br#"{"id":"s1","event":"bankruptcy","tenant":"acme","to":"+14155552671","debt_id":"L-1"}"#,
        )
        .expect("valid");
        assert_eq!((s.event.as_str(), to), ("bankruptcy", Some(14155552671)));
        for bad in [
            &br#"{"event":"x"}"#[..],
            br#"{"id":"s/1","event":"x"}"#,
            br#"{"id":"s","event":"Bad Event"}"#,
            br#"{"id":"s","event":"x","to":"555"}"#,
            br#"{"id":"s","event":"x","anchor":"soon"}"#,
            br#"{"id":"s","event":"x","vars":[1]}"#,
            br#"{"id":"s","event":"x","tenant":"a:b"}"#,
            br#"{"id":"s","event":"x","surprise":1}"#,
            b"not json",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_ceased_snapshot_is_per_tenant_and_number() {
        let c = Ceased::default();
        assert!(!c.is_ceased("acme", 1));
        c.by_number.store(Arc::new(
            [(1u64, vec![Box::<str>::from("acme")].into_boxed_slice())].into(),
        ));
        assert!(c.is_ceased("acme", 1));
        assert!(!c.is_ceased("other", 1));
        assert!(!c.is_ceased("acme", 2));
    }
}
