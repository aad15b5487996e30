//! From sheet cells to BigQuery rows: header normalisation, type inference over every row of a
//! column, and conversion of each cell to its newline-delimited JSON value. Bad cells are data,
//! not exceptions: conversion reports them by cell reference.

use std::collections::HashSet;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};

use crate::config::ColumnType;

/// One cell as the Sheets API returns it with `UNFORMATTED_VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Bool(bool),
    Num(f64),
    Text(String),
    /// A formula error such as `#DIV/0!` or `#N/A`; loaded as NULL.
    Error(String),
}

const SHEET_ERRORS: &[&str] =
    &["#N/A", "#DIV/0!", "#REF!", "#VALUE!", "#NAME?", "#NUM!", "#NULL!", "#ERROR!", "#SPILL!", "#CALC!"];

/// True for the text Sheets shows for a formula error (`#N/A`, `#DIV/0!`, …).
pub fn is_sheet_error(s: &str) -> bool {
    s.starts_with('#') && SHEET_ERRORS.contains(&s)
}

impl Cell {
    pub fn from_json(v: serde_json::Value) -> Cell {
        match v {
            serde_json::Value::Null => Cell::Empty,
            serde_json::Value::Bool(b) => Cell::Bool(b),
            serde_json::Value::Number(n) => n.as_f64().map_or(Cell::Empty, Cell::Num),
            serde_json::Value::String(s) => Cell::from_text(s),
            other => Cell::Text(other.to_string()),
        }
    }

    pub fn from_text(s: String) -> Cell {
        if s.is_empty() {
            Cell::Empty
        } else if is_sheet_error(&s) {
            Cell::Error(s)
        } else {
            Cell::Text(s)
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Text(s) => s.trim().is_empty(),
            _ => false,
        }
    }
}

/// A column's number format type, from `effectiveFormat.numberFormat.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NumFmt {
    #[default]
    Plain,
    Date,
    Time,
    DateTime,
    Currency,
}

impl NumFmt {
    pub fn from_api(t: &str) -> NumFmt {
        match t {
            "DATE" => NumFmt::Date,
            "TIME" => NumFmt::Time,
            "DATE_TIME" => NumFmt::DateTime,
            "CURRENCY" => NumFmt::Currency,
            _ => NumFmt::Plain,
        }
    }
}

const RESERVED_PREFIXES: &[&str] = &["_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLIDENTIFIER"];

/// The reserved BigQuery column-name prefix `name` starts with, if any.
pub fn reserved_prefix(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    RESERVED_PREFIXES.iter().copied().find(|p| upper.starts_with(p))
}

fn fold_accent(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => "a",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' => "A",
        'ç' | 'č' | 'ć' => "c",
        'Ç' | 'Č' | 'Ć' => "C",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ę' | 'Ě' => "E",
        'ì' | 'í' | 'î' | 'ï' | 'ī' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' => "I",
        'ñ' | 'ń' | 'ň' => "n",
        'Ñ' | 'Ń' | 'Ň' => "N",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' => "O",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' => "u",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' => "U",
        'ý' | 'ÿ' => "y",
        'Ý' | 'Ÿ' => "Y",
        'ß' => "ss",
        'š' | 'ś' => "s",
        'Š' | 'Ś' => "S",
        'ž' | 'ź' | 'ż' => "z",
        'Ž' | 'Ź' | 'Ż' => "Z",
        'ł' => "l",
        'Ł' => "L",
        'æ' => "ae",
        'Æ' => "AE",
        'œ' => "oe",
        'Œ' => "OE",
        _ => return None,
    })
}

/// Turns header cells into valid, case-insensitively unique BigQuery column names: letters,
/// digits and underscores, at most 300 characters, no leading digit, no reserved prefix. A blank
/// header is named after its column letter (`first_col` is the 0-based sheet column of index 0).
pub fn normalize_headers(raw: &[String], first_col: u32) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, h) in raw.iter().enumerate() {
        let mut name = String::with_capacity(h.len());
        for c in h.trim().chars() {
            if c.is_ascii_alphanumeric() {
                name.push(c);
            } else if let Some(f) = fold_accent(c) {
                name.push_str(f);
            } else if !name.ends_with('_') {
                name.push('_');
            }
        }
        // Keep a leading underscore the header itself had; drop ones made from punctuation.
        let mut name =
            if h.trim().starts_with('_') { name.trim_end_matches('_') } else { name.trim_matches('_') }.to_string();
        if name.is_empty() {
            name = crate::a1::column_letter(first_col + i as u32);
        }
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            name.insert(0, '_');
        }
        if reserved_prefix(&name).is_some() {
            name.insert(0, 'c');
        }
        name.truncate(300);
        let mut candidate = name.clone();
        let mut n = 2;
        while !seen.insert(candidate.to_ascii_lowercase()) {
            let suffix = format!("_{n}");
            let mut base = name.clone();
            base.truncate(300 - suffix.len());
            candidate = format!("{base}{suffix}");
            n += 1;
        }
        out.push(candidate);
    }
    out
}

/// Per-column tallies gathered over every row, from which `auto_detect` picks a type.
#[derive(Debug, Clone, Default)]
pub struct ColumnStats {
    pub bools: u64,
    pub ints: u64,
    pub floats: u64,
    pub texts: u64,
    pub timestamps: u64,
    pub errors: u64,
    pub first_error: Option<(u32, String)>,
}

impl ColumnStats {
    pub fn observe(&mut self, cell: &Cell, row: u32) {
        match cell {
            Cell::Empty => {}
            Cell::Bool(_) => self.bools += 1,
            Cell::Num(f) => {
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    self.ints += 1
                } else {
                    self.floats += 1
                }
            }
            Cell::Text(s) => {
                if s.trim().is_empty() {
                } else if parse_timestamp_text(s).is_some() {
                    self.timestamps += 1
                } else {
                    self.texts += 1
                }
            }
            Cell::Error(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some((row, e.clone()));
                }
            }
        }
    }

    /// The narrowest type that holds every value seen; a mixed column widens to STRING rather
    /// than splitting.
    pub fn infer(&self, fmt: NumFmt) -> ColumnType {
        let numbers = self.ints + self.floats;
        let others = self.bools + self.texts + self.timestamps;
        if numbers > 0 && others == 0 {
            return match fmt {
                NumFmt::Date => ColumnType::Date,
                NumFmt::DateTime => ColumnType::Datetime,
                NumFmt::Time => ColumnType::Time,
                NumFmt::Currency => ColumnType::Numeric,
                NumFmt::Plain if self.floats > 0 => ColumnType::Float64,
                NumFmt::Plain => ColumnType::Int64,
            };
        }
        if numbers == 0 && self.bools > 0 && self.texts + self.timestamps == 0 {
            return ColumnType::Bool;
        }
        if numbers == 0 && self.bools == 0 && self.texts == 0 && self.timestamps > 0 {
            return ColumnType::Timestamp;
        }
        ColumnType::String
    }
}

/// Days between the Sheets epoch (1899-12-30) and the Unix epoch.
const SERIAL_UNIX_OFFSET_DAYS: i64 = 25_569;

/// A Sheets serial number (days since 1899-12-30, fraction = time of day) as a date-time,
/// rounded to the millisecond.
pub fn serial_to_datetime(serial: f64) -> Option<NaiveDateTime> {
    if !serial.is_finite() || serial.abs() > 3_000_000.0 {
        return None;
    }
    let ms = (serial * 86_400_000.0).round() as i64;
    let unix_ms = ms - SERIAL_UNIX_OFFSET_DAYS * 86_400_000;
    DateTime::from_timestamp_millis(unix_ms).map(|d| d.naive_utc())
}

pub fn serial_to_date(serial: f64) -> Option<NaiveDate> {
    let base = NaiveDate::from_ymd_opt(1899, 12, 30)?;
    if !serial.is_finite() || serial.abs() > 3_000_000.0 {
        return None;
    }
    base.checked_add_signed(TimeDelta::days(serial.floor() as i64))
}

fn serial_to_time(serial: f64) -> Option<NaiveTime> {
    let ms = (serial.rem_euclid(1.0) * 86_400_000.0).round() as i64 % 86_400_000;
    NaiveTime::from_num_seconds_from_midnight_opt((ms / 1000) as u32, ((ms % 1000) * 1_000_000) as u32)
}

fn parse_timestamp_text(s: &str) -> Option<DateTime<chrono::Utc>> {
    let s = s.trim();
    // Only texts carrying an explicit offset or Z are timestamps; a bare date-time stays text
    // (Sheets would have parsed it into a date-time cell if it meant one).
    if s.len() < 20 || !(s.ends_with('Z') || s.ends_with('z') || s[19..].contains(['+', '-'])) {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc))
}

fn parse_datetime_text(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, f) {
            return Some(d);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn parse_time_text(s: &str) -> Option<NaiveTime> {
    let s = s.trim();
    NaiveTime::parse_from_str(s, "%H:%M:%S%.f").or_else(|_| NaiveTime::parse_from_str(s, "%H:%M")).ok()
}

fn is_decimal_text(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !int.is_empty()
        && int.len() <= 29
        && frac.len() <= 9
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Shortest text of a number: `42`, `3.5`, never `42.0`.
pub fn format_number(f: f64, out: &mut String) {
    if f.fract() == 0.0 && f.abs() < 1e17 {
        let _ = write!(out, "{}", f as i64);
    } else {
        let _ = write!(out, "{f}");
    }
}

fn format_datetime(d: NaiveDateTime, out: &mut String) {
    let _ = if d.and_utc().timestamp_subsec_millis() == 0 {
        write!(out, "{}", d.format("%Y-%m-%d %H:%M:%S"))
    } else {
        write!(out, "{}", d.format("%Y-%m-%d %H:%M:%S%.3f"))
    };
}

fn format_time(t: NaiveTime, out: &mut String) {
    let _ = if chrono::Timelike::nanosecond(&t) == 0 {
        write!(out, "{}", t.format("%H:%M:%S"))
    } else {
        write!(out, "{}", t.format("%H:%M:%S%.3f"))
    };
}

/// Writes `s` as a JSON string literal.
pub fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Why a cell does not fit its column, in the words of the error message.
#[derive(Debug, Clone, PartialEq)]
pub struct Misfit(pub String);

fn describe(cell: &Cell) -> String {
    match cell {
        Cell::Empty => "empty".into(),
        Cell::Bool(b) => {
            if *b {
                "TRUE".into()
            } else {
                "FALSE".into()
            }
        }
        Cell::Num(f) => {
            let mut s = String::new();
            format_number(*f, &mut s);
            s
        }
        Cell::Text(s) => {
            let short: String = s.chars().take(60).collect();
            format!("{short:?}")
        }
        Cell::Error(e) => e.clone(),
    }
}

/// Appends the JSON value of `cell` for a column of type `ty` (whose sheet number format is
/// `fmt`) to `out`. Returns Ok(false) for NULL (nothing written), Err when the value does not fit.
pub fn write_value(out: &mut String, cell: &Cell, ty: ColumnType, fmt: NumFmt) -> Result<bool, Misfit> {
    let misfit = || Misfit(format!("{} is not {}", describe(cell), ty));
    match cell {
        Cell::Empty | Cell::Error(_) => return Ok(false),
        Cell::Text(s) if s.trim().is_empty() => return Ok(false),
        _ => {}
    }
    match ty {
        ColumnType::String => {
            let mut tmp = String::new();
            let text: &str = match cell {
                Cell::Text(s) => s,
                Cell::Bool(true) => "TRUE",
                Cell::Bool(false) => "FALSE",
                Cell::Num(f) => {
                    match fmt {
                        NumFmt::Date => match serial_to_date(*f) {
                            Some(d) => {
                                let _ = write!(tmp, "{d}");
                            }
                            None => format_number(*f, &mut tmp),
                        },
                        NumFmt::DateTime => match serial_to_datetime(*f) {
                            Some(d) => format_datetime(d, &mut tmp),
                            None => format_number(*f, &mut tmp),
                        },
                        NumFmt::Time => match serial_to_time(*f) {
                            Some(t) => format_time(t, &mut tmp),
                            None => format_number(*f, &mut tmp),
                        },
                        _ => format_number(*f, &mut tmp),
                    }
                    &tmp
                }
                Cell::Empty | Cell::Error(_) => unreachable!("handled above"),
            };
            write_json_str(out, text);
        }
        ColumnType::Int64 => match cell {
            Cell::Num(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                let _ = write!(out, "{}", *f as i64);
            }
            Cell::Text(s) => {
                let v: i64 = s.trim().replace(',', "").parse().map_err(|_| misfit())?;
                let _ = write!(out, "{v}");
            }
            _ => return Err(misfit()),
        },
        ColumnType::Float64 => match cell {
            Cell::Num(f) => format_number(*f, out),
            Cell::Text(s) => {
                let v: f64 = s.trim().replace(',', "").parse().map_err(|_| misfit())?;
                if !v.is_finite() {
                    return Err(misfit());
                }
                format_number(v, out);
            }
            _ => return Err(misfit()),
        },
        ColumnType::Numeric => {
            let mut tmp = String::new();
            match cell {
                Cell::Num(f) if f.abs() < 1e29 => {
                    // Sheets holds doubles; 9 decimals is NUMERIC's scale.
                    let _ = write!(tmp, "{}", (f * 1e9).round() / 1e9);
                }
                Cell::Text(s) if is_decimal_text(s.trim().replace(',', "").as_str()) => {
                    tmp = s.trim().replace(',', "");
                }
                _ => return Err(misfit()),
            }
            write_json_str(out, &tmp);
        }
        ColumnType::Bool => match cell {
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Cell::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "1" => out.push_str("true"),
                "false" | "no" | "n" | "0" => out.push_str("false"),
                _ => return Err(misfit()),
            },
            Cell::Num(f) if *f == 1.0 || *f == 0.0 => out.push_str(if *f == 1.0 { "true" } else { "false" }),
            _ => return Err(misfit()),
        },
        ColumnType::Date => {
            let d = match cell {
                Cell::Num(f) => serial_to_date(*f),
                Cell::Text(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok(),
                _ => None,
            }
            .ok_or_else(misfit)?;
            let _ = write!(out, "\"{d}\"");
        }
        ColumnType::Datetime => {
            let d = match cell {
                Cell::Num(f) => serial_to_datetime(*f),
                Cell::Text(s) => parse_datetime_text(s),
                _ => None,
            }
            .ok_or_else(misfit)?;
            out.push('"');
            format_datetime(d, out);
            out.push('"');
        }
        ColumnType::Time => {
            let t = match cell {
                Cell::Num(f) if (0.0..1.0).contains(f) || fmt == NumFmt::Time => serial_to_time(*f),
                Cell::Text(s) => parse_time_text(s),
                _ => None,
            }
            .ok_or_else(misfit)?;
            out.push('"');
            format_time(t, out);
            out.push('"');
        }
        ColumnType::Timestamp => {
            let ts = match cell {
                Cell::Num(f) => serial_to_datetime(*f).map(|d| d.and_utc()),
                Cell::Text(s) => parse_timestamp_text(s).or_else(|| parse_datetime_text(s).map(|d| d.and_utc())),
                _ => None,
            }
            .ok_or_else(misfit)?;
            let _ = write!(out, "\"{}\"", ts.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(cell: Cell, ty: ColumnType, fmt: NumFmt) -> Result<String, Misfit> {
        let mut s = String::new();
        write_value(&mut s, &cell, ty, fmt).map(|_| s)
    }

    #[test]
    fn headers_become_valid_unique_names() {
        let raw: Vec<String> =
            ["Order ID", "order id", "", "2024 sales", "Prénom", "_TABLE_x", "a  b--c", "x".repeat(400).as_str()]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let n = normalize_headers(&raw, 0);
        assert_eq!(n[0], "Order_ID");
        assert_eq!(n[1], "order_id_2");
        assert_eq!(n[2], "C");
        assert_eq!(n[3], "_2024_sales");
        assert_eq!(n[4], "Prenom");
        assert_eq!(n[5], "c_TABLE_x");
        assert_eq!(n[6], "a_b_c");
        assert_eq!(n[7].len(), 300);
        for name in &n {
            crate::config::validate_column_name(name).unwrap();
        }
    }

    #[test]
    fn inference_uses_every_row_and_widens() {
        let mut s = ColumnStats::default();
        s.observe(&Cell::Num(1.0), 2);
        assert_eq!(s.infer(NumFmt::Plain), ColumnType::Int64);
        s.observe(&Cell::Num(2.5), 3);
        assert_eq!(s.infer(NumFmt::Plain), ColumnType::Float64);
        s.observe(&Cell::Text("n/a".into()), 4);
        assert_eq!(s.infer(NumFmt::Plain), ColumnType::String);
        let mut d = ColumnStats::default();
        d.observe(&Cell::Num(45296.0), 2);
        assert_eq!(d.infer(NumFmt::Date), ColumnType::Date);
        assert_eq!(d.infer(NumFmt::DateTime), ColumnType::Datetime);
        assert_eq!(d.infer(NumFmt::Currency), ColumnType::Numeric);
        let mut t = ColumnStats::default();
        t.observe(&Cell::Text("2024-01-05T10:00:00Z".into()), 2);
        assert_eq!(t.infer(NumFmt::Plain), ColumnType::Timestamp);
        let mut b = ColumnStats::default();
        b.observe(&Cell::Bool(true), 2);
        b.observe(&Cell::Error("#N/A".into()), 3);
        assert_eq!(b.infer(NumFmt::Plain), ColumnType::Bool);
        assert_eq!(ColumnStats::default().infer(NumFmt::Plain), ColumnType::String);
    }

    #[test]
    fn values_convert_per_type() {
        assert_eq!(val(Cell::Num(45296.0), ColumnType::Date, NumFmt::Date).unwrap(), "\"2024-01-05\"");
        assert_eq!(val(Cell::Num(45296.5), ColumnType::Datetime, NumFmt::DateTime).unwrap(), "\"2024-01-05 12:00:00\"");
        assert_eq!(val(Cell::Num(0.75), ColumnType::Time, NumFmt::Time).unwrap(), "\"18:00:00\"");
        assert_eq!(val(Cell::Num(42.0), ColumnType::String, NumFmt::Plain).unwrap(), "\"42\"");
        assert_eq!(val(Cell::Num(45296.0), ColumnType::String, NumFmt::Date).unwrap(), "\"2024-01-05\"");
        assert_eq!(
            val(Cell::Text("say \"hi\"\n東京".into()), ColumnType::String, NumFmt::Plain).unwrap(),
            "\"say \\\"hi\\\"\\n東京\""
        );
        assert_eq!(val(Cell::Num(1234.5), ColumnType::Numeric, NumFmt::Currency).unwrap(), "\"1234.5\"");
        assert_eq!(
            val(Cell::Text("2024-01-05T10:00:00+02:00".into()), ColumnType::Timestamp, NumFmt::Plain).unwrap(),
            "\"2024-01-05T08:00:00.000000Z\""
        );
        assert_eq!(val(Cell::Text(" 17 ".into()), ColumnType::Int64, NumFmt::Plain).unwrap(), "17");
        assert_eq!(
            val(Cell::Text("abc".into()), ColumnType::Int64, NumFmt::Plain).unwrap_err().0,
            "\"abc\" is not INT64"
        );
        assert_eq!(val(Cell::Num(1.5), ColumnType::Int64, NumFmt::Plain).unwrap_err().0, "1.5 is not INT64");
        assert_eq!(val(Cell::Empty, ColumnType::Int64, NumFmt::Plain).unwrap(), "");
    }

    #[test]
    fn serial_dates() {
        assert_eq!(serial_to_date(45296.0), NaiveDate::from_ymd_opt(2024, 1, 5));
        assert_eq!(serial_to_date(1.0), NaiveDate::from_ymd_opt(1899, 12, 31));
    }
}
