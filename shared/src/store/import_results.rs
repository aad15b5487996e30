//! SQL of `import_results`: the rows a `postgres_upsert` run rejected, per run and attempt.

use serde_json::Value;

use super::runs::RunRef;
use super::{q, Store, StoreResult};

/// One rejected source row.
#[derive(Debug, Clone)]
pub struct RejectedRow {
    /// Source row number (1-based, header included).
    pub row_number: i64,
    /// `Sheet1!C17`, for sheet sources.
    pub cell_ref: Option<String>,
    /// The row's key columns, as far as they could be read.
    pub key: Option<Value>,
    pub reason: String,
}

/// Records a batch of rejected rows of `run` in one statement; returns how many.
pub async fn insert(store: &Store, run: RunRef, rows: &[RejectedRow]) -> StoreResult<u64> {
    let client = store.client().await?;
    let numbers: Vec<i64> = rows.iter().map(|r| r.row_number).collect();
    let cells: Vec<Option<&str>> = rows.iter().map(|r| r.cell_ref.as_deref()).collect();
    let keys: Vec<Option<&Value>> = rows.iter().map(|r| r.key.as_ref()).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
    client
        .execute(
            "INSERT INTO import_results (run_id, attempt, row_number, cell_ref, key, reason)
             SELECT $1, $2, r, c, k, why FROM unnest($3::bigint[], $4::text[], $5::jsonb[], $6::text[]) AS u(r, c, k, why)",
            &[&run.id, &run.attempt, &numbers, &cells, &keys, &reasons],
        )
        .await
        .map_err(q("recording rejected rows in import_results"))
}
