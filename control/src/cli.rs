//! `heraldctl`: arguments, the calls it makes and how it prints their answers.
//!
//! `main.rs` only parses arguments and runs [`run`]; everything here is a
//! plain function so tests can drive it against an in-process server.

use std::{error::Error as _, fmt::Write as _, io, time::Duration};

use clap::{Args, Parser, Subcommand};

mod content;
pub use content::{ExperimentVerb, SequenceVerb, TemplateVerb};
use serde_json::{Value, json};
use tonic::transport::{Certificate, ClientTlsConfig};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

use crate::{
    auth::{AttachBearer, TokenError, attach_bearer},
    v1::{
        AuditEntry, ConfirmLedgerRequest, ConfirmLedgerResponse, ConsentAuditEntry,
        CreateTokenRequest, CreateTokenResponse, DiffPolicyRequest, ExportAuditRequest,
        ExportConsentRequest, GetConsentRequest, GetConsentResponse, GetPolicyRequest,
        GetPolicyResponse, GetStatsRequest, GetStatsResponse, GetTenantRequest, GetTenantResponse,
        ListPausedTenantsRequest, ListThrottlesRequest, ListTokensRequest, PauseTenantRequest,
        PauseTenantResponse, PolicyHistoryRequest, PolicySample, PolicyStatusRequest,
        PolicyStatusResponse, PolicyVersion, PurposeConsent, PutPolicyRequest, PutPolicyResponse,
        ResumeTenantRequest, ResumeTenantResponse, RevokeTokenRequest, RollbackPolicyRequest,
        RollbackPolicyResponse, SampleDecision, SetConsentRequest, SetConsentResponse,
        SetThrottleRequest, TenantPause, ThrottleLimit, TokenInfo, control_client::ControlClient,
    },
};

/// Where `heraldctl` connects when neither `--endpoint` nor
/// `HERALD_CONTROL_ENDPOINT` says otherwise: the default `control.listen`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// How long to wait for the TCP + HTTP/2 connection. An admin at a terminal
/// should hear "unreachable" in seconds, not wait for the OS's minutes-long
/// SYN retry schedule.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bound on one call, so a wedged server cannot hang a script forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Statuses of the events contract (docs/contracts.md#outcomes), in the order a message
/// meets them. `stats` always lists these, with 0 where the server reported
/// none, then any status this build does not know yet.
const KNOWN_STATUSES: &[&str] = &[
    "deferred",
    "retrying",
    "sent",
    "delivered",
    "undelivered",
    "suppressed",
    "rejected",
    "failed",
    "expired",
    "duplicate",
    "cancelled",
];

/// Admin client for a running Herald instance's control service.
#[derive(Debug, Parser)]
#[command(
    name = "heraldctl",
    version,
    about = "Admin client for a running Herald instance's control service",
    after_help = "Examples:
  export HERALD_CONTROL_ENDPOINT=http://10.0.0.5:50051 HERALD_CONTROL_TOKEN=...
  heraldctl stats
  heraldctl tenant pause acme --reason 'vendor dispute, OPS-123'
  heraldctl tenant resume acme
  heraldctl token create alice --role operator
  heraldctl throttle set carrier:tmobile 10 --per second --burst 20
  heraldctl policy get > policy.toml      # edit, then:
  heraldctl policy set policy.toml --dry-run --sample +12125550123:marketing
  heraldctl policy set policy.toml --comment 'FL window, LEGAL-7'
  heraldctl policy status
  heraldctl policy history
  heraldctl policy rollback 3
  heraldctl policy export ./policy-backup
  heraldctl tenant get acme
  heraldctl consent get acme +14155550123
  heraldctl audit export --json > audit.jsonl

The flat forms of earlier releases (pause, resume, paused, set-consent,
confirm-ledger, export-consent) keep working.

Exit status: 0 on success, 1 when a call fails (unreachable, refused token,
permission denied, server error), 2 on bad arguments."
)]
pub struct Cli {
    /// Control endpoint of a Herald instance (its `control.listen` address).
    /// `http://` is assumed when no scheme is given.
    #[arg(long, env = "HERALD_CONTROL_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,

    /// Admin token: the instance's `control.token`. Prefer the environment
    /// variable; command-line arguments are visible to other local users.
    #[arg(long, env = "HERALD_CONTROL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// PEM file of the authority that signed the control listener's
    /// certificate, for an `https://` endpoint (default: the public web's
    /// roots).
    #[arg(long, env = "HERALD_CONTROL_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `heraldctl` commands: `NOUN VERB`, plus the flat forms of earlier
/// releases (hidden aliases).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Show the instance's message counters, in-flight sends and queue state.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The versioned live policy: rule tables, tenants, routes, throttles.
    Policy {
        #[command(subcommand)]
        /// What to do.
        verb: PolicyVerb,
    },
    /// Templates: list, get, put (a draft), publish, preview.
    Template {
        #[command(subcommand)]
        /// What to do.
        verb: TemplateVerb,
    },
    /// A/B experiments on templates: results, promote.
    Experiment {
        #[command(subcommand)]
        /// What to do.
        verb: ExperimentVerb,
    },
    /// Reminder sequences: get one, cancel one (paid).
    Sequence {
        #[command(subcommand)]
        /// What to do.
        verb: SequenceVerb,
    },
    /// Pause, resume, list and show tenants.
    Tenant {
        #[command(subcommand)]
        /// What to do.
        verb: TenantVerb,
    },
    /// Named control-plane tokens with roles.
    Token {
        #[command(subcommand)]
        /// What to do.
        verb: TokenVerb,
    },
    /// Live throttle limits per carrier or sender lane.
    Throttle {
        #[command(subcommand)]
        /// What to do.
        verb: ThrottleVerb,
    },
    /// The control plane's audit trail.
    Audit {
        #[command(subcommand)]
        /// What to do.
        verb: AuditVerb,
    },
    /// The consent ledger's confirmation after a wipe.
    Ledger {
        #[command(subcommand)]
        /// What to do.
        verb: LedgerVerb,
    },
    /// Pause a tenant: its messages are held until it is resumed.
    ///
    /// Applies to every instance. Each of the tenant's messages that reaches
    /// its send decision while paused is `deferred` with reason `paused` and
    /// held; `resume` sends them. With `--drop` (an emergency) they are
    /// `suppressed` / `paused` instead, a terminal outcome.
    #[command(hide = true)]
    Pause(PauseArgs),
    /// Resume a paused tenant: its messages are decided normally again and
    /// the held ones are sent, spread at `control.resume_rate` per second.
    #[command(hide = true)]
    Resume(TenantArgs),
    /// List the tenants paused now.
    #[command(hide = true)]
    Paused {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A number's consent: `consent get|set|export` (and, as before,
    /// `consent TENANT NUMBER` to show it).
    #[command(args_conflicts_with_subcommands = true)]
    Consent {
        #[command(subcommand)]
        /// What to do.
        verb: Option<ConsentVerb>,
        /// Tenant name (the flat form `consent TENANT NUMBER`).
        tenant: Option<String>,
        /// E.164 number, e.g. +14155550123.
        number: Option<String>,
    },
    /// Grant, revoke, review or reset a number's consent (audited; applied
    /// by every instance within a second).
    #[command(hide = true)]
    SetConsent(SetConsentArgs),
    /// Confirm a consent ledger that every instance stopped on as suspect
    /// (Redis looked wiped or restored): sending resumes within a second.
    #[command(hide = true)]
    ConfirmLedger(ConfirmLedgerArgs),
    /// Export the consent audit trail as JSON lines, oldest first.
    #[command(hide = true)]
    ExportConsent(ExportConsentArgs),
}

/// `pause TENANT [--reason TEXT] [--drop]`, in both spellings.
#[derive(Debug, Clone, Args)]
pub struct PauseArgs {
    /// Tenant name, as in the ingest `tenant` field.
    pub tenant: String,
    /// Why, recorded with the pause and in the audit trail.
    #[arg(long)]
    pub reason: Option<String>,
    /// Suppress the tenant's messages instead of holding them.
    #[arg(long)]
    pub drop: bool,
}

/// One tenant.
#[derive(Debug, Clone, Args)]
pub struct TenantArgs {
    /// Tenant name.
    pub tenant: String,
}

/// A tenant and a number.
#[derive(Debug, Clone, Args)]
pub struct NumberArgs {
    /// Tenant name.
    pub tenant: String,
    /// E.164 number, e.g. +14155550123.
    pub number: String,
}

/// `set-consent` / `consent set`.
#[derive(Debug, Clone, Args)]
pub struct SetConsentArgs {
    /// Tenant name.
    pub tenant: String,
    /// E.164 number.
    pub number: String,
    /// granted, revoked, review or unknown.
    pub state: String,
    /// With `granted`: express or express_written.
    #[arg(long)]
    pub kind: Option<String>,
    /// Purposes (repeat the flag); default all three.
    #[arg(long = "purpose")]
    pub purposes: Vec<String>,
    /// What proves it (required to grant or revoke, and to leave `revoked`).
    #[arg(long)]
    pub evidence: Option<String>,
    /// Who makes the change (for the audit trail).
    #[arg(long, env = "USER")]
    pub by: String,
}

/// `confirm-ledger` / `ledger confirm`.
#[derive(Debug, Clone, Args)]
pub struct ConfirmLedgerArgs {
    /// First write the instance's in-memory consent back into Redis
    /// (its revocations survived the wipe).
    #[arg(long)]
    pub restore: bool,
    /// Why (audit evidence, e.g. the incident).
    #[arg(long)]
    pub reason: String,
    /// Who confirms (for the audit trail).
    #[arg(long, env = "USER")]
    pub by: String,
}

/// `export-consent` / `consent export`.
#[derive(Debug, Clone, Args)]
pub struct ExportConsentArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// From this instant (ms since the epoch).
    #[arg(long, default_value_t = 0)]
    pub from_ms: i64,
    /// Up to this instant (ms since the epoch); default now.
    #[arg(long, default_value_t = 0)]
    pub to_ms: i64,
}

/// `heraldctl tenant …`
#[derive(Debug, Clone, Subcommand)]
pub enum TenantVerb {
    /// Pause a tenant on every instance: its messages are held (`deferred`
    /// / `paused`) until `resume`; with `--drop`, suppressed instead.
    Pause(PauseArgs),
    /// Resume a tenant: held messages are sent, spread at
    /// `control.resume_rate` per second.
    Resume(TenantArgs),
    /// The tenants paused now.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One tenant's section of the live policy, its routes and pause state.
    Get {
        /// Tenant name.
        tenant: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `heraldctl policy …`
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyVerb {
    /// The current version and the version each instance runs.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a version's TOML document (default: the current one).
    Get {
        /// Version; default the current one.
        #[arg(long, default_value_t = 0)]
        version: u64,
    },
    /// Store FILE as the next version (validated first; refused with the
    /// key path and reason when invalid). Every instance follows within a
    /// second.
    Set {
        /// The TOML document (as `policy get` prints it, edited); `-` reads
        /// stdin.
        file: std::path::PathBuf,
        /// Show the diff and the sample decisions; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Why (kept with the version and in the audit trail).
        #[arg(long, default_value = "")]
        comment: String,
        /// Refuse unless the store is at this version (0: any).
        #[arg(long, default_value_t = 0)]
        expect: u64,
        /// A number to decide on the current and the new version:
        /// `NUMBER[:CATEGORY[:TENANT[:AT]]]` (AT in RFC 3339). Repeat.
        #[arg(long = "sample")]
        samples: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A unified diff between two versions.
    Diff {
        /// The older version.
        from: u64,
        /// The newer version; default the current one.
        to: Option<u64>,
    },
    /// Stored versions, newest first.
    History {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make an old version's document current again (as a new version).
    Rollback {
        /// The version to restore.
        version: u64,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// Refuse unless the store is at this version (0: any).
        #[arg(long, default_value_t = 0)]
        expect: u64,
    },
    /// Write the current version to DIR: `policy.toml` (the whole document,
    /// for `policy set`) and `compliance.toml` (its rule table, for
    /// `compliance.rules_file`).
    Export {
        /// Directory to write into (created if missing).
        dir: std::path::PathBuf,
    },
}

/// `heraldctl token …`
#[derive(Debug, Clone, Subcommand)]
pub enum TokenVerb {
    /// Create a token and print it once (Herald keeps only its hash).
    Create {
        /// 1–64 letters, digits, `_`, `-`, `.`, `@`.
        name: String,
        /// read, operator, compliance or admin.
        #[arg(long)]
        role: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The named tokens and their roles (never the tokens).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: refused at once on every instance.
    Revoke {
        /// The token name.
        name: String,
    },
}

/// `heraldctl throttle …`
#[derive(Debug, Clone, Subcommand)]
pub enum ThrottleVerb {
    /// Set a lane's limit on every instance, live.
    Set {
        /// `carrier:<name>` or `sender:<number or service id>`.
        lane: String,
        /// Segments per `--per`.
        segments: u32,
        /// second, minute, hour or day.
        #[arg(long, default_value = "second")]
        per: String,
        /// Bucket size; 0: the rate's own.
        #[arg(long, default_value_t = 0)]
        burst: u32,
    },
    /// The live limits set over the control plane.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `heraldctl audit …`
#[derive(Debug, Clone, Subcommand)]
pub enum AuditVerb {
    /// Every accepted change, oldest first: a table, or JSON lines.
    Export {
        /// From this instant (ms since the epoch).
        #[arg(long, default_value_t = 0)]
        from_ms: i64,
        /// Up to this instant (ms since the epoch); default now.
        #[arg(long, default_value_t = 0)]
        to_ms: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `heraldctl ledger …`
#[derive(Debug, Clone, Subcommand)]
pub enum LedgerVerb {
    /// Confirm a consent ledger every instance stopped on as suspect.
    Confirm(ConfirmLedgerArgs),
}

/// `heraldctl consent …`
#[derive(Debug, Clone, Subcommand)]
pub enum ConsentVerb {
    /// A number's consent per purpose, with its evidence.
    Get(NumberArgs),
    /// Grant, revoke, review or reset a number's consent (audited). Moving
    /// a number out of `revoked` needs `--evidence`.
    Set(SetConsentArgs),
    /// The consent audit trail as JSON lines, oldest first.
    Export(ExportConsentArgs),
}

/// Why a `heraldctl` command failed, worded for the admin at the terminal.
///
/// Each message is complete in itself (causes are folded into it, not chained
/// as `source`), so printing it with `{:#}` does not repeat them.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No token given at all.
    #[error(
        "no admin token: pass --token or set HERALD_CONTROL_TOKEN to the instance's control.token"
    )]
    MissingToken,

    /// The token cannot be sent as gRPC metadata.
    #[error("unusable admin token: {0}")]
    InvalidToken(TokenError),

    /// `--endpoint` is not a URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Nothing answered at the endpoint (or it went away mid-call).
    #[error("cannot reach Herald control at {endpoint}: {reason}")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// What happened, with a hint where there is one.
        reason: String,
    },

    /// The server answered UNAUTHENTICATED.
    #[error(
        "Herald control at {endpoint} refused the admin token: {message} \
         (check --token / HERALD_CONTROL_TOKEN against the instance's control.token)"
    )]
    Unauthenticated {
        /// The endpoint called.
        endpoint: String,
        /// The server's explanation.
        message: String,
    },

    /// The server does not serve this RPC: it runs an older Herald.
    #[error("Herald control at {endpoint} does not serve {rpc}; it may run an older Herald")]
    Unimplemented {
        /// The endpoint called.
        endpoint: String,
        /// The RPC's name.
        rpc: &'static str,
    },

    /// Any other error status from the server.
    #[error("{rpc} failed ({code:?}): {message}")]
    Rpc {
        /// The RPC's name.
        rpc: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The server's message.
        message: String,
    },

    /// Writing the answer to stdout failed (for example a closed pipe).
    #[error("cannot write output: {0}")]
    Output(io::Error),

    /// The arguments parse but do not say what to do.
    #[error("{0}")]
    Usage(String),
}

/// The generated client with the bearer token attached to every call.
pub type Client = ControlClient<InterceptedService<Channel, AttachBearer>>;

/// A connection to one Herald instance's control service.
#[derive(Debug, Clone)]
pub struct AdminSession {
    /// Kept for error messages: "cannot reach … at <endpoint>".
    endpoint: String,
    client: Client,
}

impl AdminSession {
    /// Connect to `endpoint` (`http://host:port`, or `host:port`) sending
    /// `token` with every call. Fails at once if the token is missing or
    /// nothing answers, rather than at the first call.
    pub async fn connect(endpoint: &str, token: Option<&str>) -> Result<Self, CliError> {
        Self::connect_with_ca(endpoint, token, None).await
    }

    /// [`AdminSession::connect`]; an `https://` endpoint's certificate is
    /// checked against `ca` (PEM) when given, else the public web's roots.
    pub async fn connect_with_ca(
        endpoint: &str,
        token: Option<&str>,
        ca: Option<&[u8]>,
    ) -> Result<Self, CliError> {
        let token = token.ok_or(CliError::MissingToken)?;
        let attach = attach_bearer(token).map_err(|e| match e {
            TokenError::Empty => CliError::MissingToken,
            other => CliError::InvalidToken(other),
        })?;

        let invalid = |reason: String| CliError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let endpoint = with_scheme(endpoint);
        let mut channel =
            Channel::from_shared(endpoint.clone()).map_err(|e| invalid(error_chain(&e)))?;
        if endpoint.starts_with("https://") {
            let tls = match ca {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_webpki_roots(),
            };
            channel = channel
                .tls_config(tls)
                .map_err(|e| invalid(error_chain(&e)))?;
        }
        let channel = channel
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .map_err(|e| CliError::Unreachable {
                endpoint: endpoint.clone(),
                reason: describe_connect_error(&e),
            })?;

        Ok(Self {
            client: ControlClient::with_interceptor(channel, attach),
            endpoint,
        })
    }

    /// `GetStats`.
    pub async fn stats(&mut self) -> Result<GetStatsResponse, CliError> {
        let result = self.client.get_stats(GetStatsRequest {}).await;
        self.answer("GetStats", result)
    }

    /// `PauseTenant`.
    pub async fn pause(
        &mut self,
        tenant: &str,
        reason: Option<&str>,
        drop: bool,
    ) -> Result<PauseTenantResponse, CliError> {
        let request = PauseTenantRequest {
            tenant: tenant.to_owned(),
            reason: reason.unwrap_or_default().to_owned(),
            drop,
        };
        let result = self.client.pause_tenant(request).await;
        self.answer("PauseTenant", result)
    }

    /// `ResumeTenant`.
    pub async fn resume(&mut self, tenant: &str) -> Result<ResumeTenantResponse, CliError> {
        let request = ResumeTenantRequest {
            tenant: tenant.to_owned(),
        };
        let result = self.client.resume_tenant(request).await;
        self.answer("ResumeTenant", result)
    }

    /// `ListPausedTenants`.
    pub async fn paused(&mut self) -> Result<Vec<TenantPause>, CliError> {
        let result = self
            .client
            .list_paused_tenants(ListPausedTenantsRequest {})
            .await;
        self.answer("ListPausedTenants", result)
            .map(|response| response.pauses)
    }

    /// `GetConsent`.
    pub async fn consent(
        &mut self,
        tenant: &str,
        number: &str,
    ) -> Result<GetConsentResponse, CliError> {
        let result = self
            .client
            .get_consent(GetConsentRequest {
                tenant: tenant.to_owned(),
                number: number.to_owned(),
            })
            .await;
        self.answer("GetConsent", result)
    }

    /// `SetConsent`.
    pub async fn set_consent(
        &mut self,
        req: SetConsentRequest,
    ) -> Result<SetConsentResponse, CliError> {
        let result = self.client.set_consent(req).await;
        self.answer("SetConsent", result)
    }

    /// `ConfirmLedger`.
    pub async fn confirm_ledger(
        &mut self,
        req: ConfirmLedgerRequest,
    ) -> Result<ConfirmLedgerResponse, CliError> {
        let result = self.client.confirm_ledger(req).await;
        self.answer("ConfirmLedger", result)
    }

    /// `ExportConsent`, collected.
    pub async fn export_consent(
        &mut self,
        req: ExportConsentRequest,
    ) -> Result<Vec<ConsentAuditEntry>, CliError> {
        let result = self.client.export_consent(req).await;
        let mut stream = self.answer("ExportConsent", result)?;
        let mut out = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(e)) => out.push(e),
                Ok(None) => return Ok(out),
                Err(status) => return Err(self.status_error("ExportConsent", status)),
            }
        }
    }

    /// `CreateToken`.
    pub async fn create_token(
        &mut self,
        name: &str,
        role: &str,
    ) -> Result<CreateTokenResponse, CliError> {
        let result = self
            .client
            .create_token(CreateTokenRequest {
                name: name.to_owned(),
                role: role.to_owned(),
            })
            .await;
        self.answer("CreateToken", result)
    }

    /// `ListTokens`.
    pub async fn tokens(&mut self) -> Result<Vec<TokenInfo>, CliError> {
        let result = self.client.list_tokens(ListTokensRequest {}).await;
        self.answer("ListTokens", result).map(|r| r.tokens)
    }

    /// `RevokeToken`.
    pub async fn revoke_token(&mut self, name: &str) -> Result<Option<TokenInfo>, CliError> {
        let result = self
            .client
            .revoke_token(RevokeTokenRequest {
                name: name.to_owned(),
            })
            .await;
        self.answer("RevokeToken", result).map(|r| r.revoked)
    }

    /// `SetThrottle`.
    pub async fn set_throttle(
        &mut self,
        req: SetThrottleRequest,
    ) -> Result<Option<ThrottleLimit>, CliError> {
        let result = self.client.set_throttle(req).await;
        self.answer("SetThrottle", result).map(|r| r.limit)
    }

    /// `ListThrottles`.
    pub async fn throttles(&mut self) -> Result<Vec<ThrottleLimit>, CliError> {
        let result = self.client.list_throttles(ListThrottlesRequest {}).await;
        self.answer("ListThrottles", result).map(|r| r.limits)
    }

    /// `GetPolicy` (0: the current version).
    pub async fn policy(&mut self, version: u64) -> Result<GetPolicyResponse, CliError> {
        let result = self.client.get_policy(GetPolicyRequest { version }).await;
        self.answer("GetPolicy", result)
    }

    /// `PutPolicy`.
    pub async fn put_policy(
        &mut self,
        req: PutPolicyRequest,
    ) -> Result<PutPolicyResponse, CliError> {
        let result = self.client.put_policy(req).await;
        self.answer("PutPolicy", result)
    }

    /// `PolicyStatus`.
    pub async fn policy_status(&mut self) -> Result<PolicyStatusResponse, CliError> {
        let result = self.client.policy_status(PolicyStatusRequest {}).await;
        self.answer("PolicyStatus", result)
    }

    /// `PolicyHistory`.
    pub async fn policy_history(&mut self, limit: u32) -> Result<Vec<PolicyVersion>, CliError> {
        let result = self
            .client
            .policy_history(PolicyHistoryRequest { limit })
            .await;
        self.answer("PolicyHistory", result).map(|r| r.versions)
    }

    /// `DiffPolicy`.
    pub async fn diff_policy(&mut self, from: u64, to: u64) -> Result<String, CliError> {
        let result = self
            .client
            .diff_policy(DiffPolicyRequest { from, to })
            .await;
        self.answer("DiffPolicy", result).map(|r| r.diff)
    }

    /// `RollbackPolicy`.
    pub async fn rollback_policy(
        &mut self,
        version: u64,
        comment: &str,
        expected_version: u64,
    ) -> Result<RollbackPolicyResponse, CliError> {
        let result = self
            .client
            .rollback_policy(RollbackPolicyRequest {
                version,
                comment: comment.to_owned(),
                expected_version,
            })
            .await;
        self.answer("RollbackPolicy", result)
    }

    /// `GetTenant`.
    pub async fn tenant(&mut self, tenant: &str) -> Result<GetTenantResponse, CliError> {
        let result = self
            .client
            .get_tenant(GetTenantRequest {
                tenant: tenant.to_owned(),
            })
            .await;
        self.answer("GetTenant", result)
    }

    /// `ExportAudit`, collected.
    pub async fn export_audit(
        &mut self,
        req: ExportAuditRequest,
    ) -> Result<Vec<AuditEntry>, CliError> {
        let result = self.client.export_audit(req).await;
        let mut stream = self.answer("ExportAudit", result)?;
        let mut out = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(e)) => out.push(e),
                Ok(None) => return Ok(out),
                Err(status) => return Err(self.status_error("ExportAudit", status)),
            }
        }
    }

    /// Unwrap a response, or turn its status into an error an admin can act on.
    fn answer<T>(
        &self,
        rpc: &'static str,
        result: Result<tonic::Response<T>, Status>,
    ) -> Result<T, CliError> {
        result
            .map(tonic::Response::into_inner)
            .map_err(|status| self.status_error(rpc, status))
    }

    fn status_error(&self, rpc: &'static str, status: Status) -> CliError {
        let endpoint = self.endpoint.clone();
        match status.code() {
            Code::Unauthenticated => CliError::Unauthenticated {
                endpoint,
                message: status.message().to_owned(),
            },
            Code::Unimplemented => CliError::Unimplemented { endpoint, rpc },
            // tonic reports transport failures after connect (server gone,
            // connection reset) as UNAVAILABLE with the cause in the source.
            Code::Unavailable => CliError::Unreachable {
                endpoint,
                reason: status
                    .source()
                    .map(error_chain)
                    .unwrap_or_else(|| status.message().to_owned()),
            },
            code => CliError::Rpc {
                rpc,
                code,
                message: status.message().to_owned(),
            },
        }
    }
}

/// Parse-free entry point for the binary: connect as `cli` says and run its
/// command, writing the answer to `out`.
pub async fn run<W: io::Write>(cli: &Cli, out: &mut W) -> Result<(), CliError> {
    let ca = match &cli.ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| CliError::InvalidEndpoint {
            endpoint: cli.endpoint.clone(),
            reason: format!("cannot read --ca-file {}: {e}", path.display()),
        })?),
        None => None,
    };
    let mut session =
        AdminSession::connect_with_ca(&cli.endpoint, cli.token.as_deref(), ca.as_deref()).await?;
    execute(&mut session, &cli.command, out).await
}

/// Run one command over an open session, writing the answer to `out`.
pub async fn execute<W: io::Write>(
    session: &mut AdminSession,
    command: &Command,
    out: &mut W,
) -> Result<(), CliError> {
    use Command as C;
    let text = match command {
        C::Token { verb } => token_command(session, verb).await?,
        C::Policy { verb } => policy_command(session, verb).await?,
        C::Template { verb } => content::template_command(session, verb).await?,
        C::Sequence { verb } => content::sequence_command(session, verb).await?,
        C::Experiment { verb } => content::experiment_command(session, verb).await?,
        C::Tenant {
            verb: TenantVerb::Get { tenant, json },
        } => {
            let t = session.tenant(tenant).await?;
            if *json {
                json_line(&json!({
                    "tenant": t.tenant, "policy_version": t.policy_version,
                    "document": t.document, "held": t.held,
                    "pause": t.pause.as_ref().map(|p| json!({
                        "reason": p.reason, "paused_at_ms": p.paused_at_ms, "drop": p.drop})),
                }))
            } else {
                let state = match &t.pause {
                    None => "active".to_owned(),
                    Some(p) if p.drop => format!(
                        "paused, dropping, since {} ({})",
                        format_epoch_ms(p.paused_at_ms),
                        p.reason
                    ),
                    Some(p) => format!(
                        "paused, holding {} messages, since {} ({})",
                        t.held,
                        format_epoch_ms(p.paused_at_ms),
                        p.reason
                    ),
                };
                format!(
                    "# tenant {} — {state} — policy v{}\n{}",
                    t.tenant, t.policy_version, t.document
                )
            }
        }
        C::Throttle { verb } => throttle_command(session, verb).await?,
        C::Audit {
            verb:
                AuditVerb::Export {
                    from_ms,
                    to_ms,
                    json,
                },
        } => {
            let entries = session
                .export_audit(ExportAuditRequest {
                    from_ms: *from_ms,
                    to_ms: *to_ms,
                })
                .await?;
            render_audit(&entries, *json)
        }
        C::Stats { json } => {
            let stats = session.stats().await?;
            if *json {
                json_line(&stats_json(&stats))
            } else {
                render_stats(&stats)
            }
        }
        C::Pause(a)
        | C::Tenant {
            verb: TenantVerb::Pause(a),
        } => {
            let response = session
                .pause(&a.tenant, a.reason.as_deref(), a.drop)
                .await?;
            render_pause(&a.tenant, &response)
        }
        C::Resume(a)
        | C::Tenant {
            verb: TenantVerb::Resume(a),
        } => {
            let response = session.resume(&a.tenant).await?;
            render_resume(&a.tenant, &response)
        }
        C::Paused { json }
        | C::Tenant {
            verb: TenantVerb::List { json },
        } => {
            let pauses = session.paused().await?;
            if *json {
                json_line(&paused_json(&pauses))
            } else {
                render_paused(&pauses)
            }
        }
        C::Consent {
            verb: Some(ConsentVerb::Get(NumberArgs { tenant, number })),
            ..
        }
        | C::Consent {
            verb: None,
            tenant: Some(tenant),
            number: Some(number),
        } => {
            let c = session.consent(tenant, number).await?;
            render_consent(&c.number, &c.purposes)
        }
        C::Consent { verb: None, .. } => {
            return Err(CliError::Usage(
                "consent: write `consent get TENANT NUMBER` (or `consent TENANT NUMBER`)".into(),
            ));
        }
        C::SetConsent(a)
        | C::Consent {
            verb: Some(ConsentVerb::Set(a)),
            ..
        } => {
            let r = session
                .set_consent(SetConsentRequest {
                    tenant: a.tenant.clone(),
                    number: a.number.clone(),
                    purposes: a.purposes.clone(),
                    state: a.state.clone(),
                    kind: a.kind.clone().unwrap_or_default(),
                    source: "admin".into(),
                    evidence: a.evidence.clone().unwrap_or_default(),
                    at_ms: 0,
                    by: a.by.clone(),
                })
                .await?;
            let number = &a.number;
            let mut text = if r.changed.is_empty() {
                format!("{number}: nothing changed\n")
            } else {
                format!("{number}: changed {}\n", r.changed.join(", "))
            };
            text.push_str(&render_consent(number, &r.purposes));
            text
        }
        C::ConfirmLedger(a)
        | C::Ledger {
            verb: LedgerVerb::Confirm(a),
        } => {
            let r = session
                .confirm_ledger(ConfirmLedgerRequest {
                    restore: a.restore,
                    by: a.by.clone(),
                    reason: a.reason.clone(),
                })
                .await?;
            format!(
                "ledger confirmed: epoch {}, {} numbers restored from the replica\n",
                r.epoch, r.restored
            )
        }
        C::ExportConsent(a)
        | C::Consent {
            verb: Some(ConsentVerb::Export(a)),
            ..
        } => {
            let entries = session
                .export_consent(ExportConsentRequest {
                    tenant: a.tenant.clone().unwrap_or_default(),
                    from_ms: a.from_ms,
                    to_ms: a.to_ms,
                })
                .await?;
            let mut text = String::new();
            for e in entries {
                text.push_str(&json_line(&json!({
                    "id": e.id, "tenant": e.tenant, "number": e.number,
                    "purposes": e.purposes, "state": e.state, "source": e.source,
                    "by": e.by, "evidence": e.evidence, "at_ms": e.at_ms,
                    "recorded_ms": e.recorded_ms,
                })));
            }
            text
        }
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

async fn token_command(session: &mut AdminSession, verb: &TokenVerb) -> Result<String, CliError> {
    Ok(match verb {
        TokenVerb::Create { name, role, json } => {
            let r = session.create_token(name, role).await?;
            if *json {
                json_line(&json!({"name": name, "role": role, "token": r.token}))
            } else {
                format!(
                    "created token {name} (role {role}); it is shown once, store it now:\n{}\n",
                    r.token
                )
            }
        }
        TokenVerb::List { json } => {
            let tokens = session.tokens().await?;
            if *json {
                json_line(&Value::Array(
                    tokens
                        .iter()
                        .map(|t| {
                            json!({"name": t.name, "role": t.role,
                                   "created_at_ms": t.created_at_ms, "created_by": t.created_by})
                        })
                        .collect(),
                ))
            } else if tokens.is_empty() {
                "no named token (control.token is the bootstrap admin)\n".into()
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.role.clone(),
                            format_epoch_ms(t.created_at_ms),
                            t.created_by.clone(),
                        ]
                    })
                    .collect();
                table(&["NAME", "ROLE", "CREATED", "BY"], &rows, &[Align::Left; 4])
            }
        }
        TokenVerb::Revoke { name } => {
            let old = session.revoke_token(name).await?;
            format!(
                "revoked token {name}{}\n",
                old.map(|t| format!(" (role {})", t.role))
                    .unwrap_or_default()
            )
        }
    })
}

/// A `--sample NUMBER[:CATEGORY[:TENANT[:AT]]]`. AT may itself hold `:`.
fn parse_sample(s: &str) -> PolicySample {
    let mut parts = s.splitn(4, ':');
    PolicySample {
        to: parts.next().unwrap_or_default().to_owned(),
        category: parts.next().unwrap_or_default().to_owned(),
        tenant: parts.next().unwrap_or_default().to_owned(),
        at: parts.next().unwrap_or_default().to_owned(),
        recipient_tz: String::new(),
    }
}

fn decision_text(d: Option<&SampleDecision>) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    let mut t = d.decision.clone();
    if !d.reason.is_empty() {
        let _ = write!(t, " / {}", d.reason);
    }
    if !d.until.is_empty() {
        let _ = write!(t, " until {}", d.until);
    }
    t
}

async fn policy_command(session: &mut AdminSession, verb: &PolicyVerb) -> Result<String, CliError> {
    Ok(match verb {
        PolicyVerb::Status { json } => {
            let s = session.policy_status().await?;
            if *json {
                json_line(&json!({
                    "current": s.current,
                    "instances": s.instances.iter().map(|i| json!({
                        "instance": i.instance, "version": i.version,
                        "seen_ms": i.seen_ms, "stale": i.stale})).collect::<Vec<_>>(),
                }))
            } else {
                let rows: Vec<Vec<String>> = s
                    .instances
                    .iter()
                    .map(|i| {
                        vec![
                            i.instance.clone(),
                            format!("v{}", i.version),
                            if i.stale {
                                "stale".into()
                            } else if i.version == s.current {
                                "current".into()
                            } else {
                                "BEHIND".into()
                            },
                            format_epoch_ms(i.seen_ms),
                        ]
                    })
                    .collect();
                format!(
                    "policy v{}\n{}",
                    s.current,
                    table(
                        &["INSTANCE", "RUNS", "STATE", "SEEN"],
                        &rows,
                        &[Align::Left, Align::Left, Align::Left, Align::Left],
                    )
                )
            }
        }
        PolicyVerb::Get { version } => session.policy(*version).await?.document,
        PolicyVerb::Set {
            file,
            dry_run,
            comment,
            expect,
            samples,
            json,
        } => {
            let document = if file.as_os_str() == "-" {
                io::read_to_string(io::stdin())
            } else {
                std::fs::read_to_string(file)
            }
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let r = session
                .put_policy(PutPolicyRequest {
                    document,
                    expected_version: *expect,
                    dry_run: *dry_run,
                    comment: comment.clone(),
                    samples: samples.iter().map(|s| parse_sample(s)).collect(),
                })
                .await?;
            if *json {
                return Ok(json_line(&json!({
                    "version": r.version, "dry_run": r.dry_run, "changed": r.changed,
                    "diff": r.diff,
                    "evaluations": r.evaluations.iter().map(|e| json!({
                        "to": e.sample.as_ref().map(|s| s.to.clone()),
                        "current": decision_text(e.current.as_ref()),
                        "proposed": decision_text(e.proposed.as_ref()),
                    })).collect::<Vec<_>>(),
                })));
            }
            let mut text = r.diff.clone();
            if !r.evaluations.is_empty() {
                let rows: Vec<Vec<String>> = r
                    .evaluations
                    .iter()
                    .map(|e| {
                        let s = e.sample.clone().unwrap_or_default();
                        vec![
                            s.to,
                            if s.category.is_empty() {
                                "transactional".into()
                            } else {
                                s.category
                            },
                            decision_text(e.current.as_ref()),
                            decision_text(e.proposed.as_ref()),
                        ]
                    })
                    .collect();
                text.push_str(&table(
                    &["NUMBER", "CATEGORY", "NOW", "WITH THE CHANGE"],
                    &rows,
                    &[Align::Left, Align::Left, Align::Left, Align::Left],
                ));
            }
            let changed = if r.changed.is_empty() {
                "nothing".to_owned()
            } else {
                r.changed.join(", ")
            };
            if r.dry_run {
                let _ = writeln!(
                    text,
                    "dry run: would change {changed}; nothing stored (policy stays v{})",
                    r.version
                );
            } else {
                let _ = writeln!(
                    text,
                    "policy v{} stored (changed {changed}); every instance follows within a second",
                    r.version
                );
            }
            text
        }
        PolicyVerb::Diff { from, to } => session.diff_policy(*from, to.unwrap_or(0)).await?,
        PolicyVerb::History { limit, json } => {
            let versions = session.policy_history(*limit).await?;
            if *json {
                json_line(&Value::Array(
                    versions
                        .iter()
                        .map(|v| {
                            json!({"version": v.version, "who": v.who, "role": v.role,
                            "at_ms": v.at_ms, "comment": v.comment, "base": v.base,
                            "sha256": v.sha256})
                        })
                        .collect(),
                ))
            } else {
                let rows: Vec<Vec<String>> = versions
                    .iter()
                    .map(|v| {
                        vec![
                            format!("v{}", v.version),
                            format_epoch_ms(v.at_ms),
                            format!("{} ({})", v.who, v.role),
                            v.sha256.chars().take(12).collect(),
                            v.comment.clone(),
                        ]
                    })
                    .collect();
                table(
                    &["VERSION", "AT", "BY", "SHA256", "COMMENT"],
                    &rows,
                    &[
                        Align::Left,
                        Align::Left,
                        Align::Left,
                        Align::Left,
                        Align::Left,
                    ],
                )
            }
        }
        PolicyVerb::Rollback {
            version,
            comment,
            expect,
        } => {
            let r = session.rollback_policy(*version, comment, *expect).await?;
            format!(
                "{}policy v{} stored with version {version}'s document; every instance follows within a second\n",
                r.diff, r.version
            )
        }
        PolicyVerb::Export { dir } => {
            let p = session.policy(0).await?;
            let version = p.info.as_ref().map_or(0, |i| i.version);
            let doc: toml::Table = toml::from_str(&p.document)
                .map_err(|e| CliError::Usage(format!("the stored document does not parse: {e}")))?;
            let rules = doc
                .get("rules")
                .map(|r| toml::to_string_pretty(r).unwrap_or_default())
                .unwrap_or_default();
            let write = |name: &str, text: &str| {
                std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::write(dir.join(name), text))
                    .map_err(CliError::Output)
            };
            let header = format!("# Herald policy v{version}, exported by heraldctl\n");
            write("policy.toml", &format!("{header}{}", p.document))?;
            write("compliance.toml", &format!("{header}{rules}"))?;
            format!(
                "policy v{version} written to {0}/policy.toml and {0}/compliance.toml\n",
                dir.display()
            )
        }
    })
}

async fn throttle_command(
    session: &mut AdminSession,
    verb: &ThrottleVerb,
) -> Result<String, CliError> {
    let row = |l: &ThrottleLimit| {
        vec![
            l.lane.clone(),
            format!("{}/{}", l.segments, l.per),
            if l.burst == 0 {
                "-".to_owned()
            } else {
                l.burst.to_string()
            },
            format_epoch_ms(l.set_at_ms),
        ]
    };
    Ok(match verb {
        ThrottleVerb::Set {
            lane,
            segments,
            per,
            burst,
        } => {
            let l = session
                .set_throttle(SetThrottleRequest {
                    lane: lane.clone(),
                    segments: *segments,
                    per: per.clone(),
                    burst: *burst,
                })
                .await?;
            match l {
                Some(l) => format!(
                    "throttle {} set to {} segments per {} on every instance\n",
                    l.lane, l.segments, l.per
                ),
                None => format!("throttle {lane} set\n"),
            }
        }
        ThrottleVerb::List { json } => {
            let limits = session.throttles().await?;
            if *json {
                json_line(&Value::Array(
                    limits
                        .iter()
                        .map(|l| {
                            json!({"lane": l.lane, "segments": l.segments, "per": l.per,
                                   "burst": l.burst, "set_at_ms": l.set_at_ms})
                        })
                        .collect(),
                ))
            } else if limits.is_empty() {
                "no live throttle limit (the carrier table applies)\n".into()
            } else {
                let rows: Vec<Vec<String>> = limits.iter().map(row).collect();
                table(&["LANE", "RATE", "BURST", "SET"], &rows, &[Align::Left; 4])
            }
        }
    })
}

/// `audit export`: a table, or one JSON object per line.
pub fn render_audit(entries: &[AuditEntry], json: bool) -> String {
    if json {
        let mut text = String::new();
        for e in entries {
            let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
            text.push_str(&json_record(&json!({
                "id": e.id, "who": e.who, "role": e.role, "what": e.what,
                "target": e.target, "before": parse(&e.before), "after": parse(&e.after),
                "at_ms": e.at_ms, "request_id": e.request_id,
            })));
        }
        return text;
    }
    if entries.is_empty() {
        return "the audit trail is empty\n".into();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                format_epoch_ms(e.at_ms),
                format!("{} ({})", e.who, e.role),
                e.what.clone(),
                e.target.clone(),
                e.before.clone(),
                e.after.clone(),
            ]
        })
        .collect();
    table(
        &["AT", "WHO", "WHAT", "TARGET", "BEFORE", "AFTER"],
        &rows,
        &[Align::Left; 6],
    )
}

/// A number's consent as a table.
pub fn render_consent(number: &str, purposes: &[PurposeConsent]) -> String {
    let rows: Vec<Vec<String>> = purposes
        .iter()
        .map(|p| {
            vec![
                p.purpose.clone(),
                if p.kind.is_empty() {
                    p.state.clone()
                } else {
                    format!("{} ({})", p.state, p.kind)
                },
                or_dash(&p.source).to_owned(),
                or_dash(&p.by).to_owned(),
                if p.at_ms == 0 {
                    "-".to_owned()
                } else {
                    format_epoch_ms(p.at_ms)
                },
                or_dash(&p.evidence).to_owned(),
            ]
        })
        .collect();
    format!(
        "{number}\n{}",
        table(
            &["PURPOSE", "STATE", "SOURCE", "BY", "AT", "EVIDENCE"],
            &rows,
            &[Align::Left; 6],
        )
    )
}

/// `stats` as a readable report: instance, counters by status, partitions.
pub fn render_stats(stats: &GetStatsResponse) -> String {
    let mut text = String::new();
    let version = if stats.version.is_empty() {
        String::new()
    } else {
        format!(" (herald {})", stats.version)
    };
    let overview = [
        vec![
            "instance".into(),
            format!("{}{version}", or_dash(&stats.instance_id)),
        ],
        vec!["uptime".into(), format_duration_ms(stats.uptime_ms)],
        vec![
            "in flight".into(),
            format!("{} of max {}", stats.in_flight, stats.max_in_flight),
        ],
        vec![
            "delayed".into(),
            stats.delayed.map_or_else(|| "-".into(), |n| n.to_string()),
        ],
    ];
    text += &table(&[], &overview, &[Align::Left, Align::Left]);

    let statuses: Vec<Vec<String>> = status_counts(stats)
        .into_iter()
        .map(|(status, count)| vec![status, count.to_string()])
        .collect();
    text.push('\n');
    text += &table(
        &["STATUS", "MESSAGES"],
        &statuses,
        &[Align::Left, Align::Right],
    );

    text.push('\n');
    if stats.partitions.is_empty() {
        text += "no queue partitions reported\n";
    } else {
        let partitions: Vec<Vec<String>> = stats
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.partition.to_string(),
                    p.stream.clone(),
                    p.depth.map_or_else(|| "-".into(), |n| n.to_string()),
                    p.pending.to_string(),
                    p.lag_ms.map_or_else(|| "-".into(), format_duration_ms),
                ]
            })
            .collect();
        text += &table(
            &["PARTITION", "STREAM", "DEPTH", "PENDING", "LAG"],
            &partitions,
            &[
                Align::Right,
                Align::Left,
                Align::Right,
                Align::Right,
                Align::Right,
            ],
        );
    }
    text
}

/// `stats --json`: the response as one JSON object. Absent optional values
/// are `null`; every known status is present (0 when none).
pub fn stats_json(stats: &GetStatsResponse) -> Value {
    let by_status: serde_json::Map<String, Value> = status_counts(stats)
        .into_iter()
        .map(|(status, count)| (status, count.into()))
        .collect();
    let partitions: Vec<Value> = stats
        .partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "stream": p.stream,
                "depth": p.depth,
                "pending": p.pending,
                "lag_ms": p.lag_ms,
            })
        })
        .collect();
    json!({
        "instance_id": stats.instance_id,
        "version": stats.version,
        "uptime_ms": stats.uptime_ms,
        "in_flight": stats.in_flight,
        "max_in_flight": stats.max_in_flight,
        "delayed": stats.delayed,
        "messages_by_status": by_status,
        "partitions": partitions,
    })
}

/// `paused` as a table, or a sentence when nothing is paused.
pub fn render_paused(pauses: &[TenantPause]) -> String {
    if pauses.is_empty() {
        return "no tenant is paused\n".into();
    }
    let rows: Vec<Vec<String>> = pauses
        .iter()
        .map(|p| {
            vec![
                p.tenant.clone(),
                format_epoch_ms(p.paused_at_ms),
                if p.drop { "drop" } else { "hold" }.to_owned(),
                or_dash(&p.reason).to_owned(),
            ]
        })
        .collect();
    table(
        &["TENANT", "PAUSED SINCE", "MODE", "REASON"],
        &rows,
        &[Align::Left, Align::Left, Align::Left, Align::Left],
    )
}

/// `paused --json`: an array of `{tenant, reason, paused_at_ms, paused_at}`.
pub fn paused_json(pauses: &[TenantPause]) -> Value {
    pauses
        .iter()
        .map(|p| {
            json!({
                "tenant": p.tenant,
                "reason": p.reason,
                "paused_at_ms": p.paused_at_ms,
                "paused_at": format_epoch_ms(p.paused_at_ms),
                "drop": p.drop,
            })
        })
        .collect()
}

fn render_pause(tenant: &str, response: &PauseTenantResponse) -> String {
    let since = response
        .pause
        .as_ref()
        .map(|p| format!(" since {}", format_epoch_ms(p.paused_at_ms)))
        .unwrap_or_default();
    let dropping = response.pause.as_ref().is_some_and(|p| p.drop);
    if response.changed && dropping {
        format!(
            "paused tenant {tenant}{since} with --drop; its messages are now suppressed (reason `paused`)\n"
        )
    } else if response.changed {
        format!(
            "paused tenant {tenant}{since}; its messages are now held (deferred, reason `paused`) until `resume`\n"
        )
    } else {
        let reason = response
            .pause
            .as_ref()
            .filter(|p| !p.reason.is_empty())
            .map(|p| format!(" (reason: {})", p.reason))
            .unwrap_or_default();
        format!("tenant {tenant} was already paused{since}{reason}; nothing changed\n")
    }
}

fn render_resume(tenant: &str, response: &ResumeTenantResponse) -> String {
    if response.changed {
        format!(
            "resumed tenant {tenant}; {} held message(s) released\n",
            response.released
        )
    } else if response.released > 0 {
        format!(
            "tenant {tenant} was not paused; {} held message(s) released\n",
            response.released
        )
    } else {
        format!("tenant {tenant} was not paused; nothing changed\n")
    }
}

/// Known statuses in contract order (0 when absent), then unknown ones by name.
fn status_counts(stats: &GetStatsResponse) -> Vec<(String, u64)> {
    let known = KNOWN_STATUSES.iter().map(|status| {
        let count = stats.messages_by_status.get(*status).copied().unwrap_or(0);
        ((*status).to_owned(), count)
    });
    let unknown = stats
        .messages_by_status
        .iter()
        .filter(|(status, _)| !KNOWN_STATUSES.contains(&status.as_str()))
        .map(|(status, count)| (status.clone(), *count));
    known.chain(unknown).collect()
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell, two spaces apart; no header row when
/// `headers` is empty.
fn table(headers: &[&str], rows: &[Vec<String>], align: &[Align]) -> String {
    let columns = align.len();
    let mut widths = vec![0; columns];
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let rows = (!headers.is_empty())
        .then_some(&header_row)
        .into_iter()
        .chain(rows);
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths[i];
            let _ = match align[i] {
                Align::Left => write!(line, "{cell:<width$}"),
                Align::Right => write!(line, "{cell:>width$}"),
            };
            if i + 1 < row.len() {
                line += "  ";
            }
        }
        text += line.trim_end();
        text.push('\n');
    }
    text
}

/// `850ms`, `12.3s`, `4m 05s`, `3h 02m 11s`, `2d 03h 04m`.
pub fn format_duration_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}.{}s", secs, ms % 1000 / 100),
        60_000..3_600_000 => format!("{minutes}m {seconds:02}s"),
        3_600_000..86_400_000 => format!("{hours}h {minutes:02}m {seconds:02}s"),
        _ => format!("{days}d {hours:02}h {minutes:02}m"),
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC, to the second.
fn format_epoch_ms(ms: i64) -> String {
    jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map_or_else(|_| format!("{ms} (ms since epoch)"), |ts| ts.to_string())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// One JSON object on one line (JSON lines, for exports).
fn json_record(value: &Value) -> String {
    let mut text = value.to_string();
    text.push('\n');
    text
}

fn json_line(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a Value always serialises");
    text.push('\n');
    text
}

/// `host:port` → `http://host:port`; anything with a scheme is left alone.
fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// Name the usual causes plainly; otherwise show the whole cause chain, since
/// tonic's top-level "transport error" says nothing by itself.
fn describe_connect_error(error: &tonic::transport::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            match io_error.kind() {
                io::ErrorKind::ConnectionRefused => {
                    return "connection refused (is `herald serve` running, and is this its \
                            control.listen address?)"
                        .into();
                }
                io::ErrorKind::TimedOut => {
                    return format!("no answer within {}s", CONNECT_TIMEOUT.as_secs());
                }
                _ => {}
            }
        }
        if cause.to_string().contains("timed out") {
            return format!("no answer within {}s", CONNECT_TIMEOUT.as_secs());
        }
        source = cause.source();
    }
    error_chain(error)
}

/// `outer: middle: inner`, skipping repeats.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::PartitionStats;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration_ms(0), "0ms");
        assert_eq!(format_duration_ms(850), "850ms");
        assert_eq!(format_duration_ms(12_345), "12.3s");
        assert_eq!(format_duration_ms(245_000), "4m 05s");
        assert_eq!(format_duration_ms(3 * 3_600_000 + 131_000), "3h 02m 11s");
        assert_eq!(
            format_duration_ms(2 * 86_400_000 + 3 * 3_600_000 + 240_000),
            "2d 03h 04m"
        );
    }

    #[test]
    fn endpoint_without_scheme_gets_http() {
        assert_eq!(with_scheme("10.0.0.1:50051"), "http://10.0.0.1:50051");
        assert_eq!(with_scheme("https://h:1"), "https://h:1");
    }

    #[test]
    fn stats_list_known_statuses_in_order_then_unknown_ones() {
        let stats = GetStatsResponse {
            messages_by_status: [("sent".into(), 7), ("zapped".into(), 1)].into(),
            ..Default::default()
        };
        let counts = status_counts(&stats);
        assert_eq!(counts.len(), KNOWN_STATUSES.len() + 1);
        assert_eq!(counts[0], ("deferred".into(), 0));
        assert!(counts.contains(&("sent".into(), 7)));
        assert_eq!(counts.last().unwrap(), &("zapped".into(), 1));
    }

    #[test]
    fn stats_table_shows_unknowns_as_dashes() {
        let stats = GetStatsResponse {
            instance_id: "h1".into(),
            partitions: vec![PartitionStats {
                partition: 3,
                stream: "herald:q:{3}".into(),
                depth: None,
                pending: 2,
                lag_ms: Some(1_500),
            }],
            ..Default::default()
        };
        let text = render_stats(&stats);
        assert!(text.contains("delayed    -"), "{text}");
        let row = text.lines().find(|l| l.contains("herald:q:{3}")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["3", "herald:q:{3}", "-", "2", "1.5s"]);
    }

    #[test]
    fn epoch_ms_formats_as_rfc3339() {
        assert_eq!(format_epoch_ms(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }
}
