//! Source cells → the text Postgres' `COPY … FROM STDIN` reads. Every value is checked against
//! its column's type family before anything is sent, so a bad cell is reported by row and cell
//! (and, in `batched` mode, skipped) instead of failing a whole COPY with a message about line N.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

/// How values of one target column are checked and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Family {
    Text {
        max_chars: Option<usize>,
    },
    Int {
        min: i64,
        max: i64,
    },
    Numeric,
    Float,
    Bool,
    Date,
    Timestamp,
    Timestamptz,
    Uuid,
    Json,
    /// Any other type (enums, arrays, domains over exotic types): passed as text, Postgres checks.
    Other,
}

impl Family {
    /// From a declared mapping type (`spec.target.columns.*.type`).
    pub fn from_declared(t: &str) -> Option<Family> {
        Some(match t {
            "text" | "varchar" => Family::Text { max_chars: None },
            "smallint" => Family::Int { min: i16::MIN as i64, max: i16::MAX as i64 },
            "integer" | "int" => Family::Int { min: i32::MIN as i64, max: i32::MAX as i64 },
            "bigint" => Family::Int { min: i64::MIN, max: i64::MAX },
            "numeric" | "decimal" => Family::Numeric,
            "real" | "double precision" | "float" => Family::Float,
            "boolean" | "bool" => Family::Bool,
            "date" => Family::Date,
            "timestamp" => Family::Timestamp,
            "timestamptz" => Family::Timestamptz,
            "uuid" => Family::Uuid,
            "json" | "jsonb" => Family::Json,
            _ => return None,
        })
    }

    /// From the target column's base type name (`pg_type.typname`) and its type modifier.
    pub fn from_pg(typname: &str, typmod: i32) -> Family {
        match typname {
            "text" | "citext" | "name" => Family::Text { max_chars: None },
            "varchar" | "bpchar" => Family::Text { max_chars: (typmod >= 4).then(|| (typmod - 4) as usize) },
            "int2" => Family::Int { min: i16::MIN as i64, max: i16::MAX as i64 },
            "int4" => Family::Int { min: i32::MIN as i64, max: i32::MAX as i64 },
            "int8" => Family::Int { min: i64::MIN, max: i64::MAX },
            "numeric" => Family::Numeric,
            "float4" | "float8" => Family::Float,
            "bool" => Family::Bool,
            "date" => Family::Date,
            "timestamp" => Family::Timestamp,
            "timestamptz" => Family::Timestamptz,
            "uuid" => Family::Uuid,
            "json" | "jsonb" => Family::Json,
            _ => Family::Other,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Family::Text { .. } => "text",
            Family::Int { .. } => "an integer",
            Family::Numeric => "a number",
            Family::Float => "a number",
            Family::Bool => "a boolean",
            Family::Date => "a date (YYYY-MM-DD)",
            Family::Timestamp => "a timestamp (YYYY-MM-DD HH:MM:SS)",
            Family::Timestamptz => "a timestamp (YYYY-MM-DD HH:MM:SS[+HH:MM])",
            Family::Uuid => "a UUID",
            Family::Json => "JSON",
            Family::Other => "a value",
        }
    }
}

/// One source cell as read: CSV fields are text; Sheets cells come typed (UNFORMATTED_VALUE).
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    Empty,
    Str(&'a str),
    Num(f64),
    Bool(bool),
    /// A Sheets formula error (`#N/A`, `#REF!`, …).
    FormulaError(&'a str),
}

impl<'a> Raw<'a> {
    pub fn from_json(v: &'a serde_json::Value) -> Raw<'a> {
        match v {
            serde_json::Value::Null => Raw::Empty,
            serde_json::Value::Bool(b) => Raw::Bool(*b),
            serde_json::Value::Number(n) => n.as_f64().map_or(Raw::Empty, Raw::Num),
            serde_json::Value::String(s) if s.is_empty() => Raw::Empty,
            serde_json::Value::String(s) if crate::schema::is_sheet_error(s) => Raw::FormulaError(s),
            serde_json::Value::String(s) => Raw::Str(s),
            _ => Raw::Empty,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Raw::Empty => true,
            Raw::Str(s) => s.trim().is_empty(),
            _ => false,
        }
    }

    /// The cell as text, for messages and the `key` of a rejected row.
    pub fn display(&self) -> Option<String> {
        match self {
            Raw::Empty => None,
            Raw::Str(s) | Raw::FormulaError(s) => Some((*s).to_string()),
            Raw::Num(f) => {
                let mut s = String::new();
                crate::schema::format_number(*f, &mut s);
                Some(s)
            }
            Raw::Bool(b) => Some(if *b { "TRUE" } else { "FALSE" }.to_string()),
        }
    }
}

/// `\N`: NULL in COPY's text format.
pub fn put_null(out: &mut BytesMut) {
    out.put_slice(b"\\N");
}

/// Writes `s` escaped for COPY's text format (backslash, tab, newline, carriage return).
pub fn put_text(out: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'\\' || b == b'\t' || b == b'\n' || b == b'\r') {
        out.put_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.put_slice(b"\\\\"),
            b'\t' => out.put_slice(b"\\t"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            _ => out.put_u8(b),
        }
    }
}

/// Writes one cell as `family` requires, or says why it does not fit. On error, `out` may hold
/// part of the value: the caller truncates back to the start of the row.
pub fn put_value(out: &mut BytesMut, raw: Raw<'_>, family: &Family) -> Result<(), String> {
    match raw {
        Raw::Empty => {
            put_null(out);
            Ok(())
        }
        Raw::FormulaError(e) => Err(format!("formula error {e}")),
        Raw::Bool(b) => match family {
            Family::Bool => {
                out.put_u8(if b { b't' } else { b'f' });
                Ok(())
            }
            Family::Text { .. } | Family::Other => {
                out.put_slice(if b { b"TRUE" } else { b"FALSE" });
                Ok(())
            }
            Family::Json => {
                out.put_slice(if b { b"true" } else { b"false" });
                Ok(())
            }
            f => Err(format!("{} is not {}", if b { "TRUE" } else { "FALSE" }, f.describe())),
        },
        Raw::Num(n) => put_number(out, n, family),
        Raw::Str(s) => put_str(out, s, family),
    }
}

fn put_number(out: &mut BytesMut, n: f64, family: &Family) -> Result<(), String> {
    let mut text = String::new();
    crate::schema::format_number(n, &mut text);
    match family {
        Family::Int { min, max } => {
            if n.fract() != 0.0 || !n.is_finite() {
                return Err(format!("{text} is not an integer"));
            }
            if n < *min as f64 || n > *max as f64 {
                return Err(format!("{text} is out of range ({min} to {max})"));
            }
            out.put_slice(text.as_bytes());
            Ok(())
        }
        Family::Numeric | Family::Float | Family::Json | Family::Other => {
            out.put_slice(text.as_bytes());
            Ok(())
        }
        Family::Text { max_chars } => {
            check_len(&text, *max_chars)?;
            out.put_slice(text.as_bytes());
            Ok(())
        }
        Family::Bool if n == 0.0 || n == 1.0 => {
            out.put_u8(if n == 1.0 { b't' } else { b'f' });
            Ok(())
        }
        Family::Date => {
            let d = crate::schema::serial_to_date(n).ok_or_else(|| format!("{text} is not a date"))?;
            out.put_slice(d.format("%Y-%m-%d").to_string().as_bytes());
            Ok(())
        }
        Family::Timestamp | Family::Timestamptz => {
            let d = crate::schema::serial_to_datetime(n).ok_or_else(|| format!("{text} is not a date-time"))?;
            out.put_slice(d.format("%Y-%m-%d %H:%M:%S%.f").to_string().as_bytes());
            Ok(())
        }
        f => Err(format!("{text} is not {}", f.describe())),
    }
}

fn check_len(s: &str, max: Option<usize>) -> Result<(), String> {
    match max {
        Some(m) if s.len() > m && s.chars().count() > m => Err(format!("is longer than {m} characters")),
        _ => Ok(()),
    }
}

fn quoted(s: &str) -> String {
    let mut q: String = s.chars().take(60).collect();
    if q.len() < s.len() {
        q.push('…');
    }
    format!("{q:?}")
}

fn put_str(out: &mut BytesMut, s: &str, family: &Family) -> Result<(), String> {
    if s.as_bytes().contains(&0) {
        return Err("contains a NUL character, which Postgres cannot store".into());
    }
    if let Family::Text { max_chars } = family {
        check_len(s, *max_chars).map_err(|e| format!("{} {e}", quoted(s)))?;
        put_text(out, s);
        return Ok(());
    }
    if let Family::Other = family {
        put_text(out, s);
        return Ok(());
    }
    let t = s.trim();
    if t.is_empty() {
        put_null(out);
        return Ok(());
    }
    let bad = || format!("{} is not {}", quoted(s), family.describe());
    match family {
        Family::Int { min, max } => {
            let v = match t.parse::<i64>() {
                Ok(v) => v,
                Err(_) => match t.parse::<f64>() {
                    Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
                    _ => return Err(bad()),
                },
            };
            if v < *min || v > *max {
                return Err(format!("{} is out of range ({min} to {max})", quoted(s)));
            }
            out.put_slice(v.to_string().as_bytes());
        }
        Family::Numeric => {
            if !is_numeric_text(t) {
                return Err(bad());
            }
            out.put_slice(t.as_bytes());
        }
        Family::Float => {
            if t.parse::<f64>().is_err() {
                return Err(bad());
            }
            out.put_slice(t.as_bytes());
        }
        Family::Bool => {
            let b = match t.to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "on" => true,
                "false" | "f" | "no" | "n" | "0" | "off" => false,
                _ => return Err(bad()),
            };
            out.put_u8(if b { b't' } else { b'f' });
        }
        Family::Date => {
            let d = parse_date(t).ok_or_else(bad)?;
            out.put_slice(d.format("%Y-%m-%d").to_string().as_bytes());
        }
        Family::Timestamp => {
            let ts = parse_timestamp(t).ok_or_else(bad)?;
            let naive = match ts {
                Ts::Naive(n) => n,
                Ts::Zoned(z) => z.naive_utc(),
            };
            put_naive(out, naive);
        }
        Family::Timestamptz => match parse_timestamp(t).ok_or_else(bad)? {
            // The session runs with TimeZone=UTC: a value without an offset is UTC.
            Ts::Naive(n) => put_naive(out, n),
            Ts::Zoned(z) => {
                put_naive(out, z.naive_utc());
                out.put_slice(b"+00");
            }
        },
        Family::Uuid => {
            if !is_uuid(t) {
                return Err(bad());
            }
            out.put_slice(t.as_bytes());
        }
        Family::Json => {
            if serde_json::from_str::<serde::de::IgnoredAny>(t).is_err() {
                return Err(bad());
            }
            put_text(out, t);
        }
        Family::Text { .. } | Family::Other => unreachable!("handled above"),
    }
    Ok(())
}

fn put_naive(out: &mut BytesMut, n: NaiveDateTime) {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(32);
    let _ = write!(s, "{}", n.format("%Y-%m-%d %H:%M:%S%.f"));
    out.put_slice(s.as_bytes());
}

/// `[+-]digits[.digits][e[+-]digits]`, or NaN / Infinity.
pub fn is_numeric_text(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let rest = &s[i..];
    if rest.eq_ignore_ascii_case("nan") || rest.eq_ignore_ascii_case("infinity") {
        return true;
    }
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - f;
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

fn is_uuid(s: &str) -> bool {
    let s = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(s);
    let b = s.as_bytes();
    match b.len() {
        32 => b.iter().all(u8::is_ascii_hexdigit),
        36 => b.iter().enumerate().all(
            |(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    *c == b'-'
                } else {
                    c.is_ascii_hexdigit()
                }
            },
        ),
        _ => false,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |a, d| a * 10 + (d - b'0') as u32))
}

/// `YYYY-MM-DD` (or `YYYY/MM/DD`).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || !(b[4] == b'-' && b[7] == b'-' || b[4] == b'/' && b[7] == b'/') {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(&b[0..4])? as i32, digits(&b[5..7])?, digits(&b[8..10])?)
}

enum Ts {
    Naive(NaiveDateTime),
    Zoned(DateTime<chrono::FixedOffset>),
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.frac]]][Z|±HH[:MM]]`.
fn parse_timestamp(s: &str) -> Option<Ts> {
    let b = s.as_bytes();
    if b.len() < 10 {
        return None;
    }
    let date = parse_date(&s[..10])?;
    if b.len() == 10 {
        return Some(Ts::Naive(date.and_hms_opt(0, 0, 0)?));
    }
    if b[10] != b' ' && b[10] != b'T' && b[10] != b't' {
        return None;
    }
    let rest = &s[11..];
    // Split off an offset: Z, or +/- after the time.
    let (time_part, offset) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, Some(0i32))
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (t, o) = rest.split_at(pos);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let o = o[1..].replace(':', "");
        let secs = match o.len() {
            2 => digits(o.as_bytes())? * 3600,
            4 => digits(&o.as_bytes()[..2])? * 3600 + digits(&o.as_bytes()[2..])? * 60,
            _ => return None,
        };
        (t.trim_end(), Some(sign * secs as i32))
    } else {
        (rest, None)
    };
    let tb = time_part.as_bytes();
    if tb.len() < 5 || tb[2] != b':' {
        return None;
    }
    let (h, m) = (digits(&tb[0..2])?, digits(&tb[3..5])?);
    let (sec, nanos) = if tb.len() == 5 {
        (0, 0)
    } else {
        if tb[5] != b':' || tb.len() < 8 {
            return None;
        }
        let sec = digits(&tb[6..8])?;
        let nanos = if tb.len() > 8 {
            if tb[8] != b'.' && tb[8] != b',' {
                return None;
            }
            let frac = &tb[9..];
            if frac.is_empty() || frac.len() > 9 {
                return None;
            }
            digits(frac)? * 10u32.pow(9 - frac.len() as u32)
        } else {
            0
        };
        (sec, nanos)
    };
    let naive = date.and_time(NaiveTime::from_hms_nano_opt(h, m, sec, nanos)?);
    match offset {
        None => Some(Ts::Naive(naive)),
        Some(o) => {
            let tz = chrono::FixedOffset::east_opt(o)?;
            Some(Ts::Zoned(naive.and_local_timezone(tz).single()?))
        }
    }
}

/// Splits one COPY text line back into its fields (`None` for `\N`), undoing the escapes.
pub fn split_copy_line(line: &[u8]) -> Vec<Option<String>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.split(|&b| b == b'\t')
        .map(|f| {
            if f == b"\\N" {
                return None;
            }
            let mut out = Vec::with_capacity(f.len());
            let mut i = 0;
            while i < f.len() {
                if f[i] == b'\\' && i + 1 < f.len() {
                    out.push(match f[i + 1] {
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'r' => b'\r',
                        other => other,
                    });
                    i += 2;
                } else {
                    out.push(f[i]);
                    i += 1;
                }
            }
            Some(String::from_utf8_lossy(&out).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(raw: Raw<'_>, f: &Family) -> Result<String, String> {
        let mut b = BytesMut::new();
        put_value(&mut b, raw, f).map(|()| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn values_are_checked_and_normalised() {
        let int4 = Family::from_pg("int4", -1);
        assert_eq!(put(Raw::Str(" 42 "), &int4).unwrap(), "42");
        assert_eq!(put(Raw::Num(7.0), &int4).unwrap(), "7");
        assert!(put(Raw::Str("abc"), &int4).unwrap_err().contains("\"abc\" is not an integer"));
        assert!(put(Raw::Str("3000000000"), &int4).unwrap_err().contains("out of range"));
        assert!(put(Raw::Num(1.5), &int4).is_err());
        assert_eq!(put(Raw::Str(""), &int4).unwrap(), "\\N");
        assert_eq!(put(Raw::Str("Yes"), &Family::Bool).unwrap(), "t");
        assert_eq!(put(Raw::Str("2024-02-29"), &Family::Date).unwrap(), "2024-02-29");
        assert!(put(Raw::Str("2023-02-29"), &Family::Date).is_err());
        assert_eq!(put(Raw::Num(45296.5), &Family::Timestamp).unwrap(), "2024-01-05 12:00:00");
        assert_eq!(put(Raw::Str("2024-01-05T10:00:00+02:00"), &Family::Timestamptz).unwrap(), "2024-01-05 08:00:00+00");
        assert_eq!(put(Raw::Str("2024-01-05 10:00:00.25"), &Family::Timestamptz).unwrap(), "2024-01-05 10:00:00.250");
        assert_eq!(put(Raw::Str("1.5e3"), &Family::Numeric).unwrap(), "1.5e3");
        assert!(put(Raw::Str("1,5"), &Family::Numeric).is_err());
        assert!(put(Raw::Str("{\"a\":"), &Family::Json).is_err());
        assert!(put(Raw::Str("abcd"), &Family::Text { max_chars: Some(3) }).unwrap_err().contains("longer than 3"));
        assert_eq!(put(Raw::Str("a\tb\\c\nd"), &Family::Text { max_chars: None }).unwrap(), "a\\tb\\\\c\\nd");
        assert!(put(Raw::FormulaError("#N/A"), &Family::Other).unwrap_err().contains("#N/A"));
        assert!(put(Raw::Str("x\0y"), &Family::Other).is_err());
        assert!(put(Raw::Str("0f8fad5b-d9cb-469f-a165-70867728950e"), &Family::Uuid).is_ok());
    }

    #[test]
    fn copy_lines_round_trip() {
        let mut b = BytesMut::new();
        put_text(&mut b, "a\tb\\c\nd");
        b.put_u8(b'\t');
        put_null(&mut b);
        b.put_u8(b'\n');
        assert_eq!(split_copy_line(&b), vec![Some("a\tb\\c\nd".to_string()), None]);
    }
}
