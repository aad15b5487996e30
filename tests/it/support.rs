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

    /// Runs `job --config-file` on `config`.
    pub async fn run(&self, config: &Value) -> Finished {
        let path = self.dir.path().join(format!("{}.json", config["name"].as_str().unwrap_or("c")));
        std::fs::write(&path, config.to_string()).unwrap();
        testkit::proc::run_job(&self.url(), &["--config-file", path.to_str().unwrap()], &[]).await
    }

    pub async fn query(&self, sql_tail: &str) -> testkit::bq::QueryResult {
        let sql = sql_tail.replace("{ds}", &format!("`{}.{}`", testkit::bq::PROJECT, self.dataset));
        testkit::bq::query(&sql).await.unwrap_or_else(|e| panic!("query {sql}: {e}"))
    }
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
