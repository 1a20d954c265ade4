//! What an inbound reply does, whatever provider brought it:
//!
//! 1. Find the tenant by the number the reply was sent to.
//! 2. Classify the text (`keywords::classify`).
//! 3. Opt-out / opt-in / ambiguous: change the ledger, with the inbound
//!    message as evidence (one atomic script call; every instance's replica
//!    follows within milliseconds through the audit feed).
//! 4. Answer: one confirmation when the state changed (47 CFR
//!    64.1200(a)(12): one, non-marketing; Reg F 1006.14(h): it only
//!    confirms), or the HELP text. Other and ambiguous replies go to
//!    `herald:inbound` for upstream two-way conversations and review.

use super::keywords::{self, Reply};
use crate::clock::now_ms;
use crate::conn::Conn;
use crate::consent::ConsentKind;
use crate::consent::ConsentLedger;
use crate::consent::ledger::{Change, Only};
use crate::consent::replica::PurposeState;
use crate::error::Error;
use crate::keys;
use crate::model::{self, Category, E164};
use crate::policy::Policy;
use crate::telemetry;

/// Longest `herald:inbound` is kept (approximate `MAXLEN`).
const INBOUND_MAX_LEN: u64 = 1_000_000;

/// One reply, as a provider delivered it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The person who replied (E.164 digits).
    pub from: u64,
    /// The number they replied to, as the provider wrote it.
    pub to: &'a str,
    pub text: &'a str,
    /// The provider's id of the inbound message (Twilio `MessageSid`).
    pub provider_id: &'a str,
}

/// Handle one reply. Returns the text to answer with, if any. An `Err`
/// means the reply was not recorded: the caller must not acknowledge it
/// (a STOP is never lost to a 200).
pub async fn handle<'p>(
    policy: &'p Policy,
    ledger: &ConsentLedger,
    conn: &mut Conn,
    r: &Inbound<'_>,
) -> Result<Option<&'p str>, Error> {
    let tenant = model::parse_e164(r.to)
        .ok()
        .and_then(|n| policy.tenant_of_sender(n))
        .unwrap_or(model::DEFAULT_TENANT);
    let tp = policy.tenant(tenant);
    let classified = keywords::classify(r.text);
    let now = now_ms();
    let by = E164::render(r.from);

    let (kind, purposes, new_state, only, reply): (_, &[Category], _, _, Option<&'p str>) =
        match classified.reply {
            // 47 CFR 64.1200(a)(10): a revocation per se; it covers every
            // purpose unless the tenant's policy says otherwise (Reg F
            // 1006.14(h): an opt-out covers all debts). STOP ALL always does.
            Reply::OptOut { all } => (
                "opt_out",
                if all || tp.revoke_all_purposes {
                    &Category::ALL
                } else {
                    &[Category::Marketing]
                },
                PurposeState::Revoked,
                Only::Any,
                Some(tp.opt_out_confirmation.as_str()),
            ),
            // START / UNSTOP / YES restore what a STOP took: express consent,
            // never written consent for marketing.
            Reply::OptIn => (
                "opt_in",
                &Category::ALL,
                PurposeState::Granted(ConsentKind::Express),
                Only::RevokedOrReview,
                Some(tp.opt_in_confirmation.as_str()),
            ),
            // An unclear reply is judged by a person; sends hold meanwhile.
            Reply::Ambiguous => (
                "ambiguous",
                &Category::ALL,
                PurposeState::Review,
                Only::NotRevoked,
                None,
            ),
            Reply::Help => {
                telemetry::inbound("help");
                return Ok(Some(&tp.help_text));
            }
            Reply::Other => {
                telemetry::inbound("other");
                forward(conn, tenant, by.as_str(), r, "other", now).await?;
                return Ok(None);
            }
        };
    telemetry::inbound(kind);
    let evidence = serde_json::json!({
        "message_sid": r.provider_id, "body": r.text, "to": r.to,
        "keyword": classified.keyword,
    })
    .to_string();
    let change = Change {
        tenant,
        number: r.from,
        purposes,
        state: new_state,
        only,
        source: "inbound",
        by: by.as_str(),
        evidence: &evidence,
        at_ms: now,
    };
    let recorded = ledger.record(conn, &change).await.map_err(|e| {
        tracing::error!(error = %e, "recording an inbound consent change failed");
        Error::redis("inbound_consent", e)
    })?;
    tracing::info!(%tenant, kind, changed = recorded.changed.len(), "inbound reply recorded");
    if matches!(classified.reply, Reply::Ambiguous) {
        forward(conn, tenant, by.as_str(), r, "ambiguous", now).await?;
    }
    // One confirmation, and only for a change: a second STOP gets none.
    Ok(reply.filter(|_| !recorded.changed.is_empty()))
}

/// Put a reply on `herald:inbound` for upstream systems.
async fn forward(
    conn: &mut Conn,
    tenant: &str,
    from: &str,
    r: &Inbound<'_>,
    kind: &str,
    now: i64,
) -> Result<(), Error> {
    redis::cmd("XADD")
        .arg(keys::INBOUND)
        .arg("MAXLEN")
        .arg("~")
        .arg(INBOUND_MAX_LEN)
        .arg("*")
        .arg("tenant")
        .arg(tenant)
        .arg("from")
        .arg(from)
        .arg("to")
        .arg(r.to)
        .arg("body")
        .arg(r.text)
        .arg("provider_id")
        .arg(r.provider_id)
        .arg("kind")
        .arg(kind)
        .arg("ts")
        .arg(now)
        .query_async::<()>(conn)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "forwarding an inbound reply failed");
            Error::redis("inbound_forward", e)
        })
}
