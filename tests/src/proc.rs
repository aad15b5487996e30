//! Running the workspace's binaries as real subprocesses, the way Cloud Run and operators do,
//! and reading their JSON log lines back.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// A built workspace binary (`job`, `orchestrator`, `jobctl`, `sheets-server`).
pub fn bin(name: &str) -> PathBuf {
    // target/<profile>/deps/it-xxxx → target/<profile>/<name>
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo nextest run --workspace` or `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct Finished {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Every stdout line that parses as a JSON object.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(Value::is_object).collect()
    }
    /// The last JSON log line (the job's verdict).
    pub fn last_line(&self) -> Value {
        self.json_lines()
            .pop()
            .unwrap_or_else(|| panic!("no JSON log line; stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
    /// The first line whose message is `msg`.
    pub fn line(&self, msg: &str) -> Option<Value> {
        self.json_lines().into_iter().find(|l| l["message"] == msg)
    }
    pub fn all_text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Variables a developer's shell may carry that would change what a job under test does.
const AMBIENT_ENV: &[&str] = &[
    "DATABASE_URL",
    "POSTGRES_HOST",
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "JOB_CONFIG_ID",
    "JOB_RUN_ID",
    "JOB_RUN_ATTEMPT",
    "CLOUD_RUN_TASK_INDEX",
    "CLOUD_RUN_JOB",
    "K_SERVICE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "RUST_LOG",
    "ENVIRONMENT",
    "IMPORT_BATCH_SIZE",
    "IMPORT_MAX_ROWS",
    "IMPORT_TIMEOUT_SECONDS",
    "IMPORT_BACKUP_DIR",
    "PG_DUMP",
];

/// A `job` command with the environment of a clean machine plus the local endpoints: JSON logs,
/// no stdin, output captured, killed if the test drops it.
pub fn job_command(sheets_url: &str, extra_env: &[(&str, &str)]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin("job"));
    for var in AMBIENT_ENV {
        c.env_remove(var);
    }
    // The emulator starts on first use; a caller that points BigQuery elsewhere does not need it.
    if !extra_env.iter().any(|(k, _)| *k == "BIGQUERY_EMULATOR_HOST") {
        c.env("BIGQUERY_EMULATOR_HOST", crate::bq::url());
    }
    c.env("SHEETS_EMULATOR_HOST", sheets_url)
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c
}

/// Waits for a spawned child (bounded) and collects its output.
pub async fn finish(child: tokio::process::Child, limit: Duration) -> Finished {
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("process did not finish within {limit:?}"))
        .expect("wait for process");
    use std::os::unix::process::ExitStatusExt;
    Finished {
        code: out.status.code(),
        signal: out.status.signal(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `job` with `args` to completion.
pub async fn run_job(sheets_url: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Finished {
    let child = job_command(sheets_url, extra_env).args(args).spawn().expect("spawn job");
    finish(child, Duration::from_secs(120)).await
}

/// Sends a signal to a child process.
pub fn signal(child: &tokio::process::Child, sig: i32) {
    let pid = child.id().expect("child still running") as i32;
    // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}
