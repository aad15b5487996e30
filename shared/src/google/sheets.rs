//! Reading Google Sheets with the Sheets API v4 (google-sheets4): tab lookup by gid or title,
//! the rectangle a config asks for, column number formats, the header row, and values in row
//! windows. Every call goes through the retry policy. Both sheet-reading kinds use this module.

use google_sheets4::api::Scope;
use google_sheets4::Sheets;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use super::auth::Credentials;
use super::retry::{ApiError, RetryPolicy};
use crate::a1::{self, A1Range};
use crate::error::JobError;
use crate::schema::NumFmt;

const API: &str = "sheets";

/// google-sheets4 puts the range into the URL path unencoded, so a tab named `Q1 #2/3?` would
/// turn into a fragment or a query; encode everything but the characters A1 notation needs.
const RANGE_ENCODE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'!').remove(b':').remove(b'-').remove(b'_').remove(b'.');

/// One tab of a spreadsheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabInfo {
    pub sheet_id: i64,
    pub title: String,
    pub row_count: u32,
    pub col_count: u32,
}

/// A tab and the rectangle of it to read, resolved against its grid (columns 0-based, rows
/// 1-based, inclusive).
#[derive(Debug, Clone)]
pub struct SheetBounds {
    pub tab: TabInfo,
    pub c0: u32,
    pub c1: u32,
    pub header_row: u32,
    pub last_row: u32,
}

impl SheetBounds {
    /// Picks the tab — the range's tab, then `worksheet`, then the URL's `gid`, then the first
    /// tab — and clips `range` to its grid. `header_row` counts from the first row of the range.
    pub fn resolve(
        spreadsheet_id: &str,
        tabs: &[TabInfo],
        range: &A1Range,
        worksheet: Option<&str>,
        gid: Option<i64>,
        header_row: u32,
    ) -> Result<SheetBounds, JobError> {
        let list = || tabs.iter().map(|t| format!("{:?} (gid {})", t.title, t.sheet_id)).collect::<Vec<_>>().join(", ");
        let tab = if let Some(title) = range.tab.as_deref().or(worksheet) {
            tabs.iter()
                .find(|t| t.title == title)
                .or_else(|| tabs.iter().find(|t| t.title.eq_ignore_ascii_case(title)))
                .ok_or_else(|| {
                    JobError::source(format!(
                        "spreadsheet {spreadsheet_id} has no tab named {title:?} (tabs: {})",
                        list()
                    ))
                })?
        } else if let Some(gid) = gid {
            tabs.iter().find(|t| t.sheet_id == gid).ok_or_else(|| {
                JobError::source(format!("spreadsheet {spreadsheet_id} has no tab with gid {gid} (tabs: {})", list()))
            })?
        } else {
            tabs.first().ok_or_else(|| JobError::source(format!("spreadsheet {spreadsheet_id} has no tabs")))?
        }
        .clone();
        let max_col = tab.col_count.max(1) - 1;
        let c0 = range.start_col.unwrap_or(0);
        let c1 = range.end_col.unwrap_or(max_col).min(max_col.max(c0));
        let header_row = range.start_row.unwrap_or(1) + header_row - 1;
        let last_row = range.end_row.unwrap_or(tab.row_count).min(tab.row_count.max(header_row));
        Ok(SheetBounds { tab, c0, c1, header_row, last_row })
    }

    /// Rows `r0..=r1` of the rectangle in A1 notation.
    pub fn rows(&self, r0: u32, r1: u32) -> String {
        a1::range(&self.tab.title, self.c0, r0, self.c1, r1)
    }

    /// The reference of a cell, by its 0-based column within the rectangle.
    pub fn cell_ref(&self, col: usize, row: u32) -> String {
        a1::cell_ref(&self.tab.title, self.c0 + col as u32, row)
    }
}

/// A failed Sheets read as a job error, with what to check for 403 and 404. `url_field` names the
/// config field holding the sheet's URL.
pub fn read_error(e: ApiError, what: &str, url_field: &str) -> JobError {
    let hint = match e.status {
        Some(403) => {
            " (share the spreadsheet with the job's service account, or check the Sheets API is enabled)".into()
        }
        Some(404) => format!(" (check {url_field})"),
        _ => String::new(),
    };
    JobError::source(format!("{what}: {e}{hint}"))
}

/// A Sheets API v4 client.
#[derive(Clone)]
pub struct SheetsClient {
    hub: Sheets<HttpsConnector<HttpConnector>>,
    retry: RetryPolicy,
}

impl SheetsClient {
    /// `base_url` overrides `https://sheets.googleapis.com/` (a local server in tests and demos).
    pub fn new(base_url: Option<&str>, credentials: Credentials, retry: RetryPolicy) -> SheetsClient {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(connector);
        let mut hub = Sheets::new(client, credentials);
        if let Some(base) = base_url {
            let base = if base.ends_with('/') { base.to_string() } else { format!("{base}/") };
            hub.base_url(base.clone());
            hub.root_url(base);
        }
        SheetsClient { hub, retry }
    }

    /// The spreadsheet's tabs with their grid sizes.
    #[tracing::instrument(skip_all, fields(spreadsheet = %spreadsheet_id), err(Display))]
    pub async fn tabs(&self, spreadsheet_id: &str) -> Result<Vec<TabInfo>, ApiError> {
        let (_, ss) = self
            .retry
            .run("spreadsheets.get", || async {
                self.hub
                    .spreadsheets()
                    .get(spreadsheet_id)
                    .param("fields", "sheets.properties(sheetId,title,index,gridProperties(rowCount,columnCount))")
                    .add_scope(Scope::SpreadsheetReadonly)
                    .doit()
                    .await
                    .map_err(map_error)
            })
            .await?;
        Ok(ss
            .sheets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.properties)
            .map(|p| {
                let g = p.grid_properties.unwrap_or_default();
                TabInfo {
                    sheet_id: p.sheet_id.unwrap_or(0) as i64,
                    title: p.title.unwrap_or_default(),
                    row_count: g.row_count.unwrap_or(0).max(0) as u32,
                    col_count: g.column_count.unwrap_or(0).max(0) as u32,
                }
            })
            .collect())
    }

    /// The number format of each column of `range`: per column, the most common format among its
    /// non-empty cells (`effectiveFormat.numberFormat.type`).
    #[tracing::instrument(skip_all, fields(spreadsheet = %spreadsheet_id, range = %range), err(Display))]
    pub async fn column_formats(
        &self,
        spreadsheet_id: &str,
        range: &str,
        width: usize,
    ) -> Result<Vec<NumFmt>, ApiError> {
        let (_, ss) = self
            .retry
            .run("spreadsheets.get(grid data)", || async {
                self.hub
                    .spreadsheets()
                    .get(spreadsheet_id)
                    .add_ranges(range)
                    .include_grid_data(true)
                    .param("fields", "sheets(data(startColumn,rowData(values(effectiveFormat(numberFormat(type))))))")
                    .add_scope(Scope::SpreadsheetReadonly)
                    .doit()
                    .await
                    .map_err(map_error)
            })
            .await?;
        // counts[col][fmt]
        let mut counts: Vec<[u32; 5]> = vec![[0; 5]; width];
        for sheet in ss.sheets.unwrap_or_default() {
            for data in sheet.data.unwrap_or_default() {
                // The requested range starts at column 0 of `counts`.
                for row in data.row_data.unwrap_or_default() {
                    for (i, cell) in row.values.unwrap_or_default().into_iter().enumerate() {
                        let Some(t) = cell.effective_format.and_then(|f| f.number_format).and_then(|n| n.type_) else {
                            continue;
                        };
                        if let Some(c) = counts.get_mut(i) {
                            let idx = match NumFmt::from_api(&t) {
                                NumFmt::Plain => 0,
                                NumFmt::Date => 1,
                                NumFmt::Time => 2,
                                NumFmt::DateTime => 3,
                                NumFmt::Currency => 4,
                            };
                            c[idx] += 1;
                        }
                    }
                }
            }
        }
        const FMTS: [NumFmt; 5] = [NumFmt::Plain, NumFmt::Date, NumFmt::Time, NumFmt::DateTime, NumFmt::Currency];
        Ok(counts
            .into_iter()
            .map(|c| {
                // Plain cells (text, numbers) do not outvote a date format: a date column often
                // has a few text notes in it, and those widen it to STRING anyway.
                let best = (1..5).max_by_key(|&i| c[i]).filter(|&i| c[i] > 0).unwrap_or(0);
                FMTS[best]
            })
            .collect())
    }

    /// The header row of `b` as displayed (formatted values; blank cells are empty strings).
    pub async fn header(&self, spreadsheet_id: &str, b: &SheetBounds) -> Result<Vec<String>, ApiError> {
        let rows = self.values(spreadsheet_id, &b.rows(b.header_row, b.header_row), true).await?;
        Ok(rows
            .into_iter()
            .next()
            .unwrap_or_default()
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            })
            .collect())
    }

    /// The values of `range`, row-major. `formatted` asks for the displayed text of every cell;
    /// otherwise unformatted values with dates as serial numbers.
    #[tracing::instrument(skip_all, fields(spreadsheet = %spreadsheet_id, range = %range), err(Display))]
    pub async fn values(
        &self,
        spreadsheet_id: &str,
        range: &str,
        formatted: bool,
    ) -> Result<Vec<Vec<serde_json::Value>>, ApiError> {
        let encoded = percent_encoding::utf8_percent_encode(range, RANGE_ENCODE).to_string();
        let (_, vr) = self
            .retry
            .run("spreadsheets.values.get", || async {
                self.hub
                    .spreadsheets()
                    .values_get(spreadsheet_id, &encoded)
                    .value_render_option(if formatted { "FORMATTED_VALUE" } else { "UNFORMATTED_VALUE" })
                    .date_time_render_option("SERIAL_NUMBER")
                    .major_dimension("ROWS")
                    .add_scope(Scope::SpreadsheetReadonly)
                    .doit()
                    .await
                    .map_err(map_error)
            })
            .await?;
        Ok(vr.values.unwrap_or_default())
    }
}

fn map_error(e: google_sheets4::Error) -> ApiError {
    use google_sheets4::Error as E;
    match e {
        E::BadRequest(body) => {
            let code = body.pointer("/error/code").and_then(|c| c.as_u64()).unwrap_or(400) as u16;
            ApiError::from_body(API, code, body.to_string().as_bytes())
        }
        E::Failure(resp) => {
            let status = resp.status();
            ApiError::http(API, status.as_u16(), status.canonical_reason().unwrap_or("error").to_string())
        }
        E::HttpError(err) => ApiError::transport(API, format!("connection failed: {}", error_chain(&err))),
        E::Io(err) => ApiError::transport(API, format!("I/O error: {err}")),
        E::MissingToken(err) => ApiError::permanent(API, format!("no access token: {err}")),
        E::JsonDecodeError(_, err) => ApiError::permanent(API, format!("unexpected response: {err}")),
        other => ApiError::permanent(API, other.to_string()),
    }
}

/// The error and its sources on one line (hyper hides the useful part in `source()`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
