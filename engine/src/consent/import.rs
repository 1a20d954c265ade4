//! Bulk import of existing consent: JSON lines, one record per line.
//!
//! ```json
//! {"tenant":"acme","number":"+14155550123","purposes":["marketing"],"state":"granted","kind":"express_written","source":"web_form","at":"2025-06-01T12:00:00Z","evidence":"form 881, ip 203.0.113.9"}
//! {"tenant":"acme","number":"+14155550124","state":"revoked","source":"call_center","at":"2025-07-01T09:30:00Z","evidence":"agent 12"}
//! ```
//!
//! `purposes` defaults to all three; `state` is `granted` (with `kind`),
//! `revoked` or `review`; `at` (RFC 3339) is when consent was given or
//! revoked. Every record goes through the same atomic change script as a
//! live change, so it is audited and reaches every instance's replica.
//! A bad line is reported with its line number and skipped; nothing else is
//! affected.

use std::io::BufRead;

use serde::Deserialize;

use super::ledger::{Change, ConsentLedger, Only};
use super::replica::PurposeState;
use crate::consent::ConsentKind;
use crate::error::Error;
use crate::model::{self, Category};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    #[serde(default)]
    tenant: Option<String>,
    number: String,
    #[serde(default)]
    purposes: Option<Vec<Category>>,
    state: String,
    #[serde(default)]
    kind: Option<ConsentKind>,
    source: String,
    at: String,
    #[serde(default)]
    evidence: String,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub records: u64,
    pub changed: u64,
    /// (line number, reason) of each refused line.
    pub refused: Vec<(u64, String)>,
}

const BATCH: usize = 1_000;

/// Import JSON lines from `input`; `by` names who ran the import (audit).
pub async fn import_jsonl(
    conn: &mut crate::conn::Conn,
    ledger: &ConsentLedger,
    input: impl BufRead,
    by: &str,
) -> Result<ImportReport, Error> {
    let mut report = ImportReport::default();
    let mut batch: Vec<Parsed> = Vec::with_capacity(BATCH);
    for (i, line) in input.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(|e| Error::host(format!("line {n}"), e))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse(&line) {
            Ok(p) => batch.push(p),
            Err(e) => report.refused.push((n, e)),
        }
        if batch.len() == BATCH {
            flush(conn, ledger, &mut batch, by, &mut report).await?;
        }
    }
    flush(conn, ledger, &mut batch, by, &mut report).await?;
    Ok(report)
}

struct Parsed {
    tenant: String,
    number: u64,
    purposes: Vec<Category>,
    state: PurposeState,
    source: String,
    evidence: String,
    at_ms: i64,
}

fn parse(line: &str) -> Result<Parsed, String> {
    let r: Record = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let tenant = r
        .tenant
        .unwrap_or_else(|| model::DEFAULT_TENANT.to_string());
    if !model::valid_tenant(&tenant) {
        return Err(format!("`tenant` `{tenant}` is not a valid tenant name"));
    }
    let number = model::parse_e164(&r.number)?;
    let state = match (r.state.as_str(), r.kind) {
        ("granted", Some(k)) => PurposeState::Granted(k),
        ("granted", None) => {
            return Err("`granted` needs `kind` (express or express_written)".into());
        }
        ("revoked", _) => PurposeState::Revoked,
        ("review", _) => PurposeState::Review,
        (other, _) => return Err(format!("`state` `{other}`: granted, revoked or review")),
    };
    if r.source.trim().is_empty() {
        return Err("`source` must not be empty".into());
    }
    let at_ms =
        r.at.parse::<jiff::Timestamp>()
            .map_err(|e| format!("`at` is not RFC 3339: {e}"))?
            .as_millisecond();
    Ok(Parsed {
        tenant,
        number,
        purposes: r.purposes.unwrap_or_else(|| Category::ALL.to_vec()),
        state,
        source: r.source,
        evidence: r.evidence,
        at_ms,
    })
}

async fn flush(
    conn: &mut crate::conn::Conn,
    ledger: &ConsentLedger,
    batch: &mut Vec<Parsed>,
    by: &str,
    report: &mut ImportReport,
) -> Result<(), Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    ledger.load_into(&mut pipe);
    for p in batch.iter() {
        ledger.add_to(
            &mut pipe,
            &Change {
                tenant: &p.tenant,
                number: p.number,
                purposes: &p.purposes,
                state: p.state,
                only: Only::Any,
                source: &p.source,
                by,
                evidence: &p.evidence,
                at_ms: p.at_ms,
            },
        );
    }
    let replies: Vec<(String, String)> = pipe
        .query_async(conn)
        .await
        .map_err(|e| Error::redis("import consent", e))?;
    report.records += batch.len() as u64;
    report.changed += replies.iter().filter(|(_, c)| !c.is_empty()).count() as u64;
    batch.clear();
    Ok(())
}
