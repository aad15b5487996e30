//! Migrations against real Postgres, through the library: fresh databases, adopting the Python
//! service's table, and four connections migrating at once (`jobctl` tests the same with two
//! processes).

use sheettobigquery::store::{migrate, Store};
use testkit::pg::TestDb;

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
    let (db, pg, before) = crate::support::python_service_db().await;
    let store = db.store().await;
    migrate::run(&store).await.unwrap();
    crate::support::assert_adopted(&pg, &before).await;
    // The adopted rows read back as valid configs.
    let rows = sheettobigquery::store::configs::list(&store).await.unwrap();
    for r in &rows {
        let c = r.config.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert!(c.sheet().is_some());
    }
    let sales = rows.iter().find(|r| r.name == "sales").expect("sales row");
    assert_eq!(sales.config.as_ref().unwrap().sheet().unwrap().gid, Some(5));
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
