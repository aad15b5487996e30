//! A small fake of the BigQuery REST API for the paths where the emulator differs from BigQuery
//! (tests/EMULATOR_NOTES.md): the emulator ignores client job ids, so re-attaching to an existing
//! load job (HTTP 409 `duplicate`) and polling a job that is still `RUNNING` are tested here.
//! It implements only what the loader calls, with BigQuery's shapes: datasets get/insert, tables
//! get, multipart load upload, jobs get/cancel, and `SELECT COUNT(*)` queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Debug, Default)]
struct Inner {
    datasets: Vec<String>,
    /// table id → rows
    tables: HashMap<String, u64>,
    /// job id → (state polls left before DONE, job resource)
    jobs: HashMap<String, (u32, Value)>,
    /// Accept the next N uploads but answer 503, as if the response was lost.
    lose_responses: u32,
    /// Report each new job as RUNNING for this many polls.
    running_polls: u32,
    uploads: u32,
    loads_applied: u32,
}

/// Handle on the fake: state and knobs, shared with the running server.
#[derive(Clone, Default)]
pub struct BigQueryFake {
    inner: Arc<Mutex<Inner>>,
}

fn error(code: u16, status: &str, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "errors": [{"domain": "global", "reason": reason, "message": message}], "status": status}});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

impl BigQueryFake {
    /// Answers 503 to the next `n` uploads after accepting them.
    pub fn lose_next_responses(&self, n: u32) {
        self.inner.lock().unwrap().lose_responses = n;
    }
    /// New jobs stay RUNNING for `n` polls.
    pub fn running_polls(&self, n: u32) {
        self.inner.lock().unwrap().running_polls = n;
    }
    /// (upload requests received, loads applied to tables)
    pub fn counts(&self) -> (u32, u32) {
        let i = self.inner.lock().unwrap();
        (i.uploads, i.loads_applied)
    }
    pub fn rows(&self, dataset: &str, table: &str) -> Option<u64> {
        self.inner.lock().unwrap().tables.get(&format!("{dataset}.{table}")).copied()
    }

    /// Serves on 127.0.0.1:0 for the rest of the test process; returns the root URL
    /// (`http://127.0.0.1:PORT`).
    pub async fn spawn(&self) -> String {
        let app = Router::new()
            .route("/bigquery/v2/projects/{p}/datasets", post(insert_dataset))
            .route("/bigquery/v2/projects/{p}/datasets/{d}", get(get_dataset))
            .route("/bigquery/v2/projects/{p}/datasets/{d}/tables/{t}", get(get_table))
            .route("/upload/bigquery/v2/projects/{p}/jobs", post(upload))
            .route("/bigquery/v2/projects/{p}/jobs/{j}", get(get_job))
            .route("/bigquery/v2/projects/{p}/jobs/{j}/cancel", post(get_job))
            .route("/bigquery/v2/projects/{p}/queries", post(query))
            .with_state(self.clone());
        let (addr, stop, _) = crate::serve_loopback(app).await.expect("bind a loopback port");
        std::mem::forget(stop);
        format!("http://{addr}")
    }
}

async fn insert_dataset(State(f): State<BigQueryFake>, Path(p): Path<String>, Json(body): Json<Value>) -> Response {
    let d = body["datasetReference"]["datasetId"].as_str().unwrap_or("").to_string();
    let mut i = f.inner.lock().unwrap();
    if i.datasets.contains(&d) {
        return error(409, "ALREADY_EXISTS", "duplicate", &format!("Already Exists: Dataset {p}:{d}"));
    }
    i.datasets.push(d.clone());
    Json(json!({"kind": "bigquery#dataset", "id": format!("{p}:{d}"), "datasetReference": {"projectId": p, "datasetId": d}, "location": "US"})).into_response()
}

async fn get_dataset(State(f): State<BigQueryFake>, Path((p, d)): Path<(String, String)>) -> Response {
    if f.inner.lock().unwrap().datasets.contains(&d) {
        Json(json!({"kind": "bigquery#dataset", "id": format!("{p}:{d}"), "datasetReference": {"projectId": p, "datasetId": d}, "location": "US"})).into_response()
    } else {
        error(404, "NOT_FOUND", "notFound", &format!("Not found: Dataset {p}:{d}"))
    }
}

async fn get_table(State(f): State<BigQueryFake>, Path((p, d, t)): Path<(String, String, String)>) -> Response {
    match f.inner.lock().unwrap().tables.get(&format!("{d}.{t}")) {
        Some(n) => Json(json!({"kind": "bigquery#table", "id": format!("{p}:{d}.{t}"), "tableReference": {"projectId": p, "datasetId": d, "tableId": t}, "numRows": n.to_string(), "type": "TABLE", "schema": {"fields": []}})).into_response(),
        None => error(404, "NOT_FOUND", "notFound", &format!("Not found: Table {p}:{d}.{t}")),
    }
}

/// Splits a `multipart/related` body into its two parts.
fn parts(body: &[u8]) -> Option<(Value, Vec<u8>)> {
    let text = std::str::from_utf8(body).ok()?;
    let boundary = text.lines().next()?.trim().trim_start_matches("--").to_string();
    let sep = format!("--{boundary}");
    let mut chunks = text.split(sep.as_str()).filter(|c| !c.trim().is_empty() && c.trim() != "--");
    let json_part = chunks.next()?;
    let data_part = chunks.next()?;
    let json_body = json_part.split_once("\r\n\r\n")?.1.trim();
    let data = data_part.split_once("\r\n\r\n").map(|(_, d)| d.strip_suffix("\r\n").unwrap_or(d)).unwrap_or("");
    Some((serde_json::from_str(json_body).ok()?, data.as_bytes().to_vec()))
}

async fn upload(State(f): State<BigQueryFake>, Path(p): Path<String>, body: Bytes) -> Response {
    let Some((job, data)) = parts(&body) else {
        return error(400, "INVALID_ARGUMENT", "invalid", "malformed multipart body");
    };
    let mut i = f.inner.lock().unwrap();
    i.uploads += 1;
    let job_id = job["jobReference"]["jobId"].as_str().unwrap_or("").to_string();
    if i.jobs.contains_key(&job_id) {
        return error(409, "ALREADY_EXISTS", "duplicate", &format!("Already Exists: Job {p}:US.{job_id}"));
    }
    let load = &job["configuration"]["load"];
    let table = format!(
        "{}.{}",
        load["destinationTable"]["datasetId"].as_str().unwrap_or(""),
        load["destinationTable"]["tableId"].as_str().unwrap_or("")
    );
    let rows = data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    let entry = i.tables.entry(table).or_insert(0);
    if load["writeDisposition"] == "WRITE_APPEND" {
        *entry += rows;
    } else {
        *entry = rows;
    }
    i.loads_applied += 1;
    let polls = i.running_polls;
    let mut resource = json!({"kind": "bigquery#job", "id": format!("{p}:US.{job_id}"), "jobReference": {"projectId": p, "jobId": job_id, "location": "US"}, "configuration": job["configuration"], "status": {"state": if polls > 0 { "RUNNING" } else { "DONE" }}});
    i.jobs.insert(job_id.clone(), (polls, resource.clone()));
    if i.lose_responses > 0 {
        i.lose_responses -= 1;
        return error(503, "UNAVAILABLE", "backendError", "The service is currently unavailable.");
    }
    resource["statistics"] = json!({"load": {"outputRows": rows.to_string()}});
    Json(resource).into_response()
}

async fn get_job(State(f): State<BigQueryFake>, Path((p, j)): Path<(String, String)>) -> Response {
    let mut i = f.inner.lock().unwrap();
    match i.jobs.get_mut(&j) {
        Some((polls, resource)) => {
            if *polls > 0 {
                *polls -= 1;
            }
            resource["status"]["state"] = json!(if *polls > 0 { "RUNNING" } else { "DONE" });
            Json(resource.clone()).into_response()
        }
        None => error(404, "NOT_FOUND", "notFound", &format!("Not found: Job {p}:{j}")),
    }
}

async fn query(State(f): State<BigQueryFake>, Json(body): Json<Value>) -> Response {
    let sql = body["query"].as_str().unwrap_or("");
    // Only `SELECT COUNT(*) AS n FROM `p.d.t``.
    let Some(table) = sql.split('`').nth(1) else {
        return error(400, "INVALID_ARGUMENT", "invalidQuery", "unsupported query");
    };
    let key = table.split_once('.').map(|(_, rest)| rest).unwrap_or("").to_string();
    let n = f.inner.lock().unwrap().tables.get(&key).copied().unwrap_or(0);
    Json(json!({"kind": "bigquery#queryResponse", "jobComplete": true, "totalRows": "1", "schema": {"fields": [{"name": "n", "type": "INTEGER", "mode": "NULLABLE"}]}, "rows": [{"f": [{"v": n.to_string()}]}]})).into_response()
}
