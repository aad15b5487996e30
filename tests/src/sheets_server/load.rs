//! Loading spreadsheets from fixture files: CSV (imported the way Google Sheets imports it),
//! XLSX (through calamine, one tab per worksheet) and a JSON format for exact control over
//! every cell's type and display text.

use std::path::Path;

use anyhow::{bail, ensure, Context as _};
use calamine::{Data, Reader as _, Xlsx};
use serde_json::Value;

use super::model::{
    date_serial, datetime_serial, parse_iso_date, parse_time, time_serial, Cell, NumberFormatType, Spreadsheet, Tab,
};

/// The `sheetId` of the tab at `index` in a loaded file: 0 for the first, then stable
/// numbers that, like real gids, are not simply the position.
pub fn default_sheet_id(index: usize) -> i32 {
    match index {
        0 => 0,
        i => 1000 + 7 * i32::try_from(i).unwrap_or(i32::MAX / 8),
    }
}

impl Spreadsheet {
    /// Loads a `.csv`, `.xlsx` or `.json` fixture; the spreadsheet id is the file stem.
    pub fn from_path(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("no usable file name in {}", path.display()))?;
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let loaded = match ext.as_deref() {
            Some("csv") => {
                std::fs::read(path).context("cannot read file").and_then(|bytes| Spreadsheet::from_csv(id, &bytes[..]))
            }
            Some("json") => std::fs::read_to_string(path)
                .context("cannot read file")
                .and_then(|text| Spreadsheet::from_json_str(id, &text)),
            Some("xlsx") => Spreadsheet::from_xlsx(id, path),
            _ => Err(anyhow::anyhow!("unsupported extension (want .csv, .xlsx or .json)")),
        };
        loaded.with_context(|| format!("cannot load spreadsheet fixture {}", path.display()))
    }

    /// One tab `Sheet1` (gid 0) from CSV text, each field interpreted like a Sheets import.
    pub fn from_csv(id: &str, csv_text: impl std::io::Read) -> anyhow::Result<Self> {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(csv_text);
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("bad CSV at record {}", i + 1))?;
            let mut row: Vec<Cell> = record.iter().map(Cell::from_user_input).collect();
            trim_row(&mut row);
            rows.push(row);
        }
        Ok(Spreadsheet::new(id).tab("Sheet1", 0, rows))
    }

    /// A spreadsheet from the JSON fixture format:
    ///
    /// ```json
    /// {"title": "Sales", "sheets": [{"title": "Sheet1", "sheetId": 0,
    ///   "rowCount": 1000, "columnCount": 26,
    ///   "rows": [["a", 1, true, null, {"v": 45300, "type": "DATE"},
    ///             {"v": "2024-01-05 12:00:00", "type": "DATE_TIME", "formatted": "Jan 5"},
    ///             {"error": "#DIV/0!"}, {"input": "$1,234.50"}]]}]}
    /// ```
    ///
    /// Strings are literal text, numbers are `NUMBER`s, `null` is empty. `{"v", "type"}` gives a
    /// number a format type (`v` may be an ISO date/time string for date types), `formatted`
    /// overrides the display text, `{"input": "…"}` is interpreted like a typed value.
    /// `title`, `sheetId`, `rowCount`, `columnCount` and `rows` are optional.
    pub fn from_json_str(id: &str, text: &str) -> anyhow::Result<Self> {
        let doc: Value = serde_json::from_str(text).context("invalid JSON")?;
        let mut spreadsheet = Spreadsheet::new(id);
        if let Some(title) = doc.get("title") {
            spreadsheet.title = title.as_str().context("title: not a string")?.to_owned();
        }
        let sheets = doc.get("sheets").and_then(Value::as_array).context("sheets: missing or not an array")?;
        for (i, sheet) in sheets.iter().enumerate() {
            let tab = json_tab(i, sheet).with_context(|| format!("sheets[{i}]"))?;
            spreadsheet.sheets.push(tab);
        }
        Ok(spreadsheet)
    }

    /// Every worksheet of an XLSX workbook, in workbook order, as a tab.
    pub fn from_xlsx(id: &str, path: &Path) -> anyhow::Result<Self> {
        let mut workbook: Xlsx<_> = calamine::open_workbook(path).context("cannot open workbook")?;
        let mut spreadsheet = Spreadsheet::new(id);
        for (i, name) in workbook.sheet_names().into_iter().enumerate() {
            let range = workbook.worksheet_range(&name).with_context(|| format!("cannot read worksheet {name:?}"))?;
            let (row0, col0) = range.start().unwrap_or((0, 0));
            let mut rows: Vec<Vec<Cell>> = vec![Vec::new(); row0 as usize];
            for data_row in range.rows() {
                let mut row = vec![Cell::Empty; col0 as usize];
                row.extend(data_row.iter().map(xlsx_cell));
                trim_row(&mut row);
                rows.push(row);
            }
            while rows.last().is_some_and(Vec::is_empty) {
                rows.pop();
            }
            spreadsheet.sheets.push(Tab::new(name, default_sheet_id(i), rows));
        }
        ensure!(!spreadsheet.sheets.is_empty(), "workbook has no worksheets");
        Ok(spreadsheet)
    }
}

fn trim_row(row: &mut Vec<Cell>) {
    while row.last().is_some_and(Cell::is_empty) {
        row.pop();
    }
}

fn xlsx_cell(data: &Data) -> Cell {
    match data {
        Data::Empty => Cell::Empty,
        Data::String(s) if s.is_empty() => Cell::Empty,
        Data::String(s) => Cell::Text(s.clone()),
        Data::Int(i) => Cell::number(*i as f64),
        Data::Float(f) => Cell::number(*f),
        Data::Bool(b) => Cell::Bool(*b),
        Data::Error(e) => Cell::Error(e.to_string()),
        Data::DateTime(dt) => {
            let value = dt.as_f64();
            if dt.is_duration() {
                let format = if value < 1.0 { NumberFormatType::Time } else { NumberFormatType::Number };
                return Cell::typed(value, format);
            }
            if value.trunc() == 0.0 {
                return Cell::typed(value, NumberFormatType::Time);
            }
            // Rebuild the serial from the calendar date so 1904-based workbooks land on the
            // same days; the day fraction is the same in both systems.
            let (y, m, d, ..) = dt.to_ymd_hms_milli();
            let Some(date) = chrono::NaiveDate::from_ymd_opt(y.into(), m.into(), d.into()) else {
                return Cell::number(value);
            };
            let fraction = value - value.floor();
            let format = if fraction == 0.0 { NumberFormatType::Date } else { NumberFormatType::DateTime };
            Cell::typed(date_serial(date) as f64 + fraction, format)
        }
        Data::DateTimeIso(s) => iso_cell(s).unwrap_or_else(|| Cell::Text(s.clone())),
        Data::DurationIso(s) => Cell::Text(s.clone()),
    }
}

/// `2024-01-05`, `2024-01-05T10:00:00` or `10:00:00` as a typed cell.
fn iso_cell(s: &str) -> Option<Cell> {
    if let Some(date) = parse_iso_date(s) {
        return Some(Cell::typed(date_serial(date) as f64, NumberFormatType::Date));
    }
    if let Some((d, t)) = s.split_once(['T', ' ']) {
        let dt = parse_iso_date(d)?.and_time(parse_time(t)?);
        return Some(Cell::typed(datetime_serial(dt), NumberFormatType::DateTime));
    }
    parse_time(s).map(|t| Cell::typed(time_serial(t), NumberFormatType::Time))
}

fn json_u32(sheet: &Value, key: &str) -> anyhow::Result<Option<u32>> {
    sheet
        .get(key)
        .map(|v| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .with_context(|| format!("{key}: not a small non-negative integer"))
        })
        .transpose()
}

fn json_tab(index: usize, sheet: &Value) -> anyhow::Result<Tab> {
    let title = sheet.get("title").and_then(Value::as_str).context("title: missing or not a string")?;
    let sheet_id = match sheet.get("sheetId") {
        None => default_sheet_id(index),
        Some(v) => v.as_i64().and_then(|n| i32::try_from(n).ok()).context("sheetId: not a 32-bit integer")?,
    };
    let mut rows = Vec::new();
    if let Some(json_rows) = sheet.get("rows") {
        let json_rows = json_rows.as_array().context("rows: not an array")?;
        for (r, json_row) in json_rows.iter().enumerate() {
            let json_row = json_row.as_array().with_context(|| format!("rows[{r}]: not an array"))?;
            let mut row = json_row
                .iter()
                .enumerate()
                .map(|(c, v)| json_cell(v).with_context(|| format!("rows[{r}][{c}]")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            trim_row(&mut row);
            rows.push(row);
        }
    }
    let mut tab = Tab::new(title, sheet_id, rows);
    tab.min_grid_rows = json_u32(sheet, "rowCount")?;
    tab.min_grid_columns = json_u32(sheet, "columnCount")?;
    Ok(tab)
}

fn json_cell(v: &Value) -> anyhow::Result<Cell> {
    Ok(match v {
        Value::Null => Cell::Empty,
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) => Cell::number(n.as_f64().context("number out of range")?),
        Value::String(s) => Cell::Text(s.clone()),
        Value::Array(_) => bail!("a cell cannot be an array"),
        Value::Object(obj) => {
            if let Some(e) = obj.get("error") {
                Cell::Error(e.as_str().context("error: not a string")?.to_owned())
            } else if let Some(input) = obj.get("input") {
                Cell::from_user_input(input.as_str().context("input: not a string")?)
            } else {
                let value = obj.get("v").context("expected \"v\", \"error\" or \"input\"")?;
                let format = match obj.get("type") {
                    None => None,
                    Some(t) => {
                        let name = t.as_str().context("type: not a string")?;
                        Some(
                            NumberFormatType::from_api_str(name)
                                .with_context(|| format!("type: unknown number format type {name:?}"))?,
                        )
                    }
                };
                let cell = typed_json_value(value, format)?;
                match obj.get("formatted") {
                    None => cell,
                    Some(f) => cell.with_formatted(f.as_str().context("formatted: not a string")?),
                }
            }
        }
    })
}

fn typed_json_value(value: &Value, format: Option<NumberFormatType>) -> anyhow::Result<Cell> {
    use NumberFormatType as F;
    Ok(match (value, format) {
        (Value::Number(n), f) => Cell::typed(n.as_f64().context("v: number out of range")?, f.unwrap_or(F::Number)),
        (Value::Bool(b), None) => Cell::Bool(*b),
        (Value::String(s), None | Some(F::Text)) => Cell::Text(s.clone()),
        (Value::String(s), Some(F::Date)) => {
            let date = parse_iso_date(s).with_context(|| format!("v: {s:?} is not YYYY-MM-DD"))?;
            Cell::typed(date_serial(date) as f64, F::Date)
        }
        (Value::String(s), Some(F::DateTime)) => {
            let dt = s
                .split_once(['T', ' '])
                .and_then(|(d, t)| Some(parse_iso_date(d)?.and_time(parse_time(t)?)))
                .with_context(|| format!("v: {s:?} is not YYYY-MM-DD HH:MM:SS"))?;
            Cell::typed(datetime_serial(dt), F::DateTime)
        }
        (Value::String(s), Some(F::Time)) => {
            let t = parse_time(s).with_context(|| format!("v: {s:?} is not HH:MM:SS"))?;
            Cell::typed(time_serial(t), F::Time)
        }
        (other, Some(f)) => bail!("v: {other} cannot have type {}", f.as_api_str()),
        (other, None) => bail!("v: unsupported value {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sheets").join(name)
    }

    #[test]
    fn csv_becomes_one_typed_tab() {
        let csv = "id,name,when,paid,note\n1,Zoë,2024-01-05,TRUE,\n2,東京,2024-01-06 12:00,false,'007\n";
        let s = Spreadsheet::from_csv("abc", csv.as_bytes()).unwrap();
        assert_eq!(s.id, "abc");
        let tab = &s.sheets[0];
        assert_eq!((tab.title.as_str(), tab.sheet_id), ("Sheet1", 0));
        assert_eq!(tab.rows[1].len(), 4, "trailing empty cell trimmed");
        assert_eq!(tab.rows[1][1], Cell::text("Zoë"));
        assert_eq!(tab.rows[1][2], Cell::typed(45296.0, NumberFormatType::Date).with_formatted("2024-01-05"));
        assert_eq!(tab.rows[2][3], Cell::Bool(false));
        assert_eq!(tab.rows[2][4], Cell::text("007"));
        assert_eq!(tab.rows[2][2].formatted(), "2024-01-06 12:00");
    }

    #[test]
    fn loads_the_example_sales_csv() {
        let s = Spreadsheet::from_path(fixture("example_sales.csv")).unwrap();
        assert_eq!(s.id, "example_sales");
        let rows = &s.sheets[0].rows;
        assert_eq!(rows.len(), 21);
        assert_eq!(rows[0][0], Cell::text("order_id"));
        assert_eq!(rows[1][0], Cell::typed(1001.0, NumberFormatType::Number).with_formatted("1001"));
        assert_eq!(rows[3][1], Cell::text("東京 Trading Co."));
        assert_eq!(rows[3][6], Cell::text("bulk, priority"));
        assert_eq!(rows[2].len(), 5, "blank shipped_at and notes trimmed");
    }

    #[test]
    fn loads_the_xlsx_fixture_with_typed_dates() {
        let s = Spreadsheet::from_path(fixture("example_workbook.xlsx")).unwrap();
        assert_eq!(s.id, "example_workbook");
        let titles: Vec<_> = s.sheets.iter().map(|t| (t.title.as_str(), t.sheet_id)).collect();
        assert_eq!(titles, [("Orders", 0), ("Monthly Totals", 1007)]);

        let orders = &s.sheets[0];
        assert_eq!(orders.rows.len(), 6);
        assert_eq!(orders.rows[0][0], Cell::text("order_id"));
        let first = &orders.rows[1];
        assert_eq!(first[0], Cell::number(1001.0));
        assert_eq!(first[2], Cell::number(3.0));
        assert_eq!(first[3], Cell::number(2.5));
        assert_eq!(first[4], Cell::Bool(true));
        assert_eq!(first[5], Cell::date(2024, 1, 5));
        assert_eq!(first[5].formatted(), "2024-01-05");
        assert_eq!(first[6].formatted(), "2024-01-06 09:30:00");
        assert!(matches!(first[6], Cell::Number { format: NumberFormatType::DateTime, .. }));
        assert_eq!(first[7].formatted(), "09:30:00");
        assert!(matches!(first[7], Cell::Number { format: NumberFormatType::Time, .. }));
        assert_eq!(orders.rows[2][1], Cell::text("Gadget – deluxe"));
        assert_eq!(orders.rows[3][1], Cell::text("Zoë's sprocket"));
        assert_eq!(orders.rows[3][8], Cell::error("#DIV/0!"));
        assert_eq!(orders.rows[3][6], Cell::Empty);
        assert_eq!(orders.rows[4][1], Cell::text("東京 tea set"));
        assert_eq!(orders.rows[5][2], Cell::Empty);

        // The second tab starts at B2: row 1 and column A stay empty.
        let totals = &s.sheets[1];
        assert!(totals.rows[0].is_empty());
        assert_eq!(totals.rows[1][0], Cell::Empty);
        assert_eq!(totals.rows[1][1], Cell::text("month"));
        assert_eq!(totals.rows[2][1], Cell::date(2024, 1, 1));
        assert_eq!(totals.rows[2][2], Cell::number(1234.5));
        assert!(totals.rows[3].is_empty());
        assert_eq!(totals.rows[4][2], Cell::number(-17.25));
        assert_eq!(totals.rows.len(), 5);
    }

    #[test]
    fn json_fixture_controls_every_cell() {
        let json = r##"{"title": "Exact", "sheets": [
            {"title": "Sheet1", "rows": [["a", 1, true, null, {"v": 45300, "type": "DATE"},
                {"v": 45300.5, "type": "DATE_TIME"}, {"error": "#N/A"},
                {"v": "2024-01-05", "type": "DATE", "formatted": "Jan 5, 2024"},
                {"input": "12.5%"}, null]]},
            {"title": "Other", "sheetId": 42, "rowCount": 10, "columnCount": 3}]}"##;
        let s = Spreadsheet::from_json_str("exact", json).unwrap();
        assert_eq!(s.title, "Exact");
        let row = &s.sheets[0].rows[0];
        assert_eq!(row.len(), 9);
        assert_eq!(row[0], Cell::text("a"));
        assert_eq!(row[1], Cell::number(1.0));
        assert_eq!(row[2], Cell::Bool(true));
        assert_eq!(row[3], Cell::Empty);
        assert_eq!(row[4].formatted(), "2024-01-09");
        assert_eq!(row[5].formatted(), "2024-01-09 12:00:00");
        assert_eq!(row[6], Cell::error("#N/A"));
        assert_eq!(row[7], Cell::date(2024, 1, 5).with_formatted("Jan 5, 2024"));
        assert_eq!(row[8], Cell::percent(0.125).with_formatted("12.5%"));
        let other = &s.sheets[1];
        assert_eq!((other.sheet_id, other.grid_rows(), other.grid_columns()), (42, 10, 3));
    }

    #[test]
    fn json_errors_name_the_cell() {
        let json = r#"{"sheets": [{"title": "S", "rows": [[1, {"v": 1, "type": "DAET"}]]}]}"#;
        let err = Spreadsheet::from_json_str("x", json).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("sheets[0]: rows[0][1]: type: unknown number format type \"DAET\""), "{msg}");
    }
}
