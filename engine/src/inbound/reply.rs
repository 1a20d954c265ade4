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

/// How long a reply's provider id is remembered against replays: a Twilio
/// signature does not expire, so a captured START could be posted again
/// long after a STOP.
const SEEN_TTL_MS: u64 = 400 * 24 * 3_600_000;

/// The tenants a reply belongs to: the owner of the number it was sent to
/// (`tenants.<name>.senders`); for a number no tenant owns, every tenant
/// that texted the person from such a number (`herald:texted:{n}`) — the
/// safe side: a STOP is never lost to the wrong tenant — or, when none
/// did, `default`.
async fn tenants_of(
    policy: &Policy,
    conn: &mut Conn,
    r: &Inbound<'_>,
) -> Result<Vec<String>, Error> {
    if let Some(owner) = model::parse_sender(r.to)
        .ok()
        .and_then(|s| policy.tenant_of_sender(&s))
    {
        return Ok(vec![owner.to_string()]);
    }
    let texted: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::texted(r.from))
        .query_async(conn)
        .await
        .map_err(|e| Error::redis("inbound_tenants", e))?;
    telemetry::inbound_unowned(texted.len());
    tracing::info!(to = r.to, tenants = ?texted, "a reply to a number no tenant owns");
    if texted.is_empty() {
        Ok(vec![model::DEFAULT_TENANT.to_string()])
    } else {
        let mut texted = texted;
        texted.sort();
        Ok(texted)
    }
}

/// Handle one reply. Returns the text to answer with, if any. An `Err`
/// means the reply was not recorded: the caller must not acknowledge it
/// (a STOP is never lost to a 200). A replay of a reply already applied
/// (same provider message id) changes nothing and is answered with nothing.
pub async fn handle<'p>(
    policy: &'p Policy,
    ledger: &ConsentLedger,
    conn: &mut Conn,
    r: &Inbound<'_>,
) -> Result<Option<&'p str>, Error> {
    let tenants = tenants_of(policy, conn, r).await?;
    // The wording (confirmations, HELP) is the first tenant's.
    let tp = policy.tenant(
        tenants
            .first()
            .map_or(model::DEFAULT_TENANT, String::as_str),
    );
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
                for tenant in &tenants {
                    if first_time(conn, tenant, r).await? {
                        forward(conn, tenant, by.as_str(), r, "other", now).await?;
                        crate::experiments::attribute(conn, r.from, &[tenant.as_str()], "replied")
                            .await
                            .map_err(|e| Error::redis("inbound_experiments", e))?;
                    }
                }
                return Ok(None);
            }
        };
    telemetry::inbound(kind);
    let evidence = serde_json::json!({
        "message_sid": r.provider_id, "body": r.text, "to": r.to,
        "keyword": classified.keyword,
    })
    .to_string();
    let mut changed = false;
    let mut fresh = false;
    for tenant in &tenants {
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
        let recorded = if r.provider_id.is_empty() {
            ledger.record(conn, &change).await
        } else {
            let once = keys::seen_reply(tenant, r.provider_id);
            ledger.record_once(conn, &change, &once, SEEN_TTL_MS).await
        }
        .map_err(|e| {
            tracing::error!(error = %e, "recording an inbound consent change failed");
            Error::redis("inbound_consent", e)
        })?;
        if recorded.replay {
            telemetry::inbound("replay");
            tracing::warn!(%tenant, provider_id = r.provider_id, "a replayed reply changed nothing");
            continue;
        }
        fresh = true;
        tracing::info!(%tenant, kind, changed = recorded.changed.len(), "inbound reply recorded");
        changed |= !recorded.changed.is_empty();
        if matches!(classified.reply, Reply::Ambiguous) {
            forward(conn, tenant, by.as_str(), r, "ambiguous", now).await?;
        }
    }
    if fresh {
        // A reply (and an opt-out) counts for the experiment variants the
        // number got.
        let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
        crate::experiments::attribute(conn, r.from, &names, "replied")
            .await
            .map_err(|e| Error::redis("inbound_experiments", e))?;
        if matches!(classified.reply, Reply::OptOut { .. }) {
            crate::experiments::attribute(conn, r.from, &names, "opted_out")
                .await
                .map_err(|e| Error::redis("inbound_experiments", e))?;
        }
    }
    // Not for a replayed webhook: a replay changes nothing (a sequence
    // enrolled since the first STOP is not its business).
    if fresh && matches!(classified.reply, Reply::OptOut { .. }) {
        // A STOP ends every sequence of these tenants to the number: their
        // waiting steps become `cancelled` / `opted_out` at once (the
        // consent check would suppress each anyway, one by one, when due).
        // Safe to repeat, so a retried webhook ends what a failed one did not.
        let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
        crate::sequences::end_for_number(
            conn,
            r.from,
            Some(&names),
            model::Reason::OptedOut,
            "the recipient replied STOP",
        )
        .await
        .map_err(|e| Error::redis("inbound_sequences", e))?;
    }
    // One confirmation, and only for a change: a second STOP gets none.
    Ok(reply.filter(|_| changed))
}

/// Whether this reply is seen for `tenant` for the first time (a reply
/// that changes no consent: its replay must not be forwarded twice).
async fn first_time(conn: &mut Conn, tenant: &str, r: &Inbound<'_>) -> Result<bool, Error> {
    if r.provider_id.is_empty() {
        return Ok(true);
    }
    let set: Option<String> = redis::cmd("SET")
        .arg(keys::seen_reply(tenant, r.provider_id))
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(SEEN_TTL_MS)
        .query_async(conn)
        .await
        .map_err(|e| Error::redis("inbound_seen", e))?;
    Ok(set.is_some())
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
