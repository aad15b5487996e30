//! `jobctl` end to end: the real binary as a subprocess against real Postgres, the BigQuery
//! emulator and the local Sheets server — each command's happy path and its bad inputs, adopting
//! a database shaped like the Python service's, and two `migrate` processes at once.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::pg::TestDb;
use testkit::proc::Finished;

use crate::support::Env;

/// A `jobctl` command with a clean environment: the given database (if any), the local Sheets
/// server and the emulator.
fn command(db: Option<&str>, sheets_url: &str, args: &[&str]) -> tokio::process::Command {
    let env: Vec<(&str, &str)> = db.map(|url| ("DATABASE_URL", url)).into_iter().collect();
    let mut c = testkit::proc::command("jobctl", sheets_url, &env);
    c.args(args);
    c
}

async fn jobctl(db: Option<&str>, sheets_url: &str, args: &[&str]) -> Finished {
    let child = command(db, sheets_url, args).spawn().expect("spawn jobctl");
    testkit::proc::finish(child, Duration::from_secs(120)).await
}

#[track_caller]
fn ok(f: &Finished) -> &str {
    assert_eq!(f.code, Some(0), "jobctl failed:\n{}", f.all_text());
    &f.stdout
}

#[track_caller]
fn failed(f: &Finished, code: i32) -> String {
    assert_eq!(f.code, Some(code), "unexpected exit:\n{}", f.all_text());
    f.all_text()
}

fn json_out(f: &Finished) -> Value {
    serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", f.all_text()))
}

/// A test's world: a migrated database, a Sheets server, a dataset, a temp dir.
struct World {
    env: Env,
    db: TestDb,
}

impl World {
    async fn new() -> World {
        World { env: Env::new().await, db: TestDb::migrated().await }
    }

    async fn run(&self, args: &[&str]) -> Finished {
        jobctl(Some(&self.db.url), &self.env.url(), args).await
    }

    /// Writes `content` to a file in the test's temp dir; returns its path.
    fn file(&self, name: &str, content: &str) -> String {
        let p = self.env.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn config_file(&self, name: &str, sheet: &str, table: &str, extra: Value) -> String {
        self.file(&format!("{name}.json"), &self.env.config(name, sheet, table, extra).to_string())
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db.client().await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }

    async fn config_id(&self, name: &str) -> i64 {
        self.db
            .client()
            .await
            .query_one("SELECT id::bigint FROM sheet_to_bigquery_configs WHERE name = $1", &[&name])
            .await
            .unwrap()
            .get(0)
    }
}

#[tokio::test]
async fn execute_config_file_loads_and_prints_a_summary() {
    let env = Env::new().await;
    env.put_rows(
        "exec00000001",
        &[&["Order ID", "amount", "day"], &["1", "9.5", "2024-01-05"], &["2", "10", "2024-01-06"]],
    );
    let path = env.write_config(&env.config("sales", "exec00000001", "sales", json!({})));
    // No database: a config file runs without one, like `job --config-file`.
    let f = jobctl(None, &env.url(), &["execute", "--config-file", &path]).await;
    let out = ok(&f);
    assert!(out.contains("Succeeded: \"sales\""), "{out}");
    assert!(out.contains("rows read    2") && out.contains("rows loaded  2"), "{out}");
    assert!(out.contains(&format!("test-proj.{}.sales (replace)", env.dataset)), "{out}");
    assert!(out.contains("Order_ID INT64  (from \"Order ID\")"), "{out}");
    assert!(out.contains("amount FLOAT64") && out.contains("day DATE"), "{out}");
    assert!(out.contains("duration"), "{out}");
    // The job's own log lines, ending in the line the deployment's metrics match, go to stderr.
    assert!(f.stderr.contains("Job completed successfully"), "{}", f.stderr);
    assert_eq!(testkit::bq::count(&env.dataset, "sales").await, Some(2));

    // --json: one object.
    let f = jobctl(None, &env.url(), &["execute", "--config-file", &path, "--json"]).await;
    let v = json_out(&f);
    assert_eq!(
        (v["status"].as_str(), v["rows_written"].as_u64(), v["exit_code"].as_u64()),
        (Some("succeeded"), Some(2), Some(0))
    );
    assert_eq!(v["details"]["columns"][0]["type"], "INT64");
}

#[tokio::test]
async fn execute_exit_codes_and_messages_are_the_jobs() {
    let env = Env::new().await;
    env.put_rows("bad000000001", &[&["n"], &["abc"], &["x"]]);
    env.put_rows("empty0000001", &[&["n"]]);
    let explicit = env.config(
        "typed",
        "bad000000001",
        "typed",
        json!({"schema_handling": "explicit", "schema": [{"name": "n", "type": "INT64"}]}),
    );
    let empty = env.config("empty", "empty0000001", "empty", json!({}));
    let broken = json!({"name": "broken", "google_sheet_url": "nope/"});
    for (cfg, code, needle) in
        [(&explicit, 5, "Sheet1!A2"), (&empty, 5, "refusing to replace"), (&broken, 2, "google_sheet_url")]
    {
        let path = env.write_config(cfg);
        let p = path.as_str();
        let job = testkit::proc::run_job(&env.url(), &["--config-file", p], &[]).await;
        let ctl = jobctl(None, &env.url(), &["execute", "--config-file", p]).await;
        assert_eq!(job.code, Some(code), "job: {}", job.all_text());
        let text = failed(&ctl, code);
        assert!(ctl.stdout.contains(needle), "{text}");
        assert!(ctl.stdout.contains("next"), "a failure says what to do next: {text}");
    }
    // A missing file is a config error too.
    let f = jobctl(None, &env.url(), &["execute", "--config-file", "/nonexistent/x.json"]).await;
    assert!(failed(&f, 2).contains("cannot read config file"));
}

#[tokio::test]
async fn execute_by_id_or_name_records_a_manual_run() {
    let w = World::new().await;
    w.env.put_rows("byid00000001", &[&["a"], &["1"], &["2"], &["3"]]);
    let cfg = w.config_file("byid", "byid00000001", "byid", json!({}));
    ok(&w.run(&["configs", "add", "--file", &cfg]).await);
    let id = w.config_id("byid").await;

    let f = w.run(&["execute", "--config-id", &id.to_string()]).await;
    assert!(ok(&f).contains("rows loaded  3"), "{}", f.stdout);
    assert_eq!(
        w.count("SELECT count(*) FROM job_runs WHERE trigger = 'manual' AND status = 'succeeded' AND rows_written = 3")
            .await,
        1
    );
    assert_eq!(w.count("SELECT count(*) FROM sheet_to_bigquery_configs WHERE last_run IS NOT NULL").await, 1);

    ok(&w.run(&["execute", "--config", "byid"]).await);
    assert_eq!(w.count("SELECT count(*) FROM job_runs WHERE status = 'succeeded'").await, 2);

    // Unknown configs: the job's config error, and a hint for names.
    assert!(failed(&w.run(&["execute", "--config-id", "999999"]).await, 2).contains("does not exist"));
    assert!(failed(&w.run(&["execute", "--config", "nope"]).await, 1).contains("jobctl configs list"));
    // Exactly one source.
    failed(&w.run(&["execute"]).await, 2);
}

#[tokio::test]
async fn configs_lifecycle_add_list_show_enable_disable_frequency_remove() {
    let w = World::new().await;
    let url = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOp/edit#gid=0";
    let add = |dataset: &'static str, table: &'static str| {
        vec![
            "configs",
            "add",
            "--name",
            "sales",
            "--sheet-url",
            url,
            "--project",
            "test-proj",
            "--dataset",
            dataset,
            "--table",
            table,
        ]
    };
    let mut args = add("reporting", "sales");
    args.extend(["--frequency", "6", "--spec", r#"{"worksheet": "Data"}"#]);
    let f = w.run(&args).await;
    assert!(ok(&f).contains("added config \"sales\""));
    // The same name again is refused, nothing written.
    let f = w.run(&add("d", "t")).await;
    assert!(failed(&f, 1).contains("already exists"));
    // Invalid flags are reported per field, nothing written.
    let f = w
        .run(&[
            "configs",
            "add",
            "--name",
            "bad",
            "--sheet-url",
            url,
            "--project",
            "P",
            "--dataset",
            "bad-ds",
            "--table",
            "t",
        ])
        .await;
    let text = failed(&f, 2);
    assert!(text.contains("google_cloud_project_id") && text.contains("bigquery_dataset_id"), "{text}");
    assert_eq!(w.count("SELECT count(*) FROM sheet_to_bigquery_configs").await, 1);

    let out = w.run(&["configs", "list"]).await;
    let line = ok(&out).lines().find(|l| l.contains("sales")).unwrap().to_string();
    for needle in ["sheet_to_bigquery", "yes", "6h", "job_ready", "test-proj.reporting.sales"] {
        assert!(line.contains(needle), "{needle} missing: {line}");
    }
    let shown = json_out(&w.run(&["configs", "show", "sales"]).await);
    assert_eq!(shown["spec"]["worksheet"], "Data");
    assert_eq!(shown["run_frequency_hours"], 6);
    let yaml = w.run(&["configs", "show", "sales", "--format", "yaml"]).await;
    assert!(ok(&yaml).contains("bigquery_table_id: sales"), "{}", yaml.stdout);

    ok(&w.run(&["configs", "disable", "sales"]).await);
    assert_eq!(w.count("SELECT count(*) FROM sheet_to_bigquery_configs WHERE NOT is_active").await, 1);
    ok(&w.run(&["configs", "enable", "sales"]).await);
    assert_eq!(w.count("SELECT count(*) FROM sheet_to_bigquery_configs WHERE is_active").await, 1);
    ok(&w.run(&["configs", "set-frequency", "sales", "12"]).await);
    assert_eq!(w.count("SELECT run_frequency_hours::bigint FROM sheet_to_bigquery_configs").await, 12);
    failed(&w.run(&["configs", "set-frequency", "sales", "0"]).await, 2);

    // Unknown names say so and fail.
    assert!(failed(&w.run(&["configs", "disable", "nope"]).await, 1).contains("no config named \"nope\""));
    assert!(failed(&w.run(&["configs", "show", "nope"]).await, 1).contains("jobctl configs list"));
    assert!(failed(&w.run(&["configs", "set-frequency", "nope", "3"]).await, 1).contains("no config named"));

    // Remove needs confirmation when nobody can be asked.
    assert!(failed(&w.run(&["configs", "remove", "sales"]).await, 1).contains("--yes"));
    ok(&w.run(&["configs", "remove", "sales", "--yes"]).await);
    assert_eq!(w.count("SELECT count(*) FROM sheet_to_bigquery_configs").await, 0);
    failed(&w.run(&["configs", "remove", "sales", "--yes"]).await, 1);
}

fn legacy(name: &str, table: &str) -> Value {
    json!({
        "name": name,
        "google_sheet_url": "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOp/edit#gid=0",
        "google_cloud_project_id": "test-proj",
        "bigquery_dataset_id": "reporting",
        "bigquery_table_id": table,
        "schema_handling": "auto_detect",
    })
}

#[tokio::test]
async fn configs_import_reads_json_yaml_and_csv_all_or_nothing() {
    let w = World::new().await;
    // The existing deployment's single-config JSON, a YAML list, and a CSV with nested columns.
    let one = w.file("test_config.json", &legacy("migration_test", "migration_test").to_string());
    let yaml = w.file(
        "more.yaml",
        "configs:\n  - name: orders\n    google_sheet_url: 1AbCdEfGhIjKlMnOp\n    google_cloud_project_id: test-proj\n    bigquery_dataset_id: reporting\n    bigquery_table_id: orders\n    run_frequency_hours: 6\n    spec:\n      worksheet: Orders\n      write_mode: append\n",
    );
    let csv = w.file(
        "sheets.csv",
        "name,google_sheet_url,google_cloud_project_id,bigquery_dataset_id,bigquery_table_id,schema_handling,is_active,spec.header_row,guards.max_shrink_fraction\n\
         stock,1AbCdEfGhIjKlMnOp,test-proj,reporting,stock,all_strings,no,2,0.5\n",
    );
    let f = w.run(&["configs", "import", &one, &yaml, &csv, "--dry-run"]).await;
    assert!(ok(&f).contains("3 config(s) valid; nothing written"), "{}", f.stdout);
    assert_eq!(w.count("SELECT count(*) FROM sheet_to_bigquery_configs").await, 0);

    let f = w.run(&["configs", "import", &one, &yaml, &csv]).await;
    assert!(ok(&f).contains("imported 3 config(s)"), "{}", f.stdout);
    let list = json_out(&w.run(&["configs", "list", "--json"]).await);
    let by = |n: &str| list.as_array().unwrap().iter().find(|c| c["name"] == n).unwrap().clone();
    assert_eq!(by("orders")["spec"], json!({"worksheet": "Orders", "write_mode": "append"}));
    assert_eq!(by("orders")["run_frequency_hours"], 6);
    assert_eq!(by("stock")["is_active"], false);
    assert_eq!(by("stock")["spec"]["header_row"], 2);
    assert_eq!(by("stock")["spec"]["guards"]["max_shrink_fraction"], 0.5);
    assert_eq!(by("migration_test")["migration_status"], "job_ready");

    // A name already in the database: nothing of the file is written.
    let clash = w.file("clash.json", &json!([legacy("fresh1", "f1"), legacy("orders", "o2")]).to_string());
    let text = failed(&w.run(&["configs", "import", &clash]).await, 1);
    assert!(text.contains("\"orders\" already exists") && text.contains("nothing was written"), "{text}");
    // A name twice in the files: nothing written.
    let dup = w.file("dup.json", &json!([legacy("fresh2", "f2"), legacy("fresh2", "f3")]).to_string());
    let text = failed(&w.run(&["configs", "import", &dup]).await, 2);
    assert!(text.contains("name \"fresh2\" is already used by"), "{text}");
    // One invalid entry among valid ones: nothing written, the entry and field named.
    let mut bad = legacy("fresh3", "f4");
    bad["bigquery_dataset_id"] = "no-dashes".into();
    let invalid = w.file("invalid.json", &json!([legacy("fresh4", "f5"), bad]).to_string());
    let text = failed(&w.run(&["configs", "import", &invalid]).await, 2);
    assert!(text.contains("invalid.json entry 2 (\"fresh3\"): bigquery_dataset_id"), "{text}");
    // Not a config file at all.
    let garbage = w.file("garbage.json", "{not json");
    assert!(failed(&w.run(&["configs", "import", &garbage]).await, 1).contains("not valid JSON"));
    let unknown = w.file("configs.txt", "x");
    assert!(failed(&w.run(&["configs", "import", &unknown]).await, 1).contains("--format"));
    assert_eq!(
        w.count("SELECT count(*) FROM sheet_to_bigquery_configs").await,
        3,
        "nothing written by the failed imports"
    );

    // --status service: still loaded by the old service, not in active_job_configs.
    let svc = w.file("svc.json", &legacy("old_one", "old").to_string());
    ok(&w.run(&["configs", "import", &svc, "--status", "service"]).await);
    assert_eq!(w.count("SELECT count(*) FROM active_job_configs WHERE name = 'old_one'").await, 0);
}

#[tokio::test]
async fn configs_validate_offline_stored_and_online() {
    let w = World::new().await;
    w.env.put_rows("valid0000001", &[&["a"], &["1"]]);
    let good = w.config_file("good", "valid0000001", "good", json!({}));
    let missing = w.config_file("missing", "missing00001", "missing", json!({}));
    let wrong_tab = w.config_file("tab", "valid0000001", "tab", json!({"worksheet": "Nope"}));
    let bad = w.file("bad.json", r#"{"name": "bad", "schema_handling": "weird"}"#);

    assert!(ok(&w.run(&["configs", "validate", &good]).await).contains("valid"));
    let text = failed(&w.run(&["configs", "validate", &bad]).await, 2);
    assert!(text.contains("schema_handling") && text.contains("google_sheet_url: is required"), "{text}");

    let f = w.run(&["configs", "validate", &good, "--online"]).await;
    let out = ok(&f);
    assert!(out.contains("valid0000001 readable: tab \"Sheet1\""), "{out}");
    assert!(out.contains(&format!("dataset test-proj.{} reachable but does not exist yet", w.env.dataset)), "{out}");
    let text = failed(&w.run(&["configs", "validate", &missing, "--online"]).await, 1);
    assert!(text.contains("FAIL") && text.contains("missing00001"), "{text}");
    let text = failed(&w.run(&["configs", "validate", &wrong_tab, "--online"]).await, 1);
    assert!(text.contains("no tab named \"Nope\""), "{text}");

    // Stored configs, by name and all; an unknown name fails.
    ok(&w.run(&["configs", "add", "--file", &good]).await);
    assert!(ok(&w.run(&["configs", "validate", "--name", "good"]).await).contains("config \"good\": valid"));
    ok(&w.run(&["configs", "validate", "--all", "--online"]).await);
    assert!(failed(&w.run(&["configs", "validate", "--name", "nope"]).await, 1).contains("no config named"));
}

/// Inserts a finished run directly (status tests need history without waiting for loads).
#[allow(clippy::too_many_arguments)] // one column each, named at every call site
async fn insert_run(
    db: &TestDb,
    config_id: i64,
    name: &str,
    status: &str,
    hours_ago: i64,
    rows: Option<i64>,
    error: Option<&str>,
    details: Value,
) -> i64 {
    db.client()
        .await
        .query_one(
            "INSERT INTO job_runs (config_id, config_name, status, trigger, created_at, started_at, finished_at, rows_read, rows_written, error_kind, error_message, details)
             VALUES ($1, $2, $3, 'scheduler', now() - make_interval(hours => $4::int), now() - make_interval(hours => $4::int),
                     now() - make_interval(hours => $4::int) + interval '5 seconds', $5, $5, $6, $7, $8)
             RETURNING id",
            &[&config_id, &name, &status, &(hours_ago as i32), &rows, &error.map(|_| "validation"), &error, &details],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn status_shows_outcomes_streaks_and_filters() {
    let w = World::new().await;
    let file =
        w.file("c.json", &json!([legacy("healthy", "h"), legacy("broken", "b"), legacy("fresh", "f")]).to_string());
    ok(&w.run(&["configs", "import", &file]).await);
    let pg = w.db.client().await;
    pg.batch_execute(
        "UPDATE sheet_to_bigquery_configs SET last_run = now() - interval '1 hour' WHERE name = 'healthy';
                      UPDATE sheet_to_bigquery_configs SET last_run = now() - interval '30 hours' WHERE name = 'broken';
                      UPDATE sheet_to_bigquery_configs SET kind = 'postgres_upsert' WHERE name = 'fresh'",
    )
    .await
    .unwrap();
    let (h, b) = (w.config_id("healthy").await, w.config_id("broken").await);
    insert_run(&w.db, h, "healthy", "failed", 3, None, Some("boom"), json!({})).await;
    insert_run(&w.db, h, "healthy", "succeeded", 1, Some(120), None, json!({})).await;
    insert_run(&w.db, b, "broken", "succeeded", 30, Some(5), None, json!({})).await;
    insert_run(&w.db, b, "broken", "failed", 20, None, Some("bad cell"), json!({})).await;
    insert_run(&w.db, b, "broken", "timed_out", 10, None, Some("too slow"), json!({})).await;

    let f = w.run(&["status"]).await;
    let out = ok(&f);
    assert!(!out.contains('\x1b'), "no colour when stdout is not a terminal");
    let line =
        |n: &str| out.lines().find(|l| l.starts_with(n)).unwrap_or_else(|| panic!("{n} missing:\n{out}")).to_string();
    assert!(
        line("healthy").contains("succeeded (120 rows)") && line("healthy").contains("in 23h"),
        "{}",
        line("healthy")
    );
    assert!(line("healthy").trim_end().ends_with('0'));
    assert!(line("broken").contains("timed_out") && line("broken").contains("due (overdue by"), "{}", line("broken"));
    assert!(line("broken").trim_end().ends_with('2'), "failing streak of 2: {}", line("broken"));
    assert!(line("fresh").contains("never"), "{}", line("fresh"));

    let failing = ok(&w.run(&["status", "--failing"]).await).to_string();
    assert!(failing.contains("broken") && !failing.contains("healthy") && !failing.contains("fresh"), "{failing}");
    let due = ok(&w.run(&["status", "--due"]).await).to_string();
    assert!(due.contains("broken") && due.contains("fresh") && !due.contains("healthy"), "{due}");
    let kind = ok(&w.run(&["status", "--kind", "postgres_upsert"]).await).to_string();
    assert!(kind.contains("fresh") && !kind.contains("broken"), "{kind}");
    assert!(failed(&w.run(&["status", "--kind", "teleport"]).await, 1).contains("unknown kind"));

    let v = json_out(&w.run(&["status", "--json"]).await);
    let broken = v.as_array().unwrap().iter().find(|c| c["name"] == "broken").unwrap();
    assert_eq!(
        (broken["failing_streak"].as_i64(), broken["last_status"].as_str(), broken["is_due"].as_bool()),
        (Some(2), Some("timed_out"), Some(true))
    );

    // Colour when asked for.
    assert!(ok(&w.run(&["status", "--color", "always"]).await).contains('\x1b'));
}

#[tokio::test]
async fn runs_list_filters_and_show_names_cells_and_rejected_rows() {
    let w = World::new().await;
    let file = w.file("c.json", &json!([legacy("alpha", "a"), legacy("beta", "b")]).to_string());
    ok(&w.run(&["configs", "import", &file]).await);
    let (a, b) = (w.config_id("alpha").await, w.config_id("beta").await);
    insert_run(&w.db, a, "alpha", "succeeded", 48, Some(10), None, json!({"destination": "test-proj.reporting.a"}))
        .await;
    let bad = insert_run(
        &w.db,
        a,
        "alpha",
        "failed",
        2,
        None,
        Some("2 cell(s) do not fit the schema"),
        json!({"cell_errors": ["Sheet1!C17: \"abc\" is not an INT64", "Sheet1!C18: \"x\" is not an INT64"]}),
    )
    .await;
    insert_run(&w.db, b, "beta", "succeeded", 1, Some(7), None, json!({})).await;
    w.db.client()
        .await
        .execute(
            "INSERT INTO import_results (run_id, row_number, cell_ref, key, reason) VALUES ($1, 4, 'Sheet1!B4', '{\"sku\": \"A-1\"}', 'duplicate key')",
            &[&bad],
        )
        .await
        .unwrap();

    let all = ok(&w.run(&["runs"]).await).to_string();
    assert_eq!(all.lines().count(), 4, "header + 3 runs:\n{all}");
    let alpha = ok(&w.run(&["runs", "--config", "alpha"]).await).to_string();
    assert!(alpha.lines().skip(1).all(|l| l.contains("alpha")) && alpha.lines().count() == 3, "{alpha}");
    let failed_runs = ok(&w.run(&["runs", "--failed"]).await).to_string();
    assert!(failed_runs.lines().count() == 2 && failed_runs.contains("do not fit"), "{failed_runs}");
    let recent = ok(&w.run(&["runs", "--since", "24h"]).await).to_string();
    assert_eq!(recent.lines().count(), 3, "{recent}");
    let v = json_out(&w.run(&["runs", "--config", "beta", "--json"]).await);
    assert_eq!(v[0]["rows_written"], 7);

    let show = w.run(&["runs", "show", &bad.to_string()]).await;
    let out = ok(&show);
    for needle in [
        "failed",
        "[validation] 2 cell(s) do not fit the schema",
        "Sheet1!C17: \"abc\" is not an INT64",
        "Sheet1!C18",
        "rejected rows (1)",
        "Sheet1!B4 key {\"sku\":\"A-1\"}: duplicate key",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    let v = json_out(&w.run(&["runs", "show", &bad.to_string(), "--json"]).await);
    assert_eq!(v["cell_errors"].as_array().unwrap().len(), 2);
    assert_eq!(v["rejected_rows"][0]["reason"], "duplicate key");

    assert!(failed(&w.run(&["runs", "show", "999999"]).await, 1).contains("no run with id 999999"));
    assert!(failed(&w.run(&["runs", "--config", "nope"]).await, 1).contains("no config named"));
    failed(&w.run(&["runs", "--since", "soon"]).await, 2);
}

#[tokio::test]
async fn migrate_adopts_a_python_service_database_and_twice_changes_nothing() {
    let (db, pg, rows_before) = crate::support::python_service_db().await;
    let sheets = "http://127.0.0.1:9";

    // Other commands refuse an unmigrated database and say what to run.
    let f = jobctl(Some(&db.url), sheets, &["status"]).await;
    assert!(failed(&f, 1).contains("run `jobctl migrate`"), "{}", f.stderr);

    // --dry-run prints the SQL and changes nothing.
    let f = jobctl(Some(&db.url), sheets, &["migrate", "--dry-run"]).await;
    let out = ok(&f);
    assert!(out.contains("-- V1__configs.sql") && out.contains("ADD COLUMN IF NOT EXISTS"), "{out}");
    assert!(f.stderr.contains("would adopt the existing sheet_to_bigquery_configs (3 rows"), "{}", f.stderr);
    let exists: bool = pg.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await.unwrap().get(0);
    assert!(!exists, "dry run wrote nothing");

    let f = jobctl(Some(&db.url), sheets, &["migrate"]).await;
    let out = ok(&f);
    assert!(
        out.contains("adopting the existing sheet_to_bigquery_configs (3 rows)") && out.contains("applied V1__configs"),
        "{out}"
    );
    crate::support::assert_adopted(&pg, &rows_before).await;
    let first = versions(&pg).await;

    // Twice changes nothing.
    let f = jobctl(Some(&db.url), sheets, &["migrate"]).await;
    assert!(ok(&f).contains("up to date; nothing to apply"), "{}", f.stdout);
    assert_eq!(versions(&pg).await, first);
    let f = jobctl(Some(&db.url), sheets, &["migrate", "--dry-run"]).await;
    assert!(ok(&f).is_empty() && f.stderr.contains("up to date"), "{}", f.all_text());

    // The adopted rows are valid configs, on the old service until moved.
    let list = ok(&jobctl(Some(&db.url), sheets, &["configs", "list"]).await).to_string();
    assert!(list.contains("migration_test") && list.contains("service") && !list.contains("no:"), "{list}");
    let f = jobctl(Some(&db.url), sheets, &["configs", "set-status", "job_ready", "sales"]).await;
    ok(&f);
    let names: Vec<String> =
        pg.query("SELECT name FROM active_job_configs", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["sales".to_string()]);
    assert!(failed(&jobctl(Some(&db.url), sheets, &["configs", "set-status", "job_ready", "nope"]).await, 1)
        .contains("no config named"));
    failed(&jobctl(Some(&db.url), sheets, &["configs", "set-status", "done", "sales"]).await, 2);
    ok(&jobctl(Some(&db.url), sheets, &["configs", "set-status", "service", "--all"]).await);
    assert_eq!(pg.query("SELECT 1 FROM active_job_configs", &[]).await.unwrap().len(), 0);
}

async fn versions(pg: &tokio_postgres::Client) -> Vec<(i32, chrono::DateTime<chrono::Utc>)> {
    pg.query("SELECT version, applied_at FROM schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn concurrent_migrate_from_two_processes() {
    let (db, pg, before) = crate::support::python_service_db().await;
    let sheets = "http://127.0.0.1:9";
    let a = command(Some(&db.url), sheets, &["migrate"]).spawn().unwrap();
    let b = command(Some(&db.url), sheets, &["migrate"]).spawn().unwrap();
    let (a, b) = tokio::join!(
        testkit::proc::finish(a, Duration::from_secs(60)),
        testkit::proc::finish(b, Duration::from_secs(60))
    );
    ok(&a);
    ok(&b);
    let applied = |f: &Finished| f.stdout.lines().filter(|l| l.starts_with("applied V")).count();
    assert_eq!(
        applied(&a) + applied(&b),
        sheettobigquery::store::migrate::MIGRATIONS.len(),
        "each migration applied once:\n{}\n{}",
        a.stdout,
        b.stdout
    );
    let n: i64 = pg.query_one("SELECT count(*) FROM schema_migrations", &[]).await.unwrap().get(0);
    assert_eq!(n as usize, sheettobigquery::store::migrate::MIGRATIONS.len());
    crate::support::assert_adopted(&pg, &before).await;
}

#[tokio::test]
async fn compare_checks_row_counts_against_a_scratch_load_and_never_touches_production() {
    let w = World::new().await;
    w.env.put_rows("same00000001", &[&["a", "b"], &["1", "x"], &["2", "y"]]);
    w.env.put_rows("grew00000001", &[&["a"], &["1"]]);
    let same = w.env.config("same", "same00000001", "same", json!({}));
    let grew = w.env.config("grew", "grew00000001", "grew", json!({}));
    let file = w.file("c.json", &json!([same, grew]).to_string());
    ok(&w.run(&["configs", "import", &file, "--status", "service"]).await);
    // The "old service" loaded both tables...
    let same_path = w.file("same_only.json", &w.env.config("same", "same00000001", "same", json!({})).to_string());
    let grew_path = w.file("grew_only.json", &w.env.config("grew", "grew00000001", "grew", json!({})).to_string());
    ok(&w.run(&["execute", "--config-file", &same_path]).await);
    ok(&w.run(&["execute", "--config-file", &grew_path]).await);
    // ...and then the second sheet grew, so a fresh load disagrees with it.
    w.env.put_rows("grew00000001", &[&["a"], &["1"], &["2"], &["3"]]);

    let scratch = testkit::bq::unique_dataset("cmp");
    let f = w.run(&["compare", "--scratch-dataset", &scratch]).await;
    let out = failed(&f, 1);
    let line = |n: &str| {
        f.stdout.lines().find(|l| l.starts_with(n)).unwrap_or_else(|| panic!("{n} missing:\n{out}")).to_string()
    };
    assert!(line("same").contains("MATCH") && !line("same").contains("MISMATCH"), "{}", line("same"));
    assert!(
        line("grew").contains("MISMATCH") && line("grew").contains(" 1 ") && line("grew").contains(" 3 "),
        "{}",
        line("grew")
    );
    // Production tables were only read; the fresh loads are in the scratch dataset.
    assert_eq!(testkit::bq::count(&w.env.dataset, "grew").await, Some(1));
    assert_eq!(testkit::bq::count(&scratch, &format!("{}__grew", w.env.dataset)).await, Some(3));
    // No ledger rows, no last_run from a compare.
    assert_eq!(w.count("SELECT count(*) FROM job_runs").await, 0);
    assert_eq!(w.count("SELECT count(*) FROM sheet_to_bigquery_configs WHERE last_run IS NOT NULL").await, 0);

    // --mark-ready moves the matching config to the job; JSON has the verdicts.
    let f = w.run(&["compare", "--scratch-dataset", &scratch, "--mark-ready", "--json"]).await;
    let _ = failed(&f, 1);
    let v = json_out(&f);
    let verdict = |n: &str| v.as_array().unwrap().iter().find(|c| c["name"] == n).unwrap()["result"].clone();
    assert_eq!((verdict("same"), verdict("grew")), (json!("MATCH"), json!("MISMATCH")));
    let ready: Vec<String> =
        w.db.client()
            .await
            .query("SELECT name FROM active_job_configs", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(ready, vec!["same".to_string()]);
    // One config by name: "same" still matches.
    let f = w.run(&["compare", "--scratch-dataset", &scratch, "--config", "same"]).await;
    let out = ok(&f);
    let same = out.lines().find(|l| l.starts_with("same")).unwrap_or_else(|| panic!("same missing:\n{out}"));
    assert!(same.contains(" MATCH") && !same.contains("MISMATCH"), "{out}");

    // A production dataset as scratch is refused before anything runs.
    let text = failed(&w.run(&["compare", "--scratch-dataset", &w.env.dataset, "--all"]).await, 1);
    assert!(text.contains("is a production dataset"), "{text}");
    assert!(failed(&w.run(&["compare", "--config", "nope", "--scratch-dataset", &scratch]).await, 1)
        .contains("no config named"));
}

#[tokio::test]
async fn test_connection_reports_endpoints_and_credentials_never_secrets() {
    let w = World::new().await;
    w.env.put_rows("conn00000001", &[&["a"], &["1"]]);
    let f = w.run(&["test-connection", "--project", "test-proj"]).await;
    let out = ok(&f);
    assert!(out.contains("postgres") && out.contains(&w.db.name) && out.contains("schema up to date"), "{out}");
    assert!(
        out.contains("bigquery") && out.contains("project test-proj") && out.contains("none (emulator endpoint)"),
        "{out}"
    );
    assert!(out.contains("sheets") && out.contains("answers"), "{out}");
    let f = w.run(&["test-connection", "--project", "test-proj", "--sheet", "conn00000001"]).await;
    assert!(ok(&f).contains("spreadsheet conn00000001 readable"), "{}", f.stdout);
    let text = failed(&w.run(&["test-connection", "--project", "test-proj", "--sheet", "gone00000001"]).await, 1);
    assert!(text.contains("FAIL") && text.contains("gone00000001"), "{text}");

    // A database that cannot be reached: named, failed, its password never printed.
    let f = jobctl(
        Some("postgres://someone:s3cret-pw@127.0.0.1:1/nowhere"),
        &w.env.url(),
        &["test-connection", "--project", "test-proj"],
    )
    .await;
    let text = failed(&f, 1);
    assert!(text.contains("postgres") && text.contains("FAIL") && text.contains("127.0.0.1:1/nowhere"), "{text}");
    assert!(!text.contains("s3cret-pw"), "password leaked:\n{text}");
    // Nothing configured at all: says which variables to set.
    let f = jobctl(None, &w.env.url(), &["status"]).await;
    assert!(failed(&f, 1).contains("DATABASE_URL"));
}

#[tokio::test]
async fn due_shows_what_the_orchestrator_would_run() {
    let w = World::new().await;
    let file = w.file("c.json", &json!([legacy("never_ran", "n"), legacy("recent", "r")]).to_string());
    ok(&w.run(&["configs", "import", &file]).await);
    w.db.client()
        .await
        .batch_execute(
            "UPDATE sheet_to_bigquery_configs SET last_run = now() - interval '1 hour' WHERE name = 'recent'",
        )
        .await
        .unwrap();
    let out = ok(&w.run(&["due"]).await).to_string();
    assert!(out.contains("never_ran") && !out.contains("recent"), "{out}");
    let all = ok(&w.run(&["due", "--all"]).await).to_string();
    assert!(all.contains("never_ran") && all.contains("recent"), "{all}");
    let v = json_out(&w.run(&["due", "--json"]).await);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["name"], "never_ran");
    let text = failed(&w.run(&["due", "--configs-view", "not a view"]).await, 1);
    assert!(text.contains("\"not a view\""), "the bad name is named: {text}");
}

#[tokio::test]
async fn every_command_has_help_with_examples() {
    for args in [
        vec!["--help"],
        vec!["execute", "--help"],
        vec!["status", "--help"],
        vec!["due", "--help"],
        vec!["configs", "import", "--help"],
        vec!["runs", "show", "--help"],
        vec!["migrate", "--help"],
        vec!["compare", "--help"],
        vec!["test-connection", "--help"],
    ] {
        let f = jobctl(None, "http://127.0.0.1:9", &args).await;
        assert!(ok(&f).contains("Examples:"), "{args:?}:\n{}", f.stdout);
    }
}
