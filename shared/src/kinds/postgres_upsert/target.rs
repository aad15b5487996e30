//! The target Postgres table: connecting with the URL from the environment variable the config
//! names, describing the table from the catalog, checking privileges and the unique index the
//! upsert needs (and creating it on request), and every SQL statement of the import, built from
//! validated, double-quoted identifiers. Values never appear in SQL text: they go through COPY.

use tokio_postgres::{Client, NoTls};

use super::source::PrepCol;
use crate::error::{JobError, JobResult};

/// Temporary staging table of one import session.
pub const STAGE: &str = "\"_stb_stage\"";
/// Keys already imported by this session (batched mode's cross-batch duplicate check).
pub const SEEN: &str = "\"_stb_seen\"";
/// Staging column holding the source row number.
pub const ROW: &str = "\"_stb_row\"";

/// Double-quotes an identifier (they are validated to `[A-Za-z_][A-Za-z0-9_]*` beforehand).
pub fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The database's message, detail and hint of a driver error (never the connection settings).
pub fn pg_msg(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_string();
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(x) = src {
                s.push_str(&format!(": {x}"));
                src = x.source();
            }
            s
        }
    }
}

/// SQLSTATE of a driver error, if the server sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// A connection to the target database.
pub struct Target {
    pub client: Client,
    pub config: tokio_postgres::Config,
    /// `host:port/db`, for messages.
    pub describe: String,
}

/// Reads the connection URL from `env_var` and connects. Errors name the variable, never its value.
pub async fn connect(env_var: &str, app: &str) -> JobResult<Target> {
    let url = std::env::var(env_var).map_err(|_| {
        JobError::config(format!(
            "spec.target.connection_env: environment variable {env_var} is not set (it must hold the target database URL)"
        ))
    })?;
    let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
        JobError::config(format!("spec.target.connection_env: {env_var} does not hold a valid Postgres URL"))
    })?;
    if config.get_application_name().is_none() {
        config.application_name(app);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    let describe = crate::store::describe_pg_config(&config);
    let (client, conn) = config.connect(NoTls).await.map_err(|e| {
        JobError::destination(format!("connecting to the target database {describe} ({env_var}): {}", pg_msg(&e)))
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "target connection ended");
        }
    });
    Ok(Target { client, config, describe })
}

/// Session settings of an import: timeouts, UTC, and memory for staging and sorting.
pub async fn configure(client: &Client, timeout_secs: u64) -> JobResult<()> {
    let idle = timeout_secs.max(60);
    client
        .batch_execute(&format!(
            "SET statement_timeout = '{timeout_secs}s'; SET idle_in_transaction_session_timeout = '{idle}s';
             SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET work_mem = '64MB'; SET temp_buffers = '64MB';"
        ))
        .await
        .map_err(|e| JobError::destination(format!("configuring the target session: {}", pg_msg(&e))))?;
    // Postgres 14+: notice a vanished client (kill -9) while a statement runs, and roll back.
    let _ = client.batch_execute("SET client_connection_check_interval = '1s'").await;
    Ok(())
}

/// One column of the target table.
#[derive(Debug, Clone)]
pub struct TargetColumn {
    pub name: String,
    /// The column's type as SQL (`format_type`), used for the staging table.
    pub type_sql: String,
    /// Base type name (`pg_type.typname`, domains resolved).
    pub base_type: String,
    pub typmod: i32,
    pub generated: bool,
    pub identity_always: bool,
    /// Whether `=` exists for the type (json, xml, point have none: compared as text).
    pub has_eq: bool,
}

/// The target table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    /// `schema.table`, for messages.
    pub display: String,
    /// `"schema"."table"`, for SQL.
    pub qualified: String,
    pub schema: String,
    pub name: String,
    pub columns: Vec<TargetColumn>,
}

fn dest(what: &str) -> impl Fn(tokio_postgres::Error) -> JobError + '_ {
    move |e| JobError::destination(format!("{what}: {}", pg_msg(&e)))
}

pub async fn describe(client: &Client, schema: &str, table: &str) -> JobResult<Table> {
    let display = format!("{schema}.{table}");
    let row = client
        .query_opt(
            "SELECT c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &table],
        )
        .await
        .map_err(dest("looking up the target table"))?;
    let Some(row) = row else {
        return Err(JobError::destination(format!(
            "the target table {display} does not exist (names are case-sensitive; spec.target.schema and spec.target.table)"
        )));
    };
    let oid: u32 = row.get(0);
    let relkind: String = row.get(1);
    if relkind != "r" && relkind != "p" {
        return Err(JobError::destination(format!("{display} is not a table (relkind {relkind})")));
    }
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), bt.typname::text, a.atttypmod,
                    a.attgenerated <> '', a.attidentity = 'a',
                    bt.typcategory = 'A' OR EXISTS (SELECT 1 FROM pg_operator o
                        WHERE o.oprname = '=' AND o.oprleft = bt.oid AND o.oprright = bt.oid)
               FROM pg_attribute a
               JOIN pg_type t ON t.oid = a.atttypid
               JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(dest("reading the target table's columns"))?;
    let columns = rows
        .iter()
        .map(|r| TargetColumn {
            name: r.get(0),
            type_sql: r.get(1),
            base_type: r.get(2),
            typmod: r.get(3),
            generated: r.get(4),
            identity_always: r.get(5),
            has_eq: r.get(6),
        })
        .collect();
    Ok(Table {
        oid,
        qualified: format!("{}.{}", qi(schema), qi(table)),
        display,
        schema: schema.into(),
        name: table.into(),
        columns,
    })
}

/// Checks what the import needs: a writable primary, the TEMPORARY privilege, SELECT on the
/// table, INSERT on the fed columns and UPDATE on the fed non-key columns. Every problem is named.
pub async fn check_privileges(client: &Client, table: &Table, cols: &[PrepCol]) -> JobResult<()> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on',
                    has_database_privilege(current_database(), 'TEMPORARY'), has_table_privilege($1::oid, 'SELECT'),
                    current_user::text",
            &[&table.oid],
        )
        .await
        .map_err(dest("checking privileges"))?;
    let (replica, read_only, temp, select, user): (bool, bool, bool, bool, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let mut problems = Vec::new();
    if replica {
        problems.push("the target database is a read-only replica".to_string());
    }
    if read_only {
        problems.push("the target session is read-only (default_transaction_read_only)".to_string());
    }
    if !temp {
        problems.push(format!("{user} may not create temporary tables (GRANT TEMPORARY ON DATABASE … TO {user})"));
    }
    if !select {
        problems.push(format!("{user} has no SELECT on {}", table.display));
    }
    for c in cols {
        let privs: &[&str] = if c.is_key { &["INSERT"] } else { &["INSERT", "UPDATE"] };
        for p in privs {
            let ok: bool = client
                .query_one("SELECT has_column_privilege($1::oid, $2::text, $3::text)", &[&table.oid, &c.column, p])
                .await
                .map_err(dest("checking column privileges"))?
                .get(0);
            if !ok {
                problems.push(format!("{user} has no {p} on {}.{}", table.display, c.column));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(JobError::destination(format!("the target cannot be written: {}", problems.join("; "))))
    }
}

/// Whether the current user owns the table (needed to create an index on it).
pub async fn owns(client: &Client, table: &Table) -> JobResult<bool> {
    Ok(client
        .query_one("SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = $1", &[&table.oid])
        .await
        .map_err(dest("checking the table owner"))?
        .get(0))
}

/// The name of a valid, immediate, non-partial unique index whose key columns are exactly
/// `keys` (what `ON CONFLICT (keys)` can use), if there is one.
pub async fn unique_index(client: &Client, table: &Table, keys: &[String]) -> JobResult<Option<String>> {
    let rows = client
        .query(
            "SELECT i.indexrelid::regclass::text, array_agg(a.attname::text ORDER BY k.ord)
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indimmediate
                AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
              GROUP BY 1",
            &[&table.oid],
        )
        .await
        .map_err(dest("reading the target table's indexes"))?;
    for r in rows {
        let cols: Vec<String> = r.get(1);
        if cols.len() == keys.len() && keys.iter().all(|k| cols.contains(k)) {
            return Ok(Some(r.get(0)));
        }
    }
    Ok(None)
}

/// Name of the index this job would create: `<table>_<keys>_key`, at most 63 bytes.
pub fn index_name(table: &Table, keys: &[String]) -> String {
    let mut n = format!("{}_{}_key", table.name, keys.join("_"));
    n.truncate(63);
    n
}

/// The exact statement that creates the unique index the upsert needs, without blocking writes.
pub fn create_index_sql(table: &Table, keys: &[String]) -> String {
    let cols: Vec<String> = keys.iter().map(|k| qi(k)).collect();
    format!(
        "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({});",
        qi(&index_name(table, keys)),
        table.qualified,
        cols.join(", ")
    )
}

/// Key values held by more than one existing row (which would make a unique index impossible),
/// at most 20, as `id=7 (2 rows)`.
pub async fn existing_duplicates(client: &Client, table: &Table, keys: &[String]) -> JobResult<Vec<String>> {
    let cols: Vec<String> = keys.iter().map(|k| qi(k)).collect();
    let shown: Vec<String> = keys.iter().map(|k| format!("{}::text", qi(k))).collect();
    let not_null: Vec<String> = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
    let sql = format!(
        "SELECT ARRAY[{}], count(*) FROM {} WHERE {} GROUP BY {} HAVING count(*) > 1 ORDER BY count(*) DESC, 1 LIMIT 20",
        shown.join(", "),
        table.qualified,
        not_null.join(" AND "),
        cols.join(", ")
    );
    let rows = client.query(&sql, &[]).await.map_err(dest("checking existing rows for duplicate keys"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let vals: Vec<Option<String>> = r.get(0);
            let n: i64 = r.get(1);
            format!("{} ({n} rows)", key_text(keys, &vals))
        })
        .collect())
}

/// `id=7, region=EU`.
pub fn key_text(keys: &[String], vals: &[Option<String>]) -> String {
    keys.iter().zip(vals).map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("NULL"))).collect::<Vec<_>>().join(", ")
}

/// Creates the unique index concurrently (writers are not blocked). A failed concurrent build
/// leaves an invalid index behind: it is dropped again.
pub async fn create_unique_index(client: &Client, table: &Table, keys: &[String]) -> JobResult<String> {
    let name = index_name(table, keys);
    let sql = create_index_sql(table, keys);
    tracing::info!(statement = %sql, "creating the unique index on the key columns");
    if let Err(e) = client.batch_execute(&sql).await {
        let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {}.{}", qi(&table.schema), qi(&name));
        let _ = client.batch_execute(&drop).await;
        return Err(JobError::destination(format!(
            "creating the unique index failed ({}); statement: {sql}",
            pg_msg(&e)
        )));
    }
    Ok(name)
}

/// The statements of one import, built once.
#[derive(Debug, Clone)]
pub struct Statements {
    pub create_stage_atomic: String,
    pub create_stage_batched: String,
    pub create_seen: String,
    pub copy: String,
    /// Atomic mode: groups of source rows sharing a key (first 20).
    pub source_duplicates: String,
    /// Batched mode: rows whose key was seen earlier (this batch or a previous one).
    pub batch_duplicates: String,
    pub delete_staged: String,
    pub remember_keys: String,
    /// Returns (inserted, updated).
    pub upsert: String,
}

pub fn statements(table: &Table, cols: &[PrepCol], keys: &[String]) -> Statements {
    let tcol = |name: &str| table.columns.iter().find(|c| c.name == name).expect("planned columns exist");
    let col_defs: Vec<String> =
        cols.iter().map(|c| format!("{} {}", qi(&c.column), tcol(&c.column).type_sql)).collect();
    let names: Vec<String> = cols.iter().map(|c| qi(&c.column)).collect();
    let key_q: Vec<String> = keys.iter().map(|k| qi(k)).collect();
    let stage_cols = format!("{ROW} bigint, {}", col_defs.join(", "));
    let create_stage_atomic = format!("CREATE TEMP TABLE {STAGE} ({stage_cols}) ON COMMIT DROP");
    let create_stage_batched = format!("CREATE TEMP TABLE IF NOT EXISTS {STAGE} ({stage_cols}) ON COMMIT DELETE ROWS");
    let create_seen = format!(
        "CREATE TEMP TABLE IF NOT EXISTS {SEEN} AS SELECT {}, {ROW} FROM {STAGE} WITH NO DATA;
         CREATE UNIQUE INDEX IF NOT EXISTS _stb_seen_key ON {SEEN} ({});",
        key_q.join(", "),
        key_q.join(", ")
    );
    let copy = format!("COPY {STAGE} ({ROW}, {}) FROM STDIN", names.join(", "));
    let key_text: Vec<String> = key_q.iter().map(|k| format!("{k}::text")).collect();
    let source_duplicates = format!(
        "SELECT ARRAY[{}], array_agg({ROW} ORDER BY {ROW}), count(*) OVER () FROM {STAGE}
          GROUP BY {} HAVING count(*) > 1 ORDER BY min({ROW}) LIMIT 20",
        key_text.join(", "),
        key_q.join(", ")
    );
    let join_on: Vec<String> = key_q.iter().map(|k| format!("f.{k} = s.{k}")).collect();
    let s_keys: Vec<String> = key_q.iter().map(|k| format!("s.{k}")).collect();
    let s_key_text: Vec<String> = key_q.iter().map(|k| format!("s.{k}::text")).collect();
    let batch_duplicates = format!(
        "SELECT row_no, first_row, key FROM (
           SELECT s.{ROW} AS row_no, COALESCE(f.{ROW}, min(s.{ROW}) OVER (PARTITION BY {})) AS first_row,
                  ARRAY[{}] AS key
             FROM {STAGE} s LEFT JOIN {SEEN} f ON {}) d
          WHERE row_no <> first_row ORDER BY row_no",
        s_keys.join(", "),
        s_key_text.join(", "),
        join_on.join(" AND ")
    );
    let delete_staged = format!("DELETE FROM {STAGE} WHERE {ROW} = ANY($1)");
    let remember_keys = format!("INSERT INTO {SEEN} SELECT {}, {ROW} FROM {STAGE}", key_q.join(", "));
    let others: Vec<&PrepCol> = cols.iter().filter(|c| !c.is_key).collect();
    let conflict = if others.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let set: Vec<String> = others.iter().map(|c| format!("{0} = EXCLUDED.{0}", qi(&c.column))).collect();
        let (eq, no_eq): (Vec<&&PrepCol>, Vec<&&PrepCol>) = others.iter().partition(|c| tcol(&c.column).has_eq);
        let mut changed = Vec::new();
        if !eq.is_empty() {
            let t: Vec<String> = eq.iter().map(|c| format!("t.{}", qi(&c.column))).collect();
            let x: Vec<String> = eq.iter().map(|c| format!("EXCLUDED.{}", qi(&c.column))).collect();
            changed.push(format!("ROW({}) IS DISTINCT FROM ROW({})", t.join(", "), x.join(", ")));
        }
        for c in no_eq {
            changed.push(format!("t.{0}::text IS DISTINCT FROM EXCLUDED.{0}::text", qi(&c.column)));
        }
        format!("DO UPDATE SET {} WHERE {}", set.join(", "), changed.join(" OR "))
    };
    // Rows go in key order so that concurrent imports take row locks in the same order
    // (no deadlocks); `xmax = 0` tells a fresh insert from an update.
    let upsert = format!(
        "WITH w AS (
           INSERT INTO {} AS t ({cols})
           SELECT {cols} FROM {STAGE} ORDER BY {keys}
           ON CONFLICT ({keys}) {conflict}
           RETURNING (xmax = 0) AS inserted)
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM w",
        table.qualified,
        cols = names.join(", "),
        keys = key_q.join(", "),
    );
    Statements {
        create_stage_atomic,
        create_stage_batched,
        create_seen,
        copy,
        source_duplicates,
        batch_duplicates,
        delete_staged,
        remember_keys,
        upsert,
    }
}
