//! Reachability probes for `configs validate --online`, `test-connection` and `compare`: read a
//! sheet's tabs through the shared Sheets client, and look up a BigQuery dataset and table over
//! REST (the shared client only creates datasets, and these checks must never write).

use std::time::Duration;

use serde_json::Value;
use sheettobigquery::config::SheetToBigQuery;
use sheettobigquery::google::auth::{Credentials, BIGQUERY_SCOPE};
use sheettobigquery::google::{bigquery, GcpArgs, Services};

const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Advice for a failed Google API call, by status; a token failure has no status.
pub fn hint(status: Option<u16>, message: &str) -> &'static str {
    match status {
        None if message.contains("access token") => {
            " (no usable credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run `gcloud auth application-default login`, or point SHEETS_EMULATOR_HOST/BIGQUERY_EMULATOR_HOST at local servers)"
        }
        Some(401) => " (the credentials were refused; check GOOGLE_APPLICATION_CREDENTIALS)",
        Some(403) => " (share the spreadsheet with the account in use, and check the API is enabled)",
        Some(404) => " (check google_sheet_url)",
        _ => "",
    }
}

/// Reads the spreadsheet's tabs and finds the configured one: `Ok("\"Sheet1\" (gid 0, 120 rows)")`.
pub async fn check_sheet(services: &Services, s: &SheetToBigQuery) -> Result<String, String> {
    let tabs = tokio::time::timeout(PROBE_TIMEOUT, services.sheets.tabs(&s.spreadsheet_id))
        .await
        .map_err(|_| format!("{}: no answer within {}s", s.spreadsheet_id, PROBE_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{}: {e}{}", s.spreadsheet_id, hint(e.status, &e.message)))?;
    let wanted = s
        .range
        .as_deref()
        .and_then(|r| sheettobigquery::a1::A1Range::parse(r).ok())
        .and_then(|r| r.tab)
        .or_else(|| s.worksheet.clone());
    let list = || tabs.iter().map(|t| format!("{:?}", t.title)).collect::<Vec<_>>().join(", ");
    let tab = if let Some(title) = &wanted {
        tabs.iter()
            .find(|t| t.title.eq_ignore_ascii_case(title))
            .ok_or_else(|| format!("{}: has no tab named {title:?} (tabs: {})", s.spreadsheet_id, list()))?
    } else if let Some(gid) = s.gid {
        tabs.iter()
            .find(|t| t.sheet_id == gid)
            .ok_or_else(|| format!("{}: has no tab with gid {gid} (tabs: {})", s.spreadsheet_id, list()))?
    } else {
        tabs.first().ok_or_else(|| format!("{}: has no tabs", s.spreadsheet_id))?
    };
    Ok(format!("{} readable: tab {:?} (gid {}, {} rows)", s.spreadsheet_id, tab.title, tab.sheet_id, tab.row_count))
}

fn endpoint(gcp: &GcpArgs) -> String {
    match gcp.bigquery_emulator_host.as_deref().map(|h| h.trim().trim_end_matches('/')) {
        Some(h) if h.starts_with("http://") || h.starts_with("https://") => h.to_string(),
        Some(h) => format!("http://{h}"),
        None => bigquery::DEFAULT_ENDPOINT.to_string(),
    }
}

/// GET on the BigQuery REST API: Ok(Some(body)) on 200, Ok(None) on 404.
async fn bq_get(gcp: &GcpArgs, path: &str) -> Result<Option<Value>, String> {
    let token = if gcp.bigquery_emulator_host.is_some() {
        None
    } else {
        let creds = Credentials::application_default().await?;
        creds.token(&[BIGQUERY_SCOPE]).await?
    };
    let http = reqwest::Client::builder().timeout(PROBE_TIMEOUT).build().map_err(|e| e.to_string())?;
    let url = format!("{}/bigquery/v2/{path}", endpoint(gcp));
    let mut req = http.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| format!("cannot reach {}: {e}", endpoint(gcp)))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    match status {
        200 => Ok(Some(body)),
        404 => Ok(None),
        s => {
            let msg = body.pointer("/error/message").and_then(Value::as_str).unwrap_or("no message");
            let hint = match s {
                401 => " (the credentials were refused; check GOOGLE_APPLICATION_CREDENTIALS)",
                403 => " (grant the account BigQuery access on the project: roles/bigquery.dataEditor and roles/bigquery.jobUser)",
                _ => "",
            };
            Err(format!("HTTP {s}: {msg}{hint}"))
        }
    }
}

/// Whether the dataset (and table) can be seen. A missing dataset or table is fine: the first
/// run creates them.
pub async fn check_dataset(gcp: &GcpArgs, project: &str, dataset: &str, table: &str) -> Result<String, String> {
    let ds = bq_get(gcp, &format!("projects/{project}/datasets/{dataset}"))
        .await
        .map_err(|e| format!("dataset {project}.{dataset}: {e}"))?;
    if ds.is_none() {
        return Ok(format!("dataset {project}.{dataset} reachable but does not exist yet (the first run creates it)"));
    }
    let t = bq_get(gcp, &format!("projects/{project}/datasets/{dataset}/tables/{table}"))
        .await
        .map_err(|e| format!("table {project}.{dataset}.{table}: {e}"))?;
    Ok(match t {
        Some(_) => format!("dataset {project}.{dataset} reachable; table {table} exists"),
        None => format!(
            "dataset {project}.{dataset} reachable; table {table} does not exist yet (the first run creates it)"
        ),
    })
}

/// Lists (at most one) dataset of the project: proves the API answers and the account may read it.
pub async fn probe_project(gcp: &GcpArgs, project: &str) -> Result<(), String> {
    match bq_get(gcp, &format!("projects/{project}/datasets?maxResults=1")).await? {
        Some(_) => Ok(()),
        None => Err(format!("project {project} not found")),
    }
}
