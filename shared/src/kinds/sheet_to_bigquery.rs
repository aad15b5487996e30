//! `sheet_to_bigquery`: read one sheet tab in row windows, infer or check the schema over every
//! row, validate every cell, then replace or append the BigQuery table with one load job.
//!
//! Memory stays flat however big the sheet is: pass 1 spools the cells to a temporary file while
//! gathering per-column statistics; pass 2 turns the spool into newline-delimited JSON on disk
//! (validating every cell); the load streams that file. Nothing reaches BigQuery until every cell
//! has been checked, and the load job itself is atomic.

use std::io::{BufReader, BufWriter, Read, Write};
use std::time::Instant;

use serde_json::json;

use super::{InflightJob, Report, RunContext, Unit};
use crate::a1::A1Range;
use crate::config::{ColumnType, SchemaHandling, SheetToBigQuery, WriteMode};
use crate::error::{JobError, JobResult};
use crate::google::bigquery::{Field, LoadRequest};
use crate::google::retry::ApiError;
use crate::google::sheets::{read_error, SheetBounds, TabInfo};
use crate::schema::{self, Cell, ColumnStats, NumFmt};

/// Rows sampled for column number formats.
const FORMAT_SAMPLE_ROWS: u32 = 500;

pub struct SheetToBigQueryUnit {
    name: String,
    s: SheetToBigQuery,
}

impl SheetToBigQueryUnit {
    pub fn new(name: &str, s: SheetToBigQuery) -> Self {
        SheetToBigQueryUnit { name: name.to_string(), s }
    }
}

fn source_err(e: ApiError, what: &str) -> JobError {
    read_error(e, what, "google_sheet_url")
}

fn dest_err(e: ApiError, what: &str) -> JobError {
    JobError::destination(format!("{what}: {e}"))
}

/// The tab and rectangle a config asks for, resolved against the spreadsheet's tabs.
fn resolve_bounds(s: &SheetToBigQuery, tabs: &[TabInfo]) -> JobResult<SheetBounds> {
    let range = match &s.range {
        Some(r) => A1Range::parse(r).map_err(|e| JobError::config(format!("range: {e}")))?,
        None => A1Range::default(),
    };
    SheetBounds::resolve(&s.spreadsheet_id, tabs, &range, s.worksheet.as_deref(), s.gid, s.header_row)
}

/// A compact on-disk spool of rows: row number, then tagged cells.
struct Spool {
    w: BufWriter<std::fs::File>,
}

impl Spool {
    fn write_row(&mut self, row: u32, cells: &[Cell]) -> std::io::Result<()> {
        self.w.write_all(&row.to_le_bytes())?;
        self.w.write_all(&(cells.len() as u32).to_le_bytes())?;
        for c in cells {
            match c {
                Cell::Empty => self.w.write_all(&[0])?,
                Cell::Bool(false) => self.w.write_all(&[1])?,
                Cell::Bool(true) => self.w.write_all(&[2])?,
                Cell::Num(f) => {
                    self.w.write_all(&[3])?;
                    self.w.write_all(&f.to_le_bytes())?;
                }
                Cell::Text(s) | Cell::Error(s) => {
                    self.w.write_all(&[if matches!(c, Cell::Text(_)) { 4 } else { 5 }])?;
                    self.w.write_all(&(s.len() as u32).to_le_bytes())?;
                    self.w.write_all(s.as_bytes())?;
                }
            }
        }
        Ok(())
    }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<Option<u32>> {
    let mut b = [0u8; 4];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(u32::from_le_bytes(b))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_row(r: &mut impl Read, cells: &mut Vec<Cell>) -> std::io::Result<Option<u32>> {
    let Some(row) = read_u32(r)? else { return Ok(None) };
    let n = read_u32(r)?.ok_or(std::io::ErrorKind::UnexpectedEof)? as usize;
    cells.clear();
    for _ in 0..n {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        cells.push(match tag[0] {
            0 => Cell::Empty,
            1 => Cell::Bool(false),
            2 => Cell::Bool(true),
            3 => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b)?;
                Cell::Num(f64::from_le_bytes(b))
            }
            t => {
                let len = read_u32(r)?.ok_or(std::io::ErrorKind::UnexpectedEof)? as usize;
                let mut buf = vec![0u8; len];
                r.read_exact(&mut buf)?;
                let s = String::from_utf8(buf).map_err(|_| std::io::ErrorKind::InvalidData)?;
                if t == 4 {
                    Cell::Text(s)
                } else {
                    Cell::Error(s)
                }
            }
        });
    }
    Ok(Some(row))
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |e| JobError::internal(format!("{what}: {e}"))
}

/// One destination column and where its values come from.
#[derive(Debug, Clone)]
struct Column {
    /// Index into the row's cells.
    src: usize,
    header: String,
    name: String,
    ty: ColumnType,
    required: bool,
    fmt: NumFmt,
}

#[async_trait::async_trait]
impl Unit for SheetToBigQueryUnit {
    async fn run(&self, ctx: &RunContext) -> JobResult<Report> {
        let s = &self.s;
        let started = Instant::now();
        let sheets = &ctx.services.sheets;
        let bq = &ctx.services.bigquery;
        let formatted = s.schema_handling == SchemaHandling::AllStrings;

        // 1. Where to read.
        let tabs = sheets.tabs(&s.spreadsheet_id).await.map_err(|e| source_err(e, "reading the spreadsheet"))?;
        let b = resolve_bounds(s, &tabs)?;
        let tab = b.tab.title.clone();
        tracing::info!(
            spreadsheet = %s.spreadsheet_id, tab = %tab, gid = b.tab.sheet_id,
            range = %b.rows(b.header_row, b.last_row),
            "reading sheet"
        );

        // 2. Header row (as displayed).
        let header_cells =
            sheets.header(&s.spreadsheet_id, &b).await.map_err(|e| source_err(e, "reading the header row"))?;

        // 3. Number formats of the first data rows, per column.
        let grid_width = (b.c1 - b.c0 + 1) as usize;
        let formats = if formatted || b.header_row >= b.last_row {
            vec![NumFmt::Plain; grid_width]
        } else {
            let end = (b.header_row + FORMAT_SAMPLE_ROWS).min(b.last_row);
            sheets
                .column_formats(&s.spreadsheet_id, &b.rows(b.header_row + 1, end), grid_width)
                .await
                .map_err(|e| source_err(e, "reading column formats"))?
        };

        // 4. Pass 1: data rows in windows → spool + statistics.
        let spool_file = tempfile::tempfile().map_err(io_err("creating a spool file"))?;
        let mut spool = Spool { w: BufWriter::with_capacity(1 << 20, spool_file) };
        let mut stats: Vec<ColumnStats> = Vec::new();
        let mut width = header_cells.iter().rposition(|h| !h.trim().is_empty()).map_or(0, |i| i + 1);
        let mut rows_read: u64 = 0;
        let mut skipped_empty: u64 = 0;
        let mut row = b.header_row + 1;
        let mut windows = 0u32;
        let mut cells: Vec<Cell> = Vec::new();
        while row <= b.last_row {
            let end = (row + s.window_rows - 1).min(b.last_row);
            let values = sheets
                .values(&s.spreadsheet_id, &b.rows(row, end), formatted)
                .await
                .map_err(|e| source_err(e, &format!("reading rows {row}-{end}")))?;
            windows += 1;
            for (i, vals) in values.into_iter().enumerate() {
                let sheet_row = row + i as u32;
                cells.clear();
                cells.extend(vals.into_iter().map(Cell::from_json));
                while cells.last().is_some_and(Cell::is_empty) {
                    cells.pop();
                }
                if cells.is_empty() {
                    skipped_empty += 1;
                    continue;
                }
                if cells.len() > stats.len() {
                    stats.resize_with(cells.len(), ColumnStats::default);
                }
                for (c, cell) in cells.iter().enumerate() {
                    stats[c].observe(cell, sheet_row);
                }
                width = width.max(cells.len());
                spool.write_row(sheet_row, &cells).map_err(io_err("writing the spool"))?;
                rows_read += 1;
            }
            (ctx.progress)(rows_read, None);
            tracing::info!(
                rows_read,
                window = windows,
                through_row = end,
                last_row = b.last_row,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "reading sheet: progress"
            );
            row = end + 1;
        }
        let spool_file = spool.w.into_inner().map_err(|e| JobError::internal(format!("flushing the spool: {e}")))?;
        stats.resize_with(width.max(stats.len()), ColumnStats::default);

        if width == 0 {
            return self.nothing_to_load(ctx, "the sheet is empty (no header and no data)").await;
        }

        // 5. Columns: names and types.
        let mut headers = header_cells;
        headers.resize(width, String::new());
        let names = schema::normalize_headers(&headers, b.c0);
        let mut columns: Vec<Column> = (0..width)
            .map(|i| Column {
                src: i,
                header: headers[i].clone(),
                name: names[i].clone(),
                ty: ColumnType::String,
                required: false,
                fmt: formats.get(i).copied().unwrap_or_default(),
            })
            .collect();
        match s.schema_handling {
            SchemaHandling::AllStrings => {}
            SchemaHandling::AutoDetect => {
                for c in &mut columns {
                    c.ty = stats[c.src].infer(c.fmt);
                }
            }
            SchemaHandling::Explicit => {
                let mut picked = Vec::new();
                let mut missing = Vec::new();
                for spec in &s.schema {
                    match columns
                        .iter()
                        .find(|c| c.name.eq_ignore_ascii_case(&spec.name) || c.header.trim() == spec.name)
                    {
                        Some(c) => picked.push(Column {
                            name: spec.name.clone(),
                            ty: spec.column_type,
                            required: spec.required,
                            ..c.clone()
                        }),
                        None => missing.push(spec.name.clone()),
                    }
                }
                if !missing.is_empty() {
                    return Err(JobError::validation(format!(
                        "schema: column(s) {} not found in the sheet's header row {} (columns: {})",
                        missing.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", "),
                        b.header_row,
                        columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                    )));
                }
                let dropped: Vec<&str> = columns
                    .iter()
                    .filter(|c| !picked.iter().any(|p| p.src == c.src))
                    .map(|c| c.name.as_str())
                    .collect();
                if !dropped.is_empty() {
                    tracing::warn!(columns = ?dropped, "sheet columns not in the explicit schema are not loaded");
                }
                columns = picked;
            }
        }
        for c in &columns {
            let st = &stats[c.src];
            if st.errors > 0 {
                let (r, e) = st.first_error.clone().unwrap_or_default();
                tracing::warn!(column = %c.name, count = st.errors, first = %b.cell_ref(c.src, r), error = %e, "formula errors loaded as NULL");
            }
        }
        let mapping: Vec<serde_json::Value> =
            columns.iter().map(|c| json!({"header": c.header, "column": c.name, "type": c.ty.as_str()})).collect();
        tracing::info!(columns = %serde_json::Value::Array(mapping.clone()), rows = rows_read, skipped_empty_rows = skipped_empty, "schema");

        // 6. Pass 2: validate every cell and write NDJSON.
        let mut reader = BufReader::with_capacity(1 << 20, spool_file);
        {
            use std::io::Seek;
            reader.seek(std::io::SeekFrom::Start(0)).map_err(io_err("rewinding the spool"))?;
        }
        let ndjson = tempfile::NamedTempFile::new().map_err(io_err("creating the staging file"))?;
        let mut out = BufWriter::with_capacity(1 << 20, ndjson.as_file());
        let keys: Vec<String> = columns
            .iter()
            .map(|c| {
                let mut k = String::new();
                schema::write_json_str(&mut k, &c.name);
                k.push(':');
                k
            })
            .collect();
        let mut bad: Vec<String> = Vec::new();
        let mut bad_total: u64 = 0;
        let mut line = String::with_capacity(4096);
        while let Some(sheet_row) = read_row(&mut reader, &mut cells).map_err(io_err("reading the spool"))? {
            line.clear();
            line.push('{');
            let mut first = true;
            for (c, key) in columns.iter().zip(&keys) {
                let cell = cells.get(c.src).unwrap_or(&Cell::Empty);
                let mark = line.len();
                if !first {
                    line.push(',');
                }
                line.push_str(key);
                match schema::write_value(&mut line, cell, c.ty, c.fmt) {
                    Ok(true) => first = false,
                    Ok(false) => {
                        line.truncate(mark);
                        if c.required {
                            bad_total += 1;
                            if bad.len() < s.max_cell_errors as usize {
                                bad.push(format!(
                                    "{}: empty, but column {} is REQUIRED",
                                    b.cell_ref(c.src, sheet_row),
                                    c.name
                                ));
                            }
                        }
                    }
                    Err(m) => {
                        line.truncate(mark);
                        bad_total += 1;
                        if bad.len() < s.max_cell_errors as usize {
                            bad.push(format!("{}: {}", b.cell_ref(c.src, sheet_row), m.0));
                        }
                    }
                }
            }
            line.push_str("}\n");
            out.write_all(line.as_bytes()).map_err(io_err("writing the staging file"))?;
        }
        out.flush().map_err(io_err("writing the staging file"))?;
        drop(out);
        if bad_total > 0 {
            let more = bad_total.saturating_sub(bad.len() as u64);
            if more > 0 {
                bad.push(format!("… and {more} more"));
            }
            return Err(JobError::validation(format!(
                "{bad_total} cell(s) do not fit the declared schema; nothing was loaded into {}",
                s.table_ref()
            ))
            .with_details(bad));
        }

        if rows_read == 0 {
            return self.nothing_to_load(ctx, "the sheet has a header but no data rows").await;
        }
        // Every spooled row became one NDJSON line.
        let rows_written = rows_read;

        // 7. Destination and guards.
        let created = bq
            .ensure_dataset(&s.project_id, &s.dataset_id, s.location.as_deref())
            .await
            .map_err(|e| dest_err(e, &format!("preparing dataset {}.{}", s.project_id, s.dataset_id)))?;
        if created {
            tracing::info!(dataset = %s.dataset_id, "dataset created");
        }
        let before = bq
            .count_rows(&s.project_id, &s.dataset_id, &s.table_id, s.location.as_deref())
            .await
            .map_err(|e| dest_err(e, "counting the destination's rows"))?;
        self.check_shrink(before, rows_written)?;

        // 8. Load.
        let fields: Vec<Field> =
            columns.iter().map(|c| Field { name: c.name.clone(), column_type: c.ty, required: c.required }).collect();
        let load_started = Instant::now();
        let bytes = ndjson.as_file().metadata().map(|m| m.len()).unwrap_or(0);
        tracing::info!(rows = rows_written, bytes, write_mode = s.write_mode.as_str(), "loading into BigQuery");
        let bq_job = self.load(ctx, &fields, s.write_mode, ndjson.path(), "loading into BigQuery").await?;

        // 9. Check.
        let after = bq
            .count_rows(&s.project_id, &s.dataset_id, &s.table_id, s.location.as_deref())
            .await
            .map_err(|e| dest_err(e, "counting rows after the load"))?
            .unwrap_or(0);
        let expected = match s.write_mode {
            WriteMode::Replace => rows_written,
            WriteMode::Append => before.unwrap_or(0) + rows_written,
        };
        let table = s.table_ref();
        if after != expected {
            return Err(JobError::destination(format!(
                "row count check failed: {table} has {after} rows after the load, expected {expected}"
            )));
        }
        Ok(Report {
            rows_read,
            rows_written,
            summary: format!(
                "{rows_read} rows read from {:?} ({} column(s)), {rows_written} loaded into {table} ({}) in {:.1}s",
                tab,
                columns.len(),
                s.write_mode.as_str(),
                started.elapsed().as_secs_f64()
            ),
            details: json!({
                "destination": table,
                "bigquery_job_id": bq_job,
                "write_mode": s.write_mode.as_str(),
                "columns": mapping,
                "sheet_windows": windows,
                "skipped_empty_rows": skipped_empty,
                "rows_before": before,
                "rows_after": after,
                "load_ms": load_started.elapsed().as_millis() as u64,
            }),
        })
    }
}

impl SheetToBigQueryUnit {
    /// Loads `path` with one load job under this run's job id, leaving the job where an
    /// interruption cancels it. Returns the BigQuery job id.
    async fn load(
        &self,
        ctx: &RunContext,
        fields: &[Field],
        write_mode: WriteMode,
        path: &std::path::Path,
        what: &str,
    ) -> JobResult<String> {
        let s = &self.s;
        let bq = &ctx.services.bigquery;
        let job_id = load_job_id(&self.name, &ctx.run_key);
        let set_inflight = |job: Option<InflightJob>| {
            if let Ok(mut slot) = ctx.inflight_job.lock() {
                *slot = job;
            }
        };
        set_inflight(Some(InflightJob {
            client: bq.clone(),
            project: s.project_id.clone(),
            job_id: job_id.clone(),
            location: s.location.clone(),
        }));
        let req = LoadRequest {
            project: &s.project_id,
            dataset: &s.dataset_id,
            table: &s.table_id,
            location: s.location.as_deref(),
            fields,
            write_mode,
            job_id: &job_id,
        };
        let result = bq.load_ndjson(&req, path).await.map_err(|e| dest_err(e, what));
        set_inflight(None);
        result
    }

    /// Zero data rows: refuse to empty the table unless allowed; append has nothing to do.
    async fn nothing_to_load(&self, ctx: &RunContext, why: &str) -> JobResult<Report> {
        let s = &self.s;
        let table = s.table_ref();
        let report = |summary: String| Report {
            rows_read: 0,
            rows_written: 0,
            summary,
            details: json!({"destination": table, "write_mode": s.write_mode.as_str()}),
        };
        match s.write_mode {
            WriteMode::Append => Ok(report(format!("{why}; nothing appended to {table}"))),
            WriteMode::Replace if !s.guards.allow_empty => Err(JobError::validation(format!(
                "{why}; refusing to replace {table} with an empty table (set guards.allow_empty to allow it)"
            ))),
            WriteMode::Replace => {
                // Allowed: load an empty file so an existing table is truncated atomically; with
                // no schema given, it keeps its own.
                let bq = &ctx.services.bigquery;
                bq.ensure_dataset(&s.project_id, &s.dataset_id, s.location.as_deref())
                    .await
                    .map_err(|e| dest_err(e, "preparing the dataset"))?;
                let exists = bq
                    .table_exists(&s.project_id, &s.dataset_id, &s.table_id)
                    .await
                    .map_err(|e| dest_err(e, "looking up the destination table"))?;
                if exists {
                    let empty = tempfile::NamedTempFile::new().map_err(io_err("creating the staging file"))?;
                    self.load(ctx, &[], WriteMode::Replace, empty.path(), "emptying the table").await?;
                }
                Ok(report(format!("{why}; {table} emptied (guards.allow_empty)")))
            }
        }
    }

    fn check_shrink(&self, before: Option<u64>, new_rows: u64) -> JobResult<()> {
        let s = &self.s;
        let (Some(before), Some(frac), WriteMode::Replace) = (before, s.guards.max_shrink_fraction, s.write_mode)
        else {
            return Ok(());
        };
        if before == 0 || new_rows >= before {
            return Ok(());
        }
        let shrink = (before - new_rows) as f64 / before as f64;
        if shrink > frac {
            return Err(JobError::validation(format!(
                "refusing to replace {}: it would shrink from {before} to {new_rows} rows ({:.0}% fewer, more than guards.max_shrink_fraction = {frac})",
                s.table_ref(),
                shrink * 100.0
            )));
        }
        Ok(())
    }
}

/// A BigQuery job id that is the same for every try within one run attempt:
/// `stb_<config>_<run key>` ([A-Za-z0-9_-], at most 1024 characters).
pub fn load_job_id(config_name: &str, run_key: &str) -> String {
    let clean: String = config_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(200)
        .collect();
    format!("stb_{clean}_{run_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tab(title: &str, gid: i64) -> TabInfo {
        TabInfo { sheet_id: gid, title: title.into(), row_count: 1000, col_count: 26 }
    }

    fn cfg(url: &str, range: Option<&str>) -> SheetToBigQuery {
        let mut v = json!({"name":"x","google_sheet_url":url,"google_cloud_project_id":"test-proj","bigquery_dataset_id":"d","bigquery_table_id":"t"});
        if let Some(r) = range {
            v["range"] = r.into();
        }
        crate::config::JobConfig::from_value(v).unwrap().sheet().unwrap().clone()
    }

    #[test]
    fn bounds_follow_gid_range_and_grid() {
        let tabs = vec![tab("One", 0), tab("Two", 77)];
        let b = resolve_bounds(&cfg("https://docs.google.com/spreadsheets/d/abcdefghijk/edit#gid=77", None), &tabs)
            .unwrap();
        assert_eq!((b.tab.title.as_str(), b.c0, b.c1, b.header_row, b.last_row), ("Two", 0, 25, 1, 1000));
        let b = resolve_bounds(&cfg("abcdefghijk", Some("One!B3:D")), &tabs).unwrap();
        assert_eq!((b.tab.title.as_str(), b.c0, b.c1, b.header_row, b.last_row), ("One", 1, 3, 3, 1000));
        let err = resolve_bounds(&cfg("https://docs.google.com/spreadsheets/d/abcdefghijk/edit#gid=5", None), &tabs)
            .unwrap_err();
        assert!(err.message.contains("no tab with gid 5"), "{}", err.message);
    }

    #[test]
    fn spool_round_trips() {
        let f = tempfile::tempfile().unwrap();
        let mut s = Spool { w: BufWriter::new(f) };
        let cells =
            vec![Cell::Empty, Cell::Bool(true), Cell::Num(1.5), Cell::Text("東京".into()), Cell::Error("#N/A".into())];
        s.write_row(17, &cells).unwrap();
        let mut f = s.w.into_inner().unwrap();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        let mut r = BufReader::new(f);
        let mut got = Vec::new();
        assert_eq!(read_row(&mut r, &mut got).unwrap(), Some(17));
        assert_eq!(got, cells);
        assert_eq!(read_row(&mut r, &mut got).unwrap(), None);
    }

    #[test]
    fn job_ids_are_stable_and_valid() {
        assert_eq!(load_job_id("Sales 2024/Q1", "r7a2"), "stb_Sales_2024_Q1_r7a2");
    }
}
