//! `timestamp,value` lines: field splitting (RFC 4180 quoting), timestamps,
//! optional header.

use chrono::{DateTime, NaiveDateTime, Utc};

/// One data row of a `timestamp,value` file.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    /// 1-based line number in the input.
    pub line: usize,
    /// The timestamp and value as written (echoed to the output unchanged).
    pub timestamp_text: String,
    pub value_text: String,
    pub timestamp: DateTime<Utc>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CsvLine {
    Blank,
    Header,
    Row(SeriesRow),
}

/// Splits one CSV line into fields. Double-quoted fields may contain commas
/// and `""` for a quote.
pub fn split_fields(text: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                in_quotes = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) if was_quoted && !c.is_whitespace() => {
                return Err(format!("unexpected {c:?} after a closing quote"));
            }
            (false, c) => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".to_string());
    }
    fields.push(field);
    Ok(fields)
}

/// RFC 3339 (zone-less taken as UTC, `T` or a space between date and time)
/// or an epoch number: below 1e11 seconds, below 1e14 milliseconds.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty timestamp".to_string());
    }
    if let Ok(n) = s.parse::<f64>() {
        if !n.is_finite() {
            return Err(format!("timestamp {s:?} is not a finite number"));
        }
        let seconds = if n.abs() < 1e11 {
            n
        } else if n.abs() < 1e14 {
            n / 1000.0
        } else {
            return Err(format!(
                "epoch timestamp {s:?} is too large (seconds or milliseconds expected)"
            ));
        };
        let micros = (seconds * 1e6).round() as i64;
        return DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| format!("epoch timestamp {s:?} is out of range"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for layout in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, layout) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "timestamp {s:?} is neither RFC 3339 nor epoch seconds/milliseconds"
    ))
}

fn parse_value(text: &str) -> Result<f64, String> {
    let s = text.trim();
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("value {s:?} is not finite")),
        Err(_) => Err(format!("value {s:?} is not a number")),
    }
}

/// Parses one line. `may_be_header`: this is the first non-blank line, which
/// is a header when neither field parses (e.g. `timestamp,value`).
pub fn parse_line(line: usize, text: &str, may_be_header: bool) -> Result<CsvLine, String> {
    let text = text.trim_start_matches('\u{feff}');
    if text.trim().is_empty() {
        return Ok(CsvLine::Blank);
    }
    let fields = split_fields(text)?;
    let [ts_text, value_text] = fields.as_slice() else {
        return Err(format!(
            "expected 2 fields (timestamp,value), found {}",
            fields.len()
        ));
    };
    let (timestamp, value) = (parse_timestamp(ts_text), parse_value(value_text));
    match (timestamp, value) {
        (Ok(timestamp), Ok(value)) => Ok(CsvLine::Row(SeriesRow {
            line,
            timestamp_text: ts_text.trim().to_string(),
            value_text: value_text.trim().to_string(),
            timestamp,
            value,
        })),
        (Err(_), Err(_)) if may_be_header => Ok(CsvLine::Header),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Quotes a field for CSV output when it needs it.
pub fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn row(line: CsvLine) -> SeriesRow {
        match line {
            CsvLine::Row(r) => r,
            other => panic!("expected a row, got {other:?}"),
        }
    }

    #[test]
    fn timestamps_rfc3339_zoneless_and_epochs() {
        let want = utc("2026-11-22T10:00:00Z");
        assert_eq!(parse_timestamp("2026-11-22T10:00:00Z").unwrap(), want);
        assert_eq!(parse_timestamp("2026-11-22T11:00:00+01:00").unwrap(), want);
        assert_eq!(parse_timestamp("2026-11-22 10:00:00").unwrap(), want);
        assert_eq!(parse_timestamp("2026-11-22T10:00:00").unwrap(), want);
        let secs = want.timestamp();
        assert_eq!(parse_timestamp(&secs.to_string()).unwrap(), want);
        assert_eq!(parse_timestamp(&(secs * 1000).to_string()).unwrap(), want);
        assert_eq!(
            parse_timestamp(&format!("{}250", secs)).unwrap(),
            utc("2026-11-22T10:00:00.250Z")
        );
        assert!(parse_timestamp(&(secs * 1_000_000).to_string()).is_err());
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn header_quotes_and_blank_lines() {
        assert_eq!(
            parse_line(1, "timestamp,value", true).unwrap(),
            CsvLine::Header
        );
        // a header is only accepted as the first non-blank line
        assert!(parse_line(5, "timestamp,value", false).is_err());
        assert_eq!(parse_line(2, "   ", false).unwrap(), CsvLine::Blank);
        assert_eq!(parse_line(2, "", false).unwrap(), CsvLine::Blank);
        let r = row(parse_line(3, "\"2026-11-22T10:00:00Z\", 12.5 ", false).unwrap());
        assert_eq!((r.line, r.value, r.value_text.as_str()), (3, 12.5, "12.5"));
        assert_eq!(
            split_fields(r#"a,"b,c","d""e""#).unwrap(),
            ["a", "b,c", "d\"e"]
        );
        assert!(split_fields("\"open,1").is_err());
        assert_eq!(quote("a,b"), "\"a,b\"");
    }

    #[test]
    fn bad_rows_say_why() {
        let e = parse_line(4, "2026-11-22T10:00:00Z,abc", true).unwrap_err();
        assert!(e.contains("not a number"), "{e}");
        let e = parse_line(4, "soon,1", false).unwrap_err();
        assert!(e.contains("neither RFC 3339"), "{e}");
        let e = parse_line(4, "2026-11-22T10:00:00Z,1,2", false).unwrap_err();
        assert!(e.contains("expected 2 fields"), "{e}");
        assert!(parse_line(4, "1763805600,NaN", false).is_err());
    }
}
