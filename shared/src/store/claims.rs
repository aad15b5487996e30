//! SQL of the orchestrator: what is due and why, claiming due configs exactly once per due
//! period, leases and the sweeper, retries, the orchestrator's fenced outcome writes, and the
//! ledger of ticks that makes a replayed scheduler request harmless.
//!
//! # The due period
//! A config is due when it is active and `last_run + run_frequency_hours <= now` (or it never
//! ran). Its *period* is a window of `run_frequency_hours` (at least one hour) anchored where it
//! became due (`last_run + run_frequency_hours`, or `created_at` for a config that never ran):
//! `period_start = anchor + k × window` for the window that contains `now`. So:
//! - retries of a failed attempt find the same `(config_id, period_start)` row and bump `attempt`;
//! - `last_run` advances only on success (the job's `runs::finish`), which moves the anchor, so
//!   the next period's row is new;
//! - a config whose attempts are exhausted waits for the next window, then starts at attempt 1.
//!
//! # Claiming
//! One transaction: the due configs are locked `FOR UPDATE SKIP LOCKED` (so concurrent
//! orchestrators take disjoint sets), then a `job_runs` row is inserted per config with
//! `ON CONFLICT DO NOTHING` — the unique indexes on `(config_id, period_start)` and on in-flight
//! runs per config are what guarantee exactly one dispatch, even if two claimers race past the
//! lock. Retries are a fenced `UPDATE` from `(id, attempt)` to `(id, attempt + 1)`.
//!
//! Time: `now` is the database clock; the preview may pass an override (`coalesce($now, now())`).
//! Leases and retry times always use the database clock.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::runs::{self, Outcome, RunRef, RunStatus};
use super::{q, Store, StoreError, StoreResult};

/// Terminal statuses a new attempt may follow.
pub const RETRYABLE: [&str; 4] = ["failed", "timed_out", "cancelled", "abandoned"];

/// Where configs are read from: `sheet_to_bigquery_configs` or a view over it with the same
/// columns (e.g. `active_job_configs`). The name is validated and quoted, never interpolated raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigsSource {
    name: String,
}

impl ConfigsSource {
    pub const TABLE: &'static str = "sheet_to_bigquery_configs";

    pub fn table() -> ConfigsSource {
        ConfigsSource { name: Self::TABLE.to_string() }
    }

    /// `name` or `schema.name`, each an unquoted SQL identifier (letters, digits, `_`).
    pub fn parse(name: &str) -> Result<ConfigsSource, StoreError> {
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.len() <= 63
                && p.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) {
            return Err(StoreError::msg(
                "choosing the configs table",
                format!("{name:?} is not a table or view name (letters, digits and _, optionally schema.name)"),
            ));
        }
        Ok(ConfigsSource { name: name.to_string() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn sql(&self) -> String {
        self.name.split('.').map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(".")
    }
}

impl Default for ConfigsSource {
    fn default() -> Self {
        ConfigsSource::table()
    }
}

/// What the due computation needs to know about retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttemptPolicy {
    /// Attempts per due period, the first included.
    pub max_attempts: i32,
    /// Backoff before attempt 2; doubles per attempt.
    pub base_delay_secs: f64,
    /// Backoff ceiling.
    pub max_delay_secs: f64,
}

impl Default for AttemptPolicy {
    fn default() -> Self {
        AttemptPolicy { max_attempts: 3, base_delay_secs: 30.0, max_delay_secs: 900.0 }
    }
}

/// Per-config due columns over `c` (a configs row) given the clock expression `now`:
/// `due_at`, `anchor`, `plen` (the period window) and `period_start`.
fn due_columns(now: &str) -> String {
    format!(
        "c.last_run + make_interval(hours => c.run_frequency_hours) AS due_at,
         CASE WHEN {now} <= COALESCE(c.last_run + make_interval(hours => c.run_frequency_hours), c.created_at)
              THEN COALESCE(c.last_run + make_interval(hours => c.run_frequency_hours), c.created_at)
              ELSE COALESCE(c.last_run + make_interval(hours => c.run_frequency_hours), c.created_at)
                   + make_interval(hours => GREATEST(c.run_frequency_hours, 1))
                     * floor(extract(epoch FROM {now} - COALESCE(c.last_run + make_interval(hours => c.run_frequency_hours), c.created_at))
                             / extract(epoch FROM make_interval(hours => GREATEST(c.run_frequency_hours, 1))))
         END AS period_start,
         make_interval(hours => GREATEST(c.run_frequency_hours, 1)) AS plen"
    )
}

/// `c` is due by its schedule at `now`.
fn time_due(now: &str) -> String {
    format!(
        "c.is_active AND (c.last_run IS NULL OR c.last_run + make_interval(hours => c.run_frequency_hours) <= {now})"
    )
}

/// When the period row `pr` may be retried: its `next_attempt_at`, or the policy's backoff after
/// it finished (`$base`, `$max` are parameter placeholders). The fallback mirrors the backoff the
/// orchestrator schedules, `min(max, base × 2^(attempt−1))` (`google::retry::RetryPolicy::delay`),
/// without its jitter.
fn retry_at(base: &str, max: &str) -> String {
    format!(
        "COALESCE(pr.next_attempt_at,
                  COALESCE(pr.finished_at, pr.created_at)
                  + make_interval(secs => LEAST({max}::float8, {base}::float8 * power(2, LEAST(pr.attempt - 1, 30))::float8)))"
    )
}

/// A run holding a config in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunBrief {
    pub id: i64,
    pub status: String,
    pub attempt: i32,
    pub lease_owner: Option<String>,
}

/// The run of the config's current period, if one exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodRun {
    pub id: i64,
    pub status: String,
    pub attempt: i32,
    /// When another attempt may start (only meaningful for retryable statuses).
    pub retry_at: Option<DateTime<Utc>>,
}

/// One config as the due computation sees it.
#[derive(Debug, Clone)]
pub struct ScanRow {
    pub config_id: i64,
    pub name: String,
    pub kind: String,
    pub is_active: bool,
    pub run_frequency_hours: i32,
    pub last_run: Option<DateTime<Utc>>,
    /// The clock the computation used (the override, or the database's `now()`).
    pub now: DateTime<Utc>,
    /// `last_run + run_frequency_hours`; None when it never ran.
    pub due_at: Option<DateTime<Utc>>,
    pub period_start: DateTime<Utc>,
    /// When the next period starts (a config with exhausted attempts is due again then).
    pub next_period_at: DateTime<Utc>,
    pub in_flight: Option<RunBrief>,
    pub period_run: Option<PeriodRun>,
}

/// Why a due config is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueWhy {
    NeverRun,
    /// Seconds past `last_run + run_frequency_hours`.
    Overdue {
        by_secs: i64,
    },
}

/// What the orchestrator would do with a config right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueState {
    /// It would be claimed: attempt 1 of a new period, or the next attempt of `retry_of`.
    Due {
        why: DueWhy,
        attempt: i32,
        retry_of: Option<i64>,
    },
    /// Not due until `due_at`.
    NotYetDue {
        due_at: DateTime<Utc>,
    },
    Inactive,
    /// A run is queued or running.
    InFlight {
        run: RunBrief,
    },
    /// The period's last attempt failed; the next may start at `at`.
    RetryWait {
        run_id: i64,
        next_attempt: i32,
        at: DateTime<Utc>,
    },
    /// Every attempt of this period failed; the next period starts at `next_period_at`.
    Exhausted {
        run_id: i64,
        attempts: i32,
        next_period_at: DateTime<Utc>,
    },
    /// The period already has a run that is not retryable (e.g. it succeeded and `last_run` was
    /// moved back by hand).
    DoneThisPeriod {
        run_id: i64,
        status: String,
        next_period_at: DateTime<Utc>,
    },
}

impl DueState {
    pub fn is_due(&self) -> bool {
        matches!(self, DueState::Due { .. })
    }
}

/// The one decision function shared by the preview and the logs; the claim query's `WHERE`
/// clause is the same rule in SQL.
pub fn classify(row: &ScanRow, policy: &AttemptPolicy) -> DueState {
    if !row.is_active {
        return DueState::Inactive;
    }
    if let Some(due_at) = row.due_at {
        if due_at > row.now {
            return DueState::NotYetDue { due_at };
        }
    }
    if let Some(run) = &row.in_flight {
        return DueState::InFlight { run: run.clone() };
    }
    let why = match row.due_at {
        None => DueWhy::NeverRun,
        Some(d) => DueWhy::Overdue { by_secs: (row.now - d).num_seconds().max(0) },
    };
    match &row.period_run {
        None => DueState::Due { why, attempt: 1, retry_of: None },
        Some(pr) if RETRYABLE.contains(&pr.status.as_str()) => {
            if pr.attempt >= policy.max_attempts {
                DueState::Exhausted { run_id: pr.id, attempts: pr.attempt, next_period_at: row.next_period_at }
            } else if let Some(at) = pr.retry_at.filter(|at| *at > row.now) {
                DueState::RetryWait { run_id: pr.id, next_attempt: pr.attempt + 1, at }
            } else {
                DueState::Due { why, attempt: pr.attempt + 1, retry_of: Some(pr.id) }
            }
        }
        Some(pr) => {
            DueState::DoneThisPeriod { run_id: pr.id, status: pr.status.clone(), next_period_at: row.next_period_at }
        }
    }
}

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanParams<'a> {
    pub source: &'a ConfigsSource,
    /// Compute as if it were this time (the preview's `--at`); None uses the database clock.
    pub now: Option<DateTime<Utc>>,
    /// Every config, not only those due by their schedule.
    pub include_all: bool,
    pub policy: AttemptPolicy,
}

/// Every config due by its schedule (or every config with `include_all`), with its in-flight run
/// and its current period's run. Reads only.
pub async fn scan(store: &Store, p: &ScanParams<'_>) -> StoreResult<Vec<ScanRow>> {
    let client = store.client().await?;
    let now = "n.now";
    let sql = format!(
        "WITH n AS (SELECT COALESCE($1::timestamptz, now()) AS now),
         cfg AS (
             SELECT c.id::bigint AS id, c.name::text AS name, c.kind::text AS kind, c.is_active,
                    c.run_frequency_hours, c.last_run, n.now, {cols}
               FROM {src} c CROSS JOIN n
              WHERE $2 OR ({due})
         )
         SELECT cfg.id, cfg.name, cfg.kind, cfg.is_active, cfg.run_frequency_hours, cfg.last_run, cfg.now,
                cfg.due_at, cfg.period_start, cfg.period_start + cfg.plen,
                fl.id, fl.status, fl.attempt, fl.lease_owner,
                pr.id, pr.status, pr.attempt, {retry}
           FROM cfg
           LEFT JOIN job_runs fl ON fl.config_id = cfg.id AND fl.status IN ('queued', 'running')
           LEFT JOIN job_runs pr ON pr.config_id = cfg.id AND pr.period_start = cfg.period_start
          ORDER BY cfg.due_at ASC NULLS FIRST, cfg.id",
        cols = due_columns(now),
        src = p.source.sql(),
        due = time_due(now),
        retry = retry_at("$3", "$4"),
    );
    let rows = client
        .query(&sql, &[&p.now, &p.include_all, &p.policy.base_delay_secs, &p.policy.max_delay_secs])
        .await
        .map_err(|e| StoreError::new(format!("reading due configs from {}", p.source.name()), e))?;
    Ok(rows
        .iter()
        .map(|r| ScanRow {
            config_id: r.get(0),
            name: r.get(1),
            kind: r.get(2),
            is_active: r.get(3),
            run_frequency_hours: r.get(4),
            last_run: r.get(5),
            now: r.get(6),
            due_at: r.get(7),
            period_start: r.get(8),
            next_period_at: r.get(9),
            in_flight: r.get::<_, Option<i64>>(10).map(|id| RunBrief {
                id,
                status: r.get(11),
                attempt: r.get(12),
                lease_owner: r.get(13),
            }),
            period_run: r.get::<_, Option<i64>>(14).map(|id| PeriodRun {
                id,
                status: r.get(15),
                attempt: r.get(16),
                retry_at: r.get(17),
            }),
        })
        .collect())
}

/// How and for whom to claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub source: &'a ConfigsSource,
    pub policy: AttemptPolicy,
    /// At most this many runs.
    pub limit: i64,
    /// Only this config (an in-tick retry).
    pub only_config: Option<i64>,
    /// Names the claimer in `lease_owner`.
    pub owner: &'a str,
    pub lease_secs: f64,
    pub executor: &'a str,
    /// `scheduler`, `manual` or `cron`.
    pub trigger: &'a str,
    pub schedule_time: Option<DateTime<Utc>>,
    pub tick_id: Option<i64>,
}

/// A run this claimer now owns (status `queued`, leased to it).
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    pub run: RunRef,
    pub config_id: i64,
    pub config_name: String,
    pub period_start: DateTime<Utc>,
}

/// A due config this claimer did not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub config_id: i64,
    pub config_name: String,
    /// `locked` (another claimer holds it right now) or `raced` (another claimer's run for the
    /// period or an in-flight run committed first).
    pub reason: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct ClaimOutcome {
    pub claimed: Vec<ClaimedRun>,
    pub skipped: Vec<Skipped>,
}

fn eligible_sql(source: &ConfigsSource, locking: bool) -> String {
    // $1 limit, $2 only config, $3 max attempts, $4 base delay, $5 max delay, $6 excluded ids,
    // $7 the retryable statuses
    format!(
        "SELECT c.id::bigint, c.name::text, c.kind::text, per.period_start, pr.id, pr.attempt
           FROM {src} c
           CROSS JOIN LATERAL (SELECT {cols}) per
           LEFT JOIN job_runs pr ON pr.config_id = c.id AND pr.period_start = per.period_start
          WHERE {due}
            AND ($2::bigint IS NULL OR c.id = $2)
            AND c.id <> ALL($6::bigint[])
            AND NOT EXISTS (SELECT 1 FROM job_runs fl WHERE fl.config_id = c.id AND fl.status IN ('queued', 'running'))
            AND (pr.id IS NULL
                 OR (pr.status = ANY($7)
                     AND pr.attempt < $3
                     AND {retry} <= now()))
          ORDER BY per.due_at ASC NULLS FIRST, c.id
          LIMIT $1
          {lock}",
        src = source.sql(),
        cols = due_columns("now()"),
        due = time_due("now()"),
        retry = retry_at("$4", "$5"),
        lock = if locking { "FOR UPDATE OF c SKIP LOCKED" } else { "" },
    )
}

/// Claims up to `limit` due configs in one transaction. Concurrent claimers never get the same
/// config: rows are locked with SKIP LOCKED, and the unique indexes of `job_runs` reject a second
/// run for the same period or a second in-flight run.
pub async fn claim(store: &Store, req: &ClaimRequest<'_>) -> StoreResult<ClaimOutcome> {
    let mut tries = 0;
    loop {
        match claim_once(store, req).await {
            Ok(o) => return Ok(o),
            // A manual run inserted between our check and a retry's UPDATE: the in-flight index
            // refuses the UPDATE; the next try sees the manual run and skips the config.
            Err(e) if tries < 3 && is_unique_violation(&e) => {
                tries += 1;
                tracing::debug!(error = %e.db_message(), "claim raced a concurrent run; trying again");
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_unique_violation(e: &StoreError) -> bool {
    e.source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

async fn claim_once(store: &Store, req: &ClaimRequest<'_>) -> StoreResult<ClaimOutcome> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(q("starting the claim transaction"))?;
    let none: Vec<i64> = Vec::new();
    let p = &req.policy;
    let rows = tx
        .query(
            &eligible_sql(req.source, true),
            &[
                &req.limit,
                &req.only_config,
                &p.max_attempts,
                &p.base_delay_secs,
                &p.max_delay_secs,
                &none,
                &RETRYABLE.as_slice(),
            ],
        )
        .await
        .map_err(|e| StoreError::new(format!("locking due configs in {}", req.source.name()), e))?;

    struct Cand {
        config_id: i64,
        name: String,
        kind: String,
        period_start: DateTime<Utc>,
        retry_of: Option<(i64, i32)>,
    }
    let cands: Vec<Cand> = rows
        .iter()
        .map(|r| Cand {
            config_id: r.get(0),
            name: r.get(1),
            kind: r.get(2),
            period_start: r.get(3),
            retry_of: r.get::<_, Option<i64>>(4).map(|id| (id, r.get::<_, i32>(5))),
        })
        .collect();

    let (fresh, retries): (Vec<&Cand>, Vec<&Cand>) = cands.iter().partition(|c| c.retry_of.is_none());
    // Rows of (run id, config id, attempt): new period rows, then retries.
    let mut claimed = Vec::new();
    if !fresh.is_empty() {
        let ids: Vec<i64> = fresh.iter().map(|c| c.config_id).collect();
        let names: Vec<&str> = fresh.iter().map(|c| c.name.as_str()).collect();
        let kinds: Vec<&str> = fresh.iter().map(|c| c.kind.as_str()).collect();
        let periods: Vec<DateTime<Utc>> = fresh.iter().map(|c| c.period_start).collect();
        let inserted = tx
            .query(
                "INSERT INTO job_runs (config_id, config_name, kind, period_start, status, attempt, executor, trigger,
                                       schedule_time, lease_owner, lease_expires_at, tick_id)
                 SELECT u.config_id, u.name, u.kind, u.period_start, 'queued', 1, $5, $6, $7, $8,
                        now() + make_interval(secs => $9), $10
                   FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS u(config_id, name, kind, period_start)
                 ON CONFLICT DO NOTHING
                 RETURNING id, config_id, attempt",
                &[&ids, &names, &kinds, &periods, &req.executor, &req.trigger, &req.schedule_time, &req.owner, &req.lease_secs, &req.tick_id],
            )
            .await
            .map_err(q("inserting claimed runs"))?;
        claimed.extend(inserted);
    }

    if !retries.is_empty() {
        let run_ids: Vec<i64> = retries.iter().map(|c| c.retry_of.expect("retry").0).collect();
        let attempts: Vec<i32> = retries.iter().map(|c| c.retry_of.expect("retry").1).collect();
        let updated = tx
            .query(
                "UPDATE job_runs r
                    SET status = 'queued', attempt = r.attempt + 1, executor = $3, execution_name = NULL,
                        trigger = $4, schedule_time = $5, lease_owner = $6,
                        lease_expires_at = now() + make_interval(secs => $7), heartbeat_at = NULL,
                        next_attempt_at = NULL, started_at = NULL, finished_at = NULL, rows_read = NULL,
                        rows_written = NULL, error_kind = NULL, error_message = NULL, tick_id = $8,
                        details = jsonb_build_object('attempts',
                            COALESCE(r.details -> 'attempts', '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                                'attempt', r.attempt, 'status', r.status, 'executor', r.executor,
                                'execution_name', r.execution_name, 'started_at', r.started_at,
                                'finished_at', r.finished_at, 'error_kind', r.error_kind,
                                'error_message', r.error_message, 'details', r.details - 'attempts')))
                   FROM unnest($1::bigint[], $2::int[]) AS u(id, attempt)
                  WHERE r.id = u.id AND r.attempt = u.attempt AND r.status = ANY($9)
                  RETURNING r.id, r.config_id, r.attempt",
                &[
                    &run_ids,
                    &attempts,
                    &req.executor,
                    &req.trigger,
                    &req.schedule_time,
                    &req.owner,
                    &req.lease_secs,
                    &req.tick_id,
                    &RETRYABLE.as_slice(),
                ],
            )
            .await
            .map_err(q("claiming retries"))?;
        claimed.extend(updated);
    }

    let mut out = ClaimOutcome::default();
    for r in &claimed {
        let config_id: i64 = r.get(1);
        let c = cands.iter().find(|c| c.config_id == config_id).expect("a claimed run is a candidate's");
        out.claimed.push(ClaimedRun {
            run: RunRef { id: r.get(0), attempt: r.get(2) },
            config_id,
            config_name: c.name.clone(),
            period_start: c.period_start,
        });
    }

    for c in &cands {
        if !out.claimed.iter().any(|x| x.config_id == c.config_id) {
            out.skipped.push(Skipped { config_id: c.config_id, config_name: c.name.clone(), reason: "raced" });
        }
    }

    // Fewer than asked for: name the due configs another claimer holds locked right now.
    if (cands.len() as i64) < req.limit {
        let taken: Vec<i64> = cands.iter().map(|c| c.config_id).collect();
        let locked = tx
            .query(
                &eligible_sql(req.source, false),
                &[
                    &req.limit.min(1000),
                    &req.only_config,
                    &p.max_attempts,
                    &p.base_delay_secs,
                    &p.max_delay_secs,
                    &taken,
                    &RETRYABLE.as_slice(),
                ],
            )
            .await
            .map_err(q("reading configs locked by other claimers"))?;
        for r in &locked {
            out.skipped.push(Skipped { config_id: r.get(0), config_name: r.get(1), reason: "locked" });
        }
    }

    tx.commit().await.map_err(q("committing the claim"))?;
    out.claimed.sort_by_key(|c| c.run.id);
    Ok(out)
}

/// A held run after a lease renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRenewal {
    pub run: RunRef,
    /// The lease was extended: the run is still this attempt and queued or running.
    pub held: bool,
    /// The row's attempt and status now (None when the row is gone).
    pub now: Option<(i32, String)>,
}

/// Extends the leases of runs this orchestrator holds (queued or running) and says, for every
/// run asked about, whether it is still held and what its row shows now. A run no longer held
/// was swept, finished or retried by someone else. One statement for all runs.
pub async fn extend_leases(store: &Store, runs: &[RunRef], lease_secs: f64) -> StoreResult<Vec<LeaseRenewal>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let attempts: Vec<i32> = runs.iter().map(|r| r.attempt).collect();
    let client = store.client().await?;
    let rows = client
        .query(
            "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::int[]) AS u(id, attempt)),
             renewed AS (
                 UPDATE job_runs r SET lease_expires_at = GREATEST(r.lease_expires_at, now() + make_interval(secs => $3))
                   FROM u
                  WHERE r.id = u.id AND r.attempt = u.attempt AND r.status IN ('queued', 'running')
                  RETURNING r.id
             )
             SELECT u.id, u.attempt, renewed.id IS NOT NULL, r.attempt, r.status
               FROM u
               LEFT JOIN renewed ON renewed.id = u.id
               LEFT JOIN job_runs r ON r.id = u.id",
            &[&ids, &attempts, &lease_secs],
        )
        .await
        .map_err(q("extending run leases"))?;
    Ok(rows
        .iter()
        .map(|r| LeaseRenewal {
            run: RunRef { id: r.get(0), attempt: r.get(1) },
            held: r.get(2),
            now: r.get::<_, Option<i32>>(3).map(|a| (a, r.get(4))),
        })
        .collect())
}

/// Records where the run executes (`local:PID`, a Cloud Run execution name). Fenced.
pub async fn set_execution(store: &Store, run: RunRef, executor: &str, execution_name: &str) -> StoreResult<bool> {
    let client = store.client().await?;
    let n = client
        .execute(
            "UPDATE job_runs SET executor = $3, execution_name = $4
              WHERE id = $1 AND attempt = $2 AND status IN ('queued', 'running')",
            &[&run.id, &run.attempt, &executor, &execution_name],
        )
        .await
        .map_err(q("recording the execution"))?;
    Ok(n == 1)
}

/// A run whose lease expired, now `abandoned`.
#[derive(Debug, Clone)]
pub struct SweptRun {
    pub run: RunRef,
    pub config_id: i64,
    pub config_name: String,
    pub was: String,
    pub lease_owner: Option<String>,
}

/// The sweeper: every queued or running run whose lease expired (by the database clock) becomes
/// `abandoned`, eligible for its next attempt at once.
pub async fn sweep_expired(store: &Store) -> StoreResult<Vec<SweptRun>> {
    let client = store.client().await?;
    let rows = client
        .query(
            "WITH expired AS (
                 SELECT id, attempt, status FROM job_runs
                  WHERE status IN ('queued', 'running') AND lease_expires_at < now()
                  FOR UPDATE SKIP LOCKED
             )
             UPDATE job_runs r
                SET status = 'abandoned', finished_at = now(), next_attempt_at = now(), error_kind = 'abandoned',
                    error_message = 'lease expired at ' || to_char(r.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                        || ' (owner ' || COALESCE(r.lease_owner, 'unknown') || ')',
                    lease_expires_at = NULL
               FROM expired e
              WHERE r.id = e.id AND r.attempt = e.attempt
              RETURNING r.id, r.attempt, r.config_id, r.config_name, e.status, r.lease_owner",
            &[],
        )
        .await
        .map_err(q("sweeping expired leases"))?;
    Ok(rows
        .iter()
        .map(|r| SweptRun {
            run: RunRef { id: r.get(0), attempt: r.get(1) },
            config_id: r.get(2),
            config_name: r.get(3),
            was: r.get(4),
            lease_owner: r.get(5),
        })
        .collect())
}

/// Records the orchestrator's view of an outcome (from the exit code or the Cloud Run execution)
/// unless the job recorded its own: [`runs::finish`]'s fenced write, which may also replace one of
/// `overriding` (a timeout wins over the `cancelled` the job writes when it gets SIGTERM). A run
/// the job never marked running gets `started_fallback` as its start.
pub async fn record_outcome(
    store: &Store,
    run: RunRef,
    o: &Outcome,
    overriding: &[RunStatus],
    started_fallback: DateTime<Utc>,
) -> StoreResult<bool> {
    runs::finish_over(store, run, o, overriding, Some(started_fallback)).await
}

/// Sets when the next attempt may start, `delay_secs` from now. Fenced on (run id, attempt) and on
/// a retryable status; None when the run moved on.
pub async fn schedule_retry(store: &Store, run: RunRef, delay_secs: f64) -> StoreResult<Option<DateTime<Utc>>> {
    let client = store.client().await?;
    let row = client
        .query_opt(
            "UPDATE job_runs SET next_attempt_at = now() + make_interval(secs => $3)
              WHERE id = $1 AND attempt = $2 AND status = ANY($4)
              RETURNING next_attempt_at",
            &[&run.id, &run.attempt, &delay_secs, &RETRYABLE.as_slice()],
        )
        .await
        .map_err(q("scheduling a retry"))?;
    Ok(row.map(|r| r.get(0)))
}

/// A recorded tick, as a replayed scheduler request sees it.
#[derive(Debug, Clone)]
pub struct TickRow {
    pub id: i64,
    pub schedule_time: Option<DateTime<Utc>>,
    /// `running`, `completed`, `failed` or `interrupted`.
    pub status: String,
    /// A `running` tick whose owner stopped renewing it (crashed).
    pub lease_expired: bool,
    pub result: Option<Value>,
}

/// Starting a tick: a new one, or the one already recorded for this scheduler request.
#[derive(Debug, Clone)]
pub enum TickBegin {
    Started(i64),
    Replay(TickRow),
}

/// Records the start of a tick. With a schedule time, a second request for the same
/// (scheduler job, schedule time) gets the first one's row instead.
pub async fn begin_tick(
    store: &Store,
    trigger: &str,
    scheduler_job: Option<&str>,
    schedule_time: Option<DateTime<Utc>>,
    owner: &str,
    lease_secs: f64,
) -> StoreResult<TickBegin> {
    let client = store.client().await?;
    let row = client
        .query_opt(
            "INSERT INTO orchestrator_ticks (trigger, scheduler_job, schedule_time, owner, lease_expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
             ON CONFLICT DO NOTHING RETURNING id",
            &[&trigger, &scheduler_job, &schedule_time, &owner, &lease_secs],
        )
        .await
        .map_err(q("recording the tick"))?;
    if let Some(r) = row {
        return Ok(TickBegin::Started(r.get(0)));
    }
    let r = client
        .query_one(
            "SELECT id, schedule_time, status, status = 'running' AND lease_expires_at < now(), result
               FROM orchestrator_ticks
              WHERE COALESCE(scheduler_job, '') = COALESCE($1, '') AND schedule_time = $2",
            &[&scheduler_job, &schedule_time],
        )
        .await
        .map_err(q("reading the original tick"))?;
    Ok(TickBegin::Replay(TickRow {
        id: r.get(0),
        schedule_time: r.get(1),
        status: r.get(2),
        lease_expired: r.get::<_, Option<bool>>(3).unwrap_or(false),
        result: r.get(4),
    }))
}

/// Keeps the leases of this owner's running ticks (so a replay can tell a live tick from a
/// crashed one), all in one statement.
pub async fn extend_tick_leases(store: &Store, ids: &[i64], owner: &str, lease_secs: f64) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let client = store.client().await?;
    client
        .execute(
            "UPDATE orchestrator_ticks SET lease_expires_at = now() + make_interval(secs => $3)
              WHERE id = ANY($1) AND owner = $2 AND status = 'running'",
            &[&ids, &owner, &lease_secs],
        )
        .await
        .map_err(q("extending tick leases"))
}

/// Records a tick's end and result (fenced on its owner).
pub async fn finish_tick(store: &Store, id: i64, owner: &str, status: &str, result: &Value) -> StoreResult<bool> {
    let client = store.client().await?;
    let n = client
        .execute(
            "UPDATE orchestrator_ticks SET status = $3, result = $4, finished_at = now(), lease_expires_at = NULL
              WHERE id = $1 AND owner = $2 AND status = 'running'",
            &[&id, &owner, &status, &result],
        )
        .await
        .map_err(q("recording the tick result"))?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(last_run: Option<DateTime<Utc>>, freq: i32) -> ScanRow {
        let now = Utc.with_ymd_and_hms(2025, 1, 10, 12, 0, 0).unwrap();
        ScanRow {
            config_id: 1,
            name: "a".into(),
            kind: "sheet_to_bigquery".into(),
            is_active: true,
            run_frequency_hours: freq,
            last_run,
            now,
            due_at: last_run.map(|l| l + chrono::Duration::hours(freq as i64)),
            period_start: now,
            next_period_at: now + chrono::Duration::hours(freq as i64),
            in_flight: None,
            period_run: None,
        }
    }

    #[test]
    fn configs_source_names_are_validated_and_quoted() {
        assert_eq!(ConfigsSource::parse("active_job_configs").unwrap().sql(), "\"active_job_configs\"");
        assert_eq!(ConfigsSource::parse("etl.cfg_v2").unwrap().sql(), "\"etl\".\"cfg_v2\"");
        for bad in ["", "a;drop table x", "a.b.c", "1abc", "a b", "\"x\""] {
            assert!(ConfigsSource::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn classify_covers_every_state() {
        let p = AttemptPolicy::default();
        let r = row(None, 24);
        assert_eq!(classify(&r, &p), DueState::Due { why: DueWhy::NeverRun, attempt: 1, retry_of: None });

        let r = row(Some(r.now - chrono::Duration::hours(26)), 24);
        assert_eq!(
            classify(&r, &p),
            DueState::Due { why: DueWhy::Overdue { by_secs: 7200 }, attempt: 1, retry_of: None }
        );

        let mut inactive = r.clone();
        inactive.is_active = false;
        assert_eq!(classify(&inactive, &p), DueState::Inactive);

        let fresh = row(Some(r.now - chrono::Duration::hours(1)), 24);
        assert!(matches!(classify(&fresh, &p), DueState::NotYetDue { .. }));

        let mut busy = r.clone();
        busy.in_flight = Some(RunBrief { id: 9, status: "running".into(), attempt: 1, lease_owner: None });
        assert!(matches!(classify(&busy, &p), DueState::InFlight { .. }));

        let mut failed = r.clone();
        failed.period_run = Some(PeriodRun {
            id: 4,
            status: "failed".into(),
            attempt: 1,
            retry_at: Some(r.now + chrono::Duration::seconds(30)),
        });
        assert!(matches!(classify(&failed, &p), DueState::RetryWait { run_id: 4, next_attempt: 2, .. }));
        failed.period_run.as_mut().unwrap().retry_at = Some(r.now - chrono::Duration::seconds(1));
        assert_eq!(
            classify(&failed, &p),
            DueState::Due { why: DueWhy::Overdue { by_secs: 7200 }, attempt: 2, retry_of: Some(4) }
        );
        failed.period_run.as_mut().unwrap().attempt = 3;
        assert!(matches!(classify(&failed, &p), DueState::Exhausted { run_id: 4, attempts: 3, .. }));

        let mut done = r.clone();
        done.period_run = Some(PeriodRun { id: 5, status: "succeeded".into(), attempt: 1, retry_at: None });
        assert!(matches!(classify(&done, &p), DueState::DoneThisPeriod { run_id: 5, .. }));
    }
}
