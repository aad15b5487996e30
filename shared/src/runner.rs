//! Running exactly one configuration to completion: resolve the config (file, JSON, Postgres id or
//! the Cloud Run environment), record the run in `job_runs` (start, heartbeat, outcome, fenced on
//! run id and attempt), run its unit while watching for SIGTERM/SIGINT, and end with the one log
//! line the deployment's metrics match. The `job` binary and `jobctl execute` both call `execute`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::JobConfig;
use crate::error::{ErrorKind, JobError, JobResult};
use crate::google::{GcpArgs, Services};
use crate::kinds::{self, Report, RunContext};
use crate::store::runs::{self, Outcome, RunRef, RunStatus};
use crate::store::{configs, DbArgs, Store};
use crate::telemetry::{JOB_FAILED, JOB_SUCCEEDED};

/// Where the one configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    Json(String),
    Id(i64),
    /// Only a run id: the config is the run's.
    FromRun,
}

/// Everything one execution needs.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub source: ConfigSource,
    pub run_id: Option<i64>,
    /// The attempt the run id refers to; read from the ledger when absent.
    pub run_attempt: Option<i32>,
    pub db: DbArgs,
    pub gcp: GcpArgs,
    /// How long a heartbeat extends the run's lease.
    pub lease: Duration,
    /// Names this process in `job_runs.lease_owner` and `executor` of manual runs.
    pub owner: String,
    pub options: kinds::RunOptions,
}

/// The result of one execution.
#[derive(Debug)]
pub struct JobOutcome {
    pub config_name: Option<String>,
    pub run_id: Option<i64>,
    pub result: JobResult<Report>,
    pub elapsed: Duration,
}

impl JobOutcome {
    pub fn exit_code(&self) -> u8 {
        match &self.result {
            Ok(_) => 0,
            Err(e) => e.kind.exit_code(),
        }
    }
}

/// Picks this task's item from a comma-separated list (`JOB_CONFIG_ID=3,5,9`) by
/// `CLOUD_RUN_TASK_INDEX`.
pub fn select_task_item(list: &str, task_index: Option<usize>, what: &str) -> JobResult<i64> {
    let items: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let item = match (items.len(), task_index) {
        (0, _) => return Err(JobError::config(format!("{what} is empty"))),
        (1, _) => items[0],
        (n, Some(i)) if i < n => items[i],
        (n, Some(i)) => return Err(JobError::config(format!("{what} lists {n} ids but CLOUD_RUN_TASK_INDEX is {i}"))),
        (n, None) => {
            return Err(JobError::config(format!(
                "{what} lists {n} ids; CLOUD_RUN_TASK_INDEX must pick one (got none)"
            )))
        }
    };
    item.parse::<i64>().map_err(|_| JobError::config(format!("{what}: {item:?} is not a numeric id")))
}

struct Resolved {
    config: JobConfig,
    store: Option<Store>,
    run: Option<RunRef>,
}

async fn connect(db: &DbArgs) -> JobResult<Store> {
    Store::connect(db, 2).await.map_err(|e| JobError::ledger(e.db_message()))
}

async fn resolve(req: &JobRequest) -> JobResult<Resolved> {
    let mut store = None;
    let mut run_config_id = None;
    let mut run = None;
    if let Some(run_id) = req.run_id {
        let s = connect(&req.db).await?;
        let info = runs::get(&s, run_id)
            .await
            .map_err(|e| JobError::ledger(e.db_message()))?
            .ok_or_else(|| JobError::ledger(format!("run {run_id} (JOB_RUN_ID) does not exist in job_runs")))?;
        let attempt = req.run_attempt.unwrap_or(info.attempt);
        if attempt != info.attempt {
            return Err(JobError::ledger(format!(
                "run {run_id} is at attempt {}, this process was started for attempt {attempt}; not running a stale attempt",
                info.attempt
            )));
        }
        run_config_id = Some(info.config_id);
        run = Some(RunRef { id: run_id, attempt });
        store = Some(s);
    }
    let config =
        match &req.source {
            ConfigSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| JobError::config(format!("cannot read config file {}: {e}", path.display())))?;
                JobConfig::from_json_str(&text).map_err(|e| JobError::config(format!("{}: {e}", path.display())))?
            }
            ConfigSource::Json(text) => JobConfig::from_json_str(text)?,
            ConfigSource::Id(_) | ConfigSource::FromRun => {
                let id =
                    match (&req.source, run_config_id) {
                        (ConfigSource::Id(id), Some(rc)) if *id != rc => {
                            return Err(JobError::config(format!(
                                "config id {id} does not match run {}'s config id {rc}",
                                req.run_id.unwrap_or_default()
                            )))
                        }
                        (ConfigSource::Id(id), _) => *id,
                        (_, Some(rc)) => rc,
                        _ => return Err(JobError::config(
                            "no configuration given (use --config-file, --config-json, --config-id or JOB_CONFIG_ID)",
                        )),
                    };
                let s = match store.take() {
                    Some(s) => s,
                    None => connect(&req.db).await?,
                };
                let row = configs::get_by_id(&s, id).await.map_err(|e| JobError::ledger(e.db_message()))?.ok_or_else(
                    || JobError::config(format!("config id {id} does not exist in sheet_to_bigquery_configs")),
                )?;
                store = Some(s);
                row.config?
            }
        };
    // A config from Postgres run by hand still gets a ledger row, so `last_run` and history stay true.
    if run.is_none() {
        if let (Some(s), Some(id)) = (&store, config.id) {
            if matches!(req.source, ConfigSource::Id(_)) {
                let r = runs::create_manual(s, id, &config.name, config.kind.as_str(), &req.owner)
                    .await
                    .map_err(|e| JobError::ledger(e.db_message()))?;
                run = Some(r);
            }
        }
    }
    Ok(Resolved { config, store, run })
}

/// Waits for SIGTERM or SIGINT and logs which arrived and `then`, what the process does now.
pub async fn shutdown_signal(then: &str) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
        tokio::select! {
            _ = term.recv() => tracing::warn!(signal = "SIGTERM", "termination requested; {then}"),
            _ = int.recv() => tracing::warn!(signal = "SIGINT", "interrupt requested; {then}"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::warn!("interrupt requested; {then}");
    }
}

/// Runs one configuration to completion and logs the final line.
pub async fn execute(req: JobRequest) -> JobOutcome {
    let started = Instant::now();
    let shutdown = shutdown_signal("aborting without writing");
    tokio::pin!(shutdown);
    // Resolution can block on the network too; a signal during it ends the job at once.
    let resolved = tokio::select! {
        r = resolve(&req) => r,
        _ = &mut shutdown => Err(JobError::interrupted()),
    };
    let resolved = match resolved {
        Ok(r) => r,
        Err(e) => {
            return finish_log(JobOutcome {
                config_name: None,
                run_id: req.run_id,
                result: Err(e),
                elapsed: started.elapsed(),
            })
        }
    };
    let Resolved { config, store, run } = resolved;
    let span = tracing::info_span!("job", config = %config.name, kind = %config.kind, run_id = run.map(|r| r.id), attempt = run.map(|r| r.attempt));
    let _enter = span.enter();
    let result = run_resolved(&req, &config, store.as_ref(), run, &mut shutdown).await;
    finish_log(JobOutcome {
        config_name: Some(config.name.clone()),
        run_id: run.map(|r| r.id),
        result,
        elapsed: started.elapsed(),
    })
}

async fn run_resolved(
    req: &JobRequest,
    config: &JobConfig,
    store: Option<&Store>,
    run: Option<RunRef>,
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> JobResult<Report> {
    tracing::info!(config_id = config.id, "job started");
    if let (Some(s), Some(r)) = (store, run) {
        let ok = runs::mark_running(s, r, &req.owner, req.lease.as_secs_f64())
            .await
            .map_err(|e| JobError::ledger(e.db_message()))?;
        if !ok {
            return Err(JobError::ledger(format!(
                "run {} attempt {} is no longer queued or running (taken over, cancelled or finished); not running it",
                r.id, r.attempt
            )));
        }
    }
    // Heartbeat: extend the lease; if the run is taken away, stop.
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    let heartbeat = match (store, run) {
        (Some(s), Some(r)) => {
            let s = s.clone();
            let lease = req.lease;
            Some(tokio::spawn(async move {
                let every = (lease / 4).max(Duration::from_millis(250));
                loop {
                    tokio::time::sleep(every).await;
                    match runs::heartbeat(&s, r, lease.as_secs_f64()).await {
                        Ok(true) => tracing::debug!("heartbeat"),
                        Ok(false) => {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e.db_message(), "heartbeat failed; will retry"),
                    }
                }
            }))
        }
        _ => None,
    };

    let run_key = match run {
        Some(r) => format!("r{}a{}", r.id, r.attempt),
        None => format!("adhoc{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff),
    };
    let inflight = Arc::new(std::sync::Mutex::new(None));
    let work = async {
        let services = Services::from_args(&req.gcp).await?;
        tracing::info!(sheets_auth = %services.sheets_auth, bigquery_auth = %services.bigquery_auth, "credentials");
        let unit = kinds::unit_for(config)?;
        let ctx = RunContext {
            services,
            options: req.options,
            progress: progress_fn(store.cloned(), run),
            run,
            store: store.cloned(),
            run_key,
            inflight_job: inflight.clone(),
        };
        unit.run(&ctx).await
    };
    let result = tokio::select! {
        r = work => r,
        _ = shutdown.as_mut() => Err(JobError::interrupted()),
        _ = lost_rx.wait_for(|lost| *lost) => Err(JobError::ledger("the run's lease was lost (another attempt took over or it was cancelled); stopped without writing")),
    };
    if let Some(h) = heartbeat {
        h.abort();
    }
    if matches!(&result, Err(e) if e.kind == ErrorKind::Interrupted) {
        cancel_inflight(&inflight).await;
    }
    if let (Some(s), Some(r)) = (store, run) {
        let outcome = match &result {
            Ok(rep) => Outcome {
                status: RunStatus::Succeeded,
                rows_read: Some(rep.rows_read as i64),
                rows_written: Some(rep.rows_written as i64),
                error_kind: None,
                error_message: None,
                details: rep.details.clone(),
            },
            Err(e) => Outcome {
                status: if e.kind == ErrorKind::Interrupted { RunStatus::Cancelled } else { RunStatus::Failed },
                rows_read: None,
                rows_written: None,
                error_kind: Some(e.kind.as_str().to_string()),
                error_message: Some(e.message.clone()),
                details: json!({"cell_errors": e.details, "exit_code": e.kind.exit_code()}),
            },
        };
        // Bounded so an interrupted job still exits inside Cloud Run's 10 s grace period.
        match tokio::time::timeout(Duration::from_secs(5), runs::finish(s, r, &outcome)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => tracing::warn!("run outcome not recorded: the run was taken over by a newer attempt"),
            Ok(Err(e)) => {
                tracing::error!(error = %e.db_message(), "cannot record the run outcome");
                if result.is_ok() {
                    return Err(JobError::ledger(format!(
                        "the load succeeded but its outcome could not be recorded: {}",
                        e.db_message()
                    )));
                }
            }
            Err(_) => tracing::error!("recording the run outcome timed out"),
        }
    }
    result
}

/// Progress goes to `job_runs.details.progress`, at most once a second, without blocking the unit.
fn progress_fn(store: Option<Store>, run: Option<RunRef>) -> kinds::ProgressFn {
    let last = Arc::new(std::sync::Mutex::new(None::<Instant>));
    Arc::new(move |processed: u64, total: Option<u64>| {
        let (Some(store), Some(run)) = (store.clone(), run) else { return };
        {
            let Ok(mut l) = last.lock() else { return };
            if l.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *l = Some(Instant::now());
        }
        tokio::spawn(async move {
            if let Err(e) = runs::record_progress(&store, run, processed, total).await {
                tracing::debug!(error = %e.db_message(), "progress not recorded");
            }
        });
    })
}

async fn cancel_inflight(inflight: &Arc<std::sync::Mutex<Option<kinds::InflightJob>>>) {
    let job = inflight.lock().ok().and_then(|mut g| g.take());
    let Some(job) = job else { return };
    tracing::warn!(bigquery_job_id = %job.job_id, "cancelling the BigQuery job");
    // Bounded: an interrupted job must still exit inside Cloud Run's 10 s grace period.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        job.client.cancel_job(&job.project, &job.job_id, job.location.as_deref()),
    )
    .await;
}

fn finish_log(o: JobOutcome) -> JobOutcome {
    let duration_ms = o.elapsed.as_millis() as u64;
    match &o.result {
        Ok(rep) => tracing::info!(
            config = o.config_name.as_deref().unwrap_or(""),
            run_id = o.run_id,
            rows_read = rep.rows_read,
            rows_written = rep.rows_written,
            duration_ms,
            summary = %rep.summary,
            exit_code = 0,
            "{JOB_SUCCEEDED}"
        ),
        Err(e) => tracing::error!(
            config = o.config_name.as_deref().unwrap_or(""),
            run_id = o.run_id,
            error_kind = e.kind.as_str(),
            error = %e,
            duration_ms,
            exit_code = e.kind.exit_code(),
            "{JOB_FAILED}"
        ),
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_index_picks_one_id() {
        assert_eq!(select_task_item("7", None, "JOB_CONFIG_ID").unwrap(), 7);
        assert_eq!(select_task_item("3, 5,9", Some(1), "JOB_CONFIG_ID").unwrap(), 5);
        assert!(select_task_item("3,5", Some(2), "JOB_CONFIG_ID")
            .unwrap_err()
            .message
            .contains("CLOUD_RUN_TASK_INDEX is 2"));
        assert!(select_task_item("x", None, "JOB_CONFIG_ID").unwrap_err().message.contains("not a numeric id"));
    }
}
