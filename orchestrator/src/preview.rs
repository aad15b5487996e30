//! What is due and why (`orchestrator run --dry-run`, `orchestrator preview`, `jobctl due`,
//! `jobctl status`): the configs the next tick would dispatch — never run, or overdue by how long
//! — and, with `--all`, every other config and when it becomes due. Reads only; the decision is
//! the same [`classify`] the orchestrator's claim follows, with the same settings (attempts,
//! backoff, configs view) resolved the same way (flags, environment, settings file, defaults).
//!
//! ```no_run
//! # async fn demo(store: &sheettobigquery::store::Store) -> anyhow::Result<()> {
//! use sheettobigquery_orchestrator::preview::{self, DueArgs};
//! let options = preview::resolve_options(&DueArgs::default(), None, None, false)?;
//! let entries = preview::due_report(store, &options).await?;
//! print!("{}", preview::render_table(&entries, false));
//! # Ok(()) }
//! ```

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sheettobigquery::store::claims::{self, classify, AttemptPolicy, ConfigsSource, DueState, DueWhy, ScanParams};
use sheettobigquery::store::{Store, StoreResult};

use crate::output::{Paint, Style};
pub use crate::settings::DueArgs;
use crate::settings::{self, fmt_duration, Settings, SettingsError, TickArgs};

/// What to preview.
#[derive(Debug, Clone, Default)]
pub struct PreviewOptions {
    /// The table or view configs are read from (the orchestrator's `--configs-view`).
    pub source: ConfigsSource,
    /// As if it were this time; None uses the database clock.
    pub now: Option<DateTime<Utc>>,
    /// Also the configs that are not due, and when each becomes due.
    pub include_all: bool,
    /// The retry policy (max attempts, backoff) the orchestrator runs with.
    pub policy: AttemptPolicy,
}

/// One config in the preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueEntry {
    pub config_id: i64,
    pub name: String,
    pub kind: String,
    pub is_active: bool,
    pub run_frequency_hours: i32,
    pub last_run: Option<DateTime<Utc>>,
    /// The next tick would dispatch it.
    pub due: bool,
    /// `due`, `not_due`, `inactive`, `in_flight`, `retry_wait`, `exhausted` or `done_this_period`.
    pub state: &'static str,
    /// Why, for people: `never run`, `overdue by 2h 5m`, `due in 3h`, `running (run 12)`, …
    pub reason: String,
    /// Seconds past due (due configs that ran before).
    pub overdue_secs: Option<i64>,
    /// When it becomes (or became) due: `last_run + run_frequency_hours`, the retry time, or the
    /// next period for exhausted configs. None when it never ran.
    pub due_at: Option<DateTime<Utc>>,
    /// The attempt a dispatch would be (retries count up within a period).
    pub attempt: Option<i32>,
    /// The run involved: in flight, to be retried, or exhausted.
    pub run_id: Option<i64>,
    /// The clock the preview used.
    pub as_of: DateTime<Utc>,
}

/// What a tick with these settings decides with.
pub fn preview_options(s: &Settings, now: Option<DateTime<Utc>>, include_all: bool) -> PreviewOptions {
    PreviewOptions { source: s.configs.clone(), now, include_all, policy: s.retry }
}

/// The options for `args` resolved as a tick resolves its settings: flag or environment, then the
/// settings `file`, then the defaults.
pub fn resolve_options(
    args: &DueArgs,
    file: Option<&Path>,
    now: Option<DateTime<Utc>>,
    include_all: bool,
) -> Result<PreviewOptions, SettingsError> {
    let tick = TickArgs { due: args.clone(), ..TickArgs::default() };
    Ok(preview_options(&settings::resolve(&tick, file)?, now, include_all))
}

/// The preview: due configs first (never run, then most overdue), then the rest by when they
/// become due.
pub async fn due_report(store: &Store, o: &PreviewOptions) -> StoreResult<Vec<DueEntry>> {
    let rows = claims::scan(
        store,
        &ScanParams { source: &o.source, now: o.now, include_all: o.include_all, policy: o.policy },
    )
    .await?;
    let mut entries: Vec<DueEntry> = rows
        .iter()
        .map(|r| {
            let st = classify(r, &o.policy);
            let mut e = DueEntry {
                config_id: r.config_id,
                name: r.name.clone(),
                kind: r.kind.clone(),
                is_active: r.is_active,
                run_frequency_hours: r.run_frequency_hours,
                last_run: r.last_run,
                due: st.is_due(),
                state: "",
                reason: String::new(),
                overdue_secs: None,
                due_at: r.due_at,
                attempt: None,
                run_id: None,
                as_of: r.now,
            };
            let until = |t: DateTime<Utc>| fmt_duration((t - r.now).to_std().unwrap_or_default());
            match st {
                DueState::Due { why, attempt, retry_of } => {
                    e.state = "due";
                    e.attempt = Some(attempt);
                    e.run_id = retry_of;
                    e.reason = match why {
                        DueWhy::NeverRun => "never run".to_string(),
                        DueWhy::Overdue { by_secs } => {
                            e.overdue_secs = Some(by_secs);
                            if by_secs < 1 {
                                "due now".to_string()
                            } else {
                                format!("overdue by {}", fmt_duration(std::time::Duration::from_secs(by_secs as u64)))
                            }
                        }
                    };
                    if let Some(id) = retry_of {
                        e.reason
                            .push_str(&format!("; attempt {attempt} of {} (retrying run {id})", o.policy.max_attempts));
                    }
                }
                DueState::NotYetDue { due_at } => {
                    e.state = "not_due";
                    e.reason = format!("due in {}", until(due_at));
                }
                DueState::Inactive => {
                    e.state = "inactive";
                    e.reason = "inactive".into();
                }
                DueState::InFlight { run } => {
                    e.state = "in_flight";
                    e.run_id = Some(run.id);
                    e.reason = format!("{} (run {}, attempt {})", run.status, run.id, run.attempt);
                }
                DueState::RetryWait { run_id, next_attempt, at } => {
                    e.state = "retry_wait";
                    e.run_id = Some(run_id);
                    e.attempt = Some(next_attempt);
                    e.due_at = Some(at);
                    e.reason = format!("run {run_id} failed; attempt {next_attempt} in {}", until(at));
                }
                DueState::Exhausted { run_id, attempts, next_period_at } => {
                    e.state = "exhausted";
                    e.run_id = Some(run_id);
                    e.due_at = Some(next_period_at);
                    e.reason = format!(
                        "all {attempts} attempts failed (run {run_id}); next period in {}",
                        until(next_period_at)
                    );
                }
                DueState::DoneThisPeriod { run_id, status, next_period_at } => {
                    e.state = "done_this_period";
                    e.run_id = Some(run_id);
                    e.due_at = Some(next_period_at);
                    e.reason =
                        format!("run {run_id} already {status} this period; next period in {}", until(next_period_at));
                }
            }
            e
        })
        .filter(|e| o.include_all || e.due)
        .collect();
    entries.sort_by(|a, b| {
        b.due
            .cmp(&a.due)
            .then_with(|| a.due_at.is_some().cmp(&b.due_at.is_some()))
            .then_with(|| a.due_at.cmp(&b.due_at))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(entries)
}

fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|| "-".into())
}

/// A table for people, with a summary line.
pub fn render_table(entries: &[DueEntry], color: bool) -> String {
    let as_of = entries.first().map(|e| e.as_of.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    let due = entries.iter().filter(|e| e.due).count();
    if entries.is_empty() {
        return "nothing is due\n".to_string();
    }
    let headers = ["CONFIG", "ID", "STATE", "WHY", "LAST RUN", "EVERY"];
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                e.config_id.to_string(),
                e.state.replace('_', " "),
                e.reason.clone(),
                fmt_time(e.last_run),
                format!("{}h", e.run_frequency_hours),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let style = Style { color };
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String, state: Paint| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            let cell = if i == 2 { style.paint(state, c) } else { c.clone() };
            l.push_str(&cell);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&headers.map(String::from), &mut out, Paint::Plain);
    for (e, r) in entries.iter().zip(&rows) {
        let state = match e.state {
            "due" => Paint::Green,
            "in_flight" => Paint::Cyan,
            "retry_wait" => Paint::Yellow,
            "exhausted" => Paint::Red,
            _ => Paint::Dim,
        };
        line(r, &mut out, state);
    }
    out.push_str(&format!("{due} due of {} shown (as of {})\n", entries.len(), as_of.unwrap_or_default()));
    out
}

/// A JSON array of the entries, for scripts.
pub fn render_json(entries: &[DueEntry]) -> String {
    serde_json::to_string_pretty(entries).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(name: &str, due: bool, state: &'static str, reason: &str) -> DueEntry {
        DueEntry {
            config_id: 1,
            name: name.into(),
            kind: "sheet_to_bigquery".into(),
            is_active: true,
            run_frequency_hours: 24,
            last_run: None,
            due,
            state,
            reason: reason.into(),
            overdue_secs: None,
            due_at: None,
            attempt: due.then_some(1),
            run_id: None,
            as_of: Utc.with_ymd_and_hms(2025, 1, 10, 12, 0, 0).unwrap(),
        }
    }

    #[test]
    fn table_lists_configs_with_a_summary() {
        let t = render_table(
            &[entry("sales", true, "due", "never run"), entry("stock", false, "not_due", "due in 3h")],
            false,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("CONFIG"), "{t}");
        assert!(lines[1].contains("sales") && lines[1].contains("never run"), "{t}");
        assert!(lines[2].contains("not due") && lines[2].contains("due in 3h"), "{t}");
        assert_eq!(lines[3], "1 due of 2 shown (as of 2025-01-10 12:00:00 UTC)");
        assert!(!t.contains('\x1b'));
        assert!(render_table(&[entry("sales", true, "due", "never run")], true).contains("\x1b[32mdue"));
        assert_eq!(render_table(&[], false), "nothing is due\n");
    }

    #[test]
    fn json_is_an_array_of_entries() {
        let v: serde_json::Value =
            serde_json::from_str(&render_json(&[entry("sales", true, "due", "never run")])).unwrap();
        assert_eq!(v[0]["name"], "sales");
        assert_eq!(v[0]["state"], "due");
        assert_eq!(v[0]["due"], true);
    }
}
