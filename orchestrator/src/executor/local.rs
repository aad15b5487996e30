//! The local executor: spawns the `job` binary per run with the environment Cloud Run would
//! give it (JOB_CONFIG_ID, JOB_RUN_ID, JOB_RUN_ATTEMPT, JOB_LEASE_SECONDS, the CLOUD_RUN_*
//! variables, the database settings), waits for it, and maps its exit code to a run status. At
//! the timeout it sends SIGTERM, then SIGKILL after the grace period: `timed_out`.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use sheettobigquery::error::ErrorKind;
use sheettobigquery::store::runs::RunStatus;
use sheettobigquery::store::DbArgs;

use super::{Dispatch, ExecOutcome, Executor, Finish, RunControl};
use crate::settings::fmt_duration;

/// How long a job stopped at shutdown gets between SIGTERM and SIGKILL (it records `cancelled`
/// within 5 s; Cloud Run allows the orchestrator 10 s in all).
const SHUTDOWN_TERM_WAIT: Duration = Duration::from_secs(2);

pub struct LocalExecutor {
    pub job_binary: PathBuf,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub db: DbArgs,
    pub host: String,
}

impl LocalExecutor {
    fn command(&self, d: &Dispatch) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.job_binary);
        c.env("JOB_CONFIG_ID", d.config_id.to_string())
            .env("JOB_RUN_ID", d.run.id.to_string())
            .env("JOB_RUN_ATTEMPT", d.run.attempt.to_string())
            .env("JOB_LEASE_SECONDS", d.lease_secs.to_string())
            // What Cloud Run sets in a job's container, so the job behaves the same here.
            .env("CLOUD_RUN_JOB", "local")
            .env("CLOUD_RUN_EXECUTION", format!("local-r{}-a{}", d.run.id, d.run.attempt))
            .env("CLOUD_RUN_TASK_INDEX", "0")
            .env("CLOUD_RUN_TASK_COUNT", "1")
            .env("CLOUD_RUN_TASK_ATTEMPT", "0")
            .stdin(Stdio::null())
            // The job's JSON log lines go where the orchestrator's go.
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // Database settings given as flags reach the job as the env vars it reads.
        if let Some(url) = &self.db.database_url {
            c.env("DATABASE_URL", url.expose());
        }
        if let Some(h) = &self.db.postgres_host {
            c.env("POSTGRES_HOST", h);
        }
        if let Some(p) = self.db.postgres_port {
            c.env("POSTGRES_PORT", p.to_string());
        }
        if let Some(db) = &self.db.postgres_db {
            c.env("POSTGRES_DB", db);
        }
        if let Some(u) = &self.db.postgres_user {
            c.env("POSTGRES_USER", u);
        }
        if let Some(p) = &self.db.postgres_password {
            c.env("POSTGRES_PASSWORD", p.expose());
        }
        c
    }
}

/// The run status an exit status means (the job's documented exit codes).
pub fn finish_from_exit(status: ExitStatus) -> Finish {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(0) => Finish::succeeded(json!({"exit_code": 0})),
        Some(code) => match ErrorKind::from_exit_code(code) {
            Some(ErrorKind::Interrupted) => Finish {
                status: RunStatus::Cancelled,
                error_kind: Some(ErrorKind::Interrupted.as_str().into()),
                message: Some(format!("job exited with code {code} (interrupted)")),
                details: json!({"exit_code": code}),
            },
            Some(kind) => Finish::failed(
                kind.as_str(),
                format!("job exited with code {code} ({kind})"),
                json!({"exit_code": code}),
            ),
            None => Finish::failed("internal", format!("job exited with code {code}"), json!({"exit_code": code})),
        },
        None => {
            let sig = status.signal().unwrap_or(0);
            Finish::failed("internal", format!("job was killed by signal {sig}"), json!({"signal": sig}))
        }
    }
}

/// SIGTERM, then SIGKILL if it has not exited after `grace`. Returns the exit status and
/// whether SIGKILL was needed.
async fn terminate(child: &mut tokio::process::Child, grace: Duration) -> (Option<ExitStatus>, bool) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(r) => (r.ok(), false),
        Err(_) => {
            let _ = child.start_kill();
            (child.wait().await.ok(), true)
        }
    }
}

#[async_trait::async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn execute(&self, d: &Dispatch, ctl: &RunControl) -> ExecOutcome {
        let mut child = match self.command(d).spawn() {
            Ok(c) => c,
            Err(e) => {
                return ExecOutcome::Finished(Finish::failed(
                    "internal",
                    format!("cannot start the job binary {}: {e}", self.job_binary.display()),
                    json!({}),
                ))
            }
        };
        let pid = child.id().unwrap_or(0);
        ctl.started(&format!("{}:{pid}", self.host)).await;
        let timeout = tokio::time::sleep(self.timeout);
        tokio::pin!(timeout);
        tokio::select! {
            status = child.wait() => match status {
                Ok(s) => ExecOutcome::Finished(finish_from_exit(s)),
                Err(e) => ExecOutcome::Finished(Finish::failed("internal", format!("cannot wait for the job: {e}"), json!({"pid": pid}))),
            },
            _ = &mut timeout => {
                tracing::warn!(decision = "timed_out", config = %d.config_name, run_id = d.run.id, attempt = d.run.attempt, pid,
                    timeout = %fmt_duration(self.timeout), "run timed out; sending SIGTERM");
                let (status, killed) = terminate(&mut child, self.kill_grace).await;
                let how = if killed {
                    format!("SIGTERM, then SIGKILL after {}", fmt_duration(self.kill_grace))
                } else {
                    "stopped by SIGTERM".to_string()
                };
                if killed {
                    tracing::warn!(config = %d.config_name, run_id = d.run.id, pid, "job ignored SIGTERM; sent SIGKILL");
                }
                ExecOutcome::Finished(Finish {
                    status: RunStatus::TimedOut,
                    error_kind: Some("timeout".into()),
                    message: Some(format!("exceeded the job timeout of {} ({how})", fmt_duration(self.timeout))),
                    details: json!({"pid": pid, "sigkill": killed, "exit_code": status.and_then(|s| s.code())}),
                })
            }
            _ = ctl.force_stop.cancelled() => {
                let (_, killed) = terminate(&mut child, SHUTDOWN_TERM_WAIT.min(self.kill_grace)).await;
                ExecOutcome::Finished(Finish {
                    status: RunStatus::Cancelled,
                    error_kind: Some(ErrorKind::Interrupted.as_str().into()),
                    message: Some("the orchestrator shut down before the job finished".into()),
                    details: json!({"pid": pid, "sigkill": killed}),
                })
            }
            _ = ctl.lease_lost.cancelled() => {
                let _ = terminate(&mut child, self.kill_grace).await;
                ExecOutcome::Detached { reason: "the run's lease was taken over; stopped the job".into() }
            }
        }
    }
}
