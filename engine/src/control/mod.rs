//! The gRPC control service (`herald.control.v1.Control`), served on
//! `control.listen`. Every call presents a bearer token: `control.token`
//! (the bootstrap admin) or a named token with a role ([`access`]); every
//! accepted change is appended to the audit trail ([`audit`]).

pub mod access;
pub mod audit;
pub mod config;
mod content;

use std::sync::Arc;
use std::time::Instant;

use herald_control::v1::control_server::{Control, ControlServer};
use herald_control::v1::{
    CancelSequenceRequest, CancelSequenceResponse, GetSequenceRequest, GetSequenceResponse,
    GetTemplateRequest, GetTemplateResponse, ListTemplatesRequest, ListTemplatesResponse,
    PreviewTemplateRequest, PreviewTemplateResponse, PublishTemplateRequest,
    PublishTemplateResponse, PutTemplateRequest, PutTemplateResponse,
};
use herald_control::v1::{
    ConfirmLedgerRequest, ConfirmLedgerResponse, ConsentAuditEntry, DiffPolicyRequest,
    DiffPolicyResponse, ExportConsentRequest, GetConsentRequest, GetConsentResponse,
    GetPolicyRequest, GetPolicyResponse, GetStatsRequest, GetStatsResponse, GetTenantRequest,
    GetTenantResponse, InstancePolicy, ListPausedTenantsRequest, ListPausedTenantsResponse,
    ListThrottlesRequest, ListThrottlesResponse, PartitionStats, PauseTenantRequest,
    PauseTenantResponse, PolicyHistoryRequest, PolicyHistoryResponse, PolicySample,
    PolicyStatusRequest, PolicyStatusResponse, PolicyVersion, PurposeConsent, PutPolicyRequest,
    PutPolicyResponse, ResumeTenantRequest, ResumeTenantResponse, RollbackPolicyRequest,
    RollbackPolicyResponse, SampleDecision, SampleEvaluation, SetConsentRequest,
    SetConsentResponse, SetThrottleRequest, SetThrottleResponse, TenantPause, ThrottleLimit,
};
use herald_control::v1::{
    ExperimentResultsRequest, ExperimentResultsResponse, PromoteExperimentRequest,
    PromoteExperimentResponse,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::clock::now_ms;
use crate::conn::Conn;
use crate::dispatch::Dispatcher;
use crate::keys;
use crate::model::valid_tenant;
use crate::policy::document::{self, Document, Section};
use crate::policy::store::{self, Stored};
use crate::policy::{Policy, Verdict};
use crate::secret::Secret;
use crate::tenants;
use access::{Need, Principal};
use serde_json::{Value, json};

/// The control service of one instance.
pub struct ControlService {
    d: Arc<Dispatcher>,
    conn: Conn,
    started: Instant,
    guard: Arc<crate::consent::guard::LedgerGuard>,
    release: tenants::Release,
    /// `control.token`: the bootstrap admin; empty, only named tokens.
    bootstrap: Secret,
    /// What a policy document is validated against (this instance's
    /// providers and carrier table).
    policy_ctx: document::Context,
}

/// The caller of an accepted call and its request id.
struct Caller {
    who: Principal,
    request_id: String,
}

impl ControlService {
    pub fn new(
        d: Arc<Dispatcher>,
        conn: Conn,
        guard: Arc<crate::consent::guard::LedgerGuard>,
        release: tenants::Release,
        bootstrap: Secret,
        policy_ctx: document::Context,
    ) -> Self {
        ControlService {
            d,
            conn,
            started: Instant::now(),
            guard,
            release,
            bootstrap,
            policy_ctx,
        }
    }

    /// Who calls, if its token may do what `need` asks (`what` names the
    /// call in the refusal).
    async fn caller<T>(&self, req: &Request<T>, need: Need, what: &str) -> Result<Caller, Status> {
        let mut conn = self.conn.clone();
        let who = access::authorize(
            &mut conn,
            req.metadata(),
            self.bootstrap.expose(),
            need,
            what,
        )
        .await?;
        Ok(Caller {
            who,
            request_id: audit::request_id(req.metadata()),
        })
    }

    /// Append an accepted change to the audit trail, and log it.
    async fn audited(
        &self,
        caller: &Caller,
        what: &str,
        target: &str,
        before: Value,
        after: Value,
    ) -> Result<(), Status> {
        tracing::warn!(
            who = %caller.who.name,
            role = caller.who.role.as_str(),
            what,
            target,
            request_id = %caller.request_id,
            "control-plane change"
        );
        let mut conn = self.conn.clone();
        audit::append(
            &mut conn,
            &audit::Change {
                who: &caller.who,
                what,
                target,
                before,
                after,
                request_id: &caller.request_id,
                at_ms: now_ms(),
            },
        )
        .await
        .map(|_| ())
    }
}

/// The policy RPCs' shared steps: read the current version, validate and
/// store a new one, evaluate samples.
impl ControlService {
    /// The current version's record and document.
    async fn current_policy(&self) -> Result<(Stored, Document), Status> {
        let mut conn = self.conn.clone();
        let cur = store::current(&mut conn).await.map_err(unavailable)?;
        let stored = store::get(&mut conn, cur)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                Status::failed_precondition(if cur == 0 {
                    "the policy store is empty".to_string()
                } else {
                    format!(
                        "policy version {cur} is current but not stored (herald:policy:versions)"
                    )
                })
            })?;
        let doc = Document::parse(&stored.doc).map_err(|e| {
            Status::internal(format!("stored policy version {cur} does not parse: {e}"))
        })?;
        Ok((stored, doc))
    }

    /// Validate `next` as the version after `base`, check the caller may
    /// change what it changes, and (unless `dry_run`) store and audit it.
    /// Returns the new version (or `base` for a dry run), the diff, the
    /// changed sections and the compiled policy. `audit_what: None`: the
    /// caller writes its own audit entry (one per change).
    #[allow(clippy::too_many_arguments)]
    async fn put_version(
        &self,
        caller: &Caller,
        base: &Stored,
        base_doc: &Document,
        next: Document,
        comment: &str,
        dry_run: bool,
        audit_what: Option<&str>,
    ) -> Result<(u64, String, Vec<Section>, Policy), Status> {
        if caller.who.role == access::Role::Read {
            return Err(Status::permission_denied(format!(
                "token `{}` has role `read`, which changes nothing (not even in a dry run)",
                caller.who.name
            )));
        }
        next.check_change(base_doc)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let compiled = document::compile(&next, base.version + 1, &self.policy_ctx)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let changed = base_doc.changed(&next);
        for section in &changed {
            let need = match section {
                Section::Rules | Section::Compliance => Need::Comply,
                Section::Throttles => Need::Operate,
                Section::Tenants | Section::Routes => Need::Admin,
                // A collections text's wording is regulated (Reg F,
                // 12 CFR 1006.6(e), 1006.18): compliance signs it off.
                Section::Templates | Section::Schedules => Need::Comply,
                // A rule can stop (or start) collections texts.
                Section::Signals => Need::Comply,
                // What a variant says is template wording.
                Section::Experiments => Need::Comply,
            };
            if !caller.who.role.allows(need) {
                return Err(Status::permission_denied(format!(
                    "token `{}` has role `{}`; changing `{}` needs {}",
                    caller.who.name,
                    caller.who.role.as_str(),
                    section.as_str(),
                    need.roles()
                )));
            }
        }
        let text = next.to_text();
        let diff = document::diff(
            &format!("v{}", base.version),
            &base.doc,
            &format!("v{}", base.version + 1),
            &text,
        );
        if dry_run {
            return Ok((base.version, diff, changed, compiled));
        }
        if changed.is_empty() {
            return Err(Status::failed_precondition(format!(
                "nothing changes: the document is version {}'s",
                base.version
            )));
        }
        let rec = Stored::new(
            text,
            &caller.who.name,
            caller.who.role.as_str(),
            comment,
            base.version,
        );
        let mut conn = self.conn.clone();
        let version = match store::put(&mut conn, base.version, &rec).await {
            Ok(v) => v,
            Err(e @ store::PutError::Conflict { .. }) => {
                return Err(Status::aborted(e.to_string()));
            }
            Err(store::PutError::Redis(e)) => return Err(unavailable(e)),
        };
        let names: Vec<&str> = changed.iter().map(|s| s.as_str()).collect();
        let Some(audit_what) = audit_what else {
            return Ok((version, diff, changed, compiled));
        };
        self.audited(
            caller,
            audit_what,
            &format!("policy v{version}"),
            json!({"version": base.version, "sha256": base.sha256}),
            json!({"version": version, "sha256": rec.sha256, "changed": names,
                "comment": comment, "diff": diff}),
        )
        .await?;
        Ok((version, diff, changed, compiled))
    }

    /// What `policy` decides for one sample (before caps).
    fn decide(&self, policy: &Policy, s: &PolicySample) -> Result<SampleDecision, Status> {
        let tenant = if s.tenant.is_empty() {
            crate::model::DEFAULT_TENANT
        } else {
            s.tenant.as_str()
        };
        let to = crate::model::parse_e164(&s.to)
            .map_err(|e| Status::invalid_argument(format!("sample `{}`: {e}", s.to)))?;
        let category = if s.category.is_empty() {
            crate::model::Category::Transactional
        } else {
            crate::model::Category::from_name(&s.category).ok_or_else(|| {
                Status::invalid_argument(format!("sample category `{}`", s.category))
            })?
        };
        let at = if s.at.is_empty() {
            jiff::Timestamp::now()
        } else {
            s.at.parse::<jiff::Timestamp>().map_err(|e| {
                Status::invalid_argument(format!("sample at `{}` is not RFC 3339: {e}", s.at))
            })?
        };
        let input = crate::policy::Input {
            tenant,
            to,
            category,
            recipient_tz: (!s.recipient_tz.is_empty()).then_some(s.recipient_tz.as_str()),
            recipient_state: None,
            at,
            consent: None,
            explain: true,
        };
        let eval = policy.evaluate(&input, self.d.consent.lookup(tenant, to));
        let rules = eval
            .fired
            .iter()
            .filter(|f| f.effect != crate::policy::Effect::Allow)
            .map(|f| f.rule.to_string())
            .collect();
        Ok(match eval.verdict {
            Verdict::Allow => SampleDecision {
                decision: "allow".into(),
                rules,
                ..Default::default()
            },
            Verdict::Defer { until, reason, .. } => SampleDecision {
                decision: "defer".into(),
                reason: reason.as_str().into(),
                until: until.to_string(),
                rules,
            },
            Verdict::Suppress { reason } => SampleDecision {
                decision: "suppress".into(),
                reason: reason.as_str().into(),
                until: String::new(),
                rules,
            },
        })
    }
}

fn version_info(s: &Stored) -> PolicyVersion {
    PolicyVersion {
        version: s.version,
        who: s.who.clone(),
        role: s.role.clone(),
        at_ms: s.at_ms,
        comment: s.comment.clone(),
        base: s.base,
        sha256: s.sha256.clone(),
    }
}

fn pause_json(p: &tenants::Pause) -> Value {
    json!({"reason": p.reason, "paused_at_ms": p.paused_at_ms, "drop": p.drop})
}

fn token_info(name: String, t: &access::StoredToken) -> herald_control::v1::TokenInfo {
    herald_control::v1::TokenInfo {
        name,
        role: t.role.as_str().into(),
        created_at_ms: t.created_at_ms,
        created_by: t.created_by.clone(),
    }
}

fn unavailable(e: redis::RedisError) -> Status {
    Status::unavailable(format!("redis: {e}"))
}

fn tenant_arg(t: &str) -> Result<(), Status> {
    if t.is_empty() {
        return Err(Status::invalid_argument("tenant must not be empty"));
    }
    if !valid_tenant(t) {
        return Err(Status::invalid_argument(
            "tenant must be 1–64 characters of letters, digits, `_`, `-`, `.`",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn get_stats(
        &self,
        req: Request<GetStatsRequest>,
    ) -> Result<Response<GetStatsResponse>, Status> {
        self.caller(&req, Need::Read, "GetStats").await?;
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for p in 0..self.d.queue.partitions {
            pipe.cmd("XINFO").arg("GROUPS").arg(keys::queue(p));
        }
        pipe.cmd("ZCARD").arg(keys::DELAYED);
        let mut replies: Vec<redis::Value> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let delayed = match replies.pop() {
            Some(redis::Value::Int(n)) => Some(n.max(0) as u64),
            _ => None,
        };
        let partitions = replies
            .into_iter()
            .enumerate()
            .map(|(p, reply)| {
                let (lag, pending) = crate::ingest::stream::group_lag(reply).unwrap_or((-1, 0));
                PartitionStats {
                    partition: p as u32,
                    stream: keys::queue(p as u16),
                    depth: (lag >= 0).then_some(lag as u64),
                    pending: pending.max(0) as u64,
                    lag_ms: None,
                }
            })
            .collect();
        Ok(Response::new(GetStatsResponse {
            instance_id: self.d.dispatch.consumer.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            messages_by_status: self
                .d
                .counts
                .snapshot()
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect(),
            in_flight: self.d.in_flight() as u64,
            max_in_flight: self.d.dispatch.max_in_flight as u64,
            partitions,
            delayed,
        }))
    }

    async fn pause_tenant(
        &self,
        req: Request<PauseTenantRequest>,
    ) -> Result<Response<PauseTenantResponse>, Status> {
        let caller = self.caller(&req, Need::Operate, "PauseTenant").await?;
        let req = req.into_inner();
        tenant_arg(&req.tenant)?;
        let mut conn = self.conn.clone();
        let (pause, changed) = self
            .d
            .pauses
            .pause(&mut conn, &req.tenant, &req.reason, req.drop, now_ms())
            .await
            .map_err(unavailable)?;
        if changed {
            self.audited(
                &caller,
                "tenant.pause",
                &req.tenant,
                Value::Null,
                pause_json(&pause),
            )
            .await?;
        }
        Ok(Response::new(PauseTenantResponse {
            pause: Some(TenantPause {
                tenant: req.tenant,
                reason: pause.reason,
                paused_at_ms: pause.paused_at_ms,
                drop: pause.drop,
            }),
            changed,
        }))
    }

    async fn resume_tenant(
        &self,
        req: Request<ResumeTenantRequest>,
    ) -> Result<Response<ResumeTenantResponse>, Status> {
        let caller = self.caller(&req, Need::Operate, "ResumeTenant").await?;
        let req = req.into_inner();
        tenant_arg(&req.tenant)?;
        let mut conn = self.conn.clone();
        let before = tenants::list(&mut conn)
            .await
            .map_err(unavailable)?
            .remove(&req.tenant);
        let changed = self
            .d
            .pauses
            .resume(&mut conn, &req.tenant)
            .await
            .map_err(unavailable)?;
        let released = tenants::release_held(&mut conn, &req.tenant, self.release, now_ms())
            .await
            .map_err(unavailable)?
            .unwrap_or(0);
        if changed {
            self.audited(
                &caller,
                "tenant.resume",
                &req.tenant,
                before.as_ref().map_or(Value::Null, pause_json),
                json!({"released": released}),
            )
            .await?;
        }
        Ok(Response::new(ResumeTenantResponse { changed, released }))
    }

    async fn get_consent(
        &self,
        req: Request<GetConsentRequest>,
    ) -> Result<Response<GetConsentResponse>, Status> {
        self.caller(&req, Need::Read, "GetConsent").await?;
        let req = req.into_inner();
        tenant_arg(&req.tenant)?;
        let number = number_arg(&req.number)?;
        let mut conn = self.conn.clone();
        let purposes = consent_now(&mut conn, &req.tenant, number).await?;
        Ok(Response::new(GetConsentResponse {
            number: crate::model::E164::render(number).as_str().to_string(),
            purposes,
        }))
    }

    async fn set_consent(
        &self,
        req: Request<SetConsentRequest>,
    ) -> Result<Response<SetConsentResponse>, Status> {
        use crate::consent::ConsentKind;
        use crate::consent::ledger::{Change, Only};
        use crate::consent::replica::PurposeState;
        let caller = self.caller(&req, Need::Comply, "SetConsent").await?;
        let req = req.into_inner();
        tenant_arg(&req.tenant)?;
        let number = number_arg(&req.number)?;
        if req.by.trim().is_empty() {
            return Err(Status::invalid_argument(
                "`by` (who makes the change) is required for the audit trail",
            ));
        }
        let state = match (req.state.as_str(), req.kind.as_str()) {
            ("granted", "express") => PurposeState::Granted(ConsentKind::Express),
            ("granted", "express_written") => PurposeState::Granted(ConsentKind::ExpressWritten),
            ("granted", _) => {
                return Err(Status::invalid_argument(
                    "`granted` needs `kind`: express or express_written",
                ));
            }
            ("revoked", _) => PurposeState::Revoked,
            ("review", _) => PurposeState::Review,
            ("unknown", _) => PurposeState::Unknown,
            (other, _) => {
                return Err(Status::invalid_argument(format!(
                    "`state` `{other}`: granted, revoked, review or unknown"
                )));
            }
        };
        if matches!(state, PurposeState::Granted(_) | PurposeState::Revoked)
            && req.evidence.trim().is_empty()
        {
            return Err(Status::invalid_argument(
                "`evidence` is required to grant or revoke consent",
            ));
        }
        let purposes: Vec<crate::model::Category> = if req.purposes.is_empty() {
            crate::model::Category::ALL.to_vec()
        } else {
            let mut v = Vec::with_capacity(req.purposes.len());
            for p in &req.purposes {
                match crate::model::Category::from_name(p) {
                    Some(c) => v.push(c),
                    None => {
                        return Err(Status::invalid_argument(format!(
                            "purpose `{p}`: transactional, collections or marketing"
                        )));
                    }
                }
            }
            v
        };
        let source = if req.source.is_empty() {
            "admin"
        } else {
            req.source.as_str()
        };
        let at_ms = if req.at_ms == 0 { now_ms() } else { req.at_ms };
        let mut conn = self.conn.clone();
        let before = consent_now(&mut conn, &req.tenant, number).await?;
        // Out of `revoked` only with evidence: a revocation is the one
        // state a mistake must not silently undo.
        let leaves_revoked = before.iter().any(|p| {
            p.state == "revoked"
                && purposes.iter().any(|c| c.as_str() == p.purpose)
                && !matches!(state, PurposeState::Revoked)
        });
        if leaves_revoked && req.evidence.trim().is_empty() {
            return Err(Status::invalid_argument(
                "`evidence` is required to move a number out of `revoked`",
            ));
        }
        let recorded = self
            .d
            .consent
            .record(
                &mut conn,
                &Change {
                    tenant: &req.tenant,
                    number,
                    purposes: &purposes,
                    state,
                    only: Only::Any,
                    source,
                    by: &req.by,
                    evidence: &req.evidence,
                    at_ms,
                },
            )
            .await
            .map_err(unavailable)?;
        let purposes_now = consent_now(&mut conn, &req.tenant, number).await?;
        if !recorded.changed.is_empty() {
            let view = |ps: &[PurposeConsent]| -> Value {
                ps.iter()
                    .map(|p| (p.purpose.clone(), json!({"state": p.state, "kind": p.kind, "evidence": p.evidence, "by": p.by})))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            };
            let target = format!(
                "{}/{}",
                req.tenant,
                crate::model::E164::render(number).as_str()
            );
            self.audited(
                &caller,
                "consent.set",
                &target,
                view(&before),
                view(&purposes_now),
            )
            .await?;
        }
        Ok(Response::new(SetConsentResponse {
            changed: recorded
                .changed
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            purposes: purposes_now,
        }))
    }

    type ExportConsentStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<ConsentAuditEntry, Status>> + Send + 'static>,
    >;

    async fn export_consent(
        &self,
        req: Request<ExportConsentRequest>,
    ) -> Result<Response<Self::ExportConsentStream>, Status> {
        self.caller(&req, Need::Comply, "ExportConsent").await?;
        let req = req.into_inner();
        if !req.tenant.is_empty() {
            tenant_arg(&req.tenant)?;
        }
        let tenant = req.tenant;
        let rx = stream_range(
            self.conn.clone(),
            crate::keys::CONSENT_AUDIT,
            req.from_ms,
            req.to_ms,
            move |entry| {
                let text = |k: &str| entry.get::<String>(k).unwrap_or_default();
                if !tenant.is_empty() && text("tenant") != tenant {
                    return None;
                }
                let purposes: Vec<&str> = text("purposes")
                    .chars()
                    .filter_map(crate::consent::ledger::purpose_from_letter)
                    .map(crate::model::Category::as_str)
                    .collect();
                let state = text("state")
                    .bytes()
                    .next()
                    .and_then(crate::consent::ledger::state_of_letter)
                    .map(crate::consent::ledger::state_name)
                    .unwrap_or("unknown");
                Some(ConsentAuditEntry {
                    recorded_ms: entry
                        .id
                        .split('-')
                        .next()
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(0),
                    tenant: text("tenant"),
                    number: text("number")
                        .parse::<u64>()
                        .map(|n| crate::model::E164::render(n).as_str().to_string())
                        .unwrap_or_default(),
                    purposes: purposes.join(","),
                    state: state.to_string(),
                    source: text("source"),
                    by: text("by"),
                    evidence: text("evidence"),
                    at_ms: text("at").parse().unwrap_or(0),
                    id: entry.id,
                })
            },
        );
        Ok(Response::new(Box::pin(tokio_stream_from(rx))))
    }

    async fn set_throttle(
        &self,
        req: Request<SetThrottleRequest>,
    ) -> Result<Response<SetThrottleResponse>, Status> {
        use crate::throttle::live;
        let caller = self.caller(&req, Need::Operate, "SetThrottle").await?;
        let req = req.into_inner();
        let o = live::Override {
            segments: req.segments,
            per: if req.per.is_empty() {
                "second".into()
            } else {
                req.per.clone()
            },
            burst: req.burst,
            set_at_ms: now_ms(),
        };
        // A new policy version with this lane's limit: every instance
        // applies it when it swaps that version in. The lane and the rate
        // are checked where every document is (`document::compile`).
        let (base, base_doc) = self.current_policy().await?;
        let before = base_doc.throttles.get(&req.lane).map_or(
            Value::Null,
            |b| json!({"segments": b.segments, "per": b.per, "burst": b.burst}),
        );
        let mut next = base_doc.clone();
        next.throttles.insert(req.lane.clone(), o.clone());
        let (version, _, _, _) = self
            .put_version(
                &caller,
                &base,
                &base_doc,
                next,
                &format!("throttle {} set", req.lane),
                false,
                None,
            )
            .await?;
        self.audited(
            &caller,
            "throttle.set",
            &req.lane,
            before,
            json!({"segments": o.segments, "per": o.per, "burst": o.burst, "policy_version": version}),
        )
        .await?;
        Ok(Response::new(SetThrottleResponse {
            limit: Some(ThrottleLimit {
                lane: req.lane,
                segments: o.segments,
                per: o.per,
                burst: o.burst,
                set_at_ms: o.set_at_ms,
            }),
        }))
    }

    async fn list_throttles(
        &self,
        req: Request<ListThrottlesRequest>,
    ) -> Result<Response<ListThrottlesResponse>, Status> {
        self.caller(&req, Need::Read, "ListThrottles").await?;
        let (_, doc) = self.current_policy().await?;
        Ok(Response::new(ListThrottlesResponse {
            limits: doc
                .throttles
                .into_iter()
                .map(|(lane, o)| ThrottleLimit {
                    lane,
                    segments: o.segments,
                    per: o.per,
                    burst: o.burst,
                    set_at_ms: o.set_at_ms,
                })
                .collect(),
        }))
    }

    async fn confirm_ledger(
        &self,
        req: Request<ConfirmLedgerRequest>,
    ) -> Result<Response<ConfirmLedgerResponse>, Status> {
        let caller = self.caller(&req, Need::Comply, "ConfirmLedger").await?;
        let req = req.into_inner();
        if req.by.trim().is_empty() || req.reason.trim().is_empty() {
            return Err(Status::invalid_argument(
                "`by` and `reason` are required for the audit trail",
            ));
        }
        let mut conn = self.conn.clone();
        let confirmed = crate::consent::guard::confirm(
            &mut conn,
            &self.d.consent,
            req.restore,
            &req.by,
            &req.reason,
        )
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::warn!(
            by = %req.by,
            reason = %req.reason,
            epoch = %confirmed.epoch,
            restored = confirmed.restored,
            old_epoch = %self.guard.epoch(),
            "consent ledger confirmed over the control plane"
        );
        self.audited(
            &caller,
            "ledger.confirm",
            "consent ledger",
            json!({"epoch": self.guard.epoch().to_string()}),
            json!({"epoch": confirmed.epoch, "restored": confirmed.restored, "by": req.by, "reason": req.reason}),
        )
        .await?;
        Ok(Response::new(ConfirmLedgerResponse {
            epoch: confirmed.epoch,
            restored: confirmed.restored,
        }))
    }

    async fn list_paused_tenants(
        &self,
        req: Request<ListPausedTenantsRequest>,
    ) -> Result<Response<ListPausedTenantsResponse>, Status> {
        self.caller(&req, Need::Read, "ListPausedTenants").await?;
        let mut conn = self.conn.clone();
        let all = tenants::list(&mut conn).await.map_err(unavailable)?;
        Ok(Response::new(ListPausedTenantsResponse {
            pauses: all
                .into_iter()
                .map(|(tenant, p)| TenantPause {
                    tenant,
                    reason: p.reason,
                    paused_at_ms: p.paused_at_ms,
                    drop: p.drop,
                })
                .collect(),
        }))
    }

    async fn create_token(
        &self,
        req: Request<herald_control::v1::CreateTokenRequest>,
    ) -> Result<Response<herald_control::v1::CreateTokenResponse>, Status> {
        let caller = self.caller(&req, Need::Admin, "CreateToken").await?;
        let req = req.into_inner();
        let Some(role) = access::Role::from_name(&req.role) else {
            return Err(Status::invalid_argument(format!(
                "role `{}`: read, operator, compliance or admin",
                req.role
            )));
        };
        let mut conn = self.conn.clone();
        let (token, stored) =
            access::create(&mut conn, &req.name, role, &caller.who.name, now_ms()).await?;
        self.audited(
            &caller,
            "token.create",
            &req.name,
            Value::Null,
            json!({"role": role.as_str()}),
        )
        .await?;
        Ok(Response::new(herald_control::v1::CreateTokenResponse {
            token,
            info: Some(token_info(req.name, &stored)),
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<herald_control::v1::ListTokensRequest>,
    ) -> Result<Response<herald_control::v1::ListTokensResponse>, Status> {
        self.caller(&req, Need::Read, "ListTokens").await?;
        let mut conn = self.conn.clone();
        let all = access::list(&mut conn).await?;
        Ok(Response::new(herald_control::v1::ListTokensResponse {
            tokens: all
                .into_iter()
                .map(|(name, t)| token_info(name, &t))
                .collect(),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<herald_control::v1::RevokeTokenRequest>,
    ) -> Result<Response<herald_control::v1::RevokeTokenResponse>, Status> {
        let caller = self.caller(&req, Need::Admin, "RevokeToken").await?;
        let req = req.into_inner();
        let mut conn = self.conn.clone();
        let Some(old) = access::revoke(&mut conn, &req.name).await? else {
            return Err(Status::not_found(format!("no token named `{}`", req.name)));
        };
        self.audited(
            &caller,
            "token.revoke",
            &req.name,
            json!({"role": old.role.as_str()}),
            Value::Null,
        )
        .await?;
        Ok(Response::new(herald_control::v1::RevokeTokenResponse {
            revoked: Some(token_info(req.name, &old)),
        }))
    }

    type ExportAuditStream = std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<herald_control::v1::AuditEntry, Status>>
                + Send
                + 'static,
        >,
    >;

    async fn export_audit(
        &self,
        req: Request<herald_control::v1::ExportAuditRequest>,
    ) -> Result<Response<Self::ExportAuditStream>, Status> {
        self.caller(&req, Need::Comply, "ExportAudit").await?;
        let req = req.into_inner();
        let rx = stream_range(
            self.conn.clone(),
            keys::AUDIT,
            req.from_ms,
            req.to_ms,
            |entry| {
                let text = |k: &str| entry.get::<String>(k).unwrap_or_default();
                Some(herald_control::v1::AuditEntry {
                    who: text("who"),
                    role: text("role"),
                    what: text("what"),
                    target: text("target"),
                    before: text("before"),
                    after: text("after"),
                    at_ms: text("at").parse().unwrap_or(0),
                    request_id: text("request_id"),
                    id: entry.id,
                })
            },
        );
        Ok(Response::new(Box::pin(tokio_stream_from(rx))))
    }

    async fn get_policy(
        &self,
        req: Request<GetPolicyRequest>,
    ) -> Result<Response<GetPolicyResponse>, Status> {
        self.caller(&req, Need::Read, "GetPolicy").await?;
        let mut conn = self.conn.clone();
        let version = match req.get_ref().version {
            0 => store::current(&mut conn).await.map_err(unavailable)?,
            v => v,
        };
        let stored = store::get(&mut conn, version)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found(format!("no policy version {version}")))?;
        Ok(Response::new(GetPolicyResponse {
            info: Some(version_info(&stored)),
            document: stored.doc,
        }))
    }

    async fn put_policy(
        &self,
        req: Request<PutPolicyRequest>,
    ) -> Result<Response<PutPolicyResponse>, Status> {
        let caller = self.caller(&req, Need::Read, "PutPolicy").await?;
        let req = req.into_inner();
        let next =
            Document::parse(&req.document).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (base, base_doc) = self.current_policy().await?;
        if req.expected_version != 0 && req.expected_version != base.version {
            return Err(Status::aborted(format!(
                "the policy is at version {}, not {}: read it again and retry",
                base.version, req.expected_version
            )));
        }
        // Samples are checked (and decided on the running version) before
        // anything is stored: a bad sample refuses the whole call.
        let current = self.d.policy.load_full();
        let mut now = Vec::with_capacity(req.samples.len());
        for s in &req.samples {
            now.push(self.decide(&current, s)?);
        }
        let (version, diff, changed, proposed) = self
            .put_version(
                &caller,
                &base,
                &base_doc,
                next,
                &req.comment,
                req.dry_run,
                Some("policy.set"),
            )
            .await?;
        let mut evaluations = Vec::with_capacity(req.samples.len());
        for (s, current) in req.samples.into_iter().zip(now) {
            evaluations.push(SampleEvaluation {
                current: Some(current),
                proposed: Some(self.decide(&proposed, &s)?),
                sample: Some(s),
            });
        }
        Ok(Response::new(PutPolicyResponse {
            version,
            diff,
            changed: changed.iter().map(|s| s.as_str().to_string()).collect(),
            evaluations,
            dry_run: req.dry_run,
        }))
    }

    async fn policy_status(
        &self,
        req: Request<PolicyStatusRequest>,
    ) -> Result<Response<PolicyStatusResponse>, Status> {
        self.caller(&req, Need::Read, "PolicyStatus").await?;
        let mut conn = self.conn.clone();
        let current = store::current(&mut conn).await.map_err(unavailable)?;
        let now = now_ms();
        let instances = store::instances(&mut conn)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|(instance, seen)| InstancePolicy {
                instance,
                version: seen.version,
                seen_ms: seen.seen_ms,
                stale: now - seen.seen_ms > store::STALE_MS,
            })
            .collect();
        Ok(Response::new(PolicyStatusResponse { current, instances }))
    }

    async fn policy_history(
        &self,
        req: Request<PolicyHistoryRequest>,
    ) -> Result<Response<PolicyHistoryResponse>, Status> {
        self.caller(&req, Need::Read, "PolicyHistory").await?;
        let limit = match req.get_ref().limit {
            0 => 50,
            n => n as usize,
        };
        let mut conn = self.conn.clone();
        let versions = store::history(&mut conn, limit)
            .await
            .map_err(unavailable)?
            .iter()
            .map(version_info)
            .collect();
        Ok(Response::new(PolicyHistoryResponse { versions }))
    }

    async fn diff_policy(
        &self,
        req: Request<DiffPolicyRequest>,
    ) -> Result<Response<DiffPolicyResponse>, Status> {
        self.caller(&req, Need::Read, "DiffPolicy").await?;
        let mut conn = self.conn.clone();
        let to = match req.get_ref().to {
            0 => store::current(&mut conn).await.map_err(unavailable)?,
            v => v,
        };
        let mut texts = Vec::with_capacity(2);
        for v in [req.get_ref().from, to] {
            let s = store::get(&mut conn, v)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| Status::not_found(format!("no policy version {v}")))?;
            texts.push(s.doc);
        }
        Ok(Response::new(DiffPolicyResponse {
            diff: document::diff(
                &format!("v{}", req.get_ref().from),
                &texts[0],
                &format!("v{to}"),
                &texts[1],
            ),
        }))
    }

    async fn rollback_policy(
        &self,
        req: Request<RollbackPolicyRequest>,
    ) -> Result<Response<RollbackPolicyResponse>, Status> {
        let caller = self.caller(&req, Need::Read, "RollbackPolicy").await?;
        let req = req.into_inner();
        let mut conn = self.conn.clone();
        let old = store::get(&mut conn, req.version)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found(format!("no policy version {}", req.version)))?;
        let next = Document::parse(&old.doc).map_err(|e| {
            Status::invalid_argument(format!("version {} does not parse: {e}", req.version))
        })?;
        let (base, base_doc) = self.current_policy().await?;
        if req.expected_version != 0 && req.expected_version != base.version {
            return Err(Status::aborted(format!(
                "the policy is at version {}, not {}: read it again and retry",
                base.version, req.expected_version
            )));
        }
        let comment = if req.comment.is_empty() {
            format!("rollback to v{}", req.version)
        } else {
            format!("rollback to v{}: {}", req.version, req.comment)
        };
        let (version, diff, _, _) = self
            .put_version(
                &caller,
                &base,
                &base_doc,
                next,
                &comment,
                false,
                Some("policy.rollback"),
            )
            .await?;
        Ok(Response::new(RollbackPolicyResponse { version, diff }))
    }

    async fn get_tenant(
        &self,
        req: Request<GetTenantRequest>,
    ) -> Result<Response<GetTenantResponse>, Status> {
        self.caller(&req, Need::Read, "GetTenant").await?;
        let tenant = req.into_inner().tenant;
        tenant_arg(&tenant)?;
        let (stored, doc) = self.current_policy().await?;
        let Some(section) = doc.tenants.get(&tenant) else {
            return Err(Status::not_found(format!(
                "policy version {} declares no tenant `{tenant}`",
                stored.version
            )));
        };
        #[derive(serde::Serialize)]
        struct One<'a> {
            tenants: std::collections::BTreeMap<&'a str, &'a crate::policy::TenantSection>,
            #[serde(skip_serializing_if = "Option::is_none")]
            routes: Option<
                std::collections::BTreeMap<
                    &'a str,
                    std::collections::BTreeMap<&'a str, &'a crate::providers::config::TenantRoutes>,
                >,
            >,
        }
        let one = One {
            tenants: [(tenant.as_str(), section)].into_iter().collect(),
            routes: doc.routes.tenants.get(&tenant).map(|r| {
                [("tenants", [(tenant.as_str(), r)].into_iter().collect())]
                    .into_iter()
                    .collect()
            }),
        };
        let text = toml::to_string_pretty(&one).map_err(|e| Status::internal(e.to_string()))?;
        let mut conn = self.conn.clone();
        let pauses = tenants::list(&mut conn).await.map_err(unavailable)?;
        let held: u64 = redis::cmd("ZCARD")
            .arg(keys::held(&tenant))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(GetTenantResponse {
            pause: pauses.get(&tenant).map(|p| TenantPause {
                tenant: tenant.clone(),
                reason: p.reason.clone(),
                paused_at_ms: p.paused_at_ms,
                drop: p.drop,
            }),
            tenant,
            policy_version: stored.version,
            document: text,
            held,
        }))
    }

    async fn list_templates(
        &self,
        req: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        self.caller(&req, Need::Read, "ListTemplates").await?;
        self.list_templates_impl(req.into_inner()).await
    }

    async fn get_template(
        &self,
        req: Request<GetTemplateRequest>,
    ) -> Result<Response<GetTemplateResponse>, Status> {
        self.caller(&req, Need::Read, "GetTemplate").await?;
        self.get_template_impl(req.into_inner()).await
    }

    async fn put_template(
        &self,
        req: Request<PutTemplateRequest>,
    ) -> Result<Response<PutTemplateResponse>, Status> {
        // The role is checked by `put_version` (templates: compliance).
        let caller = self.caller(&req, Need::Read, "PutTemplate").await?;
        self.put_template_impl(&caller, req.into_inner()).await
    }

    async fn publish_template(
        &self,
        req: Request<PublishTemplateRequest>,
    ) -> Result<Response<PublishTemplateResponse>, Status> {
        let caller = self.caller(&req, Need::Read, "PublishTemplate").await?;
        self.publish_template_impl(&caller, req.into_inner()).await
    }

    async fn preview_template(
        &self,
        req: Request<PreviewTemplateRequest>,
    ) -> Result<Response<PreviewTemplateResponse>, Status> {
        self.caller(&req, Need::Read, "PreviewTemplate").await?;
        self.preview_template_impl(req.into_inner()).await
    }

    async fn cancel_sequence(
        &self,
        req: Request<CancelSequenceRequest>,
    ) -> Result<Response<CancelSequenceResponse>, Status> {
        let caller = self.caller(&req, Need::Operate, "CancelSequence").await?;
        self.cancel_sequence_impl(&caller, req.into_inner()).await
    }

    async fn get_sequence(
        &self,
        req: Request<GetSequenceRequest>,
    ) -> Result<Response<GetSequenceResponse>, Status> {
        self.caller(&req, Need::Read, "GetSequence").await?;
        self.get_sequence_impl(req.into_inner()).await
    }

    async fn experiment_results(
        &self,
        req: Request<ExperimentResultsRequest>,
    ) -> Result<Response<ExperimentResultsResponse>, Status> {
        self.caller(&req, Need::Read, "ExperimentResults").await?;
        self.experiment_results_impl(req.into_inner()).await
    }

    async fn promote_experiment(
        &self,
        req: Request<PromoteExperimentRequest>,
    ) -> Result<Response<PromoteExperimentResponse>, Status> {
        // The role is checked by `put_version` (experiments: compliance).
        let caller = self.caller(&req, Need::Read, "PromoteExperiment").await?;
        self.promote_experiment_impl(&caller, req.into_inner())
            .await
    }
}

fn number_arg(n: &str) -> Result<u64, Status> {
    crate::model::parse_e164(n).map_err(Status::invalid_argument)
}

/// The entries of stream `key` from `from_ms` to `to_ms` (0: now), read a
/// page at a time by a task and turned into items by `item` (`None` skips
/// an entry); a Redis error ends the stream with `UNAVAILABLE`.
fn stream_range<T, F>(
    mut conn: Conn,
    key: &'static str,
    from_ms: i64,
    to_ms: i64,
    item: F,
) -> tokio::sync::mpsc::Receiver<Result<T, Status>>
where
    T: Send + 'static,
    F: Fn(redis::streams::StreamId) -> Option<T> + Send + 'static,
{
    const PAGE: usize = 1000;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let end = if to_ms == 0 {
        "+".to_string()
    } else {
        format!("{to_ms}-18446744073709551615")
    };
    let mut start = format!("{}-0", from_ms.max(0));
    tokio::spawn(async move {
        loop {
            let page: redis::RedisResult<redis::streams::StreamRangeReply> = redis::cmd("XRANGE")
                .arg(key)
                .arg(&start)
                .arg(&end)
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut conn)
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(unavailable(e))).await;
                    return;
                }
            };
            let n = page.ids.len();
            for entry in page.ids {
                start = format!("({}", entry.id);
                if let Some(v) = item(entry)
                    && tx.send(Ok(v)).await.is_err()
                {
                    return;
                }
            }
            if n < PAGE {
                return;
            }
        }
    });
    rx
}

/// A receiver as a stream (no tokio-stream dependency for one adapter).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// The stored consent of a number, per purpose, with its evidence.
async fn consent_now(
    conn: &mut Conn,
    tenant: &str,
    number: u64,
) -> Result<Vec<PurposeConsent>, Status> {
    use crate::consent::ledger::{ConsentLedger, decode_letters, state_key, state_name};
    let letters: Option<String> = redis::cmd("HGET")
        .arg(state_key(tenant))
        .arg(number)
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    let st = letters
        .as_deref()
        .and_then(|l| decode_letters(l.as_bytes()))
        .unwrap_or_default();
    let detail = ConsentLedger::detail(conn, tenant, number)
        .await
        .map_err(unavailable)?;
    Ok(crate::model::Category::ALL
        .iter()
        .map(|p| {
            let s = st.get(*p);
            let d = detail
                .iter()
                .find(|(k, _)| k == p.as_str())
                .map(|(_, v)| v.clone())
                .unwrap_or(serde_json::Value::Null);
            let field = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            PurposeConsent {
                purpose: p.as_str().to_string(),
                state: state_name(s).to_string(),
                kind: match s {
                    crate::consent::replica::PurposeState::Granted(k) => k.as_str().to_string(),
                    _ => String::new(),
                },
                source: field("source"),
                by: field("by"),
                evidence: field("evidence"),
                at_ms: d.get("at_ms").and_then(|v| v.as_i64()).unwrap_or(0),
            }
        })
        .collect())
}

/// Serve the control service on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    svc: ControlService,
    tls: Option<config::ControlTls>,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let mut server = tonic::transport::Server::builder();
    if let Some(t) = tls {
        let identity = tonic::transport::Identity::from_pem(t.cert, t.key);
        server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    server
        .add_service(ControlServer::new(svc))
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await
}
