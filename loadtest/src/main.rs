//! `herald-loadtest`: run load scenarios against Herald, or serve a mock provider.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use herald_loadtest::mock::MockSettings;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "herald-loadtest",
    version,
    about = "Load scenarios and a mock SMS provider for Herald"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Queue a scenario's messages into Redis, follow their outcomes on
    /// `herald:events` and print throughput and latency percentiles.
    Run {
        /// Scenario file (TOML), e.g. config/scenarios/smoke.toml.
        scenario: PathBuf,
    },
    /// Serve a mock provider that speaks Twilio's Messages API wire format,
    /// with injected faults and signed status callbacks.
    #[command(after_help = herald_loadtest::mock::RULES_HELP)]
    MockProvider(MockProviderArgs),
}

/// `mock-provider` flags; each sets one `MockSettings` field.
#[derive(Args)]
struct MockProviderArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 9090)]
    port: u16,
    /// Account SID expected in the path and as the Basic-auth user; the
    /// `AccountSid` of status callbacks.
    #[arg(long, default_value_t = MockSettings::default().account_sid)]
    account_sid: String,
    /// Auth token expected in Basic auth; it also signs status callbacks, so
    /// it must be the token Herald verifies them with.
    #[arg(long, default_value_t = MockSettings::default().auth_token)]
    auth_token: String,
    /// Delay before answering each request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of requests (0.0–1.0) answered with a Twilio error: half
    /// 429 / 20429, half 500 / 20500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fraction of requests answered 429 / 20429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    rate_limit_rate: f64,
    /// Seconds in the Retry-After header of every 429.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Fraction of requests answered 500 / 20500 or 503 / 20503 (half each).
    #[arg(long, default_value_t = 0.0)]
    server_error_rate: f64,
    /// Fraction of requests read in full, then left without an answer (the
    /// connection closed; HTTP/2: the stream reset); not accepted.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Fraction of requests answered --slow-ms late.
    #[arg(long, default_value_t = 0.0)]
    slow_rate: f64,
    /// Extra delay of a slow answer, in milliseconds (default: longer than
    /// the Twilio adapter's 10 s request timeout).
    #[arg(long, default_value_t = 15_000)]
    slow_ms: u64,
    /// POST signed Twilio status callbacks to each accepted message's
    /// StatusCallback URL (http:// only).
    #[arg(long)]
    status_callbacks: bool,
    /// Delay before each status callback of a message, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    callback_delay_ms: u64,
    /// Fraction of messages whose final status is undelivered (ErrorCode
    /// 30003, 30005 or 30007) instead of delivered.
    #[arg(long, default_value_t = 0.0)]
    undelivered_rate: f64,
    /// Fraction of messages whose every callback is POSTed twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate_callbacks: f64,
    /// Fraction of messages whose final status is POSTed before `sent`.
    #[arg(long, default_value_t = 0.0)]
    reorder_callbacks: f64,
}

impl MockProviderArgs {
    fn settings(self) -> MockSettings {
        MockSettings {
            latency: Duration::from_millis(self.latency_ms),
            error_rate: self.error_rate,
            account_sid: self.account_sid,
            auth_token: self.auth_token,
            // A load run sends far too much to keep every request.
            record: false,
            rate_limit_rate: self.rate_limit_rate,
            retry_after_secs: self.retry_after_secs,
            server_error_rate: self.server_error_rate,
            drop_rate: self.drop_rate,
            slow_rate: self.slow_rate,
            slow_delay: Duration::from_millis(self.slow_ms),
            status_callbacks: self.status_callbacks,
            callback_delay: Duration::from_millis(self.callback_delay_ms),
            undelivered_rate: self.undelivered_rate,
            duplicate_callbacks: self.duplicate_callbacks,
            reorder_callbacks: self.reorder_callbacks,
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run { scenario } => rt.block_on(herald_loadtest::scenario::run_file(&scenario)),
        Command::MockProvider(args) => rt.block_on(async move {
            let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
            herald_loadtest::mock::serve_until_signal(addr, args.settings()).await
        }),
    }
}
