//! The control contract end to end: a real tonic server on 127.0.0.1:0 serving
//! a small in-test `Control` implementation behind the bearer interceptor,
//! called by the generated client and by `heraldctl`'s command logic.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use clap::Parser as _;
use herald_control::{
    TOKEN_METADATA,
    auth::{attach_bearer, bearer_interceptor},
    cli::{self, AdminSession, Cli, CliError, Command},
    v1::{
        GetStatsRequest, GetStatsResponse, ListPausedTenantsRequest, ListPausedTenantsResponse,
        PartitionStats, PauseTenantRequest, PauseTenantResponse, ResumeTenantRequest,
        ResumeTenantResponse, TenantPause,
        control_client::ControlClient,
        control_server::{Control, ControlServer},
    },
};
use tonic::{
    Code, Request, Response, Status,
    transport::{Channel, Server, server::TcpIncoming},
};

const TOKEN: &str = "correct-horse-battery-staple";
const PAUSED_AT_MS: i64 = 1_700_000_000_000;

/// Stands in for the engine: fixed stats, an in-memory set of pauses, and a
/// count of calls that got past authentication.
#[derive(Clone, Default)]
struct FakeEngine {
    pauses: Arc<Mutex<BTreeMap<String, TenantPause>>>,
    calls_served: Arc<AtomicUsize>,
}

impl FakeEngine {
    fn served(&self) -> usize {
        self.calls_served.load(Ordering::SeqCst)
    }

    fn paused_tenants(&self) -> Vec<String> {
        self.pauses.lock().unwrap().keys().cloned().collect()
    }

    fn count(&self) {
        self.calls_served.fetch_add(1, Ordering::SeqCst);
    }
}

fn fixed_stats() -> GetStatsResponse {
    GetStatsResponse {
        instance_id: "herald-test-1".into(),
        version: "0.1.0".into(),
        uptime_ms: 3_723_000,
        messages_by_status: [
            ("sent".to_owned(), 1200),
            ("suppressed".to_owned(), 34),
            ("deferred".to_owned(), 56),
        ]
        .into(),
        in_flight: 17,
        max_in_flight: 10_000,
        partitions: vec![
            PartitionStats {
                partition: 0,
                stream: "herald:q:{0}".into(),
                depth: Some(42),
                pending: 5,
                lag_ms: Some(2_500),
            },
            PartitionStats {
                partition: 1,
                stream: "herald:q:{1}".into(),
                depth: None,
                pending: 0,
                lag_ms: None,
            },
        ],
        delayed: Some(9),
    }
}

#[tonic::async_trait]
impl Control for FakeEngine {
    // The consent and policy RPCs are exercised against the real engine
    // (engine/tests/control.rs, engine/tests/policy.rs); this fake does not
    // serve them.
    async fn get_policy(
        &self,
        _request: Request<herald_control::v1::GetPolicyRequest>,
    ) -> Result<Response<herald_control::v1::GetPolicyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn put_policy(
        &self,
        _request: Request<herald_control::v1::PutPolicyRequest>,
    ) -> Result<Response<herald_control::v1::PutPolicyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn policy_status(
        &self,
        _request: Request<herald_control::v1::PolicyStatusRequest>,
    ) -> Result<Response<herald_control::v1::PolicyStatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn policy_history(
        &self,
        _request: Request<herald_control::v1::PolicyHistoryRequest>,
    ) -> Result<Response<herald_control::v1::PolicyHistoryResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn diff_policy(
        &self,
        _request: Request<herald_control::v1::DiffPolicyRequest>,
    ) -> Result<Response<herald_control::v1::DiffPolicyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn rollback_policy(
        &self,
        _request: Request<herald_control::v1::RollbackPolicyRequest>,
    ) -> Result<Response<herald_control::v1::RollbackPolicyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_tenant(
        &self,
        _request: Request<herald_control::v1::GetTenantRequest>,
    ) -> Result<Response<herald_control::v1::GetTenantResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_templates(
        &self,
        _request: Request<herald_control::v1::ListTemplatesRequest>,
    ) -> Result<Response<herald_control::v1::ListTemplatesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_template(
        &self,
        _request: Request<herald_control::v1::GetTemplateRequest>,
    ) -> Result<Response<herald_control::v1::GetTemplateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn put_template(
        &self,
        _request: Request<herald_control::v1::PutTemplateRequest>,
    ) -> Result<Response<herald_control::v1::PutTemplateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn publish_template(
        &self,
        _request: Request<herald_control::v1::PublishTemplateRequest>,
    ) -> Result<Response<herald_control::v1::PublishTemplateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn preview_template(
        &self,
        _request: Request<herald_control::v1::PreviewTemplateRequest>,
    ) -> Result<Response<herald_control::v1::PreviewTemplateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn cancel_sequence(
        &self,
        _request: Request<herald_control::v1::CancelSequenceRequest>,
    ) -> Result<Response<herald_control::v1::CancelSequenceResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn experiment_results(
        &self,
        _request: Request<herald_control::v1::ExperimentResultsRequest>,
    ) -> Result<Response<herald_control::v1::ExperimentResultsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn promote_experiment(
        &self,
        _request: Request<herald_control::v1::PromoteExperimentRequest>,
    ) -> Result<Response<herald_control::v1::PromoteExperimentResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_sequence(
        &self,
        _request: Request<herald_control::v1::GetSequenceRequest>,
    ) -> Result<Response<herald_control::v1::GetSequenceResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_consent(
        &self,
        _request: Request<herald_control::v1::GetConsentRequest>,
    ) -> Result<Response<herald_control::v1::GetConsentResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn set_consent(
        &self,
        _request: Request<herald_control::v1::SetConsentRequest>,
    ) -> Result<Response<herald_control::v1::SetConsentResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type ExportConsentStream = std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<herald_control::v1::ConsentAuditEntry, Status>>
                + Send
                + 'static,
        >,
    >;

    async fn set_throttle(
        &self,
        _request: Request<herald_control::v1::SetThrottleRequest>,
    ) -> Result<Response<herald_control::v1::SetThrottleResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_throttles(
        &self,
        _request: Request<herald_control::v1::ListThrottlesRequest>,
    ) -> Result<Response<herald_control::v1::ListThrottlesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn confirm_ledger(
        &self,
        _request: Request<herald_control::v1::ConfirmLedgerRequest>,
    ) -> Result<Response<herald_control::v1::ConfirmLedgerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    // Tokens and the audit trail are tested against the real engine
    // (engine/tests/control.rs).
    async fn create_token(
        &self,
        _request: Request<herald_control::v1::CreateTokenRequest>,
    ) -> Result<Response<herald_control::v1::CreateTokenResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_tokens(
        &self,
        _request: Request<herald_control::v1::ListTokensRequest>,
    ) -> Result<Response<herald_control::v1::ListTokensResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn revoke_token(
        &self,
        _request: Request<herald_control::v1::RevokeTokenRequest>,
    ) -> Result<Response<herald_control::v1::RevokeTokenResponse>, Status> {
        Err(Status::unimplemented("fake"))
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
        _request: Request<herald_control::v1::ExportAuditRequest>,
    ) -> Result<Response<Self::ExportAuditStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn export_consent(
        &self,
        _request: Request<herald_control::v1::ExportConsentRequest>,
    ) -> Result<Response<Self::ExportConsentStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_stats(
        &self,
        _request: Request<GetStatsRequest>,
    ) -> Result<Response<GetStatsResponse>, Status> {
        self.count();
        Ok(Response::new(fixed_stats()))
    }

    async fn pause_tenant(
        &self,
        request: Request<PauseTenantRequest>,
    ) -> Result<Response<PauseTenantResponse>, Status> {
        self.count();
        let request = request.into_inner();
        if request.tenant.is_empty() {
            return Err(Status::invalid_argument("tenant is required"));
        }
        let mut pauses = self.pauses.lock().unwrap();
        let changed = !pauses.contains_key(&request.tenant);
        let pause = pauses
            .entry(request.tenant.clone())
            .or_insert_with(|| TenantPause {
                tenant: request.tenant,
                reason: request.reason,
                paused_at_ms: PAUSED_AT_MS,
                drop: request.drop,
            })
            .clone();
        Ok(Response::new(PauseTenantResponse {
            pause: Some(pause),
            changed,
        }))
    }

    async fn resume_tenant(
        &self,
        request: Request<ResumeTenantRequest>,
    ) -> Result<Response<ResumeTenantResponse>, Status> {
        self.count();
        let tenant = request.into_inner().tenant;
        let changed = self.pauses.lock().unwrap().remove(&tenant).is_some();
        Ok(Response::new(ResumeTenantResponse {
            changed,
            released: if changed { 3 } else { 0 },
        }))
    }

    async fn list_paused_tenants(
        &self,
        _request: Request<ListPausedTenantsRequest>,
    ) -> Result<Response<ListPausedTenantsResponse>, Status> {
        self.count();
        let pauses = self.pauses.lock().unwrap().values().cloned().collect();
        Ok(Response::new(ListPausedTenantsResponse { pauses }))
    }
}

/// Serve `engine` behind `bearer_interceptor(token)` on a free port; returns
/// the endpoint URL. The listener is bound before this returns, so clients
/// can connect at once.
async fn serve(engine: FakeEngine, token: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let service = ControlServer::with_interceptor(engine, bearer_interceptor(token.to_owned()));
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    endpoint
}

/// A generated client that sends no token at all.
async fn bare_client(endpoint: &str) -> ControlClient<Channel> {
    ControlClient::connect(endpoint.to_owned()).await.unwrap()
}

/// Call every RPC with `client`, returning each call's status code.
async fn call_every_rpc<T>(client: &mut ControlClient<T>) -> Vec<(&'static str, Code)>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    fn code<R>(result: Result<R, Status>) -> Code {
        result.map_or_else(|status| status.code(), |_| Code::Ok)
    }
    let pause = PauseTenantRequest {
        tenant: "acme".into(),
        reason: String::new(),
        drop: false,
    };
    let resume = ResumeTenantRequest {
        tenant: "acme".into(),
    };
    vec![
        ("GetStats", code(client.get_stats(GetStatsRequest {}).await)),
        ("PauseTenant", code(client.pause_tenant(pause).await)),
        ("ResumeTenant", code(client.resume_tenant(resume).await)),
        (
            "ListPausedTenants",
            code(
                client
                    .list_paused_tenants(ListPausedTenantsRequest {})
                    .await,
            ),
        ),
    ]
}

fn all(code: Code) -> Vec<(&'static str, Code)> {
    [
        "GetStats",
        "PauseTenant",
        "ResumeTenant",
        "ListPausedTenants",
    ]
    .into_iter()
    .map(|rpc| (rpc, code))
    .collect()
}

/// Parse a heraldctl command line the way the binary does, pointed at
/// `endpoint` with `token`.
fn heraldctl(endpoint: &str, token: &str, args: &[&str]) -> Cli {
    let base = ["heraldctl", "--endpoint", endpoint, "--token", token];
    Cli::try_parse_from(base.iter().chain(args)).unwrap()
}

async fn run_cli(cli: &Cli) -> Result<String, CliError> {
    let mut out = Vec::new();
    cli::run(cli, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn call_without_token_is_unauthenticated_and_never_reaches_the_service() {
    let engine = FakeEngine::default();
    let endpoint = serve(engine.clone(), TOKEN).await;

    let mut client = bare_client(&endpoint).await;
    assert_eq!(
        call_every_rpc(&mut client).await,
        all(Code::Unauthenticated)
    );
    assert_eq!(engine.served(), 0);
    assert!(engine.paused_tenants().is_empty());
}

#[tokio::test]
async fn wrong_or_malformed_token_is_unauthenticated() {
    let engine = FakeEngine::default();
    let endpoint = serve(engine.clone(), TOKEN).await;
    let channel = Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();

    let wrong = [
        "correct-horse-battery-stapl",
        "correct-horse-battery-staple2",
        "CORRECT-HORSE-BATTERY-STAPLE",
    ];
    for token in wrong {
        let mut client =
            ControlClient::with_interceptor(channel.clone(), attach_bearer(token).unwrap());
        assert_eq!(
            call_every_rpc(&mut client).await,
            all(Code::Unauthenticated),
            "token {token:?}"
        );
    }

    // The right token without the `Bearer` scheme is not accepted either.
    let mut client = ControlClient::with_interceptor(channel, |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert(TOKEN_METADATA, TOKEN.parse().unwrap());
        Ok(request)
    });
    assert_eq!(
        call_every_rpc(&mut client).await,
        all(Code::Unauthenticated)
    );
    assert_eq!(engine.served(), 0);
}

#[tokio::test]
async fn correct_token_reaches_the_service() {
    let engine = FakeEngine::default();
    let endpoint = serve(engine.clone(), TOKEN).await;
    let channel = Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ControlClient::with_interceptor(channel, attach_bearer(TOKEN).unwrap());

    assert_eq!(call_every_rpc(&mut client).await, all(Code::Ok));
    assert_eq!(engine.served(), 4);

    let stats = client.get_stats(GetStatsRequest {}).await.unwrap();
    assert_eq!(stats.into_inner(), fixed_stats());
}

#[tokio::test]
async fn empty_configured_token_refuses_every_call() {
    let engine = FakeEngine::default();
    let endpoint = serve(engine.clone(), "").await;
    let channel = Channel::from_shared(endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();

    // No token.
    let mut client = bare_client(&endpoint).await;
    assert_eq!(
        call_every_rpc(&mut client).await,
        all(Code::Unauthenticated)
    );

    // The refusal says why, so the operator fixes the config, not the client.
    let mut client =
        ControlClient::with_interceptor(channel.clone(), attach_bearer(TOKEN).unwrap());
    let status = client.get_stats(GetStatsRequest {}).await.unwrap_err();
    assert!(
        status.message().contains("no control.token configured"),
        "{status:?}"
    );

    // An empty bearer token, which would "match" an empty configured token.
    for value in ["Bearer ", "Bearer", ""] {
        let mut client =
            ControlClient::with_interceptor(channel.clone(), move |mut request: Request<()>| {
                request
                    .metadata_mut()
                    .insert(TOKEN_METADATA, value.parse().unwrap());
                Ok(request)
            });
        assert_eq!(
            call_every_rpc(&mut client).await,
            all(Code::Unauthenticated),
            "{value:?}"
        );
    }

    // Any real token.
    let mut client = ControlClient::with_interceptor(channel, attach_bearer(TOKEN).unwrap());
    assert_eq!(
        call_every_rpc(&mut client).await,
        all(Code::Unauthenticated)
    );

    assert_eq!(engine.served(), 0);
}

#[tokio::test]
async fn heraldctl_stats_prints_a_table() {
    let endpoint = serve(FakeEngine::default(), TOKEN).await;
    let out = run_cli(&heraldctl(&endpoint, TOKEN, &["stats"]))
        .await
        .unwrap();

    assert!(out.contains("herald-test-1 (herald 0.1.0)"), "{out}");
    assert!(out.contains("1h 02m 03s"), "{out}");
    assert!(out.contains("17 of max 10000"), "{out}");
    let cells = |needle: &str| -> Vec<String> {
        let line = out.lines().find(|l| l.contains(needle)).unwrap_or_else(|| {
            panic!("no line with {needle:?} in\n{out}");
        });
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(cells("sent"), ["sent", "1200"]);
    assert_eq!(cells("suppressed"), ["suppressed", "34"]);
    assert_eq!(cells("expired"), ["expired", "0"]);
    assert_eq!(cells("delayed"), ["delayed", "9"]);
    assert_eq!(
        cells("herald:q:{0}"),
        ["0", "herald:q:{0}", "42", "5", "2.5s"]
    );
    assert_eq!(cells("herald:q:{1}"), ["1", "herald:q:{1}", "-", "0", "-"]);
}

#[tokio::test]
async fn heraldctl_stats_json_is_machine_readable() {
    let endpoint = serve(FakeEngine::default(), TOKEN).await;
    let out = run_cli(&heraldctl(&endpoint, TOKEN, &["stats", "--json"]))
        .await
        .unwrap();

    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["instance_id"], "herald-test-1");
    assert_eq!(json["uptime_ms"], 3_723_000);
    assert_eq!(json["in_flight"], 17);
    assert_eq!(json["max_in_flight"], 10_000);
    assert_eq!(json["delayed"], 9);
    assert_eq!(json["messages_by_status"]["sent"], 1200);
    assert_eq!(json["messages_by_status"]["cancelled"], 0);
    assert_eq!(json["partitions"][0]["depth"], 42);
    assert_eq!(json["partitions"][0]["lag_ms"], 2_500);
    assert!(json["partitions"][1]["depth"].is_null());
    assert_eq!(json["partitions"][1]["stream"], "herald:q:{1}");
}

#[tokio::test]
async fn heraldctl_pause_resume_and_paused_change_and_show_state() {
    let engine = FakeEngine::default();
    let endpoint = serve(engine.clone(), TOKEN).await;
    let ctl = |args: &[&str]| heraldctl(&endpoint, TOKEN, args);

    let out = run_cli(&ctl(&["paused"])).await.unwrap();
    assert_eq!(out, "no tenant is paused\n");

    let out = run_cli(&ctl(&["pause", "acme", "--reason", "vendor dispute"]))
        .await
        .unwrap();
    assert!(
        out.starts_with("paused tenant acme since 2023-11-14T22:13:20Z"),
        "{out}"
    );
    assert!(out.contains("held"), "a pause holds by default: {out}");
    assert_eq!(engine.paused_tenants(), ["acme"]);

    let out = run_cli(&ctl(&["pause", "acme", "--reason", "other"]))
        .await
        .unwrap();
    assert!(out.contains("already paused"), "{out}");
    assert!(
        out.contains("vendor dispute"),
        "the first reason is kept: {out}"
    );

    let out = run_cli(&ctl(&["pause", "globex", "--drop"])).await.unwrap();
    assert!(out.contains("with --drop"), "{out}");
    assert!(out.contains("suppressed"), "{out}");
    let out = run_cli(&ctl(&["paused"])).await.unwrap();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .collect()
        })
        .collect();
    assert_eq!(
        rows,
        [
            vec!["TENANT", "PAUSED SINCE", "MODE", "REASON"],
            vec!["acme", "2023-11-14T22:13:20Z", "hold", "vendor dispute"],
            vec!["globex", "2023-11-14T22:13:20Z", "drop", "-"],
        ]
    );

    let out = run_cli(&ctl(&["paused", "--json"])).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["tenant"], "acme");
    assert_eq!(json[0]["paused_at_ms"], PAUSED_AT_MS);
    assert_eq!(json.as_array().unwrap().len(), 2);

    let out = run_cli(&ctl(&["resume", "acme"])).await.unwrap();
    assert_eq!(out, "resumed tenant acme; 3 held message(s) released\n");
    assert_eq!(engine.paused_tenants(), ["globex"]);

    let out = run_cli(&ctl(&["resume", "acme"])).await.unwrap();
    assert_eq!(out, "tenant acme was not paused; nothing changed\n");
    assert_eq!(engine.paused_tenants(), ["globex"]);
}

#[tokio::test]
async fn heraldctl_reports_a_refused_token_clearly() {
    let engine = FakeEngine::default();
    let endpoint = serve(engine.clone(), TOKEN).await;

    let err = run_cli(&heraldctl(&endpoint, "nope", &["pause", "acme"]))
        .await
        .unwrap_err();
    assert!(matches!(err, CliError::Unauthenticated { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("refused the admin token"), "{message}");
    assert!(message.contains("HERALD_CONTROL_TOKEN"), "{message}");
    assert!(!message.contains("nope"), "token echoed: {message}");
    assert!(engine.paused_tenants().is_empty());
}

#[tokio::test]
async fn heraldctl_reports_connection_refused_clearly() {
    // A port that was free a moment ago and has no listener now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);

    // No scheme: heraldctl assumes http://.
    let err = run_cli(&heraldctl(&address.to_string(), TOKEN, &["stats"]))
        .await
        .unwrap_err();
    assert!(matches!(err, CliError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("connection refused"), "{message}");
    assert!(message.contains(&address.to_string()), "{message}");
}

#[tokio::test]
async fn heraldctl_without_a_token_says_how_to_give_one() {
    let endpoint = serve(FakeEngine::default(), TOKEN).await;
    // Built directly so an HERALD_CONTROL_TOKEN in the environment cannot
    // leak in.
    for token in [None, Some(String::new())] {
        let cli = Cli {
            endpoint: endpoint.clone(),
            token,
            ca_file: None,
            command: Command::Paused { json: false },
        };
        let err = run_cli(&cli).await.unwrap_err();
        assert!(matches!(err, CliError::MissingToken), "{err:?}");
        assert!(err.to_string().contains("--token"), "{err}");
    }
}

#[tokio::test]
async fn heraldctl_passes_on_server_errors_with_their_code() {
    let endpoint = serve(FakeEngine::default(), TOKEN).await;
    let mut session = AdminSession::connect(&endpoint, Some(TOKEN)).await.unwrap();

    let err = session.pause("", None, false).await.unwrap_err();
    match &err {
        CliError::Rpc { rpc, code, message } => {
            assert_eq!(*rpc, "PauseTenant");
            assert_eq!(*code, Code::InvalidArgument);
            assert_eq!(message, "tenant is required");
        }
        other => panic!("expected an Rpc error, got {other:?}"),
    }
}
