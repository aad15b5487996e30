//! `jobctl`: the helper CLI people use by hand (run one config now, status and history, manage
//! configs, migrate). Thin: parse, run, print errors with their whole context chain, exit.

use std::process::ExitCode;

use clap::Parser;
use sheettobigquery_orchestrator::jobctl::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match jobctl::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
