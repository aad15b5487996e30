//! `jobctl due`: what the orchestrator would run now and why. It calls the orchestrator's own
//! preview (`crate::preview`), so it can never disagree with `orchestrator run --dry-run`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{db_err, Ctx};
use crate::preview::{self, DueArgs, PreviewOptions};

/// The orchestrator settings `jobctl due` and `jobctl status` decide due-ness with, resolved like
/// the orchestrator's (flag or environment, then its settings file, then the defaults), so they
/// agree with `orchestrator run --dry-run`.
#[derive(Debug, clap::Args)]
pub struct OrchestratorSettings {
    #[command(flatten)]
    due: DueArgs,
    /// The orchestrator's settings file (its --config-file), for what neither a flag nor the
    /// environment sets.
    #[arg(long = "orchestrator-config-file", env = "ORCHESTRATOR_CONFIG_FILE", value_name = "PATH")]
    config_file: Option<PathBuf>,
}

impl OrchestratorSettings {
    pub fn options(&self, include_all: bool) -> anyhow::Result<PreviewOptions> {
        Ok(preview::resolve_options(&self.due, self.config_file.as_deref(), None, include_all)?)
    }
}

/// Show which configs are due now and why — the same as `orchestrator run --dry-run`.
///
/// Due: active, never run or its period (last_run + run_frequency_hours, by the database's clock)
/// elapsed, and no run in flight; failed runs are retried within their period.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl due
  jobctl due --all                               also the configs that are not due, and when they are
  jobctl due --configs-view active_job_configs   as an orchestrator pointed at the migration view sees it
  jobctl due --json")]
pub struct Args {
    /// Also list the configs that are not due, and when each becomes due.
    #[arg(long)]
    all: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    orchestrator: OrchestratorSettings,
}

pub async fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let options = a.orchestrator.options(a.all)?;
    let store = ctx.store().await?;
    let entries = preview::due_report(&store, &options).await.map_err(db_err)?;
    if a.json {
        println!("{}", preview::render_json(&entries));
    } else {
        print!("{}", preview::render_table(&entries, ctx.style.color));
    }
    Ok(ExitCode::SUCCESS)
}
