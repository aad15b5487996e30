//! Shared fixtures of the integration tests.

use serde_json::{json, Value};
use testkit::proc::Finished;
use testkit::sheets_server::{RunningSheetsServer, SheetsServer, Spreadsheet, Tab};

/// A Sheets server and a BigQuery dataset of the test's own.
pub struct Env {
    pub sheets: RunningSheetsServer,
    pub dataset: String,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Env {
        let sheets = SheetsServer::new().spawn().await.expect("start sheets server");
        Env { sheets, dataset: testkit::bq::unique_dataset("it"), dir: tempfile::tempdir().unwrap() }
    }

    pub fn url(&self) -> String {
        self.sheets.base_url()
    }

    /// Serves a one-tab spreadsheet typed in as text (interpreted like Sheets does).
    pub fn put_rows(&self, id: &str, rows: &[&[&str]]) {
        self.sheets.server().put(Spreadsheet::new(id).with_tab(Tab::from_input(
            "Sheet1",
            0,
            rows.iter().map(|r| r.to_vec()),
        )));
    }

    /// A config in the existing deployment's format, plus `extra` settings.
    pub fn config(&self, name: &str, sheet_id: &str, table: &str, extra: Value) -> Value {
        let mut c = json!({
            "name": name,
            "google_sheet_url": format!("https://docs.google.com/spreadsheets/d/{sheet_id}/edit#gid=0"),
            "google_cloud_project_id": testkit::bq::PROJECT,
            "bigquery_dataset_id": self.dataset,
            "bigquery_table_id": table,
            "schema_handling": "auto_detect",
        });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                c[k] = v;
            }
        }
        c
    }

    /// Writes `config` to `<name>.json` in the test's temp dir; returns the path.
    pub fn write_config(&self, config: &Value) -> String {
        write_config(self.dir.path(), config).to_str().unwrap().to_string()
    }

    /// Runs `job --config-file` on `config`.
    pub async fn run(&self, config: &Value) -> Finished {
        self.run_with(config, &[]).await
    }

    /// Runs `job --config-file` on `config` with extra environment.
    pub async fn run_with(&self, config: &Value, env: &[(&str, &str)]) -> Finished {
        testkit::proc::run_job(&self.url(), &["--config-file", &self.write_config(config)], env).await
    }

    pub async fn query(&self, sql_tail: &str) -> testkit::bq::QueryResult {
        let sql = sql_tail.replace("{ds}", &format!("`{}.{}`", testkit::bq::PROJECT, self.dataset));
        testkit::bq::query(&sql).await.unwrap_or_else(|e| panic!("query {sql}: {e}"))
    }
}

/// The rows of a database created by the Python service: (id, name, google_sheet_url).
pub type PythonRows = Vec<(i32, String, String)>;

/// An unmigrated database shaped like the Python service's (its original columns and three rows,
/// from `tests/fixtures/jobctl/python_service.sql`), a client, and its rows.
pub async fn python_service_db() -> (testkit::pg::TestDb, tokio_postgres::Client, PythonRows) {
    let db = testkit::pg::TestDb::empty().await;
    let pg = db.client().await;
    pg.batch_execute(include_str!("../fixtures/jobctl/python_service.sql")).await.unwrap();
    let rows = pg
        .query("SELECT id, name, google_sheet_url FROM sheet_to_bigquery_configs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    (db, pg, rows)
}

/// Asserts the migrations adopted `before` untouched, with the new columns' defaults.
pub async fn assert_adopted(pg: &tokio_postgres::Client, before: &PythonRows) {
    type Adopted = (i32, String, String, String, bool, i32, Option<chrono::DateTime<chrono::Utc>>, String);
    let after: Vec<Adopted> = pg
        .query(
            "SELECT id, name, google_sheet_url, kind, is_active, run_frequency_hours, last_run, migration_status
               FROM sheet_to_bigquery_configs ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)))
        .collect();
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((b.0, &b.1, &b.2), (a.0, &a.1, &a.2), "row untouched");
        assert_eq!((a.3.as_str(), a.4, a.5, a.6, a.7.as_str()), ("sheet_to_bigquery", true, 24, None, "service"));
    }
}

/// Writes `config` to `dir/<name>.json`; returns the path.
pub fn write_config(dir: &std::path::Path, config: &Value) -> std::path::PathBuf {
    let path = dir.join(format!("{}.json", config["name"].as_str().unwrap_or("c")));
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Asserts the job succeeded, printing its output otherwise.
pub fn assert_ok(f: &Finished) {
    assert_eq!(f.code, Some(0), "job failed:\n{}", f.all_text());
    assert_eq!(f.last_line()["message"], "Job completed successfully");
}

/// Asserts the job failed with `code`, and returns its final error text.
pub fn assert_failed(f: &Finished, code: i32) -> String {
    assert_eq!(f.code, Some(code), "unexpected exit:\n{}", f.all_text());
    let last = f.last_line();
    assert_eq!(last["message"], "Job execution failed", "{}", f.stdout);
    assert_eq!(last["severity"], "ERROR");
    last["error"].as_str().unwrap_or_default().to_string()
}
