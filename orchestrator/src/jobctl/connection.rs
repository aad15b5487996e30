//! `jobctl test-connection`: can this machine reach Postgres, BigQuery and Sheets with the
//! settings in use, and which credentials are those (the account, never the secret).

use std::process::ExitCode;
use std::time::Duration;

use sheettobigquery::config::parse_sheet_url;
use sheettobigquery::google::Services;
use sheettobigquery::store::{configs, migrate};

use super::{google, Ctx};
use crate::output::{Paint, Style};

/// Check that Postgres, BigQuery and the Sheets API are reachable, and show which database and
/// credentials are in use (never a password or key).
///
/// BigQuery is probed in --project (or GOOGLE_CLOUD_PROJECT, or the first config's project);
/// Sheets with --sheet (or the first config's sheet; without one, a lookup of a spreadsheet that
/// does not exist proves the API answers and accepts the credentials).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl test-connection
  jobctl test-connection --project my-project --sheet 'https://docs.google.com/spreadsheets/d/1AbC…/edit'
  GOOGLE_APPLICATION_CREDENTIALS=key.json jobctl test-connection")]
pub struct Args {
    /// Google Cloud project to probe BigQuery in.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    project: Option<String>,
    /// A sheet URL or id to read.
    #[arg(long, value_name = "URL")]
    sheet: Option<String>,
}

fn report(style: Style, what: &str, result: &Result<String, String>) {
    match result {
        Ok(m) => println!("{what:<10} {}  {m}", style.paint(Paint::Green, "ok  ")),
        Err(m) => println!("{what:<10} {}  {m}", style.paint(Paint::Red, "FAIL")),
    }
}

pub async fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    let mut first_sheet: Option<(String, String)> = None; // (project, spreadsheet id)

    // Postgres.
    let pg = async {
        let store = ctx.connect().await.map_err(|e| format!("{e:#}"))?;
        let user = ctx
            .db
            .pg_config()
            .ok()
            .and_then(|c| c.get_user().map(str::to_string))
            .unwrap_or_else(|| "(default user)".into());
        let pending = migrate::pending(&store).await.map_err(|e| e.db_message())?;
        let schema = if pending.is_empty() {
            "schema up to date".to_string()
        } else {
            format!("{} migration(s) pending: run `jobctl migrate`", pending.len())
        };
        let shape = configs::table_shape(&store).await.map_err(|e| e.db_message())?;
        if pending.is_empty() {
            if let Some(r) =
                configs::list(&store).await.map_err(|e| e.db_message())?.into_iter().find(|r| r.config.is_ok())
            {
                if let Some(s) = r.config.as_ref().ok().and_then(|c| c.sheet()) {
                    first_sheet = Some((s.project_id.clone(), s.spreadsheet_id.clone()));
                }
            }
        }
        Ok::<_, String>(format!("{} as {user}; {schema}; {} config(s)", store.describe(), shape.rows))
    }
    .await;
    failed += pg.is_err() as usize;
    report(ctx.style, "postgres", &pg);

    // Credentials and the two APIs.
    let services = match Services::from_args(&ctx.gcp).await {
        Ok(s) => s,
        Err(e) => {
            report(ctx.style, "google", &Err(e.message.clone()));
            return Ok(ExitCode::FAILURE);
        }
    };
    let bq_endpoint = ctx.gcp.bigquery_emulator_host.clone().unwrap_or_else(|| "bigquery.googleapis.com".into());
    let project = a.project.clone().or_else(|| first_sheet.as_ref().map(|(p, _)| p.clone()));
    let bq = match &project {
        Some(p) => async { google::BigQueryProbe::new(&ctx.gcp).await?.probe_project(p).await }
            .await
            .map(|()| format!("{bq_endpoint}, project {p}; credentials: {}", services.bigquery_auth))
            .map_err(|e| format!("{bq_endpoint}, project {p}: {e}; credentials: {}", services.bigquery_auth)),
        None => Err(format!(
            "no project to probe: pass --project or set GOOGLE_CLOUD_PROJECT; credentials: {}",
            services.bigquery_auth
        )),
    };
    failed += bq.is_err() as usize;
    report(ctx.style, "bigquery", &bq);

    let sheets_endpoint = ctx.gcp.sheets_emulator_host.clone().unwrap_or_else(|| "sheets.googleapis.com".into());
    let sheet_id = match &a.sheet {
        Some(s) => Some(parse_sheet_url(s).map_err(|e| anyhow::anyhow!("--sheet: {e}"))?.0),
        None => first_sheet.as_ref().map(|(_, id)| id.clone()),
    };
    let probe_id = sheet_id.clone().unwrap_or_else(|| "jobctl-connection-probe-0000".into());
    let answer = tokio::time::timeout(Duration::from_secs(30), services.sheets.tabs(&probe_id)).await;
    let sheets = match (answer, &sheet_id) {
        (Err(_), _) => Err(format!("{sheets_endpoint}: no answer within 30s")),
        (Ok(Ok(tabs)), Some(id)) => Ok(format!(
            "{sheets_endpoint}, spreadsheet {id} readable ({} tab(s)); credentials: {}",
            tabs.len(),
            services.sheets_auth
        )),
        (Ok(Ok(_)), None) => Ok(format!("{sheets_endpoint} answers; credentials: {}", services.sheets_auth)),
        // The probe id does not exist: a 404 proves the API answered and took the credentials.
        (Ok(Err(e)), None) if e.status == Some(404) => {
            Ok(format!("{sheets_endpoint} answers; credentials: {}", services.sheets_auth))
        }
        (Ok(Err(e)), id) => {
            let hint = match e.status {
                Some(404) => " (no such spreadsheet; check the URL)",
                status => google::hint(status, &e.message),
            };
            let what = id.as_deref().map(|i| format!(", spreadsheet {i}")).unwrap_or_default();
            Err(format!("{sheets_endpoint}{what}: {e}{hint}; credentials: {}", services.sheets_auth))
        }
    };
    failed += sheets.is_err() as usize;
    report(ctx.style, "sheets", &sheets);

    if failed > 0 {
        eprintln!("{failed} check(s) failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
