//! `jobctl compare`: the validation step of the migration from the Python service. Per config,
//! the row count of the BigQuery table the old service loaded is compared with a fresh load of
//! the same sheet by the job's own code path into a scratch table — never the production table:
//! the scratch dataset must not be any config's dataset, and the scratch load records nothing in
//! the run ledger and does not advance last_run.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use sheettobigquery::config::JobConfig;
use sheettobigquery::google::Services;
use sheettobigquery::runner::{self, ConfigSource, JobRequest};
use sheettobigquery::store::configs::{self, ConfigRow, MigrationStatus};
use sheettobigquery::store::DbArgs;

use super::{db_err, Ctx};
use crate::output::{plain, Paint, Table};

/// Compare, per config, the old service's BigQuery table with a fresh job load (row counts).
///
/// Each sheet is loaded by the job's code into SCRATCH_DATASET.<dataset>__<table> (replaced on
/// every compare); the production table is only read. Prints MATCH / MISMATCH / ERROR per config
/// and exits non-zero unless everything matches. With --mark-ready, configs that match are set
/// to migration_status job_ready.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl compare                                   every active config still on the old service
  jobctl compare --config sales --config orders
  jobctl compare --scratch-dataset migration_check --mark-ready
  jobctl compare --all --json")]
pub struct Args {
    /// Compare these configs (by name; repeatable). Default: every active sheet_to_bigquery config
    /// whose migration_status is still `service`.
    #[arg(long, value_name = "NAME")]
    config: Vec<String>,
    /// Compare every active sheet_to_bigquery config, whatever its migration status.
    #[arg(long, conflicts_with = "config")]
    all: bool,
    /// Dataset for the fresh loads (in each config's project; created when missing). Must not be
    /// the dataset of any config.
    #[arg(long, value_name = "DATASET", default_value = "jobctl_compare")]
    scratch_dataset: String,
    /// Set migration_status to job_ready for the configs that match.
    #[arg(long)]
    mark_ready: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One config's comparison.
struct Compared {
    name: String,
    production: String,
    scratch: String,
    old_rows: Option<u64>,
    new_rows: Option<u64>,
    error: Option<String>,
}

impl Compared {
    fn verdict(&self) -> &'static str {
        match (&self.error, self.old_rows, self.new_rows) {
            (Some(_), _, _) => "ERROR",
            (None, Some(o), Some(n)) if o == n => "MATCH",
            _ => "MISMATCH",
        }
    }
}

fn scratch_table(dataset: &str, table: &str) -> String {
    format!("{dataset}__{table}")
}

/// The config pointed at the scratch table: replace mode, an empty sheet allowed (it then simply
/// does not match), no shrink guard (the scratch table is ours).
fn scratch_config(c: &JobConfig, scratch_dataset: &str) -> anyhow::Result<JobConfig> {
    let s = c.sheet().ok_or_else(|| anyhow::anyhow!("only sheet_to_bigquery configs can be compared"))?;
    let mut v = c.to_json();
    if let Value::Object(m) = &mut v {
        m.remove("id");
    }
    v["bigquery_dataset_id"] = scratch_dataset.into();
    v["bigquery_table_id"] = scratch_table(&s.dataset_id, &s.table_id).into();
    v["spec"]["write_mode"] = "replace".into();
    v["spec"]["guards"] = json!({"allow_empty": true});
    JobConfig::from_value(v).map_err(|e| anyhow::anyhow!("building the scratch config: {e}"))
}

pub async fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    sheettobigquery::config::validate_dataset_id(&a.scratch_dataset)
        .map_err(|e| anyhow::anyhow!("--scratch-dataset: {e}"))?;
    let store = ctx.store().await?;
    let all = configs::list(&store).await.map_err(db_err)?;
    // Never load into a dataset that holds production tables.
    let production: HashSet<(String, String)> = all
        .iter()
        .filter_map(|r| r.config.as_ref().ok()?.sheet().map(|s| (s.project_id.clone(), s.dataset_id.clone())))
        .collect();
    let selected: Vec<&ConfigRow> = if a.config.is_empty() {
        all.iter()
            .filter(|r| {
                r.kind == "sheet_to_bigquery"
                    && r.is_active
                    && (a.all || r.migration_status == MigrationStatus::Service.as_str())
            })
            .collect()
    } else {
        let mut v = Vec::new();
        for n in &a.config {
            let r = all
                .iter()
                .find(|r| &r.name == n)
                .ok_or_else(|| anyhow::anyhow!("no config named {n:?}; `jobctl configs list` shows them"))?;
            v.push(r);
        }
        v
    };
    if selected.is_empty() {
        println!("nothing to compare: no active sheet_to_bigquery config is still on the old service (use --all or --config NAME)");
        return Ok(ExitCode::SUCCESS);
    }
    for r in &selected {
        if let Ok(c) = &r.config {
            if let Some(s) = c.sheet() {
                if production.contains(&(s.project_id.clone(), a.scratch_dataset.clone())) {
                    anyhow::bail!(
                        "--scratch-dataset {} is a production dataset in project {} (configs load into it); pick a dataset of its own",
                        a.scratch_dataset,
                        s.project_id
                    );
                }
            }
        }
    }
    let services = Services::from_args(&ctx.gcp).await.map_err(|e| anyhow::anyhow!(e.message.clone()))?;
    let mut results = Vec::new();
    for r in selected {
        results.push(compare_one(ctx, &services, r, &a.scratch_dataset).await);
    }
    let mut marked = Vec::new();
    if a.mark_ready {
        let names: Vec<String> = results.iter().filter(|c| c.verdict() == "MATCH").map(|c| c.name.clone()).collect();
        if !names.is_empty() {
            marked =
                configs::set_migration_status(&store, Some(&names), MigrationStatus::JobReady).await.map_err(db_err)?;
        }
    }
    if a.json {
        let v: Vec<Value> = results
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "production_table": c.production,
                    "scratch_table": c.scratch,
                    "production_rows": c.old_rows,
                    "job_rows": c.new_rows,
                    "result": c.verdict(),
                    "error": c.error,
                    "marked_job_ready": marked.contains(&c.name),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut t = Table::new(vec!["CONFIG", "PRODUCTION TABLE", "SERVICE ROWS", "JOB ROWS", "RESULT"]);
        for c in &results {
            let n = |x: Option<u64>| x.map_or("-".to_string(), |n| n.to_string());
            let old = if c.old_rows.is_none() && c.error.is_none() { "missing".to_string() } else { n(c.old_rows) };
            let verdict = match c.verdict() {
                "MATCH" => ("MATCH".to_string(), Paint::Green),
                v => (v.to_string(), Paint::Red),
            };
            t.row(vec![plain(&c.name), plain(&c.production), plain(old), plain(n(c.new_rows)), verdict]);
        }
        print!("{}", t.render(ctx.style));
        for c in &results {
            if let Some(e) = &c.error {
                eprintln!("{}: {e}", c.name);
            }
        }
        println!("fresh loads are in {}.* (scratch; safe to delete)", a.scratch_dataset);
        if !marked.is_empty() {
            println!("marked job_ready: {}", marked.join(", "));
        }
    }
    let all_match = results.iter().all(|c| c.verdict() == "MATCH");
    if !all_match && !a.json {
        eprintln!("not everything matches: look at the sheet and both tables before moving these configs to the job (`jobctl configs set-status job_ready NAME`)");
    }
    Ok(if all_match { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn compare_one(ctx: &Ctx, services: &Services, r: &ConfigRow, scratch_dataset: &str) -> Compared {
    let mut out = Compared {
        name: r.name.clone(),
        production: "-".into(),
        scratch: "-".into(),
        old_rows: None,
        new_rows: None,
        error: None,
    };
    let c = match &r.config {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(format!("invalid config: {}", e.problems.join("; ")));
            return out;
        }
    };
    let Some(s) = c.sheet() else {
        out.error = Some(format!("kind {} cannot be compared (only sheet_to_bigquery)", c.kind));
        return out;
    };
    out.production = format!("{}.{}.{}", s.project_id, s.dataset_id, s.table_id);
    out.scratch = format!("{}.{}.{}", s.project_id, scratch_dataset, scratch_table(&s.dataset_id, &s.table_id));
    match services.bigquery.count_rows(&s.project_id, &s.dataset_id, &s.table_id, s.location.as_deref()).await {
        Ok(n) => out.old_rows = n,
        Err(e) => {
            out.error = Some(format!("counting {}: {e}", out.production));
            return out;
        }
    }
    let scratch = match scratch_config(c, scratch_dataset) {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    // No database settings: the scratch load writes nothing to the ledger or the configs.
    let req = JobRequest {
        source: ConfigSource::Json(scratch.to_json().to_string()),
        run_id: None,
        run_attempt: None,
        db: DbArgs::default(),
        gcp: ctx.gcp.clone(),
        lease: Duration::from_secs(120),
        owner: format!("jobctl-compare:{}", std::process::id()),
        options: sheettobigquery::kinds::RunOptions::default(),
    };
    let outcome = runner::execute(req).await;
    match outcome.result {
        Ok(rep) => out.new_rows = Some(rep.rows_written),
        Err(e) => out.error = Some(format!("fresh load into {} failed: {e}", out.scratch)),
    }
    out
}
