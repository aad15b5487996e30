//! Migrations against real Postgres: fresh databases, adopting the Python service's table, and
//! two processes migrating at once.

use sheettobigquery::store::{migrate, Store};
use testkit::pg::TestDb;

/// The table as the existing Python service created it, with rows in it.
const PYTHON_SERVICE_SCHEMA: &str = "
CREATE TABLE sheet_to_bigquery_configs (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    google_sheet_url TEXT NOT NULL,
    google_cloud_project_id VARCHAR(255) NOT NULL,
    bigquery_dataset_id VARCHAR(255) NOT NULL,
    bigquery_table_id VARCHAR(255) NOT NULL,
    schema_handling VARCHAR(50) DEFAULT 'auto_detect'
);
INSERT INTO sheet_to_bigquery_configs (name, google_sheet_url, google_cloud_project_id, bigquery_dataset_id, bigquery_table_id, schema_handling) VALUES
  ('migration_test', 'https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOp/edit#gid=0', 'hkd-reporting', 'test_dataset', 'migration_test', 'auto_detect'),
  ('sales', 'https://docs.google.com/spreadsheets/d/2XyZ0123456789ab/edit#gid=5', 'hkd-reporting', 'reporting', 'sales', 'all_strings');
";

#[tokio::test]
async fn migrations_create_a_fresh_schema_and_are_idempotent() {
    let db = TestDb::empty().await;
    let store = db.store().await;
    let applied = migrate::run(&store).await.unwrap();
    assert_eq!(applied.len(), migrate::MIGRATIONS.len());
    assert!(migrate::run(&store).await.unwrap().is_empty(), "second run applies nothing");
    assert!(migrate::pending(&store).await.unwrap().is_empty());
    let pg = db.client().await;
    for table in ["sheet_to_bigquery_configs", "job_runs", "schema_migrations", "active_job_configs"] {
        let ok: bool = pg.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await.unwrap().get(0);
        assert!(ok, "{table} missing");
    }
    let idx: i64 = pg
        .query_one("SELECT count(*) FROM pg_indexes WHERE indexname = 'sheet_to_bigquery_configs_active_last_run'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(idx, 1);
}

#[tokio::test]
async fn migrations_adopt_the_python_service_table_without_touching_rows() {
    let db = TestDb::empty().await;
    let pg = db.client().await;
    pg.batch_execute(PYTHON_SERVICE_SCHEMA).await.unwrap();
    let before: Vec<(i32, String, String)> = pg
        .query("SELECT id, name, google_sheet_url FROM sheet_to_bigquery_configs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let store = db.store().await;
    migrate::run(&store).await.unwrap();
    let after: Vec<(i32, String, String, String, bool, i32, Option<chrono::DateTime<chrono::Utc>>, String)> = pg
        .query(
            "SELECT id, name, google_sheet_url, kind, is_active, run_frequency_hours, last_run, migration_status FROM sheet_to_bigquery_configs ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)))
        .collect();
    assert_eq!(after.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((b.0, &b.1, &b.2), (a.0, &a.1, &a.2), "row untouched");
        assert_eq!((a.3.as_str(), a.4, a.5, a.6, a.7.as_str()), ("sheet_to_bigquery", true, 24, None, "service"));
    }
    // The adopted rows read back as valid configs.
    let rows = sheettobigquery::store::configs::list(&store).await.unwrap();
    for r in &rows {
        let c = r.config.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert!(c.sheet().is_some());
    }
    assert_eq!(rows[1].config.as_ref().unwrap().sheet().unwrap().gid, Some(5));
    // Twice changes nothing.
    assert!(migrate::run(&store).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_migrations_serialise() {
    let db = TestDb::empty().await;
    let args = db.db_args();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            let store = Store::connect(&args, 1).await.unwrap();
            migrate::run(&store).await.map(|v| v.len())
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap().expect("no migration fails under concurrency");
    }
    assert_eq!(total, migrate::MIGRATIONS.len(), "each migration applied exactly once");
}
