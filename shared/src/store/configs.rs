//! SQL of `sheet_to_bigquery_configs`. Rows are turned back into the config JSON format and
//! validated by the same code as a config file, so a bad row fails the same way a bad file does.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;

use super::{q, Store, StoreError, StoreResult};
use crate::config::JobConfig;
use crate::error::ConfigError;

/// A stored config: the validated config (or why it is invalid) and its bookkeeping.
#[derive(Debug, Clone)]
pub struct ConfigRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub is_active: bool,
    pub run_frequency_hours: i32,
    pub last_run: Option<DateTime<Utc>>,
    pub migration_status: String,
    pub config: Result<JobConfig, ConfigError>,
}

const SELECT: &str = "SELECT id::bigint, name, kind, google_sheet_url, google_cloud_project_id, bigquery_dataset_id,
        bigquery_table_id, schema_handling, spec, is_active, run_frequency_hours, last_run, migration_status
    FROM sheet_to_bigquery_configs";

fn row_to_config(r: &tokio_postgres::Row) -> ConfigRow {
    let id: i64 = r.get(0);
    let mut m = Map::new();
    m.insert("id".into(), id.into());
    let text = |i: usize| -> Value { r.get::<_, Option<String>>(i).map_or(Value::Null, Value::String) };
    m.insert("name".into(), text(1));
    m.insert("kind".into(), text(2));
    m.insert("google_sheet_url".into(), text(3));
    m.insert("google_cloud_project_id".into(), text(4));
    m.insert("bigquery_dataset_id".into(), text(5));
    m.insert("bigquery_table_id".into(), text(6));
    m.insert("schema_handling".into(), text(7));
    m.insert("spec".into(), r.get::<_, Value>(8));
    m.insert("is_active".into(), r.get::<_, bool>(9).into());
    m.insert("run_frequency_hours".into(), r.get::<_, i32>(10).into());
    let kind: String = r.get(2);
    if kind != "sheet_to_bigquery" {
        for k in [
            "google_sheet_url",
            "google_cloud_project_id",
            "bigquery_dataset_id",
            "bigquery_table_id",
            "schema_handling",
        ] {
            if m.get(k) == Some(&Value::Null) {
                m.remove(k);
            }
        }
    }
    ConfigRow {
        id,
        name: r.get(1),
        kind,
        is_active: r.get(9),
        run_frequency_hours: r.get(10),
        last_run: r.get(11),
        migration_status: r.get(12),
        config: JobConfig::from_value(Value::Object(m))
            .map_err(|e| ConfigError::new(e.problems.into_iter().map(|p| format!("config id {id}: {p}")).collect())),
    }
}

pub async fn get_by_id(store: &Store, id: i64) -> StoreResult<Option<ConfigRow>> {
    let client = store.client().await?;
    let row = client.query_opt(&format!("{SELECT} WHERE id = $1"), &[&id]).await.map_err(q("reading a config"))?;
    Ok(row.as_ref().map(row_to_config))
}

pub async fn get_by_name(store: &Store, name: &str) -> StoreResult<Option<ConfigRow>> {
    let client = store.client().await?;
    let row = client
        .query_opt(&format!("{SELECT} WHERE name = $1 ORDER BY id LIMIT 1"), &[&name])
        .await
        .map_err(q("reading a config"))?;
    Ok(row.as_ref().map(row_to_config))
}

pub async fn list(store: &Store) -> StoreResult<Vec<ConfigRow>> {
    let client = store.client().await?;
    let rows = client.query(&format!("{SELECT} ORDER BY name, id"), &[]).await.map_err(q("listing configs"))?;
    Ok(rows.iter().map(row_to_config).collect())
}

/// Advances `last_run` (only ever after a successful run).
pub async fn set_last_run(
    client: &impl deadpool_postgres::GenericClient,
    id: i64,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    client
        .execute("UPDATE sheet_to_bigquery_configs SET last_run = $2, updated_at = now() WHERE id = $1", &[&id, &at])
        .await
        .map_err(q("advancing last_run"))?;
    Ok(())
}

/// Where a config is in the gradual migration from the Python service (`migration_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum MigrationStatus {
    /// The old service still loads it.
    Service,
    /// The job loads it; the `active_job_configs` view lists it.
    JobReady,
}

impl MigrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::Service => "service",
            MigrationStatus::JobReady => "job_ready",
        }
    }
}

/// Inserts a validated config with the given `migration_status`. Returns its id.
pub async fn insert_with_status(
    client: &impl deadpool_postgres::GenericClient,
    c: &JobConfig,
    migration_status: MigrationStatus,
) -> StoreResult<i64> {
    let s = c.sheet();
    let row = client
        .query_one(
            "INSERT INTO sheet_to_bigquery_configs
                (name, kind, google_sheet_url, google_cloud_project_id, bigquery_dataset_id, bigquery_table_id,
                 schema_handling, spec, is_active, run_frequency_hours, migration_status)
             VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, 'auto_detect'), $8, $9, $10, $11)
             RETURNING id::bigint",
            &[
                &c.name,
                &c.kind.as_str(),
                &s.map(|s| s.google_sheet_url.as_str()),
                &s.map(|s| s.project_id.as_str()),
                &s.map(|s| s.dataset_id.as_str()),
                &s.map(|s| s.table_id.as_str()),
                &s.map(|s| s.schema_handling.as_str()),
                &c.spec_json(),
                &c.is_active,
                &c.run_frequency_hours,
                &migration_status.as_str(),
            ],
        )
        .await
        .map_err(|e| StoreError::new(format!("inserting config {:?}", c.name), e))?;
    Ok(row.get(0))
}

/// What `insert_many` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertMany {
    /// Every config was inserted; their ids, in order.
    Inserted(Vec<i64>),
    /// Nothing was written: these names already exist (name, id of the existing row).
    Conflicts(Vec<(String, i64)>),
}

/// Inserts all configs in one transaction, or none: when any name already exists (checked inside
/// the transaction, and enforced by the unique index on name) nothing is written.
pub async fn insert_many(
    store: &Store,
    configs: &[JobConfig],
    migration_status: MigrationStatus,
) -> StoreResult<InsertMany> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(q("starting the import transaction"))?;
    // Serialise concurrent imports so the existence check below stays true until commit, even on
    // an adopted table without the unique index on name. Readers and the job are not blocked.
    tx.batch_execute("LOCK TABLE sheet_to_bigquery_configs IN SHARE ROW EXCLUSIVE MODE")
        .await
        .map_err(q("locking sheet_to_bigquery_configs"))?;
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    let rows = tx
        .query(
            "SELECT name, id::bigint FROM sheet_to_bigquery_configs WHERE name = ANY($1) ORDER BY name, id",
            &[&names],
        )
        .await
        .map_err(q("checking for existing config names"))?;
    if !rows.is_empty() {
        return Ok(InsertMany::Conflicts(rows.iter().map(|r| (r.get(0), r.get(1))).collect()));
    }
    let mut ids = Vec::with_capacity(configs.len());
    for c in configs {
        ids.push(insert_with_status(&tx, c, migration_status).await?);
    }
    tx.commit().await.map_err(q("committing the import"))?;
    Ok(InsertMany::Inserted(ids))
}

/// Sets `is_active` on the named configs; returns the names that exist (and were updated).
pub async fn set_active(store: &Store, names: &[String], active: bool) -> StoreResult<Vec<String>> {
    set_column(store, "is_active", &active, Some(names), "updating is_active").await
}

/// Sets `run_frequency_hours` of one config; false when no config has that name.
pub async fn set_frequency(store: &Store, name: &str, hours: i32) -> StoreResult<bool> {
    let client = store.client().await?;
    let n = client
        .execute(
            "UPDATE sheet_to_bigquery_configs SET run_frequency_hours = $2, updated_at = now() WHERE name = $1",
            &[&name, &hours],
        )
        .await
        .map_err(q("updating run_frequency_hours"))?;
    Ok(n > 0)
}

/// Sets `migration_status` on the named configs, or on every config with None; returns the names
/// updated.
pub async fn set_migration_status(
    store: &Store,
    names: Option<&[String]>,
    status: MigrationStatus,
) -> StoreResult<Vec<String>> {
    set_column(store, "migration_status", &status.as_str(), names, "updating migration_status").await
}

/// Sets `column` (a name from this module, never from input) to `value` on the named configs, or
/// on every config with None; returns the names updated, sorted.
async fn set_column(
    store: &Store,
    column: &'static str,
    value: &(dyn ToSql + Sync),
    names: Option<&[String]>,
    what: &'static str,
) -> StoreResult<Vec<String>> {
    let client = store.client().await?;
    let rows = client
        .query(
            &format!(
                "UPDATE sheet_to_bigquery_configs SET {column} = $2, updated_at = now()
                  WHERE $1::text[] IS NULL OR name = ANY($1) RETURNING name"
            ),
            &[&names, value],
        )
        .await
        .map_err(q(what))?;
    let mut updated: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    updated.sort();
    Ok(updated)
}

/// Deletes one config by name; returns its id, or None when no config has that name. Its runs
/// stay in `job_runs` (they name the config) as history.
pub async fn remove(store: &Store, name: &str) -> StoreResult<Option<i64>> {
    let client = store.client().await?;
    let row = client
        .query_opt("DELETE FROM sheet_to_bigquery_configs WHERE name = $1 RETURNING id::bigint", &[&name])
        .await
        .map_err(q("deleting a config"))?;
    Ok(row.map(|r| r.get(0)))
}

/// The shape of `sheet_to_bigquery_configs` before migrating: whether it exists, whether it is
/// still the Python service's (no `kind` column), and how many rows it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableShape {
    pub exists: bool,
    pub legacy: bool,
    pub rows: i64,
}

pub async fn table_shape(store: &Store) -> StoreResult<TableShape> {
    let client = store.client().await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('sheet_to_bigquery_configs') IS NOT NULL", &[])
        .await
        .map_err(q("checking sheet_to_bigquery_configs"))?
        .get(0);
    if !exists {
        return Ok(TableShape { exists, legacy: false, rows: 0 });
    }
    let has_kind: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                             WHERE table_schema = current_schema() AND table_name = 'sheet_to_bigquery_configs'
                               AND column_name = 'kind')",
            &[],
        )
        .await
        .map_err(q("reading the columns of sheet_to_bigquery_configs"))?
        .get(0);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM sheet_to_bigquery_configs", &[])
        .await
        .map_err(q("counting configs"))?
        .get(0);
    Ok(TableShape { exists, legacy: !has_kind, rows })
}
