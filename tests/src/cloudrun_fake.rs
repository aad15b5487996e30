//! A local fake of the Cloud Run Admin API v2 for the orchestrator's cloud-run executor, with the
//! real request and response shapes:
//!
//! - `GET  /v2/projects/{p}/locations/{l}/jobs/{job}` — the Job (its task `timeout`, `maxRetries`);
//! - `POST /v2/projects/{p}/locations/{l}/jobs/{job}:run` — a `RunJobRequest` (`validateOnly`,
//!   `etag`, `overrides{containerOverrides[{name,args,env[{name,value}],clearArgs}],taskCount,
//!   timeout}`; unknown fields are a 400 like Google's) answered with a long-running Operation
//!   whose `metadata` is the new Execution (`@type` google.cloud.run.v2.Execution);
//! - `GET  …/jobs/{job}/executions[/{execution}]` — Executions (`conditions` with the `Completed`
//!   condition, `runningCount`/`succeededCount`/`failedCount`/`cancelledCount` omitted when zero as
//!   proto3 JSON does, `reconciling`, `completionTime`, `template.containers[].env` with the
//!   overrides merged in);
//! - `POST …/executions/{execution}:cancel`, `GET /v2/projects/{p}/locations/{l}/operations/{op}`.
//!
//! Errors use Google's body (`{"error": {"code", "message", "status"}}`). Knobs for tests: the next
//! N `jobs:run` get 429, `jobs:run` answers only after a delay (having created the execution — a
//! client timeout then leaves an execution behind), and what a task does: run a real command
//! (e.g. the `job` binary, with the overrides and the CLOUD_RUN_* variables in its environment),
//! or succeed/fail on its own after a while.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, Notify};

/// What each execution's single task does.
#[derive(Debug, Clone)]
pub enum TaskBehavior {
    /// Run this program; exit 0 succeeds, anything else fails (retried up to `maxRetries`).
    Command { program: PathBuf, env: Vec<(String, String)> },
    /// Succeed after this long.
    Succeed { after: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Running,
    Succeeded,
    Failed(String),
    Cancelled,
}

struct Execution {
    name: String,
    short: String,
    uid: String,
    env: Vec<(String, String)>,
    created: DateTime<Utc>,
    completed: Option<DateTime<Utc>>,
    phase: Phase,
    retried: u32,
    cancel: Arc<Notify>,
    output: String,
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: Value,
}

struct State_ {
    project: String,
    location: String,
    job: String,
    task_timeout_secs: u64,
    max_retries: u32,
    base_env: Vec<(String, String)>,
    behavior: TaskBehavior,
    executions: Vec<Execution>,
    throttle_runs: usize,
    run_delay: Duration,
    requests: Vec<Recorded>,
    seq: u64,
}

/// The fake API; clone it to keep a handle after `spawn`.
#[derive(Clone)]
pub struct CloudRunFake {
    inner: Arc<Mutex<State_>>,
}

fn lock(m: &Mutex<State_>) -> std::sync::MutexGuard<'_, State_> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn google_error(status: StatusCode, message: &str) -> Response {
    let reason = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    };
    (status, Json(json!({"error": {"code": status.as_u16(), "message": message, "status": reason}}))).into_response()
}

impl CloudRunFake {
    /// A fake serving one job, `projects/{project}/locations/{location}/jobs/{job}`, whose task
    /// times out after 600 s with no retries.
    pub fn new(project: &str, location: &str, job: &str, behavior: TaskBehavior) -> CloudRunFake {
        CloudRunFake {
            inner: Arc::new(Mutex::new(State_ {
                project: project.into(),
                location: location.into(),
                job: job.into(),
                task_timeout_secs: 600,
                max_retries: 0,
                base_env: vec![("LOG_FORMAT".into(), "json".into())],
                behavior,
                executions: Vec::new(),
                throttle_runs: 0,
                run_delay: Duration::ZERO,
                requests: Vec::new(),
                seq: 0,
            })),
        }
    }

    /// The next `n` `jobs:run` requests get 429 RESOURCE_EXHAUSTED.
    pub fn throttle_next_runs(&self, n: usize) {
        lock(&self.inner).throttle_runs = n;
    }
    /// `jobs:run` creates the execution at once but answers only after `d`.
    pub fn delay_run_responses(&self, d: Duration) {
        lock(&self.inner).run_delay = d;
    }
    /// Every request received.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).requests.clone()
    }
    /// `jobs:run` requests received (including refused ones).
    pub fn run_requests(&self) -> usize {
        lock(&self.inner).requests.iter().filter(|r| r.method == "POST" && r.path.ends_with(":run")).count()
    }
    /// Names of the executions created.
    pub fn executions(&self) -> Vec<String> {
        lock(&self.inner).executions.iter().map(|e| e.name.clone()).collect()
    }
    /// An execution's env (the job's plus the overrides).
    pub fn execution_env(&self, name: &str) -> BTreeMap<String, String> {
        lock(&self.inner)
            .executions
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.env.iter().cloned().collect())
            .unwrap_or_default()
    }
    /// What the task process printed (Command behaviour).
    pub fn execution_output(&self, name: &str) -> String {
        lock(&self.inner).executions.iter().find(|e| e.name == name).map(|e| e.output.clone()).unwrap_or_default()
    }

    fn job_path(s: &State_) -> String {
        format!("projects/{}/locations/{}/jobs/{}", s.project, s.location, s.job)
    }

    fn job_json(s: &State_) -> Value {
        let env: Vec<Value> = s.base_env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
        json!({
            "name": Self::job_path(s),
            "uid": "5b0c3b7e-0000-4000-8000-000000000001",
            "generation": "1",
            "createTime": "2025-01-01T00:00:00.000000Z",
            "updateTime": "2025-01-01T00:00:00.000000Z",
            "creator": "deployer@example.iam.gserviceaccount.com",
            "launchStage": "GA",
            "template": {
                "taskCount": 1,
                "parallelism": 1,
                "template": {
                    "containers": [{"image": "europe-docker.pkg.dev/p/r/job:latest", "env": env,
                                    "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}],
                    "maxRetries": s.max_retries,
                    "timeout": format!("{}s", s.task_timeout_secs),
                    "serviceAccount": "job@example.iam.gserviceaccount.com",
                    "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2",
                },
            },
            "observedGeneration": "1",
            "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "2025-01-01T00:00:00.000000Z"},
            "executionCount": s.executions.len(),
            "reconciling": false,
            "etag": "\"fake-etag\"",
        })
    }

    fn execution_json(s: &State_, e: &Execution) -> Value {
        let env: Vec<Value> = e.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
        let mut m = Map::new();
        m.insert("name".into(), json!(e.name));
        m.insert("uid".into(), json!(e.uid));
        m.insert("generation".into(), json!("1"));
        m.insert("createTime".into(), json!(ts(e.created)));
        m.insert("startTime".into(), json!(ts(e.created)));
        m.insert("updateTime".into(), json!(ts(e.completed.unwrap_or(e.created))));
        m.insert("launchStage".into(), json!("GA"));
        m.insert("job".into(), json!(s.job));
        m.insert("parallelism".into(), json!(1));
        m.insert("taskCount".into(), json!(1));
        m.insert(
            "template".into(),
            json!({"containers": [{"image": "europe-docker.pkg.dev/p/r/job:latest", "env": env}],
                   "maxRetries": s.max_retries, "timeout": format!("{}s", s.task_timeout_secs),
                   "serviceAccount": "job@example.iam.gserviceaccount.com"}),
        );
        let (completed_state, message, reason) = match &e.phase {
            Phase::Running => ("CONDITION_PENDING", None, None),
            Phase::Succeeded => ("CONDITION_SUCCEEDED", None, None),
            Phase::Failed(msg) => ("CONDITION_FAILED", Some(msg.clone()), Some("NON_ZERO_EXIT_CODE")),
            Phase::Cancelled => {
                ("CONDITION_FAILED", Some("The execution was cancelled.".to_string()), Some("CANCELLED"))
            }
        };
        let mut completed = json!({"type": "Completed", "state": completed_state, "lastTransitionTime": ts(e.completed.unwrap_or(e.created))});
        if let Some(m) = message {
            completed["message"] = json!(m);
            completed["severity"] = json!("ERROR");
        }
        if let Some(r) = reason {
            completed["executionReason"] = json!(r);
        }
        m.insert(
            "conditions".into(),
            json!([
                {"type": "ResourcesAvailable", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": ts(e.created)},
                {"type": "Started", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": ts(e.created)},
                completed,
            ]),
        );
        m.insert("observedGeneration".into(), json!("1"));
        m.insert("reconciling".into(), json!(e.phase == Phase::Running));
        let mut counts = |k: &str, v: u32| {
            // proto3 JSON omits zero values.
            if v > 0 {
                m.insert(k.into(), json!(v));
            }
        };
        counts("runningCount", (e.phase == Phase::Running) as u32);
        counts("succeededCount", (e.phase == Phase::Succeeded) as u32);
        counts("failedCount", matches!(e.phase, Phase::Failed(_)) as u32);
        counts("cancelledCount", (e.phase == Phase::Cancelled) as u32);
        counts("retriedCount", e.retried);
        if let Some(c) = e.completed {
            m.insert("completionTime".into(), json!(ts(c)));
        }
        m.insert(
            "logUri".into(),
            json!(format!(
                "https://console.cloud.google.com/logs/viewer?project={}&resource=cloud_run_job/job_name/{}",
                s.project, s.job
            )),
        );
        m.insert("etag".into(), json!(format!("\"{}\"", e.uid)));
        Value::Object(m)
    }

    fn operation(s: &State_, e: &Execution) -> Value {
        json!({
            "name": format!("projects/{}/locations/{}/operations/{}", s.project, s.location, e.uid),
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.run.v2.Execution",
                // The metadata is the Execution as created.
                "name": e.name, "uid": e.uid, "createTime": ts(e.created), "job": s.job,
                "taskCount": 1, "parallelism": 1, "reconciling": true, "launchStage": "GA",
            },
            "done": e.phase != Phase::Running,
        })
    }

    /// Serves on a free loopback port.
    pub async fn spawn(self) -> std::io::Result<RunningCloudRunFake> {
        let app = Router::new()
            .route("/v2/projects/{project}/locations/{location}/jobs/{job}", get(job_get).post(job_post))
            .route("/v2/projects/{project}/locations/{location}/jobs/{job}/executions", get(executions_list))
            .route(
                "/v2/projects/{project}/locations/{location}/jobs/{job}/executions/{execution}",
                get(execution_get).post(execution_post),
            )
            .fallback(|m: Method, uri: axum::http::Uri| async move {
                google_error(
                    StatusCode::NOT_FOUND,
                    &format!("the requested URL {m} {uri} was not found on this server"),
                )
            })
            .with_state(self.clone());
        let (addr, stop, _) = crate::serve_loopback(app).await?;
        Ok(RunningCloudRunFake { fake: self, addr, _stop: stop })
    }

    fn record(&self, method: &str, path: String, body: Value) {
        lock(&self.inner).requests.push(Recorded { method: method.into(), path, body });
    }

    /// The 404 for a job this fake does not serve.
    fn unknown_job(&self, project: &str, location: &str, job: &str) -> Option<Response> {
        let s = lock(&self.inner);
        if project != s.project || location != s.location || job != s.job {
            return Some(google_error(
                StatusCode::NOT_FOUND,
                &format!("Resource 'projects/{project}/locations/{location}/jobs/{job}' was not found"),
            ));
        }
        None
    }

    /// Starts the task of a new execution.
    fn start_task(&self, idx: usize) {
        let (behavior, env, short, job, cancel, max_retries) = {
            let s = lock(&self.inner);
            let e = &s.executions[idx];
            (s.behavior.clone(), e.env.clone(), e.short.clone(), s.job.clone(), e.cancel.clone(), s.max_retries)
        };
        let me = self.clone();
        tokio::spawn(async move {
            let phase = match behavior {
                TaskBehavior::Succeed { after } => tokio::select! {
                    _ = tokio::time::sleep(after) => Phase::Succeeded,
                    _ = cancel.notified() => Phase::Cancelled,
                },
                TaskBehavior::Command { program, env: base } => {
                    let mut phase = Phase::Failed("no task attempt ran".into());
                    for attempt in 0..=max_retries {
                        let mut c = tokio::process::Command::new(&program);
                        c.env_clear();
                        for (k, v) in base.iter().chain(env.iter()) {
                            c.env(k, v);
                        }
                        c.env("CLOUD_RUN_JOB", &job)
                            .env("CLOUD_RUN_EXECUTION", &short)
                            .env("CLOUD_RUN_TASK_INDEX", "0")
                            .env("CLOUD_RUN_TASK_COUNT", "1")
                            .env("CLOUD_RUN_TASK_ATTEMPT", attempt.to_string())
                            .stdin(std::process::Stdio::null())
                            .stdout(std::process::Stdio::piped())
                            .stderr(std::process::Stdio::piped())
                            .kill_on_drop(true);
                        let child = match c.spawn() {
                            Ok(c) => c,
                            Err(e) => {
                                phase = Phase::Failed(format!("Task {short}-task0 failed to start: {e}"));
                                break;
                            }
                        };
                        let out = tokio::select! {
                            o = child.wait_with_output() => Some(o),
                            _ = cancel.notified() => None,
                        };
                        let Some(out) = out else {
                            phase = Phase::Cancelled;
                            break;
                        };
                        let Ok(out) = out else { break };
                        {
                            let mut s = lock(&me.inner);
                            let e = &mut s.executions[idx];
                            e.output.push_str(&String::from_utf8_lossy(&out.stdout));
                            e.output.push_str(&String::from_utf8_lossy(&out.stderr));
                            if attempt > 0 {
                                e.retried = 1;
                            }
                        }
                        match out.status.code() {
                            Some(0) => {
                                phase = Phase::Succeeded;
                                break;
                            }
                            code => {
                                phase = Phase::Failed(format!(
                                    "Task {short}-task0 failed with message: The container exited with an error (exit code {}).",
                                    code.map_or("signal".to_string(), |c| c.to_string())
                                ));
                            }
                        }
                    }
                    phase
                }
            };
            let mut s = lock(&me.inner);
            let e = &mut s.executions[idx];
            if e.phase == Phase::Running {
                e.phase = phase;
                e.completed = Some(Utc::now());
            }
        });
    }
}

/// Checks a RunJobRequest against the v2 schema (unknown fields are refused like Google does).
fn validate_run_request(body: &Value) -> Result<Vec<(String, String)>, String> {
    let unknown = |obj: &Map<String, Value>, allowed: &[&str], at: &str| -> Result<(), String> {
        for k in obj.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(format!(
                    "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
                ));
            }
        }
        Ok(())
    };
    let Value::Object(top) = body else { return Err("Invalid JSON payload received. Expected an object.".into()) };
    unknown(top, &["validateOnly", "etag", "overrides"], "")?;
    let mut env = Vec::new();
    if let Some(o) = top.get("overrides") {
        let Value::Object(o) = o else { return Err("Invalid value at 'overrides'".into()) };
        unknown(o, &["containerOverrides", "taskCount", "timeout"], "overrides")?;
        if let Some(t) = o.get("taskCount") {
            if t.as_i64().is_none_or(|t| t < 0) {
                return Err("Invalid value at 'overrides.task_count' (TYPE_INT32)".into());
            }
        }
        for (i, co) in
            o.get("containerOverrides").and_then(Value::as_array).cloned().unwrap_or_default().iter().enumerate()
        {
            let Value::Object(co) = co else {
                return Err(format!("Invalid value at 'overrides.container_overrides[{i}]'"));
            };
            unknown(co, &["name", "args", "env", "clearArgs"], &format!("overrides.container_overrides[{i}]"))?;
            for (j, v) in co.get("env").and_then(Value::as_array).cloned().unwrap_or_default().iter().enumerate() {
                let Value::Object(v) = v else {
                    return Err(format!("Invalid value at 'overrides.container_overrides[{i}].env[{j}]'"));
                };
                unknown(v, &["name", "value", "valueSource"], &format!("overrides.container_overrides[{i}].env[{j}]"))?;
                let name = v.get("name").and_then(Value::as_str).ok_or("env var without a name")?;
                let value = v.get("value").and_then(Value::as_str).unwrap_or("");
                env.push((name.to_string(), value.to_string()));
            }
        }
    }
    Ok(env)
}

async fn job_get(
    State(f): State<CloudRunFake>,
    Path((project, location, job)): Path<(String, String, String)>,
) -> Response {
    f.record("GET", format!("projects/{project}/locations/{location}/jobs/{job}"), Value::Null);
    if let Some(r) = f.unknown_job(&project, &location, &job) {
        return r;
    }
    Json(CloudRunFake::job_json(&lock(&f.inner))).into_response()
}

async fn job_post(
    State(f): State<CloudRunFake>,
    Path((project, location, job_verb)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    f.record("POST", format!("projects/{project}/locations/{location}/jobs/{job_verb}"), body.clone());
    let Some(job) = job_verb.strip_suffix(":run") else {
        return google_error(StatusCode::NOT_FOUND, &format!("unknown method on job {job_verb}"));
    };
    if let Some(r) = f.unknown_job(&project, &location, job) {
        return r;
    }
    let overrides = match validate_run_request(&body) {
        Ok(env) => env,
        Err(m) => return google_error(StatusCode::BAD_REQUEST, &m),
    };
    let (idx, op, delay) = {
        let mut s = lock(&f.inner);
        if s.throttle_runs > 0 {
            s.throttle_runs -= 1;
            drop(s);
            return google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Quota exceeded for quota metric 'Job run requests' and limit 'Job run requests per minute per region'",
            );
        }
        s.seq += 1;
        let suffix: String = (0..5).map(|i| (b'a' + ((s.seq as usize * 7 + i * 3) % 26) as u8) as char).collect();
        let short = format!("{}-{suffix}", s.job);
        let mut env = s.base_env.clone();
        for (k, v) in overrides {
            match env.iter_mut().find(|(ek, _)| *ek == k) {
                Some(e) => e.1 = v,
                None => env.push((k, v)),
            }
        }
        let e = Execution {
            name: format!("{}/executions/{short}", CloudRunFake::job_path(&s)),
            short,
            uid: format!("6f1c2d3e-0000-4000-8000-{:012x}", s.seq),
            env,
            created: Utc::now(),
            completed: None,
            phase: Phase::Running,
            retried: 0,
            cancel: Arc::new(Notify::new()),
            output: String::new(),
        };
        let op = CloudRunFake::operation(&s, &e);
        s.executions.push(e);
        (s.executions.len() - 1, op, s.run_delay)
    };
    f.start_task(idx);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Json(op).into_response()
}

async fn executions_list(
    State(f): State<CloudRunFake>,
    Path((project, location, job)): Path<(String, String, String)>,
) -> Response {
    f.record("GET", format!("projects/{project}/locations/{location}/jobs/{job}/executions"), Value::Null);
    if let Some(r) = f.unknown_job(&project, &location, &job) {
        return r;
    }
    let s = lock(&f.inner);
    // Newest first, like the real listing.
    let list: Vec<Value> = s.executions.iter().rev().map(|e| CloudRunFake::execution_json(&s, e)).collect();
    Json(json!({"executions": list})).into_response()
}

async fn execution_get(
    State(f): State<CloudRunFake>,
    Path((project, location, job, execution)): Path<(String, String, String, String)>,
) -> Response {
    f.record("GET", format!("projects/{project}/locations/{location}/jobs/{job}/executions/{execution}"), Value::Null);
    let s = lock(&f.inner);
    let name = format!("projects/{project}/locations/{location}/jobs/{job}/executions/{execution}");
    match s.executions.iter().find(|e| e.name == name) {
        Some(e) => Json(CloudRunFake::execution_json(&s, e)).into_response(),
        None => google_error(StatusCode::NOT_FOUND, &format!("Resource '{name}' was not found")),
    }
}

async fn execution_post(
    State(f): State<CloudRunFake>,
    Path((project, location, job, exec_verb)): Path<(String, String, String, String)>,
) -> Response {
    f.record("POST", format!("projects/{project}/locations/{location}/jobs/{job}/executions/{exec_verb}"), Value::Null);
    let Some(execution) = exec_verb.strip_suffix(":cancel") else {
        return google_error(StatusCode::NOT_FOUND, &format!("unknown method on execution {exec_verb}"));
    };
    let name = format!("projects/{project}/locations/{location}/jobs/{job}/executions/{execution}");
    let mut s = lock(&f.inner);
    let Some(i) = s.executions.iter().position(|e| e.name == name) else {
        return google_error(StatusCode::NOT_FOUND, &format!("Resource '{name}' was not found"));
    };
    if s.executions[i].phase == Phase::Running {
        s.executions[i].phase = Phase::Cancelled;
        s.executions[i].completed = Some(Utc::now());
        // notify_one keeps the wake-up if the task is not waiting yet.
        s.executions[i].cancel.notify_one();
    }
    let op = CloudRunFake::operation(&s, &s.executions[i]);
    Json(op).into_response()
}

/// A serving fake; stops when dropped.
pub struct RunningCloudRunFake {
    fake: CloudRunFake,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl RunningCloudRunFake {
    /// The base URL to give the orchestrator (`CLOUD_RUN_API_URL`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl std::ops::Deref for RunningCloudRunFake {
    type Target = CloudRunFake;
    fn deref(&self) -> &CloudRunFake {
        &self.fake
    }
}
