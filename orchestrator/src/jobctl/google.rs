//! Reachability probes for `configs validate --online`, `test-connection` and `compare`: read a
//! sheet's tabs through the shared Sheets client, and look up a BigQuery dataset and table over
//! REST (the shared client only creates datasets, and these checks must never write).

use std::time::Duration;

use sheettobigquery::config::SheetToBigQuery;
use sheettobigquery::google::auth::{Credentials, BIGQUERY_SCOPE};
use sheettobigquery::google::retry::ApiError;
use sheettobigquery::google::{GcpArgs, Services};

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

/// Read-only BigQuery REST lookups (the shared client only creates datasets, and these checks
/// must never write): one HTTP client and one set of credentials for every lookup of a command.
pub struct BigQueryProbe {
    http: reqwest::Client,
    base: String,
    creds: Credentials,
}

impl BigQueryProbe {
    pub async fn new(gcp: &GcpArgs) -> Result<BigQueryProbe, String> {
        let creds = if gcp.bigquery_emulator_host.is_some() {
            Credentials::none()
        } else {
            Credentials::application_default().await?
        };
        let http = reqwest::Client::builder().timeout(PROBE_TIMEOUT).build().map_err(|e| e.to_string())?;
        Ok(BigQueryProbe { http, base: gcp.bigquery_url(), creds })
    }

    /// GET on the BigQuery REST API: whether the resource exists (200) or not (404).
    async fn exists(&self, path: &str) -> Result<bool, String> {
        let mut req = self.http.get(format!("{}/bigquery/v2/{path}", self.base));
        if let Some(t) = self.creds.token(&[BIGQUERY_SCOPE]).await? {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = resp.status().as_u16();
        match status {
            200 => Ok(true),
            404 => Ok(false),
            s => {
                let body = resp.bytes().await.unwrap_or_default();
                let hint = match s {
                    401 => " (the credentials were refused; check GOOGLE_APPLICATION_CREDENTIALS)",
                    403 => " (grant the account BigQuery access on the project: roles/bigquery.dataEditor and roles/bigquery.jobUser)",
                    _ => "",
                };
                Err(format!("HTTP {s}: {}{hint}", ApiError::from_body("bigquery", s, &body).message))
            }
        }
    }

    /// Whether the dataset (and table) can be seen. A missing dataset or table is fine: the first
    /// run creates them.
    pub async fn check_dataset(&self, project: &str, dataset: &str, table: &str) -> Result<String, String> {
        let ds = self
            .exists(&format!("projects/{project}/datasets/{dataset}"))
            .await
            .map_err(|e| format!("dataset {project}.{dataset}: {e}"))?;
        if !ds {
            return Ok(format!(
                "dataset {project}.{dataset} reachable but does not exist yet (the first run creates it)"
            ));
        }
        let t = self
            .exists(&format!("projects/{project}/datasets/{dataset}/tables/{table}"))
            .await
            .map_err(|e| format!("table {project}.{dataset}.{table}: {e}"))?;
        Ok(if t {
            format!("dataset {project}.{dataset} reachable; table {table} exists")
        } else {
            format!(
                "dataset {project}.{dataset} reachable; table {table} does not exist yet (the first run creates it)"
            )
        })
    }

    /// Lists (at most one) dataset of the project: proves the API answers and the account may read
    /// it.
    pub async fn probe_project(&self, project: &str) -> Result<(), String> {
        match self.exists(&format!("projects/{project}/datasets?maxResults=1")).await? {
            true => Ok(()),
            false => Err(format!("project {project} not found")),
        }
    }
}
