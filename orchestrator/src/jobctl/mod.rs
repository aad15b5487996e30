//! `jobctl`: the helper CLI people use by hand — run one config now, see status and history,
//! manage configs, migrate the schema and move the existing Python deployment over.
//!
//! # Layout
//! - this file: the command line (clap derive; doc comments are the help text) and dispatch.
//! - [`execute`]: `jobctl execute`, the job's own code path plus a human summary.
//! - [`status`], [`runs`]: `jobctl status`, `jobctl runs [show]` over the run ledger.
//! - [`configs`]: `jobctl configs …`; [`files`] reads JSON/YAML/CSV config files.
//! - [`migrate`], [`compare`]: the schema and the gradual migration from the Python service.
//! - [`connection`]: `jobctl test-connection`; [`google`]: small BigQuery REST probes.
//! - [`due`]: `jobctl due`, the orchestrator's preview.
//!
//! Tables, colour and times come from [`crate::output`].
//!
//! All SQL lives in `sheettobigquery::store`; this module only calls it.

mod compare;
mod configs;
mod connection;
mod due;
mod execute;
mod files;
mod google;
mod migrate;
mod runs;
mod status;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sheettobigquery::google::GcpArgs;
use sheettobigquery::store::{DbArgs, Store};
use sheettobigquery::telemetry::{self, LogFormat, LogTarget};

use crate::output::{self, ColorWhen};

const EXAMPLES: &str = "\
Examples:
  jobctl execute --config-file sales.json          run one config now, like the job does
  jobctl status --failing                          configs whose last runs failed
  jobctl configs import configs.yaml               add many configs, all or nothing
  jobctl runs --config sales --since 24h           the last day's runs of one config
  jobctl migrate --dry-run                         print the SQL a migration would run
  jobctl test-connection                           check Postgres, BigQuery and Sheets

Connection settings come from flags or the environment: DATABASE_URL (or POSTGRES_HOST,
POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD), GOOGLE_APPLICATION_CREDENTIALS,
SHEETS_EMULATOR_HOST, BIGQUERY_EMULATOR_HOST.";

/// The helper CLI for sheettobigquery: run one config now, see status and run history, manage
/// configs, migrate the database.
#[derive(Debug, Parser)]
#[command(name = "jobctl", version, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Colour the output: auto (only on a terminal, never with NO_COLOR), always or never.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, global = true)]
    pub color: ColorWhen,
    #[command(flatten, next_help_heading = "Postgres (the configs and the run ledger)")]
    pub db: DbArgs,
    #[command(flatten, next_help_heading = "Google APIs")]
    pub gcp: GcpArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Execute(execute::Args),
    Status(status::Args),
    Due(due::Args),
    #[command(subcommand)]
    Configs(configs::Command),
    Runs(runs::Args),
    Migrate(migrate::Args),
    Compare(compare::Args),
    TestConnection(connection::Args),
}

/// What every command gets: the connection settings and how to print.
pub(crate) struct Ctx {
    pub db: DbArgs,
    pub gcp: GcpArgs,
    pub style: output::Style,
}

impl Ctx {
    /// Connects to the control-plane database, with advice when that fails.
    pub async fn connect(&self) -> anyhow::Result<Store> {
        Store::connect(&self.db, 4).await.map_err(|e| {
            anyhow::anyhow!(
                "{}; check DATABASE_URL / POSTGRES_* and that Postgres is running (`jobctl test-connection` shows what is in use)",
                e.db_message()
            )
        })
    }

    /// Connects and checks the schema is migrated, so commands fail with advice instead of
    /// "relation does not exist".
    pub async fn store(&self) -> anyhow::Result<Store> {
        let store = self.connect().await?;
        let pending = sheettobigquery::store::migrate::pending(&store)
            .await
            .map_err(|e| anyhow::anyhow!(e.db_message()))
            .context("checking the database schema")?;
        if !pending.is_empty() {
            let names: Vec<String> = pending.iter().map(|m| format!("V{}__{}", m.version, m.name)).collect();
            anyhow::bail!(
                "the database at {} is not migrated ({} pending: {}); run `jobctl migrate` first (`jobctl migrate --dry-run` shows the SQL)",
                store.describe(),
                pending.len(),
                names.join(", ")
            );
        }
        Ok(store)
    }
}

/// Turns a store error into an `anyhow` error carrying the database's own message.
pub(crate) fn db_err(e: sheettobigquery::store::StoreError) -> anyhow::Error {
    anyhow::anyhow!(e.db_message())
}

/// Runs one parsed command line; the exit code says whether it worked.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Ctx { db: cli.db, gcp: cli.gcp, style: output::Style { color: cli.color.enabled() } };
    match cli.command {
        Command::Execute(a) => execute::run(&ctx, a).await,
        other => {
            // Warnings and errors only, as text on stderr: stdout is the command's output.
            telemetry::init_with(LogFormat::Text, LogTarget::Stderr, "warn");
            match other {
                Command::Execute(_) => unreachable!("handled above"),
                Command::Status(a) => status::run(&ctx, a).await,
                Command::Due(a) => due::run(&ctx, a).await,
                Command::Configs(c) => configs::run(&ctx, c).await,
                Command::Runs(a) => runs::run(&ctx, a).await,
                Command::Migrate(a) => migrate::run(&ctx, a).await,
                Command::Compare(a) => compare::run(&ctx, a).await,
                Command::TestConnection(a) => connection::run(&ctx, a).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        cmd.build();
        fn walk(c: &clap::Command, path: &str) {
            if c.get_name() == "help" {
                return;
            }
            let name = format!("{path} {}", c.get_name());
            let after = c.get_after_help().map(|s| s.to_string()).unwrap_or_default();
            assert!(after.contains("jobctl"), "`{name}` has no examples in its help");
            for sub in c.get_subcommands() {
                walk(sub, &name);
            }
        }
        walk(&cmd, "");
    }
}
