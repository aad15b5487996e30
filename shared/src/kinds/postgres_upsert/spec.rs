//! The settings of a `postgres_upsert` config (its `spec`), parsed and validated up front with
//! every problem named by its field (`spec.target.table: …`), plus the environment defaults
//! (`IMPORT_BATCH_SIZE`, `IMPORT_MAX_ROWS`, `IMPORT_TIMEOUT_SECONDS`, `IMPORT_BACKUP_DIR`).

use crate::fields::Fields;
use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::ConfigError;

/// Default rows per committed batch in `batched` mode (`IMPORT_BATCH_SIZE`).
pub const DEFAULT_BATCH_SIZE: u64 = 5_000;
/// Default cap on source data rows (`IMPORT_MAX_ROWS`).
pub const DEFAULT_MAX_ROWS: u64 = 1_000_000;
/// Default statement timeout on the target, in seconds (`IMPORT_TIMEOUT_SECONDS`).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 300;
/// Default env var holding the target connection URL.
pub const DEFAULT_CONNECTION_ENV: &str = "TARGET_DATABASE_URL";
/// Default rows fetched per Sheets `values.get` call.
pub const DEFAULT_WINDOW_ROWS: u32 = 10_000;

/// How the rows are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One transaction: any bad row, duplicate key, constraint violation, timeout or signal
    /// rolls everything back.
    #[default]
    Atomic,
    /// One transaction per batch: bad rows are recorded and skipped, good rows commit.
    Batched,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Atomic => "atomic",
            Mode::Batched => "batched",
        }
    }
}

/// Where the rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    Csv(CsvSpec),
    Sheet(SheetSpec),
}

/// A CSV file with a header line.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvSpec {
    /// A local path, or an `http(s)://` URL downloaded (streamed) to a temporary file.
    pub path: String,
    pub delimiter: u8,
    pub quote: u8,
    /// An ASCII-compatible encoding (WHATWG label: `utf-8`, `latin1`, `windows-1252`, …).
    pub encoding: &'static encoding_rs::Encoding,
}

/// A Google Sheet tab, read like the `sheet_to_bigquery` kind reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SheetSpec {
    pub google_sheet_url: String,
    pub spreadsheet_id: String,
    pub gid: Option<i64>,
    pub worksheet: Option<String>,
    pub range: Option<String>,
    /// 1-based row of the header, counted from the first row of the range.
    pub header_row: u32,
    pub window_rows: u32,
}

/// One mapped column: the source header and the target column it feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    pub header: String,
    pub column: String,
    /// A declared value type (checked on every cell before anything is written); when absent
    /// the target column's own type decides.
    pub value_type: Option<String>,
}

/// The target table.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub connection_env: String,
    pub schema: String,
    pub table: String,
    pub key_columns: Vec<String>,
    /// Empty: source headers are matched to target columns by name.
    pub columns: Vec<ColumnMap>,
    pub create_unique_index: bool,
}

/// A validated `postgres_upsert` spec.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsertSpec {
    pub source: SourceSpec,
    pub target: TargetSpec,
    pub mode: Mode,
    pub batch_size: u64,
    pub max_rows: u64,
    pub statement_timeout_seconds: u64,
    /// Where `pg_dump` backups go (`spec.backup_dir`, else `IMPORT_BACKUP_DIR`).
    pub backup_dir: Option<PathBuf>,
}

/// The value types a column mapping may declare.
pub const VALUE_TYPES: &[&str] = &[
    "text",
    "varchar",
    "smallint",
    "integer",
    "int",
    "bigint",
    "numeric",
    "decimal",
    "real",
    "double precision",
    "float",
    "boolean",
    "bool",
    "date",
    "timestamp",
    "timestamptz",
    "uuid",
    "json",
    "jsonb",
];

/// Identifiers from configuration: letters, digits and underscores, not starting with a digit,
/// at most 63 bytes. They are always double-quoted in SQL, so they are case-sensitive.
pub fn validate_identifier(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid identifier (letters, digits and underscores, not starting with a digit, at most 63 characters; case-sensitive)"
        ))
    }
}

/// Reads the environment defaults; `env` is injected so tests need not touch the process env.
pub struct EnvDefaults {
    pub batch_size: Option<String>,
    pub max_rows: Option<String>,
    pub timeout_seconds: Option<String>,
    pub backup_dir: Option<String>,
}

impl EnvDefaults {
    pub fn from_process() -> EnvDefaults {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        EnvDefaults {
            batch_size: var("IMPORT_BATCH_SIZE"),
            max_rows: var("IMPORT_MAX_ROWS"),
            timeout_seconds: var("IMPORT_TIMEOUT_SECONDS"),
            backup_dir: var("IMPORT_BACKUP_DIR"),
        }
    }
}

struct V {
    problems: Vec<String>,
}

impl Fields for V {
    fn problem(&mut self, field: &str, msg: impl fmt::Display) {
        self.problems.push(format!("{field}: {msg}"));
    }
}

impl V {
    fn obj<'a>(&mut self, m: &'a Map<String, Value>, key: &str, field: &str) -> Option<&'a Map<String, Value>> {
        match m.get(key) {
            Some(Value::Object(o)) => Some(o),
            None | Some(Value::Null) => {
                self.problem(field, "is required");
                None
            }
            Some(_) => {
                self.problem(field, "must be a JSON object");
                None
            }
        }
    }

    fn unknown(&mut self, m: &Map<String, Value>, known: &[&str], prefix: &str) {
        for k in m.keys() {
            if !known.contains(&k.as_str()) {
                self.problem(&format!("{prefix}.{k}"), format!("unknown setting (known: {})", known.join(", ")));
            }
        }
    }

    /// An integer in `range` from the spec, else from the env var, else `default`.
    fn int(
        &mut self,
        m: &Map<String, Value>,
        (key, field): (&str, &str),
        env: Option<(&str, &Option<String>)>,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> u64 {
        let field = field.to_string();
        let (given, origin) = match m.get(key) {
            None | Some(Value::Null) => match env {
                Some((name, Some(v))) => (Some(Value::String(v.clone())), name.to_string()),
                _ => (None, field.clone()),
            },
            Some(v) => (Some(v.clone()), field.clone()),
        };
        let Some(v) = given else { return default };
        let n = v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse::<u64>().ok()));
        match n {
            Some(n) if range.contains(&n) => n,
            _ => {
                self.problem(&origin, format!("{v} must be an integer from {} to {}", range.start(), range.end()));
                default
            }
        }
    }
}

/// Parses and validates a `postgres_upsert` spec; every problem is reported, not only the first.
pub fn parse(spec: &Value, env: &EnvDefaults) -> Result<UpsertSpec, ConfigError> {
    let mut v = V { problems: Vec::new() };
    let Value::Object(m) = spec else {
        return Err(ConfigError::new(vec!["spec: must be a JSON object with source and target".into()]));
    };
    v.unknown(
        m,
        &["source", "target", "mode", "batch_size", "max_rows", "statement_timeout_seconds", "backup_dir"],
        "spec",
    );
    let source = v.obj(m, "source", "spec.source").and_then(|s| source(&mut v, s));
    let target = v.obj(m, "target", "spec.target").and_then(|t| target(&mut v, t));
    let mode = match m.get("mode") {
        None | Some(Value::Null) => Mode::Atomic,
        Some(Value::String(s)) if s == "atomic" => Mode::Atomic,
        Some(Value::String(s)) if s == "batched" => Mode::Batched,
        Some(other) => {
            v.problem("spec.mode", format!("{other} is not a mode (atomic or batched)"));
            Mode::Atomic
        }
    };
    let batch_size = v.int(
        m,
        ("batch_size", "spec.batch_size"),
        Some(("IMPORT_BATCH_SIZE", &env.batch_size)),
        1..=1_000_000,
        DEFAULT_BATCH_SIZE,
    );
    let max_rows = v.int(
        m,
        ("max_rows", "spec.max_rows"),
        Some(("IMPORT_MAX_ROWS", &env.max_rows)),
        1..=1_000_000_000,
        DEFAULT_MAX_ROWS,
    );
    let statement_timeout_seconds = v.int(
        m,
        ("statement_timeout_seconds", "spec.statement_timeout_seconds"),
        Some(("IMPORT_TIMEOUT_SECONDS", &env.timeout_seconds)),
        1..=86_400,
        DEFAULT_TIMEOUT_SECONDS,
    );
    let backup_dir =
        v.opt_str_at(m, "backup_dir", "spec.backup_dir").or_else(|| env.backup_dir.clone()).map(PathBuf::from);
    match (source, target, v.problems.is_empty()) {
        (Some(source), Some(target), true) => {
            Ok(UpsertSpec { source, target, mode, batch_size, max_rows, statement_timeout_seconds, backup_dir })
        }
        _ => Err(ConfigError::new(v.problems)),
    }
}

fn source(v: &mut V, m: &Map<String, Value>) -> Option<SourceSpec> {
    match (m.get("csv"), m.get("sheet")) {
        (Some(_), Some(_)) => {
            v.problem("spec.source", "give either csv or sheet, not both");
            None
        }
        (Some(Value::Object(c)), None) => csv(v, c).map(SourceSpec::Csv),
        (None, Some(Value::Object(s))) => sheet(v, s).map(SourceSpec::Sheet),
        (Some(_), None) => {
            v.problem("spec.source.csv", "must be a JSON object");
            None
        }
        (None, Some(_)) => {
            v.problem("spec.source.sheet", "must be a JSON object");
            None
        }
        (None, None) => {
            v.unknown(m, &["csv", "sheet"], "spec.source");
            v.problem("spec.source", "needs csv or sheet");
            None
        }
    }
}

fn one_byte(v: &mut V, m: &Map<String, Value>, key: &str, default: u8) -> u8 {
    let field = format!("spec.source.csv.{key}");
    match v.opt_str_at(m, key, &field).as_deref() {
        None => match m.get(key) {
            // A lone tab trims to nothing; take it literally.
            Some(Value::String(s)) if s == "\t" => b'\t',
            _ => default,
        },
        Some("tab") | Some("\\t") => b'\t',
        Some(s) if s.len() == 1 && s.is_ascii() && s != "\n" && s != "\r" => s.as_bytes()[0],
        Some(s) => {
            v.problem(&field, format!("{s:?} must be a single ASCII character (or \"tab\")"));
            default
        }
    }
}

fn csv(v: &mut V, m: &Map<String, Value>) -> Option<CsvSpec> {
    v.unknown(m, &["path", "delimiter", "quote", "encoding"], "spec.source.csv");
    let path = v.req_str_at(m, "path", "spec.source.csv.path");
    if let Some(p) = &path {
        if p.contains("://") && !(p.starts_with("http://") || p.starts_with("https://")) {
            v.problem("spec.source.csv.path", format!("{p:?}: only local paths and http(s) URLs are supported"));
        }
    }
    let delimiter = one_byte(v, m, "delimiter", b',');
    let quote = one_byte(v, m, "quote", b'"');
    if delimiter == quote {
        v.problem("spec.source.csv.quote", "must differ from the delimiter");
    }
    let label = v.opt_str_at(m, "encoding", "spec.source.csv.encoding").unwrap_or_else(|| "utf-8".into());
    let label = label.strip_suffix("-sig").unwrap_or(&label).to_string();
    let encoding = match encoding_rs::Encoding::for_label(label.as_bytes()) {
        Some(e) if e.is_ascii_compatible() => Some(e),
        Some(e) => {
            v.problem(
                "spec.source.csv.encoding",
                format!("{} is not ASCII-compatible; convert the file to UTF-8", e.name()),
            );
            None
        }
        None => {
            v.problem(
                "spec.source.csv.encoding",
                format!("unknown encoding {label:?} (e.g. utf-8, latin1, windows-1252)"),
            );
            None
        }
    };
    Some(CsvSpec { path: path?, delimiter, quote, encoding: encoding? })
}

fn sheet(v: &mut V, m: &Map<String, Value>) -> Option<SheetSpec> {
    v.unknown(m, &["google_sheet_url", "worksheet", "range", "header_row", "window_rows"], "spec.source.sheet");
    let url = v.req_str_at(m, "google_sheet_url", "spec.source.sheet.google_sheet_url");
    let parsed = url.as_deref().and_then(|u| match crate::config::parse_sheet_url(u) {
        Ok(p) => Some(p),
        Err(e) => {
            v.problem("spec.source.sheet.google_sheet_url", e);
            None
        }
    });
    let worksheet = v.opt_str_at(m, "worksheet", "spec.source.sheet.worksheet");
    let range = v.opt_str_at(m, "range", "spec.source.sheet.range");
    if let Some(r) = &range {
        if let Err(e) = crate::a1::A1Range::parse(r) {
            v.problem("spec.source.sheet.range", e);
        }
    }
    let header_row = v.int(m, ("header_row", "spec.source.sheet.header_row"), None, 1..=1_000_000, 1);
    let window_rows =
        v.int(m, ("window_rows", "spec.source.sheet.window_rows"), None, 1..=200_000, DEFAULT_WINDOW_ROWS as u64);
    let (spreadsheet_id, gid) = parsed?;
    Some(SheetSpec {
        google_sheet_url: url?,
        spreadsheet_id,
        gid,
        worksheet,
        range,
        header_row: header_row as u32,
        window_rows: window_rows as u32,
    })
}

fn target(v: &mut V, m: &Map<String, Value>) -> Option<TargetSpec> {
    v.unknown(
        m,
        &["connection_env", "schema", "table", "key_columns", "columns", "create_unique_index"],
        "spec.target",
    );
    let connection_env = v
        .opt_str_at(m, "connection_env", "spec.target.connection_env")
        .unwrap_or_else(|| DEFAULT_CONNECTION_ENV.into());
    let env_ok = !connection_env.is_empty()
        && !connection_env.starts_with(|c: char| c.is_ascii_digit())
        && connection_env.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !env_ok {
        v.problem(
            "spec.target.connection_env",
            "must be the name of an environment variable (A-Z, 0-9, _; value not shown), never the URL itself",
        );
    }
    let schema = v.opt_str_at(m, "schema", "spec.target.schema").unwrap_or_else(|| "public".into());
    if let Err(e) = validate_identifier(&schema) {
        v.problem("spec.target.schema", e);
    }
    let table = v.req_str_at(m, "table", "spec.target.table");
    if let Some(t) = &table {
        if let Err(e) = validate_identifier(t) {
            v.problem("spec.target.table", e);
        }
    }
    let mut key_columns = Vec::new();
    match m.get("key_columns") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let field = format!("spec.target.key_columns[{i}]");
                match item.as_str() {
                    Some(k) => match validate_identifier(k) {
                        Ok(()) if key_columns.iter().any(|c: &String| c == k) => {
                            v.problem(&field, format!("{k:?} is listed twice"))
                        }
                        Ok(()) => key_columns.push(k.to_string()),
                        Err(e) => v.problem(&field, e),
                    },
                    None => v.problem(&field, "must be a column name"),
                }
            }
        }
        Some(Value::String(k)) => match validate_identifier(k) {
            Ok(()) => key_columns.push(k.clone()),
            Err(e) => v.problem("spec.target.key_columns", e),
        },
        None | Some(Value::Null) => {
            v.problem("spec.target.key_columns", "is required (the columns of the unique key to upsert on)")
        }
        Some(_) => v.problem("spec.target.key_columns", "must be a non-empty list of column names"),
    }
    let mut columns: Vec<ColumnMap> = Vec::new();
    match m.get("columns") {
        None | Some(Value::Null) => {}
        Some(Value::Object(cols)) => {
            if cols.is_empty() {
                v.problem("spec.target.columns", "is empty (omit it to match headers to columns by name)");
            }
            for (header, spec) in cols {
                let field = format!("spec.target.columns.{header}");
                if header.trim().is_empty() {
                    v.problem("spec.target.columns", "a source header must not be empty");
                    continue;
                }
                let (column, value_type) = match spec {
                    Value::String(c) => (Some(c.trim().to_string()), None),
                    Value::Object(o) => {
                        v.unknown(o, &["column", "type"], &field);
                        let c = v
                            .opt_str_at(o, "column", &format!("{field}.column"))
                            .or_else(|| Some(header.trim().to_string()));
                        let t = v.opt_str_at(o, "type", &format!("{field}.type")).map(|t| t.to_ascii_lowercase());
                        if let Some(t) = &t {
                            if !VALUE_TYPES.contains(&t.as_str()) {
                                v.problem(
                                    &format!("{field}.type"),
                                    format!("unknown type {t:?} (known: {})", VALUE_TYPES.join(", ")),
                                );
                            }
                        }
                        (c, t)
                    }
                    _ => {
                        v.problem(&field, "must be a column name or {\"column\": …, \"type\": …}");
                        continue;
                    }
                };
                let Some(column) = column else { continue };
                if let Err(e) = validate_identifier(&column) {
                    v.problem(&format!("{field}.column"), e);
                    continue;
                }
                if let Some(prev) = columns.iter().find(|c| c.column == column) {
                    v.problem(&field, format!("column {column:?} is already fed by {:?}", prev.header));
                    continue;
                }
                columns.push(ColumnMap { header: header.trim().to_string(), column, value_type });
            }
            for k in &key_columns {
                if !columns.is_empty() && !columns.iter().any(|c| &c.column == k) {
                    v.problem(
                        "spec.target.key_columns",
                        format!("key column {k:?} is not fed by any entry of spec.target.columns"),
                    );
                }
            }
        }
        Some(_) => v.problem("spec.target.columns", "must be an object mapping source headers to target columns"),
    }
    let create_unique_index = v.opt_bool_at(m, "create_unique_index", "spec.target.create_unique_index", false);
    Some(TargetSpec { connection_env, schema, table: table?, key_columns, columns, create_unique_index })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_env() -> EnvDefaults {
        EnvDefaults { batch_size: None, max_rows: None, timeout_seconds: None, backup_dir: None }
    }

    #[test]
    fn minimal_csv_spec_takes_defaults() {
        let s = parse(
            &json!({"source": {"csv": {"path": "a.csv"}}, "target": {"table": "customers", "key_columns": ["id"]}}),
            &no_env(),
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Atomic);
        assert_eq!(s.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(s.target.schema, "public");
        assert_eq!(s.target.connection_env, DEFAULT_CONNECTION_ENV);
        let SourceSpec::Csv(c) = s.source else { panic!() };
        assert_eq!((c.delimiter, c.quote, c.encoding.name()), (b',', b'"', "UTF-8"));
    }

    #[test]
    fn env_defaults_apply_and_spec_wins() {
        let env = EnvDefaults {
            batch_size: Some("250".into()),
            max_rows: Some("10".into()),
            timeout_seconds: Some("x".into()),
            backup_dir: Some("/b".into()),
        };
        let err = parse(
            &json!({"source": {"csv": {"path": "a.csv"}}, "target": {"table": "t", "key_columns": ["id"]}}),
            &env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("IMPORT_TIMEOUT_SECONDS: \"x\" must be an integer"), "{err}");
        let env = EnvDefaults { timeout_seconds: None, ..env };
        let s = parse(&json!({"source": {"csv": {"path": "a.csv"}}, "target": {"table": "t", "key_columns": ["id"]}, "max_rows": 99}), &env).unwrap();
        assert_eq!((s.batch_size, s.max_rows), (250, 99));
        assert_eq!(s.backup_dir, Some(PathBuf::from("/b")));
    }

    #[test]
    fn every_problem_names_its_field() {
        let err = parse(
            &json!({
                "source": {"csv": {"path": "", "delimiter": ";;", "encoding": "utf-16le"}},
                "target": {"connection_env": "postgres://u:p@h/db", "schema": "bad schema", "table": "t;drop", "key_columns": ["id", "id"],
                           "columns": {"Name": {"column": "name", "type": "blob"}, "Other": "name"}},
                "mode": "fast", "batch_size": 0, "colour": 1
            }),
            &no_env(),
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "spec.source.csv.path: must not be empty",
            "spec.source.csv.delimiter",
            "spec.source.csv.encoding: UTF-16LE is not ASCII-compatible",
            "spec.target.connection_env",
            "spec.target.schema",
            "spec.target.table",
            "spec.target.key_columns[1]: \"id\" is listed twice",
            "spec.target.columns.Name.type: unknown type \"blob\"",
            "spec.target.columns.Other: column \"name\" is already fed by \"Name\"",
            "spec.mode",
            "spec.batch_size",
            "spec.colour: unknown setting",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
        assert!(!err.contains("u:p@h"), "the URL must not be echoed: {err}");
    }

    #[test]
    fn sheet_source_and_mapping() {
        let s = parse(
            &json!({"source": {"sheet": {"google_sheet_url": "https://docs.google.com/spreadsheets/d/abcdefghijk/edit#gid=7", "window_rows": 50}},
                    "target": {"table": "t", "key_columns": ["id"], "columns": {"ID": "id", "Full name": {"column": "name", "type": "TEXT"}}},
                    "mode": "batched"}),
            &no_env(),
        )
        .unwrap();
        let SourceSpec::Sheet(sh) = &s.source else { panic!() };
        assert_eq!((sh.spreadsheet_id.as_str(), sh.gid, sh.window_rows), ("abcdefghijk", Some(7), 50));
        assert_eq!(s.mode, Mode::Batched);
        assert_eq!(s.target.columns.len(), 2);
        assert_eq!(s.target.columns.iter().find(|c| c.column == "name").unwrap().value_type.as_deref(), Some("text"));
        let err = parse(
            &json!({"source": {"sheet": {"google_sheet_url": "x/"}}, "target": {"table": "t", "key_columns": ["id"], "columns": {"Name": "name"}}}),
            &no_env(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("spec.source.sheet.google_sheet_url"), "{err}");
        assert!(err.contains("key column \"id\" is not fed"), "{err}");
    }
}
