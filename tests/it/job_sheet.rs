//! The `job` binary loading sheets into the BigQuery emulator, end to end.

use std::time::Duration;

use serde_json::json;
use testkit::proc::{Running, Signal};
use testkit::sheets_server::{Spreadsheet, Tab};

use crate::support::{assert_failed, assert_ok, Env};

#[tokio::test]
async fn typed_load_lands_with_column_types_and_values() {
    let env = Env::new().await;
    env.put_rows(
        "typed0000001",
        &[
            &["id", "price", "paid", "day", "at", "name", "mixed", "seen_at"],
            &["1", "9.5", "TRUE", "2024-01-05", "2024-01-05 10:30:00", "Zoë", "1", "2024-01-05T10:00:00Z"],
            &["2", "10", "FALSE", "2024-02-29", "2024-02-29 23:59:59", "東京 🎉", "2.5", "2024-01-05T12:00:00+02:00"],
            &["3", "-0.25", "TRUE", "1999-12-31", "2000-01-01 00:00:00", "say \"hi\"", "n/a", ""],
        ],
    );
    let f = env.run(&env.config("typed", "typed0000001", "typed", json!({}))).await;
    assert_ok(&f);
    let last = f.last_line();
    assert_eq!(last["rows_written"], 3);
    assert_eq!(last["config"], "typed");

    let schema = testkit::bq::table_schema(&env.dataset, "typed").await.expect("table exists");
    let types: Vec<(&str, &str)> = schema.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    assert_eq!(
        types,
        vec![
            ("id", "INT64"),
            ("price", "FLOAT64"),
            ("paid", "BOOL"),
            ("day", "DATE"),
            ("at", "DATETIME"),
            ("name", "STRING"),
            ("mixed", "STRING"),
            ("seen_at", "TIMESTAMP"),
        ]
    );
    let r = env.query("SELECT * FROM {ds}.typed ORDER BY id").await;
    assert_eq!(r.col("id"), vec![Some("1".into()), Some("2".into()), Some("3".into())]);
    assert_eq!(r.col("price"), vec![Some("9.5".into()), Some("10.0".into()), Some("-0.25".into())]);
    assert_eq!(r.col("paid"), vec![Some("true".into()), Some("false".into()), Some("true".into())]);
    assert_eq!(r.col("day"), vec![Some("2024-01-05".into()), Some("2024-02-29".into()), Some("1999-12-31".into())]);
    let at = r.col("at");
    assert!(at[0].as_deref().unwrap().starts_with("2024-01-05T10:30:00"), "{at:?}");
    assert!(at[1].as_deref().unwrap().starts_with("2024-02-29T23:59:59"), "{at:?}");
    assert_eq!(r.col("name"), vec![Some("Zoë".into()), Some("東京 🎉".into()), Some("say \"hi\"".into())]);
    // A mixed column widens to STRING; it never splits.
    assert_eq!(r.col("mixed"), vec![Some("1".into()), Some("2.5".into()), Some("n/a".into())]);
    // TIMESTAMP comes back from the emulator as microseconds since the epoch.
    assert_eq!(r.col("seen_at"), vec![Some("1704448800000000".into()), Some("1704448800000000".into()), None]);
}

#[tokio::test]
async fn ragged_rows_empty_rows_and_odd_headers() {
    let env = Env::new().await;
    env.put_rows(
        "ragged000001",
        &[
            &["Order ID", "order id", "", "2024 total", "Prénom", ""],
            &["1", "a"],
            &[],
            &["", "", "", "", "", ""],
            &["2", "b", "x", "10", "Élise"],
            &["3"],
        ],
    );
    let f = env.run(&env.config("ragged", "ragged000001", "ragged", json!({}))).await;
    assert_ok(&f);
    let schema = testkit::bq::table_schema(&env.dataset, "ragged").await.unwrap();
    let names: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
    // Blank headers are named by column letter; trailing empty columns are trimmed.
    assert_eq!(names, vec!["Order_ID", "order_id_2", "C", "_2024_total", "Prenom"]);
    let r = env.query("SELECT * FROM {ds}.ragged ORDER BY Order_ID").await;
    assert_eq!(r.rows.len(), 3, "fully empty rows are skipped");
    assert_eq!(r.col("order_id_2"), vec![Some("a".into()), Some("b".into()), None]);
    assert_eq!(r.col("Prenom"), vec![None, Some("Élise".into()), None]);
    // The header mapping is logged.
    let schema_line = f.line("schema").expect("schema log line");
    assert!(schema_line["columns"].as_str().unwrap().contains("\"header\":\"2024 total\""), "{schema_line}");
}

#[tokio::test]
async fn tabs_with_odd_names_are_found_by_gid_and_title() {
    let env = Env::new().await;
    let rows = |v: &str| vec![vec!["k".to_string()], vec![v.to_string()]];
    env.sheets.server().put(
        Spreadsheet::new("oddtabs00001")
            .with_tab(Tab::from_input("First", 0, rows("first")))
            .with_tab(Tab::from_input("Q1 #2/3? 'x' %", 4242, rows("odd"))),
    );
    let mut by_gid = env.config("oddgid", "oddtabs00001", "odd_gid", json!({}));
    by_gid["google_sheet_url"] = json!("https://docs.google.com/spreadsheets/d/oddtabs00001/edit#gid=4242");
    assert_ok(&env.run(&by_gid).await);
    let r = env.query("SELECT k FROM {ds}.odd_gid").await;
    assert_eq!(r.col("k"), vec![Some("odd".into())]);
    let by_title = env.config("oddtitle", "oddtabs00001", "odd_title", json!({"worksheet": "Q1 #2/3? 'x' %"}));
    assert_ok(&env.run(&by_title).await);
    assert_eq!(env.query("SELECT k FROM {ds}.odd_title").await.col("k"), vec![Some("odd".into())]);
    let missing = env.config("oddmissing", "oddtabs00001", "odd_missing", json!({"worksheet": "Nope"}));
    let err = assert_failed(&env.run(&missing).await, 3);
    assert!(err.contains("has no tab named \"Nope\"") && err.contains("\"First\" (gid 0)"), "{err}");
}

#[tokio::test]
async fn empty_sheet_is_refused_unless_allowed() {
    let env = Env::new().await;
    env.put_rows("empty0000001", &[&["a", "b"]]);
    let f = env.run(&env.config("empty", "empty0000001", "empty", json!({}))).await;
    let err = assert_failed(&f, 5);
    assert!(err.contains("no data rows") && err.contains("refusing to replace"), "{err}");
    assert_eq!(testkit::bq::count(&env.dataset, "empty").await, None, "nothing created");

    // With the guard lifted, an existing table is emptied.
    env.put_rows("full00000001", &[&["a", "b"], &["1", "2"]]);
    assert_ok(&env.run(&env.config("full", "full00000001", "empty", json!({}))).await);
    assert_eq!(testkit::bq::count(&env.dataset, "empty").await, Some(1));
    let f = env.run(&env.config("empty2", "empty0000001", "empty", json!({"guards": {"allow_empty": true}}))).await;
    assert_ok(&f);
    assert_eq!(testkit::bq::count(&env.dataset, "empty").await, Some(0));
}

#[tokio::test]
async fn shrink_beyond_the_guard_is_refused() {
    let env = Env::new().await;
    let mut rows: Vec<Vec<String>> = vec![vec!["n".into()]];
    rows.extend((1..=10).map(|i| vec![i.to_string()]));
    env.sheets.server().put(Spreadsheet::new("shrink000001").with_tab(Tab::from_input("Sheet1", 0, rows.clone())));
    let cfg = env.config("shrink", "shrink000001", "shrink", json!({"guards": {"max_shrink_fraction": 0.5}}));
    assert_ok(&env.run(&cfg).await);
    assert_eq!(testkit::bq::count(&env.dataset, "shrink").await, Some(10));

    rows.truncate(3);
    env.sheets.server().put(Spreadsheet::new("shrink000001").with_tab(Tab::from_input("Sheet1", 0, rows)));
    let err = assert_failed(&env.run(&cfg).await, 5);
    assert!(err.contains("shrink from 10 to 2 rows"), "{err}");
    assert_eq!(testkit::bq::count(&env.dataset, "shrink").await, Some(10), "table untouched");
}

#[tokio::test]
async fn explicit_schema_bad_cell_is_named_and_table_untouched() {
    let env = Env::new().await;
    let schema = json!([{"name": "id", "type": "INT64", "mode": "REQUIRED"}, {"name": "label", "type": "STRING"}, {"name": "qty", "type": "INTEGER"}]);
    let mut rows: Vec<Vec<String>> = vec![vec!["id".into(), "label".into(), "qty".into(), "ignored".into()]];
    rows.extend((2..=20).map(|i| vec![i.to_string(), format!("row {i}"), (i * 10).to_string(), "x".into()]));
    env.sheets.server().put(Spreadsheet::new("explicit0001").with_tab(Tab::from_input("Sheet1", 0, rows.clone())));
    let cfg =
        env.config("explicit", "explicit0001", "explicit", json!({"schema_handling": "explicit", "schema": schema}));
    assert_ok(&env.run(&cfg).await);
    let before = env.query("SELECT id, qty FROM {ds}.explicit ORDER BY id").await.rows;
    assert_eq!(before.len(), 19);
    let s = testkit::bq::table_schema(&env.dataset, "explicit").await.unwrap();
    assert_eq!(s.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["id", "label", "qty"]);

    // Row 17 of the sheet gets a bad qty; row 19 an empty REQUIRED id.
    rows[16][2] = "abc".into();
    rows[18][0] = "".into();
    env.sheets.server().put(Spreadsheet::new("explicit0001").with_tab(Tab::from_input("Sheet1", 0, rows)));
    let f = env.run(&cfg).await;
    let err = assert_failed(&f, 5);
    assert!(err.contains("Sheet1!C17: \"abc\" is not INT64"), "{err}");
    assert!(err.contains("Sheet1!A19: empty, but column id is REQUIRED"), "{err}");
    assert!(err.contains("nothing was loaded"), "{err}");
    let after = env.query("SELECT id, qty FROM {ds}.explicit ORDER BY id").await.rows;
    assert_eq!(after, before, "table untouched");
}

#[tokio::test]
async fn all_strings_loads_formatted_values() {
    let env = Env::new().await;
    env.put_rows("strings00001", &[&["n", "d", "b"], &["42", "2024-01-05", "TRUE"], &["3.5", "2024-12-31", "FALSE"]]);
    let f = env.run(&env.config("strings", "strings00001", "strings", json!({"schema_handling": "all_strings"}))).await;
    assert_ok(&f);
    let s = testkit::bq::table_schema(&env.dataset, "strings").await.unwrap();
    assert!(s.iter().all(|(_, t)| t == "STRING"), "{s:?}");
    let r = env.query("SELECT * FROM {ds}.strings ORDER BY n").await;
    assert_eq!(r.col("n"), vec![Some("3.5".into()), Some("42".into())]);
    assert_eq!(r.col("d"), vec![Some("2024-12-31".into()), Some("2024-01-05".into())]);
    assert_eq!(r.col("b"), vec![Some("FALSE".into()), Some("TRUE".into())]);
}

#[tokio::test]
async fn replace_replaces_and_append_appends() {
    let env = Env::new().await;
    env.put_rows("modes0000001", &[&["k", "v"], &["a", "1"], &["b", "2"]]);
    let replace = env.config("modes", "modes0000001", "modes", json!({}));
    assert_ok(&env.run(&replace).await);
    assert_ok(&env.run(&replace).await);
    assert_eq!(testkit::bq::count(&env.dataset, "modes").await, Some(2));
    let append = env.config("modes_append", "modes0000001", "modes", json!({"write_mode": "append"}));
    let f = env.run(&append).await;
    assert_ok(&f);
    assert_eq!(testkit::bq::count(&env.dataset, "modes").await, Some(4));
    let details = f.last_line();
    assert_eq!(details["rows_written"], 2);
}

#[tokio::test]
async fn rate_limited_reads_are_retried() {
    let env = Env::new().await;
    env.put_rows("retry0000001", &[&["k"], &["a"]]);
    env.sheets.server().fail_next("retry0000001", 2, 429);
    let f = env.run(&env.config("retry", "retry0000001", "retry", json!({}))).await;
    assert_ok(&f);
    let retries: Vec<_> =
        f.json_lines().into_iter().filter(|l| l["message"] == "transient API error, retrying").collect();
    assert_eq!(retries.len(), 2, "{}", f.stdout);
    assert_eq!(retries[0]["status"], 429);
    assert_eq!(retries[0]["severity"], "WARNING");
    assert_eq!(testkit::bq::count(&env.dataset, "retry").await, Some(1));
}

#[tokio::test]
async fn forbidden_sheet_fails_fast_with_the_api_message() {
    let env = Env::new().await;
    env.put_rows("forbid000001", &[&["k"], &["a"]]);
    env.sheets.server().forbid("forbid000001");
    let f = env.run(&env.config("forbid", "forbid000001", "forbid", json!({}))).await;
    let err = assert_failed(&f, 3);
    assert!(err.contains("The caller does not have permission"), "{err}");
    assert!(err.contains("share the spreadsheet"), "{err}");
    assert_eq!(env.sheets.server().request_count().total(), 1, "a 403 is not retried");
    assert_eq!(testkit::bq::count(&env.dataset, "forbid").await, None);
}

#[tokio::test]
async fn malformed_configs_name_the_field() {
    let env = Env::new().await;
    let mut bad = env.config("bad", "whatever0001", "t", json!({}));
    bad["bigquery_dataset_id"] = json!("my-dataset");
    bad["schema_handling"] = json!("guess");
    let err = assert_failed(&env.run(&bad).await, 2);
    assert!(err.contains("bigquery_dataset_id: \"my-dataset\" is not a valid dataset id"), "{err}");
    assert!(err.contains("schema_handling: unknown value \"guess\""), "{err}");

    let unknown = json!({"name": "k", "kind": "teleport"});
    let err = assert_failed(&env.run(&unknown).await, 2);
    assert!(err.contains("kind: unknown kind \"teleport\""), "{err}");

    let f = testkit::proc::run_job(&env.url(), &["--config-json", "{not json"], &[]).await;
    let err = assert_failed(&f, 2);
    assert!(err.contains("config is not valid JSON"), "{err}");

    let f = testkit::proc::run_job(&env.url(), &[], &[]).await;
    let err = assert_failed(&f, 2);
    assert!(err.contains("no configuration given"), "{err}");
    assert_eq!(env.sheets.server().request_count().total(), 0, "no API call on a bad config");
}

#[tokio::test]
async fn big_sheet_is_read_in_windows() {
    let env = Env::new().await;
    let mut rows: Vec<Vec<String>> = vec![vec!["i".into(), "sq".into(), "label".into()]];
    rows.extend((1..=2500).map(|i: u64| vec![i.to_string(), (i * i).to_string(), format!("row {i}")]));
    env.sheets.server().put(Spreadsheet::new("bigsheet0001").with_tab(Tab::from_input("Sheet1", 0, rows)));
    let f = env.run(&env.config("big", "bigsheet0001", "big", json!({"window_rows": 1000}))).await;
    assert_ok(&f);
    let counts = env.sheets.server().request_count();
    // One header read plus three windows of 1,000 rows.
    assert_eq!(counts.values_get, 4, "{counts:?}");
    let progress: Vec<_> = f.json_lines().into_iter().filter(|l| l["message"] == "reading sheet: progress").collect();
    assert_eq!(progress.len(), 3);
    assert_eq!(progress[2]["rows_read"], 2500);
    let r = env.query("SELECT COUNT(*) AS n, SUM(sq) AS s FROM {ds}.big").await;
    assert_eq!(r.rows[0][0].as_deref(), Some("2500"));
    let expected: u64 = (1..=2500u64).map(|i| i * i).sum();
    assert_eq!(r.rows[0][1].as_deref(), Some(expected.to_string().as_str()));
}

#[tokio::test]
async fn sigterm_mid_read_leaves_the_table_untouched() {
    let env = Env::new().await;
    let mut rows: Vec<Vec<String>> = vec![vec!["i".into()]];
    rows.extend((1..=5).map(|i: u64| vec![i.to_string()]));
    env.sheets.server().put(Spreadsheet::new("sigterm00001").with_tab(Tab::from_input("Sheet1", 0, rows)));
    let cfg = env.config("sigterm", "sigterm00001", "sigterm", json!({}));
    assert_ok(&env.run(&cfg).await);

    let mut rows: Vec<Vec<String>> = vec![vec!["i".into()]];
    rows.extend((1..=3000).map(|i: u64| vec![i.to_string()]));
    env.sheets.server().put(Spreadsheet::new("sigterm00001").with_tab(Tab::from_input("Sheet1", 0, rows)));
    env.sheets.server().set_delay(Duration::from_millis(300));
    let mut slow = cfg.clone();
    slow["window_rows"] = json!(100);
    let mut cmd = testkit::proc::job_command(&env.url(), &[]);
    cmd.args(["--config-file", &env.write_config(&slow)]);
    let mut job = Running::spawn(cmd);
    job.wait_line("a progress line", |l| l["message"] == "reading sheet: progress").await;
    job.signal(Signal::SIGTERM);
    // Cloud Run sends SIGKILL 10 s after SIGTERM.
    let code = job.wait_within(Duration::from_secs(10)).await;
    assert_eq!(code, Some(130), "{}", job.text());
    let last = job.lines().pop().expect("log lines");
    assert_eq!(last["message"], "Job execution failed");
    assert_eq!(last["error_kind"], "interrupted");
    assert_eq!(testkit::bq::count(&env.dataset, "sigterm").await, Some(5), "table untouched");
}

#[tokio::test]
async fn config_by_id_records_the_run_and_advances_last_run() {
    let env = Env::new().await;
    let db = testkit::pg::TestDb::migrated().await;
    let pg = db.client().await;
    env.put_rows("byid00000001", &[&["k", "v"], &["a", "1"], &["b", "2"], &["c", "3"]]);
    let cfg = env.config("byid", "byid00000001", "byid", json!({}));
    let id: i64 = pg
        .query_one(
            "INSERT INTO sheet_to_bigquery_configs (name, google_sheet_url, google_cloud_project_id, bigquery_dataset_id, bigquery_table_id, schema_handling)
             VALUES ($1, $2, $3, $4, $5, 'auto_detect') RETURNING id",
            &[&"byid", &cfg["google_sheet_url"].as_str().unwrap(), &testkit::bq::PROJECT, &env.dataset, &"byid"],
        )
        .await
        .unwrap()
        .get(0);
    let run_id: i64 = pg
        .query_one("INSERT INTO job_runs (config_id, config_name, status, trigger) VALUES ($1, 'byid', 'queued', 'scheduler') RETURNING id", &[&id])
        .await
        .unwrap()
        .get(0);
    let f = testkit::proc::run_job(
        &env.url(),
        &[],
        &[("DATABASE_URL", &db.url), ("JOB_CONFIG_ID", &id.to_string()), ("JOB_RUN_ID", &run_id.to_string())],
    )
    .await;
    assert_ok(&f);
    assert_eq!(f.last_line()["run_id"], run_id);
    let row = pg
        .query_one("SELECT status, rows_read, rows_written, started_at IS NOT NULL, finished_at IS NOT NULL, heartbeat_at IS NOT NULL FROM job_runs WHERE id = $1", &[&run_id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "succeeded");
    assert_eq!(row.get::<_, Option<i64>>(1), Some(3));
    assert_eq!(row.get::<_, Option<i64>>(2), Some(3));
    assert!(row.get::<_, bool>(3) && row.get::<_, bool>(4) && row.get::<_, bool>(5));
    let last_run: Option<chrono::DateTime<chrono::Utc>> =
        pg.query_one("SELECT last_run FROM sheet_to_bigquery_configs WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert!(last_run.is_some(), "last_run advanced on success");
    assert_eq!(testkit::bq::count(&env.dataset, "byid").await, Some(3));

    // A failing manual run by id: recorded as failed, last_run unchanged.
    env.sheets.server().forbid("byid00000001");
    let f = testkit::proc::run_job(&env.url(), &["--config-id", &id.to_string()], &[("DATABASE_URL", &db.url)]).await;
    assert_failed(&f, 3);
    let row = pg
        .query_one("SELECT status, error_kind, error_message, trigger FROM job_runs WHERE config_id = $1 ORDER BY id DESC LIMIT 1", &[&id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("source"));
    assert!(row.get::<_, Option<String>>(2).unwrap().contains("permission"));
    assert_eq!(row.get::<_, String>(3), "manual");
    let again: Option<chrono::DateTime<chrono::Utc>> =
        pg.query_one("SELECT last_run FROM sheet_to_bigquery_configs WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(again, last_run, "last_run moves only on success");

    // A stale attempt is refused without touching anything.
    let f = testkit::proc::run_job(&env.url(), &[], &[("DATABASE_URL", &db.url), ("JOB_RUN_ID", &run_id.to_string())])
        .await;
    let err = assert_failed(&f, 6);
    assert!(err.contains("no longer queued or running"), "{err}");
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let env = Env::new().await;
    let f = testkit::proc::run_job(
        &env.url(),
        &["--config-id", "1"],
        &[("DATABASE_URL", "postgres://stb:s3cr3t-pw@127.0.0.1:1/nope")],
    )
    .await;
    assert_failed(&f, 6);
    assert!(!f.all_text().contains("s3cr3t-pw"), "{}", f.all_text());
}

/// The emulator ignores client job ids, so this path runs against the small BigQuery fake: the
/// upload is accepted but its response is lost (503); the retry finds the job (409) and
/// re-attaches, polling it through RUNNING to DONE. An append would show a double load.
#[tokio::test]
async fn a_lost_load_response_reattaches_instead_of_loading_twice() {
    let env = Env::new().await;
    env.put_rows("reattach0001", &[&["k"], &["a"], &["b"], &["c"]]);
    let fake = testkit::bq_fake::BigQueryFake::default();
    fake.lose_next_responses(1);
    fake.running_polls(2);
    let url = fake.spawn().await;
    let cfg = env.config("reattach", "reattach0001", "reattach", json!({"write_mode": "append"}));
    let f = env.run_with(&cfg, &[("BIGQUERY_EMULATOR_HOST", &url)]).await;
    assert_ok(&f);
    assert!(f.line("load job already exists; re-attaching").is_some(), "{}", f.stdout);
    assert_eq!(fake.counts(), (2, 1), "two uploads, one load applied");
    assert_eq!(fake.rows(&env.dataset, "reattach"), Some(3));
}

/// The shipped XLSX fixture (the demo's): typed dates, date-times and times from the workbook's
/// number formats, a formula error loaded as NULL, and a tab whose table starts at B2.
#[tokio::test]
async fn xlsx_workbook_tabs_load_with_their_formats() {
    let env = Env::new().await;
    let fixture = testkit::sheets_server::fixtures_dir().join("example_workbook.xlsx");
    env.sheets.server().put(Spreadsheet::from_path(&fixture).unwrap());
    let orders = env.config("orders", "example_workbook", "orders", json!({}));
    let f = env.run(&orders).await;
    assert_ok(&f);
    let schema = testkit::bq::table_schema(&env.dataset, "orders").await.unwrap();
    let ty = |n: &str| {
        schema.iter().find(|(c, _)| c == n).map(|(_, t)| t.clone()).unwrap_or_else(|| panic!("no {n} in {schema:?}"))
    };
    assert_eq!(ty("order_date"), "DATE");
    assert_eq!(ty("shipped_at"), "DATETIME");
    assert_eq!(ty("pickup_time"), "TIME");
    assert_eq!(ty("in_stock"), "BOOL");
    assert_eq!(ty("quantity"), "INT64");
    assert!(f.line("formula errors loaded as NULL").is_some(), "{}", f.stdout);

    let mut monthly = env.config("monthly", "example_workbook", "monthly", json!({"range": "B2:D"}));
    monthly["google_sheet_url"] = json!("https://docs.google.com/spreadsheets/d/example_workbook/edit#gid=1007");
    assert_ok(&env.run(&monthly).await);
    let r = env.query("SELECT month, total, note FROM {ds}.monthly ORDER BY month").await;
    assert_eq!(r.column_type("month"), Some("DATE"));
    assert_eq!(r.col("month"), vec![Some("2024-01-01".into()), Some("2024-03-01".into())]);
    assert_eq!(r.col("note"), vec![Some("first".into()), None]);
}
