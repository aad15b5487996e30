//! Read-only SQL over the run ledger for people (`jobctl status`, `jobctl runs`): each config's
//! last outcome and failing streak, run listings with filters, one run in full, and the rows a
//! run rejected (`import_results`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{q, Store, StoreResult};

/// Statuses that count as a failure (a failing streak, `jobctl runs --failed`).
pub const FAILED_STATUSES: [&str; 3] = ["failed", "timed_out", "abandoned"];

/// One config with its schedule and latest outcome.
#[derive(Debug, Clone)]
pub struct ConfigStatus {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub is_active: bool,
    pub run_frequency_hours: i32,
    pub migration_status: String,
    pub last_run: Option<DateTime<Utc>>,
    /// A run is queued or running. (Whether it is due is the orchestrator's decision: the preview.)
    pub in_flight: bool,
    /// The latest finished run: id, status, rows written, finish time, error message.
    pub last_run_id: Option<i64>,
    pub last_status: Option<String>,
    pub last_rows_written: Option<i64>,
    pub last_finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Failed runs since the last success (0 when the latest finished run succeeded).
    pub failing_streak: i64,
}

/// Every config with its schedule and last outcome, by name.
pub async fn config_status(store: &Store) -> StoreResult<Vec<ConfigStatus>> {
    let client = store.client().await?;
    let rows = client
        .query(
            "SELECT c.id::bigint, c.name, c.kind, c.is_active, c.run_frequency_hours, c.migration_status, c.last_run,
                    EXISTS (SELECT 1 FROM job_runs f WHERE f.config_id = c.id AND f.status IN ('queued', 'running')) AS in_flight,
                    lr.id, lr.status, lr.rows_written, lr.finished_at, lr.error_message,
                    (SELECT count(*) FROM job_runs f
                      WHERE f.config_id = c.id AND f.status = ANY($1)
                        AND f.created_at > COALESCE((SELECT max(s.created_at) FROM job_runs s
                                                      WHERE s.config_id = c.id AND s.status = 'succeeded'),
                                                    '-infinity'::timestamptz)) AS failing_streak
               FROM sheet_to_bigquery_configs c
               LEFT JOIN LATERAL (
                    SELECT r.id, r.status, r.rows_written, r.finished_at, r.error_message
                      FROM job_runs r
                     WHERE r.config_id = c.id AND r.status NOT IN ('queued', 'running')
                     ORDER BY COALESCE(r.finished_at, r.created_at) DESC, r.id DESC
                     LIMIT 1) lr ON true
              ORDER BY c.name, c.id",
            &[&FAILED_STATUSES.as_slice()],
        )
        .await
        .map_err(q("reading config status"))?;
    Ok(rows
        .iter()
        .map(|r| ConfigStatus {
            id: r.get(0),
            name: r.get(1),
            kind: r.get(2),
            is_active: r.get(3),
            run_frequency_hours: r.get(4),
            migration_status: r.get(5),
            last_run: r.get(6),
            in_flight: r.get(7),
            last_run_id: r.get(8),
            last_status: r.get(9),
            last_rows_written: r.get(10),
            last_finished_at: r.get(11),
            last_error: r.get(12),
            failing_streak: r.get(13),
        })
        .collect())
}

/// One row of `job_runs`.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: i64,
    pub config_id: i64,
    pub config_name: String,
    pub kind: String,
    pub period_start: Option<DateTime<Utc>>,
    pub status: String,
    pub attempt: i32,
    pub executor: Option<String>,
    pub execution_name: Option<String>,
    pub trigger: String,
    pub schedule_time: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows_read: Option<i64>,
    pub rows_written: Option<i64>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub details: Value,
}

const RUN_SELECT: &str = "SELECT id, config_id, config_name, kind, period_start, status, attempt, executor,
        execution_name, trigger, schedule_time, created_at, started_at, finished_at, rows_read, rows_written,
        error_kind, error_message, details
    FROM job_runs";

fn to_run(r: &tokio_postgres::Row) -> RunRow {
    RunRow {
        id: r.get(0),
        config_id: r.get(1),
        config_name: r.get(2),
        kind: r.get(3),
        period_start: r.get(4),
        status: r.get(5),
        attempt: r.get(6),
        executor: r.get(7),
        execution_name: r.get(8),
        trigger: r.get(9),
        schedule_time: r.get(10),
        created_at: r.get(11),
        started_at: r.get(12),
        finished_at: r.get(13),
        rows_read: r.get(14),
        rows_written: r.get(15),
        error_kind: r.get(16),
        error_message: r.get(17),
        details: r.get(18),
    }
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub config_name: Option<String>,
    /// Only failed, timed-out and abandoned runs.
    pub failed_only: bool,
    /// Only runs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// Runs matching the filter, newest first.
pub async fn list_runs(store: &Store, f: &RunFilter) -> StoreResult<Vec<RunRow>> {
    let client = store.client().await?;
    let rows = client
        .query(
            &format!(
                "{RUN_SELECT}
                  WHERE ($1::text IS NULL OR config_name = $1)
                    AND (NOT $2 OR status = ANY($3))
                    AND ($4::timestamptz IS NULL OR created_at >= $4)
                  ORDER BY created_at DESC, id DESC
                  LIMIT $5"
            ),
            &[&f.config_name, &f.failed_only, &FAILED_STATUSES.as_slice(), &f.since, &f.limit.max(1)],
        )
        .await
        .map_err(q("listing runs"))?;
    Ok(rows.iter().map(to_run).collect())
}

pub async fn get_run(store: &Store, id: i64) -> StoreResult<Option<RunRow>> {
    let client = store.client().await?;
    let row = client.query_opt(&format!("{RUN_SELECT} WHERE id = $1"), &[&id]).await.map_err(q("reading a run"))?;
    Ok(row.as_ref().map(to_run))
}

/// A row a run rejected (`import_results`): where it is in the source, its key, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub row_number: Option<i64>,
    pub cell_ref: Option<String>,
    pub key: Option<Value>,
    pub reason: String,
}

/// The rows the run's current attempt rejected, in source order: at most `limit` of them, and
/// how many there are in all.
pub async fn rejected_rows(store: &Store, run_id: i64, limit: i64) -> StoreResult<(Vec<Rejected>, i64)> {
    let client = store.client().await?;
    // At least one row, so the total arrives even with `limit` 0.
    let rows = client
        .query(
            "SELECT t.row_number, t.cell_ref, t.key, t.reason, count(*) OVER ()
               FROM import_results t
               JOIN job_runs r ON r.id = t.run_id AND r.attempt = t.attempt
              WHERE t.run_id = $1
              ORDER BY t.row_number NULLS LAST, t.cell_ref, t.id
              LIMIT GREATEST($2::bigint, 1)",
            &[&run_id, &limit],
        )
        .await
        .map_err(q("reading import_results"))?;
    let total = rows.first().map_or(0, |r| r.get(4));
    let rejected = rows
        .iter()
        .take(limit.max(0) as usize)
        .map(|r| Rejected { row_number: r.get(0), cell_ref: r.get(1), key: r.get(2), reason: r.get(3) })
        .collect();
    Ok((rejected, total))
}
