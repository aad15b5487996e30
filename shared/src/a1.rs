//! A1 notation: parsing the configured range (`Sheet1!A2:F`, `'My tab'!B:H`, `3:500`) and
//! formatting the ranges and cell references the reader and error messages use.

/// A parsed A1 range. Columns are 0-based, rows 1-based; `None` means open-ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct A1Range {
    pub tab: Option<String>,
    pub start_col: Option<u32>,
    pub start_row: Option<u32>,
    pub end_col: Option<u32>,
    pub end_row: Option<u32>,
}

impl A1Range {
    pub fn parse(s: &str) -> Result<A1Range, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("range is empty".into());
        }
        let (tab, cells) = split_tab(s)?;
        let mut r = A1Range { tab, ..A1Range::default() };
        let Some(cells) = cells else { return Ok(r) };
        let (a, b) = match cells.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (cells, None),
        };
        let (c0, r0) = parse_cell(a).ok_or_else(|| format!("{s:?} is not an A1 range (bad start {a:?})"))?;
        r.start_col = c0;
        r.start_row = r0;
        match b {
            Some(b) => {
                let (c1, r1) = parse_cell(b).ok_or_else(|| format!("{s:?} is not an A1 range (bad end {b:?})"))?;
                r.end_col = c1;
                r.end_row = r1;
            }
            None => {
                r.end_col = c0;
                r.end_row = r0;
            }
        }
        if let (Some(a), Some(b)) = (r.start_col, r.end_col) {
            if b < a {
                return Err(format!("{s:?}: end column is before start column"));
            }
        }
        if let (Some(a), Some(b)) = (r.start_row, r.end_row) {
            if b < a {
                return Err(format!("{s:?}: end row is before start row"));
            }
        }
        Ok(r)
    }
}

/// Splits `Tab!A1:B2` / `'My ''tab'''!A1` / `A1:B2` / `Tab` into tab and cell part.
fn split_tab(s: &str) -> Result<(Option<String>, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('\'') {
        // Quoted tab name; '' is an escaped quote.
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, c)| *c) == Some('\'') {
                    chars.next();
                    name.push('\'');
                    continue;
                }
                let after = &rest[i + 1..];
                return match after.strip_prefix('!') {
                    Some(cells) if !cells.is_empty() => Ok((Some(name), Some(cells))),
                    Some(_) => Err(format!("{s:?}: nothing after '!'")),
                    None if after.is_empty() => Ok((Some(name), None)),
                    None => Err(format!("{s:?}: expected '!' after the quoted tab name")),
                };
            }
            name.push(c);
        }
        return Err(format!("{s:?}: unterminated quoted tab name"));
    }
    match s.rsplit_once('!') {
        Some((tab, cells)) if !tab.is_empty() && !cells.is_empty() => Ok((Some(tab.to_string()), Some(cells))),
        Some(_) => Err(format!("{s:?} is not an A1 range")),
        None if looks_like_cells(s) => Ok((None, Some(s))),
        None => Ok((Some(s.to_string()), None)),
    }
}

fn looks_like_cells(s: &str) -> bool {
    s.split(':').all(|p| parse_cell(p).is_some())
}

/// `B17` → (Some(1), Some(17)); `B` → (Some(1), None); `17` → (None, Some(17)).
fn parse_cell(s: &str) -> Option<(Option<u32>, Option<u32>)> {
    let s = s.trim();
    let letters: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let digits = &s[letters.len()..];
    if letters.is_empty() && digits.is_empty() {
        return None;
    }
    if !digits.chars().all(|c| c.is_ascii_digit()) || letters.len() > 3 {
        return None;
    }
    let col = if letters.is_empty() { None } else { Some(column_index(&letters)?) };
    let row = if digits.is_empty() {
        None
    } else {
        let r: u32 = digits.parse().ok()?;
        if r == 0 {
            return None;
        }
        Some(r)
    };
    Some((col, row))
}

fn column_index(letters: &str) -> Option<u32> {
    let mut n: u32 = 0;
    for c in letters.chars() {
        n = n.checked_mul(26)?.checked_add(c.to_ascii_uppercase() as u32 - 'A' as u32 + 1)?;
    }
    Some(n - 1)
}

/// 0 → `A`, 25 → `Z`, 26 → `AA`.
pub fn column_letter(mut idx: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (idx % 26) as u8);
        if idx < 26 {
            break;
        }
        idx = idx / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Quotes a tab title for A1 notation: `'My ''tab'''`.
pub fn quote_tab(title: &str) -> String {
    format!("'{}'", title.replace('\'', "''"))
}

/// A rectangular range: `'Tab'!A2:T10001` (columns 0-based, rows 1-based, inclusive).
pub fn range(tab: &str, c0: u32, r0: u32, c1: u32, r1: u32) -> String {
    format!("{}!{}{}:{}{}", quote_tab(tab), column_letter(c0), r0, column_letter(c1), r1)
}

/// A cell reference for messages: `Sheet1!C17` (quoted only when needed).
pub fn cell_ref(tab: &str, col: u32, row: u32) -> String {
    let simple = tab.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let tab = if simple { tab.to_string() } else { quote_tab(tab) };
    format!("{tab}!{}{row}", column_letter(col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_write() {
        let r = A1Range::parse("Sheet1!A2:F").unwrap();
        assert_eq!(
            (r.tab.as_deref(), r.start_col, r.start_row, r.end_col, r.end_row),
            (Some("Sheet1"), Some(0), Some(2), Some(5), None)
        );
        let r = A1Range::parse("'It''s mine'!B:H").unwrap();
        assert_eq!((r.tab.as_deref(), r.start_col, r.end_col), (Some("It's mine"), Some(1), Some(7)));
        let r = A1Range::parse("3:500").unwrap();
        assert_eq!((r.tab, r.start_row, r.end_row), (None, Some(3), Some(500)));
        let r = A1Range::parse("Data").unwrap();
        assert_eq!(r.tab.as_deref(), Some("Data"));
        assert!(A1Range::parse("Sheet1!C5:A1").is_err());
        assert!(A1Range::parse("'open").is_err());
    }

    #[test]
    fn letters_and_refs() {
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(25), "Z");
        assert_eq!(column_letter(26), "AA");
        assert_eq!(column_letter(701), "ZZ");
        assert_eq!(column_letter(702), "AAA");
        assert_eq!(column_index("AAA"), Some(702));
        assert_eq!(cell_ref("Sheet1", 2, 17), "Sheet1!C17");
        assert_eq!(cell_ref("My tab", 0, 1), "'My tab'!A1");
        assert_eq!(range("Sheet1", 0, 2, 19, 10001), "'Sheet1'!A2:T10001");
    }
}
