//! Detecting a wiped or restored Redis before it makes Herald forget a
//! STOP. A Redis restarted without its data, flushed, or restored from an
//! older copy loses revocations; an instance that then loads its ledger
//! would text people who said STOP. So:
//!
//! - the ledger has an **epoch** (`herald:ledger:epoch`, a random id made
//!   once); every instance remembers the epoch it started on;
//! - every second each instance checks that the epoch is still there and
//!   the same, and that the audit stream does not end before the last
//!   entry this instance applied;
//! - when either fails, it marks the ledger **suspect**
//!   (`herald:ledger:suspect`, with the reason). Every instance — and every
//!   instance that starts later — stops sending (`/readyz` says why) until
//!   an operator confirms the ledger (`ConfirmLedger` over gRPC), which may
//!   first write this instance's replica back into Redis (its revocations
//!   survived in memory).
//!
//! Not detectable: a Redis wiped while no instance runs. An instance that
//! starts then finds no epoch and no mark, exactly as on a first start;
//! persistence (`health`) is what prevents that case.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::ConsentLedger;
use super::ledger::{Change, Only};
use crate::conn::Conn;
use crate::error::Error;
use crate::keys;
use crate::model::Category;

/// This instance's view of the ledger's epoch.
pub struct LedgerGuard {
    epoch: ArcSwap<String>,
}

impl LedgerGuard {
    /// Join the ledger's epoch, making it if there is none (a first start).
    pub async fn start(conn: &mut Conn) -> Result<LedgerGuard, Error> {
        let fresh = format!("{:016x}", rand::random::<u64>());
        let (epoch,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(keys::LEDGER_EPOCH)
            .arg(&fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(keys::LEDGER_EPOCH)
            .query_async(conn)
            .await
            .map_err(|e| Error::redis("ledger epoch", e))?;
        Ok(LedgerGuard {
            epoch: ArcSwap::from_pointee(epoch.unwrap_or(fresh)),
        })
    }

    /// The epoch this instance runs on.
    pub fn epoch(&self) -> Arc<String> {
        self.epoch.load_full()
    }

    /// `Ok(Ok(()))` while the ledger is intact; `Ok(Err(why))` when it is
    /// suspect (and now marked so for every instance); `Err` when Redis did
    /// not answer. `applied` is the last audit entry this instance applied.
    pub async fn check(&self, conn: &mut Conn, applied: &str) -> Result<Result<(), String>, Error> {
        type Read = (
            Option<String>,
            Option<String>,
            Option<String>,
            redis::streams::StreamRangeReply,
        );
        let (epoch, suspect, confirmed, last): Read = redis::pipe()
            .cmd("GET")
            .arg(keys::LEDGER_EPOCH)
            .cmd("GET")
            .arg(keys::LEDGER_SUSPECT)
            .cmd("GET")
            .arg(keys::LEDGER_CONFIRMED)
            .cmd("XREVRANGE")
            .arg(keys::CONSENT_AUDIT)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await
            .map_err(|e| Error::redis("ledger check", e))?;
        if let Some(why) = suspect {
            return Ok(Err(why));
        }
        let mine = self.epoch.load_full();
        let why = match epoch {
            None => Some(
                "the ledger's epoch is gone: Redis was wiped, or restarted without its data"
                    .to_string(),
            ),
            Some(e) if e != *mine => {
                if confirmed.as_deref() == Some(e.as_str()) {
                    // An operator confirmed a new epoch: join it.
                    self.epoch.store(Arc::new(e));
                    None
                } else {
                    Some(format!(
                        "the ledger's epoch changed ({mine} → {e}): Redis was restored from another copy"
                    ))
                }
            }
            Some(_) => None,
        };
        let why = why.or_else(|| {
            let seen = stream_id(applied)?;
            let end = last.ids.first().and_then(|e| stream_id(&e.id));
            match end {
                Some(end) if end >= seen => None,
                _ if seen == (0, 0) => None,
                _ => Some(format!(
                    "the consent audit stream ends at {}, before {applied}, which this instance applied: Redis was restored from an older copy",
                    last.ids.first().map_or("nothing", |e| e.id.as_str())
                )),
            }
        });
        match why {
            None => Ok(Ok(())),
            Some(why) => {
                let _: () = redis::cmd("SET")
                    .arg(keys::LEDGER_SUSPECT)
                    .arg(&why)
                    .arg("NX")
                    .query_async(conn)
                    .await
                    .map_err(|e| Error::redis("ledger check", e))?;
                tracing::error!(%why, "the consent ledger is suspect: sending stops until an operator confirms it");
                Ok(Err(why))
            }
        }
    }
}

/// A stream id `<ms>-<seq>` as a comparable pair.
fn stream_id(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What confirming the ledger did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    /// The new epoch every instance joins.
    pub epoch: String,
    /// Numbers whose state was written back from this instance's replica.
    pub restored: u64,
}

/// An operator's confirmation of a suspect ledger. With `restore`, first
/// write every non-default state of this instance's replica back into the
/// ledger (audited, source `restore`, by `by`, with `reason` as evidence):
/// the revocations it held survive the wipe. Then start a new epoch that
/// every instance joins, and lift the mark.
pub async fn confirm(
    conn: &mut Conn,
    ledger: &ConsentLedger,
    restore: bool,
    by: &str,
    reason: &str,
) -> Result<Confirmed, Error> {
    let mut restored = 0;
    if restore {
        let mut states = Vec::new();
        ledger
            .replica()
            .snapshot()
            .for_each(|tenant, number, state| states.push((tenant.to_string(), number, state)));
        let now = crate::clock::now_ms();
        for chunk in states.chunks(1_000) {
            let mut pipe = redis::pipe();
            ledger.load_into(&mut pipe);
            for (tenant, number, state) in chunk {
                for purpose in Category::ALL {
                    let s = state.get(purpose);
                    if s == super::replica::PurposeState::Unknown {
                        continue;
                    }
                    ledger.add_to(
                        &mut pipe,
                        &Change {
                            tenant,
                            number: *number,
                            purposes: &[purpose],
                            state: s,
                            only: Only::Any,
                            source: "restore",
                            by,
                            evidence: reason,
                            at_ms: now,
                        },
                    );
                }
            }
            let _: Vec<redis::Value> = pipe
                .query_async(conn)
                .await
                .map_err(|e| Error::redis("restore consent", e))?;
            restored += chunk.len() as u64;
        }
    }
    let epoch = format!("{:016x}", rand::random::<u64>());
    let _: () = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(keys::LEDGER_EPOCH)
        .arg(&epoch)
        .ignore()
        .cmd("SET")
        .arg(keys::LEDGER_CONFIRMED)
        .arg(&epoch)
        .ignore()
        .cmd("DEL")
        .arg(keys::LEDGER_SUSPECT)
        .ignore()
        .query_async(conn)
        .await
        .map_err(|e| Error::redis("confirm ledger", e))?;
    tracing::warn!(%by, %reason, restored, %epoch, "consent ledger confirmed by an operator");
    Ok(Confirmed { epoch, restored })
}
