//! Replay: records from JSON lines or CSV text instead of generated traffic.

use chrono::{DateTime, NaiveDateTime, Utc};
use logpipe_schema::json_kind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::{GenerateError, GeneratedRecord, Kind};

/// Input layout for [`replay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayFormat {
    /// One JSON object per non-empty line.
    JsonLines,
    /// RFC 4180-style CSV; the first row names the fields.
    Csv,
}

/// Keys tried, in order, after `key_field`.
const KEY_FALLBACKS: [&str; 3] = ["service", "host", "sensor_id"];
const TIME_KEYS: [&str; 4] = ["timestamp", "time", "@timestamp", "ts"];

/// Replay: one record per non-empty line of JSON lines, or per CSV row
/// (first row = header; each row becomes a JSON object with the header names
/// as keys).
///
/// - CSV: unquoted fields that parse as numbers become JSON numbers (integers
///   when integral text), other fields strings; quoted fields are always
///   strings (`"a, b"`, `""` escapes, line breaks inside quotes); an empty
///   unquoted field is left out of the object. Blank lines are skipped.
/// - `key_field` names the field used as key (fallback: `service`, `host`,
///   `sensor_id`, else the line number as string); string and number values
///   are used, and an object's string `name`.
/// - `log_format` is `app-json` unless the object has `sensor_id` (`sensor`).
/// - `event_time` is the record's `timestamp`/`time`/`@timestamp`/`ts` (RFC
///   3339, `YYYY-MM-DD HH:MM:SS[.f]` UTC, or epoch s/ms/µs/ns), else the
///   previous record's, else the Unix epoch.
/// - `value` is the line itself (JSON lines, trimmed) or the row's compact
///   JSON (CSV).
///
/// Errors name the 1-based line number (for CSV: the line the row starts on).
pub fn replay(
    text: &str,
    format: ReplayFormat,
    key_field: Option<&str>,
) -> Result<Vec<GeneratedRecord>, GenerateError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let key_field = key_field.filter(|k| !k.is_empty());
    let mut out = Vec::new();
    let mut last_time = DateTime::UNIX_EPOCH;
    let mut push = |line: usize, obj: &Map<String, Value>, value: String| {
        let record = to_record(line, obj, value, key_field, last_time);
        last_time = record.event_time;
        out.push(record);
    };
    match format {
        ReplayFormat::JsonLines => {
            for (i, raw) in text.split('\n').enumerate() {
                let line = i + 1;
                let trimmed = raw.trim();
                if trimmed.is_empty() {
                    continue;
                }
                let obj = match serde_json::from_str::<Value>(trimmed) {
                    Ok(Value::Object(obj)) => obj,
                    Ok(other) => {
                        return Err(err(
                            line,
                            format!("expected a JSON object, got {}", json_kind(&other)),
                        ));
                    }
                    Err(e) => return Err(err(line, format!("invalid JSON: {e}"))),
                };
                push(line, &obj, trimmed.to_owned());
            }
        }
        ReplayFormat::Csv => {
            let mut rows = csv_rows(text)?.into_iter();
            let Some((header_line, header)) = rows.next() else {
                return Ok(out);
            };
            let names = header_names(header_line, header)?;
            for (line, fields) in rows {
                if fields.len() != names.len() {
                    return Err(err(
                        line,
                        format!(
                            "expected {} fields (as in the header), got {}",
                            names.len(),
                            fields.len()
                        ),
                    ));
                }
                let mut obj = Map::new();
                for (name, field) in names.iter().zip(fields) {
                    if let Some(v) = field.into_value() {
                        obj.insert(name.clone(), v);
                    }
                }
                let value = Value::Object(obj.clone()).to_string();
                push(line, &obj, value);
            }
        }
    }
    Ok(out)
}

fn err(line: usize, reason: impl Into<String>) -> GenerateError {
    GenerateError::Replay {
        line,
        reason: reason.into(),
    }
}

fn to_record(
    line: usize,
    obj: &Map<String, Value>,
    value: String,
    key_field: Option<&str>,
    last_time: DateTime<Utc>,
) -> GeneratedRecord {
    let key = key_field
        .into_iter()
        .chain(KEY_FALLBACKS)
        .find_map(|k| key_text(obj.get(k)?))
        .unwrap_or_else(|| line.to_string());
    let kind = if obj.contains_key("sensor_id") {
        Kind::Sensor
    } else {
        Kind::AppJson
    };
    let event_time = TIME_KEYS
        .iter()
        .find_map(|k| time_of(obj.get(*k)?))
        .unwrap_or(last_time);
    GeneratedRecord {
        kind,
        key,
        value,
        log_format: kind.log_format(),
        trace_id: obj
            .get("trace_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        event_time,
    }
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => o
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&Utc));
            }
            for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
                    return Some(t.and_utc());
                }
            }
            s.parse::<f64>().ok().and_then(epoch)
        }
        Value::Number(n) => n.as_f64().and_then(epoch),
        _ => None,
    }
}

/// Epoch number by magnitude: seconds, milliseconds, microseconds, nanoseconds
/// (the thresholds of FORMATS.md).
fn epoch(x: f64) -> Option<DateTime<Utc>> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let micros = if x < 1e11 {
        x * 1e6
    } else if x < 1e14 {
        x * 1e3
    } else if x < 1e17 {
        x
    } else {
        x / 1e3
    };
    DateTime::from_timestamp_micros(micros.round() as i64)
}

/// One CSV field as read.
#[derive(Debug)]
struct Field {
    text: String,
    quoted: bool,
}

impl Field {
    fn into_value(self) -> Option<Value> {
        if self.quoted {
            return Some(Value::String(self.text));
        }
        let t = self.text.trim();
        if t.is_empty() {
            return None;
        }
        Some(number(t).unwrap_or_else(|| Value::String(t.to_owned())))
    }
}

/// Text that reads as a number (`42`, `-3.5`, `1e3`); not `inf`, `NaN`, hex.
fn number(t: &str) -> Option<Value> {
    let numeric = t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !numeric {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f = t.parse::<f64>().ok().filter(|f| f.is_finite())?;
    Number::from_f64(f).map(Value::Number)
}

fn header_names(line: usize, header: Vec<Field>) -> Result<Vec<String>, GenerateError> {
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for (i, f) in header.into_iter().enumerate() {
        let name = f.text.trim().to_owned();
        if name.is_empty() {
            return Err(err(line, format!("header column {} has no name", i + 1)));
        }
        if names.contains(&name) {
            return Err(err(line, format!("header column {name:?} appears twice")));
        }
        names.push(name);
    }
    Ok(names)
}

/// Splits CSV text into rows of fields, each with the line it starts on.
/// Blank lines are skipped. Spaces around a quoted field are allowed.
fn csv_rows(text: &str) -> Result<Vec<(usize, Vec<Field>)>, GenerateError> {
    let mut rows = Vec::new();
    let mut row: Vec<Field> = Vec::new();
    let mut field = String::new();
    let mut quoted = false; // the current field was quoted
    let mut in_quotes = false; // inside the quotes right now
    let mut line = 1;
    let mut row_line = 1;
    let mut quote_line = 1;
    let mut chars = text.chars().peekable();

    let mut end_row = |row: &mut Vec<Field>, row_line: usize| {
        let blank = row.len() == 1 && !row[0].quoted && row[0].text.trim().is_empty();
        if !blank {
            rows.push((row_line, std::mem::take(row)));
        }
        row.clear();
    };

    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !quoted && field.trim().is_empty() => {
                field.clear();
                quoted = true;
                in_quotes = true;
                quote_line = line;
            }
            ',' => {
                row.push(Field {
                    text: std::mem::take(&mut field),
                    quoted,
                });
                quoted = false;
            }
            '\n' | '\r' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    continue;
                }
                row.push(Field {
                    text: std::mem::take(&mut field),
                    quoted,
                });
                quoted = false;
                end_row(&mut row, row_line);
                line += 1;
                row_line = line;
            }
            ' ' | '\t' if quoted => {}
            _ if quoted => {
                return Err(err(
                    line,
                    format!(
                        "unexpected {c:?} after a closing quote (use \"\" for a quote inside quotes)"
                    ),
                ));
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(err(quote_line, "quoted field is never closed"));
    }
    if quoted || !field.is_empty() || !row.is_empty() {
        row.push(Field {
            text: field,
            quoted,
        });
        end_row(&mut row, row_line);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(r: &GeneratedRecord) -> Value {
        serde_json::from_str(&r.value).unwrap()
    }

    #[test]
    fn json_lines_skip_blank_lines_and_pick_keys() {
        let text = "{\"service\":\"checkout\",\"message\":\"a\",\"timestamp\":\"2024-05-01T12:00:00Z\",\"trace_id\":\"abc\"}\n\
                    \n   \r\n\
                    {\"host\":\"web-1\",\"msg\":\"b\"}\r\n\
                    {\"sensor_id\":\"st-9\",\"temperature\":21.5,\"ts\":1714564800}\n\
                    {\"message\":\"no key\",\"tenant\":\"acme\"}\n";
        let out = replay(text, ReplayFormat::JsonLines, None).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].key, "checkout");
        assert_eq!(out[0].log_format, "app-json");
        assert_eq!(out[0].kind, Kind::AppJson);
        assert_eq!(out[0].trace_id.as_deref(), Some("abc"));
        assert_eq!(out[0].event_time.to_rfc3339(), "2024-05-01T12:00:00+00:00");
        assert_eq!(out[1].key, "web-1");
        assert_eq!(out[1].value, "{\"host\":\"web-1\",\"msg\":\"b\"}");
        assert_eq!(
            out[1].event_time, out[0].event_time,
            "previous record's time"
        );
        assert_eq!(out[2].key, "st-9");
        assert_eq!(out[2].log_format, "sensor");
        assert_eq!(out[2].kind, Kind::Sensor);
        assert_eq!(out[2].event_time.timestamp(), 1_714_564_800);
        assert_eq!(out[3].key, "6", "line number when no key field exists");

        let keyed = replay(text, ReplayFormat::JsonLines, Some("tenant")).unwrap();
        assert_eq!(keyed[3].key, "acme");
        assert_eq!(
            keyed[0].key, "checkout",
            "falls back when key_field is absent"
        );
    }

    #[test]
    fn json_lines_bad_line_names_its_number() {
        let text = "{\"message\":\"ok\"}\n\n{\"message\": \"truncated\n{\"message\":\"ok\"}\n";
        let e = replay(text, ReplayFormat::JsonLines, None).unwrap_err();
        assert!(matches!(e, GenerateError::Replay { line: 3, .. }), "{e:?}");
        assert!(e.to_string().starts_with("line 3: invalid JSON"), "{e}");

        let e = replay("{\"a\":1}\n[1,2]\n", ReplayFormat::JsonLines, None).unwrap_err();
        assert_eq!(
            e,
            GenerateError::Replay {
                line: 2,
                reason: "expected a JSON object, got an array".into()
            }
        );
    }

    #[test]
    fn csv_quotes_commas_escapes_and_numbers() {
        let text = "sensor_id,station,temperature,humidity,note,code\r\n\
                    st-001,\"Berlin, Mitte\",21.5,55,\"said \"\"hi\"\"\",\"42\"\r\n\
                    \r\n\
                    st-002, Hamburg ,-3,1e2,\"multi\nline\",007\n\
                    st-003,Oslo,,nan,x,inf";
        let out = replay(text, ReplayFormat::Csv, None).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(
            obj(&out[0]),
            json!({"sensor_id":"st-001","station":"Berlin, Mitte","temperature":21.5,
                   "humidity":55,"note":"said \"hi\"","code":"42"})
        );
        assert!(obj(&out[0])["humidity"].is_i64());
        assert_eq!(out[0].key, "st-001");
        assert_eq!(out[0].log_format, "sensor");
        assert_eq!(
            obj(&out[1]),
            json!({"sensor_id":"st-002","station":"Hamburg","temperature":-3,
                   "humidity":100.0,"note":"multi\nline","code":7})
        );
        // Empty unquoted field left out; nan / inf stay text.
        assert_eq!(
            obj(&out[2]),
            json!({"sensor_id":"st-003","station":"Oslo","humidity":"nan","note":"x","code":"inf"})
        );
    }

    #[test]
    fn csv_key_field_and_line_numbers() {
        let text = "user,message,amount\nalice,paid,12.5\nbob,\"refund, partial\",-3\n";
        let out = replay(text, ReplayFormat::Csv, Some("user")).unwrap();
        assert_eq!(out[0].key, "alice");
        assert_eq!(out[1].key, "bob");
        assert_eq!(out[0].log_format, "app-json");
        let unkeyed = replay(text, ReplayFormat::Csv, None).unwrap();
        assert_eq!(unkeyed[0].key, "2");
        assert_eq!(unkeyed[1].key, "3");

        // A row with the wrong field count names its line (after a multi-line field).
        let bad = "a,b\n\"x\ny\",1\n1,2,3\n";
        assert_eq!(
            replay(bad, ReplayFormat::Csv, None).unwrap_err(),
            GenerateError::Replay {
                line: 4,
                reason: "expected 2 fields (as in the header), got 3".into()
            }
        );
        let unclosed = "a,b\n1,2\n3,\"oops\n";
        assert!(matches!(
            replay(unclosed, ReplayFormat::Csv, None).unwrap_err(),
            GenerateError::Replay { line: 3, .. }
        ));
        let junk = "a,b\n\"x\"y,1\n";
        assert!(matches!(
            replay(junk, ReplayFormat::Csv, None).unwrap_err(),
            GenerateError::Replay { line: 2, .. }
        ));
        assert!(matches!(
            replay("a,,b\n1,2,3\n", ReplayFormat::Csv, None).unwrap_err(),
            GenerateError::Replay { line: 1, .. }
        ));
        assert!(replay("", ReplayFormat::Csv, None).unwrap().is_empty());
        assert!(replay("a,b\n", ReplayFormat::Csv, None).unwrap().is_empty());
    }

    #[test]
    fn replayed_records_parse() {
        let t = DateTime::UNIX_EPOCH;
        let text = "service,message,level,duration_ms\ncheckout,\"order 1 created\",info,12\n";
        for r in replay(text, ReplayFormat::Csv, None).unwrap() {
            let rows = logpipe_schema::parse(&r.value, Some(r.log_format), t).unwrap();
            assert_eq!(rows[0].service.as_deref(), Some("checkout"));
            assert_eq!(rows[0].metrics["duration_ms"], 12.0);
        }
    }
}
