//! `postgres_upsert`: import the rows of a CSV file or a Google Sheet into a Postgres table with
//! UPSERT — all-or-nothing (`atomic`) or per batch with rejected rows recorded (`batched`) — never
//! locking the table, with a pre-flight (`--test-only`) and a `pg_dump` backup before production
//! writes.
//!
//! # Config
//! ```json
//! {"name": "customers_import", "kind": "postgres_upsert", "spec": {
//!   "source": {"csv": {"path": "/data/customers.csv", "delimiter": ",", "quote": "\"", "encoding": "utf-8"}},
//!   //   or    {"sheet": {"google_sheet_url": "https://docs.google.com/…/edit#gid=0", "worksheet": "Sheet1",
//!   //                    "range": "A1:F", "header_row": 1, "window_rows": 10000}}
//!   "target": {"connection_env": "TARGET_DATABASE_URL", "schema": "public", "table": "customers",
//!              "key_columns": ["id"],
//!              "columns": {"Customer ID": "id", "Full name": {"column": "name", "type": "text"}},
//!              "create_unique_index": false},
//!   "mode": "atomic", "batch_size": 5000, "max_rows": 1000000, "statement_timeout_seconds": 300,
//!   "backup_dir": "/backups"}}
//! ```
//! - `source.csv.path`: a local file or an `http(s)://` URL (downloaded to a temporary file);
//!   the first line is the header; `delimiter` (default `,`, `"tab"` allowed), `quote`
//!   (default `"`), `encoding` (WHATWG label, ASCII-compatible; default `utf-8`).
//! - `source.sheet`: read like `sheet_to_bigquery` (unformatted values; date cells arrive as
//!   serial numbers and are converted for date/timestamp columns); `window_rows` rows per call.
//! - `target.connection_env` (default `TARGET_DATABASE_URL`): the *name* of the environment
//!   variable holding the target's Postgres URL; the URL is never stored or logged.
//! - `target.schema` (default `public`), `target.table`, `target.key_columns`: identifiers
//!   (`[A-Za-z_][A-Za-z0-9_]*`, case-sensitive, always quoted).
//! - `target.columns`: source header → target column (a name, or `{"column", "type"}`, type one
//!   of [`spec::VALUE_TYPES`]); only mapped headers are imported. Without it every non-empty
//!   header must match a column (exactly, case-insensitively, or as `lower_snake_case`).
//!   Target columns not fed keep their value on update and take their default on insert.
//! - `target.create_unique_index` (default false): when no unique index covers exactly the key
//!   columns, create it (`CREATE UNIQUE INDEX CONCURRENTLY`) after checking existing rows for
//!   duplicate keys; otherwise the run fails with the exact statement to run.
//! - `mode`: `atomic` (default) or `batched`. `batch_size` (default `IMPORT_BATCH_SIZE`, else
//!   5000), `max_rows` (default `IMPORT_MAX_ROWS`, else 1,000,000), `statement_timeout_seconds`
//!   (default `IMPORT_TIMEOUT_SECONDS`, else 300; applies to every statement on the target,
//!   the staging COPY included), `backup_dir` (default `IMPORT_BACKUP_DIR`).
//!
//! Values: empty cells are NULL; an empty key is a rejected row. Each value is checked against
//! its column's type before anything is written (integers and their range, numeric, float,
//! boolean `true/false/t/f/yes/no/1/0/on/off`, dates `YYYY-MM-DD`, timestamps
//! `YYYY-MM-DD HH:MM[:SS[.f]]` with an optional offset — without one, UTC —, uuid, json,
//! varchar length); other types are checked by Postgres.
//!
//! # Environment and safety
//! See [`backup`]: `ENVIRONMENT=local|staging|production`. In production `--skip-backup` is
//! refused and a `pg_dump` of the target table is written to `backup_dir` before any write.
//! `--test-only` connects, checks the table, the columns, the key index, the privileges, the
//! source header and row count and the backup's feasibility, and writes nothing.
//!
//! # Layout
//! [`spec`] parses the config, [`source`] reads and prepares rows, [`values`] checks cells,
//! [`target`] holds the catalog queries and SQL, [`import`] runs the transactions, [`backup`]
//! the environment and `pg_dump`, [`results`] the rejected rows.

pub mod backup;
pub mod import;
pub mod results;
pub mod source;
pub mod spec;
pub mod target;
pub mod values;

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use self::backup::Environment;
use self::import::{Counts, Engine};
use self::results::RejectLog;
use self::source::Rows;
use self::spec::{Mode, SourceSpec, UpsertSpec};
use super::{Report, RunContext, Unit};
use crate::error::{ErrorKind, JobError, JobResult};

/// Validates a `postgres_upsert` spec (config validation and unit construction).
pub fn validate_spec(spec: &Value) -> Result<UpsertSpec, crate::error::ConfigError> {
    spec::parse(spec, &spec::EnvDefaults::from_process())
}

pub struct PostgresUpsertUnit {
    name: String,
    spec: UpsertSpec,
}

impl PostgresUpsertUnit {
    pub fn new(name: &str, spec: &Value) -> JobResult<PostgresUpsertUnit> {
        Ok(PostgresUpsertUnit { name: name.to_string(), spec: validate_spec(spec)? })
    }
}

/// Sends a cancel request for the running statement if the import is dropped mid-way (SIGTERM:
/// the runner drops the unit's future), so the server stops and rolls back at once instead of
/// finishing a statement nobody will commit.
struct CancelOnDrop {
    token: Option<tokio_postgres::CancelToken>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let (Some(t), Ok(rt)) = (self.token.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = t.cancel_query(tokio_postgres::NoTls).await;
            });
        }
    }
}

fn summary_of(c: &Counts, rejected: u64) -> String {
    format!("inserted {}, updated {}, unchanged {}, rejected {}", c.inserted, c.updated, c.unchanged, rejected)
}

#[async_trait::async_trait]
impl Unit for PostgresUpsertUnit {
    async fn run(&self, ctx: &RunContext) -> JobResult<Report> {
        let s = &self.spec;
        let started = Instant::now();
        let (env, detected_by) = Environment::detect()?;
        if env == Environment::Production && ctx.options.skip_backup {
            return Err(JobError::config("--skip-backup is refused in production (ENVIRONMENT=production): the target table is always backed up before it is written"));
        }
        let target_name = format!("{}.{}", s.target.schema, s.target.table);
        tracing::info!(environment = env.as_str(), detected_by, mode = s.mode.as_str(), target = %target_name, test_only = ctx.options.test_only, "postgres_upsert");

        // 1. The target: connection, table, session settings.
        let app: String = format!("sheettobigquery {}", self.name).chars().take(63).collect();
        let tgt = target::connect(&s.target.connection_env, &app).await?;
        tracing::info!(target_db = %tgt.describe, "connected to the target database");
        target::configure(&tgt.client, s.statement_timeout_seconds).await?;
        let table = target::describe(&tgt.client, &s.target.schema, &s.target.table).await?;

        // 2. The source: header → columns, row count.
        let mut csv_file = None;
        let (headers, tab, first_col, mut sheet_rows, total) = match &s.source {
            SourceSpec::Csv(c) => {
                let (file, headers) = source::open_csv(c).await?;
                let n = source::count_csv_rows(&file, c).await?;
                csv_file = Some(file);
                (headers, None, 0, None, Some(n))
            }
            SourceSpec::Sheet(sh) => {
                let (rows, headers) = source::open_sheet(&ctx.services.sheets, sh, s.max_rows).await?;
                let tab = rows.tab().to_string();
                let first = rows.first_col();
                (headers, Some(tab), first, Some(rows), None)
            }
        };
        if let Some(n) = total {
            if n > s.max_rows {
                return Err(JobError::validation(format!(
                    "the source has {n} data rows, more than max_rows {} (spec.max_rows / IMPORT_MAX_ROWS); nothing was imported",
                    s.max_rows
                )));
            }
        }
        let prep = Arc::new(source::plan_columns(&headers, &s.target, &table, tab, first_col)?);
        let mapping: Vec<String> = prep.cols.iter().map(|c| format!("{:?} → {}", c.header, c.column)).collect();
        tracing::info!(columns = %mapping.join(", "), keys = %s.target.key_columns.join(", "), rows = total, "source mapped to the target");

        // 3. Pre-flight: privileges, the unique index, the backup.
        target::check_privileges(&tgt.client, &table, &prep.cols).await?;
        let mut create_index = false;
        match target::unique_index(&tgt.client, &table, &s.target.key_columns).await? {
            Some(ix) => tracing::info!(index = %ix, "unique index on the key columns"),
            None if !s.target.create_unique_index => {
                return Err(JobError::destination(format!(
                    "{} has no unique index on exactly ({}), which INSERT … ON CONFLICT needs; run: {} (or set spec.target.create_unique_index to true)",
                    table.display,
                    s.target.key_columns.join(", "),
                    target::create_index_sql(&table, &s.target.key_columns)
                )));
            }
            None => {
                if !target::owns(&tgt.client, &table).await? {
                    return Err(JobError::destination(format!(
                        "{} has no unique index on ({}) and this user does not own the table to create it; ask its owner to run: {}",
                        table.display,
                        s.target.key_columns.join(", "),
                        target::create_index_sql(&table, &s.target.key_columns)
                    )));
                }
                let dups = target::existing_duplicates(&tgt.client, &table, &s.target.key_columns).await?;
                if !dups.is_empty() {
                    return Err(JobError::validation(format!(
                        "cannot create the unique index on {} ({}): existing rows share keys: {}; remove the duplicates, then run again",
                        table.display,
                        s.target.key_columns.join(", "),
                        dups.join("; ")
                    ))
                    .with_details(dups));
                }
                create_index = true;
            }
        }
        let backup_plan = if env == Environment::Production || (s.backup_dir.is_some() && !ctx.options.skip_backup) {
            Some(backup::plan(s.backup_dir.as_deref()).await.map_err(|e| {
                if env == Environment::Production {
                    JobError {
                        message: format!("refusing to write in production without a backup: {}", e.message),
                        ..e
                    }
                } else {
                    e
                }
            })?)
        } else {
            None
        };

        let mut details = json!({
            "kind": "postgres_upsert",
            "mode": s.mode.as_str(),
            "target": table.display,
            "environment": env.as_str(),
            "source_rows": total,
        });
        if ctx.options.test_only {
            let summary = format!(
                "pre-flight passed for {}: connection, table, columns ({}), key index{}, privileges{}{}; nothing was written",
                table.display,
                prep.cols.len(),
                if create_index { " (would be created)" } else { "" },
                if backup_plan.is_some() { ", backup" } else { "" },
                total.map(|n| format!(", {n} source rows")).unwrap_or_default()
            );
            details["test_only"] = json!(true);
            details["would_create_index"] = json!(create_index);
            return Ok(Report { rows_read: total.unwrap_or(0), rows_written: 0, summary, details });
        }

        // 4. Backup, then the index, then the rows.
        if let Some(plan) = &backup_plan {
            let file = backup::dump(plan, &tgt.config, &s.target.schema, &s.target.table, &ctx.run_key).await?;
            let restore = backup::restore_command(&s.target.connection_env, &file);
            tracing::info!(path = %file.display(), pg_dump = %plan.version, restore = %restore, "backup of the target table taken");
            details["backup"] = json!({"path": file.display().to_string(), "restore": restore});
        }
        if create_index {
            let ix = target::create_unique_index(&tgt.client, &table, &s.target.key_columns).await?;
            tracing::info!(index = %ix, "unique index created");
            details["index_created"] = json!(ix);
        }
        let st = target::statements(&table, &prep.cols, &s.target.key_columns);
        let key_pos =
            prep.cols.iter().enumerate().filter(|(_, c)| c.is_key).map(|(i, c)| (c.column.clone(), i + 1)).collect();
        let mut rows = match (&s.source, csv_file.as_ref(), sheet_rows.take()) {
            (SourceSpec::Csv(c), Some(f), _) => {
                let chunk_rows = if s.mode == Mode::Batched { s.batch_size as usize } else { 4_096 };
                Rows::Csv(source::stream_csv(f, c, prep.clone(), chunk_rows, s.max_rows))
            }
            (SourceSpec::Sheet(_), _, Some(mut r)) => {
                r.set_preparer(prep.clone());
                Rows::Sheet(Box::new(r))
            }
            _ => return Err(JobError::internal("source not opened")),
        };
        let ledger = match (&ctx.store, ctx.run) {
            (Some(st), Some(run)) => Some((st, run)),
            _ => None,
        };
        let engine = Engine {
            client: &tgt.client,
            st: &st,
            keys: &s.target.key_columns,
            key_pos,
            table: &table.display,
            timeout_secs: s.statement_timeout_seconds,
            progress: ctx.progress.clone(),
            total,
            ledger,
        };
        let mut log = RejectLog::default();
        let mut guard = CancelOnDrop { token: Some(tgt.client.cancel_token()) };
        let result = match s.mode {
            Mode::Atomic => engine.atomic(&mut rows, &mut log).await,
            Mode::Batched => engine.batched(&mut rows, &mut log, s.batch_size).await,
        };
        guard.token = None;
        drop(rows);
        let counts = match result {
            Ok(c) => c,
            Err(mut e) => {
                let cap = if s.mode == Mode::Batched { import::RECORD_CAP } else { import::RECORD_CAP_ATOMIC };
                log.flush(ledger, cap).await;
                if log.total > 0 && e.details.is_empty() {
                    e.details = log.messages();
                }
                if e.kind == ErrorKind::Validation || log.total > 0 {
                    tracing::warn!(rejected = log.total, recorded = log.recorded, "import refused");
                }
                return Err(e);
            }
        };

        let rejected = log.total;
        let outcome = if rejected > 0 { "partial_success" } else { "success" };
        let summary = format!(
            "{}{} into {} ({} mode, {} source rows)",
            if rejected > 0 { "partial success: " } else { "" },
            summary_of(&counts, rejected),
            table.display,
            s.mode.as_str(),
            counts.read
        );
        for (k, v) in [
            ("outcome", json!(outcome)),
            ("rows_read", json!(counts.read)),
            ("skipped_empty", json!(counts.blank)),
            ("inserted", json!(counts.inserted)),
            ("updated", json!(counts.updated)),
            ("unchanged", json!(counts.unchanged)),
            ("rejected", json!(rejected)),
            ("rejected_recorded", json!(log.recorded)),
            ("rejected_sample", log.sample_json()),
            ("batches", json!(counts.batches)),
            ("duration_ms", json!(started.elapsed().as_millis() as u64)),
        ] {
            details[k] = v;
        }
        tracing::info!(
            inserted = counts.inserted,
            updated = counts.updated,
            unchanged = counts.unchanged,
            rejected,
            rows_read = counts.read,
            batches = counts.batches,
            outcome,
            "import finished"
        );
        Ok(Report { rows_read: counts.read, rows_written: counts.inserted + counts.updated, summary, details })
    }
}
