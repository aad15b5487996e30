//! Config files people hand to `jobctl configs import|add|validate`: JSON (one config in the
//! existing deployment's format, a list, or `{"configs": [...]}`), YAML (the same shapes, or
//! several documents) and CSV (one config per row, columns named like the JSON fields; `spec.X` or
//! `guards.X` columns nest). Every entry is validated by the same code as the job's config files,
//! and every problem is reported with the file and entry it is in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{Map, Value};
use sheettobigquery::config::JobConfig;

/// A file format jobctl reads configs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
    Csv,
}

impl Format {
    /// From the file extension.
    pub fn detect(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// One config as written in a file, before validation.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `file.yaml entry 2 ("sales")`: where the entry is, for messages.
    pub label: String,
    pub value: Value,
}

/// Reads every entry of `path` (`-` is stdin, which needs `format`).
pub fn read_entries(path: &Path, format: Option<Format>) -> anyhow::Result<Vec<Entry>> {
    let display = if path == Path::new("-") { "stdin".to_string() } else { path.display().to_string() };
    let format = match format.or_else(|| Format::detect(path)) {
        Some(f) => f,
        None if path == Path::new("-") => bail!("reading configs from stdin needs --format json, yaml or csv"),
        None => bail!("{display}: cannot tell the format from the extension; name it .json, .yaml, .yml or .csv, or pass --format"),
    };
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {display}"))?
    };
    let values = match format {
        Format::Json => {
            let v: Value = serde_json::from_str(&text).with_context(|| format!("{display} is not valid JSON"))?;
            unwrap_list(v)
        }
        Format::Yaml => {
            let mut out = Vec::new();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let v: Value =
                    serde::Deserialize::deserialize(doc).with_context(|| format!("{display} is not valid YAML"))?;
                if !v.is_null() {
                    out.extend(unwrap_list(v));
                }
            }
            out
        }
        Format::Csv => csv_rows(&text).with_context(|| format!("{display} is not valid CSV"))?,
    };
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let label = match value.get("name").and_then(Value::as_str) {
                Some(n) => format!("{display} entry {} ({n:?})", i + 1),
                None => format!("{display} entry {}", i + 1),
            };
            Entry { label, value }
        })
        .collect())
}

/// One config object, a list of them, or `{"configs": [...]}`.
fn unwrap_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        Value::Object(mut m) if m.len() == 1 && m.get("configs").is_some_and(Value::is_array) => {
            match m.remove("configs") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            }
        }
        other => vec![other],
    }
}

/// Fields that are not strings, converted from CSV text.
const BOOL_FIELDS: &[&str] = &["is_active", "allow_empty"];
const FLOAT_FIELDS: &[&str] = &["max_shrink_fraction"];

fn csv_value(field: &str, raw: &str) -> Value {
    let t = raw.trim();
    if BOOL_FIELDS.contains(&field) {
        match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => return Value::Bool(true),
            "false" | "no" | "n" | "0" => return Value::Bool(false),
            _ => {}
        }
    }
    if FLOAT_FIELDS.contains(&field) {
        if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    if (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']')) {
        if let Ok(v) = serde_json::from_str::<Value>(t) {
            return v;
        }
    }
    Value::String(t.to_string())
}

fn csv_rows(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut rdr = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::Headers).from_reader(text.as_bytes());
    let headers: Vec<String> = rdr.headers()?.iter().map(str::to_string).collect();
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec?;
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let mut obj = Map::new();
        for (h, cell) in headers.iter().zip(rec.iter()) {
            if cell.trim().is_empty() {
                continue;
            }
            // `spec.worksheet`, `guards.allow_empty`, `spec.guards.allow_empty` nest.
            let path: Vec<&str> = h.split('.').collect();
            let leaf = path[path.len() - 1];
            let mut cur = &mut obj;
            for part in &path[..path.len() - 1] {
                let slot = cur.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                cur = slot.as_object_mut().expect("made an object above");
            }
            cur.insert(leaf.to_string(), csv_value(leaf, cell));
        }
        out.push(Value::Object(obj));
    }
    Ok(out)
}

/// A validated entry.
#[derive(Debug, Clone)]
pub struct Valid {
    pub label: String,
    pub config: JobConfig,
}

/// Validates every entry of every file. Returns the configs, or every problem found (invalid
/// entries and names given more than once), each naming its file and entry.
pub fn validate_files(paths: &[PathBuf], format: Option<Format>) -> anyhow::Result<Result<Vec<Valid>, Vec<String>>> {
    let mut entries = Vec::new();
    for p in paths {
        let e = read_entries(p, format)?;
        if e.is_empty() {
            bail!("{} holds no configs", p.display());
        }
        entries.extend(e);
    }
    Ok(validate_entries(entries))
}

pub fn validate_entries(entries: Vec<Entry>) -> Result<Vec<Valid>, Vec<String>> {
    let mut problems = Vec::new();
    let mut valid = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for e in entries {
        if let Some(n) = e.value.get("name").and_then(Value::as_str) {
            let n = n.trim().to_string();
            if let Some(first) = seen.get(&n) {
                problems.push(format!("{}: name {n:?} is already used by {first}; names must be unique", e.label));
            } else {
                seen.insert(n, e.label.clone());
            }
        }
        match JobConfig::from_value(e.value) {
            Ok(mut config) => {
                // Ids belong to the database; a file exported from one is imported as new rows.
                config.id = None;
                valid.push(Valid { label: e.label, config });
            }
            Err(err) => problems.extend(err.problems.into_iter().map(|p| format!("{}: {p}", e.label))),
        }
    }
    if problems.is_empty() {
        Ok(valid)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_nests_and_types_columns() {
        let rows = csv_rows(
            "name,google_sheet_url,is_active,run_frequency_hours,spec.worksheet,guards.max_shrink_fraction\n\
             a,1AbCdEfGhIjK,no,6,Data,0.5\n\
             ,,,,,\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r["is_active"], Value::Bool(false));
        assert_eq!(r["run_frequency_hours"], "6");
        assert_eq!(r["spec"]["worksheet"], "Data");
        assert_eq!(r["guards"]["max_shrink_fraction"], 0.5);
    }

    #[test]
    fn lists_and_wrapped_lists_unwrap() {
        assert_eq!(unwrap_list(serde_json::json!([{"a": 1}, {"b": 2}])).len(), 2);
        assert_eq!(unwrap_list(serde_json::json!({"configs": [{"a": 1}]})).len(), 1);
        assert_eq!(unwrap_list(serde_json::json!({"name": "x"})).len(), 1);
    }

    #[test]
    fn duplicate_names_are_named_with_both_places() {
        let e = |n: &str, label: &str| Entry {
            label: label.into(),
            value: serde_json::json!({"name": n, "google_sheet_url": "1AbCdEfGhIjK", "google_cloud_project_id": "test-proj", "bigquery_dataset_id": "d", "bigquery_table_id": "t"}),
        };
        let problems =
            validate_entries(vec![e("x", "f entry 1"), e("y", "f entry 2"), e("x", "f entry 3")]).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("f entry 3") && problems[0].contains("f entry 1"), "{problems:?}");
    }
}
