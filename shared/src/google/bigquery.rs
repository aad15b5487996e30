//! BigQuery: datasets, row counts and load jobs. Datasets, jobs and queries go through
//! gcp-bigquery-client; the load itself is a multipart upload of newline-delimited JSON with
//! reqwest (the crate has no upload), streamed from a file so memory stays flat.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt as _;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::query_request::QueryRequest;
use serde_json::json;

use super::auth::{BigQueryAuth, Credentials, BIGQUERY_SCOPE};
use super::retry::{ApiError, RetryPolicy};
use crate::config::{ColumnType, WriteMode};

const API: &str = "bigquery";
pub const DEFAULT_ENDPOINT: &str = "https://bigquery.googleapis.com";

/// A column of the destination schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub column_type: ColumnType,
    pub required: bool,
}

/// One load: where, how, and under which job id.
#[derive(Debug, Clone)]
pub struct LoadRequest<'a> {
    pub project: &'a str,
    pub dataset: &'a str,
    pub table: &'a str,
    pub location: Option<&'a str>,
    pub fields: &'a [Field],
    pub write_mode: WriteMode,
    /// Deterministic per run attempt: a retried upload re-attaches to the job it created.
    pub job_id: &'a str,
}

/// A BigQuery client for one endpoint.
#[derive(Clone)]
pub struct BigQueryClient {
    client: gcp_bigquery_client::Client,
    http: reqwest::Client,
    upload_base: String,
    credentials: Credentials,
    retry: RetryPolicy,
}

impl BigQueryClient {
    /// `endpoint` is the API root (`https://bigquery.googleapis.com`, or an emulator's
    /// `http://127.0.0.1:9050`); REST calls go to `{endpoint}/bigquery/v2`, uploads to
    /// `{endpoint}/upload/bigquery/v2`.
    pub async fn new(endpoint: &str, credentials: Credentials, retry: RetryPolicy) -> Result<BigQueryClient, String> {
        let endpoint = endpoint.trim_end_matches('/');
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let auth = std::sync::Arc::new(BigQueryAuth(credentials.clone()));
        let client = gcp_bigquery_client::client_builder::ClientBuilder::new()
            .with_v2_base_url(format!("{endpoint}/bigquery/v2"))
            .with_client(http.clone())
            .build_from_authenticator(auth)
            .await
            .map_err(|e| format!("cannot build the BigQuery client: {e}"))?;
        Ok(BigQueryClient { client, http, upload_base: format!("{endpoint}/upload/bigquery/v2"), credentials, retry })
    }

    /// Creates the dataset when it does not exist. Returns true when it was created.
    #[tracing::instrument(skip_all, fields(project = %project, dataset = %dataset), err(Display))]
    pub async fn ensure_dataset(&self, project: &str, dataset: &str, location: Option<&str>) -> Result<bool, ApiError> {
        let found = self
            .retry
            .run("datasets.get", || async {
                succeeded_unless(self.client.dataset().get(project, dataset).await, ApiError::is_not_found)
            })
            .await?;
        if found {
            return Ok(false);
        }
        self.retry
            .run("datasets.insert", || async {
                let mut ds = Dataset::new(project, dataset);
                if let Some(l) = location {
                    ds = ds.location(l);
                }
                // A conflict means someone else created it in between: fine.
                succeeded_unless(self.client.dataset().create(ds).await, ApiError::is_conflict)
            })
            .await
    }

    /// Whether the table exists.
    pub async fn table_exists(&self, project: &str, dataset: &str, table: &str) -> Result<bool, ApiError> {
        self.retry
            .run("tables.get", || async {
                succeeded_unless(self.client.table().get(project, dataset, table, None).await, ApiError::is_not_found)
            })
            .await
    }

    /// Rows in the table, or None when it does not exist. Counted with a query: table metadata
    /// can lag behind loads.
    #[tracing::instrument(skip_all, fields(table = %format!("{project}.{dataset}.{table}")), err(Display))]
    pub async fn count_rows(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
        location: Option<&str>,
    ) -> Result<Option<u64>, ApiError> {
        if !self.table_exists(project, dataset, table).await? {
            return Ok(None);
        }
        // Identifiers were validated against BigQuery's rules; backticks quote them.
        let sql = format!("SELECT COUNT(*) AS n FROM `{project}.{dataset}.{table}`");
        let resp = self
            .retry
            .run("jobs.query", || async {
                let mut req = QueryRequest::new(sql.clone());
                req.use_legacy_sql = false;
                req.location = location.map(str::to_string);
                self.client.job().query(project, req).await.map_err(map_error)
            })
            .await?;
        if let Some(err) = resp.errors.as_ref().and_then(|e| e.first()) {
            return Err(ApiError::permanent(
                API,
                format!("counting rows failed: {}", err.message.clone().unwrap_or_default()),
            ));
        }
        let n = resp
            .rows
            .as_ref()
            .and_then(|r| r.first())
            .and_then(|r| r.columns.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.value.as_ref())
            .and_then(|v| v.as_str().and_then(|s| s.parse::<u64>().ok()).or_else(|| v.as_u64()))
            .ok_or_else(|| ApiError::permanent(API, "counting rows returned no number"))?;
        Ok(Some(n))
    }

    /// Uploads `ndjson` (a file of newline-delimited JSON rows) as one load job and waits for it.
    /// The load is atomic: the table changes completely or not at all. Returns the job id.
    #[tracing::instrument(skip_all, fields(table = %format!("{}.{}.{}", req.project, req.dataset, req.table), job_id = %req.job_id), err(Display))]
    pub async fn load_ndjson(&self, req: &LoadRequest<'_>, ndjson: &Path) -> Result<String, ApiError> {
        let schema: Vec<serde_json::Value> = req
            .fields
            .iter()
            .map(|f| json!({"name": f.name, "type": f.column_type.as_str(), "mode": if f.required { "REQUIRED" } else { "NULLABLE" }}))
            .collect();
        let mut job_ref = json!({"projectId": req.project, "jobId": req.job_id});
        if let Some(l) = req.location {
            job_ref["location"] = l.into();
        }
        let mut job = json!({
            "jobReference": job_ref,
            "configuration": {"load": {
                "destinationTable": {"projectId": req.project, "datasetId": req.dataset, "tableId": req.table},
                "sourceFormat": "NEWLINE_DELIMITED_JSON",
                "writeDisposition": match req.write_mode { WriteMode::Replace => "WRITE_TRUNCATE", WriteMode::Append => "WRITE_APPEND" },
                "createDisposition": "CREATE_IF_NEEDED",
                "maxBadRecords": 0,
            }},
        });
        if !schema.is_empty() {
            job["configuration"]["load"]["schema"] = json!({"fields": schema});
        }
        let boundary = format!("sheettobigquery_{:016x}", fastrand::u64(..));
        let head = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{job}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let data_len = tokio::fs::metadata(ndjson)
            .await
            .map_err(|e| ApiError::permanent(API, format!("cannot read the staged rows: {e}")))?
            .len();
        let url = format!("{}/projects/{}/jobs?uploadType=multipart", self.upload_base, req.project);
        let mut submitted = self
            .retry
            .run("jobs.insert(upload)", || async {
                let file = tokio::fs::File::open(ndjson)
                    .await
                    .map_err(|e| ApiError::permanent(API, format!("cannot read the staged rows: {e}")))?;
                let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(head.clone()))])
                    .chain(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024))
                    .chain(futures_util::stream::iter([Ok(bytes::Bytes::from(tail.clone()))]));
                let mut rb = self
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, format!("multipart/related; boundary={boundary}"))
                    .header(reqwest::header::CONTENT_LENGTH, head.len() as u64 + data_len + tail.len() as u64)
                    .body(reqwest::Body::wrap_stream(body));
                if let Some(t) = self.token().await? {
                    rb = rb.bearer_auth(t);
                }
                let resp = rb.send().await.map_err(transport)?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(transport)?;
                if status == 409 {
                    // The job exists: a previous try of this very call reached BigQuery.
                    return Ok(None);
                }
                if !(200..300).contains(&status) {
                    return Err(ApiError::from_body(API, status, &bytes));
                }
                serde_json::from_slice::<Job>(&bytes)
                    .map(Some)
                    .map_err(|e| ApiError::permanent(API, format!("unexpected load job response: {e}")))
            })
            .await?;
        if submitted.is_none() {
            tracing::info!(job_id = req.job_id, "load job already exists; re-attaching");
        }
        loop {
            let job_id = submitted
                .as_ref()
                .and_then(|j| j.job_reference.as_ref())
                .and_then(|r| r.job_id.clone())
                .unwrap_or_else(|| req.job_id.to_string());
            let state = submitted.as_ref().and_then(|j| j.status.as_ref()).and_then(|s| s.state.clone());
            if state.as_deref() == Some("DONE") {
                let status = submitted.as_ref().and_then(|j| j.status.as_ref()).expect("checked");
                if let Some(err) = &status.error_result {
                    let mut msg = err.message.clone().unwrap_or_else(|| "load job failed".into());
                    if let Some(reason) = &err.reason {
                        msg = format!("{msg} ({reason})");
                    }
                    let extra: Vec<String> = status
                        .errors
                        .iter()
                        .flatten()
                        .filter_map(|e| e.message.clone())
                        .filter(|m| Some(m) != err.message.as_ref())
                        .take(5)
                        .collect();
                    if !extra.is_empty() {
                        msg = format!("{msg}; {}", extra.join("; "));
                    }
                    return Err(ApiError::permanent(API, format!("load job {job_id} failed: {msg}")));
                }
                return Ok(job_id);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let got = self
                .retry
                .run("jobs.get", || async {
                    self.client.job().get_job(req.project, &job_id, req.location).await.map_err(map_error)
                })
                .await?;
            submitted = Some(got);
        }
    }

    /// Asks BigQuery to cancel a job (best effort, used when the job is interrupted).
    pub async fn cancel_job(&self, project: &str, job_id: &str, location: Option<&str>) {
        let _ = self.client.job().cancel_job(project, job_id, location).await;
    }

    async fn token(&self) -> Result<Option<String>, ApiError> {
        self.credentials.token(&[BIGQUERY_SCOPE]).await.map_err(|e| ApiError::permanent(API, e))
    }
}

/// Ok(true) when the call succeeded, Ok(false) when it failed with an error `tolerated` accepts
/// (404 for "does it exist", 409 for "create unless it exists").
fn succeeded_unless<T>(r: Result<T, BQError>, tolerated: fn(&ApiError) -> bool) -> Result<bool, ApiError> {
    match r.map_err(map_error) {
        Ok(_) => Ok(true),
        Err(e) if tolerated(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

fn transport(e: reqwest::Error) -> ApiError {
    ApiError::transport(API, format!("request failed: {}", super::sheets::error_chain(&e)))
}

fn map_error(e: BQError) -> ApiError {
    match e {
        BQError::ResponseError { error } => {
            let code = error.error.code.clamp(0, 999) as u16;
            let msg = if error.error.status.is_empty() {
                error.error.message
            } else {
                format!("{} ({})", error.error.message, error.error.status)
            };
            ApiError::http(API, code, msg)
        }
        BQError::RequestError(e) => match e.status() {
            Some(s) => ApiError::http(API, s.as_u16(), e.to_string()),
            None => transport(e),
        },
        BQError::NoToken | BQError::AuthError(_) | BQError::YupAuthError(_) => {
            ApiError::permanent(API, "cannot get an access token for BigQuery")
        }
        other => ApiError::permanent(API, other.to_string()),
    }
}
