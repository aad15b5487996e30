//! Job kinds: the units of work a config can describe, one module each behind one small trait.
//! The runner owns config resolution, the ledger, signals and logging; a kind only does its work.

pub mod postgres_upsert;
pub mod sheet_to_bigquery;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::{JobConfig, Kind, KindSettings};
use crate::error::{JobError, JobResult};
use crate::google::Services;

/// What a finished unit reports.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub rows_read: u64,
    pub rows_written: u64,
    /// A short human line (`jobctl execute` prints it).
    pub summary: String,
    /// Structured facts for the final log line and `job_runs.details`.
    pub details: Value,
}

/// Switches given on the command line that change what a unit may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Pre-flight only: check connections, targets and permissions; write nothing.
    pub test_only: bool,
    /// Skip the pre-write backup (refused in production by the kinds that back up).
    pub skip_backup: bool,
}

/// Reports progress (rows processed, total if known); the runner records it in `job_runs`
/// at most once a second.
pub type ProgressFn = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

/// Everything a unit needs from outside.
#[derive(Clone)]
pub struct RunContext {
    pub services: Services,
    pub options: RunOptions,
    pub progress: ProgressFn,
    /// The ledger row of this run, when there is one (kinds that record per-row results use it).
    pub run: Option<crate::store::runs::RunRef>,
    pub store: Option<crate::store::Store>,
    /// Stable for this run attempt: `r{run}a{attempt}`, or random for ad-hoc runs.
    pub run_key: String,
    /// Where an interrupted unit leaves the id of a server-side job to cancel.
    pub inflight_job: Arc<std::sync::Mutex<Option<InflightJob>>>,
}

/// A server-side job the unit started and that an interruption should cancel, with the client
/// that started it.
#[derive(Clone)]
pub struct InflightJob {
    pub client: crate::google::bigquery::BigQueryClient,
    pub project: String,
    pub job_id: String,
    pub location: Option<String>,
}

/// One unit of work.
#[async_trait]
pub trait Unit: Send + Sync {
    async fn run(&self, ctx: &RunContext) -> JobResult<Report>;
}

/// The unit for a config, or a config error when its kind is not available in this build.
pub fn unit_for(config: &JobConfig) -> JobResult<Box<dyn Unit>> {
    match (&config.settings, config.kind) {
        (KindSettings::SheetToBigQuery(s), Kind::SheetToBigquery) => {
            Ok(Box::new(sheet_to_bigquery::SheetToBigQueryUnit::new(&config.name, (**s).clone())))
        }
        (KindSettings::Other(spec), Kind::PostgresUpsert) => {
            Ok(Box::new(postgres_upsert::PostgresUpsertUnit::new(&config.name, spec)?))
        }
        (_, kind) => Err(JobError::config(format!(
            "kind: {kind} is not supported by this version of the job (supported: sheet_to_bigquery, postgres_upsert)"
        ))),
    }
}
