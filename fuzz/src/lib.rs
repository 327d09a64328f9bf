//! Checks shared by the fuzz targets. Beyond "never panics", every parse
//! result must be something ingest can store and forward: a record that
//! reads back from its JSON (detect deserializes what ingest forwards) and,
//! out of the classifier, holds no NUL (PostgreSQL cannot store it).
//! A failed check panics, which libFuzzer reports as a crash.

use chrono::{DateTime, TimeZone, Utc};
use logpipe_schema::{LogRecord, ParseError, SourceType, parse_counted};
use serde_json::Value;

/// The Kafka timestamps every input is parsed with: a realistic one and
/// both ends of chrono's range (a producer controls the timestamp, and
/// formats without a year take it from there).
pub fn fallbacks() -> [DateTime<Utc>; 3] {
    [
        Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::UNIX_EPOCH),
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
    ]
}

/// What a target expects of a successful parse.
pub struct Expect<'a> {
    /// One record whose `raw` is the input (every format but batch).
    pub single: bool,
    /// The source types the header can produce; empty = any.
    pub types: &'a [SourceType],
}

/// Parses `value` as `header` names it, with every fallback time, and
/// checks the result.
pub fn check_parse(value: &str, header: Option<&str>, expect: &Expect<'_>) {
    for fallback in fallbacks() {
        match parse_counted(value, header, fallback) {
            Ok(parsed) => {
                let rows = parsed.records;
                // Only a CloudWatch control message yields no records.
                assert!(
                    !rows.is_empty() || parsed.control_messages > 0,
                    "Ok with no records for {value:?}"
                );
                if expect.single {
                    assert_eq!(rows.len(), 1, "{header:?} gave several records");
                }
                for row in &rows {
                    if expect.single {
                        assert_eq!(row.raw, value, "raw is not the input");
                    }
                    if !expect.types.is_empty() {
                        assert!(
                            expect.types.contains(&row.source_type),
                            "{header:?} gave {:?}",
                            row.source_type
                        );
                    }
                    assert!(row.kafka.is_none(), "the parser set kafka coordinates");
                    check_json_round_trip(row);
                }
            }
            Err(e) => check_error(&e),
        }
    }
}

/// Every error must render (it becomes a DLQ header) and have a class.
pub fn check_error(e: &ParseError) {
    assert!(!e.class().is_empty());
    let _ = e.batch_index();
    let _ = e.to_string();
}

/// What ingest forwards, detect must read back unchanged. Floats may move
/// by an ULP or so: serde_json (without its `float_roundtrip` feature)
/// parses some decimal texts to a neighbouring f64.
pub fn check_json_round_trip(row: &LogRecord) {
    let json = match serde_json::to_string(row) {
        Ok(j) => j,
        Err(e) => panic!("record does not serialize: {e}: {row:?}"),
    };
    let back: LogRecord = match serde_json::from_str(&json) {
        Ok(r) => r,
        Err(e) => panic!("record does not read back: {e}: {json}"),
    };
    if back != *row {
        let as_value = |r: &LogRecord| serde_json::to_value(r).unwrap_or(Value::Null);
        assert!(
            close(&as_value(&back), &as_value(row)),
            "record changed through JSON: {json}\n  read back: {back:?}"
        );
    }
}

/// Equal, but for floats within a relative 1e-15.
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| close(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

/// Whether any text of the record contains U+0000.
pub fn has_nul(row: &LogRecord) -> bool {
    let nul = |s: &str| s.contains('\0');
    let opt = |s: &Option<String>| s.as_deref().is_some_and(nul);
    nul(&row.message)
        || nul(&row.raw)
        || opt(&row.service)
        || opt(&row.host)
        || row.http.as_ref().is_some_and(|h| {
            opt(&h.method)
                || opt(&h.path)
                || opt(&h.protocol)
                || opt(&h.referrer)
                || opt(&h.user_agent)
        })
        || row.metrics.keys().any(|k| nul(k))
        || row
            .attributes
            .iter()
            .any(|(k, v)| nul(k) || value_has_nul(v))
}

fn value_has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(value_has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || value_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}
