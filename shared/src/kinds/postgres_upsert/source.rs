//! Reading the rows to import — a CSV file (local or downloaded over HTTP) or a Google Sheet tab —
//! and turning them into COPY-ready chunks. The CSV is streamed: a reader thread parses, checks and
//! encodes a few thousand rows at a time while the async side sends the previous chunk, so memory
//! stays flat whatever the file's size. Rows that do not fit become `Reject`s naming the cell.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::spec::{CsvSpec, SheetSpec, TargetSpec};
use super::target::Table;
use super::values::{self, Family, Raw};
use crate::a1::{self, A1Range};
use crate::error::{JobError, JobResult};
use crate::google::sheets::{read_error, SheetBounds, SheetsClient};

/// A source row that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// Source row number: the CSV line (header = 1) or the sheet row.
    pub row: u64,
    /// The cell at fault (`C17`, `Sheet1!C17`), when one is.
    pub cell: Option<String>,
    /// The row's key values as read, `{"id": "17"}`.
    pub key: Option<Value>,
    pub reason: String,
}

impl Reject {
    pub fn describe(&self) -> String {
        let at = self.cell.clone().unwrap_or_else(|| format!("row {}", self.row));
        format!("{at}: {}", self.reason)
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({"row": self.row, "cell": self.cell, "key": self.key, "reason": self.reason})
    }
}

/// One prepared row's place in a chunk's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub row: u64,
    pub start: usize,
    pub end: usize,
}

/// COPY text for a run of source rows, plus the rows that were refused.
#[derive(Debug, Default)]
pub struct Chunk {
    pub buf: BytesMut,
    pub spans: Vec<Span>,
    pub rejects: Vec<Reject>,
    /// Non-blank data rows consumed (prepared + rejected).
    pub read: u64,
    /// Fully empty rows skipped.
    pub blank: u64,
}

impl Chunk {
    /// Appends `other` (its spans shifted into this buffer).
    pub fn append(&mut self, other: Chunk) {
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.spans.extend(other.spans.into_iter().map(|s| Span {
            row: s.row,
            start: s.start + base,
            end: s.end + base,
        }));
        self.rejects.extend(other.rejects);
        self.read += other.read;
        self.blank += other.blank;
    }
}

/// One target column fed from the source.
#[derive(Debug, Clone)]
pub struct PrepCol {
    /// Index of the source field.
    pub src: usize,
    pub header: String,
    pub column: String,
    pub family: Family,
    pub is_key: bool,
}

/// Turns source rows into COPY lines: `row_number \t col1 \t col2 … \n`.
#[derive(Debug)]
pub struct Preparer {
    pub cols: Vec<PrepCol>,
    /// For cell references: the sheet tab and its first column, or None for a CSV.
    pub tab: Option<String>,
    pub first_col: u32,
}

impl Preparer {
    fn cell_ref(&self, src: usize, row: u64) -> String {
        let col = self.first_col + src as u32;
        match &self.tab {
            Some(tab) => a1::cell_ref(tab, col, row as u32),
            None => format!("{}{row}", a1::column_letter(col)),
        }
    }

    fn key_of(&self, cells: &[Raw<'_>]) -> Value {
        let mut m = Map::new();
        for c in self.cols.iter().filter(|c| c.is_key) {
            m.insert(c.column.clone(), cells.get(c.src).and_then(Raw::display).map_or(Value::Null, Value::String));
        }
        Value::Object(m)
    }

    /// Prepares one source row into `chunk` (or records why it cannot be imported).
    pub fn row(&self, row: u64, cells: &[Raw<'_>], chunk: &mut Chunk) {
        if cells.iter().all(Raw::is_empty) {
            chunk.blank += 1;
            return;
        }
        chunk.read += 1;
        let start = chunk.buf.len();
        chunk.buf.put_slice(row.to_string().as_bytes());
        for c in &self.cols {
            chunk.buf.put_u8(b'\t');
            let raw = cells.get(c.src).copied().unwrap_or(Raw::Empty);
            let res = if c.is_key && raw.is_empty() {
                Err(format!("key column {} is empty", c.column))
            } else {
                values::put_value(&mut chunk.buf, raw, &c.family).map_err(|e| format!("{e} (column {})", c.column))
            };
            if let Err(reason) = res {
                chunk.buf.truncate(start);
                chunk.rejects.push(Reject {
                    row,
                    cell: Some(self.cell_ref(c.src, row)),
                    key: Some(self.key_of(cells)),
                    reason,
                });
                return;
            }
        }
        chunk.buf.put_u8(b'\n');
        chunk.spans.push(Span { row, start, end: chunk.buf.len() });
    }

    /// Records a row refused before preparation (e.g. a CSV line with too many fields).
    pub fn refuse(&self, row: u64, cells: &[Raw<'_>], reason: String, chunk: &mut Chunk) {
        chunk.read += 1;
        chunk.rejects.push(Reject { row, cell: None, key: Some(self.key_of(cells)), reason });
    }
}

/// Normalises a header for matching to a column name: lower case, runs of anything but letters
/// and digits as one `_`.
fn normalise(h: &str) -> String {
    let mut out = String::new();
    for c in h.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Maps the source headers to target columns (explicit `columns`, or by name), checks the key
/// columns are fed, and picks each column's type family.
pub fn plan_columns(
    headers: &[String],
    target: &TargetSpec,
    table: &Table,
    tab: Option<String>,
    first_col: u32,
) -> JobResult<Preparer> {
    let find_header = |h: &str| {
        headers.iter().position(|x| x.trim() == h).or_else(|| {
            let hits: Vec<usize> =
                headers.iter().enumerate().filter(|(_, x)| x.trim().eq_ignore_ascii_case(h)).map(|(i, _)| i).collect();
            (hits.len() == 1).then(|| hits[0])
        })
    };
    let header_list =
        || headers.iter().filter(|h| !h.trim().is_empty()).map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ");
    let mut problems = Vec::new();
    let mut pairs: Vec<(usize, String, Option<String>)> = Vec::new();
    if target.columns.is_empty() {
        let mut unmatched = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let h = h.trim();
            if h.is_empty() {
                continue;
            }
            let col = table
                .columns
                .iter()
                .find(|c| c.name == h)
                .or_else(|| table.columns.iter().find(|c| c.name.eq_ignore_ascii_case(h)))
                .or_else(|| table.columns.iter().find(|c| c.name == normalise(h)));
            match col {
                Some(c) if pairs.iter().any(|(_, n, _)| *n == c.name) => {
                    problems.push(format!("source header {h:?}: column {:?} is already fed by another header", c.name))
                }
                Some(c) => pairs.push((i, c.name.clone(), None)),
                None => unmatched.push(format!("{h:?}")),
            }
        }
        if !unmatched.is_empty() {
            problems.push(format!(
                "source headers {} match no column of {} (map them with spec.target.columns, or rename them)",
                unmatched.join(", "),
                table.display
            ));
        }
    } else {
        for m in &target.columns {
            match find_header(&m.header) {
                Some(i) => pairs.push((i, m.column.clone(), m.value_type.clone())),
                None => problems.push(format!(
                    "spec.target.columns.{}: the source has no header {:?} (headers: {})",
                    m.header,
                    m.header,
                    header_list()
                )),
            }
        }
    }
    let mut cols = Vec::new();
    for (src, name, declared) in pairs {
        let Some(tc) = table.columns.iter().find(|c| c.name == name) else {
            problems.push(format!("spec.target.columns: {} has no column {name:?}", table.display));
            continue;
        };
        if tc.generated {
            problems.push(format!("column {name:?} of {} is generated and cannot be written", table.display));
            continue;
        }
        if tc.identity_always {
            problems.push(format!(
                "column {name:?} of {} is GENERATED ALWAYS AS IDENTITY and cannot be written",
                table.display
            ));
            continue;
        }
        let family = declared
            .as_deref()
            .and_then(Family::from_declared)
            .unwrap_or_else(|| Family::from_pg(&tc.base_type, tc.typmod));
        cols.push(PrepCol {
            src,
            header: headers[src].trim().to_string(),
            column: name,
            family,
            is_key: target.key_columns.contains(&tc.name),
        });
    }
    for k in &target.key_columns {
        if !table.columns.iter().any(|c| &c.name == k) {
            problems.push(format!("spec.target.key_columns: {} has no column {k:?}", table.display));
        } else if !cols.iter().any(|c| &c.column == k) && problems.is_empty() {
            problems.push(format!(
                "spec.target.key_columns: key column {k:?} is not fed by any source header (headers: {})",
                header_list()
            ));
        }
    }
    if cols.is_empty() && problems.is_empty() {
        problems.push("no source column maps to the target".into());
    }
    if !problems.is_empty() {
        return Err(JobError::config(format!("the source does not fit {}: {}", table.display, problems.join("; "))));
    }
    Ok(Preparer { cols, tab, first_col })
}

// ---------------------------------------------------------------------------------------------
// CSV

/// A local copy of a CSV given by URL lives as long as this.
pub struct CsvFile {
    pub path: PathBuf,
    _download: Option<tempfile::NamedTempFile>,
}

/// Opens the CSV (downloading it first when it is a URL) and reads its header line.
pub async fn open_csv(spec: &CsvSpec) -> JobResult<(CsvFile, Vec<String>)> {
    let file = if spec.path.starts_with("http://") || spec.path.starts_with("https://") {
        download(&spec.path).await?
    } else {
        let path = PathBuf::from(&spec.path);
        if !path.is_file() {
            return Err(JobError::source(format!(
                "spec.source.csv.path: {} does not exist or is not a file",
                path.display()
            )));
        }
        CsvFile { path, _download: None }
    };
    let (path, s) = (file.path.clone(), spec.clone());
    let headers = tokio::task::spawn_blocking(move || -> JobResult<Vec<String>> {
        let mut rdr = reader(&path, &s)?;
        let rec = rdr.byte_headers().map_err(|e| JobError::source(format!("reading the CSV header: {e}")))?.clone();
        let mut out = Vec::new();
        for (i, f) in rec.iter().enumerate() {
            let f = if i == 0 { f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f) } else { f };
            let h = decode(s.encoding, f).ok_or_else(|| {
                JobError::source(format!(
                    "the CSV header is not valid {} (set spec.source.csv.encoding)",
                    s.encoding.name()
                ))
            })?;
            out.push(h.trim().to_string());
        }
        if out.iter().all(|h| h.is_empty()) {
            return Err(JobError::source("the CSV has no header line"));
        }
        Ok(out)
    })
    .await
    .map_err(|e| JobError::internal(format!("CSV header reader: {e}")))??;
    Ok((file, headers))
}

async fn download(url: &str) -> JobResult<CsvFile> {
    use futures_util::StreamExt;
    use std::io::Write;
    // The URL may carry a token in its query: messages name only scheme, host and path.
    let shown = url.split(['?', '#']).next().unwrap_or(url).to_string();
    let resp = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| JobError::internal(format!("HTTP client: {e}")))?
        .get(url)
        .send()
        .await
        .map_err(|e| JobError::source(format!("downloading {shown}: {}", crate::google::sheets::error_chain(&e))))?;
    if !resp.status().is_success() {
        return Err(JobError::source(format!("downloading {shown}: HTTP {}", resp.status())));
    }
    let mut tmp =
        tempfile::NamedTempFile::new().map_err(|e| JobError::internal(format!("creating a temporary file: {e}")))?;
    let mut stream = resp.bytes_stream();
    let mut w = std::io::BufWriter::new(tmp.as_file_mut());
    while let Some(part) = stream.next().await {
        let part = part.map_err(|e| JobError::source(format!("downloading {shown}: {e}")))?;
        w.write_all(&part).map_err(|e| JobError::internal(format!("writing the downloaded CSV: {e}")))?;
    }
    w.flush().map_err(|e| JobError::internal(format!("writing the downloaded CSV: {e}")))?;
    drop(w);
    tracing::info!(url = %shown, bytes = tmp.as_file().metadata().map(|m| m.len()).unwrap_or(0), "CSV downloaded");
    Ok(CsvFile { path: tmp.path().to_path_buf(), _download: Some(tmp) })
}

fn reader(path: &Path, s: &CsvSpec) -> JobResult<csv::Reader<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(|e| JobError::source(format!("opening {}: {e}", path.display())))?;
    Ok(csv::ReaderBuilder::new()
        .delimiter(s.delimiter)
        .quote(s.quote)
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(f))
}

fn decode<'a>(enc: &'static encoding_rs::Encoding, bytes: &'a [u8]) -> Option<Cow<'a, str>> {
    if enc == encoding_rs::UTF_8 {
        std::str::from_utf8(bytes).ok().map(Cow::Borrowed)
    } else {
        let (s, malformed) = enc.decode_without_bom_handling(bytes);
        (!malformed).then_some(s)
    }
}

fn all_empty(rec: &csv::ByteRecord) -> bool {
    rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace))
}

/// Counts the data rows (non-blank records) of the CSV: the progress total and the `max_rows`
/// check before anything is written.
pub async fn count_csv_rows(file: &CsvFile, spec: &CsvSpec) -> JobResult<u64> {
    let (path, s) = (file.path.clone(), spec.clone());
    tokio::task::spawn_blocking(move || -> JobResult<u64> {
        let mut rdr = reader(&path, &s)?;
        let mut rec = csv::ByteRecord::new();
        let mut n = 0u64;
        loop {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => n += u64::from(!all_empty(&rec)),
                Ok(false) => return Ok(n),
                Err(e) => return Err(JobError::source(format!("reading the CSV: {e}"))),
            }
        }
    })
    .await
    .map_err(|e| JobError::internal(format!("CSV counter: {e}")))?
}

/// Streams the CSV's data rows as prepared chunks of at most `chunk_rows` rows from a reader
/// thread. The thread stops when the receiver is dropped.
pub fn stream_csv(
    file: &CsvFile,
    spec: &CsvSpec,
    prep: Arc<Preparer>,
    chunk_rows: usize,
    max_rows: u64,
) -> mpsc::Receiver<JobResult<Chunk>> {
    let (tx, rx) = mpsc::channel::<JobResult<Chunk>>(4);
    let (path, s) = (file.path.clone(), spec.clone());
    std::thread::Builder::new()
        .name("csv-reader".into())
        .spawn(move || {
            let result = (|| -> JobResult<()> {
                let mut rdr = reader(&path, &s)?;
                let width = rdr.byte_headers().map_err(|e| JobError::source(format!("reading the CSV header: {e}")))?.len();
                let mut rec = csv::ByteRecord::new();
                let mut chunk = Chunk { buf: BytesMut::with_capacity(1 << 20), ..Chunk::default() };
                let mut total = 0u64;
                loop {
                    let more = rdr.read_byte_record(&mut rec).map_err(|e| JobError::source(format!("reading the CSV: {e}")))?;
                    if !more {
                        break;
                    }
                    let line = rec.position().map_or(0, |p| p.line());
                    if all_empty(&rec) {
                        chunk.blank += 1;
                        continue;
                    }
                    total += 1;
                    if total > max_rows {
                        return Err(JobError::validation(format!(
                            "the CSV has more than {max_rows} data rows (spec.max_rows / IMPORT_MAX_ROWS); nothing was imported past the limit"
                        )));
                    }
                    let decoded: Option<Vec<Cow<'_, str>>> = rec.iter().map(|f| decode(s.encoding, f)).collect();
                    match decoded {
                        None => {
                            prep.refuse(line, &[], format!("line {line} is not valid {} (set spec.source.csv.encoding)", s.encoding.name()), &mut chunk);
                        }
                        Some(fields) => {
                            let raws: Vec<Raw<'_>> =
                                fields.iter().map(|f| if f.is_empty() { Raw::Empty } else { Raw::Str(f.as_ref()) }).collect();
                            if raws.len() > width && !raws[width..].iter().all(Raw::is_empty) {
                                let n = raws.len();
                                prep.refuse(line, &raws, format!("line {line} has {n} fields, the header has {width}"), &mut chunk);
                            } else {
                                prep.row(line, &raws, &mut chunk);
                            }
                        }
                    }
                    if chunk.spans.len() + chunk.rejects.len() >= chunk_rows || chunk.buf.len() >= (1 << 20) {
                        let full = std::mem::replace(&mut chunk, Chunk { buf: BytesMut::with_capacity(1 << 20), ..Chunk::default() });
                        if tx.blocking_send(Ok(full)).is_err() {
                            return Ok(());
                        }
                    }
                }
                if chunk.read > 0 || chunk.blank > 0 {
                    let _ = tx.blocking_send(Ok(chunk));
                }
                Ok(())
            })();
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        })
        .expect("spawn the CSV reader thread");
    rx
}

// ---------------------------------------------------------------------------------------------
// Google Sheets

/// The tab and rectangle to read, and where the reader is.
pub struct SheetRows {
    client: SheetsClient,
    spreadsheet_id: String,
    tab: String,
    c0: u32,
    c1: u32,
    next_row: u32,
    last_row: u32,
    window: u32,
    prep: Option<Arc<Preparer>>,
    max_rows: u64,
    read: u64,
}

/// Resolves the tab and range, reads the header row; returns the reader, the headers, the tab
/// title and the first column index.
pub async fn open_sheet(client: &SheetsClient, s: &SheetSpec, max_rows: u64) -> JobResult<(SheetRows, Vec<String>)> {
    let read_err = |e, what: &str| read_error(e, what, "spec.source.sheet.google_sheet_url");
    let tabs = client.tabs(&s.spreadsheet_id).await.map_err(|e| read_err(e, "reading the spreadsheet"))?;
    let range = match &s.range {
        Some(r) => A1Range::parse(r).map_err(|e| JobError::config(format!("spec.source.sheet.range: {e}")))?,
        None => A1Range::default(),
    };
    let b = SheetBounds::resolve(&s.spreadsheet_id, &tabs, &range, s.worksheet.as_deref(), s.gid, s.header_row)?;
    let headers: Vec<String> = client
        .header(&s.spreadsheet_id, &b)
        .await
        .map_err(|e| read_err(e, "reading the header row"))?
        .into_iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.iter().all(|h| h.is_empty()) {
        return Err(JobError::source(format!("{} has no header in row {}", a1::quote_tab(&b.tab.title), b.header_row)));
    }
    tracing::info!(spreadsheet = %s.spreadsheet_id, tab = %b.tab.title, range = %b.rows(b.header_row, b.last_row), "reading sheet");
    let (tab, c0, c1, header_row, last_row) = (b.tab, b.c0, b.c1, b.header_row, b.last_row);
    let rows = SheetRows {
        client: client.clone(),
        spreadsheet_id: s.spreadsheet_id.clone(),
        tab: tab.title,
        c0,
        c1,
        next_row: header_row + 1,
        last_row,
        window: s.window_rows,
        prep: None,
        max_rows,
        read: 0,
    };
    Ok((rows, headers))
}

impl SheetRows {
    pub fn tab(&self) -> &str {
        &self.tab
    }
    pub fn first_col(&self) -> u32 {
        self.c0
    }
    /// Rows of the grid below the header (an upper bound: the grid may end in empty rows).
    pub fn grid_rows(&self) -> u64 {
        (self.last_row + 1).saturating_sub(self.next_row) as u64
    }
    pub fn set_preparer(&mut self, prep: Arc<Preparer>) {
        self.prep = Some(prep);
    }

    /// The next window of rows, prepared.
    pub async fn next(&mut self) -> JobResult<Option<Chunk>> {
        if self.next_row > self.last_row {
            return Ok(None);
        }
        let prep =
            self.prep.clone().ok_or_else(|| JobError::internal("sheet reader used before its columns were planned"))?;
        let (r0, r1) = (self.next_row, (self.next_row + self.window - 1).min(self.last_row));
        let values = self
            .client
            .values(&self.spreadsheet_id, &a1::range(&self.tab, self.c0, r0, self.c1, r1), false)
            .await
            .map_err(|e| read_error(e, &format!("reading rows {r0}-{r1}"), "spec.source.sheet.google_sheet_url"))?;
        self.next_row = r1 + 1;
        let mut chunk = Chunk::default();
        let mut raws: Vec<Raw<'_>> = Vec::new();
        for (i, row) in values.iter().enumerate() {
            raws.clear();
            raws.extend(row.iter().map(Raw::from_json));
            let before = chunk.read;
            prep.row((r0 + i as u32) as u64, &raws, &mut chunk);
            self.read += chunk.read - before;
            if self.read > self.max_rows {
                return Err(JobError::validation(format!(
                    "the sheet has more than {} data rows (spec.max_rows / IMPORT_MAX_ROWS)",
                    self.max_rows
                )));
            }
        }
        // Rows the API left out at the end of the window are empty.
        chunk.blank += (r1 - r0 + 1) as u64 - values.len() as u64;
        Ok(Some(chunk))
    }
}

/// Either source, as a stream of prepared chunks.
pub enum Rows {
    Csv(mpsc::Receiver<JobResult<Chunk>>),
    Sheet(Box<SheetRows>),
}

impl Rows {
    pub async fn next(&mut self) -> JobResult<Option<Chunk>> {
        match self {
            Rows::Csv(rx) => rx.recv().await.transpose(),
            Rows::Sheet(s) => s.next().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_normalise_for_matching() {
        assert_eq!(normalise(" Full Name "), "full_name");
        assert_eq!(normalise("E-mail (work)"), "e_mail_work");
    }
}
