//! Big deterministic spreadsheets for benchmarks and windowed-read tests: millions of
//! mixed-type cells built quickly from a seed, without fixture files.

use super::model::{Cell, NumberFormatType, Spreadsheet};

/// The value kinds of generated columns after the leading `id` column, in order.
pub const GENERATED_KINDS: [&str; 6] = ["int", "float", "bool", "text", "date", "datetime"];

const WORDS: [&str; 12] =
    ["alpha", "bravo", "Zoë", "東京", "delta", "echo", "foxtrot", "Straße", "golf", "hotel", "São Paulo", "india"];

/// SplitMix64: tiny, fast and good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

impl Spreadsheet {
    /// One tab `Sheet1` (gid 0) with a header row and `rows` data rows of `cols` columns.
    ///
    /// Column A is `id` (1, 2, 3, …); column `i` ≥ 1 is named `{kind}_{i}` with the kind cycling
    /// through [`GENERATED_KINDS`]: integers, floats with two decimals, booleans, short text
    /// (some non-ASCII), `DATE`s and `DATE_TIME`s between 2000 and 2024. About one cell in 50
    /// outside column A is empty. The same arguments always give the same sheet.
    pub fn generated(id: impl Into<String>, rows: usize, cols: usize, seed: u64) -> Self {
        let cols = cols.max(1);
        let mut rng = Rng(seed);
        let mut data = Vec::with_capacity(rows + 1);
        let header = (0..cols)
            .map(|c| match c {
                0 => Cell::text("id"),
                c => Cell::Text(format!("{}_{c}", GENERATED_KINDS[(c - 1) % GENERATED_KINDS.len()])),
            })
            .collect();
        data.push(header);
        for r in 0..rows {
            let mut row = Vec::with_capacity(cols);
            row.push(Cell::number((r + 1) as f64));
            for c in 1..cols {
                if rng.below(50) == 0 {
                    row.push(Cell::Empty);
                    continue;
                }
                row.push(match (c - 1) % GENERATED_KINDS.len() {
                    0 => Cell::number(rng.below(2_000_001) as f64 - 1_000_000.0),
                    1 => Cell::number((rng.below(20_000_001) as f64 - 10_000_000.0) / 100.0),
                    2 => Cell::Bool(rng.below(2) == 1),
                    3 => {
                        Cell::Text(format!("{}-{}", WORDS[rng.below(WORDS.len() as u64) as usize], rng.below(100_000)))
                    }
                    // 36526 is 2000-01-01; 9131 days later is 2024-12-31.
                    4 => Cell::typed((36_526 + rng.below(9_131)) as f64, NumberFormatType::Date),
                    _ => {
                        let day = 36_526 + rng.below(9_131);
                        let second = rng.below(86_400);
                        Cell::typed(day as f64 + second as f64 / 86_400.0, NumberFormatType::DateTime)
                    }
                });
            }
            while row.last().is_some_and(Cell::is_empty) {
                row.pop();
            }
            data.push(row);
        }
        Spreadsheet::new(id).tab("Sheet1", 0, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sheets_are_deterministic_and_mixed() {
        let a = Spreadsheet::generated("big", 200, 8, 7);
        assert_eq!(a, Spreadsheet::generated("big", 200, 8, 7));
        assert_ne!(a, Spreadsheet::generated("big", 200, 8, 8));
        let tab = &a.sheets[0];
        assert_eq!(tab.rows.len(), 201);
        assert_eq!(tab.rows[0][7], Cell::text("int_7"));
        assert_eq!(tab.rows[0][5], Cell::text("date_5"));
        assert_eq!(tab.rows[200][0], Cell::number(200.0));
        let dates = tab.rows[1..]
            .iter()
            .filter(|r| matches!(r.get(5), Some(Cell::Number { format: NumberFormatType::Date, .. })))
            .count();
        assert!(dates > 150, "{dates}");
        assert!(tab.rows[1..].iter().any(|r| r.get(3) == Some(&Cell::Bool(true))));
    }
}
