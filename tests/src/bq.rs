//! The BigQuery emulator for tests: the one named by `TEST_BIGQUERY_URL` (started by the test
//! script), or a private one started on free ports for this test process and stopped at exit.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const PROJECT: &str = "test-proj";

struct Emulator {
    url: String,
    _child: Option<Child>,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start() -> Emulator {
    if let Ok(url) = std::env::var("TEST_BIGQUERY_URL") {
        return Emulator { url: url.trim_end_matches('/').to_string(), _child: None };
    }
    let venv = std::env::var("BQEMU_VENV").map(std::path::PathBuf::from).unwrap_or_else(|_| repo_root().join(".bqemu"));
    let exe = venv.join("bin/bqemulator");
    assert!(
        exe.exists(),
        "BigQuery emulator not installed at {}: run `.ci/bqemulator.sh install` (or set TEST_BIGQUERY_URL)",
        exe.display()
    );
    // Free ports can be taken between the probe and the emulator's bind: try a few pairs.
    let mut last_log = String::new();
    for _ in 0..3 {
        match start_on(&exe, &venv, free_port(), free_port()) {
            Ok(e) => return e,
            Err(log) => last_log = log,
        }
    }
    panic!("bqemulator did not start; its log:\n{last_log}");
}

/// Starts the emulator on `port`, ready when its REST API answers; Err(log) if it exits first.
fn start_on(exe: &std::path::Path, venv: &std::path::Path, port: u16, grpc: u16) -> Result<Emulator, String> {
    let log_path = std::env::temp_dir().join(format!("bqemu-test-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "start",
        "--rest-host",
        "127.0.0.1",
        "--rest-port",
        &port.to_string(),
        "--grpc-host",
        "127.0.0.1",
        "--grpc-port",
        &grpc.to_string(),
        "--project",
        PROJECT,
    ])
    .env("HOME", venv.join("home"))
    .env("BQEMU_ENABLE_FORMAT_EXTENSIONS", "false")
    .stdout(Stdio::from(log.try_clone().unwrap()))
    .stderr(Stdio::from(log));
    // The emulator must not outlive this test process. It is started from a thread that lives as
    // long as the process, and asks the kernel to SIGTERM it when that thread (so the process) ends.
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let child = cmd.spawn();
        let ok = child.is_ok();
        let _ = tx.send(child);
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    let mut child = rx.recv().unwrap().expect("start bqemulator");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if rest_answers(port) {
            return Ok(Emulator { url: format!("http://127.0.0.1:{port}"), _child: Some(child) });
        }
        if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True once the REST API answers 200 (not merely accepts connections).
fn rest_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /bigquery/v2/projects/{PROJECT}/datasets HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut head = [0u8; 12];
    s.write_all(req.as_bytes()).is_ok() && s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// The emulator's root URL (`http://127.0.0.1:PORT`), started on first use.
pub fn url() -> String {
    EMULATOR.get_or_init(start).url.clone()
}

/// A dataset name no other test uses.
pub fn unique_dataset(prefix: &str) -> String {
    format!("{prefix}_{:x}", crate::pg::fastrand_u64() & 0xffff_ffff)
}

/// A query result: column names and types, rows of optional strings as the REST API returns them.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    pub fn column_type(&self, name: &str) -> Option<&str> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str())
    }
    pub fn col(&self, name: &str) -> Vec<Option<String>> {
        let i = self
            .columns
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns));
        self.rows.iter().map(|r| r[i].clone()).collect()
    }
}

/// Runs a standard SQL query against the emulator.
pub async fn query(sql: &str) -> Result<QueryResult, String> {
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/bigquery/v2/projects/{PROJECT}/queries", url()))
        .json(&json!({"query": sql, "useLegacySql": false, "maxResults": 100000}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if let Some(errs) = resp.get("errors").or_else(|| resp.get("error")) {
        return Err(errs.to_string());
    }
    let columns = resp["schema"]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| (f["name"].as_str().unwrap_or("").to_string(), f["type"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let rows = resp["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r["f"].as_array().unwrap().iter().map(|c| c["v"].as_str().map(str::to_string)).collect())
                .collect()
        })
        .unwrap_or_default();
    Ok(QueryResult { columns, rows })
}

/// The table's schema as stored (`name`, `type`), or None when the table does not exist.
pub async fn table_schema(dataset: &str, table: &str) -> Option<Vec<(String, String)>> {
    let resp = reqwest::get(format!("{}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables/{table}", url()))
        .await
        .ok()?;
    if resp.status() == 404 {
        return None;
    }
    let v: Value = resp.json().await.ok()?;
    Some(
        v["schema"]["fields"]
            .as_array()?
            .iter()
            .map(|f| (f["name"].as_str().unwrap_or("").to_string(), f["type"].as_str().unwrap_or("").to_string()))
            .collect(),
    )
}

/// Row count, or None when the table does not exist.
pub async fn count(dataset: &str, table: &str) -> Option<u64> {
    table_schema(dataset, table).await?;
    let r = query(&format!("SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.{table}`")).await.ok()?;
    r.rows.first()?.first()?.as_ref()?.parse().ok()
}
