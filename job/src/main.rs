//! `job`: processes exactly one configuration and exits — what a Cloud Run Job task runs.
//! Exit codes: 0 success, 1 internal, 2 bad configuration, 3 source failure, 4 destination
//! failure, 5 validation failure, 6 control-plane (Postgres/ledger) failure, 130 interrupted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use sheettobigquery::google::GcpArgs;
use sheettobigquery::runner::{self, ConfigSource, JobRequest};
use sheettobigquery::store::DbArgs;
use sheettobigquery::telemetry::{self, LogFormat};

/// Load one Google Sheet into BigQuery (or run one ETL unit), then exit.
///
/// The configuration comes from exactly one of --config-file, --config-json, --config-id, or the
/// environment (JOB_CONFIG_ID, JOB_RUN_ID) as the orchestrator sets it on Cloud Run.
///
/// Examples:
///   job --config-file sales.json
///   DATABASE_URL=postgres://… job --config-id 42
///   JOB_CONFIG_ID=42 JOB_RUN_ID=1001 job
#[derive(Debug, Parser)]
#[command(name = "job", version, group(ArgGroup::new("source").args(["config_file", "config_json", "config_id"])))]
struct Cli {
    /// Path of a config JSON file (the existing deployment's format).
    #[arg(long, value_name = "PATH")]
    config_file: Option<PathBuf>,
    /// The config as inline JSON.
    #[arg(long, value_name = "JSON")]
    config_json: Option<String>,
    /// Id of a row of sheet_to_bigquery_configs (needs the database). A comma-separated list is
    /// allowed; CLOUD_RUN_TASK_INDEX picks this task's id.
    #[arg(long, env = "JOB_CONFIG_ID", value_name = "ID[,ID…]")]
    config_id: Option<String>,
    /// Id of the job_runs row this execution records its outcome in (set by the orchestrator).
    #[arg(long, env = "JOB_RUN_ID", value_name = "ID[,ID…]")]
    run_id: Option<String>,
    /// The run attempt this execution belongs to; stale attempts refuse to run.
    #[arg(long, env = "JOB_RUN_ATTEMPT")]
    run_attempt: Option<i32>,
    /// Lease extended by each heartbeat, in seconds.
    #[arg(long, env = "JOB_LEASE_SECONDS", default_value_t = 120)]
    lease_seconds: u64,
    /// Log format: json (Cloud Logging), text, or auto (json unless stdout is a terminal).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// Pre-flight only: check connections, the target and permissions, and write nothing
    /// (kinds that write to Postgres).
    #[arg(long)]
    test_only: bool,
    /// Skip the backup taken before writing (refused when ENVIRONMENT=production).
    #[arg(long)]
    skip_backup: bool,
    /// Cloud Run task index (set by Cloud Run).
    #[arg(long, env = "CLOUD_RUN_TASK_INDEX", hide = true)]
    task_index: Option<usize>,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    gcp: GcpArgs,
}

fn request(cli: &Cli) -> Result<JobRequest, sheettobigquery::error::JobError> {
    let source = if let Some(p) = &cli.config_file {
        ConfigSource::File(p.clone())
    } else if let Some(j) = &cli.config_json {
        ConfigSource::Json(j.clone())
    } else if let Some(ids) = &cli.config_id {
        ConfigSource::Id(runner::select_task_item(ids, cli.task_index, "JOB_CONFIG_ID")?)
    } else {
        ConfigSource::FromRun
    };
    let run_id =
        cli.run_id.as_deref().map(|r| runner::select_task_item(r, cli.task_index, "JOB_RUN_ID")).transpose()?;
    if matches!(source, ConfigSource::FromRun) && run_id.is_none() {
        return Err(sheettobigquery::error::JobError::config(
            "no configuration given: use --config-file, --config-json or --config-id (or set JOB_CONFIG_ID / JOB_RUN_ID)",
        ));
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    Ok(JobRequest {
        source,
        run_id,
        run_attempt: cli.run_attempt,
        db: cli.db.clone(),
        gcp: cli.gcp.clone(),
        lease: Duration::from_secs(cli.lease_seconds.max(1)),
        owner: format!("job@{host}:{}", std::process::id()),
        options: sheettobigquery::kinds::RunOptions { test_only: cli.test_only, skip_backup: cli.skip_backup },
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let req = match request(&cli) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, error_kind = e.kind.as_str(), exit_code = e.kind.exit_code(), "{}", telemetry::JOB_FAILED);
            return e.kind.to_exit_code();
        }
    };
    ExitCode::from(runner::execute(req).await.exit_code())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
