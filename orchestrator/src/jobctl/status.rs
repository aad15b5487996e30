//! `jobctl status`: one line per config — schedule, last outcome, failing streak — so a person
//! sees at a glance what is healthy, what is failing and what is due.

use std::collections::HashMap;
use std::process::ExitCode;

use chrono::Utc;
use serde_json::json;
use sheettobigquery::store::history::{self, ConfigStatus};

use super::due::OrchestratorSettings;
use super::{db_err, Ctx};
use crate::output::{self, plain, Paint, Table};
use crate::preview::{self, DueEntry};

/// One line per config: kind, active, frequency, last run, next due, last outcome and rows,
/// failing streak.
///
/// "Due" is the orchestrator's own decision (the preview `jobctl due` shows): active, its period
/// elapsed (last_run + run_frequency_hours, by the database's clock), no run in flight, and
/// failed runs retried within their period.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl status
  jobctl status --failing                   only configs whose latest runs failed
  jobctl status --due --kind sheet_to_bigquery
  jobctl status --json | jq '.[] | select(.failing_streak > 2)'")]
pub struct Args {
    /// Only configs whose latest finished run failed.
    #[arg(long)]
    failing: bool,
    /// Only configs that are due now.
    #[arg(long)]
    due: bool,
    /// Only configs of this kind (sheet_to_bigquery, postgres_upsert, postgres_sync, sql_transform).
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Print JSON (one array of objects) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    orchestrator: OrchestratorSettings,
}

fn failing(s: &ConfigStatus) -> bool {
    s.failing_streak > 0 && s.last_status.as_deref() != Some("succeeded")
}

pub async fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    if let Some(k) = &a.kind {
        if sheettobigquery::config::Kind::parse(k).is_none() {
            let known: Vec<&str> = sheettobigquery::config::Kind::ALL.iter().map(|k| k.as_str()).collect();
            anyhow::bail!("unknown kind {k:?}; use one of {}", known.join(", "));
        }
    }
    let options = a.orchestrator.options(true)?;
    let store = ctx.store().await?;
    let now = Utc::now();
    let all = history::config_status(&store).await.map_err(db_err)?;
    // Whether a config is due is the orchestrator's decision, not a second copy of it. A config
    // the preview does not list is outside the orchestrator's configs view: never due.
    let due: HashMap<i64, DueEntry> =
        preview::due_report(&store, &options).await.map_err(db_err)?.into_iter().map(|e| (e.config_id, e)).collect();
    let is_due = |s: &ConfigStatus| due.get(&s.id).is_some_and(|e| e.due);
    let total = all.len();
    let rows: Vec<ConfigStatus> = all
        .into_iter()
        .filter(|s| !a.failing || failing(s))
        .filter(|s| !a.due || is_due(s))
        .filter(|s| a.kind.as_ref().is_none_or(|k| &s.kind == k))
        .collect();
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "name": s.name,
                    "kind": s.kind,
                    "is_active": s.is_active,
                    "run_frequency_hours": s.run_frequency_hours,
                    "migration_status": s.migration_status,
                    "last_run": s.last_run,
                    // Never run: due from the clock the preview used.
                    "next_due": due.get(&s.id).map(|e| e.due_at.unwrap_or(e.as_of)),
                    "is_due": is_due(s),
                    "due_state": due.get(&s.id).map(|e| e.state),
                    "due_reason": due.get(&s.id).map(|e| e.reason.clone()),
                    "in_flight": s.in_flight,
                    "last_run_id": s.last_run_id,
                    "last_status": s.last_status,
                    "last_rows_written": s.last_rows_written,
                    "last_finished_at": s.last_finished_at,
                    "last_error": s.last_error,
                    "failing_streak": s.failing_streak,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        if total == 0 {
            println!("no configs yet; add one with `jobctl configs add` or `jobctl configs import FILE`");
        } else {
            println!("no config matches ({total} in total)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(vec!["NAME", "KIND", "ACTIVE", "EVERY", "LAST RUN", "NEXT DUE", "LAST OUTCOME", "STREAK"]);
    for s in &rows {
        let active = if s.is_active { plain("yes") } else { ("no".into(), Paint::Dim) };
        let last_run = s.last_run.map_or_else(|| "never".into(), |t| output::relative(t, now));
        let next_due = match due.get(&s.id) {
            _ if !s.is_active => ("-".into(), Paint::Dim),
            Some(e) if e.due => (output::one_line(&format!("due ({})", e.reason), 40), Paint::Yellow),
            Some(e) if e.state == "not_due" => {
                plain(e.due_at.map_or_else(|| e.reason.clone(), |t| output::relative(t, now)))
            }
            Some(e) => (output::one_line(&e.reason, 40), Paint::Yellow),
            None if s.in_flight => ("running".into(), Paint::Yellow),
            None => (format!("not in {}", options.source.name()), Paint::Dim),
        };
        let outcome = match (s.last_status.as_deref(), s.last_rows_written) {
            (None, _) => ("-".into(), Paint::Dim),
            (Some("succeeded"), Some(n)) => (format!("succeeded ({n} rows)"), Paint::Green),
            (Some("succeeded"), None) => ("succeeded".into(), Paint::Green),
            (Some(st), _) if history::FAILED_STATUSES.contains(&st) => (st.to_string(), Paint::Red),
            (Some(st), _) => (st.to_string(), Paint::Yellow),
        };
        let streak = match s.failing_streak {
            0 => plain("0"),
            n => (n.to_string(), Paint::Red),
        };
        t.row(vec![
            plain(&s.name),
            plain(&s.kind),
            active,
            plain(format!("{}h", s.run_frequency_hours)),
            plain(last_run),
            next_due,
            outcome,
            streak,
        ]);
    }
    print!("{}", t.render(ctx.style));
    Ok(ExitCode::SUCCESS)
}
