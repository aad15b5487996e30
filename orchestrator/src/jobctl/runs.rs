//! `jobctl runs` and `jobctl runs show ID`: the run ledger for people — what ran, when, how it
//! ended, and for a failed run the error, the cells it names, and the rows it rejected.

use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use serde_json::{json, Value};
use sheettobigquery::store::history::{self, Rejected, RunFilter, RunRow};

use super::{db_err, Ctx};
use crate::output::{self, plain, Paint, Table};

/// List runs, newest first, or show one run in full.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  jobctl runs
  jobctl runs --config sales --since 24h
  jobctl runs --failed --since 7d
  jobctl runs show 1234"
)]
pub struct Args {
    #[command(subcommand)]
    show: Option<RunsCommand>,
    /// Only runs of this config (by name).
    #[arg(long, value_name = "NAME")]
    config: Option<String>,
    /// Only failed, timed-out and abandoned runs.
    #[arg(long)]
    failed: bool,
    /// Only runs created within this long (90s, 15m, 24h, 7d, 2w).
    #[arg(long, value_name = "DURATION", value_parser = output::parse_since)]
    since: Option<chrono::Duration>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum RunsCommand {
    Show(ShowArgs),
}

/// One run in full: status, timing, rows, error, the cells it names, the rows it rejected.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl runs show 1234
  jobctl runs show 1234 --json")]
struct ShowArgs {
    /// Id of the run (the first column of `jobctl runs`).
    id: i64,
    /// At most this many rejected rows.
    #[arg(long, default_value_t = 50)]
    rejected_limit: i64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn status_paint(status: &str) -> Paint {
    match status {
        "succeeded" => Paint::Green,
        s if history::FAILED_STATUSES.contains(&s) => Paint::Red,
        _ => Paint::Yellow,
    }
}

fn duration(r: &RunRow) -> String {
    match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => output::span(f - s),
        (Some(s), None) if r.status == "running" => {
            format!("{} so far", output::span(Utc::now() - s))
        }
        _ => "-".into(),
    }
}

fn run_json(r: &RunRow) -> Value {
    json!({
        "id": r.id,
        "config_id": r.config_id,
        "config_name": r.config_name,
        "kind": r.kind,
        "status": r.status,
        "attempt": r.attempt,
        "trigger": r.trigger,
        "executor": r.executor,
        "execution_name": r.execution_name,
        "period_start": r.period_start,
        "schedule_time": r.schedule_time,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "rows_read": r.rows_read,
        "rows_written": r.rows_written,
        "error_kind": r.error_kind,
        "error_message": r.error_message,
        "details": r.details,
    })
}

pub async fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    if let Some(RunsCommand::Show(s)) = a.show {
        return show(ctx, s).await;
    }
    let store = ctx.store().await?;
    if let Some(name) = &a.config {
        if sheettobigquery::store::configs::get_by_name(&store, name).await.map_err(db_err)?.is_none() {
            // Removed configs keep their history; only refuse a name that never ran.
            let any = history::list_runs(
                &store,
                &RunFilter { config_name: Some(name.clone()), limit: 1, ..RunFilter::default() },
            )
            .await
            .map_err(db_err)?;
            if any.is_empty() {
                anyhow::bail!("no config named {name:?} and no runs of one; `jobctl configs list` shows the configs");
            }
        }
    }
    let now = Utc::now();
    let filter = RunFilter {
        config_name: a.config.clone(),
        failed_only: a.failed,
        since: a.since.map(|d| now - d),
        limit: a.limit,
    };
    let runs = history::list_runs(&store, &filter).await.map_err(db_err)?;
    if a.json {
        let v: Vec<Value> = runs.iter().map(run_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no runs match");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(vec!["ID", "CONFIG", "STATUS", "TRIGGER", "TRY", "STARTED", "TOOK", "ROWS", "ERROR"]);
    for r in &runs {
        let started = r.started_at.unwrap_or(r.created_at);
        let rows = match (r.rows_read, r.rows_written) {
            (_, Some(w)) => w.to_string(),
            (Some(rd), None) => format!("{rd} read"),
            _ => "-".into(),
        };
        let err = r.error_message.as_deref().map(|m| output::one_line(m, 70)).unwrap_or_default();
        t.row(vec![
            plain(r.id.to_string()),
            plain(&r.config_name),
            (r.status.clone(), status_paint(&r.status)),
            plain(&r.trigger),
            plain(r.attempt.to_string()),
            plain(output::relative(started, now)),
            plain(duration(r)),
            plain(rows),
            (err, Paint::Red),
        ]);
    }
    print!("{}", t.render(ctx.style));
    if runs.len() as i64 == a.limit {
        eprintln!("showing the newest {}; use --limit or --since for more", a.limit);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Ctx, a: ShowArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let r = history::get_run(&store, a.id)
        .await
        .map_err(db_err)?
        .with_context(|| format!("no run with id {}; `jobctl runs` lists recent runs", a.id))?;
    let (rejected, rejected_total) = history::rejected_rows(&store, r.id, a.rejected_limit).await.map_err(db_err)?;
    let cells: Vec<String> = r
        .details
        .get("cell_errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if a.json {
        let mut v = run_json(&r);
        v["cell_errors"] = json!(cells);
        v["rejected_rows"] = json!(rejected);
        v["rejected_total"] = json!(rejected_total);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let style = ctx.style;
    let now = Utc::now();
    let mut s = String::new();
    let line = |s: &mut String, label: &str, value: &str| s.push_str(&format!("{label:<14} {value}\n"));
    line(&mut s, "run", &format!("{} (attempt {})", r.id, r.attempt));
    line(&mut s, "config", &format!("{} (id {}, {})", r.config_name, r.config_id, r.kind));
    line(&mut s, "status", &style.paint(status_paint(&r.status), &r.status));
    line(&mut s, "trigger", &r.trigger);
    if let Some(p) = r.period_start {
        line(&mut s, "period", &output::time(p));
    }
    if let Some(e) = r.execution_name.as_deref().or(r.executor.as_deref()) {
        line(&mut s, "executed by", e);
    }
    line(&mut s, "created", &format!("{} ({})", output::time(r.created_at), output::relative(r.created_at, now)));
    if let Some(t) = r.started_at {
        line(&mut s, "started", &output::time(t));
    }
    if let Some(t) = r.finished_at {
        line(&mut s, "finished", &format!("{} (took {})", output::time(t), duration(&r)));
    }
    if r.rows_read.is_some() || r.rows_written.is_some() {
        let f = |n: Option<i64>| n.map_or("-".to_string(), |n| n.to_string());
        line(&mut s, "rows", &format!("{} read, {} written", f(r.rows_read), f(r.rows_written)));
    }
    if let Some(d) = r.details.get("destination").and_then(Value::as_str) {
        line(&mut s, "destination", d);
    }
    if let Some(p) = r.details.get("progress") {
        if r.status == "running" {
            line(&mut s, "progress", &format!("{} of {} rows", p["processed"], p["total"]));
        }
    }
    if let Some(msg) = &r.error_message {
        let kind = r.error_kind.as_deref().unwrap_or("error");
        line(&mut s, "error", &style.paint(Paint::Red, &format!("[{kind}] {msg}")));
    }
    if !cells.is_empty() {
        s.push_str(&format!("cells ({}):\n", cells.len()));
        for c in &cells {
            s.push_str(&format!("  {c}\n"));
        }
    }
    if rejected_total > 0 {
        s.push_str(&format!("rejected rows ({rejected_total}):\n"));
        for row in &rejected {
            s.push_str(&format!("  {}\n", rejected_line(row)));
        }
        if rejected_total > rejected.len() as i64 {
            s.push_str(&format!("  … {} more (--rejected-limit)\n", rejected_total - rejected.len() as i64));
        }
    }
    print!("{s}");
    Ok(ExitCode::SUCCESS)
}

/// `Sheet1!B4 key {"sku":"A-1"}: reason` (or `row 17 …` when there is no cell).
fn rejected_line(r: &Rejected) -> String {
    let mut parts = Vec::new();
    match (&r.cell_ref, r.row_number) {
        (Some(c), _) => parts.push(c.clone()),
        (None, Some(n)) => parts.push(format!("row {n}")),
        (None, None) => {}
    }
    if let Some(k) = &r.key {
        parts.push(format!("key {k}"));
    }
    if parts.is_empty() {
        r.reason.clone()
    } else {
        format!("{}: {}", parts.join(" "), r.reason)
    }
}
