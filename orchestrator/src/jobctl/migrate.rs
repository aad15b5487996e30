//! `jobctl migrate [--dry-run]`: brings the control-plane schema up to date through
//! `sheettobigquery::store::migrate` (each file in its own transaction, under an advisory lock,
//! idempotent), adopting a table the Python service created without touching its rows.

use std::process::ExitCode;

use sheettobigquery::store::{configs, migrate};

use super::{db_err, Ctx};
use crate::output::Paint;

/// Apply pending schema migrations (or print their SQL with --dry-run).
///
/// Adopts a database created by the existing Python service: its sheet_to_bigquery_configs table
/// keeps its rows and gains the new columns with defaults (kind sheet_to_bigquery, active, every
/// 24 hours, migration_status service). Safe to run from several processes at once (they take
/// turns on an advisory lock) and to run again (it then changes nothing).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  jobctl migrate --dry-run > pending.sql      review the SQL first
  jobctl migrate
  DATABASE_URL=postgres://user@host/db jobctl migrate")]
pub struct Args {
    /// Print the SQL that would run; change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.connect().await?;
    let shape = configs::table_shape(&store).await.map_err(db_err)?;
    let pending = migrate::pending(&store).await.map_err(db_err)?;
    if a.dry_run {
        if pending.is_empty() {
            eprintln!("{}: up to date; nothing would run", store.describe());
            return Ok(ExitCode::SUCCESS);
        }
        if shape.legacy {
            eprintln!(
                "{}: would adopt the existing sheet_to_bigquery_configs ({} rows kept as they are)",
                store.describe(),
                shape.rows
            );
        }
        eprintln!("{}: {} migration(s) would run, each in its own transaction:", store.describe(), pending.len());
        for m in &pending {
            println!("-- V{}__{}.sql", m.version, m.name);
            println!("{}", m.sql.trim_end());
            println!();
        }
        return Ok(ExitCode::SUCCESS);
    }
    if shape.legacy {
        println!(
            "adopting the existing sheet_to_bigquery_configs ({} rows): new columns get defaults, rows are kept",
            shape.rows
        );
    }
    let applied = migrate::run(&store).await.map_err(|e| {
        anyhow::anyhow!(
            "{}; nothing after the failed migration was applied, fix the cause and run `jobctl migrate` again",
            e.db_message()
        )
    })?;
    if applied.is_empty() {
        println!("{}: up to date; nothing to apply", store.describe());
    } else {
        for m in &applied {
            println!("{} V{}__{}", ctx.style.paint(Paint::Green, "applied"), m.version, m.name);
        }
        println!("{}: {} migration(s) applied", store.describe(), applied.len());
    }
    Ok(ExitCode::SUCCESS)
}
