//! `herald`: the dispatch daemon.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald_engine::config::Config;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Compliance-aware SMS dispatch daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM / SIGINT, then drain and exit 0.
    Serve {
        /// Config file (TOML); HERALD_* environment variables override keys.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file (with environment overrides) and exit.
    CheckConfig {
        /// Config file (TOML).
        file: PathBuf,
    },
    /// Import existing consent records (JSON lines; see
    /// `engine/src/consent/import.rs` for the format) into the ledger.
    /// Every record is audited like a live change.
    ImportConsent {
        /// Config file (TOML): for `redis.url`.
        #[arg(long, short)]
        config: PathBuf,
        /// Who runs the import, for the audit trail.
        #[arg(long, default_value = "import")]
        by: String,
        /// JSON-lines file; `-` reads standard input.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file, std::env::vars()) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} partitions, {} providers, default route {:?})",
                    file.display(),
                    cfg.queue.partitions,
                    cfg.providers.len(),
                    cfg.routes
                        .default
                        .iter()
                        .map(|i| cfg.providers[*i].name.as_str())
                        .collect::<Vec<_>>()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(2)
            }
        },
        Command::ImportConsent { config, by, file } => {
            let cfg = match Config::load(&config, std::env::vars()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            match import_consent(cfg, &by, &file) {
                Ok(r) => {
                    for (line, why) in &r.refused {
                        eprintln!("{}:{line}: refused: {why}", file.display());
                    }
                    println!(
                        "{} records imported, {} changed the ledger, {} refused",
                        r.records,
                        r.changed,
                        r.refused.len()
                    );
                    if r.refused.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("herald: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config } => {
            let cfg = match Config::load(&config, std::env::vars()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.telemetry.log)),
                )
                .init();
            match serve(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("herald: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let metrics = herald_engine::telemetry::install_recorder()?;
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; shutting down");
            signals.cancel();
        });
        Ok(herald_engine::server::run(cfg, Some(metrics), shutdown).await?)
    })
}

fn import_consent(
    cfg: Config,
    by: &str,
    file: &std::path::Path,
) -> anyhow::Result<herald_engine::consent::import::ImportReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut conn = herald_engine::conn::connect(&cfg.redis, cfg.redis.response_timeout).await?;
        let ledger = herald_engine::consent::ConsentLedger::default();
        let report = if file.as_os_str() == "-" {
            let stdin = std::io::stdin();
            herald_engine::consent::import::import_jsonl(&mut conn, &ledger, stdin.lock(), by)
                .await?
        } else {
            let f = std::fs::File::open(file)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
            herald_engine::consent::import::import_jsonl(
                &mut conn,
                &ledger,
                std::io::BufReader::new(f),
                by,
            )
            .await?
        };
        Ok(report)
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
