//! The message record a person reads: `GET /v1/messages/{tenant}/{id}`
//! shows the record hash (`keys::msg`) and the decision trail
//! (`herald:trail:<tenant>:<id>`), whose steps are [`TrailEntry`]s.

use serde::Serialize;
use serde_json::Value;

use crate::conn::Conn;
use crate::error::Error;
use crate::keys::{self, msg};

/// One trail entry, stored as JSON in `herald:trail:<tenant>:<id>`.
#[derive(Serialize)]
pub struct TrailEntry<'a> {
    pub ts: i64,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<&'a str>,
    pub attempt: u32,
    pub entry: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub rules: &'a [crate::policy::Fired],
}

/// Append a step to a message's trail (and keep the trail `ttl_ms`).
pub fn add_step(
    pipe: &mut redis::Pipeline,
    tenant: &str,
    id: &str,
    entry: &TrailEntry<'_>,
    ttl_ms: u64,
) {
    let key = keys::trail(tenant, id);
    let json = serde_json::to_string(entry).unwrap_or_default();
    pipe.cmd("RPUSH").arg(&key).arg(json).ignore();
    pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
}

/// A message's record as `GET /v1/messages/{tenant}/{id}` shows it: the
/// record's fields (numbers as numbers; the stored entry bytes left out)
/// and its trail, the latest decision last. `None`: no such message, or
/// its record expired.
pub async fn read(conn: &mut Conn, tenant: &str, id: &str) -> Result<Option<Value>, Error> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGETALL").arg(keys::message(tenant, id));
    pipe.cmd("LRANGE")
        .arg(keys::trail(tenant, id))
        .arg(0)
        .arg(-1);
    type StateAndTrail = (Vec<(String, String)>, Vec<String>);
    let (fields, trail): StateAndTrail = pipe
        .query_async(conn)
        .await
        .map_err(|e| Error::redis("read_message", e))?;
    if fields.is_empty() && trail.is_empty() {
        return Ok(None);
    }
    Ok(Some(render(tenant, id, fields, &trail)))
}

/// Assemble the record's JSON from what Redis holds.
fn render(tenant: &str, id: &str, fields: Vec<(String, String)>, trail: &[String]) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("tenant".into(), Value::String(tenant.into()));
    out.insert("id".into(), Value::String(id.into()));
    for (k, v) in fields {
        if k == msg::RAW || k == msg::PART {
            continue;
        }
        let value = match k.as_str() {
            msg::ATTEMPT | msg::SEGMENTS | msg::TS | msg::UNTIL => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(v)),
            _ => Value::String(v),
        };
        out.insert(k, value);
    }
    let mut trail: Vec<Value> = trail
        .iter()
        .map(|t| serde_json::from_str(t).unwrap_or(Value::String(t.clone())))
        .collect();
    // The latest decision lives in the hash; the list holds the steps before
    // it (a first-try `sent` writes no list entry). Show it as the last step.
    let state = out.get(msg::STATE).and_then(Value::as_str).unwrap_or("");
    let decided = !msg::undecided(state);
    let last = trail.last();
    let already_last = last.and_then(|t| t.get("status")).and_then(Value::as_str) == Some(state)
        && last.and_then(|t| t.get("ts")) == out.get(msg::TS);
    if decided && !already_last {
        let mut step = serde_json::Map::new();
        for k in [
            msg::TS,
            "status",
            msg::REASON,
            msg::PROVIDER,
            msg::PROVIDER_ID,
            msg::ATTEMPT,
            msg::SEGMENTS,
            msg::UNTIL,
        ] {
            let src = if k == "status" { msg::STATE } else { k };
            if let Some(v) = out.get(src) {
                step.insert(k.into(), v.clone());
            }
        }
        trail.push(Value::Object(step));
    }
    out.insert("trail".into(), Value::Array(trail));
    Value::Object(out)
}
