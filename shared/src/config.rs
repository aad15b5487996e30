//! The configuration model: one row of `sheet_to_bigquery_configs`, or one JSON file in the
//! existing deployment's format. Parsing validates everything up front and names the field and
//! the problem, so a bad config fails before any API is called.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::fields::Fields;

/// Default number of sheet rows fetched per `values.get` call.
pub const DEFAULT_WINDOW_ROWS: u32 = 10_000;
/// Default cap on the number of bad-cell messages reported for one run.
pub const DEFAULT_MAX_CELL_ERRORS: u32 = 20;

/// The unit of work a config describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SheetToBigquery,
    PostgresUpsert,
    PostgresSync,
    SqlTransform,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::SheetToBigquery, Kind::PostgresUpsert, Kind::PostgresSync, Kind::SqlTransform];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SheetToBigquery => "sheet_to_bigquery",
            Kind::PostgresUpsert => "postgres_upsert",
            Kind::PostgresSync => "postgres_sync",
            Kind::SqlTransform => "sql_transform",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchemaHandling {
    #[default]
    AutoDetect,
    Explicit,
    AllStrings,
}

impl SchemaHandling {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaHandling::AutoDetect => "auto_detect",
            SchemaHandling::Explicit => "explicit",
            SchemaHandling::AllStrings => "all_strings",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// `WRITE_TRUNCATE`: the table is atomically replaced by the sheet's rows.
    #[default]
    Replace,
    /// `WRITE_APPEND`: the sheet's rows are added to the table.
    Append,
}

impl WriteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Replace => "replace",
            WriteMode::Append => "append",
        }
    }
}

/// BigQuery column types the loader produces or accepts in an explicit schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Numeric,
    Bool,
    Date,
    Datetime,
    Time,
    Timestamp,
}

impl ColumnType {
    /// The standard SQL name, as BigQuery's load API accepts it.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "STRING",
            ColumnType::Int64 => "INT64",
            ColumnType::Float64 => "FLOAT64",
            ColumnType::Numeric => "NUMERIC",
            ColumnType::Bool => "BOOL",
            ColumnType::Date => "DATE",
            ColumnType::Datetime => "DATETIME",
            ColumnType::Time => "TIME",
            ColumnType::Timestamp => "TIMESTAMP",
        }
    }

    /// Accepts standard SQL and legacy names (`INTEGER`, `FLOAT`, `BOOLEAN`), any case.
    pub fn parse(s: &str) -> Option<ColumnType> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "STRING" => ColumnType::String,
            "INT64" | "INTEGER" | "INT" => ColumnType::Int64,
            "FLOAT64" | "FLOAT" => ColumnType::Float64,
            "NUMERIC" | "DECIMAL" => ColumnType::Numeric,
            "BOOL" | "BOOLEAN" => ColumnType::Bool,
            "DATE" => ColumnType::Date,
            "DATETIME" => ColumnType::Datetime,
            "TIME" => ColumnType::Time,
            "TIMESTAMP" => ColumnType::Timestamp,
            _ => return None,
        })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One column of an explicit schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub column_type: ColumnType,
    pub required: bool,
}

/// Protections applied before a `replace` load.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Guards {
    /// Allow replacing the table with zero rows (default: refuse).
    pub allow_empty: bool,
    /// Refuse a replace that would shrink the table by more than this fraction (0..1) of its
    /// current row count. `None` disables the check.
    pub max_shrink_fraction: Option<f64>,
}

/// Settings of a `sheet_to_bigquery` config.
#[derive(Debug, Clone, PartialEq)]
pub struct SheetToBigQuery {
    pub google_sheet_url: String,
    pub spreadsheet_id: String,
    /// Tab id from the URL's `#gid=`.
    pub gid: Option<i64>,
    pub worksheet: Option<String>,
    pub range: Option<String>,
    /// 1-based row of the header, counted from the first row of the range (default 1).
    pub header_row: u32,
    pub project_id: String,
    pub dataset_id: String,
    pub table_id: String,
    pub schema_handling: SchemaHandling,
    pub schema: Vec<ColumnSpec>,
    pub write_mode: WriteMode,
    pub guards: Guards,
    pub window_rows: u32,
    pub max_cell_errors: u32,
    /// BigQuery location for created datasets and jobs (e.g. `EU`); None lets BigQuery pick.
    pub location: Option<String>,
}

impl SheetToBigQuery {
    /// `project.dataset.table`, as messages name the destination.
    pub fn table_ref(&self) -> String {
        format!("{}.{}.{}", self.project_id, self.dataset_id, self.table_id)
    }
}

/// The `spec` of the other kinds, kept as JSON; each kind validates its own (see `kinds`).
#[derive(Debug, Clone, PartialEq)]
pub enum KindSettings {
    SheetToBigQuery(Box<SheetToBigQuery>),
    Other(Value),
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub id: Option<i64>,
    pub name: String,
    pub kind: Kind,
    pub is_active: bool,
    pub run_frequency_hours: i32,
    pub settings: KindSettings,
}

impl JobConfig {
    pub fn sheet(&self) -> Option<&SheetToBigQuery> {
        match &self.settings {
            KindSettings::SheetToBigQuery(s) => Some(s),
            KindSettings::Other(_) => None,
        }
    }

    /// Parses a config in the existing deployment's JSON format (top-level legacy fields, optional
    /// settings either at the top level or under `spec`). Every problem is reported, not just the
    /// first.
    pub fn from_json_str(text: &str) -> Result<JobConfig, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::new(vec![format!("config is not valid JSON: {e}")]))?;
        JobConfig::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<JobConfig, ConfigError> {
        let Value::Object(map) = value else {
            return Err(ConfigError::new(vec!["config must be a JSON object".into()]));
        };
        let mut v = Validator::default();
        let config = v.config(map);
        match (config, v.problems.is_empty()) {
            (Some(c), true) => Ok(c),
            _ => Err(ConfigError::new(v.problems)),
        }
    }

    /// The `spec` JSONB stored beside the legacy columns: every optional setting.
    pub fn spec_json(&self) -> Value {
        match &self.settings {
            KindSettings::Other(v) => v.clone(),
            KindSettings::SheetToBigQuery(s) => {
                let mut m = Map::new();
                if let Some(w) = &s.worksheet {
                    m.insert("worksheet".into(), w.clone().into());
                }
                if let Some(r) = &s.range {
                    m.insert("range".into(), r.clone().into());
                }
                if s.header_row != 1 {
                    m.insert("header_row".into(), s.header_row.into());
                }
                if s.write_mode != WriteMode::Replace {
                    m.insert("write_mode".into(), s.write_mode.as_str().into());
                }
                if !s.schema.is_empty() {
                    let cols: Vec<Value> = s
                        .schema
                        .iter()
                        .map(|c| {
                            serde_json::json!({
                                "name": c.name,
                                "type": c.column_type.as_str(),
                                "mode": if c.required { "REQUIRED" } else { "NULLABLE" },
                            })
                        })
                        .collect();
                    m.insert("schema".into(), cols.into());
                }
                if s.guards != Guards::default() {
                    let mut g = Map::new();
                    g.insert("allow_empty".into(), s.guards.allow_empty.into());
                    if let Some(f) = s.guards.max_shrink_fraction {
                        g.insert("max_shrink_fraction".into(), f.into());
                    }
                    m.insert("guards".into(), g.into());
                }
                if s.window_rows != DEFAULT_WINDOW_ROWS {
                    m.insert("window_rows".into(), s.window_rows.into());
                }
                if s.max_cell_errors != DEFAULT_MAX_CELL_ERRORS {
                    m.insert("max_cell_errors".into(), s.max_cell_errors.into());
                }
                if let Some(l) = &s.location {
                    m.insert("location".into(), l.clone().into());
                }
                Value::Object(m)
            }
        }
    }

    /// The config as one JSON object in the file format `jobctl` reads back.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(id) = self.id {
            m.insert("id".into(), id.into());
        }
        m.insert("name".into(), self.name.clone().into());
        m.insert("kind".into(), self.kind.as_str().into());
        m.insert("is_active".into(), self.is_active.into());
        m.insert("run_frequency_hours".into(), self.run_frequency_hours.into());
        if let Some(s) = self.sheet() {
            m.insert("google_sheet_url".into(), s.google_sheet_url.clone().into());
            m.insert("google_cloud_project_id".into(), s.project_id.clone().into());
            m.insert("bigquery_dataset_id".into(), s.dataset_id.clone().into());
            m.insert("bigquery_table_id".into(), s.table_id.clone().into());
            m.insert("schema_handling".into(), s.schema_handling.as_str().into());
        }
        m.insert("spec".into(), self.spec_json());
        Value::Object(m)
    }
}

/// Fields a config file may carry at the top level.
const TOP_LEVEL_FIELDS: &[&str] = &[
    "id",
    "name",
    "kind",
    "is_active",
    "run_frequency_hours",
    "spec",
    "google_sheet_url",
    "google_cloud_project_id",
    "bigquery_dataset_id",
    "bigquery_table_id",
    "schema_handling",
    "last_run",
    "migration_status",
    "created_at",
    "updated_at",
];

/// Optional `sheet_to_bigquery` settings (at the top level or under `spec`).
const SHEET_SETTINGS: &[&str] = &[
    "worksheet",
    "range",
    "header_row",
    "write_mode",
    "schema",
    "guards",
    "window_rows",
    "max_cell_errors",
    "location",
];

#[derive(Default)]
struct Validator {
    problems: Vec<String>,
}

impl Fields for Validator {
    fn problem(&mut self, field: &str, msg: impl fmt::Display) {
        self.problems.push(format!("{field}: {msg}"));
    }
}

impl Validator {
    fn config(&mut self, mut map: Map<String, Value>) -> Option<JobConfig> {
        let mut spec = match map.remove("spec") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                self.problem("spec", "must be a JSON object");
                Map::new()
            }
        };
        for key in map.keys() {
            if !TOP_LEVEL_FIELDS.contains(&key.as_str()) && !SHEET_SETTINGS.contains(&key.as_str()) {
                self.problem(key, "unknown field");
            }
        }
        let id = self.opt_i64(&map, "id");
        let name = self.req_str(&map, "name");
        if let Some(n) = &name {
            if n.trim().is_empty() {
                self.problem("name", "must not be empty");
            } else if n.len() > 200 {
                self.problem("name", "must be at most 200 characters");
            }
        }
        let kind = match map.get("kind") {
            None | Some(Value::Null) => Some(Kind::SheetToBigquery),
            Some(Value::String(s)) => match Kind::parse(s) {
                Some(k) => Some(k),
                None => {
                    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                    self.problem("kind", format!("unknown kind {s:?} (known: {})", known.join(", ")));
                    None
                }
            },
            Some(_) => {
                self.problem("kind", "must be a string");
                None
            }
        };
        let is_active = match map.get("is_active") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.problem("is_active", "must be true or false");
                true
            }
        };
        let run_frequency_hours = match self.opt_i64(&map, "run_frequency_hours") {
            None => 24,
            Some(h) if (1..=8784).contains(&h) => h as i32,
            Some(h) => {
                self.problem("run_frequency_hours", format!("{h} is out of range (1 to 8784)"));
                24
            }
        };
        let settings = match kind? {
            Kind::SheetToBigquery => {
                // Optional settings may sit at the top level (legacy files) or under `spec`.
                for key in SHEET_SETTINGS {
                    if let Some(v) = map.remove(*key) {
                        if spec.contains_key(*key) {
                            self.problem(key, "given both at the top level and under spec");
                        }
                        spec.insert((*key).to_string(), v);
                    }
                }
                KindSettings::SheetToBigQuery(Box::new(self.sheet(&map, &spec)?))
            }
            Kind::PostgresUpsert => {
                // Validated here too, so a bad spec is refused when a config is added or
                // imported, not first when it runs.
                let spec = Value::Object(spec);
                if let Err(e) = crate::kinds::postgres_upsert::validate_spec(&spec) {
                    self.problems.extend(e.problems);
                }
                KindSettings::Other(spec)
            }
            _ => KindSettings::Other(Value::Object(spec)),
        };
        Some(JobConfig { id, name: name?, kind: kind?, is_active, run_frequency_hours, settings })
    }

    fn sheet(&mut self, top: &Map<String, Value>, spec: &Map<String, Value>) -> Option<SheetToBigQuery> {
        for key in spec.keys() {
            if !SHEET_SETTINGS.contains(&key.as_str()) {
                self.problem(&format!("spec.{key}"), "unknown setting");
            }
        }
        let url = self.req_str(top, "google_sheet_url");
        let parsed = url.as_deref().and_then(|u| match parse_sheet_url(u) {
            Ok(p) => Some(p),
            Err(e) => {
                self.problem("google_sheet_url", e);
                None
            }
        });
        let project_id = self.req_str(top, "google_cloud_project_id");
        if let Some(p) = &project_id {
            if let Err(e) = validate_project_id(p) {
                self.problem("google_cloud_project_id", e);
            }
        }
        let dataset_id = self.req_str(top, "bigquery_dataset_id");
        if let Some(d) = &dataset_id {
            if let Err(e) = validate_dataset_id(d) {
                self.problem("bigquery_dataset_id", e);
            }
        }
        let table_id = self.req_str(top, "bigquery_table_id");
        if let Some(t) = &table_id {
            if let Err(e) = validate_table_id(t) {
                self.problem("bigquery_table_id", e);
            }
        }
        let schema_handling = match top.get("schema_handling") {
            None | Some(Value::Null) => SchemaHandling::AutoDetect,
            Some(Value::String(s)) => match s.as_str() {
                "auto_detect" | "auto" => SchemaHandling::AutoDetect,
                "explicit" => SchemaHandling::Explicit,
                "all_strings" | "string" | "strings" => SchemaHandling::AllStrings,
                other => {
                    self.problem(
                        "schema_handling",
                        format!("unknown value {other:?} (expected auto_detect, explicit or all_strings)"),
                    );
                    SchemaHandling::AutoDetect
                }
            },
            Some(_) => {
                self.problem("schema_handling", "must be a string");
                SchemaHandling::AutoDetect
            }
        };
        let worksheet = self.opt_str(spec, "worksheet");
        let range = self.opt_str(spec, "range");
        if let Some(r) = &range {
            if let Err(e) = crate::a1::A1Range::parse(r) {
                self.problem("range", e);
            }
        }
        let header_row = match self.opt_i64(spec, "header_row") {
            None => 1,
            Some(n) if (1..=1_000_000).contains(&n) => n as u32,
            Some(n) => {
                self.problem("header_row", format!("{n} is out of range (1 or more)"));
                1
            }
        };
        let write_mode = match spec.get("write_mode") {
            None | Some(Value::Null) => WriteMode::Replace,
            Some(Value::String(s)) if s == "replace" || s == "WRITE_TRUNCATE" => WriteMode::Replace,
            Some(Value::String(s)) if s == "append" || s == "WRITE_APPEND" => WriteMode::Append,
            Some(v) => {
                self.problem("write_mode", format!("unknown value {v} (expected replace or append)"));
                WriteMode::Replace
            }
        };
        let schema = self.schema(spec.get("schema"));
        match (schema_handling, schema.is_empty()) {
            (SchemaHandling::Explicit, true) => {
                self.problem("schema", "schema_handling is explicit but no schema is declared")
            }
            (SchemaHandling::AutoDetect | SchemaHandling::AllStrings, false) => self
                .problem("schema", format!("a schema is declared but schema_handling is {}", schema_handling.as_str())),
            _ => {}
        }
        let guards = self.guards(spec.get("guards"));
        let window_rows = match self.opt_i64(spec, "window_rows") {
            None => DEFAULT_WINDOW_ROWS,
            Some(n) if (100..=200_000).contains(&n) => n as u32,
            Some(n) => {
                self.problem("window_rows", format!("{n} is out of range (100 to 200000)"));
                DEFAULT_WINDOW_ROWS
            }
        };
        let max_cell_errors = match self.opt_i64(spec, "max_cell_errors") {
            None => DEFAULT_MAX_CELL_ERRORS,
            Some(n) if (1..=10_000).contains(&n) => n as u32,
            Some(n) => {
                self.problem("max_cell_errors", format!("{n} is out of range (1 to 10000)"));
                DEFAULT_MAX_CELL_ERRORS
            }
        };
        let location = self.opt_str(spec, "location");
        let (spreadsheet_id, gid) = parsed?;
        Some(SheetToBigQuery {
            google_sheet_url: url?,
            spreadsheet_id,
            gid,
            worksheet,
            range,
            header_row,
            project_id: project_id?,
            dataset_id: dataset_id?,
            table_id: table_id?,
            schema_handling,
            schema,
            write_mode,
            guards,
            window_rows,
            max_cell_errors,
            location,
        })
    }

    fn schema(&mut self, v: Option<&Value>) -> Vec<ColumnSpec> {
        let items = match v {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(Value::Object(m)) if m.get("fields").is_some_and(Value::is_array) => {
                m["fields"].as_array().expect("checked")
            }
            Some(_) => {
                self.problem("schema", "must be a list of {\"name\", \"type\"} objects");
                return Vec::new();
            }
        };
        let mut cols = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("schema[{i}]");
            let Some(obj) = item.as_object() else {
                self.problem(&field, "must be an object with name and type");
                continue;
            };
            let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
            if let Err(e) = validate_column_name(name) {
                self.problem(&format!("{field}.name"), e);
                continue;
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                self.problem(&format!("{field}.name"), format!("duplicate column {name:?}"));
                continue;
            }
            let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
            let Some(column_type) = ColumnType::parse(ty) else {
                self.problem(
                    &format!("{field}.type"),
                    format!(
                        "unknown type {ty:?} (STRING, INT64, FLOAT64, NUMERIC, BOOL, DATE, DATETIME, TIME, TIMESTAMP)"
                    ),
                );
                continue;
            };
            let required = match obj.get("mode").and_then(Value::as_str).map(str::to_ascii_uppercase) {
                None => false,
                Some(m) if m == "NULLABLE" => false,
                Some(m) if m == "REQUIRED" => true,
                Some(m) => {
                    self.problem(&format!("{field}.mode"), format!("unknown mode {m:?} (NULLABLE or REQUIRED)"));
                    false
                }
            };
            cols.push(ColumnSpec { name: name.to_string(), column_type, required });
        }
        cols
    }

    fn guards(&mut self, v: Option<&Value>) -> Guards {
        let mut g = Guards::default();
        let m = match v {
            None | Some(Value::Null) => return g,
            Some(Value::Object(m)) => m,
            Some(_) => {
                self.problem("guards", "must be an object");
                return g;
            }
        };
        for key in m.keys() {
            if key != "allow_empty" && key != "max_shrink_fraction" {
                self.problem(&format!("guards.{key}"), "unknown setting (allow_empty, max_shrink_fraction)");
            }
        }
        match m.get("allow_empty") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => g.allow_empty = *b,
            Some(_) => self.problem("guards.allow_empty", "must be true or false"),
        }
        match m.get("max_shrink_fraction") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_f64() {
                Some(f) if (0.0..=1.0).contains(&f) => g.max_shrink_fraction = Some(f),
                _ => self.problem("guards.max_shrink_fraction", format!("{v} must be a number from 0 to 1")),
            },
        }
        g
    }

    fn req_str(&mut self, m: &Map<String, Value>, field: &str) -> Option<String> {
        self.req_str_at(m, field, field)
    }

    fn opt_str(&mut self, m: &Map<String, Value>, field: &str) -> Option<String> {
        self.opt_str_at(m, field, field)
    }

    fn opt_i64(&mut self, m: &Map<String, Value>, field: &str) -> Option<i64> {
        match m.get(field) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(i) => Some(i),
                None => match v.as_str().and_then(|s| s.trim().parse::<i64>().ok()) {
                    Some(i) => Some(i),
                    None => {
                        self.problem(field, format!("{v} is not an integer"));
                        None
                    }
                },
            },
        }
    }
}

/// Extracts the spreadsheet id and the tab gid from a Sheets URL
/// (`https://docs.google.com/spreadsheets/d/<id>/edit#gid=<gid>`) or a bare id.
pub fn parse_sheet_url(url: &str) -> Result<(String, Option<i64>), String> {
    let url = url.trim();
    let is_id_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !url.contains('/') {
        if url.len() >= 10 && url.chars().all(is_id_char) {
            return Ok((url.to_string(), None));
        }
        return Err(format!("{url:?} is neither a Google Sheets URL nor a spreadsheet id"));
    }
    let Some(pos) = url.find("/d/") else {
        return Err(format!("{url:?} has no /d/<spreadsheet id> part"));
    };
    let rest = &url[pos + 3..];
    let id: String = rest.chars().take_while(|c| is_id_char(*c)).collect();
    if id.is_empty() {
        return Err(format!("{url:?} has an empty spreadsheet id"));
    }
    let gid = match url.split(['#', '?', '&']).find_map(|part| part.strip_prefix("gid=")) {
        None => None,
        Some(g) => {
            let digits: String = g.chars().take_while(|c| c.is_ascii_digit()).collect();
            Some(digits.parse::<i64>().map_err(|_| format!("{url:?} has an invalid gid {g:?}"))?)
        }
    };
    Ok((id, gid))
}

/// Google Cloud project ids: 6–30 lowercase letters, digits or hyphens, starting with a letter,
/// not ending with a hyphen; optionally prefixed by a domain (`example.com:my-project`).
pub fn validate_project_id(p: &str) -> Result<(), String> {
    let local = p.rsplit_once(':').map_or(p, |(_, l)| l);
    let ok = (6..=30).contains(&local.len())
        && local.starts_with(|c: char| c.is_ascii_lowercase())
        && !local.ends_with('-')
        && local.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a valid project id (6 to 30 lowercase letters, digits or hyphens, starting with a letter)"
        ))
    }
}

/// BigQuery dataset ids: letters, digits and underscores, at most 1,024 characters.
pub fn validate_dataset_id(d: &str) -> Result<(), String> {
    if !d.is_empty() && d.len() <= 1024 && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("{d:?} is not a valid dataset id (letters, digits and underscores, at most 1024 characters)"))
    }
}

/// BigQuery table ids: letters, digits, underscores and hyphens, at most 1,024 characters.
/// (BigQuery also allows some Unicode and spaces; this loader is stricter on purpose, so that ids
/// never need quoting beyond backticks.)
pub fn validate_table_id(t: &str) -> Result<(), String> {
    if !t.is_empty() && t.len() <= 1024 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(())
    } else {
        Err(format!(
            "{t:?} is not a valid table id (letters, digits, underscores and hyphens, at most 1024 characters)"
        ))
    }
}

/// BigQuery column names: letters, digits and underscores, not starting with a digit, at most
/// 300 characters, no reserved prefix.
pub fn validate_column_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 300
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "{n:?} is not a valid column name (letters, digits and underscores, not starting with a digit, at most 300 characters)"
        ));
    }
    if let Some(p) = crate::schema::reserved_prefix(n) {
        return Err(format!("{n:?} starts with the reserved prefix {p}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = r#"{"name": "migration_test", "google_sheet_url": "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit#gid=0", "google_cloud_project_id": "hkd-reporting", "bigquery_dataset_id": "test_dataset", "bigquery_table_id": "migration_test", "schema_handling": "auto_detect"}"#;

    #[test]
    fn legacy_config_is_accepted_unchanged() {
        let c = JobConfig::from_json_str(LEGACY).unwrap();
        let s = c.sheet().unwrap();
        assert_eq!(c.name, "migration_test");
        assert_eq!(c.kind, Kind::SheetToBigquery);
        assert_eq!(s.spreadsheet_id, "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789");
        assert_eq!(s.gid, Some(0));
        assert_eq!(s.write_mode, WriteMode::Replace);
        assert_eq!(s.header_row, 1);
    }

    #[test]
    fn every_problem_names_its_field() {
        let err = JobConfig::from_json_str(
            r#"{"name": "x", "google_sheet_url": "nope/", "google_cloud_project_id": "P", "bigquery_dataset_id": "bad-ds", "bigquery_table_id": "t!", "schema_handling": "weird", "colour": 1}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "google_sheet_url",
            "google_cloud_project_id",
            "bigquery_dataset_id: \"bad-ds\"",
            "bigquery_table_id",
            "schema_handling",
            "colour: unknown field",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn unknown_kind_is_named() {
        let err = JobConfig::from_json_str(r#"{"name":"x","kind":"teleport"}"#).unwrap_err();
        assert!(err.to_string().contains("kind: unknown kind \"teleport\""), "{err}");
    }

    #[test]
    fn explicit_schema_round_trips_through_spec() {
        let c = JobConfig::from_json_str(
            r#"{"name":"x","google_sheet_url":"1AbCdEfGhIjKlMnOp","google_cloud_project_id":"test-proj","bigquery_dataset_id":"d","bigquery_table_id":"t","schema_handling":"explicit","spec":{"schema":[{"name":"a","type":"INTEGER","mode":"REQUIRED"}],"write_mode":"append","guards":{"max_shrink_fraction":0.5}}}"#,
        )
        .unwrap();
        let again = JobConfig::from_value(c.to_json()).unwrap();
        assert_eq!(c.settings, again.settings);
        let s = again.sheet().unwrap();
        assert_eq!(s.schema[0].column_type, ColumnType::Int64);
        assert!(s.schema[0].required);
        assert_eq!(s.write_mode, WriteMode::Append);
    }

    #[test]
    fn sheet_urls() {
        assert_eq!(
            parse_sheet_url("https://docs.google.com/spreadsheets/d/abcDEF_123-x/edit#gid=42").unwrap(),
            ("abcDEF_123-x".into(), Some(42))
        );
        assert_eq!(
            parse_sheet_url("https://docs.google.com/spreadsheets/d/abcDEF_123-x/edit?usp=sharing").unwrap(),
            ("abcDEF_123-x".into(), None)
        );
        assert_eq!(parse_sheet_url("abcdefghijkl").unwrap(), ("abcdefghijkl".into(), None));
        assert!(parse_sheet_url("https://example.com/x").is_err());
    }
}
