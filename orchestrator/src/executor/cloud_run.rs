//! The Cloud Run executor: one Cloud Run Job execution per run through the Admin API v2.
//!
//! - `POST {base}/v2/projects/{p}/locations/{r}/jobs/{job}:run` with
//!   `overrides.containerOverrides[].env` = JOB_CONFIG_ID, JOB_RUN_ID, JOB_RUN_ATTEMPT,
//!   JOB_LEASE_SECONDS, and `taskCount: 1`. The answer is a long-running Operation whose
//!   `metadata` is the new Execution.
//! - 429 and 5xx are retried with exponential backoff and jitter (honouring `Retry-After`).
//! - If `jobs:run` times out, the request may still have created an execution: the executor lists
//!   the job's executions and re-attaches to the one whose overrides carry this run id and
//!   attempt before it would start another.
//! - `GET {base}/v2/{execution}` is polled (`conditions` type `Completed`, `succeededCount`,
//!   `failedCount`, `cancelledCount`, `completionTime`, `reconciling`) until terminal, for at most
//!   the job's task timeout × (max retries + 1) plus a minute; then the execution is cancelled
//!   and the run is `timed_out`.
//!
//! Authentication: Application Default Credentials (the orchestrator's service account needs
//! `run.jobs.runWithOverrides` and `run.executions.get/list/cancel`, e.g. roles/run.developer on
//! the job); none when the API URL is overridden (a local fake).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sheettobigquery::google::auth::Credentials;
use sheettobigquery::google::retry::{ApiError, RetryPolicy};
use sheettobigquery::store::runs::RunStatus;
use tokio::sync::OnceCell;

use super::{Dispatch, ExecOutcome, Executor, Finish, RunControl};
use crate::settings::{fmt_duration, CloudRunSettings};

pub const DEFAULT_API_URL: &str = "https://run.googleapis.com";
/// The API's name in errors and logs.
const API: &str = "run";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Cloud Run's defaults for a job's tasks.
const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_MAX_RETRIES: u32 = 3;
/// Tries of `jobs:run` before giving up on starting an execution.
const START_TRIES: u32 = 8;

/// A failed Admin API call: the API's own error (transient on 408/429/5xx and connection errors,
/// with any Retry-After), or a request that timed out and may still have been carried out — the
/// case `jobs:run` reconciles by looking for the execution before starting another.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudRunError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("Cloud Run API request timed out after {0}")]
    Timeout(String),
}

impl CloudRunError {
    fn retryable(&self) -> bool {
        matches!(self, CloudRunError::Api(e) if e.transient)
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudRunError::Api(e) => e.retry_after,
            CloudRunError::Timeout(_) => None,
        }
    }
}

/// What the executor needs from the job's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    pub task_timeout: Duration,
    pub max_retries: u32,
}

impl JobLimits {
    /// How long to watch an execution: every task attempt may run to its timeout.
    pub fn watch_timeout(&self) -> Duration {
        self.task_timeout * (self.max_retries + 1) + Duration::from_secs(60)
    }
}

/// The terminal state an Execution resource shows, if any.
pub fn execution_state(e: &Value) -> Option<Finish> {
    let completed = e["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Completed"))
        .cloned()
        .unwrap_or(Value::Null);
    let state = completed["state"].as_str().unwrap_or("");
    let count = |k: &str| e[k].as_i64().unwrap_or(0);
    let task_count = e["taskCount"].as_i64().unwrap_or(1).max(1);
    let name = e["name"].as_str().unwrap_or("");
    let details = json!({
        "execution": name,
        "succeeded_count": count("succeededCount"),
        "failed_count": count("failedCount"),
        "cancelled_count": count("cancelledCount"),
        "retried_count": count("retriedCount"),
        "log_uri": e["logUri"],
    });
    let message = completed["message"].as_str().filter(|m| !m.is_empty()).map(str::to_string);
    if state == "CONDITION_SUCCEEDED" || (count("succeededCount") >= task_count && e["completionTime"].is_string()) {
        return Some(Finish::succeeded(details));
    }
    let terminal = state == "CONDITION_FAILED" || e["completionTime"].is_string();
    if !terminal {
        return None;
    }
    if count("cancelledCount") > 0 {
        return Some(Finish {
            status: RunStatus::Cancelled,
            error_kind: Some("interrupted".into()),
            message: Some(message.unwrap_or_else(|| format!("execution {name} was cancelled"))),
            details,
        });
    }
    Some(Finish::failed(
        "execution",
        message.unwrap_or_else(|| format!("execution {name} failed ({} task(s) failed)", count("failedCount"))),
        details,
    ))
}

/// True when the execution's overrides carry this run id and attempt.
pub fn execution_carries(e: &Value, run_id: i64, attempt: i32) -> bool {
    let containers = e["template"]["containers"].as_array().cloned().unwrap_or_default();
    containers.iter().any(|c| {
        let env = c["env"].as_array().cloned().unwrap_or_default();
        let get = |n: &str| env.iter().find(|v| v["name"] == n).and_then(|v| v["value"].as_str().map(str::to_string));
        get("JOB_RUN_ID").as_deref() == Some(run_id.to_string().as_str())
            && get("JOB_RUN_ATTEMPT").map_or(attempt == 1, |a| a == attempt.to_string())
    })
}

fn auth_error(e: String) -> CloudRunError {
    ApiError::permanent(API, format!("cannot authenticate: {e}")).into()
}

pub struct CloudRunExecutor {
    http: reqwest::Client,
    base: String,
    job_path: String,
    container: Option<String>,
    poll_interval: Duration,
    request_timeout: Duration,
    creds: OnceCell<Credentials>,
    authenticate: bool,
    limits: OnceCell<JobLimits>,
}

impl CloudRunExecutor {
    pub fn new(s: &CloudRunSettings) -> Result<CloudRunExecutor, CloudRunError> {
        let (Some(project), Some(region), Some(job)) = (&s.project, &s.region, &s.job) else {
            return Err(ApiError::permanent(API, "the cloud-run executor needs a project, region and job").into());
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ApiError::permanent(API, format!("cannot build the HTTP client: {e}")))?;
        Ok(CloudRunExecutor {
            http,
            base: s.api_url.clone().unwrap_or_else(|| DEFAULT_API_URL.into()).trim_end_matches('/').to_string(),
            job_path: format!("projects/{project}/locations/{region}/jobs/{job}"),
            container: s.container.clone(),
            poll_interval: s.poll_interval,
            request_timeout: s.request_timeout,
            creds: OnceCell::new(),
            authenticate: s.api_url.is_none(),
            limits: OnceCell::new(),
        })
    }

    async fn token(&self) -> Result<Option<String>, CloudRunError> {
        if !self.authenticate {
            return Ok(None);
        }
        let creds = self
            .creds
            .get_or_try_init(|| async { Credentials::application_default().await.map_err(auth_error) })
            .await?;
        creds.token(&[SCOPE]).await.map_err(auth_error)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, CloudRunError> {
        let url = format!("{}/v2/{path}", self.base);
        let mut req = self.http.request(method, &url).timeout(self.request_timeout);
        if let Some(t) = self.token().await? {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                CloudRunError::Timeout(fmt_duration(self.request_timeout))
            } else {
                ApiError::transport(API, e.to_string()).into()
            }
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after =
            resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = resp.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(ApiError::from_body(API, status.as_u16(), &body)
                .with_retry_after(retry_after.as_deref())
                .into());
        }
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::permanent(API, format!("unexpected answer from {url}: {e}")).into())
    }

    /// The job's task timeout and retries, read once; Cloud Run's defaults while the job cannot be
    /// read (a failed read is tried again by the next run).
    async fn limits(&self) -> JobLimits {
        let read = self
            .limits
            .get_or_try_init(|| async {
                let job = self.call(reqwest::Method::GET, &self.job_path, None).await?;
                let t = &job["template"]["template"];
                let timeout = t["timeout"]
                    .as_str()
                    .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
                    .map(Duration::from_secs_f64)
                    .unwrap_or(DEFAULT_TASK_TIMEOUT);
                let retries = t["maxRetries"].as_u64().map(|r| r as u32).unwrap_or(DEFAULT_MAX_RETRIES);
                Ok::<_, CloudRunError>(JobLimits { task_timeout: timeout, max_retries: retries })
            })
            .await;
        match read {
            Ok(limits) => *limits,
            Err(e) => {
                tracing::warn!(job = %self.job_path, error = %e, "cannot read the Cloud Run job; assuming a 10m task timeout and 3 retries");
                JobLimits { task_timeout: DEFAULT_TASK_TIMEOUT, max_retries: DEFAULT_MAX_RETRIES }
            }
        }
    }

    fn run_body(&self, d: &Dispatch) -> Value {
        let env = json!([
            {"name": "JOB_CONFIG_ID", "value": d.config_id.to_string()},
            {"name": "JOB_RUN_ID", "value": d.run.id.to_string()},
            {"name": "JOB_RUN_ATTEMPT", "value": d.run.attempt.to_string()},
            {"name": "JOB_LEASE_SECONDS", "value": d.lease_secs.to_string()},
        ]);
        let mut co = json!({"env": env});
        if let Some(name) = &self.container {
            co["name"] = json!(name);
        }
        json!({"overrides": {"containerOverrides": [co], "taskCount": 1}})
    }

    /// The execution already started for this run attempt, if any (newest first).
    async fn find_execution(&self, d: &Dispatch) -> Result<Option<String>, CloudRunError> {
        let mut page: Option<String> = None;
        for _ in 0..5 {
            let mut path = format!("{}/executions?pageSize=100", self.job_path);
            if let Some(p) = &page {
                path.push_str(&format!("&pageToken={p}"));
            }
            let list = self.call(reqwest::Method::GET, &path, None).await?;
            for e in list["executions"].as_array().cloned().unwrap_or_default() {
                if execution_carries(&e, d.run.id, d.run.attempt) {
                    return Ok(e["name"].as_str().map(str::to_string));
                }
            }
            match list["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => page = Some(t.to_string()),
                None => break,
            }
        }
        Ok(None)
    }

    /// Starts the execution (or finds the one a timed-out request started). Returns its name, or
    /// None when a `jobs:run` timed out and the executions could not be listed: an execution may
    /// exist, so starting another could run the same attempt twice.
    async fn start(&self, d: &Dispatch, ctl: &RunControl) -> Result<Option<String>, CloudRunError> {
        let body = self.run_body(d);
        let path = format!("{}:run", self.job_path);
        let mut last = None;
        for attempt in 1..=START_TRIES {
            match self.call(reqwest::Method::POST, &path, Some(&body)).await {
                Ok(op) => {
                    let name = op["metadata"]["name"]
                        .as_str()
                        .or_else(|| op["response"]["name"].as_str())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            ApiError::permanent(API, format!("jobs:run returned no execution name: {op}"))
                        })?;
                    return Ok(Some(name));
                }
                Err(CloudRunError::Timeout(t)) => {
                    // The request may have gone through: look before starting a second one.
                    tracing::warn!(config = %d.config_name, run_id = d.run.id, attempt = d.run.attempt, timeout = %t,
                        "jobs:run timed out; looking for an execution carrying this run id before starting another");
                    let mut listed = false;
                    for look in 0..3 {
                        match self.find_execution(d).await {
                            Ok(Some(name)) => {
                                tracing::info!(decision = "reattached", config = %d.config_name, run_id = d.run.id,
                                    attempt = d.run.attempt, execution = %name, "re-attached to the execution the timed-out jobs:run started");
                                return Ok(Some(name));
                            }
                            Ok(None) => {
                                listed = true;
                                if look < 2 {
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                            Err(e) => tracing::warn!(run_id = d.run.id, error = %e, "cannot list executions"),
                        }
                    }
                    if !listed {
                        return Ok(None);
                    }
                    last = Some(CloudRunError::Timeout(t));
                }
                Err(e) if e.retryable() && attempt < START_TRIES => {
                    // Backoff as for every Google API call, and never sooner than Retry-After.
                    let backoff = RetryPolicy::default().delay(attempt);
                    let wait = e.retry_after().map_or(backoff, |after| after.max(backoff));
                    tracing::warn!(config = %d.config_name, run_id = d.run.id, error = %e, retry_in_ms = wait.as_millis() as u64,
                        "jobs:run refused; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = ctl.force_stop.cancelled() => return Err(e),
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ApiError::permanent(API, "jobs:run did not succeed").into()))
    }
}

#[async_trait::async_trait]
impl Executor for CloudRunExecutor {
    fn name(&self) -> &'static str {
        "cloud-run"
    }

    async fn execute(&self, d: &Dispatch, ctl: &RunControl) -> ExecOutcome {
        let limits = self.limits().await;
        let watch_until = Instant::now() + limits.watch_timeout();
        let name = match self.start(d, ctl).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                return ExecOutcome::Detached {
                    reason: format!(
                        "jobs:run of {} timed out and its executions could not be listed; not starting another: the run's lease expires and a later tick dispatches it again",
                        self.job_path
                    ),
                }
            }
            Err(e) => {
                return ExecOutcome::Finished(Finish::failed(
                    "execution",
                    format!("cannot start a Cloud Run execution of {}: {e}", self.job_path),
                    json!({}),
                ))
            }
        };
        ctl.started(&name).await;
        let mut transient = 0u32;
        loop {
            // Polls that failed back off: poll interval × 2^failures (jittered), at most a minute.
            let wait = if transient == 0 {
                self.poll_interval
            } else {
                RetryPolicy {
                    initial_delay: self.poll_interval * 2,
                    max_delay: Duration::from_secs(60),
                    ..RetryPolicy::default()
                }
                .delay(transient)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctl.force_stop.cancelled() => {
                    return ExecOutcome::Detached { reason: format!("orchestrator shut down; execution {name} goes on and records its own outcome") };
                }
                _ = ctl.lease_lost.cancelled() => {
                    return ExecOutcome::Detached { reason: "the run's lease was taken over".into() };
                }
            }
            if Instant::now() >= watch_until {
                tracing::warn!(decision = "timed_out", config = %d.config_name, run_id = d.run.id, execution = %name,
                    watch = %fmt_duration(limits.watch_timeout()), "execution outlived the task timeout × (retries + 1); cancelling it");
                if let Err(e) = self.call(reqwest::Method::POST, &format!("{name}:cancel"), Some(&json!({}))).await {
                    tracing::warn!(execution = %name, error = %e, "cannot cancel the execution");
                }
                return ExecOutcome::Finished(Finish {
                    status: RunStatus::TimedOut,
                    error_kind: Some("timeout".into()),
                    message: Some(format!(
                        "execution {name} did not finish within {} (task timeout × (retries + 1) + 1m); cancelled",
                        fmt_duration(limits.watch_timeout())
                    )),
                    details: json!({"execution": name}),
                });
            }
            match self.call(reqwest::Method::GET, &name, None).await {
                Ok(e) => {
                    transient = 0;
                    if let Some(f) = execution_state(&e) {
                        return ExecOutcome::Finished(f);
                    }
                }
                Err(CloudRunError::Api(e)) if e.is_not_found() => {
                    return ExecOutcome::Finished(Finish::failed(
                        "execution",
                        format!("execution {name} disappeared: {}", e.message),
                        json!({"execution": name}),
                    ));
                }
                Err(e) => {
                    transient += 1;
                    tracing::warn!(execution = %name, error = %e, "polling the execution failed; backing off");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_states_follow_the_completed_condition() {
        let running = json!({"name": "e1", "taskCount": 1, "reconciling": true, "runningCount": 1,
            "conditions": [{"type": "Completed", "state": "CONDITION_PENDING"}]});
        assert!(execution_state(&running).is_none());
        let ok = json!({"name": "e1", "taskCount": 1, "succeededCount": 1, "completionTime": "2025-01-01T00:00:00Z",
            "conditions": [{"type": "Completed", "state": "CONDITION_SUCCEEDED"}]});
        assert_eq!(execution_state(&ok).unwrap().status, RunStatus::Succeeded);
        let failed = json!({"name": "e1", "taskCount": 1, "failedCount": 1, "completionTime": "2025-01-01T00:00:00Z",
            "conditions": [{"type": "Completed", "state": "CONDITION_FAILED", "message": "Task e1-0 failed with exit code 3"}]});
        let f = execution_state(&failed).unwrap();
        assert_eq!(f.status, RunStatus::Failed);
        assert_eq!(f.message.as_deref(), Some("Task e1-0 failed with exit code 3"));
        let cancelled = json!({"name": "e1", "cancelledCount": 1, "completionTime": "2025-01-01T00:00:00Z",
            "conditions": [{"type": "Completed", "state": "CONDITION_FAILED"}]});
        assert_eq!(execution_state(&cancelled).unwrap().status, RunStatus::Cancelled);
    }

    #[test]
    fn executions_are_matched_by_run_id_and_attempt() {
        let e = json!({"template": {"containers": [{"env": [
            {"name": "JOB_CONFIG_ID", "value": "7"}, {"name": "JOB_RUN_ID", "value": "42"}, {"name": "JOB_RUN_ATTEMPT", "value": "2"}]}]}});
        assert!(execution_carries(&e, 42, 2));
        assert!(!execution_carries(&e, 42, 1));
        assert!(!execution_carries(&e, 4, 2));
    }

    #[test]
    fn watch_covers_every_task_attempt() {
        let l = JobLimits { task_timeout: Duration::from_secs(600), max_retries: 3 };
        assert_eq!(l.watch_timeout(), Duration::from_secs(2460));
    }
}
