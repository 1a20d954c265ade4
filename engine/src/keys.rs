//! Every Redis key Herald reads or writes, what it holds and who writes it,
//! and the layout of the message hash. Nothing else in the crate spells a
//! `herald:` key. The queue streams, `herald:events`, `herald:dlq` and the
//! consumer group are a contract (docs/contracts.md#ingest,
//! docs/contracts.md#outcomes): tools outside this repository use them
//! verbatim.
//!
//! | key | type | holds | written by |
//! |---|---|---|---|
//! | `herald:q:{n}` | stream | queued messages, field `msg` | producers, `POST /v1/messages`, the delayed mover |
//! | `herald:events` | stream | one entry per state change | the outcome writer, receipts |
//! | `herald:dlq` | stream | rejected entries, whole | the outcome writer |
//! | `herald:delayed` | sorted set | `tenant:id` scored by due time (ms) | the outcome writer; emptied by the mover |
//! | `herald:msg:<tenant>:<id>` | hash | the message record ([`msg`]) | the claim, the outcome writer, the mover, receipts |
//! | `herald:trail:<tenant>:<id>` | list | JSON decision steps before the latest | the outcome writer, receipts |
//! | `herald:pid:<provider>:<provider id>` | string | `tenant\nid` of a sent message | the outcome writer |
//! | `herald:receipts:orphans` | sorted set | receipts waiting for their message | receipts |
//! | `herald:receipt:<provider>:<provider id>` | hash | one orphan receipt | receipts |
//! | `herald:consent:state:<tenant>` | hash | number → three state letters | the consent ledger |
//! | `herald:consent:detail:<tenant>:<number>` | hash | purpose → JSON evidence | the consent ledger |
//! | `herald:consent:audit` | stream | every consent change (append-only) | the consent ledger |
//! | `herald:cap:{<number>}:<rule>[:<debt>]` | sorted set | texts counted by a frequency cap | the cap script, the outcome writer |
//! | `herald:paused` | hash | tenant → JSON pause | the control service |
//! | `herald:throttles` | hash | lane → JSON live limit | the control service |
//! | `herald:throttle:{<carrier>}` | string | a fleet lane's GCRA state | fleet lanes |
//! | `herald:carrier:{<number>}` | string | a carrier lookup's answer | carrier lookups |
//! | `herald:inbound` | stream | replies that are not keywords | the inbound webhook |
//! | `herald:ledger:epoch` | string | the consent ledger's epoch (a random id) | the first instance; an operator's confirmation |
//! | `herald:ledger:suspect` | string | why the ledger looks wiped or restored | any instance that sees it |
//! | `herald:ledger:confirmed` | string | the epoch an operator confirmed | `ConfirmLedger` |
//! | `herald:seen:<tenant>:<provider id>` | string | an inbound reply already applied (400 days) | the consent ledger |
//! | `herald:texted:{<number>}` | set | tenants that texted the number from a sender no tenant owns (400 days) | the outcome writer |
//! | `herald:written:<batch>` | string | that an outcome batch committed (10 min) | the outcome writer |
//! | `herald:seq:<tenant>:<id>` | hash | a sequence: state, schedule, anchor, steps ([`seq`]) | the outcome writer (enrolment), cancels |
//! | `herald:seqs:{<number>}` | set | `tenant:id` of the sequences to a number (STOP ends them) | the outcome writer |
//! | `herald:seqdebt:<tenant>:<debt>` | set | enrolment ids of a debt's sequences (a payment signal ends them) | the outcome writer |
//! | `herald:exp:<tenant>:<name>` | hash | `<variant>:messages`, `<variant>:delivered`, `<variant>:undelivered` → messages | the outcome writer, receipts |
//! | `herald:exp:<tenant>:<name>:<variant>:<what>` | set | numbers sent / replied / opted_out / paid | the outcome writer, inbound replies, signals |
//! | `herald:expwho:{<number>}` | hash | `tenant:experiment` → the variant the number got (90 days) | the outcome writer |
//! | `herald:signals` | stream | upstream events (field `signal`), group `herald` | upstream systems |
//! | `herald:ceased` | hash | `tenant:number` → JSON: no collections text to the number (a cease, a bankruptcy, a dispute) | the signal reader |
//! | `herald:ceased:version` | string | bumped on every change of `herald:ceased` | the signal reader |
//! | `herald:sequences` | sorted set | `tenant:id` of every sequence, scored by its last step (ms) | the outcome writer; the reconciler prunes it |
//!
//! Tenants cannot contain `:` (validated at ingest), so keys that embed a
//! tenant and an id are unambiguous. Braces are Redis Cluster hash tags.

/// Consumer group every Herald instance reads the queue with.
pub const GROUP: &str = "herald";
/// Outcome events, one entry per state change.
pub const EVENTS: &str = "herald:events";
/// Rejected entries, whole, with the reason.
pub const DLQ: &str = "herald:dlq";
/// Deferred messages (member `tenant:id`), scored by due time (ms epoch).
pub const DELAYED: &str = "herald:delayed";
/// Prefix of the queue streams: `herald:q:{` + partition + `}`.
pub const QUEUE_PREFIX: &str = "herald:q:{";
/// Prefix of a message's record hash: `herald:msg:<tenant>:<id>`.
pub const MSG_PREFIX: &str = "herald:msg:";
/// Prefix of a message's decision trail list.
pub const TRAIL_PREFIX: &str = "herald:trail:";
/// Replies that are not keywords (and ambiguous ones, for review).
pub const INBOUND: &str = "herald:inbound";
/// Paused tenants: tenant → JSON `{reason, paused_at_ms, drop}`.
pub const PAUSED: &str = "herald:paused";
/// Prefix of a paused tenant's held messages (`herald:held:<tenant>`):
/// members `tenant:id`, scored by the instant they were held. Written by the
/// outcome writer (`deferred` / `paused`), emptied into the delayed set on
/// resume (`tenants::RELEASE_HELD_LUA`).
pub const HELD_PREFIX: &str = "herald:held:";
/// The tenants that have held messages (a set), so every instance can
/// release a resumed tenant's stragglers.
pub const HELD_TENANTS: &str = "herald:held";
/// Control-plane tokens: name → JSON `{hash, role, created_at_ms,
/// created_by}` (the SHA-256 of the token, never the token). Written by
/// `CreateToken` / `RevokeToken`.
pub const TOKENS: &str = "herald:tokens";
/// The control plane's audit trail (append-only stream): every accepted
/// change with who, role, what, target, before, after, at, request_id.
pub const AUDIT: &str = "herald:audit";
/// Live throttle limits of releases before the policy store: lane
/// (`carrier:att`, `sender:+1…`) → JSON. Read once, when an empty policy
/// store is seeded (the overrides become version 1's `[throttles]`); never
/// written since.
pub const THROTTLES: &str = "herald:throttles";
/// The policy store's current version (an integer; absent: empty store).
/// Written only by `policy::store::PUT_LUA`, with the version itself.
pub const POLICY_CURRENT: &str = "herald:policy:current";
/// Every policy version: version → JSON `{doc, at_ms, who, role, comment,
/// base, sha256}` (`doc` is the TOML document). Kept whole: rollback and
/// history read it.
pub const POLICY_VERSIONS: &str = "herald:policy:versions";
/// The version each instance runs: consumer name → JSON `{version,
/// seen_ms}`, written by each instance's policy watcher every 2 s.
pub const POLICY_INSTANCES: &str = "herald:policy:instances";
/// The consent audit stream (append-only) and change feed.
pub const CONSENT_AUDIT: &str = "herald:consent:audit";
/// Prefix of a tenant's consent state hash.
pub const CONSENT_STATE_PREFIX: &str = "herald:consent:state:";
/// The consent ledger's epoch (`consent::guard`).
pub const LEDGER_EPOCH: &str = "herald:ledger:epoch";
/// Set when the ledger looks wiped or restored: every instance stops.
pub const LEDGER_SUSPECT: &str = "herald:ledger:suspect";
/// The epoch an operator confirmed.
pub const LEDGER_CONFIRMED: &str = "herald:ledger:confirmed";
/// Receipts whose message is not known yet, scored by arrival (ms).
pub const RECEIPT_ORPHANS: &str = "herald:receipts:orphans";

/// Prefix of a sequence's record: `herald:seq:<tenant>:<id>` ([`seq`]).
pub const SEQ_PREFIX: &str = "herald:seq:";
/// Every sequence (`tenant:id`), scored by its last step's instant (ms):
/// what the reconciler walks.
pub const SEQUENCES: &str = "herald:sequences";
const SEQS_TO_PREFIX: &str = "herald:seqs:{";
const SEQ_DEBT_PREFIX: &str = "herald:seqdebt:";
/// Upstream events (`signals`): one field `signal`, JSON.
pub const SIGNALS: &str = "herald:signals";
/// Ceased numbers: field `tenant:number` → JSON `{event, signal, debt_id,
/// at_ms}`.
pub const CEASED: &str = "herald:ceased";
/// Incremented with every change of [`CEASED`]: instances reload on a move.
pub const CEASED_VERSION: &str = "herald:ceased:version";

const CONSENT_DETAIL_PREFIX: &str = "herald:consent:detail:";
const PID_PREFIX: &str = "herald:pid:";
const RECEIPT_PREFIX: &str = "herald:receipt:";
const CAP_PREFIX: &str = "herald:cap:{";
const FLEET_LANE_PREFIX: &str = "herald:throttle:{";
const CARRIER_PREFIX: &str = "herald:carrier:{";
const WRITTEN_PREFIX: &str = "herald:written:";
const SEEN_PREFIX: &str = "herald:seen:";
const TEXTED_PREFIX: &str = "herald:texted:{";

/// The message record `herald:msg:<tenant>:<id>`: its fields and the
/// values of `state`. Who writes what:
///
/// - the claim (`ingest::claim`) creates it with `entry` and `state`
///   (`sending` or `holding`) before any request leaves, and sets
///   `attempt` on a redelivery or release;
/// - the outcome writer (`delivery::writer`) records each decision:
///   `state` (a status), `ts`, `attempt`, `reason`, `provider`,
///   `provider_id`, `segments`, `pin`; for a deferral also `msg`, `part`
///   and `until`;
/// - the delayed mover (`ingest::delayed`, Lua) re-queues `msg` into
///   partition `part`, sets `entry` to the new stream entry and `state` to
///   `queued`, and deletes `msg` and `part`;
/// - receipts (`delivery::receipts`, Lua) set `receipt`, `receipt_ts`,
///   `state` and `reason`.
///
/// `GET /v1/messages/{tenant}/{id}` reads it (`delivery::record`).
pub mod msg {
    /// The stream entry that first carried this tenant + id (`<ms>-<seq>`).
    pub const ENTRY: &str = "entry";
    /// Where the message is: [`SENDING`], [`HOLDING`], [`QUEUED`] or a status.
    pub const STATE: &str = "state";
    /// Attempts recorded so far.
    pub const ATTEMPT: &str = "attempt";
    /// The provider an ambiguous send went to: its re-send goes nowhere else.
    pub const PIN: &str = "pin";
    /// A deferred message's original entry bytes, until it is re-queued.
    pub const RAW: &str = "msg";
    /// A deferred message's partition, until it is re-queued.
    pub const PART: &str = "part";
    /// A deferral's due time (ms).
    pub const UNTIL: &str = "until";
    /// When the latest decision was recorded (ms).
    pub const TS: &str = "ts";
    pub const REASON: &str = "reason";
    pub const PROVIDER: &str = "provider";
    pub const PROVIDER_ID: &str = "provider_id";
    pub const SEGMENTS: &str = "segments";
    /// A templated message: the template, the version rendered, and the
    /// SHA-256 (hex) of the text rendered, so what was sent can be proved
    /// without keeping the text.
    pub const TEMPLATE: &str = "template";
    pub const TEMPLATE_VERSION: &str = "template_version";
    pub const BODY_SHA256: &str = "body_sha256";
    /// The experiment and variant that picked the template
    /// (`policy::experiments`).
    pub const EXPERIMENT: &str = "experiment";
    pub const VARIANT: &str = "variant";
    /// The first delivery receipt (`delivered` / `undelivered`).
    pub const RECEIPT: &str = "receipt";
    pub const RECEIPT_TS: &str = "receipt_ts";
    /// An enrolment's own record: its sequence was written
    /// (`herald:seq:<tenant>:<id>`); the state an enrolment ends in.
    pub const ENROLLED: &str = "enrolled";

    /// Claimed for a send: a request may be on its way.
    pub const SENDING: &str = "sending";
    /// Claimed to be held (deferred or expired): nothing is sent.
    pub const HOLDING: &str = "holding";
    /// Re-queued by the delayed mover.
    pub const QUEUED: &str = "queued";

    /// Every field, for the test that the Lua scripts write no other.
    pub const FIELDS: [&str; 19] = [
        ENTRY,
        STATE,
        ATTEMPT,
        PIN,
        RAW,
        PART,
        UNTIL,
        TS,
        REASON,
        PROVIDER,
        PROVIDER_ID,
        SEGMENTS,
        RECEIPT,
        RECEIPT_TS,
        TEMPLATE,
        TEMPLATE_VERSION,
        BODY_SHA256,
        EXPERIMENT,
        VARIANT,
    ];

    /// The states a message holds before it is decided.
    pub fn undecided(state: &str) -> bool {
        matches!(state, "" | SENDING | HOLDING | QUEUED)
    }
}

/// `herald:q:{n}` — the braces are literal (a Redis Cluster hash tag).
pub fn queue(partition: u16) -> String {
    format!("{QUEUE_PREFIX}{partition}}}")
}

/// Message record key.
pub fn message(tenant: &str, id: &str) -> String {
    let mut k = String::with_capacity(MSG_PREFIX.len() + tenant.len() + id.len() + 1);
    message_into(&mut k, tenant, id);
    k
}

/// Write the message record key into `buf` (cleared first): the hot path
/// reuses one buffer per batch, since a command copies its arguments.
pub fn message_into(buf: &mut String, tenant: &str, id: &str) {
    buf.clear();
    buf.push_str(MSG_PREFIX);
    buf.push_str(tenant);
    buf.push(':');
    buf.push_str(id);
}

/// Decision trail list key.
pub fn trail(tenant: &str, id: &str) -> String {
    let mut k = String::with_capacity(TRAIL_PREFIX.len() + tenant.len() + id.len() + 1);
    k.push_str(TRAIL_PREFIX);
    k.push_str(tenant);
    k.push(':');
    k.push_str(id);
    k
}

/// A paused tenant's held messages.
pub fn held(tenant: &str) -> String {
    let mut k = String::with_capacity(HELD_PREFIX.len() + tenant.len());
    k.push_str(HELD_PREFIX);
    k.push_str(tenant);
    k
}

/// A message as a member of the delayed set and of frequency caps:
/// `tenant:id`.
pub fn member(tenant: &str, id: &str) -> String {
    let mut m = String::with_capacity(tenant.len() + id.len() + 1);
    m.push_str(tenant);
    m.push(':');
    m.push_str(id);
    m
}

/// The mapping of a provider's message id to the message (receipts).
pub fn provider_id(provider: &str, provider_id: &str) -> String {
    format!("{PID_PREFIX}{provider}:{provider_id}")
}

/// An orphan receipt: one that arrived before its message was known.
pub fn orphan_receipt(provider: &str, provider_id: &str) -> String {
    format!("{RECEIPT_PREFIX}{provider}:{provider_id}")
}

/// A tenant's consent state hash.
pub fn consent_state(tenant: &str) -> String {
    format!("{CONSENT_STATE_PREFIX}{tenant}")
}

/// The evidence of a number's consent, per purpose.
pub fn consent_detail(tenant: &str, number: u64) -> String {
    format!("{CONSENT_DETAIL_PREFIX}{tenant}:{number}")
}

/// A frequency cap's sorted set for a recipient: the number is the hash
/// tag, so all of one recipient's caps live in one Redis Cluster slot and
/// one script may touch them together. `debt` for caps counted per debt.
pub fn cap(number: u64, rule: &str, debt: Option<&str>) -> String {
    let mut key = format!("{CAP_PREFIX}{number}}}:{rule}");
    if let Some(debt) = debt {
        key.push(':');
        key.push_str(debt);
    }
    key
}

/// A fleet-wide carrier lane's GCRA state.
pub fn fleet_lane(carrier: &str) -> String {
    format!("{FLEET_LANE_PREFIX}{carrier}}}")
}

/// A number's cached carrier lookup.
pub fn carrier_lookup(number: u64) -> String {
    format!("{CARRIER_PREFIX}{number}}}")
}

/// That an inbound reply (its provider message id) was applied for a
/// tenant: a replayed webhook changes nothing.
pub fn seen_reply(tenant: &str, provider_id: &str) -> String {
    format!("{SEEN_PREFIX}{tenant}:{provider_id}")
}

/// The tenants that texted `number` from a sender no tenant owns: where a
/// reply to such a sender goes.
pub fn texted(number: u64) -> String {
    format!("{TEXTED_PREFIX}{number}}}")
}

/// The mark an outcome batch's transaction leaves: if it is there, the
/// batch committed, even when its reply was lost.
pub fn written(batch: u64) -> String {
    format!("{WRITTEN_PREFIX}{batch:016x}")
}

/// A sequence's record.
pub fn sequence(tenant: &str, id: &str) -> String {
    format!("{SEQ_PREFIX}{tenant}:{id}")
}

/// The sequences to a number (members `tenant:id`).
pub fn sequences_to(number: u64) -> String {
    format!("{SEQS_TO_PREFIX}{number}}}")
}

/// An experiment's counts: field `<variant>:messages` → messages sent.
pub fn experiment(tenant: &str, name: &str) -> String {
    format!("{EXPERIMENT_PREFIX}{tenant}:{name}")
}

/// Prefix of an experiment's counts hash (`herald:exp:<tenant>:<name>`);
/// the receipts script appends tenant and name itself.
pub const EXPERIMENT_PREFIX: &str = "herald:exp:";

/// The people (numbers) of an experiment's variant who were sent a
/// message, replied, opted out or paid (`what`): a set each.
pub fn experiment_people(tenant: &str, name: &str, variant: &str, what: &str) -> String {
    format!("herald:exp:{tenant}:{name}:{variant}:{what}")
}

/// The experiments a number takes part in: field `tenant:experiment` →
/// variant (so a reply or a payment counts for the variant it saw).
pub fn experiments_of(number: u64) -> String {
    format!("herald:expwho:{{{number}}}")
}

/// The enrolment ids of a debt's sequences.
pub fn sequences_of_debt(tenant: &str, debt: &str) -> String {
    format!("{SEQ_DEBT_PREFIX}{tenant}:{debt}")
}

/// The record of a sequence `herald:seq:<tenant>:<id>`: written at
/// enrolment by the outcome writer (`sequences::add_enrolment`), ended by
/// `sequences::CANCEL_LUA`, read by the claim's gate
/// (`ingest::claim::GATE_LUA`) before each step is sent.
pub mod seq {
    /// [`ACTIVE`] or [`CANCELLED`].
    pub const STATE: &str = "state";
    /// Why it ended: `sequence_cancelled`, `opted_out`.
    pub const REASON: &str = "reason";
    pub const DETAIL: &str = "detail";
    pub const SCHEDULE: &str = "schedule";
    /// The anchor date, `YYYY-MM-DD`.
    pub const ANCHOR: &str = "anchor";
    /// How many steps: `<id>/1` … `<id>/<steps>`.
    pub const STEPS: &str = "steps";
    /// The recipient's E.164 digits.
    pub const TO: &str = "to";
    /// The zones the local send times were computed in (comma-separated).
    pub const ZONE: &str = "zone";
    /// Each step's `day HH:MM max_late_ms`, comma-separated (re-anchoring
    /// recomputes from these).
    pub const DEFS: &str = "defs";
    /// Each step's instant (ms), comma-separated, in step order.
    pub const DUE: &str = "due";
    pub const ENROLLED_AT: &str = "enrolled_at";
    /// The enrolment's `debt_id`, when it had one.
    pub const DEBT: &str = "debt";
    pub const ENDED_AT: &str = "ended_at";

    pub const ACTIVE: &str = "active";
    pub const CANCELLED: &str = "cancelled";
}

/// Partition for a recipient: FNV-1a 64 over the E.164 text, so one
/// recipient's messages stay in order. The loadtest producer uses the same
/// function; any producer may choose any partition
/// (docs/contracts.md#ingest).
pub fn partition_for(to_e164: &str, partitions: u16) -> u16 {
    (fnv1a(&[to_e164.as_bytes()]) % u64::from(partitions.max(1))) as u16
}

/// FNV-1a 64 over the concatenation of `parts`: a stable hash (the same in
/// every process and release), for partitions and per-message offsets.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names() {
        assert_eq!(queue(0), "herald:q:{0}");
        assert_eq!(queue(7), "herald:q:{7}");
        assert_eq!(message("acme", "x:1"), "herald:msg:acme:x:1");
        assert_eq!(trail("acme", "x:1"), "herald:trail:acme:x:1");
        let mut buf = String::from("stale");
        message_into(&mut buf, "t", "i");
        assert_eq!(buf, "herald:msg:t:i");
    }

    #[test]
    fn key_shapes() {
        assert_eq!(member("acme", "m-1"), "acme:m-1");
        assert_eq!(provider_id("twilio", "SM1"), "herald:pid:twilio:SM1");
        assert_eq!(orphan_receipt("twilio", "SM1"), "herald:receipt:twilio:SM1");
        assert_eq!(consent_state("acme"), "herald:consent:state:acme");
        assert_eq!(
            consent_detail("acme", 14155552671),
            "herald:consent:detail:acme:14155552671"
        );
        assert_eq!(
            cap(14155552671, "ma-collections-cap", Some("D-1")),
            "herald:cap:{14155552671}:ma-collections-cap:D-1"
        );
        assert_eq!(cap(1, "r", None), "herald:cap:{1}:r");
        assert_eq!(fleet_lane("att"), "herald:throttle:{att}");
        assert_eq!(carrier_lookup(14155550123), "herald:carrier:{14155550123}");
    }

    #[test]
    fn fnv1a_known_vectors() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(
            partition_for("a", u16::MAX),
            (0xaf63dc4c8601ec8c_u64 % 65535) as u16
        );
        assert_eq!(partition_for("+14155552671", 1), 0);
    }
}
