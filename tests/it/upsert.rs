//! The `postgres_upsert` kind end to end: the real `job` binary imports CSV files and sheets
//! (from the local Sheets server) into a second, isolated Postgres database named by the env var
//! the config points at; the control-plane database holds the ledger and `import_results`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::pg::TestDb;
use testkit::proc::Finished;
use testkit::sheets_server::{RunningSheetsServer, SheetsServer, Spreadsheet, Tab};

use crate::support::{assert_failed, assert_ok};

const CUSTOMERS: &str = "CREATE TABLE public.customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email varchar(40),
    score numeric(8,2) CHECK (score >= 0),
    active boolean,
    joined date,
    note text DEFAULT 'untouched'
)";

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/upsert").join(name).display().to_string()
}

/// A target database with a `customers` table, a scratch directory, and a way to run the job.
struct Up {
    target: TestDb,
    pg: tokio_postgres::Client,
    dir: tempfile::TempDir,
    sheets: Option<RunningSheetsServer>,
}

impl Up {
    async fn new() -> Up {
        let target = TestDb::empty().await;
        let pg = target.client().await;
        pg.batch_execute(CUSTOMERS).await.unwrap();
        Up { target, pg, dir: tempfile::tempdir().unwrap(), sheets: None }
    }

    async fn with_sheets(mut self) -> Up {
        self.sheets = Some(SheetsServer::new().spawn().await.expect("start sheets server"));
        self
    }

    fn config(&self, name: &str, source: Value, extra: Value) -> Value {
        let mut spec = json!({
            "source": source,
            "target": {"connection_env": "UPSERT_TARGET_URL", "table": "customers", "key_columns": ["id"]},
        });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                if k == "target" {
                    for (tk, tv) in v.as_object().unwrap() {
                        spec["target"][tk] = tv.clone();
                    }
                } else {
                    spec[k] = v;
                }
            }
        }
        json!({"name": name, "kind": "postgres_upsert", "spec": spec})
    }

    fn csv(&self, name: &str, file: &str, extra: Value) -> Value {
        self.config(name, json!({"csv": {"path": fixture(file)}}), extra)
    }

    fn write_config(&self, config: &Value) -> PathBuf {
        crate::support::write_config(self.dir.path(), config)
    }

    /// The `job` command with a clean environment, the target URL in `UPSERT_TARGET_URL`.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let sheets = self.sheets.as_ref().map_or("127.0.0.1:9".to_string(), |s| s.base_url());
        // No BigQuery here: point it at a closed port so nothing can reach an emulator.
        let mut c = testkit::proc::job_command(&sheets, &[("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9")]);
        c.env("UPSERT_TARGET_URL", &self.target.url).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn spawn(&self, config: &Value, flags: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
        let path = self.write_config(config);
        let mut args = vec!["--config-file", path.to_str().unwrap()];
        args.extend_from_slice(flags);
        self.command(&args, env).spawn().expect("spawn job")
    }

    async fn run(&self, config: &Value, flags: &[&str], env: &[(&str, &str)]) -> Finished {
        testkit::proc::finish(self.spawn(config, flags, env), Duration::from_secs(60)).await
    }

    /// `id|name|email|score|active|joined|note` per row, by id.
    async fn rows(&self) -> Vec<String> {
        self.pg
            .query(
                "SELECT concat_ws('|', id, name, coalesce(email, '∅'), coalesce(score::text, '∅'), coalesce(active::text, '∅'),
                        coalesce(joined::text, '∅'), note) FROM customers ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn seed(&self) {
        assert_ok(&self.run(&self.csv("seed", "initial.csv", json!({})), &[], &[]).await);
    }
}

fn summary(f: &Finished) -> String {
    f.last_line()["summary"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn csv_insert_only_update_only_and_mixed() {
    let up = Up::new().await;
    let f = up.run(&up.csv("initial", "initial.csv", json!({})), &[], &[]).await;
    assert_ok(&f);
    assert!(
        summary(&f).starts_with("inserted 3, updated 0, unchanged 0, rejected 0 into public.customers"),
        "{}",
        summary(&f)
    );
    assert_eq!(f.last_line()["rows_written"], 3);
    assert_eq!(
        up.rows().await,
        vec![
            "1|Alice Martin|alice@example.com|120.50|true|2024-01-05|untouched",
            "2|Zoë Dubois|zoe@example.com|75.00|false|2024-01-07|untouched",
            "3|O'Neil, Bob|bob@example.com|15.25|true|2024-01-12|untouched",
        ]
    );
    let finished = f.line("import finished").expect("import finished line");
    assert_eq!((finished["inserted"].as_u64(), finished["rejected"].as_u64()), (Some(3), Some(0)));

    // A column the source does not feed keeps its value on update.
    up.pg.batch_execute("UPDATE customers SET note = 'kept' WHERE id = 1").await.unwrap();
    let f = up.run(&up.csv("update_only", "update_only.csv", json!({})), &[], &[]).await;
    assert_ok(&f);
    assert!(summary(&f).starts_with("inserted 0, updated 2, unchanged 1, rejected 0"), "{}", summary(&f));

    let f = up.run(&up.csv("mixed", "mixed.csv", json!({})), &[], &[]).await;
    assert_ok(&f);
    assert!(summary(&f).starts_with("inserted 2, updated 1, unchanged 1, rejected 0"), "{}", summary(&f));
    assert_eq!(
        up.rows().await,
        vec![
            "1|Alice Martin|alice@example.com|130.00|true|2024-01-05|kept",
            "2|Zoë Dubois|zoe@example.org|75.00|false|2024-01-07|untouched",
            "3|O'Neil, Bob|bob@example.com|20.00|true|2024-01-12|untouched",
            "4|Chen Wei|∅|0.00|∅|∅|untouched",
            "5|Multi\nline|e@x.io|100.00|false|2024-02-29|untouched",
        ]
    );
}

#[tokio::test]
async fn sheet_insert_update_and_mixed() {
    let up = Up::new().await.with_sheets().await;
    let server = up.sheets.as_ref().unwrap().server().clone();
    let put = |rows: &[&[&str]]| {
        server.put(Spreadsheet::new("upsertsheet01").with_tab(Tab::from_input(
            "People",
            0,
            rows.iter().map(|r| r.to_vec()),
        )));
    };
    let header: &[&str] = &["Customer ID", "Full name", "E-mail", "Score", "Active", "Joined"];
    put(&[
        header,
        &["1", "Alice", "a@x.io", "10.5", "TRUE", "2024-01-05"],
        &["2", "Bob", "b@x.io", "3", "FALSE", "2024-02-01"],
    ]);
    let cfg = up.config(
        "sheet_people",
        json!({"sheet": {"google_sheet_url": "https://docs.google.com/spreadsheets/d/upsertsheet01/edit#gid=0", "window_rows": 1}}),
        json!({"target": {"columns": {"Customer ID": "id", "Full name": "name", "E-mail": {"column": "email", "type": "text"},
                                       "Score": "score", "Active": "active", "Joined": {"column": "joined", "type": "date"}}}}),
    );
    let f = up.run(&cfg, &[], &[]).await;
    assert_ok(&f);
    assert!(summary(&f).starts_with("inserted 2, updated 0, unchanged 0"), "{}", summary(&f));

    put(&[
        header,
        &["2", "Bob", "b@x.io", "3", "FALSE", "2024-02-01"],
        &["1", "Alice", "a@x.io", "11", "TRUE", "2024-01-05"],
        &[],
        &["3", "Cy", "", "", "", ""],
    ]);
    let f = up.run(&cfg, &[], &[]).await;
    assert_ok(&f);
    assert!(summary(&f).starts_with("inserted 1, updated 1, unchanged 1, rejected 0"), "{}", summary(&f));
    assert_eq!(
        up.rows().await,
        vec![
            "1|Alice|a@x.io|11.00|true|2024-01-05|untouched",
            "2|Bob|b@x.io|3.00|false|2024-02-01|untouched",
            "3|Cy|∅|∅|∅|∅|untouched"
        ]
    );

    // A bad cell is named by its sheet cell reference, and the table stays as it was.
    put(&[header, &["1", "Alice", "a@x.io", "lots", "TRUE", "2024-01-05"]]);
    let err = assert_failed(&up.run(&cfg, &[], &[]).await, 5);
    assert!(err.contains("People!D2") && err.contains("\"lots\" is not a number"), "{err}");
    assert_eq!(up.rows().await[0], "1|Alice|a@x.io|11.00|true|2024-01-05|untouched");
}

#[tokio::test]
async fn atomic_mode_with_one_bad_row_changes_nothing() {
    let up = Up::new().await;
    up.seed().await;
    let before = up.rows().await;
    let f = up.run(&up.csv("atomic_bad", "atomic_bad.csv", json!({})), &[], &[]).await;
    let err = assert_failed(&f, 5);
    assert!(err.contains("2 of 3 source rows cannot be imported"), "{err}");
    assert!(err.contains("D3: \"abc\" is not a number (column score)"), "{err}");
    assert!(err.contains("E4: \"maybe\" is not a boolean (column active)"), "{err}");
    assert!(err.contains("nothing was imported (atomic mode)"), "{err}");
    assert_eq!(up.rows().await, before, "table unchanged");

    // A constraint violation found by Postgres rolls back just the same.
    let bad = up.dir.path().join("negative.csv");
    std::fs::write(&bad, "id,name,score\n1,Alice Martin,1\n9,Nine,-1\n").unwrap();
    let cfg = up.config("atomic_check", json!({"csv": {"path": bad.to_str().unwrap()}}), json!({}));
    let err = assert_failed(&up.run(&cfg, &[], &[]).await, 5);
    assert!(err.contains("customers_score_check"), "{err}");
    assert_eq!(up.rows().await, before, "table unchanged");
}

#[tokio::test]
async fn batched_mode_keeps_good_rows_and_records_bad_ones_in_the_ledger() {
    let up = Up::new().await;
    let control = TestDb::migrated().await;
    let cp = control.client().await;
    let cfg = up.csv("batched_bad", "batched_bad.csv", json!({"mode": "batched", "batch_size": 2}));
    let config_id: i64 = cp
        .query_one(
            "INSERT INTO sheet_to_bigquery_configs (name, kind, spec) VALUES ($1, 'postgres_upsert', $2) RETURNING id",
            &[&"batched_bad", &cfg["spec"]],
        )
        .await
        .unwrap()
        .get(0);
    let run_id: i64 = cp
        .query_one(
            "INSERT INTO job_runs (config_id, config_name, kind, status, trigger) VALUES ($1, 'batched_bad', 'postgres_upsert', 'queued', 'scheduler') RETURNING id",
            &[&config_id],
        )
        .await
        .unwrap()
        .get(0);
    let child =
        up.command(&[], &[("DATABASE_URL", &control.url), ("JOB_RUN_ID", &run_id.to_string())]).spawn().unwrap();
    let f = testkit::proc::finish(child, Duration::from_secs(60)).await;
    assert_ok(&f);
    assert!(
        summary(&f).starts_with("partial success: inserted 3, updated 0, unchanged 0, rejected 5"),
        "{}",
        summary(&f)
    );
    assert_eq!(
        up.rows().await,
        vec![
            "10|Ten|t@x.io|1.00|true|2024-01-01|untouched",
            "14|Fourteen|f@x.io|1.00|true|2024-01-01|untouched",
            "16|Sixteen|s@x.io|1.00|true|2024-01-01|untouched",
        ]
    );

    let run = cp
        .query_one("SELECT status, rows_read, rows_written, details FROM job_runs WHERE id = $1", &[&run_id])
        .await
        .unwrap();
    assert_eq!(run.get::<_, String>(0), "succeeded");
    assert_eq!((run.get::<_, Option<i64>>(1), run.get::<_, Option<i64>>(2)), (Some(8), Some(3)));
    let details: Value = run.get(3);
    assert_eq!(details["outcome"], "partial_success", "{details}");
    assert_eq!(
        (details["inserted"].as_u64(), details["rejected"].as_u64(), details["rejected_recorded"].as_u64()),
        (Some(3), Some(5), Some(5))
    );

    let results = cp
        .query(
            "SELECT row_number, cell_ref, key, reason FROM import_results WHERE run_id = $1 ORDER BY row_number",
            &[&run_id],
        )
        .await
        .unwrap();
    let got: Vec<(i64, Option<String>, Value, String)> =
        results.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![3, 4, 5, 7, 8], "{got:?}");
    assert!(got[0].3.contains("customers_score_check"), "{:?}", got[0]);
    assert_eq!(got[0].2, json!({"id": "11"}));
    assert_eq!(got[1].1.as_deref(), Some("A4"));
    assert!(got[1].3.contains("\"x12\" is not an integer"), "{:?}", got[1]);
    assert!(got[2].3.contains("null value in column \"name\""), "{:?}", got[2]);
    assert!(got[3].3.contains("duplicate key id=10 in the source (first at row 2)"), "{:?}", got[3]);
    assert_eq!(got[4].1.as_deref(), Some("C8"));
    assert!(got[4].3.contains("longer than 40 characters"), "{:?}", got[4]);
}

#[tokio::test]
async fn duplicate_keys_inside_the_source_are_refused_in_atomic_mode() {
    let up = Up::new().await;
    up.seed().await;
    let before = up.rows().await;
    let err = assert_failed(&up.run(&up.csv("dups", "duplicates.csv", json!({})), &[], &[]).await, 5);
    assert!(err.contains("the source has 1 duplicated key(s), e.g. id=1 at rows 2, 4"), "{err}");
    assert_eq!(up.rows().await, before);
}

#[tokio::test]
async fn missing_unique_index_is_reported_with_the_statement_and_created_on_request() {
    let up = Up::new().await;
    up.pg
        .batch_execute("CREATE TABLE plain (id integer, name text); INSERT INTO plain VALUES (1, 'a'), (1, 'b')")
        .await
        .unwrap();
    let extra = json!({"target": {"table": "plain"}});
    let err = assert_failed(&up.run(&up.csv("plain", "duplicates.csv", extra.clone()), &[], &[]).await, 4);
    assert!(err.contains(r#"CREATE UNIQUE INDEX CONCURRENTLY "plain_id_key" ON "public"."plain" ("id");"#), "{err}");

    let create = json!({"target": {"table": "plain", "create_unique_index": true}, "mode": "batched"});
    let err = assert_failed(&up.run(&up.csv("plain2", "duplicates.csv", create.clone()), &[], &[]).await, 5);
    assert!(err.contains("existing rows share keys: id=1 (2 rows)"), "{err}");

    up.pg.batch_execute("DELETE FROM plain WHERE name = 'b'").await.unwrap();
    let f = up.run(&up.csv("plain3", "duplicates.csv", create), &[], &[]).await;
    assert_ok(&f);
    let n: i64 = up
        .pg
        .query_one("SELECT count(*) FROM pg_indexes WHERE tablename = 'plain' AND indexname = 'plain_id_key'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert!(summary(&f).contains("inserted 1, updated 1, unchanged 0, rejected 1"), "{}", summary(&f));
}

/// Holds a row lock on customers.id = 1000 so that imports touching that key wait mid-INSERT.
async fn hold_row_lock(up: &Up) -> tokio_postgres::Client {
    up.pg.batch_execute("INSERT INTO customers (id, name) VALUES (1000, 'locked')").await.unwrap();
    let locker = up.target.client().await;
    locker.batch_execute("BEGIN; SELECT * FROM customers WHERE id = 1000 FOR UPDATE").await.unwrap();
    locker
}

/// Waits until every job named in `names` is waiting for a lock on the target.
async fn wait_for_lock_waits(up: &Up, names: &[&str]) {
    let apps: Vec<String> = names.iter().map(|n| format!("sheettobigquery {n}")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = up
            .pg
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY($1) AND wait_event_type = 'Lock'",
                &[&apps],
            )
            .await
            .unwrap()
            .get(0);
        if n as usize == apps.len() {
            return;
        }
        assert!(Instant::now() < deadline, "jobs {names:?} never waited on the row lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_backends_gone(up: &Up, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n: i64 = up
            .pg
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&format!("sheettobigquery {name}")],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the backend of {name} is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lock_csv(up: &Up, file: &str, label: &str, new_ids: std::ops::Range<i32>) -> String {
    let mut s = String::from("id,name\n");
    for id in [1, 2, 3, 1000] {
        s.push_str(&format!("{id},{label}\n"));
    }
    for id in new_ids {
        s.push_str(&format!("{id},{label} new\n"));
    }
    let path = up.dir.path().join(file);
    std::fs::write(&path, s).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn sigterm_in_the_middle_of_an_atomic_import_rolls_back_and_exits_130() {
    let up = Up::new().await;
    up.seed().await;
    let locker = hold_row_lock(&up).await;
    let before = up.rows().await;
    let cfg = up.config("sigterm_import", json!({"csv": {"path": lock_csv(&up, "t.csv", "T", 100..110)}}), json!({}));
    let mut child = up.spawn(&cfg, &[], &[]);
    wait_for_lock_waits(&up, &["sigterm_import"]).await;
    testkit::proc::signal(&child, testkit::proc::Signal::SIGTERM);
    // Cloud Run sends SIGKILL 10 s after SIGTERM.
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    // The statement was cancelled: the import's backend goes away without waiting for the lock.
    wait_for_backends_gone(&up, "sigterm_import").await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(up.rows().await, before, "table unchanged");
}

#[tokio::test]
async fn kill_9_in_the_middle_of_an_atomic_import_leaves_the_table_unchanged() {
    let up = Up::new().await;
    up.seed().await;
    let locker = hold_row_lock(&up).await;
    let before = up.rows().await;
    let cfg = up.config("killed_import", json!({"csv": {"path": lock_csv(&up, "k.csv", "K", 100..110)}}), json!({}));
    let mut child = up.spawn(&cfg, &[], &[]);
    wait_for_lock_waits(&up, &["killed_import"]).await;
    testkit::proc::signal(&child, testkit::proc::Signal::SIGKILL);
    let status = child.wait().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // The server notices the vanished client (client_connection_check_interval) and rolls back.
    wait_for_backends_gone(&up, "killed_import").await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(up.rows().await, before, "table unchanged");
}

#[tokio::test]
async fn two_overlapping_imports_both_finish_without_table_locks() {
    let up = Up::new().await;
    up.seed().await;
    let locker = hold_row_lock(&up).await;
    let a = up.config("overlap_a", json!({"csv": {"path": lock_csv(&up, "a.csv", "A", 100..105)}}), json!({}));
    let b = up.config(
        "overlap_b",
        json!({"csv": {"path": lock_csv(&up, "b.csv", "B", 200..205)}}),
        json!({"mode": "batched", "batch_size": 100}),
    );
    let ca = up.spawn(&a, &[], &[]);
    let cb = up.spawn(&b, &[], &[]);
    wait_for_lock_waits(&up, &["overlap_a", "overlap_b"]).await;

    // While both imports run: no table-level lock on the target stronger than ROW EXCLUSIVE.
    let modes: Vec<String> = up
        .pg
        .query(
            "SELECT DISTINCT l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'relation' AND l.relation = 'public.customers'::regclass
                AND a.application_name LIKE 'sheettobigquery overlap_%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(modes.contains(&"RowExclusiveLock".to_string()), "{modes:?}");
    for m in &modes {
        assert!(
            ["AccessShareLock", "RowShareLock", "RowExclusiveLock"].contains(&m.as_str()),
            "table lock {m} taken: {modes:?}"
        );
    }

    locker.batch_execute("ROLLBACK").await.unwrap();
    let fa = testkit::proc::finish(ca, Duration::from_secs(60)).await;
    let fb = testkit::proc::finish(cb, Duration::from_secs(60)).await;
    assert_ok(&fa);
    assert_ok(&fb);
    let rows = up.rows().await;
    assert_eq!(rows.len(), 3 + 1 + 5 + 5, "{rows:?}");
    // No lost update: each import is one transaction here (B's single batch holds all its rows),
    // so the shared keys all carry the values of one import, the later commit.
    let shared: Vec<&str> = rows
        .iter()
        .filter(|r| ["1|", "2|", "3|", "1000|"].iter().any(|p| r.starts_with(p)))
        .map(|r| r.split('|').nth(1).unwrap())
        .collect();
    assert!(shared.iter().all(|n| *n == "A") || shared.iter().all(|n| *n == "B"), "{shared:?}");
    assert!(
        rows.iter().any(|r| r.starts_with("104|A new")) && rows.iter().any(|r| r.starts_with("204|B new")),
        "{rows:?}"
    );
}

#[tokio::test]
async fn test_only_checks_everything_and_writes_nothing() {
    let up = Up::new().await;
    up.pg.batch_execute("CREATE TABLE plain (id integer, name text)").await.unwrap();
    let backups = up.dir.path().join("backups");
    let cfg = up.csv(
        "preflight",
        "duplicates.csv",
        json!({"target": {"table": "plain", "create_unique_index": true}, "backup_dir": backups.to_str().unwrap()}),
    );
    let f = up.run(&cfg, &["--test-only"], &[("ENVIRONMENT", "production")]).await;
    assert_ok(&f);
    let s = summary(&f);
    assert!(
        s.contains("pre-flight passed for public.plain")
            && s.contains("key index (would be created)")
            && s.contains("backup"),
        "{s}"
    );
    assert!(s.contains("3 source rows") && s.contains("nothing was written"), "{s}");
    let n: i64 = up.pg.query_one("SELECT count(*) FROM plain", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
    let ix: i64 =
        up.pg.query_one("SELECT count(*) FROM pg_indexes WHERE tablename = 'plain'", &[]).await.unwrap().get(0);
    assert_eq!(ix, 0, "no index created");
    let files: Vec<_> = std::fs::read_dir(&backups).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(files.is_empty(), "no backup written: {files:?}");

    // A pre-flight that fails says why, before anything is written.
    let cfg = up.csv("preflight_bad", "duplicates.csv", json!({"target": {"table": "nope"}}));
    let err = assert_failed(&up.run(&cfg, &["--test-only"], &[]).await, 4);
    assert!(err.contains("the target table public.nope does not exist"), "{err}");
}

#[tokio::test]
async fn production_requires_a_backup() {
    let up = Up::new().await;
    up.seed().await;
    let before = up.rows().await;
    let prod = [("ENVIRONMENT", "production")];

    let f = up
        .run(
            &up.csv("prod_skip", "mixed.csv", json!({"backup_dir": up.dir.path().to_str().unwrap()})),
            &["--skip-backup"],
            &prod,
        )
        .await;
    let err = assert_failed(&f, 2);
    assert!(err.contains("--skip-backup is refused in production"), "{err}");

    let err = assert_failed(&up.run(&up.csv("prod_nodir", "mixed.csv", json!({})), &[], &prod).await, 2);
    assert!(
        err.contains("refusing to write in production without a backup") && err.contains("IMPORT_BACKUP_DIR"),
        "{err}"
    );

    let blocker = up.dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let unwritable = blocker.join("backups");
    let cfg = up.csv("prod_unwritable", "mixed.csv", json!({"backup_dir": unwritable.to_str().unwrap()}));
    let err = assert_failed(&up.run(&cfg, &[], &prod).await, 4);
    assert!(
        err.contains("refusing to write in production without a backup") && err.contains("cannot be created"),
        "{err}"
    );

    let good = up.dir.path().join("backups");
    let cfg = up.csv("prod_ok", "mixed.csv", json!({"backup_dir": good.to_str().unwrap()}));
    let err = assert_failed(
        &up.run(&cfg, &[], &[("ENVIRONMENT", "production"), ("PG_DUMP", "/nonexistent/pg_dump")]).await,
        4,
    );
    assert!(err.contains("refusing to write in production without a backup"), "{err}");
    assert_eq!(up.rows().await, before, "nothing written by the refused runs");

    // With a backup location the dump is taken first, its path and restore command logged.
    let f = up.run(&cfg, &[], &prod).await;
    assert_ok(&f);
    let line = f.line("backup of the target table taken").expect("backup line");
    let path = PathBuf::from(line["path"].as_str().unwrap());
    assert!(path.starts_with(&good) && path.exists(), "{line}");
    assert!(
        line["restore"]
            .as_str()
            .unwrap()
            .starts_with("pg_restore --dbname \"$UPSERT_TARGET_URL\" --clean --if-exists --single-transaction"),
        "{line}"
    );
    assert!(!f.stdout.contains(&up.target.url), "the target URL never appears in the log");
    let list = std::process::Command::new("pg_restore").arg("--list").arg(&path).output().unwrap();
    assert!(list.status.success() && String::from_utf8_lossy(&list.stdout).contains("TABLE DATA public customers"));
    assert!(summary(&f).starts_with("inserted 2, updated 2"), "{}", summary(&f));
}

#[tokio::test]
async fn bad_spec_fails_with_field_named_errors() {
    let up = Up::new().await;
    let cfg = json!({"name": "bad", "kind": "postgres_upsert", "spec": {"source": {"csv": {}}, "target": {"table": "t-1", "key_columns": []}, "mode": "sometimes"}});
    let err = assert_failed(&up.run(&cfg, &[], &[]).await, 2);
    for needle in ["spec.source.csv.path: is required", "spec.target.table", "spec.target.key_columns", "spec.mode"] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
    let cfg = up.csv("no_env", "initial.csv", json!({"target": {"connection_env": "NOT_SET_ANYWHERE"}}));
    let err = assert_failed(&up.run(&cfg, &[], &[]).await, 2);
    assert!(err.contains("environment variable NOT_SET_ANYWHERE is not set"), "{err}");
}

/// Serves `body` once over plain HTTP on a free port; returns the base URL.
async fn serve_once(body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = sock.read(&mut buf).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&body).await.unwrap();
        sock.shutdown().await.unwrap();
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn csv_from_a_url_in_latin1_with_semicolons() {
    let up = Up::new().await;
    // "Zoë" in ISO-8859-1 is 5A 6F EB.
    let mut body = b"id;name;joined\n1;Zo".to_vec();
    body.extend_from_slice(&[0xEB]);
    body.extend_from_slice(b";2024-01-05\n2;Bob;\n");
    let url = format!("{}/export.csv?token=s3cr3t-token", serve_once(body).await);
    let cfg = up.config("from_url", json!({"csv": {"path": url, "delimiter": ";", "encoding": "latin1"}}), json!({}));
    let f = up.run(&cfg, &[], &[]).await;
    assert_ok(&f);
    assert!(summary(&f).starts_with("inserted 2"), "{}", summary(&f));
    assert!(!f.stdout.contains("s3cr3t-token"), "the URL's query is never logged");
    assert_eq!(up.rows().await, vec!["1|Zoë|∅|∅|∅|2024-01-05|untouched", "2|Bob|∅|∅|∅|∅|untouched"]);
}
