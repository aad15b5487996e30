//! Clients for the Google APIs the job talks to, and the settings that point them at real
//! Google or at local emulators.

pub mod auth;
pub mod bigquery;
pub mod retry;
pub mod sheets;

use crate::error::JobError;
use auth::Credentials;
use bigquery::BigQueryClient;
use retry::RetryPolicy;
use sheets::SheetsClient;

/// Google API endpoints and credentials. Setting an emulator host switches authentication off
/// for that API.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GcpArgs {
    /// Sheets API endpoint for a local server instead of sheets.googleapis.com
    /// (`127.0.0.1:8085` or `http://127.0.0.1:8085`); no authentication is sent to it.
    #[arg(long = "sheets-endpoint", env = "SHEETS_EMULATOR_HOST", global = true)]
    pub sheets_emulator_host: Option<String>,
    /// BigQuery endpoint of an emulator instead of bigquery.googleapis.com
    /// (`127.0.0.1:9050` or `http://127.0.0.1:9050`); no authentication is sent to it.
    #[arg(long = "bigquery-endpoint", env = "BIGQUERY_EMULATOR_HOST", global = true)]
    pub bigquery_emulator_host: Option<String>,
}

impl GcpArgs {
    /// The Sheets API root of the emulator, if one is set (None: sheets.googleapis.com).
    pub fn sheets_url(&self) -> Option<String> {
        self.sheets_emulator_host.as_deref().map(as_url)
    }

    /// The BigQuery API root: the emulator's, or `https://bigquery.googleapis.com`.
    pub fn bigquery_url(&self) -> String {
        self.bigquery_emulator_host.as_deref().map(as_url).unwrap_or_else(|| bigquery::DEFAULT_ENDPOINT.to_string())
    }
}

fn as_url(host: &str) -> String {
    let h = host.trim().trim_end_matches('/');
    if h.starts_with("http://") || h.starts_with("https://") {
        h.to_string()
    } else {
        format!("http://{h}")
    }
}

/// The API clients one run uses.
#[derive(Clone)]
pub struct Services {
    pub sheets: SheetsClient,
    pub bigquery: BigQueryClient,
    pub sheets_auth: String,
    pub bigquery_auth: String,
}

impl Services {
    pub async fn from_args(args: &GcpArgs) -> Result<Services, JobError> {
        let retry = RetryPolicy::default();
        let needs_adc = args.sheets_emulator_host.is_none() || args.bigquery_emulator_host.is_none();
        let adc = if needs_adc {
            Some(Credentials::application_default().await.map_err(|e| {
                JobError::config(format!(
                    "{e}; set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run on Cloud Run with a service account, or point SHEETS_EMULATOR_HOST/BIGQUERY_EMULATOR_HOST at local servers"
                ))
            })?)
        } else {
            None
        };
        let pick =
            |emulated: bool| if emulated { Credentials::none() } else { adc.clone().expect("adc when not emulated") };
        let sheets_creds = pick(args.sheets_emulator_host.is_some());
        let bq_creds = pick(args.bigquery_emulator_host.is_some());
        let sheets_auth = sheets_creds.describe().to_string();
        let bigquery_auth = bq_creds.describe().to_string();
        let sheets = SheetsClient::new(args.sheets_url().as_deref(), sheets_creds, retry);
        let bigquery = BigQueryClient::new(&args.bigquery_url(), bq_creds, retry).await.map_err(JobError::internal)?;
        Ok(Services { sheets, bigquery, sheets_auth, bigquery_auth })
    }
}
