//! Running the workspace's binaries as real subprocesses, the way Cloud Run and operators do,
//! and reading their JSON log lines back.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

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

/// Prefixes and names of the settings the binaries read from the environment: a developer's
/// shell may carry any of them, and each would change what a binary under test does.
const AMBIENT_PREFIXES: &[&str] = &["ORCHESTRATOR_", "POSTGRES_", "JOB_", "CLOUD_RUN_", "IMPORT_"];
const AMBIENT_VARS: &[&str] = &[
    "DATABASE_URL",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "SHEETS_EMULATOR_HOST",
    "BIGQUERY_EMULATOR_HOST",
    "ENVIRONMENT",
    "K_SERVICE",
    "PORT",
    "PG_DUMP",
    "RUST_LOG",
    "LOG_FORMAT",
    "NO_COLOR",
];

/// A command for the workspace binary `name` with the environment of a clean machine, pointed
/// at the local Sheets server and the BigQuery emulator; no stdin, output captured, killed if the
/// test drops it. `env` is applied last, so it can override anything.
pub fn command(name: &str, sheets_url: &str, env: &[(&str, &str)]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin(name));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if AMBIENT_PREFIXES.iter().any(|p| k.starts_with(p)) || AMBIENT_VARS.contains(&k.as_ref()) {
            c.env_remove(k.as_ref());
        }
    }
    // The emulator starts on first use; a caller that points BigQuery elsewhere does not need it.
    if !env.iter().any(|(k, _)| *k == "BIGQUERY_EMULATOR_HOST") {
        c.env("BIGQUERY_EMULATOR_HOST", crate::bq::url());
    }
    c.env("SHEETS_EMULATOR_HOST", sheets_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A `job` command (see [`command`]) logging JSON lines.
pub fn job_command(sheets_url: &str, extra_env: &[(&str, &str)]) -> tokio::process::Command {
    let mut env = vec![("LOG_FORMAT", "json")];
    env.extend_from_slice(extra_env);
    command("job", sheets_url, &env)
}

/// A long-running child whose output is collected line by line while the test goes on.
pub struct Running {
    pub child: tokio::process::Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn spawn(mut cmd: tokio::process::Command) -> Running {
        let mut child = cmd.spawn().expect("spawn child");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let o = out.clone();
        let stdout_reader = tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                o.lock().unwrap().push(l);
            }
        });
        let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
        let e = err.clone();
        let stderr_reader = tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                let mut g = e.lock().unwrap();
                g.push_str(&l);
                g.push('\n');
            }
        });
        Running { child, out, err, readers: vec![stdout_reader, stderr_reader] }
    }

    /// The stdout lines read so far that parse as JSON.
    pub fn lines(&self) -> Vec<Value> {
        self.out.lock().unwrap().iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
    }

    pub fn text(&self) -> String {
        format!("{}\n{}", self.out.lock().unwrap().join("\n"), self.err.lock().unwrap())
    }

    /// The first JSON line matching `pred`, waiting up to 30 s for it.
    pub async fn wait_line(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.lines().into_iter().find(&pred) {
                return l;
            }
            assert!(Instant::now() < deadline, "no {what} line within 30s:\n{}", self.text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, sig: Signal) {
        signal(&self.child, sig);
    }

    /// Waits up to 60 s for the exit, then for every line it wrote to be read; the exit code.
    pub async fn wait(&mut self) -> Option<i32> {
        self.wait_within(Duration::from_secs(60)).await
    }

    /// [`Running::wait`] with a deadline the test asserts on.
    pub async fn wait_within(&mut self, limit: Duration) -> Option<i32> {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not exit within {limit:?}:\n{}", self.text()))
            .unwrap();
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
        }
        status.code()
    }
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
pub fn signal(child: &tokio::process::Child, sig: Signal) {
    let pid = child.id().expect("child still running") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}
