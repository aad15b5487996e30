//! The `orchestrator` command line (clap derive; doc comments are the help text) and what each
//! command does: `run` (one tick, or `--dry-run`), `preview`, `serve`, `migrate`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use sheettobigquery::runner::shutdown_signal;
use sheettobigquery::store::claims::TickBegin;
use sheettobigquery::store::{DbArgs, Store};
use sheettobigquery::telemetry::LogFormat;

use crate::executor::cloud_run::CloudRunExecutor;
use crate::executor::local::LocalExecutor;
use crate::executor::Executor;
use crate::metrics::Metrics;
use crate::oidc::Authenticator;
use crate::output::ColorWhen;
use crate::preview::{self, DueArgs};
use crate::settings::{self, fmt_duration, ExecutorKind, ServeArgs, Settings, TickArgs};
use crate::tick::{hostname, Orchestrator, TickRequest, Trigger};

const AFTER_HELP: &str = "\
Examples:
  orchestrator run                                  one tick: dispatch what is due, wait, exit
  orchestrator run --dry-run                        what would run and why; writes nothing
  orchestrator preview --all                        every config and when it becomes due
  orchestrator serve --oidc-audience https://orchestrator-xyz.run.app \\
      --oidc-allowed-email scheduler@p.iam.gserviceaccount.com
  orchestrator migrate

Settings come from flags, then the environment (shown in each flag's help), then --config-file
(a JSON object keyed by long flag names, e.g. {\"max-parallel-jobs\": 8, \"job-timeout\": \"20m\"};
secrets are refused there), then the defaults. Database: DATABASE_URL, or POSTGRES_HOST,
POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD.";

const RUN_HELP: &str = "\
Exit codes: 0 every dispatched run succeeded (or nothing was due); 1 the orchestrator failed
(settings, database); 2 usage error; 3 at least one run failed, timed out, was cancelled or was
abandoned after its attempts in this tick; 130 interrupted by SIGTERM/SIGINT (in-flight runs were
given --shutdown-grace to finish, then stopped and recorded; nothing more was claimed).

Retries: a failed run is retried within its due period up to --max-attempts attempts, after
min(--retry-max-delay, --retry-base-delay x 2^(attempt-1)) with equal jitter (half of it plus up to
the other half at random); the tick waits for backoffs up to --retry-wait-max, later ones are left
to a later tick. Abandoned runs (expired lease) are retried at once. last_run moves only when a run
succeeds; a config whose attempts are exhausted waits for its next period.

Examples:
  orchestrator run
  orchestrator run --dry-run
  orchestrator run --max-parallel-jobs 8 --job-timeout 20m --max-attempts 3
  orchestrator run --configs-view active_job_configs
  orchestrator run --executor cloud-run --cloud-run-project p --cloud-run-region europe-west1 \\
      --cloud-run-job sheet-job --max-parallel-jobs 20";

const PREVIEW_HELP: &str = "\
Examples:
  orchestrator preview                               the configs the next tick would dispatch
  orchestrator preview --all                         and every other config, with when it is due
  orchestrator preview --at 2025-06-01T08:00:00Z     as if it were that time
  orchestrator preview --json | jq '.[] | select(.due) | .name'";

const SERVE_HELP: &str = "\
Endpoints: POST /run (a tick), GET /healthz, GET /metrics (Prometheus text).

Cloud Scheduler: create an HTTP job targeting https://SERVICE/run with an OIDC token whose audience
is --oidc-audience and whose service account is in --oidc-allowed-email. POST /run answers within
--respond-within (default 150s): 200 with the tick's result when it finished, 202 while it goes on.
Keep --respond-within below the scheduler job's attempt deadline (--attempt-deadline, 3 minutes
by default for HTTP targets). A retried request with the same X-CloudScheduler-JobName and
X-CloudScheduler-ScheduleTime starts nothing and gets the original tick's result. Unauthenticated
or wrongly authenticated requests get 401/403 and write nothing.

With the local executor the service needs CPU outside requests (Cloud Run --no-cpu-throttling), since
jobs outlive the response; with the cloud-run executor it only waits.

Examples:
  orchestrator serve --oidc-audience https://orchestrator-xyz.run.app \\
      --oidc-allowed-email scheduler@p.iam.gserviceaccount.com --executor cloud-run ...
  ORCHESTRATOR_AUTH_TOKEN_FILE=/secrets/token orchestrator serve --listen 127.0.0.1:8080
  curl -X POST -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/run";

/// Claims the configurations that are due and fans out one job execution per configuration under
/// a parallelism cap, locally or on Cloud Run Jobs; exactly once per due period, however many
/// orchestrators run at once.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Settings file (JSON object keyed by long flag names); flags and env vars win over it.
    #[arg(long, env = "ORCHESTRATOR_CONFIG_FILE", global = true, value_name = "PATH")]
    pub config_file: Option<PathBuf>,
    /// Log format: json (Cloud Logging), text, or auto (json unless stdout is a terminal).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub db: DbArgs,
}

// Parsed once per process; boxing the variants would only obscure the clap derive.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One tick: sweep expired leases, claim what is due, run it under the cap, wait for the
    /// outcomes, record them, exit (0 all succeeded, 3 some run failed; see `run --help`).
    #[command(after_help = RUN_HELP)]
    Run(RunCmd),
    /// What is due and why (never run, overdue by N); with --all every config and when it becomes
    /// due. Writes nothing.
    #[command(after_help = PREVIEW_HELP)]
    Preview(PreviewCmd),
    /// HTTP service for Cloud Scheduler: POST /run triggers a tick (OIDC or bearer token),
    /// GET /healthz, GET /metrics; answers within --respond-within (see `serve --help`).
    #[command(after_help = SERVE_HELP)]
    Serve(ServeCmd),
    /// Apply the database migrations.
    Migrate,
}

#[derive(Debug, clap::Args)]
pub struct RunCmd {
    /// Show what would be dispatched and why, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: JSON instead of a table.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
    /// Recorded as the runs' trigger.
    #[arg(long, value_enum, default_value_t = Trigger::Cron, env = "ORCHESTRATOR_TRIGGER")]
    pub trigger: Trigger,
    #[command(flatten)]
    pub tick: TickArgs,
}

#[derive(Debug, clap::Args)]
pub struct PreviewCmd {
    /// Every config, not only the due ones, with when each becomes due.
    #[arg(long)]
    pub all: bool,
    /// JSON (an array of entries) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compute as if it were this time (RFC 3339, e.g. 2025-06-01T08:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub at: Option<DateTime<Utc>>,
    /// Colour the table: auto (a terminal without NO_COLOR), always, never.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    #[command(flatten)]
    pub due: DueArgs,
}

#[derive(Debug, clap::Args)]
pub struct ServeCmd {
    #[command(flatten)]
    pub tick: TickArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
}

async fn connect(db: &DbArgs, pool: usize) -> anyhow::Result<Store> {
    Store::connect(db, pool)
        .await
        .map_err(|e| anyhow::anyhow!(e.db_message()))
        .context("connecting to the control-plane database")
}

fn executor(s: &Settings, db: &DbArgs) -> anyhow::Result<Arc<dyn Executor>> {
    Ok(match s.executor {
        ExecutorKind::Local => {
            anyhow::ensure!(
                s.job_binary.exists(),
                "the job binary {} does not exist (set --job-binary or ORCHESTRATOR_JOB_BINARY)",
                s.job_binary.display()
            );
            Arc::new(LocalExecutor {
                job_binary: s.job_binary.clone(),
                timeout: s.job_timeout,
                kill_grace: s.kill_grace,
                db: db.clone(),
                host: hostname(),
            })
        }
        ExecutorKind::CloudRun => {
            Arc::new(CloudRunExecutor::new(&s.cloud_run).context("setting up the cloud-run executor")?)
        }
    })
}

/// What the first SIGTERM/SIGINT does.
const DRAINING: &str = "claiming nothing more; in-flight runs get the shutdown grace period";

/// Runs the command; the error carries the whole context chain.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = cli.config_file.as_deref();
    match cli.command {
        Command::Migrate => {
            let store = connect(&cli.db, 1).await?;
            let done =
                sheettobigquery::store::migrate::run(&store).await.map_err(|e| anyhow::anyhow!(e.db_message()))?;
            tracing::info!(applied = done.len(), database = store.describe(), "migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Preview(p) => {
            let options = preview::resolve_options(&p.due, file, p.at, p.all)?;
            let store = connect(&cli.db, 2).await?;
            let entries = preview::due_report(&store, &options).await.map_err(|e| anyhow::anyhow!(e.db_message()))?;
            if p.json {
                println!("{}", preview::render_json(&entries));
            } else {
                print!("{}", preview::render_table(&entries, p.color.enabled()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(r) => {
            let s = settings::resolve(&r.tick, file)?;
            if r.dry_run {
                let store = connect(&cli.db, 2).await?;
                let entries = preview::due_report(&store, &preview::preview_options(&s, None, false))
                    .await
                    .map_err(|e| anyhow::anyhow!(e.db_message()))?;
                if r.json {
                    println!("{}", preview::render_json(&entries));
                } else {
                    print!("{}", preview::render_table(&entries, ColorWhen::Auto.enabled()));
                    println!(
                        "dry run: would dispatch {} run(s) with the {} executor, at most {} at a time; nothing was written",
                        entries.len(),
                        s.executor.as_str(),
                        s.max_parallel_jobs
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let store = connect(&cli.db, s.max_parallel_jobs.clamp(4, 32)).await?;
            let exec = executor(&s, &cli.db)?;
            tracing::info!(settings = ?settings::describe(&s), database = store.describe(), "orchestrator tick starting");
            let grace = s.shutdown_grace;
            let orch = Orchestrator::new(store, s, exec, Arc::new(Metrics::default()));
            let o2 = orch.clone();
            tokio::spawn(async move {
                shutdown_signal(DRAINING).await;
                o2.stop_claiming();
                tokio::select! {
                    _ = tokio::time::sleep(grace) => {}
                    _ = shutdown_signal("stopping in-flight runs now") => {}
                }
                o2.force_stop();
            });
            let req = TickRequest { trigger: r.trigger, scheduler_job: None, schedule_time: None };
            let tick_id = match orch.begin_tick(&req).await.map_err(|e| anyhow::anyhow!(e.db_message()))? {
                TickBegin::Started(id) => id,
                TickBegin::Replay(t) => anyhow::bail!("tick {} already recorded", t.id),
            };
            let report = orch.run_tick(tick_id, &req).await;
            if let Some(e) = &report.error {
                anyhow::bail!("tick {tick_id} failed: {e}");
            }
            Ok(ExitCode::from(report.exit_code()))
        }
        Command::Serve(sc) => {
            let s = settings::resolve(&sc.tick, file)?;
            let ss = settings::resolve_serve(&sc.serve, file)?;
            let store = connect(&cli.db, s.max_parallel_jobs.clamp(4, 32) + 4).await?;
            let exec = executor(&s, &cli.db)?;
            let auth = Authenticator::new(ss.auth_token.clone(), ss.oidc.clone(), ss.insecure_no_auth);
            let listener = tokio::net::TcpListener::bind(ss.listen)
                .await
                .with_context(|| format!("listening on {}", ss.listen))?;
            let addr = listener.local_addr()?;
            tracing::info!(
                addr = %addr,
                oidc = ss.oidc.is_some(),
                static_token = ss.auth_token.is_some(),
                respond_within = %fmt_duration(ss.respond_within),
                shutdown_grace = %fmt_duration(s.shutdown_grace),
                settings = ?settings::describe(&s),
                "listening"
            );
            let grace = s.shutdown_grace;
            let orch = Orchestrator::new(store, s, exec, Arc::new(Metrics::default()));
            crate::server::serve(listener, orch, auth, ss.respond_within, grace, shutdown_signal(DRAINING)).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
