//! `jobctl configs …`: add, import, list, show, validate, enable, disable, set-frequency,
//! set-status and remove configs. Every write validates with the job's own config validation
//! first; imports are all or nothing.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use sheettobigquery::config::JobConfig;
use sheettobigquery::google::Services;
use sheettobigquery::store::configs::{self, ConfigRow, InsertMany, MigrationStatus};
use sheettobigquery::store::Store;

use super::files::{self, Format, Valid};
use super::{db_err, google, Ctx};
use crate::output::{plain, Paint, Table};

/// Manage the configs in sheet_to_bigquery_configs.
#[derive(Debug, clap::Subcommand)]
#[command(after_help = "Examples:
  jobctl configs list
  jobctl configs import configs.yaml
  jobctl configs validate sales.json --online
  jobctl configs disable sales")]
pub enum Command {
    Add(AddArgs),
    Import(ImportArgs),
    List(ListArgs),
    Show(ShowArgs),
    Validate(ValidateArgs),
    /// Make configs active again: the orchestrator runs them when due.
    Enable(NamesArgs),
    /// Make configs inactive: the orchestrator skips them (`jobctl execute` still runs them).
    Disable(NamesArgs),
    SetFrequency(SetFrequencyArgs),
    SetStatus(SetStatusArgs),
    Remove(RemoveArgs),
}

/// Add one config, from flags or from a file holding one config.
///
/// The config is validated like the job validates it; a name that already exists is refused.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl configs add --name sales \\
      --sheet-url 'https://docs.google.com/spreadsheets/d/1AbC…/edit#gid=0' \\
      --project my-project --dataset reporting --table sales --frequency 6
  jobctl configs add --file sales.json
  jobctl configs add --name raw --sheet-url 1AbC… --project my-project --dataset d --table t \\
      --schema-handling all_strings --spec '{\"worksheet\": \"Data\", \"write_mode\": \"append\"}'")]
pub struct AddArgs {
    /// A JSON or YAML file holding exactly one config (instead of the flags below).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["name", "sheet_url", "project", "dataset", "table"])]
    file: Option<PathBuf>,
    /// Unique name of the config.
    #[arg(long, required_unless_present = "file")]
    name: Option<String>,
    /// Kind of unit (default sheet_to_bigquery).
    #[arg(long)]
    kind: Option<String>,
    /// Google Sheets URL (its #gid= picks the tab) or spreadsheet id.
    #[arg(long, value_name = "URL")]
    sheet_url: Option<String>,
    /// Google Cloud project of the BigQuery table.
    #[arg(long)]
    project: Option<String>,
    /// BigQuery dataset.
    #[arg(long)]
    dataset: Option<String>,
    /// BigQuery table.
    #[arg(long)]
    table: Option<String>,
    /// auto_detect, explicit or all_strings.
    #[arg(long)]
    schema_handling: Option<String>,
    /// Hours between runs (1 to 8784; default 24).
    #[arg(long, value_name = "HOURS")]
    frequency: Option<i64>,
    /// Add it disabled (the orchestrator skips it until `jobctl configs enable`).
    #[arg(long)]
    inactive: bool,
    /// Other settings as a JSON object: worksheet, range, header_row, write_mode, schema, guards, …
    #[arg(long, value_name = "JSON")]
    spec: Option<String>,
    /// Migration status to record.
    #[arg(long, value_enum, default_value_t = MigrationStatus::JobReady)]
    status: MigrationStatus,
    /// Validate and show what would be added; write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Import configs from JSON, YAML or CSV files: everything is validated first, then all are
/// written in one transaction, or none.
///
/// JSON: one config in the existing deployment's format, a list, or {"configs": [...]}.
/// YAML: the same shapes, or one config per document. CSV: a header row of field names
/// (name, google_sheet_url, google_cloud_project_id, bigquery_dataset_id, bigquery_table_id,
/// schema_handling, run_frequency_hours, is_active, …); `spec.worksheet`-style columns nest.
/// A name used twice, or already in the database, writes nothing.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl configs import configs.yaml
  jobctl configs import test_config.json more.csv --dry-run
  cat configs.json | jobctl configs import - --format json
  jobctl configs import legacy/*.json --status service     still loaded by the Python service")]
pub struct ImportArgs {
    /// Files to import (`-` reads stdin and needs --format).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// File format, when the extension does not say.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Migration status to record for the imported configs.
    #[arg(long, value_enum, default_value_t = MigrationStatus::JobReady)]
    status: MigrationStatus,
    /// Validate everything and check for existing names; write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// List configs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl configs list
  jobctl configs list --kind sheet_to_bigquery --json")]
pub struct ListArgs {
    /// Only configs of this kind.
    #[arg(long)]
    kind: Option<String>,
    /// Print JSON (the config file format, plus bookkeeping) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Show one config in the file format (JSON or YAML), ready to edit and re-import.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl configs show sales
  jobctl configs show 42 --format yaml > sales.yaml")]
pub struct ShowArgs {
    /// Name or id of the config.
    config: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ShowFormat::Json)]
    format: ShowFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    Json,
    Yaml,
}

/// Validate configs without writing anything: files, or stored configs by name (or all).
///
/// With --online, also checks that each sheet is readable (and has the configured tab) and that
/// each BigQuery dataset is reachable, with the credentials in use.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl configs validate sales.json
  jobctl configs validate configs.yaml --online
  jobctl configs validate --name sales --online
  jobctl configs validate --all")]
pub struct ValidateArgs {
    /// Config files (JSON, YAML or CSV).
    #[arg(value_name = "FILE", required_unless_present_any = ["name", "all"])]
    files: Vec<PathBuf>,
    /// File format, when the extension does not say.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Validate stored configs with these names.
    #[arg(long, value_name = "NAME", conflicts_with = "files")]
    name: Vec<String>,
    /// Validate every stored config.
    #[arg(long, conflicts_with_all = ["files", "name"])]
    all: bool,
    /// Also check the sheet and the dataset are reachable.
    #[arg(long)]
    online: bool,
}

/// Configs by name.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl configs enable sales orders
  jobctl configs disable sales")]
pub struct NamesArgs {
    /// Names of the configs.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

/// Change how often a config runs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl configs set-frequency sales 6      every 6 hours")]
pub struct SetFrequencyArgs {
    /// Name of the config.
    name: String,
    /// Hours between runs (1 to 8784).
    #[arg(value_parser = clap::value_parser!(i32).range(1..=8784))]
    hours: i32,
}

/// Mark configs as still loaded by the Python service (`service`) or ready for the job
/// (`job_ready`; they then appear in the active_job_configs view).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl configs set-status job_ready sales orders
  jobctl configs set-status service --all          roll everything back to the old service")]
pub struct SetStatusArgs {
    /// The new migration status.
    #[arg(value_enum)]
    status: MigrationStatus,
    /// Names of the configs.
    #[arg(value_name = "NAME", required_unless_present = "all")]
    names: Vec<String>,
    /// Every config.
    #[arg(long, conflicts_with = "names")]
    all: bool,
}

/// Delete a config. Its run history stays in job_runs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl configs remove old_sales --yes")]
pub struct RemoveArgs {
    /// Name of the config.
    name: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

pub async fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Add(a) => add(ctx, a).await,
        Command::Import(a) => import(ctx, a).await,
        Command::List(a) => list(ctx, a).await,
        Command::Show(a) => show(ctx, a).await,
        Command::Validate(a) => validate(ctx, a).await,
        Command::Enable(a) => set_active(ctx, a, true).await,
        Command::Disable(a) => set_active(ctx, a, false).await,
        Command::SetFrequency(a) => set_frequency(ctx, a).await,
        Command::SetStatus(a) => set_status(ctx, a).await,
        Command::Remove(a) => remove(ctx, a).await,
    }
}

fn print_problems(problems: &[String]) {
    eprintln!("{} problem(s) found; nothing was written:", problems.len());
    for p in problems {
        eprintln!("  {p}");
    }
}

/// Writes all configs or none; explains conflicts.
async fn insert_all(store: &Store, valid: &[Valid], status: MigrationStatus) -> anyhow::Result<Option<Vec<i64>>> {
    let cfgs: Vec<JobConfig> = valid.iter().map(|v| v.config.clone()).collect();
    match configs::insert_many(store, &cfgs, status).await.map_err(db_err)? {
        InsertMany::Inserted(ids) => Ok(Some(ids)),
        InsertMany::Conflicts(existing) => {
            let problems: Vec<String> = existing
                .iter()
                .map(|(name, id)| {
                    let label = valid.iter().find(|v| &v.config.name == name).map_or("", |v| v.label.as_str());
                    format!("{label}: a config named {name:?} already exists (id {id}); rename it, or remove the existing one with `jobctl configs remove {name}`")
                })
                .collect();
            print_problems(&problems);
            Ok(None)
        }
    }
}

async fn add(ctx: &Ctx, a: AddArgs) -> anyhow::Result<ExitCode> {
    let entry = if let Some(path) = &a.file {
        let mut entries = files::read_entries(path, None)?;
        if entries.len() != 1 {
            bail!(
                "{} holds {} configs; `configs add --file` takes one (use `jobctl configs import`)",
                path.display(),
                entries.len()
            );
        }
        entries.remove(0)
    } else {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("name", a.name.clone().map(Value::from));
        put("kind", a.kind.clone().map(Value::from));
        put("google_sheet_url", a.sheet_url.clone().map(Value::from));
        put("google_cloud_project_id", a.project.clone().map(Value::from));
        put("bigquery_dataset_id", a.dataset.clone().map(Value::from));
        put("bigquery_table_id", a.table.clone().map(Value::from));
        put("schema_handling", a.schema_handling.clone().map(Value::from));
        put("run_frequency_hours", a.frequency.map(Value::from));
        put("is_active", Some(Value::Bool(!a.inactive)));
        if let Some(spec) = &a.spec {
            let v: Value = serde_json::from_str(spec).context("--spec is not valid JSON (expected an object)")?;
            put("spec", Some(v));
        }
        files::Entry { label: "config".into(), value: Value::Object(m) }
    };
    let valid = match files::validate_entries(vec![entry]) {
        Ok(v) => v,
        Err(problems) => {
            print_problems(&problems);
            return Ok(ExitCode::from(2));
        }
    };
    if a.dry_run {
        println!("valid; would add:\n{}", serde_json::to_string_pretty(&valid[0].config.to_json())?);
        return Ok(ExitCode::SUCCESS);
    }
    let store = ctx.store().await?;
    match insert_all(&store, &valid, a.status).await? {
        Some(ids) => {
            println!("added config {:?} (id {})", valid[0].config.name, ids[0]);
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::FAILURE),
    }
}

async fn import(ctx: &Ctx, a: ImportArgs) -> anyhow::Result<ExitCode> {
    let valid = match files::validate_files(&a.files, a.format)? {
        Ok(v) => v,
        Err(problems) => {
            print_problems(&problems);
            return Ok(ExitCode::from(2));
        }
    };
    let store = ctx.store().await?;
    if a.dry_run {
        let names: Vec<String> = valid.iter().map(|v| v.config.name.clone()).collect();
        let existing: Vec<String> = configs::list(&store)
            .await
            .map_err(db_err)?
            .into_iter()
            .filter(|r| names.contains(&r.name))
            .map(|r| format!("a config named {:?} already exists (id {})", r.name, r.id))
            .collect();
        if !existing.is_empty() {
            print_problems(&existing);
            return Ok(ExitCode::FAILURE);
        }
        println!("{} config(s) valid; nothing written (--dry-run):", valid.len());
        for v in &valid {
            println!("  {}", v.config.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match insert_all(&store, &valid, a.status).await? {
        Some(ids) => {
            println!("imported {} config(s):", ids.len());
            for (v, id) in valid.iter().zip(ids) {
                println!("  {} (id {id})", v.config.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::FAILURE),
    }
}

fn destination(r: &ConfigRow) -> String {
    match &r.config {
        Ok(c) => match c.sheet() {
            Some(s) => format!("{}.{}.{}", s.project_id, s.dataset_id, s.table_id),
            None => "-".into(),
        },
        Err(_) => "-".into(),
    }
}

fn row_json(r: &ConfigRow) -> Value {
    let mut v = match &r.config {
        Ok(c) => c.to_json(),
        Err(e) => json!({"id": r.id, "name": r.name, "kind": r.kind, "problems": e.problems}),
    };
    v["migration_status"] = r.migration_status.clone().into();
    v["last_run"] = json!(r.last_run);
    v
}

async fn list(ctx: &Ctx, a: ListArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let rows: Vec<ConfigRow> = configs::list(&store)
        .await
        .map_err(db_err)?
        .into_iter()
        .filter(|r| a.kind.as_ref().is_none_or(|k| &r.kind == k))
        .collect();
    if a.json {
        let v: Vec<Value> = rows.iter().map(row_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no configs; add one with `jobctl configs add` or `jobctl configs import FILE`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(vec!["ID", "NAME", "KIND", "ACTIVE", "EVERY", "STATUS", "DESTINATION", "VALID"]);
    let mut invalid = 0;
    let mut seen = std::collections::HashSet::new();
    for r in &rows {
        let valid = match &r.config {
            Ok(_) => plain("yes"),
            Err(e) => {
                invalid += 1;
                (format!("no: {}", e.problems.join("; ")), Paint::Red)
            }
        };
        let name = if seen.insert(r.name.clone()) {
            plain(&r.name)
        } else {
            (format!("{} (duplicate name)", r.name), Paint::Yellow)
        };
        t.row(vec![
            plain(r.id.to_string()),
            name,
            plain(&r.kind),
            if r.is_active { plain("yes") } else { ("no".into(), Paint::Dim) },
            plain(format!("{}h", r.run_frequency_hours)),
            plain(&r.migration_status),
            plain(destination(r)),
            valid,
        ]);
    }
    print!("{}", t.render(ctx.style));
    if invalid > 0 {
        eprintln!("{invalid} config(s) are invalid and would fail to run; fix them with `jobctl configs show NAME`, edit, remove and re-import");
    }
    Ok(ExitCode::SUCCESS)
}

async fn find(store: &Store, name_or_id: &str) -> anyhow::Result<ConfigRow> {
    let by_name = configs::get_by_name(store, name_or_id).await.map_err(db_err)?;
    if let Some(r) = by_name {
        return Ok(r);
    }
    if let Ok(id) = name_or_id.parse::<i64>() {
        if let Some(r) = configs::get_by_id(store, id).await.map_err(db_err)? {
            return Ok(r);
        }
    }
    bail!("no config named {name_or_id:?}; `jobctl configs list` shows them")
}

async fn show(ctx: &Ctx, a: ShowArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let r = find(&store, &a.config).await?;
    let v = row_json(&r);
    match a.format {
        ShowFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        ShowFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&v).context("writing YAML")?),
    }
    if let Err(e) = &r.config {
        eprintln!("this config is invalid: {}", e.problems.join("; "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn validate(ctx: &Ctx, a: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut problems = Vec::new();
    let mut valid: Vec<Valid> = Vec::new();
    if a.files.is_empty() {
        let store = ctx.store().await?;
        let rows = if a.all {
            configs::list(&store).await.map_err(db_err)?
        } else {
            let mut rows = Vec::new();
            for n in &a.name {
                rows.push(find(&store, n).await?);
            }
            rows
        };
        for r in rows {
            match r.config {
                Ok(config) => valid.push(Valid { label: format!("config {:?}", r.name), config }),
                Err(e) => problems.extend(e.problems.into_iter().map(|p| format!("config {:?}: {p}", r.name))),
            }
        }
    } else {
        match files::validate_files(&a.files, a.format)? {
            Ok(v) => valid = v,
            Err(p) => problems = p,
        }
    }
    if !problems.is_empty() {
        eprintln!("{} problem(s) found:", problems.len());
        for p in &problems {
            eprintln!("  {p}");
        }
        return Ok(ExitCode::from(2));
    }
    for v in &valid {
        println!("{} {}: valid", ctx.style.paint(Paint::Green, "ok"), v.label);
    }
    if !a.online {
        return Ok(ExitCode::SUCCESS);
    }
    let services = Services::from_args(&ctx.gcp).await.map_err(|e| anyhow::anyhow!(e.message.clone()))?;
    let bigquery = google::BigQueryProbe::new(&ctx.gcp).await.map_err(anyhow::Error::msg)?;
    let mut failed = 0;
    for v in &valid {
        let Some(s) = v.config.sheet() else {
            println!("  {}: kind {} has no online check", v.label, v.config.kind);
            continue;
        };
        match google::check_sheet(&services, s).await {
            Ok(msg) => println!("{} {}: sheet {msg}", ctx.style.paint(Paint::Green, "ok"), v.label),
            Err(msg) => {
                failed += 1;
                println!("{} {}: sheet {msg}", ctx.style.paint(Paint::Red, "FAIL"), v.label);
            }
        }
        match bigquery.check_dataset(&s.project_id, &s.dataset_id, &s.table_id).await {
            Ok(msg) => println!("{} {}: {msg}", ctx.style.paint(Paint::Green, "ok"), v.label),
            Err(msg) => {
                failed += 1;
                println!("{} {}: {msg}", ctx.style.paint(Paint::Red, "FAIL"), v.label);
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} online check(s) failed; the messages above say what to fix (credentials in use: sheets {}, bigquery {})", services.sheets_auth, services.bigquery_auth);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Reports names that matched nothing; false when any did.
fn report_unknown(asked: &[String], found: &[String]) -> bool {
    let missing: Vec<&String> = asked.iter().filter(|n| !found.contains(n)).collect();
    for n in &missing {
        eprintln!("no config named {n:?}; `jobctl configs list` shows them");
    }
    missing.is_empty()
}

async fn set_active(ctx: &Ctx, a: NamesArgs, active: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let found = configs::set_active(&store, &a.names, active).await.map_err(db_err)?;
    for n in &found {
        println!("{} {n}", if active { "enabled" } else { "disabled" });
    }
    Ok(if report_unknown(&a.names, &found) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn set_frequency(ctx: &Ctx, a: SetFrequencyArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    if !configs::set_frequency(&store, &a.name, a.hours).await.map_err(db_err)? {
        bail!("no config named {:?}; `jobctl configs list` shows them", a.name);
    }
    println!("{} now runs every {}h", a.name, a.hours);
    Ok(ExitCode::SUCCESS)
}

async fn set_status(ctx: &Ctx, a: SetStatusArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let names = (!a.all).then_some(a.names.as_slice());
    let found = configs::set_migration_status(&store, names, a.status).await.map_err(db_err)?;
    for n in &found {
        println!("{n}: migration_status = {}", a.status.as_str());
    }
    if a.status == MigrationStatus::JobReady && !found.is_empty() {
        println!("the job now loads these (the orchestrator reads them from active_job_configs); stop the old service's schedule for them");
    }
    Ok(if report_unknown(names.unwrap_or_default(), &found) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn remove(ctx: &Ctx, a: RemoveArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let existing = configs::get_by_name(&store, &a.name)
        .await
        .map_err(db_err)?
        .with_context(|| format!("no config named {:?}; `jobctl configs list` shows them", a.name))?;
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("refusing to remove {:?} without confirmation; re-run with --yes", a.name);
        }
        eprint!("remove config {:?} (id {})? its run history is kept. [y/N] ", a.name, existing.id);
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("reading the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("not removed");
            return Ok(ExitCode::FAILURE);
        }
    }
    match configs::remove(&store, &a.name).await.map_err(db_err)? {
        Some(id) => {
            println!("removed config {:?} (id {id})", a.name);
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("config {:?} was removed by someone else in the meantime", a.name),
    }
}
