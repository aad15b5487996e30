//! Reading Google Sheets with the Sheets API v4 (google-sheets4): tab lookup by gid or title,
//! column number formats, and values in row windows. Every call goes through the retry policy.

use google_sheets4::api::Scope;
use google_sheets4::Sheets;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use super::auth::Credentials;
use super::retry::{ApiError, RetryPolicy};
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
                let start = data.start_column.unwrap_or(0).max(0) as usize;
                let _ = start; // the requested range starts at column 0 of `counts`
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
