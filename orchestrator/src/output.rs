//! How jobctl and the orchestrator's preview print for people: aligned tables, colour only on a
//! terminal (and never with `NO_COLOR`), times relative to now, and the `--since 24h` durations
//! people type.

use std::io::IsTerminal;

use chrono::{DateTime, Duration, Utc};

use crate::settings;

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    /// Colour when stdout is a terminal and NO_COLOR is not set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    pub fn enabled(self) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var("TERM").map_or(true, |t| t != "dumb")
            }
        }
    }
}

/// A colour for one piece of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Plain,
    Green,
    Red,
    Yellow,
    Cyan,
    Dim,
    Bold,
}

impl Paint {
    fn code(self) -> Option<&'static str> {
        match self {
            Paint::Plain => None,
            Paint::Green => Some("32"),
            Paint::Red => Some("31"),
            Paint::Yellow => Some("33"),
            Paint::Cyan => Some("36"),
            Paint::Dim => Some("2"),
            Paint::Bold => Some("1"),
        }
    }
}

/// Applies colours when enabled.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn paint(&self, p: Paint, text: &str) -> String {
        match (self.color, p.code()) {
            (true, Some(code)) => format!("\x1b[{code}m{text}\x1b[0m"),
            _ => text.to_string(),
        }
    }
}

/// A table printed with columns padded to their widest cell.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<(String, Paint)>>,
}

impl Table {
    pub fn new(headers: Vec<&'static str>) -> Table {
        Table { headers, rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<(String, Paint)>) {
        self.rows.push(cells);
    }

    pub fn render(&self, style: Style) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, (text, _)) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(text.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<(String, Paint)>, out: &mut String| {
            let last = cells.len().saturating_sub(1);
            for (i, (text, paint)) in cells.into_iter().enumerate() {
                let pad = if i == last { 0 } else { widths[i].saturating_sub(text.chars().count()) + 2 };
                out.push_str(&style.paint(paint, &text));
                out.push_str(&" ".repeat(pad));
            }
            out.push('\n');
        };
        line(self.headers.iter().map(|h| (h.to_string(), Paint::Bold)).collect(), &mut out);
        for r in &self.rows {
            line(r.clone(), &mut out);
        }
        out
    }
}

pub fn plain(s: impl Into<String>) -> (String, Paint) {
    (s.into(), Paint::Plain)
}

/// `2026-01-02 10:00:00Z`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// A span of time in the largest sensible unit: `45s`, `12m`, `3h`, `2d 4h`.
pub fn span(d: Duration) -> String {
    let exact = (d.num_milliseconds().abs() + 500) / 1000;
    // Rounded to the unit shown, so "23h" does not read "22h 59m" a second later.
    let s = match exact {
        s if s < 60 => s,
        s if s < 86_400 => (s + 30) / 60 * 60,
        s => (s + 1800) / 3600 * 3600,
    };
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        let (h, m) = (s / 3600, (s % 3600) / 60);
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h {m}m")
        }
    } else {
        let (d, h) = (s / 86_400, (s % 86_400) / 3600);
        if h == 0 {
            format!("{d}d")
        } else {
            format!("{d}d {h}h")
        }
    }
}

/// `3h ago` / `in 2h` / `now`, relative to `now`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = t - now;
    if d.num_seconds().abs() < 1 {
        "now".into()
    } else if d < Duration::zero() {
        format!("{} ago", span(d))
    } else {
        format!("in {}", span(d))
    }
}

/// Seconds with one decimal: `1.4s`.
pub fn seconds(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// A span people type, like `--since 24h`: `90s`, `15m`, `24h`, `7d`, `2w`, and a bare number is
/// hours. Units are [`settings::parse_duration`]'s.
pub fn parse_since(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bare = !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
    let d = settings::parse_duration(&if bare { format!("{t}h") } else { t.to_string() })?;
    Duration::from_std(d).map_err(|_| format!("{s:?} is too long"))
}

/// Cuts `s` to `max` characters, marking the cut, and keeps it on one line.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_since("24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_since("7d").unwrap(), Duration::days(7));
        assert_eq!(parse_since("2w").unwrap(), Duration::weeks(2));
        assert_eq!(parse_since("90s").unwrap(), Duration::seconds(90));
        assert_eq!(parse_since("3").unwrap(), Duration::hours(3));
        assert!(parse_since("soon").is_err());
        assert!(parse_since("3y").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(span(Duration::seconds(45)), "45s");
        assert_eq!(span(Duration::minutes(90)), "1h 30m");
        assert_eq!(span(Duration::hours(50)), "2d 2h");
        let now = Utc::now();
        assert_eq!(relative(now - Duration::hours(3), now), "3h ago");
        assert_eq!(relative(now + Duration::hours(2), now), "in 2h");
        assert_eq!(relative(now + Duration::hours(23) - Duration::seconds(2), now), "in 23h");
    }

    #[test]
    fn tables_align_without_colour() {
        let mut t = Table::new(vec!["A", "LONGER"]);
        t.row(vec![plain("xyz"), (String::from("ok"), Paint::Green)]);
        let s = t.render(Style { color: false });
        assert_eq!(s, "A    LONGER\nxyz  ok\n");
        assert!(!s.contains('\x1b'));
    }
}
