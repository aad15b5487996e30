//! SQL of `sheet_to_bigquery_configs`. Rows are turned back into the config JSON format and
//! validated by the same code as a config file, so a bad row fails the same way a bad file does.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

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
        for k in ["google_sheet_url", "google_cloud_project_id", "bigquery_dataset_id", "bigquery_table_id", "schema_handling"] {
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
        config: JobConfig::from_value(Value::Object(m)).map_err(|e| {
            ConfigError::new(e.problems.into_iter().map(|p| format!("config id {id}: {p}")).collect())
        }),
    }
}

pub async fn get_by_id(store: &Store, id: i64) -> StoreResult<Option<ConfigRow>> {
    let client = store.client().await?;
    let row = client
        .query_opt(&format!("{SELECT} WHERE id = $1"), &[&id])
        .await
        .map_err(q("reading a config"))?;
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

/// Inserts a validated config (as `job_ready`: it was written for the job). Returns its id.
pub async fn insert(client: &impl deadpool_postgres::GenericClient, c: &JobConfig) -> StoreResult<i64> {
    let s = c.sheet();
    let row = client
        .query_one(
            "INSERT INTO sheet_to_bigquery_configs
                (name, kind, google_sheet_url, google_cloud_project_id, bigquery_dataset_id, bigquery_table_id,
                 schema_handling, spec, is_active, run_frequency_hours, migration_status)
             VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, 'auto_detect'), $8, $9, $10, 'job_ready')
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
            ],
        )
        .await
        .map_err(|e| StoreError::new(format!("inserting config {:?}", c.name), e))?;
    Ok(row.get(0))
}

/// Advances `last_run` (only ever after a successful run).
pub async fn set_last_run(
    client: &impl deadpool_postgres::GenericClient,
    id: i64,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    client
        .execute(
            "UPDATE sheet_to_bigquery_configs SET last_run = $2, updated_at = now() WHERE id = $1",
            &[&id, &at],
        )
        .await
        .map_err(q("advancing last_run"))?;
    Ok(())
}
