//! Schema migrations: plain `.sql` files applied in order, each in its own transaction, recorded
//! in `schema_migrations`, under a Postgres advisory lock so two processes migrating at once
//! serialise instead of racing. Every file is idempotent (IF NOT EXISTS), so adopting a database
//! created by the Python service is the same operation as creating a fresh one.

use super::{q, Store, StoreError, StoreResult};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// All migrations, in order. Append only; never edit an applied file.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "configs", sql: include_str!("migrations/V1__configs.sql") },
    Migration { version: 2, name: "job_runs", sql: include_str!("migrations/V2__job_runs.sql") },
    Migration { version: 3, name: "migration_views", sql: include_str!("migrations/V3__migration_views.sql") },
    Migration { version: 4, name: "orchestrator", sql: include_str!("migrations/V4__orchestrator.sql") },
    Migration { version: 5, name: "import_results", sql: include_str!("migrations/V5__import_results.sql") },
];

/// Arbitrary but fixed key for `pg_advisory_lock` ("StBQ").
const LOCK_KEY: i64 = 0x5374_4251;

const LEDGER_SQL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

fn checksum(sql: &str) -> String {
    // FNV-1a 64: stable across Rust versions, enough to notice an edited file.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Migrations not yet applied to this database (reads only).
pub async fn pending(store: &Store) -> StoreResult<Vec<Migration>> {
    let client = store.client().await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(q("checking schema_migrations"))?
        .get(0);
    if !exists {
        return Ok(MIGRATIONS.to_vec());
    }
    let rows =
        client.query("SELECT version FROM schema_migrations", &[]).await.map_err(q("reading schema_migrations"))?;
    let applied: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    Ok(MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)).copied().collect())
}

/// Applies every pending migration; returns the versions applied by this call.
pub async fn run(store: &Store) -> StoreResult<Vec<Migration>> {
    let mut client = store.client().await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await.map_err(q("taking the migration lock"))?;
    let result = apply_all(&mut client).await;
    // Release even on failure; the session ending would release it too.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await;
    result
}

async fn apply_all(client: &mut tokio_postgres::Client) -> StoreResult<Vec<Migration>> {
    client.batch_execute(LEDGER_SQL).await.map_err(q("creating schema_migrations"))?;
    let rows = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await
        .map_err(q("reading schema_migrations"))?;
    let applied: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut done = Vec::new();
    for m in MIGRATIONS {
        if let Some((_, sum)) = applied.iter().find(|(v, _)| *v == m.version) {
            if *sum != checksum(m.sql) {
                tracing::warn!(version = m.version, name = m.name, "applied migration differs from the shipped file");
            }
            continue;
        }
        let tx = client.transaction().await.map_err(q("starting a migration transaction"))?;
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| StoreError::new(format!("applying migration V{}__{}", m.version, m.name), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await
        .map_err(q("recording a migration"))?;
        tx.commit().await.map_err(q("committing a migration"))?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        done.push(*m);
    }
    Ok(done)
}
