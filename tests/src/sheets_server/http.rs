//! The HTTP surface: `spreadsheets.get`, `spreadsheets.values.get` and `values.batchGet`
//! routes, their query parameters, range resolution against a spreadsheet, and the
//! bookkeeping (request log, injected faults) every request goes through.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::a1::{format_range, quote_sheet_name, A1Range, CellSpan, GridSpan};
use super::google_error::{json_response, GoogleError};
use super::model::{Spreadsheet, Tab};
use super::render::{
    grid_data, write_value_range, DateTimeRenderOption, MajorDimension, RenderOptions, ValueRenderOption,
};
use super::{Endpoint, SheetsServer};

type Params = Vec<(String, String)>;

pub(crate) fn router(server: SheetsServer) -> Router {
    Router::new()
        .route("/v4/spreadsheets/{id}", get(spreadsheets_get))
        .route("/v4/spreadsheets/{id}/values:batchGet", get(values_batch_get))
        .route("/v4/spreadsheets/{id}/values/{*range}", get(values_get))
        .fallback(fallback)
        .with_state(server)
}

async fn spreadsheets_get(
    State(server): State<SheetsServer>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let ranges = all(&params, "ranges");
    server.respond(Endpoint::SpreadsheetsGet, &id, ranges, &params, |s| render_spreadsheet(s, &params)).await
}

async fn values_get(
    State(server): State<SheetsServer>,
    Path((id, range)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    server
        .respond(Endpoint::ValuesGet, &id, vec![range.clone()], &params, |s| {
            let opts = render_options(&params)?;
            let mut out = Vec::new();
            value_range(&mut out, s, &range, opts)?;
            Ok(out)
        })
        .await
}

async fn values_batch_get(
    State(server): State<SheetsServer>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let ranges = all(&params, "ranges");
    server
        .respond(Endpoint::ValuesBatchGet, &id, ranges.clone(), &params, |s| {
            let opts = render_options(&params)?;
            let mut out = b"{\"spreadsheetId\":".to_vec();
            serde_json::to_writer(&mut out, &s.id).expect("strings serialize");
            if !ranges.is_empty() {
                out.extend_from_slice(b",\"valueRanges\":[");
                for (i, range) in ranges.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    value_range(&mut out, s, range, opts)?;
                }
                out.push(b']');
            }
            out.push(b'}');
            Ok(out)
        })
        .await
}

async fn fallback(State(server): State<SheetsServer>, uri: Uri) -> Response {
    server.record(Endpoint::Other, None, Vec::new(), Vec::new(), 404);
    GoogleError::new(404, format!("Method not found: {}", uri.path())).into_response()
}

/// Runs one API request: logs it, applies injected faults and access rules, looks up the
/// spreadsheet and renders the body.
impl SheetsServer {
    async fn respond(
        &self,
        endpoint: Endpoint,
        id: &str,
        ranges: Vec<String>,
        params: &Params,
        render: impl FnOnce(&Spreadsheet) -> Result<Vec<u8>, GoogleError>,
    ) -> Response {
        let delay = self.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let result = self.admit(id).and_then(|s| render(&s));
        let status = match &result {
            Ok(_) => 200,
            Err(e) => e.code(),
        };
        self.record(endpoint, Some(id.to_owned()), ranges, params.clone(), status);
        match result {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(e) => e.into_response(),
        }
    }
}

fn all(params: &Params, key: &str) -> Vec<String> {
    params.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
}

fn last<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn render_options(params: &Params) -> Result<RenderOptions, GoogleError> {
    let mut opts = RenderOptions::default();
    if let Some(v) = last(params, "valueRenderOption") {
        opts.value = ValueRenderOption::parse(v).ok_or_else(|| {
            GoogleError::invalid_value(
                "value_render_option",
                "type.googleapis.com/google.apps.sheets.v4.ValueRenderOption",
                v,
            )
        })?;
    }
    if let Some(v) = last(params, "dateTimeRenderOption") {
        opts.date_time = DateTimeRenderOption::parse(v).ok_or_else(|| {
            GoogleError::invalid_value(
                "date_time_render_option",
                "type.googleapis.com/google.apps.sheets.v4.DateTimeRenderOption",
                v,
            )
        })?;
    }
    if let Some(v) = last(params, "majorDimension") {
        opts.major_dimension = MajorDimension::parse(v).ok_or_else(|| {
            GoogleError::invalid_value("major_dimension", "type.googleapis.com/google.apps.sheets.v4.Dimension", v)
        })?;
    }
    Ok(opts)
}

/// Finds the tab and cells a range names. A bare tab title wins over a cell reference (a tab
/// may be called `A1`); tab names match exactly, else case-insensitively.
fn resolve<'a>(s: &'a Spreadsheet, raw: &str) -> Result<(&'a Tab, CellSpan), GoogleError> {
    let unparsable = || GoogleError::invalid_argument(format!("Unable to parse range: {raw}"));
    let by_title = |name: &str| {
        s.tab_by_title(name).or_else(|| s.sheets.iter().find(|t| t.title.to_lowercase() == name.to_lowercase()))
    };
    if let Some(tab) = s.tab_by_title(raw) {
        return Ok((tab, CellSpan::ALL));
    }
    let parsed = A1Range::parse(raw).ok_or_else(unparsable)?;
    let tab = match &parsed.sheet {
        Some(name) => by_title(name),
        None => s.sheets.first(),
    }
    .ok_or_else(unparsable)?;
    Ok((tab, parsed.cells.unwrap_or(CellSpan::ALL)))
}

/// Resolves and clips a range to its tab's grid; a range starting outside the grid is a 400,
/// as with the real API.
fn resolve_clipped<'a>(s: &'a Spreadsheet, raw: &str) -> Result<(&'a Tab, GridSpan), GoogleError> {
    let (tab, span) = resolve(s, raw)?;
    let (rows, cols) = (tab.grid_rows(), tab.grid_columns());
    let grid = span.clip(rows, cols).ok_or_else(|| {
        GoogleError::invalid_argument(format!(
            "Range ({}!{}) exceeds grid limits. Max rows: {rows}, max columns: {cols}",
            quote_sheet_name(&tab.title),
            span.to_a1()
        ))
    })?;
    Ok((tab, grid))
}

fn value_range(out: &mut Vec<u8>, s: &Spreadsheet, raw: &str, opts: RenderOptions) -> Result<(), GoogleError> {
    let (tab, grid) = resolve_clipped(s, raw)?;
    write_value_range(out, tab, &grid, &format_range(&tab.title, &grid), opts);
    Ok(())
}

/// The `Spreadsheet` resource: properties, sheets (only those named by `ranges`, if given) and,
/// with `includeGridData=true`, one `GridData` per requested range.
fn render_spreadsheet(s: &Spreadsheet, params: &Params) -> Result<Vec<u8>, GoogleError> {
    let include_grid_data = match last(params, "includeGridData") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(GoogleError::invalid_value("include_grid_data", "TYPE_BOOL", other)),
    };
    let ranges = all(params, "ranges");
    // (tab index, clipped span) per requested range, in request order.
    let mut wanted: Vec<(usize, GridSpan)> = Vec::new();
    for raw in &ranges {
        let (tab, grid) = resolve_clipped(s, raw)?;
        let index =
            s.sheets.iter().position(|t| std::ptr::eq(t, tab)).expect("resolved tab belongs to the spreadsheet");
        wanted.push((index, grid));
    }
    let sheets: Vec<Value> = s
        .sheets
        .iter()
        .enumerate()
        .filter(|(i, _)| ranges.is_empty() || wanted.iter().any(|(w, _)| w == i))
        .map(|(i, tab)| {
            let mut sheet = json!({
                "properties": {
                    "sheetId": tab.sheet_id,
                    "title": tab.title,
                    "index": i,
                    "sheetType": "GRID",
                    "gridProperties": {
                        "rowCount": tab.grid_rows(),
                        "columnCount": tab.grid_columns(),
                    },
                },
            });
            if include_grid_data {
                let data: Vec<Value> = if ranges.is_empty() {
                    let all =
                        CellSpan::ALL.clip(tab.grid_rows(), tab.grid_columns()).expect("a grid has at least one cell");
                    vec![grid_data(tab, &all)]
                } else {
                    wanted.iter().filter(|(w, _)| *w == i).map(|(_, grid)| grid_data(tab, grid)).collect()
                };
                sheet["data"] = Value::Array(data);
            }
            sheet
        })
        .collect();
    let body = json!({
        "spreadsheetId": s.id,
        "properties": {
            "title": s.title,
            "locale": "en_US",
            "autoRecalc": "ON_CHANGE",
            "timeZone": "Etc/GMT",
        },
        "sheets": sheets,
        "spreadsheetUrl": s.url(),
    });
    Ok(serde_json::to_vec(&body).expect("JSON values serialize"))
}
