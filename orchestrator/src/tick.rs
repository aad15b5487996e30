//! One tick of the orchestrator: sweep expired leases, find what is due, claim it in batches as
//! capacity frees up, dispatch each run under the parallelism cap, wait for the outcomes, record
//! them (fenced), retry failures with exponential backoff and jitter, and report.
//!
//! Every decision is one structured log line with `decision` (`due`, `claimed`, `skipped`,
//! `dispatched`, `finished`, `retry_scheduled`, `retried`, `exhausted`, `abandoned`), the config
//! and the run id.
//!
//! **Invariant:** never more than `max_parallel_jobs` executions in flight per process: each
//! execution holds a semaphore permit from before it is claimed until after it is recorded, and a
//! tick claims only as many runs as it holds permits.
//! **Invariant:** the orchestrator holds the lease of every run it claimed until the run is
//! recorded; a run nobody renews is swept to `abandoned` and claimed again by a later tick.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sheettobigquery::google::retry::RetryPolicy;
use sheettobigquery::store::claims::{
    self, classify, AttemptPolicy, ClaimRequest, ClaimedRun, DueState, DueWhy, ScanParams, TickBegin,
};
use sheettobigquery::store::runs::{self, Outcome, RunRef, RunStatus};
use sheettobigquery::store::{Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::executor::{Dispatch, ExecOutcome, Executor, RunControl};
use crate::metrics::Metrics;
use crate::settings::Settings;

/// What started a tick (`job_runs.trigger`, `orchestrator_ticks.trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Cloud Scheduler (POST /run with X-CloudScheduler headers).
    Scheduler,
    /// A person (`orchestrator run --trigger manual`, POST /run without scheduler headers).
    Manual,
    /// cron or a Cloud Run Job running `orchestrator run`.
    Cron,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduler => "scheduler",
            Trigger::Manual => "manual",
            Trigger::Cron => "cron",
        }
    }
}

/// What a tick is for.
#[derive(Debug, Clone)]
pub struct TickRequest {
    pub trigger: Trigger,
    /// `X-CloudScheduler-JobName`.
    pub scheduler_job: Option<String>,
    /// `X-CloudScheduler-ScheduleTime`: a replay of the same value starts nothing new.
    pub schedule_time: Option<DateTime<Utc>>,
}

/// One attempt's result as the tick saw it (the ledger row after the attempt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: i64,
    pub config_id: i64,
    pub config: String,
    pub attempt: i32,
    /// The row's status after this attempt (`superseded` when a newer attempt replaced it).
    pub status: String,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    /// Set when another attempt was scheduled.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// What a tick did; stored in `orchestrator_ticks.result` and returned to Cloud Scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickReport {
    pub tick_id: i64,
    pub trigger: String,
    pub schedule_time: Option<DateTime<Utc>>,
    pub owner: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Configs due at the start of the tick.
    pub due: usize,
    /// Runs claimed (first attempts and retries).
    pub claimed: usize,
    /// Runs of others whose lease had expired, marked abandoned by this tick's sweep.
    pub swept: usize,
    /// Final status of each run this tick touched → count.
    pub statuses: std::collections::BTreeMap<String, usize>,
    /// Every attempt, in order.
    pub runs: Vec<RunReport>,
    /// Stopped early by SIGTERM/SIGINT.
    pub interrupted: bool,
    /// The tick itself failed (e.g. the database went away).
    pub error: Option<String>,
}

impl TickReport {
    /// The last report of each run.
    pub fn final_runs(&self) -> Vec<&RunReport> {
        let mut last: Vec<&RunReport> = Vec::new();
        for r in &self.runs {
            match last.iter_mut().find(|x| x.run_id == r.run_id) {
                Some(x) => *x = r,
                None => last.push(r),
            }
        }
        last
    }

    /// Runs whose final status is not `succeeded`.
    pub fn failed_runs(&self) -> usize {
        self.final_runs().iter().filter(|r| r.status != "succeeded" && r.status != "superseded").count()
    }

    /// `orchestrator run`'s exit code: 0 all dispatched runs succeeded (or nothing was due),
    /// 1 the tick failed, 3 at least one run failed, 130 interrupted.
    pub fn exit_code(&self) -> u8 {
        if self.error.is_some() {
            1
        } else if self.interrupted {
            130
        } else if self.failed_runs() > 0 {
            3
        } else {
            0
        }
    }

    /// `completed`, `failed` or `interrupted` (the tick row's status).
    pub fn tick_status(&self) -> &'static str {
        if self.error.is_some() {
            "failed"
        } else if self.interrupted {
            "interrupted"
        } else {
            "completed"
        }
    }
}

/// Runs and ticks whose leases this process renews.
#[derive(Default)]
struct Leases {
    runs: Mutex<HashMap<i64, (i32, CancellationToken)>>,
    ticks: Mutex<HashSet<i64>>,
}

impl Leases {
    fn hold(&self, run: RunRef) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut g) = self.runs.lock() {
            g.insert(run.id, (run.attempt, token.clone()));
        }
        token
    }
    fn release(&self, run_id: i64) {
        if let Ok(mut g) = self.runs.lock() {
            g.remove(&run_id);
        }
    }
    fn snapshot(&self) -> Vec<RunRef> {
        self.runs
            .lock()
            .map(|g| g.iter().map(|(id, (a, _))| RunRef { id: *id, attempt: *a }).collect())
            .unwrap_or_default()
    }
    fn lost(&self, run_id: i64) {
        if let Ok(g) = self.runs.lock() {
            if let Some((_, t)) = g.get(&run_id) {
                t.cancel();
            }
        }
    }
}

/// The orchestrator of one process: its store, settings, executor, cap and leases.
pub struct Orchestrator {
    store: Store,
    settings: Settings,
    executor: Arc<dyn Executor>,
    permits: Arc<Semaphore>,
    owner: String,
    metrics: Arc<Metrics>,
    leases: Arc<Leases>,
    stop_claiming: CancellationToken,
    force_stop: CancellationToken,
    closed: CancellationToken,
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// This machine's name for owners and execution names.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()).filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

impl Orchestrator {
    /// Builds the orchestrator and starts its lease heartbeat (stopped when it is dropped).
    pub fn new(
        store: Store,
        settings: Settings,
        executor: Arc<dyn Executor>,
        metrics: Arc<Metrics>,
    ) -> Arc<Orchestrator> {
        let owner = format!("orchestrator@{}:{}:{:04x}", hostname(), std::process::id(), fastrand::u16(..));
        metrics.set_max_parallel(settings.max_parallel_jobs);
        let o = Arc::new(Orchestrator {
            permits: Arc::new(Semaphore::new(settings.max_parallel_jobs)),
            store,
            settings,
            executor,
            owner,
            metrics,
            leases: Arc::new(Leases::default()),
            stop_claiming: CancellationToken::new(),
            force_stop: CancellationToken::new(),
            closed: CancellationToken::new(),
        });
        tokio::spawn(heartbeat_loop(
            o.store.clone(),
            o.leases.clone(),
            o.owner.clone(),
            o.settings.lease,
            o.closed.clone(),
        ));
        o
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// SIGTERM: claim nothing more; running executions go on.
    pub fn stop_claiming(&self) {
        self.stop_claiming.cancel();
    }

    /// The grace period is over: stop local executions (they are recorded `cancelled`) and
    /// stop watching Cloud Run executions.
    pub fn force_stop(&self) {
        self.stop_claiming.cancel();
        self.force_stop.cancel();
    }

    /// SIGTERM arrived: nothing more is claimed (and `serve` starts no more ticks).
    pub fn is_stopping(&self) -> bool {
        self.stop_claiming.is_cancelled()
    }

    /// Resolves when the orchestrator starts stopping.
    pub async fn stopping(&self) {
        self.stop_claiming.cancelled().await
    }

    /// Records the start of a tick, or finds the original tick of a replayed scheduler request.
    pub async fn begin_tick(&self, req: &TickRequest) -> Result<TickBegin, StoreError> {
        let begin = claims::begin_tick(
            &self.store,
            req.trigger.as_str(),
            req.scheduler_job.as_deref(),
            req.schedule_time,
            &self.owner,
            self.settings.lease.as_secs_f64(),
        )
        .await?;
        if let TickBegin::Started(id) = &begin {
            if let Ok(mut g) = self.leases.ticks.lock() {
                g.insert(*id);
            }
        }
        Ok(begin)
    }

    /// Runs a begun tick to the end and records its result.
    pub async fn run_tick(self: &Arc<Self>, tick_id: i64, req: &TickRequest) -> TickReport {
        let started_at = Utc::now();
        let t0 = Instant::now();
        let mut report = TickReport {
            tick_id,
            trigger: req.trigger.as_str().into(),
            schedule_time: req.schedule_time,
            owner: self.owner.clone(),
            started_at,
            finished_at: started_at,
            duration_ms: 0,
            due: 0,
            claimed: 0,
            swept: 0,
            statuses: Default::default(),
            runs: Vec::new(),
            interrupted: false,
            error: None,
        };
        let span = tracing::info_span!("tick", tick_id, trigger = req.trigger.as_str());
        if let Err(e) = self.tick_inner(tick_id, req, &mut report).instrument(span).await {
            tracing::error!(tick_id, error = %e.db_message(), "tick failed");
            report.error = Some(e.db_message());
        }
        report.finished_at = Utc::now();
        report.duration_ms = t0.elapsed().as_millis() as u64;
        let finals: Vec<String> = report.final_runs().iter().map(|r| r.status.clone()).collect();
        for s in finals {
            *report.statuses.entry(s).or_insert(0) += 1;
        }
        let status = report.tick_status();
        let value = serde_json::to_value(&report).unwrap_or_else(|_| json!({}));
        if let Err(e) = claims::finish_tick(&self.store, tick_id, &self.owner, status, &value).await {
            tracing::error!(tick_id, error = %e.db_message(), "cannot record the tick result");
        }
        if let Ok(mut g) = self.leases.ticks.lock() {
            g.remove(&tick_id);
        }
        self.metrics.tick_finished(status);
        tracing::info!(
            tick_id,
            status,
            due = report.due,
            claimed = report.claimed,
            swept = report.swept,
            failed = report.failed_runs(),
            statuses = %serde_json::to_string(&report.statuses).unwrap_or_default(),
            duration_ms = report.duration_ms,
            "tick finished"
        );
        report
    }

    fn claim_request(&self, limit: i64, only_config: Option<i64>, tick_id: i64, req: &TickRequest) -> ClaimRequest<'_> {
        ClaimRequest {
            source: &self.settings.configs,
            policy: self.settings.retry,
            limit,
            only_config,
            owner: &self.owner,
            lease_secs: self.settings.lease.as_secs_f64(),
            executor: self.executor.name(),
            trigger: req.trigger.as_str(),
            schedule_time: req.schedule_time,
            tick_id: Some(tick_id),
        }
    }

    async fn tick_inner(
        self: &Arc<Self>,
        tick_id: i64,
        req: &TickRequest,
        report: &mut TickReport,
    ) -> Result<(), StoreError> {
        // 1. Sweep: runs whose lease expired (their orchestrator or job died) become abandoned.
        let swept = claims::sweep_expired(&self.store).await?;
        for s in &swept {
            tracing::warn!(
                decision = "abandoned",
                config = %s.config_name,
                config_id = s.config_id,
                run_id = s.run.id,
                attempt = s.run.attempt,
                was = %s.was,
                lease_owner = s.lease_owner.as_deref().unwrap_or(""),
                "lease expired; run abandoned"
            );
        }
        self.metrics.swept(swept.len());
        report.swept = swept.len();

        // 2. What is due, and why (a log line per config).
        let policy = self.settings.retry;
        let rows = claims::scan(
            &self.store,
            &ScanParams { source: &self.settings.configs, now: None, include_all: false, policy },
        )
        .await?;
        let mut max_lag = 0i64;
        for r in &rows {
            match classify(r, &policy) {
                DueState::Due { why, attempt, retry_of } => {
                    report.due += 1;
                    let (reason, lag) = match why {
                        DueWhy::NeverRun => ("never run", 0),
                        DueWhy::Overdue { by_secs } => ("overdue", by_secs),
                    };
                    max_lag = max_lag.max(lag);
                    tracing::info!(decision = "due", config = %r.name, config_id = r.config_id, reason, overdue_secs = lag,
                        attempt, retry_of, "due");
                }
                DueState::InFlight { run } => {
                    tracing::info!(decision = "skipped", reason = "in_flight", config = %r.name,
                    config_id = r.config_id, run_id = run.id, attempt = run.attempt, status = %run.status,
                    lease_owner = run.lease_owner.as_deref().unwrap_or(""), "skipped: a run is in flight")
                }
                DueState::RetryWait { run_id, next_attempt, at } => {
                    tracing::info!(decision = "skipped", reason = "retry_backoff",
                    config = %r.name, config_id = r.config_id, run_id, next_attempt, retry_at = %at, "skipped: waiting for the retry backoff")
                }
                DueState::Exhausted { run_id, attempts, next_period_at } => {
                    tracing::warn!(decision = "skipped", reason = "attempts_exhausted",
                    config = %r.name, config_id = r.config_id, run_id, attempts, next_period_at = %next_period_at,
                    "skipped: every attempt of this period failed")
                }
                DueState::DoneThisPeriod { run_id, status, .. } => {
                    tracing::info!(decision = "skipped", reason = "done_this_period",
                    config = %r.name, config_id = r.config_id, run_id, status = %status, "skipped: this period already has a run")
                }
                DueState::NotYetDue { .. } | DueState::Inactive => {}
            }
        }
        self.metrics.set_due(report.due, Duration::from_secs(max_lag.max(0) as u64));

        // 3. Claim as capacity frees up: wait for one free permit, take whatever else is free
        //    right now (up to the cap), claim exactly as many runs as permits held, and dispatch
        //    each with its permit. Nothing claimed ever waits for a permit.
        let cap = self.settings.max_parallel_jobs;
        let mut tasks: JoinSet<Vec<RunReport>> = JoinSet::new();
        let mut claim_error = None;
        loop {
            let first = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = self.stop_claiming.cancelled() => break,
            };
            let mut permits = vec![first];
            while permits.len() < cap {
                match self.permits.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            if self.stop_claiming.is_cancelled() {
                break;
            }
            let held = permits.len();
            let out = match claims::claim(&self.store, &self.claim_request(held as i64, None, tick_id, req)).await {
                Ok(o) => o,
                Err(e) => {
                    claim_error = Some(e);
                    break;
                }
            };
            log_skipped(&out.skipped);
            let claimed = out.claimed.len();
            self.metrics.claimed(claimed);
            report.claimed += claimed;
            // Permits beyond the runs claimed are given back when `permits` drops.
            for (c, permit) in out.claimed.into_iter().zip(permits) {
                log_claimed(&c);
                let lost = self.leases.hold(c.run);
                let this = self.clone();
                let req = req.clone();
                tasks.spawn(async move { this.run_claimed(c, Instant::now(), permit, lost, tick_id, req).await });
            }
            if claimed < held {
                break;
            }
        }
        // 4. Wait for every run (and its in-tick retries).
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(runs) => report.runs.extend(runs),
                Err(e) => tracing::error!(error = %e, "a run task panicked"),
            }
        }
        report.interrupted = self.stop_claiming.is_cancelled();
        match claim_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Executes one claimed run, records it, and retries it in-process while the backoff is
    /// short enough.
    async fn run_claimed(
        self: Arc<Self>,
        mut c: ClaimedRun,
        mut claimed_at: Instant,
        permit: OwnedSemaphorePermit,
        mut lost: CancellationToken,
        tick_id: i64,
        req: TickRequest,
    ) -> Vec<RunReport> {
        let mut reports = Vec::new();
        let mut permit = Some(permit);
        loop {
            let span = tracing::info_span!("run", config = %c.config_name, config_id = c.config_id, run_id = c.run.id, attempt = c.run.attempt);
            let dispatch = Dispatch {
                run: c.run,
                config_id: c.config_id,
                config_name: c.config_name.clone(),
                lease_secs: self.settings.lease.as_secs().max(1),
            };
            let ctl = RunControl {
                store: self.store.clone(),
                run: c.run,
                config_name: c.config_name.clone(),
                executor: self.executor.name(),
                claimed_at,
                metrics: self.metrics.clone(),
                force_stop: self.force_stop.clone(),
                lease_lost: lost.clone(),
            };
            let dispatched_at = Utc::now();
            self.metrics.inflight_add(1);
            let out = self.executor.execute(&dispatch, &ctl).instrument(span.clone()).await;
            let mut rep = self.record(&c, out, dispatched_at).instrument(span.clone()).await;
            self.leases.release(c.run.id);
            self.metrics.run_finished(&rep.status);
            if rep.status == "succeeded" {
                tracing::info!(parent: &span, decision = "finished", status = %rep.status, "finished");
            } else {
                tracing::warn!(parent: &span, decision = "finished", status = %rep.status, error_kind = rep.error_kind.as_deref().unwrap_or(""),
                    error = rep.error.as_deref().unwrap_or(""), "finished");
            }
            // A run is in flight until it is recorded: only now may another one start.
            self.metrics.inflight_add(-1);
            drop(permit.take());

            let retryable = claims::RETRYABLE.contains(&rep.status.as_str());
            if !retryable {
                reports.push(rep);
                return reports;
            }
            if c.run.attempt >= self.settings.retry.max_attempts {
                tracing::warn!(parent: &span, decision = "exhausted", attempts = c.run.attempt,
                    "every attempt of this period failed; the config waits for its next period");
                reports.push(rep);
                return reports;
            }
            // Abandoned runs (and runs stopped by a shutdown) were not the job's fault: no backoff.
            let no_backoff =
                rep.status == "abandoned" || (rep.status == "cancelled" && self.stop_claiming.is_cancelled());
            let delay = if no_backoff { Duration::ZERO } else { backoff(&self.settings.retry, c.run.attempt) };
            match claims::schedule_retry(&self.store, c.run, delay.as_secs_f64()).await {
                Ok(Some(at)) => {
                    rep.next_attempt_at = Some(at);
                    tracing::info!(parent: &span, decision = "retry_scheduled", next_attempt = c.run.attempt + 1,
                        retry_in_ms = delay.as_millis() as u64, retry_at = %at, "retry scheduled");
                }
                Ok(None) => {
                    reports.push(rep);
                    return reports;
                }
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e.db_message(), "cannot schedule the retry; a later tick retries it");
                    reports.push(rep);
                    return reports;
                }
            }
            reports.push(rep);
            if self.stop_claiming.is_cancelled() || delay > self.settings.retry_wait_max {
                return reports;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop_claiming.cancelled() => return reports,
            }
            let p = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return reports },
                _ = self.stop_claiming.cancelled() => return reports,
            };
            let out = match claims::claim(&self.store, &self.claim_request(1, Some(c.config_id), tick_id, &req)).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e.db_message(), "cannot claim the retry; a later tick retries it");
                    return reports;
                }
            };
            log_skipped(&out.skipped);
            let Some(next) = out.claimed.into_iter().next() else {
                tracing::info!(parent: &span, decision = "skipped", reason = "retried_elsewhere",
                    "the retry was claimed elsewhere (or the config is no longer due)");
                return reports;
            };
            self.metrics.claimed(1);
            self.metrics.retried();
            tracing::info!(decision = "retried", config = %next.config_name, config_id = next.config_id, run_id = next.run.id,
                attempt = next.run.attempt, period_start = %next.period_start, "retry claimed");
            lost = self.leases.hold(next.run);
            c = next;
            claimed_at = Instant::now();
            permit = Some(p);
        }
    }

    /// Records what the executor saw (unless the job recorded its own outcome), then reads the
    /// ledger row back: the job's own record is the more precise one.
    async fn record(&self, c: &ClaimedRun, out: ExecOutcome, dispatched_at: DateTime<Utc>) -> RunReport {
        let mut fallback: (String, Option<String>, Option<String>) = ("unknown".into(), None, None);
        match out {
            ExecOutcome::Finished(f) => {
                fallback = (f.status.as_str().into(), f.error_kind.clone(), f.message.clone());
                // A timeout wins over the `cancelled` the job writes when it gets SIGTERM.
                let overriding: &[RunStatus] =
                    if f.status == RunStatus::TimedOut { &[RunStatus::Cancelled] } else { &[] };
                let outcome = Outcome {
                    status: f.status,
                    rows_read: None,
                    rows_written: None,
                    error_kind: f.error_kind,
                    error_message: f.message,
                    details: json!({"orchestrator": f.details}),
                };
                match claims::record_outcome(&self.store, c.run, &outcome, overriding, dispatched_at).await {
                    Ok(true) => tracing::debug!("outcome recorded by the orchestrator"),
                    Ok(false) => tracing::debug!("the job recorded its own outcome"),
                    Err(e) => tracing::error!(error = %e.db_message(), "cannot record the run outcome"),
                }
            }
            ExecOutcome::Detached { reason } => {
                tracing::warn!(decision = "detached", reason = %reason, "stopped watching the run");
            }
        }
        match runs::get(&self.store, c.run.id).await {
            Ok(Some(st)) => RunReport {
                run_id: c.run.id,
                config_id: c.config_id,
                config: c.config_name.clone(),
                attempt: c.run.attempt,
                status: if st.attempt == c.run.attempt { st.status } else { "superseded".into() },
                error_kind: st.error_kind,
                error: st.error_message,
                next_attempt_at: None,
            },
            _ => RunReport {
                run_id: c.run.id,
                config_id: c.config_id,
                config: c.config_name.clone(),
                attempt: c.run.attempt,
                status: fallback.0,
                error_kind: fallback.1,
                error: fallback.2,
                next_attempt_at: None,
            },
        }
    }
}

/// The backoff after `attempt` failed: `min(max, base × 2^(attempt−1))` with equal jitter (half of
/// it, plus up to the other half at random), the same schedule as the Google API retries.
fn backoff(policy: &AttemptPolicy, attempt: i32) -> Duration {
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or_default();
    RetryPolicy {
        initial_delay: secs(policy.base_delay_secs),
        max_delay: secs(policy.max_delay_secs),
        ..RetryPolicy::default()
    }
    .delay(attempt.max(1) as u32)
}

fn log_claimed(c: &ClaimedRun) {
    tracing::info!(
        decision = "claimed",
        config = %c.config_name,
        config_id = c.config_id,
        run_id = c.run.id,
        attempt = c.run.attempt,
        period_start = %c.period_start,
        retry = c.run.attempt > 1,
        "claimed"
    );
}

fn log_skipped(skipped: &[claims::Skipped]) {
    for s in skipped {
        let msg = if s.reason == "locked" {
            "skipped: locked by another orchestrator"
        } else {
            "skipped: another orchestrator claimed it first"
        };
        tracing::info!(decision = "skipped", reason = s.reason, config = %s.config_name, config_id = s.config_id, "{msg}");
    }
}

/// Renews the leases of the runs and ticks this process holds, every third of the lease. A run
/// found abandoned or superseded is told its lease is lost.
async fn heartbeat_loop(store: Store, leases: Arc<Leases>, owner: String, lease: Duration, closed: CancellationToken) {
    let every = (lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closed.cancelled() => return,
        }
        let runs = leases.snapshot();
        match claims::extend_leases(&store, &runs, lease.as_secs_f64()).await {
            Ok(renewals) => {
                for r in renewals.iter().filter(|r| !r.held) {
                    // Finished by the job itself (it is about to exit), or taken away?
                    match &r.now {
                        Some((attempt, status)) if *attempt == r.run.attempt && status != "abandoned" => {}
                        now => {
                            tracing::warn!(run_id = r.run.id, attempt = r.run.attempt, now = ?now,
                                "lost the run's lease (swept or superseded)");
                            leases.lost(r.run.id);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e.db_message(), "cannot renew run leases; will retry"),
        }
        let ticks: Vec<i64> = leases.ticks.lock().map(|g| g.iter().copied().collect()).unwrap_or_default();
        if let Err(e) = claims::extend_tick_leases(&store, &ticks, &owner, lease.as_secs_f64()).await {
            tracing::warn!(ticks = ?ticks, error = %e.db_message(), "cannot renew the tick leases");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(run_id: i64, attempt: i32, status: &str) -> RunReport {
        RunReport {
            run_id,
            config_id: 1,
            config: "c".into(),
            attempt,
            status: status.into(),
            error_kind: None,
            error: None,
            next_attempt_at: None,
        }
    }

    fn tick(runs: Vec<RunReport>) -> TickReport {
        let t = Utc::now();
        TickReport {
            tick_id: 1,
            trigger: "cron".into(),
            schedule_time: None,
            owner: "o".into(),
            started_at: t,
            finished_at: t,
            duration_ms: 0,
            due: 0,
            claimed: 0,
            swept: 0,
            statuses: Default::default(),
            runs,
            interrupted: false,
            error: None,
        }
    }

    #[test]
    fn exit_code_follows_the_final_attempt_of_each_run() {
        assert_eq!(tick(vec![]).exit_code(), 0);
        assert_eq!(tick(vec![rep(1, 1, "failed"), rep(1, 2, "succeeded")]).exit_code(), 0);
        assert_eq!(tick(vec![rep(1, 1, "succeeded"), rep(2, 1, "timed_out")]).exit_code(), 3);
        let mut t = tick(vec![]);
        t.interrupted = true;
        assert_eq!(t.exit_code(), 130);
        t.error = Some("db down".into());
        assert_eq!(t.exit_code(), 1);
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_equal_jitter() {
        let p = AttemptPolicy { max_attempts: 5, base_delay_secs: 30.0, max_delay_secs: 100.0 };
        for _ in 0..100 {
            for (attempt, full) in [(1, 30), (2, 60), (3, 100), (40, 100)] {
                let d = backoff(&p, attempt);
                let full = Duration::from_secs(full);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert_eq!(backoff(&AttemptPolicy { base_delay_secs: 0.0, ..p }, 2), Duration::ZERO);
    }
}
