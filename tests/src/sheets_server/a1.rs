//! A1 notation as the Sheets API reads and writes it: parsing the ranges clients send
//! (`Sheet1`, `'My Tab'!A1:C10`, `Sheet1!A:C`, `Sheet1!A2:C`, `Sheet1!3:5`, `A1:B2`) and
//! normalising the ranges the API echoes back (`'My Tab'!A1:C10`).

use std::borrow::Cow;

/// Columns Google Sheets allows at most (`ZZZ`); larger references do not parse.
const MAX_COLUMNS: u32 = 18_278;
/// Rows beyond this do not parse (Sheets caps a spreadsheet at 10 million cells).
const MAX_ROWS: u32 = 10_000_000;

/// A parsed A1 range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A1Range {
    /// The tab named before `!` (unquoted); `None` when the range names no tab. A bare name
    /// that is not a cell reference (`Sheet1`) is a tab with `cells == None`.
    pub sheet: Option<String>,
    /// The cells; `None` means the whole tab.
    pub cells: Option<CellSpan>,
}

/// A rectangle of cells, 0-based, ends exclusive; an open end runs to the end of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellSpan {
    pub start_row: u32,
    pub start_col: u32,
    pub end_row: Option<u32>,
    pub end_col: Option<u32>,
}

/// A span with both ends known, after clipping to a tab's grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridSpan {
    pub start_row: u32,
    pub start_col: u32,
    pub end_row: u32,
    pub end_col: u32,
}

impl CellSpan {
    /// The whole grid.
    pub const ALL: CellSpan = CellSpan { start_row: 0, start_col: 0, end_row: None, end_col: None };

    /// Clips to a grid of `rows` × `cols`; `None` when the span starts outside it.
    pub fn clip(&self, rows: u32, cols: u32) -> Option<GridSpan> {
        if self.start_row >= rows || self.start_col >= cols {
            return None;
        }
        Some(GridSpan {
            start_row: self.start_row,
            start_col: self.start_col,
            end_row: self.end_row.map_or(rows, |e| e.min(rows)),
            end_col: self.end_col.map_or(cols, |e| e.min(cols)),
        })
    }

    /// The span in A1 notation as requested (open ends are left open: `A2:C`).
    pub fn to_a1(&self) -> String {
        let (r0, c0) = (self.start_row + 1, column_letters(self.start_col));
        match (self.end_row, self.end_col) {
            (Some(er), Some(ec)) if er == self.start_row + 1 && ec == self.start_col + 1 => {
                format!("{c0}{r0}")
            }
            (Some(er), Some(ec)) => format!("{c0}{r0}:{}{er}", column_letters(ec - 1)),
            (None, Some(ec)) => format!("{c0}{r0}:{}", column_letters(ec - 1)),
            (Some(er), None) => format!("{r0}:{er}"),
            (None, None) => format!("{c0}{r0}:"),
        }
    }
}

impl GridSpan {
    /// `A1:C10`, or `A1` for a single cell, as the API echoes a range.
    pub fn to_a1(&self) -> String {
        CellSpan {
            start_row: self.start_row,
            start_col: self.start_col,
            end_row: Some(self.end_row),
            end_col: Some(self.end_col),
        }
        .to_a1()
    }

    pub fn rows(&self) -> std::ops::Range<usize> {
        self.start_row as usize..self.end_row as usize
    }

    pub fn cols(&self) -> std::ops::Range<usize> {
        self.start_col as usize..self.end_col as usize
    }
}

impl A1Range {
    /// Parses a range; `None` when it is not valid A1 notation.
    pub fn parse(input: &str) -> Option<Self> {
        if input.is_empty() {
            return None;
        }
        if let Some(quoted) = input.strip_prefix('\'') {
            let (name, rest) = split_quoted(quoted)?;
            let cells = match rest {
                "" => None,
                _ => Some(parse_cells(rest.strip_prefix('!')?)?),
            };
            return Some(A1Range { sheet: Some(name), cells });
        }
        if let Some(bang) = input.rfind('!') {
            let (name, cells) = (&input[..bang], &input[bang + 1..]);
            if name.is_empty() {
                return None;
            }
            let cells = match cells {
                "" => None,
                c => Some(parse_cells(c)?),
            };
            return Some(A1Range { sheet: Some(name.to_owned()), cells });
        }
        Some(match parse_cells(input) {
            Some(cells) => A1Range { sheet: None, cells: Some(cells) },
            None => A1Range { sheet: Some(input.to_owned()), cells: None },
        })
    }
}

/// Reads a quoted tab name after its opening `'` (`''` is an escaped quote) and returns the
/// name and what follows the closing quote.
fn split_quoted(s: &str) -> Option<(String, &str)> {
    let mut name = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, ch)) = chars.next() {
        if ch == '\'' {
            if chars.peek().map(|&(_, c)| c) == Some('\'') {
                chars.next();
                name.push('\'');
            } else {
                return (!name.is_empty()).then(|| (name, &s[i + 1..]));
            }
        } else {
            name.push(ch);
        }
    }
    None
}

/// One end of a range: column and/or row, 0-based.
#[derive(Debug, Clone, Copy)]
struct Corner {
    col: Option<u32>,
    row: Option<u32>,
}

fn parse_corner(s: &str) -> Option<Corner> {
    let s = s.strip_prefix('$').unwrap_or(s);
    let letters = s.bytes().take_while(u8::is_ascii_alphabetic).count();
    let (col_part, rest) = s.split_at(letters);
    let row_part = match letters {
        0 => rest,
        _ => rest.strip_prefix('$').unwrap_or(rest),
    };
    if row_part.is_empty() && !rest.is_empty() {
        return None; // `A$`
    }
    let col = match col_part {
        "" => None,
        c => Some(column_index(c)?),
    };
    let row = match row_part {
        "" => None,
        r if r.bytes().all(|b| b.is_ascii_digit()) && !r.starts_with('0') => {
            let n: u32 = r.parse().ok()?;
            if n > MAX_ROWS {
                return None;
            }
            Some(n - 1)
        }
        _ => return None,
    };
    (col.is_some() || row.is_some()).then_some(Corner { col, row })
}

/// `A1`, `A1:C10`, `A:C`, `A2:C`, `3:5` (cell part only).
fn parse_cells(s: &str) -> Option<CellSpan> {
    let Some((a, b)) = s.split_once(':') else {
        let c = parse_corner(s)?;
        let (col, row) = (c.col?, c.row?);
        return Some(CellSpan { start_row: row, start_col: col, end_row: Some(row + 1), end_col: Some(col + 1) });
    };
    let (a, b) = (parse_corner(a)?, parse_corner(b)?);
    let rows_only = |c: Corner| c.col.is_none();
    if rows_only(a) != rows_only(b) {
        return None; // `3:C5`, `A1:5`
    }
    if rows_only(a) {
        let (r0, r1) = (a.row?, b.row?);
        return Some(CellSpan { start_row: r0.min(r1), start_col: 0, end_row: Some(r0.max(r1) + 1), end_col: None });
    }
    let (c0, c1) = (a.col?, b.col?);
    let (start_col, end_col) = (c0.min(c1), c0.max(c1) + 1);
    let (start_row, end_row) = match (a.row, b.row) {
        (Some(r0), Some(r1)) => (r0.min(r1), Some(r0.max(r1) + 1)),
        (Some(r0), None) => (r0, None),        // `A2:C`
        (None, Some(r1)) => (0, Some(r1 + 1)), // `A:C5`
        (None, None) => (0, None),             // `A:C`
    };
    Some(CellSpan { start_row, start_col, end_row, end_col: Some(end_col) })
}

/// `A` → 0, `Z` → 25, `AA` → 26 (case-insensitive); `None` beyond `ZZZ` or for non-letters.
pub fn column_index(letters: &str) -> Option<u32> {
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    let mut n: u32 = 0;
    for b in letters.bytes() {
        if !b.is_ascii_alphabetic() {
            return None;
        }
        n = n * 26 + u32::from(b.to_ascii_uppercase() - b'A' + 1);
    }
    (n <= MAX_COLUMNS).then(|| n - 1)
}

/// 0 → `A`, 25 → `Z`, 26 → `AA`.
pub fn column_letters(index: u32) -> String {
    let mut n = index + 1;
    let mut out = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        out.push(b'A' + rem as u8);
        n = (n - 1) / 26;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII letters")
}

/// A tab name as the API writes it in a range: bare when it is a plain identifier that cannot
/// be mistaken for a cell (`Sheet1`), otherwise quoted with `'` doubled (`'My Tab'`).
pub fn quote_sheet_name(name: &str) -> Cow<'_, str> {
    let plain = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !looks_like_cell(name);
    if plain {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("'{}'", name.replace('\'', "''")))
    }
}

/// `A1`, `xfd10`, `R1C1`: names that would read as a cell reference.
fn looks_like_cell(name: &str) -> bool {
    let r1c1 = name.len() > 1
        && name.as_bytes()[0].eq_ignore_ascii_case(&b'R')
        && name[1..].find(['c', 'C']).is_some_and(|i| {
            let (r, c) = (&name[1..1 + i], &name[2 + i..]);
            r.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_digit())
        });
    r1c1 || parse_corner(name).is_some_and(|c| c.col.is_some() && c.row.is_some())
}

/// `Sheet1!A1:C10` / `'My Tab'!A1`: a tab title and a span as the API echoes them.
pub fn format_range(sheet_title: &str, span: &GridSpan) -> String {
    format!("{}!{}", quote_sheet_name(sheet_title), span.to_a1())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(r0: u32, c0: u32, r1: Option<u32>, c1: Option<u32>) -> Option<CellSpan> {
        Some(CellSpan { start_row: r0, start_col: c0, end_row: r1, end_col: c1 })
    }

    fn parsed(sheet: Option<&str>, cells: Option<CellSpan>) -> Option<A1Range> {
        Some(A1Range { sheet: sheet.map(str::to_owned), cells })
    }

    #[test]
    fn parses_every_a1_form() {
        let cases = [
            ("Sheet1", parsed(Some("Sheet1"), None)),
            ("Sheet1!", parsed(Some("Sheet1"), None)),
            ("'My Tab'", parsed(Some("My Tab"), None)),
            ("'My Tab'!A1:C10", parsed(Some("My Tab"), span(0, 0, Some(10), Some(3)))),
            ("Sheet1!A:C", parsed(Some("Sheet1"), span(0, 0, None, Some(3)))),
            ("Sheet1!A2:C", parsed(Some("Sheet1"), span(1, 0, None, Some(3)))),
            ("Sheet1!3:5", parsed(Some("Sheet1"), span(2, 0, Some(5), None))),
            ("A1:B2", parsed(None, span(0, 0, Some(2), Some(2)))),
            ("B3", parsed(None, span(2, 1, Some(3), Some(2)))),
            ("Sheet1!$A$1:$B$2", parsed(Some("Sheet1"), span(0, 0, Some(2), Some(2)))),
            ("Sheet1!c10:a1", parsed(Some("Sheet1"), span(0, 0, Some(10), Some(3)))),
            ("Sheet1!AA1:ZZZ2", parsed(Some("Sheet1"), span(0, 26, Some(2), Some(18278)))),
            ("'Bob''s data'!A1", parsed(Some("Bob's data"), span(0, 0, Some(1), Some(1)))),
            ("'a!b'!B2:B", parsed(Some("a!b"), span(1, 1, None, Some(2)))),
            ("My Tab!A1:B2", parsed(Some("My Tab"), span(0, 0, Some(2), Some(2)))),
            ("東京!A1", parsed(Some("東京"), span(0, 0, Some(1), Some(1)))),
            ("Orders", parsed(Some("Orders"), None)),
        ];
        for (input, want) in cases {
            assert_eq!(A1Range::parse(input), want, "range {input:?}");
        }
    }

    #[test]
    fn rejects_malformed_ranges() {
        for bad in [
            "",
            "Sheet1!A0",
            "Sheet1!1:A",
            "Sheet1!A1:5",
            "'unterminated",
            "'x'A1",
            "!A1",
            "Sheet1!A1:B2:C3",
            "Sheet1!AAAA1",
            "Sheet1!A01",
            "''!A1",
            "Sheet1!A",
        ] {
            assert_eq!(A1Range::parse(bad), None, "range {bad:?}");
        }
    }

    #[test]
    fn clips_to_the_grid_and_normalises() {
        let whole = CellSpan::ALL.clip(1000, 26).unwrap();
        assert_eq!(format_range("Sheet1", &whole), "Sheet1!A1:Z1000");
        let cols = A1Range::parse("Sheet1!A2:C").unwrap().cells.unwrap();
        assert_eq!(format_range("My Tab", &cols.clip(1000, 26).unwrap()), "'My Tab'!A2:C1000");
        let big = A1Range::parse("A1:AZ5000").unwrap().cells.unwrap();
        assert_eq!(big.clip(1000, 26).unwrap().to_a1(), "A1:Z1000");
        let rows = A1Range::parse("3:5").unwrap().cells.unwrap();
        assert_eq!(rows.clip(1000, 26).unwrap().to_a1(), "A3:Z5");
        let one = A1Range::parse("B2:B2").unwrap().cells.unwrap();
        assert_eq!(one.clip(1000, 26).unwrap().to_a1(), "B2");
        let outside = A1Range::parse("A1001:B1002").unwrap().cells.unwrap();
        assert_eq!(outside.clip(1000, 26), None);
    }

    #[test]
    fn quotes_tab_names_like_the_api() {
        assert_eq!(quote_sheet_name("Sheet1"), "Sheet1");
        assert_eq!(quote_sheet_name("raw_data"), "raw_data");
        assert_eq!(quote_sheet_name("My Tab"), "'My Tab'");
        assert_eq!(quote_sheet_name("Bob's"), "'Bob''s'");
        assert_eq!(quote_sheet_name("A1"), "'A1'");
        assert_eq!(quote_sheet_name("R1C1"), "'R1C1'");
        assert_eq!(quote_sheet_name("2024"), "'2024'");
        assert_eq!(quote_sheet_name("東京"), "'東京'");
    }

    #[test]
    fn converts_column_letters() {
        for (i, s) in [(0, "A"), (25, "Z"), (26, "AA"), (701, "ZZ"), (702, "AAA"), (18277, "ZZZ")] {
            assert_eq!(column_letters(i), s);
            assert_eq!(column_index(s), Some(i));
        }
        assert_eq!(column_index("aB"), Some(27));
        assert_eq!(column_index("AAAA"), None);
    }
}
