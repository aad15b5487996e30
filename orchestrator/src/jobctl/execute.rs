//! `jobctl execute`: runs one config now through `sheettobigquery::runner::execute`, the code
//! path of the `job` binary (same validation, ledger row, load and exit code), then prints a
//! summary for a person: rows read and loaded, columns and their types, destination, duration.
//! The job's log lines go to stderr so that stdout holds only the summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::ArgGroup;
use serde_json::{json, Value};
use sheettobigquery::error::ErrorKind;
use sheettobigquery::runner::{self, ConfigSource, JobOutcome, JobRequest};
use sheettobigquery::store::configs;
use sheettobigquery::telemetry::{self, LogFormat, LogTarget};

use super::files::{self, Format};
use super::{db_err, Ctx};
use crate::output::{self, Paint};
use crate::tick::hostname;

/// Run one config now, exactly as the job would, and print a summary.
///
/// The config comes from a file (the existing deployment's JSON format, or YAML), or from the
/// database by id or name. A config from the database gets a `manual` row in the run ledger and
/// advances its last_run on success, like any run. The exit code is the job's: 0 success,
/// 2 bad configuration, 3 source, 4 destination, 5 validation, 6 database, 130 interrupted.
#[derive(Debug, clap::Args)]
#[command(
    group(ArgGroup::new("source").required(true).args(["config_file", "config_id", "config"])),
    after_help = "Examples:
  jobctl execute --config-file test_config.json
  jobctl execute --config-id 42
  jobctl execute --config sales --log-format json
  jobctl execute --config-file sales.json --json     summary as one JSON object"
)]
pub struct Args {
    /// Path of a config file: JSON in the existing deployment's format, or YAML.
    #[arg(long, value_name = "PATH")]
    config_file: Option<PathBuf>,
    /// Id of a row of sheet_to_bigquery_configs (needs the database).
    #[arg(long, value_name = "ID")]
    config_id: Option<i64>,
    /// Name of a stored config (needs the database).
    #[arg(long, value_name = "NAME")]
    config: Option<String>,
    /// Pre-flight only: check connections, the target and permissions; write nothing (kinds that
    /// write to Postgres).
    #[arg(long)]
    test_only: bool,
    /// Skip the backup taken before writing (refused when ENVIRONMENT=production).
    #[arg(long)]
    skip_backup: bool,
    /// Format of the job's log lines on stderr: json, text, or auto (text on a terminal).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    // Logs like the job does, but on stderr: stdout holds the summary.
    telemetry::init_with(a.log_format, LogTarget::Stderr, "info");
    let source = if let Some(path) = &a.config_file {
        match Format::detect(path) {
            // YAML is turned into the JSON the job reads; everything else goes to the job as is,
            // so its messages are the job's.
            Some(Format::Yaml) => {
                let mut entries = files::read_entries(path, Some(Format::Yaml))?;
                if entries.len() != 1 {
                    anyhow::bail!(
                        "{} holds {} configs; execute runs exactly one (import them with `jobctl configs import`)",
                        path.display(),
                        entries.len()
                    );
                }
                ConfigSource::Json(entries.remove(0).value.to_string())
            }
            Some(Format::Csv) => anyhow::bail!(
                "{}: execute takes one config as JSON or YAML; import CSV files with `jobctl configs import`",
                path.display()
            ),
            _ => ConfigSource::File(path.clone()),
        }
    } else if let Some(id) = a.config_id {
        ConfigSource::Id(id)
    } else if let Some(name) = &a.config {
        let store = ctx.store().await?;
        let row = configs::get_by_name(&store, name)
            .await
            .map_err(db_err)?
            .with_context(|| format!("no config named {name:?}; `jobctl configs list` shows them"))?;
        ConfigSource::Id(row.id)
    } else {
        unreachable!("clap requires one source")
    };
    let req = JobRequest {
        source,
        run_id: None,
        run_attempt: None,
        db: ctx.db.clone(),
        gcp: ctx.gcp.clone(),
        lease: Duration::from_secs(120),
        owner: format!("jobctl@{}:{}", hostname(), std::process::id()),
        options: sheettobigquery::kinds::RunOptions { test_only: a.test_only, skip_backup: a.skip_backup },
    };
    let outcome = runner::execute(req).await;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary_json(&outcome))?);
    } else {
        print!("{}", summary_text(&outcome, ctx.style));
    }
    Ok(ExitCode::from(outcome.exit_code()))
}

fn summary_json(o: &JobOutcome) -> Value {
    let mut v = json!({
        "config": o.config_name,
        "run_id": o.run_id,
        "exit_code": o.exit_code(),
        "duration_ms": o.elapsed.as_millis() as u64,
    });
    match &o.result {
        Ok(r) => {
            v["status"] = "succeeded".into();
            v["rows_read"] = r.rows_read.into();
            v["rows_written"] = r.rows_written.into();
            v["summary"] = r.summary.clone().into();
            v["details"] = r.details.clone();
        }
        Err(e) => {
            v["status"] = "failed".into();
            v["error_kind"] = e.kind.as_str().into();
            v["error"] = e.message.clone().into();
            v["cell_errors"] = e.details.clone().into();
            v["next_step"] = next_step(e.kind, o.config_name.as_deref()).into();
        }
    }
    v
}

/// What to do about a failure of this kind.
fn next_step(kind: ErrorKind, config: Option<&str>) -> String {
    let name = config.unwrap_or("NAME");
    match kind {
        ErrorKind::Config => "fix the config and check it with `jobctl configs validate FILE` (or `--name NAME`)".into(),
        ErrorKind::Source => format!(
            "check google_sheet_url and that the spreadsheet is shared with the job's account (`jobctl configs validate --name {name} --online`)"
        ),
        ErrorKind::Destination => "check the dataset and table and the account's BigQuery permissions (`jobctl test-connection`)".into(),
        ErrorKind::Validation => "fix the cells listed above in the sheet, or relax the schema or guards of the config".into(),
        ErrorKind::Ledger => format!("check the database (`jobctl test-connection`) and the config's runs (`jobctl runs --config {name}`)"),
        ErrorKind::Interrupted => "nothing was written; run it again".into(),
        _ => "this is unexpected; the log lines on stderr have the details".into(),
    }
}

fn summary_text(o: &JobOutcome, style: output::Style) -> String {
    let name = o.config_name.as_deref().map(|n| format!("{n:?}")).unwrap_or_else(|| "the config".into());
    let run = o.run_id.map(|r| format!(" (run {r})")).unwrap_or_default();
    let took = output::seconds(o.elapsed);
    let mut s = String::new();
    let row = |s: &mut String, label: &str, value: &str| s.push_str(&format!("  {label:<12} {value}\n"));
    match &o.result {
        Ok(r) => {
            s.push_str(&format!("{} {name}{run} in {took}\n", style.paint(Paint::Green, "Succeeded:")));
            row(&mut s, "rows read", &r.rows_read.to_string());
            row(&mut s, "rows loaded", &r.rows_written.to_string());
            if let Some(dest) = r.details.get("destination").and_then(Value::as_str) {
                let mode = r.details.get("write_mode").and_then(Value::as_str).unwrap_or("");
                row(&mut s, "destination", &format!("{dest} ({mode})"));
            }
            if let Some(cols) = r.details.get("columns").and_then(Value::as_array) {
                for (i, c) in cols.iter().enumerate() {
                    let header = c.get("header").and_then(Value::as_str).unwrap_or("");
                    let column = c.get("column").and_then(Value::as_str).unwrap_or("");
                    let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
                    let mapped = if header == column || header.is_empty() {
                        String::new()
                    } else {
                        format!("  (from {header:?})")
                    };
                    row(&mut s, if i == 0 { "columns" } else { "" }, &format!("{column} {ty}{mapped}"));
                }
            }
            row(&mut s, "duration", &took);
            if !r.summary.is_empty() {
                row(&mut s, "summary", &r.summary);
            }
        }
        Err(e) => {
            s.push_str(&format!(
                "{} {name}{run}: {} error (exit code {}) after {took}\n",
                style.paint(Paint::Red, "Failed:"),
                e.kind,
                e.kind.exit_code()
            ));
            row(&mut s, "error", &e.message);
            for (i, d) in e.details.iter().enumerate() {
                row(&mut s, if i == 0 { "cells" } else { "" }, d);
            }
            row(&mut s, "next", &next_step(e.kind, o.config_name.as_deref()));
        }
    }
    s
}
