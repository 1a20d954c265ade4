//! `herald-loadtest`: run load scenarios against Herald, or serve a mock provider.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
    /// Serve a mock provider that speaks Twilio's Messages API wire format.
    MockProvider {
        /// Port to listen on (127.0.0.1).
        #[arg(long, default_value_t = 9090)]
        port: u16,
        /// Delay before answering each request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Fraction of requests (0.0–1.0) answered with a Twilio error.
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
    },
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
        Command::MockProvider {
            port,
            latency_ms,
            error_rate,
        } => rt.block_on(async move {
            let settings = herald_loadtest::mock::MockSettings {
                latency: Duration::from_millis(latency_ms),
                error_rate,
                ..Default::default()
            };
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            herald_loadtest::mock::serve_until_signal(addr, settings).await
        }),
    }
}
