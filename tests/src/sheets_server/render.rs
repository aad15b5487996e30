//! Rendering tab contents into the Sheets API's JSON shapes: `ValueRange` for `values.get`
//! (written directly, since benchmark windows hold hundreds of thousands of cells) and
//! `GridData` for `spreadsheets.get?includeGridData=true`.

use std::io::Write as _;

use serde_json::{json, Map, Value};

use super::a1::GridSpan;
use super::model::{Cell, Tab};

/// `valueRenderOption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueRenderOption {
    #[default]
    FormattedValue,
    UnformattedValue,
    Formula,
}

/// `dateTimeRenderOption` (ignored under `FORMATTED_VALUE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateTimeRenderOption {
    #[default]
    SerialNumber,
    FormattedString,
}

/// `majorDimension`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MajorDimension {
    #[default]
    Rows,
    Columns,
}

impl ValueRenderOption {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "FORMATTED_VALUE" => Some(Self::FormattedValue),
            "UNFORMATTED_VALUE" => Some(Self::UnformattedValue),
            "FORMULA" => Some(Self::Formula),
            _ => None,
        }
    }
}

impl DateTimeRenderOption {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SERIAL_NUMBER" => Some(Self::SerialNumber),
            "FORMATTED_STRING" => Some(Self::FormattedString),
            _ => None,
        }
    }
}

impl MajorDimension {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ROWS" => Some(Self::Rows),
            "COLUMNS" => Some(Self::Columns),
            "DIMENSION_UNSPECIFIED" => Some(Self::Rows),
            _ => None,
        }
    }

    pub fn as_api_str(self) -> &'static str {
        match self {
            Self::Rows => "ROWS",
            Self::Columns => "COLUMNS",
        }
    }
}

/// How `values.get` renders cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenderOptions {
    pub value: ValueRenderOption,
    pub date_time: DateTimeRenderOption,
    pub major_dimension: MajorDimension,
}

/// Writes a `ValueRange` JSON object for `span` of `tab`: ragged rows with trailing empty
/// cells trimmed, trailing empty rows dropped, `values` absent when nothing is left.
pub fn write_value_range(out: &mut Vec<u8>, tab: &Tab, span: &GridSpan, range: &str, opts: RenderOptions) {
    out.extend_from_slice(b"{\"range\":");
    write_json_str(out, range);
    out.extend_from_slice(b",\"majorDimension\":\"");
    out.extend_from_slice(opts.major_dimension.as_api_str().as_bytes());
    out.push(b'"');

    // Each line (row or column) has a length: up to its last non-empty cell.
    let (lines, across) = match opts.major_dimension {
        MajorDimension::Rows => (span.rows(), span.cols()),
        MajorDimension::Columns => (span.cols(), span.rows()),
    };
    let cell = |line: usize, k: usize| match opts.major_dimension {
        MajorDimension::Rows => tab.cell(line, k),
        MajorDimension::Columns => tab.cell(k, line),
    };
    let line_len = |line: usize| {
        let mut end = across.end;
        if opts.major_dimension == MajorDimension::Rows {
            // Rows are stored trimmed: nothing lies beyond their length.
            let stored = tab.rows.get(line).map_or(0, Vec::len);
            end = end.min(stored.max(across.start));
        }
        (across.start..end).rev().find(|&k| !cell(line, k).is_empty()).map_or(0, |k| k + 1 - across.start)
    };
    let last_line = lines.clone().rev().find(|&l| line_len(l) > 0);
    if let Some(last) = last_line {
        out.extend_from_slice(b",\"values\":[");
        for line in lines.start..=last {
            if line > lines.start {
                out.push(b',');
            }
            out.push(b'[');
            for (i, k) in (across.start..across.start + line_len(line)).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_cell_value(out, cell(line, k), opts);
            }
            out.push(b']');
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn write_cell_value(out: &mut Vec<u8>, cell: &Cell, opts: RenderOptions) {
    match (cell, opts.value) {
        (Cell::Empty, _) => out.extend_from_slice(b"\"\""),
        (cell, ValueRenderOption::FormattedValue) => write_json_str(out, &cell.formatted()),
        (Cell::Bool(b), _) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        (Cell::Text(s) | Cell::Error(s), _) => write_json_str(out, s),
        (Cell::Number { format, .. }, _)
            if format.is_date_or_time() && opts.date_time == DateTimeRenderOption::FormattedString =>
        {
            write_json_str(out, &cell.formatted());
        }
        (Cell::Number { value, .. }, _) => write_json_number(out, *value),
    }
}

/// Integral numbers as JSON integers (`42`, not `42.0`), like the real API.
fn write_json_number(out: &mut Vec<u8>, value: f64) {
    if value.fract() == 0.0 && value.abs() < 9.007_199_254_740_992e15 {
        let _ = write!(out, "{}", value as i64);
    } else if value.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &value);
    } else {
        out.extend_from_slice(b"\"#NUM!\"");
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A JSON number as the API writes one: integral values without a fraction.
fn json_number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.007_199_254_740_992e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// The `ErrorValue.type` of an error literal.
fn error_type(literal: &str) -> &'static str {
    match literal {
        "#NULL!" => "NULL_VALUE",
        "#DIV/0!" => "DIVIDE_BY_ZERO",
        "#VALUE!" => "VALUE",
        "#REF!" => "REF",
        "#NAME?" => "NAME",
        "#NUM!" => "NUM",
        "#N/A" => "N_A",
        "#DATA!" => "LOADING",
        _ => "ERROR",
    }
}

/// The message Sheets attaches to an error value.
fn error_message(literal: &str) -> &'static str {
    match literal {
        "#DIV/0!" => "Function DIVIDE parameter 2 cannot be zero.",
        "#N/A" => "Value not available.",
        "#REF!" => "Reference does not exist.",
        "#NAME?" => "Unknown function.",
        "#VALUE!" => "Function parameter has the wrong type.",
        "#NUM!" => "Result is not a number.",
        _ => "Formula parse error.",
    }
}

/// `CellData` of one cell; `{}` for an empty one.
fn cell_data(cell: &Cell) -> Value {
    let mut data = Map::new();
    let value = match cell {
        Cell::Empty => return Value::Object(data),
        Cell::Bool(b) => json!({ "boolValue": b }),
        Cell::Number { value, .. } => json!({ "numberValue": json_number(*value) }),
        Cell::Text(s) => json!({ "stringValue": s }),
        Cell::Error(e) => json!({
            "errorValue": { "type": error_type(e), "message": error_message(e) }
        }),
    };
    if !matches!(cell, Cell::Error(_)) {
        data.insert("userEnteredValue".into(), value.clone());
    }
    data.insert("effectiveValue".into(), value);
    data.insert("formattedValue".into(), Value::String(cell.formatted().into_owned()));
    if let Cell::Number { format, .. } = cell {
        if let Some(pattern) = format.pattern() {
            let number_format = json!({ "numberFormat": { "type": format.as_api_str(), "pattern": pattern } });
            data.insert("userEnteredFormat".into(), number_format.clone());
            data.insert("effectiveFormat".into(), number_format);
        }
    }
    Value::Object(data)
}

/// One `GridData` for `span` of `tab`: `startRow`/`startColumn` only when non-zero, `rowData`
/// up to the last non-empty row, each row's `values` up to its last non-empty cell.
pub fn grid_data(tab: &Tab, span: &GridSpan) -> Value {
    let mut data = Map::new();
    if span.start_row > 0 {
        data.insert("startRow".into(), json!(span.start_row));
    }
    if span.start_col > 0 {
        data.insert("startColumn".into(), json!(span.start_col));
    }
    let mut rows: Vec<Value> = span
        .rows()
        .map(|r| {
            let stored = tab.rows.get(r).map_or(0, Vec::len);
            let end = span.cols().end.min(stored.max(span.start_col as usize));
            let Some(last) = (span.start_col as usize..end).rev().find(|&c| !tab.cell(r, c).is_empty()) else {
                return json!({});
            };
            let values: Vec<Value> = (span.start_col as usize..=last).map(|c| cell_data(tab.cell(r, c))).collect();
            json!({ "values": values })
        })
        .collect();
    while rows.last().is_some_and(|r| r.as_object().is_some_and(Map::is_empty)) {
        rows.pop();
    }
    if !rows.is_empty() {
        data.insert("rowData".into(), Value::Array(rows));
    }
    Value::Object(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sheets_server::a1::CellSpan;

    fn tab() -> Tab {
        Tab::from_input(
            "Sheet1",
            0,
            [
                vec!["id", "name", "when", "ok"],
                vec!["1", "Zoë", "2024-01-05", "TRUE"],
                vec![],
                vec!["3", "", "2024-01-05 12:00:00", "", ""],
                vec!["4.5", "#DIV/0!"],
                vec![],
            ],
        )
    }

    fn render(tab: &Tab, span: CellSpan, opts: RenderOptions) -> Value {
        let grid = span.clip(tab.grid_rows(), tab.grid_columns()).unwrap();
        let mut out = Vec::new();
        write_value_range(&mut out, tab, &grid, "R", opts);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn unformatted_values_are_typed_and_trimmed() {
        let opts = RenderOptions { value: ValueRenderOption::UnformattedValue, ..RenderOptions::default() };
        let v = render(&tab(), CellSpan::ALL, opts);
        assert_eq!(
            v,
            json!({"range": "R", "majorDimension": "ROWS", "values": [
                ["id", "name", "when", "ok"],
                [1, "Zoë", 45296, true],
                [],
                [3, "", 45296.5],
                [4.5, "#DIV/0!"],
            ]})
        );
        // Integral numbers are written without a fraction.
        let mut out = Vec::new();
        let grid = CellSpan::ALL.clip(1000, 26).unwrap();
        write_value_range(&mut out, &tab(), &grid, "R", opts);
        assert!(String::from_utf8(out).unwrap().contains("[1,\"Zoë\",45296,true]"));
    }

    #[test]
    fn formatted_values_are_strings() {
        let v = render(&tab(), CellSpan::ALL, RenderOptions::default());
        assert_eq!(v["values"][1], json!(["1", "Zoë", "2024-01-05", "TRUE"]));
        assert_eq!(v["values"][3], json!(["3", "", "2024-01-05 12:00:00"]));
    }

    #[test]
    fn formatted_string_dates_under_unformatted_values() {
        let opts = RenderOptions {
            value: ValueRenderOption::UnformattedValue,
            date_time: DateTimeRenderOption::FormattedString,
            ..RenderOptions::default()
        };
        let v = render(&tab(), CellSpan::ALL, opts);
        assert_eq!(v["values"][1], json!([1, "Zoë", "2024-01-05", true]));
    }

    #[test]
    fn windows_and_columns() {
        let opts = RenderOptions { value: ValueRenderOption::UnformattedValue, ..RenderOptions::default() };
        let window = CellSpan { start_row: 1, start_col: 1, end_row: Some(4), end_col: Some(3) };
        let v = render(&tab(), window, opts);
        assert_eq!(v["values"], json!([["Zoë", 45296], [], ["", 45296.5]]));
        // Nothing in range: `values` is absent.
        let empty = CellSpan { start_row: 5, start_col: 0, end_row: None, end_col: None };
        let v = render(&tab(), empty, opts);
        assert_eq!(v, json!({"range": "R", "majorDimension": "ROWS"}));
        let cols = RenderOptions { major_dimension: MajorDimension::Columns, ..opts };
        let v = render(&tab(), CellSpan { start_row: 0, start_col: 0, end_row: None, end_col: Some(2) }, cols);
        assert_eq!(v["values"], json!([["id", 1, "", 3, 4.5], ["name", "Zoë", "", "", "#DIV/0!"]]));
        assert_eq!(v["majorDimension"], "COLUMNS");
    }

    #[test]
    fn grid_data_matches_the_api_shape() {
        let t = tab();
        let span = CellSpan { start_row: 1, start_col: 1, end_row: Some(10), end_col: Some(3) };
        let g = grid_data(&t, &span.clip(1000, 26).unwrap());
        assert_eq!(g["startRow"], 1);
        assert_eq!(g["startColumn"], 1);
        let rows = g["rowData"].as_array().unwrap();
        assert_eq!(rows.len(), 4, "trailing empty rows dropped");
        assert_eq!(rows[1], json!({}));
        let date = &rows[0]["values"][1];
        assert_eq!(date["effectiveValue"], json!({"numberValue": 45296}));
        assert_eq!(date["formattedValue"], "2024-01-05");
        assert_eq!(date["effectiveFormat"]["numberFormat"], json!({"type": "DATE", "pattern": "yyyy-mm-dd"}));
        assert_eq!(rows[2]["values"][0], json!({}));
        let err = &rows[3]["values"][0];
        assert_eq!(err["effectiveValue"]["errorValue"]["type"], "DIVIDE_BY_ZERO");
        let whole = grid_data(&t, &CellSpan::ALL.clip(1000, 26).unwrap());
        assert!(whole.get("startRow").is_none() && whole.get("startColumn").is_none());
    }
}
