//! SQL of the run ledger `job_runs` as the job uses it: start, heartbeat and finish, each fenced
//! on (run id, attempt) so a stale process can never overwrite a newer attempt.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{q, Store, StoreError, StoreResult};

/// A run's terminal or in-flight status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Abandoned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Abandoned => "abandoned",
        }
    }
    pub fn parse(s: &str) -> Option<RunStatus> {
        use RunStatus::*;
        [Queued, Running, Succeeded, Failed, TimedOut, Cancelled, Abandoned].into_iter().find(|x| x.as_str() == s)
    }
}

/// The (run id, attempt) pair every status write is fenced on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRef {
    pub id: i64,
    pub attempt: i32,
}

/// A ledger row as the job (and the orchestrator, reading back what the job recorded) sees it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: i64,
    pub config_id: i64,
    pub attempt: i32,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
}

pub async fn get(store: &Store, id: i64) -> StoreResult<Option<RunInfo>> {
    let client = store.client().await?;
    let row = client
        .query_opt(
            "SELECT id, config_id, attempt, status, started_at, error_kind, error_message FROM job_runs WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(q("reading a run"))?;
    Ok(row.map(|r| RunInfo {
        id: r.get(0),
        config_id: r.get(1),
        attempt: r.get(2),
        status: r.get(3),
        started_at: r.get(4),
        error_kind: r.get(5),
        error_message: r.get(6),
    }))
}

/// A run started by hand (`job --config-id`, `jobctl execute`): no period, trigger `manual`.
/// Fails with a clear message when the config already has a run in flight.
pub async fn create_manual(
    store: &Store,
    config_id: i64,
    config_name: &str,
    kind: &str,
    executor: &str,
) -> StoreResult<RunRef> {
    let client = store.client().await?;
    let row = client
        .query_one(
            "INSERT INTO job_runs (config_id, config_name, kind, status, trigger, executor)
             VALUES ($1, $2, $3, 'queued', 'manual', $4) RETURNING id, attempt",
            &[&config_id, &config_name, &kind, &executor],
        )
        .await
        .map_err(|e| {
            if e.as_db_error().is_some_and(|d| d.constraint() == Some("job_runs_one_in_flight")) {
                StoreError::msg(
                    "starting a manual run",
                    format!(
                        "config {config_name:?} already has a run in flight; see `jobctl runs --config {config_name}`"
                    ),
                )
            } else {
                StoreError::new("starting a manual run", e)
            }
        })?;
    Ok(RunRef { id: row.get(0), attempt: row.get(1) })
}

/// Marks the run `running` and takes its lease. False when the run is no longer this attempt's.
pub async fn mark_running(store: &Store, run: RunRef, owner: &str, lease_secs: f64) -> StoreResult<bool> {
    let client = store.client().await?;
    let n = client
        .execute(
            "UPDATE job_runs
                SET status = 'running', started_at = COALESCE(started_at, now()), heartbeat_at = now(),
                    lease_owner = $3, lease_expires_at = now() + make_interval(secs => $4)
              WHERE id = $1 AND attempt = $2 AND status IN ('queued', 'running')",
            &[&run.id, &run.attempt, &owner, &lease_secs],
        )
        .await
        .map_err(q("marking the run running"))?;
    Ok(n == 1)
}

/// Extends the lease. False when the run was taken away (abandoned, or a newer attempt).
pub async fn heartbeat(store: &Store, run: RunRef, lease_secs: f64) -> StoreResult<bool> {
    let client = store.client().await?;
    let n = client
        .execute(
            "UPDATE job_runs SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $3)
              WHERE id = $1 AND attempt = $2 AND status = 'running'",
            &[&run.id, &run.attempt, &lease_secs],
        )
        .await
        .map_err(q("heartbeating the run"))?;
    Ok(n == 1)
}

/// What a finished run records.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: RunStatus,
    pub rows_read: Option<i64>,
    pub rows_written: Option<i64>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub details: Value,
}

/// Records the outcome and, on success, advances the config's `last_run` in the same
/// transaction. False when the run was fenced out (nothing written).
pub async fn finish(store: &Store, run: RunRef, o: &Outcome) -> StoreResult<bool> {
    finish_over(store, run, o, &[], None).await
}

/// The one fenced outcome write, for the job ([`finish`]) and the orchestrator
/// (`claims::record_outcome`): fenced on (run id, attempt) and on the run being queued or running,
/// or in one of `overriding`. A run with no `started_at` gets `started_fallback`. On success
/// `last_run` advances to the run's start (the database's `now()` when it has none), in the same
/// transaction. False when fenced out (nothing written).
pub(super) async fn finish_over(
    store: &Store,
    run: RunRef,
    o: &Outcome,
    overriding: &[RunStatus],
    started_fallback: Option<DateTime<Utc>>,
) -> StoreResult<bool> {
    let mut allowed = vec![RunStatus::Queued.as_str(), RunStatus::Running.as_str()];
    allowed.extend(overriding.iter().map(|s| s.as_str()));
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(q("starting the outcome transaction"))?;
    let row = tx
        .query_opt(
            "UPDATE job_runs
                SET status = $3, finished_at = now(), started_at = COALESCE(started_at, $10),
                    rows_read = COALESCE($4, rows_read), rows_written = COALESCE($5, rows_written),
                    error_kind = $6, error_message = $7, details = details || $8, lease_expires_at = NULL
              WHERE id = $1 AND attempt = $2 AND status = ANY($9)
              RETURNING config_id, COALESCE(started_at, now())",
            &[
                &run.id,
                &run.attempt,
                &o.status.as_str(),
                &o.rows_read,
                &o.rows_written,
                &o.error_kind,
                &o.error_message,
                &o.details,
                &allowed,
                &started_fallback,
            ],
        )
        .await
        .map_err(q("recording the run outcome"))?;
    let Some(row) = row else { return Ok(false) };
    if o.status == RunStatus::Succeeded {
        let config_id: i64 = row.get(0);
        let started: DateTime<Utc> = row.get(1);
        super::configs::set_last_run(&tx, config_id, started).await?;
    }
    tx.commit().await.map_err(q("committing the run outcome"))?;
    Ok(true)
}

/// Records progress in `details.progress` (rows processed, total when known).
pub async fn record_progress(store: &Store, run: RunRef, processed: u64, total: Option<u64>) -> StoreResult<()> {
    let client = store.client().await?;
    let progress = serde_json::json!({"processed": processed, "total": total, "at": Utc::now().to_rfc3339()});
    client
        .execute(
            "UPDATE job_runs SET details = jsonb_set(details, '{progress}', $3)
              WHERE id = $1 AND attempt = $2 AND status = 'running'",
            &[&run.id, &run.attempt, &progress],
        )
        .await
        .map_err(q("recording progress"))?;
    Ok(())
}
