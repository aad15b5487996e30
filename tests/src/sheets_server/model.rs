//! The in-memory spreadsheet the local Sheets server serves: tabs of typed cells, each number
//! carrying the Sheets number-format type that decides how it is rendered, plus the serial-date
//! arithmetic Google Sheets uses (days since 1899-12-30).

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{Datelike as _, NaiveDate, NaiveDateTime, NaiveTime, Timelike as _};

/// Rows and columns of a new Google Sheets tab; a tab's grid is at least this big.
pub const DEFAULT_GRID_ROWS: u32 = 1000;
/// See [`DEFAULT_GRID_ROWS`].
pub const DEFAULT_GRID_COLUMNS: u32 = 26;

/// The `NumberFormat.type` of a cell, as the Sheets API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberFormatType {
    /// `NUMBER`: a plain number (automatic format).
    Number,
    /// `DATE`: a serial day number shown as `yyyy-mm-dd`.
    Date,
    /// `TIME`: a fraction of a day shown as `hh:mm:ss`.
    Time,
    /// `DATE_TIME`: a serial day number with a time fraction.
    DateTime,
    /// `CURRENCY`: shown as `$1,234.50`.
    Currency,
    /// `PERCENT`: `0.125` shown as `12.50%`.
    Percent,
    /// `TEXT`: a number in a cell formatted as plain text.
    Text,
}

impl NumberFormatType {
    /// The API's name of the type, e.g. `DATE_TIME`.
    pub fn as_api_str(self) -> &'static str {
        match self {
            Self::Number => "NUMBER",
            Self::Date => "DATE",
            Self::Time => "TIME",
            Self::DateTime => "DATE_TIME",
            Self::Currency => "CURRENCY",
            Self::Percent => "PERCENT",
            Self::Text => "TEXT",
        }
    }

    /// Parses the API's name of a type (case-insensitive).
    pub fn from_api_str(name: &str) -> Option<Self> {
        const ALL: [NumberFormatType; 7] = [
            NumberFormatType::Number,
            NumberFormatType::Date,
            NumberFormatType::Time,
            NumberFormatType::DateTime,
            NumberFormatType::Currency,
            NumberFormatType::Percent,
            NumberFormatType::Text,
        ];
        ALL.into_iter().find(|t| t.as_api_str().eq_ignore_ascii_case(name))
    }

    /// The pattern reported in `numberFormat.pattern`; `None` for the automatic number format,
    /// which the real API reports without any `numberFormat`.
    pub fn pattern(self) -> Option<&'static str> {
        match self {
            Self::Number => None,
            Self::Date => Some("yyyy-mm-dd"),
            Self::Time => Some("hh:mm:ss"),
            Self::DateTime => Some("yyyy-mm-dd hh:mm:ss"),
            Self::Currency => Some("\"$\"#,##0.00"),
            Self::Percent => Some("0.00%"),
            Self::Text => Some("@"),
        }
    }

    /// True for the types `dateTimeRenderOption` applies to.
    pub fn is_date_or_time(self) -> bool {
        matches!(self, Self::Date | Self::Time | Self::DateTime)
    }
}

/// One cell of a tab. Kept to 32 bytes: benchmark sheets hold millions of them.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Cell {
    /// No value.
    #[default]
    Empty,
    /// `TRUE` / `FALSE`.
    Bool(bool),
    /// A number with the format type that decides how it renders. `formatted` is the text
    /// Sheets displays; `None` means "derive it from the value and format type".
    Number { value: f64, format: NumberFormatType, formatted: Option<Box<str>> },
    /// A string value.
    Text(String),
    /// A formula error, e.g. `#DIV/0!` or `#N/A`.
    Error(String),
}

/// Error literals Google Sheets recognises when typed into a cell.
const ERROR_LITERALS: [&str; 9] =
    ["#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#ERROR!", "#DATA!"];

impl Cell {
    /// A plain number.
    pub fn number(value: f64) -> Self {
        Self::typed(value, NumberFormatType::Number)
    }

    /// A number with the given format type and derived display text.
    pub fn typed(value: f64, format: NumberFormatType) -> Self {
        Cell::Number { value, format, formatted: None }
    }

    /// A `DATE` cell. Panics on an invalid date (this is for tests and fixtures).
    pub fn date(year: i32, month: u32, day: u32) -> Self {
        let date =
            NaiveDate::from_ymd_opt(year, month, day).unwrap_or_else(|| panic!("invalid date {year}-{month}-{day}"));
        Self::typed(date_serial(date) as f64, NumberFormatType::Date)
    }

    /// A `DATE_TIME` cell. Panics on an invalid date or time.
    pub fn date_time(year: i32, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Self {
        let dt = NaiveDate::from_ymd_opt(year, month, day)
            .and_then(|d| d.and_hms_opt(hour, min, sec))
            .unwrap_or_else(|| panic!("invalid date-time {year}-{month}-{day} {hour}:{min}:{sec}"));
        Self::typed(datetime_serial(dt), NumberFormatType::DateTime)
    }

    /// A `TIME` cell. Panics on an invalid time.
    pub fn time(hour: u32, min: u32, sec: u32) -> Self {
        let t = NaiveTime::from_hms_opt(hour, min, sec).unwrap_or_else(|| panic!("invalid time {hour}:{min}:{sec}"));
        Self::typed(time_serial(t), NumberFormatType::Time)
    }

    /// A `CURRENCY` cell.
    pub fn currency(value: f64) -> Self {
        Self::typed(value, NumberFormatType::Currency)
    }

    /// A `PERCENT` cell holding the fraction (`0.125` shows as `12.50%`).
    pub fn percent(fraction: f64) -> Self {
        Self::typed(fraction, NumberFormatType::Percent)
    }

    /// A text cell, taken literally.
    pub fn text(text: impl Into<String>) -> Self {
        Cell::Text(text.into())
    }

    /// An error cell such as `#DIV/0!`.
    pub fn error(literal: impl Into<String>) -> Self {
        Cell::Error(literal.into())
    }

    /// Overrides the display text of a number (other cells display their value).
    pub fn with_formatted(self, text: impl Into<String>) -> Self {
        match self {
            Cell::Number { value, format, .. } => {
                Cell::Number { value, format, formatted: Some(text.into().into_boxed_str()) }
            }
            other => other,
        }
    }

    /// Interprets text the way Google Sheets does when it is typed into a cell or imported
    /// from CSV: numbers, `TRUE`/`FALSE`, ISO dates, date-times and times, `$1,234.50`,
    /// `12.5%`, error literals; a leading apostrophe forces text. A number keeps `raw` as its
    /// display text.
    pub fn from_user_input(raw: &str) -> Self {
        if raw.is_empty() {
            return Cell::Empty;
        }
        if let Some(rest) = raw.strip_prefix('\'') {
            return Cell::Text(rest.to_owned());
        }
        let t = raw.trim();
        if t.eq_ignore_ascii_case("true") {
            return Cell::Bool(true);
        }
        if t.eq_ignore_ascii_case("false") {
            return Cell::Bool(false);
        }
        if let Some(e) = ERROR_LITERALS.iter().find(|e| e.eq_ignore_ascii_case(t)) {
            return Cell::Error((*e).to_owned());
        }
        let number = |value, format| Cell::Number { value, format, formatted: Some(raw.into()) };
        if let Some(v) = parse_number_like(t) {
            return number(v.0, v.1);
        }
        if let Some(date) = parse_iso_date(t) {
            return number(date_serial(date) as f64, NumberFormatType::Date);
        }
        if let Some((d, time)) = t.split_once(' ') {
            if let (Some(date), Some(time)) = (parse_iso_date(d), parse_time(time.trim_start())) {
                return number(date_serial(date) as f64 + time_serial(time), NumberFormatType::DateTime);
            }
        }
        if let Some(time) = parse_time(t) {
            return number(time_serial(time), NumberFormatType::Time);
        }
        Cell::Text(raw.to_owned())
    }

    /// True for [`Cell::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, Cell::Empty)
    }

    /// The text Google Sheets displays for this cell (`FORMATTED_VALUE`).
    pub fn formatted(&self) -> Cow<'_, str> {
        match self {
            Cell::Empty => Cow::Borrowed(""),
            Cell::Bool(true) => Cow::Borrowed("TRUE"),
            Cell::Bool(false) => Cow::Borrowed("FALSE"),
            Cell::Number { formatted: Some(text), .. } => Cow::Borrowed(text),
            Cell::Number { value, format, .. } => Cow::Owned(format_number(*value, *format)),
            Cell::Text(s) | Cell::Error(s) => Cow::Borrowed(s),
        }
    }
}

impl From<&str> for Cell {
    /// Literal text; use [`Cell::from_user_input`] to interpret it like Sheets does.
    fn from(s: &str) -> Self {
        Cell::Text(s.to_owned())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::number(v)
    }
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::number(v as f64)
    }
}

impl From<i32> for Cell {
    fn from(v: i32) -> Self {
        Cell::number(f64::from(v))
    }
}

impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::Bool(v)
    }
}

/// One tab (worksheet) of a spreadsheet.
#[derive(Debug, Clone, PartialEq)]
pub struct Tab {
    /// The tab's `sheetId`, the `gid` in its URL.
    pub sheet_id: i32,
    pub title: String,
    /// Row-major cells from A1; rows may be ragged and shorter than the grid.
    pub rows: Vec<Vec<Cell>>,
    /// Grid rows to report when the data is smaller; `None` means Sheets' default of 1000.
    pub min_grid_rows: Option<u32>,
    /// Grid columns to report when the data is narrower; `None` means Sheets' default of 26.
    pub min_grid_columns: Option<u32>,
}

impl Tab {
    pub fn new(title: impl Into<String>, sheet_id: i32, rows: Vec<Vec<Cell>>) -> Self {
        Tab { sheet_id, title: title.into(), rows, min_grid_rows: None, min_grid_columns: None }
    }

    /// A tab whose cells are typed in as text and interpreted like Sheets does
    /// (see [`Cell::from_user_input`]).
    pub fn from_input<R, S>(title: impl Into<String>, sheet_id: i32, rows: R) -> Self
    where
        R: IntoIterator,
        R::Item: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let rows =
            rows.into_iter().map(|row| row.into_iter().map(|s| Cell::from_user_input(s.as_ref())).collect()).collect();
        Tab::new(title, sheet_id, rows)
    }

    /// Sets the grid size reported when the data is smaller (a resized tab).
    pub fn with_grid(mut self, rows: u32, columns: u32) -> Self {
        self.min_grid_rows = Some(rows);
        self.min_grid_columns = Some(columns);
        self
    }

    /// `gridProperties.rowCount`: the default (or set) grid, or the data if larger.
    pub fn grid_rows(&self) -> u32 {
        let data = u32::try_from(self.rows.len()).unwrap_or(u32::MAX);
        data.max(self.min_grid_rows.unwrap_or(DEFAULT_GRID_ROWS)).max(1)
    }

    /// `gridProperties.columnCount`: the default (or set) grid, or the data if wider.
    pub fn grid_columns(&self) -> u32 {
        let widest = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let data = u32::try_from(widest).unwrap_or(u32::MAX);
        data.max(self.min_grid_columns.unwrap_or(DEFAULT_GRID_COLUMNS)).max(1)
    }

    /// The cell at 0-based (row, column); [`Cell::Empty`] outside the data.
    pub fn cell(&self, row: usize, col: usize) -> &Cell {
        static EMPTY: Cell = Cell::Empty;
        self.rows.get(row).and_then(|r| r.get(col)).unwrap_or(&EMPTY)
    }
}

/// A spreadsheet: an id, a title and its tabs in display order.
#[derive(Debug, Clone, PartialEq)]
pub struct Spreadsheet {
    pub id: String,
    pub title: String,
    pub sheets: Vec<Tab>,
}

impl Spreadsheet {
    /// An empty spreadsheet titled like its id; add tabs with [`Spreadsheet::tab`].
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        Spreadsheet { title: id.clone(), id, sheets: Vec::new() }
    }

    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Appends a tab.
    pub fn tab(self, title: impl Into<String>, sheet_id: i32, rows: Vec<Vec<Cell>>) -> Self {
        self.with_tab(Tab::new(title, sheet_id, rows))
    }

    /// Appends a prepared tab (e.g. one from [`Tab::from_input`]).
    pub fn with_tab(mut self, tab: Tab) -> Self {
        self.sheets.push(tab);
        self
    }

    pub fn tab_by_title(&self, title: &str) -> Option<&Tab> {
        self.sheets.iter().find(|t| t.title == title)
    }

    /// The URL Google reports as `spreadsheetUrl`.
    pub fn url(&self) -> String {
        format!("https://docs.google.com/spreadsheets/d/{}/edit", self.id)
    }

    /// Total cells held (for logs).
    pub fn cell_count(&self) -> usize {
        self.sheets.iter().flat_map(|t| &t.rows).map(Vec::len).sum()
    }
}

/// Day 0 of the serial-number calendar Google Sheets (and Excel after 1900-03-01) uses.
fn serial_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1899, 12, 30).expect("valid epoch")
}

/// The serial day number of a date: days since 1899-12-30 (2024-01-05 → 45296).
pub fn date_serial(date: NaiveDate) -> i64 {
    (date - serial_epoch()).num_days()
}

/// The fraction of a day a time of day is (12:00 → 0.5).
pub fn time_serial(time: NaiveTime) -> f64 {
    let secs = f64::from(time.num_seconds_from_midnight());
    let nanos = f64::from(time.nanosecond()) / 1e9;
    (secs + nanos) / 86_400.0
}

/// The serial number of a date-time (date serial plus the day fraction).
pub fn datetime_serial(dt: NaiveDateTime) -> f64 {
    date_serial(dt.date()) as f64 + time_serial(dt.time())
}

/// The date-time a serial number stands for, rounded to the second;
/// `None` outside chrono's range or for NaN.
pub fn serial_to_datetime(serial: f64) -> Option<NaiveDateTime> {
    if !serial.is_finite() || serial.abs() > 1e8 {
        return None;
    }
    let mut days = serial.floor() as i64;
    let mut secs = ((serial - days as f64) * 86_400.0).round() as u32;
    if secs >= 86_400 {
        days += 1;
        secs = 0;
    }
    let date = serial_epoch().checked_add_signed(chrono::TimeDelta::try_days(days)?)?;
    Some(date.and_time(NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)?))
}

/// Renders a number the way its format type displays it.
pub fn format_number(value: f64, format: NumberFormatType) -> String {
    let dt = || serial_to_datetime(value);
    match format {
        NumberFormatType::Number | NumberFormatType::Text => general_number(value),
        NumberFormatType::Date => {
            dt().map_or_else(|| general_number(value), |d| format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()))
        }
        NumberFormatType::DateTime => dt().map_or_else(
            || general_number(value),
            |d| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                    d.year(),
                    d.month(),
                    d.day(),
                    d.hour(),
                    d.minute(),
                    d.second()
                )
            },
        ),
        NumberFormatType::Time => dt()
            .map_or_else(|| general_number(value), |d| format!("{:02}:{:02}:{:02}", d.hour(), d.minute(), d.second())),
        NumberFormatType::Currency => {
            let sign = if value < 0.0 { "-" } else { "" };
            format!("{sign}${}", grouped(value.abs(), 2))
        }
        NumberFormatType::Percent => format!("{:.2}%", value * 100.0),
    }
}

/// Sheets' automatic number format: integers as such, otherwise up to 15 significant digits
/// without trailing zeros, and scientific notation for very large or small magnitudes.
pub fn general_number(value: f64) -> String {
    if !value.is_finite() {
        return "#NUM!".to_owned();
    }
    let abs = value.abs();
    if value.fract() == 0.0 && abs < 1e15 {
        return format!("{}", value as i64);
    }
    if !(1e-9..1e15).contains(&abs) {
        let s = format!("{value:.2E}");
        // Rust prints `1.23E20`; Sheets shows `1.23E+20`.
        return match s.split_once('E') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}E+{e}"),
            _ => s,
        };
    }
    let int_digits = (abs.log10().floor() as i32 + 1).max(1);
    let decimals = usize::try_from((15 - int_digits).clamp(0, 15)).unwrap_or(0);
    let s = format!("{value:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// `1234.5` with 2 decimals → `1,234.50`.
fn grouped(abs: f64, decimals: usize) -> String {
    let s = format!("{abs:.decimals$}");
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let mut out = String::with_capacity(s.len() + int.len() / 3);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if !frac.is_empty() {
        let _ = write!(out, ".{frac}");
    }
    out
}

/// Numbers as Sheets recognises them: `42`, `-3.5`, `1e3`, `1,234`, `$1,234.50`, `12.5%`.
fn parse_number_like(t: &str) -> Option<(f64, NumberFormatType)> {
    if let Some(num) = t.strip_suffix('%') {
        let digits = decimal_digits(num.trim_end())?;
        // Shift the decimal point textually so `12.34%` is exactly the double nearest 0.1234.
        let v: f64 = format!("{digits}e-2").parse().ok()?;
        return Some((v, NumberFormatType::Percent));
    }
    let (negative, rest) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if let Some(amount) = rest.strip_prefix('$') {
        let (neg2, amount) = match amount.strip_prefix('-') {
            Some(a) if !negative => (true, a),
            _ => (false, amount),
        };
        if amount.starts_with(['+', '-']) {
            return None;
        }
        let v: f64 = decimal_digits(amount)?.parse().ok()?;
        let v = if negative || neg2 { -v } else { v };
        return Some((v, NumberFormatType::Currency));
    }
    let v: f64 = decimal_digits(t)?.parse().ok()?;
    Some((v, NumberFormatType::Number))
}

/// Validates a decimal literal (optional sign, digits with optional `,` thousands groups,
/// optional fraction, optional exponent) and returns it without the group separators.
fn decimal_digits(s: &str) -> Option<String> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if let Some(e) = exponent {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    if let Some(f) = frac {
        if !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if int.is_empty() && frac.is_none_or(str::is_empty) {
        return None;
    }
    if int.contains(',') {
        let mut groups = int.split(',');
        let first = groups.next()?;
        let ok_first = (1..=3).contains(&first.len()) && first.bytes().all(|b| b.is_ascii_digit());
        if !ok_first || !groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit())) {
            return None;
        }
    } else if !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.replace(',', ""))
}

/// `YYYY-MM-DD` (month and day may have one digit).
pub(crate) fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || y.len() != 4
        || !(1..=2).contains(&m.len())
        || !(1..=2).contains(&d.len())
        || ![y, m, d].iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fff` on a 24-hour clock.
pub(crate) fn parse_time(s: &str) -> Option<NaiveTime> {
    let mut parts = s.split(':');
    let (h, m) = (parts.next()?, parts.next()?);
    let sec = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let two_digits = |p: &str, min_len| (min_len..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h, 1) || !two_digits(m, 2) {
        return None;
    }
    let (sec, nanos) = match sec {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            if !two_digits(whole, 2) || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let nanos = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
            (whole.parse().ok()?, nanos)
        }
    };
    NaiveTime::from_hms_nano_opt(h.parse().ok()?, m.parse().ok()?, sec, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(value: f64, format: NumberFormatType, raw: &str) -> Cell {
        Cell::typed(value, format).with_formatted(raw)
    }

    #[test]
    fn serial_dates_count_days_since_1899_12_30() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 5).unwrap();
        assert_eq!(date_serial(d), 45296);
        assert_eq!(date_serial(NaiveDate::from_ymd_opt(1899, 12, 30).unwrap()), 0);
        assert_eq!(date_serial(NaiveDate::from_ymd_opt(1900, 3, 1).unwrap()), 61);
        let dt = d.and_hms_opt(12, 0, 0).unwrap();
        assert_eq!(datetime_serial(dt), 45296.5);
        assert_eq!(serial_to_datetime(45296.5), Some(dt));
        // A fraction a hair below midnight rounds to the next day, not to 24:00:00.
        let next = NaiveDate::from_ymd_opt(2024, 1, 6).unwrap().and_hms_opt(0, 0, 0);
        assert_eq!(serial_to_datetime(45_296.999_999_99), next);
    }

    #[test]
    fn user_input_is_interpreted_like_sheets_import() {
        use NumberFormatType as F;
        let cases: Vec<(&str, Cell)> = vec![
            ("", Cell::Empty),
            ("42", num(42.0, F::Number, "42")),
            ("-3.5", num(-3.5, F::Number, "-3.5")),
            ("1e3", num(1000.0, F::Number, "1e3")),
            (".5", num(0.5, F::Number, ".5")),
            ("1,234", num(1234.0, F::Number, "1,234")),
            ("TRUE", Cell::Bool(true)),
            ("false", Cell::Bool(false)),
            ("True", Cell::Bool(true)),
            ("2024-01-05", num(45296.0, F::Date, "2024-01-05")),
            ("2024-01-05 12:00", num(45296.5, F::DateTime, "2024-01-05 12:00")),
            ("2024-01-05 06:00:00", num(45296.25, F::DateTime, "2024-01-05 06:00:00")),
            ("18:00", num(0.75, F::Time, "18:00")),
            ("06:00:00", num(0.25, F::Time, "06:00:00")),
            ("$1,234.50", num(1234.5, F::Currency, "$1,234.50")),
            ("-$5", num(-5.0, F::Currency, "-$5")),
            ("12.5%", num(0.125, F::Percent, "12.5%")),
            ("'00123", Cell::text("00123")),
            ("'TRUE", Cell::text("TRUE")),
            ("#DIV/0!", Cell::error("#DIV/0!")),
            ("#n/a", Cell::error("#N/A")),
            ("abc", Cell::text("abc")),
            ("1.2.3", Cell::text("1.2.3")),
            ("12,34", Cell::text("12,34")),
            ("2024-13-01", Cell::text("2024-13-01")),
            ("2024-01-05T10:00:00", Cell::text("2024-01-05T10:00:00")),
            ("25:00", Cell::text("25:00")),
            ("inf", Cell::text("inf")),
            ("NaN", Cell::text("NaN")),
            ("e5", Cell::text("e5")),
            ("$", Cell::text("$")),
            ("Zoë", Cell::text("Zoë")),
            ("東京", Cell::text("東京")),
        ];
        for (raw, want) in cases {
            assert_eq!(Cell::from_user_input(raw), want, "input {raw:?}");
        }
        assert_eq!(Cell::from_user_input("12.34%"), num(0.1234, F::Percent, "12.34%"));
    }

    #[test]
    fn derived_display_text_follows_the_format() {
        use NumberFormatType as F;
        assert_eq!(Cell::date(2024, 1, 5).formatted(), "2024-01-05");
        assert_eq!(Cell::date_time(2024, 1, 5, 9, 30, 15).formatted(), "2024-01-05 09:30:15");
        assert_eq!(Cell::time(23, 59, 59).formatted(), "23:59:59");
        assert_eq!(Cell::currency(1234.5).formatted(), "$1,234.50");
        assert_eq!(Cell::currency(-1234567.0).formatted(), "-$1,234,567.00");
        assert_eq!(Cell::percent(0.125).formatted(), "12.50%");
        assert_eq!(Cell::number(42.0).formatted(), "42");
        assert_eq!(Cell::number(0.1 + 0.2).formatted(), "0.3");
        assert_eq!(Cell::number(-2.5).formatted(), "-2.5");
        assert_eq!(format_number(1e20, F::Number), "1.00E+20");
        assert_eq!(Cell::Bool(false).formatted(), "FALSE");
        assert_eq!(Cell::from_user_input("1e3").formatted(), "1e3");
    }

    #[test]
    fn cells_stay_compact() {
        assert!(std::mem::size_of::<Cell>() <= 32);
    }

    #[test]
    fn grid_is_at_least_the_default_size() {
        let tab = Tab::new("T", 0, vec![vec![Cell::number(1.0); 30]]);
        assert_eq!((tab.grid_rows(), tab.grid_columns()), (1000, 30));
        let tab = tab.with_grid(5, 3);
        assert_eq!((tab.grid_rows(), tab.grid_columns()), (5, 30));
    }
}
