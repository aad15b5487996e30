//! Where a claimed run executes, behind one trait: [`local`] spawns the `job` binary,
//! [`cloud_run`] starts a Cloud Run Job execution. An executor starts the run, reports when it
//! started, waits for a terminal state and says what happened; the tick records it (fenced) unless
//! the job already recorded its own outcome.

pub mod cloud_run;
pub mod local;

use std::time::Instant;

use serde_json::Value;
use sheettobigquery::store::claims;
use sheettobigquery::store::runs::{RunRef, RunStatus};
use sheettobigquery::store::Store;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use std::sync::Arc;

/// One claimed run to execute.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub run: RunRef,
    pub config_id: i64,
    pub config_name: String,
    /// The lease the job's heartbeat keeps (JOB_LEASE_SECONDS).
    pub lease_secs: u64,
}

/// A terminal state seen by the executor.
#[derive(Debug, Clone)]
pub struct Finish {
    pub status: RunStatus,
    pub error_kind: Option<String>,
    pub message: Option<String>,
    /// Recorded in `job_runs.details.orchestrator`.
    pub details: Value,
}

impl Finish {
    pub fn succeeded(details: Value) -> Finish {
        Finish { status: RunStatus::Succeeded, error_kind: None, message: None, details }
    }
    pub fn failed(kind: &str, message: impl Into<String>, details: Value) -> Finish {
        Finish { status: RunStatus::Failed, error_kind: Some(kind.into()), message: Some(message.into()), details }
    }
}

/// How an execution ended, as far as the orchestrator knows.
#[derive(Debug, Clone)]
pub enum ExecOutcome {
    /// It reached a terminal state.
    Finished(Finish),
    /// The orchestrator stopped watching (shutdown, or the lease was taken over); the execution
    /// goes on and records its own outcome, or its lease expires.
    Detached { reason: String },
}

/// What an executor may use while a run executes.
pub struct RunControl {
    pub(crate) store: Store,
    pub(crate) run: RunRef,
    pub(crate) config_name: String,
    pub(crate) executor: &'static str,
    pub(crate) claimed_at: Instant,
    pub(crate) metrics: Arc<Metrics>,
    /// The shutdown grace period is over: stop the execution now.
    pub force_stop: CancellationToken,
    /// The run's lease was lost (swept, or a newer attempt exists): stop and let go.
    pub lease_lost: CancellationToken,
}

impl RunControl {
    /// The execution exists: record where it runs, count the dispatch latency, log `dispatched`.
    pub async fn started(&self, execution_name: &str) {
        let latency = self.claimed_at.elapsed();
        self.metrics.dispatched(latency);
        tracing::info!(
            decision = "dispatched",
            config = %self.config_name,
            run_id = self.run.id,
            attempt = self.run.attempt,
            executor = self.executor,
            execution = execution_name,
            dispatch_ms = latency.as_millis() as u64,
            "dispatched"
        );
        if let Err(e) = claims::set_execution(&self.store, self.run, self.executor, execution_name).await {
            tracing::warn!(run_id = self.run.id, error = %e.db_message(), "cannot record the execution name");
        }
    }
}

/// Runs one claimed run to a terminal state (or until told to stop watching).
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// `local` or `cloud-run` (recorded in `job_runs.executor`).
    fn name(&self) -> &'static str;
    async fn execute(&self, d: &Dispatch, ctl: &RunControl) -> ExecOutcome;
}
