//! `jobctl due`: what the orchestrator would run now and why. It calls the orchestrator's own
//! preview (`crate::preview`), so it can never disagree with `orchestrator run --dry-run`.

use std::process::ExitCode;

use sheettobigquery::store::claims::ConfigsSource;

use super::{db_err, Ctx};
use crate::preview::{self, PreviewOptions};

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
    /// Read configs from this table or view, as the orchestrator's --configs-view does.
    #[arg(long, env = "ORCHESTRATOR_CONFIGS_VIEW", value_name = "NAME")]
    configs_view: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let source = match &a.configs_view {
        Some(name) => ConfigsSource::parse(name).map_err(|e| anyhow::anyhow!("--configs-view: {}", e.source))?,
        None => ConfigsSource::table(),
    };
    let store = ctx.store().await?;
    let options = PreviewOptions { source, include_all: a.all, ..PreviewOptions::default() };
    let entries = preview::due_report_with(&store, &options).await.map_err(db_err)?;
    if a.json {
        println!("{}", preview::render_json(&entries));
    } else {
        print!("{}", preview::render_table(&entries, ctx.style.color));
    }
    Ok(ExitCode::SUCCESS)
}
