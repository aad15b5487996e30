//! `orchestrator`: claims the configurations that are due and fans out job executions under a
//! parallelism cap (`run`, `serve`), previews what is due (`preview`, `run --dry-run`), migrates
//! the schema (`migrate`). Exit codes of `run`: 0 all dispatched runs succeeded, 1 the
//! orchestrator failed, 2 usage, 3 some run failed, 130 interrupted.

use std::process::ExitCode;

use clap::Parser;
use sheettobigquery::telemetry;
use sheettobigquery_orchestrator::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "orchestrator failed");
            ExitCode::from(1)
        }
    }
}
