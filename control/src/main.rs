//! `heraldctl`: admin client for Herald's gRPC control service.
//! Arguments and command logic live in `herald_control::cli`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use herald_control::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("heraldctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // One call per invocation: a single-threaded runtime is all it needs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut stdout = std::io::stdout().lock();
    runtime.block_on(cli::run(cli, &mut stdout))?;
    Ok(())
}
