//! Splunk: HTTP Event Collector JSON events, and raw `key=value` lines.

use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value};

use super::fields::{self, Mode};
use super::{ParseError, json_kind, level, new_record, text, time};
use crate::record::{LogRecord, SourceType};

/// HEC envelope keys with a meaning of their own; all other top-level keys
/// become attributes.
const HEC_KEYS: &[&str] = &[
    "time",
    "host",
    "source",
    "sourcetype",
    "index",
    "event",
    "fields",
];

fn optional_string<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
        Some(other) => Err(ParseError::schema(
            Some(key),
            format!("expected a string, got {}", json_kind(other)),
        )),
    }
}

/// `{"time": 1700000000.123, "host": …, "source": …, "sourcetype": …,
/// "index": …, "event": <string or object>, "fields": {…}}`
pub(crate) fn parse_hec(
    obj: &Map<String, Value>,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let event = match obj.get("event") {
        None | Some(Value::Null) => {
            return Err(ParseError::schema(
                Some("event"),
                "Splunk HEC event without `event`",
            ));
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(ParseError::schema(Some("event"), "blank event"));
        }
        Some(e) => e,
    };
    let hec_time = match obj.get("time") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(time::from_json(v).map_err(|reason| ParseError::schema(Some("time"), reason))?)
        }
    };
    let host = optional_string(obj, "host")?;
    let source = optional_string(obj, "source")?;
    let sourcetype = optional_string(obj, "sourcetype")?;
    let index = optional_string(obj, "index")?;
    let hec_fields = match obj.get("fields") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(other) => {
            return Err(ParseError::schema(
                Some("fields"),
                format!("expected an object, got {}", json_kind(other)),
            ));
        }
    };

    let mut r = match event {
        Value::String(s) => {
            let mut r = new_record(
                SourceType::SplunkHec,
                hec_time.unwrap_or(fallback),
                s.clone(),
                raw,
            );
            r.level = level::sniff_text(s);
            r
        }
        Value::Object(ev) => {
            let m = fields::map_object(ev, Mode::Strict, &[])?;
            let message = match m.message {
                Some(msg) => msg,
                None => serde_json::to_string(event).unwrap_or_default(),
            };
            let t = hec_time.or(m.time).unwrap_or(fallback);
            let mut r = new_record(SourceType::SplunkHec, t, message, raw);
            r.level = m.level;
            r.service = m.service;
            r.host = m.host;
            r.http = m.http;
            r.metrics = m.metrics;
            r.attributes = m.attributes;
            r
        }
        other => new_record(
            SourceType::SplunkHec,
            hec_time.unwrap_or(fallback),
            serde_json::to_string(other).unwrap_or_default(),
            raw,
        ),
    };
    if let Some(s) = source {
        r.service = Some(s.to_owned());
    } else if r.service.is_none() {
        r.service = sourcetype.map(str::to_owned);
    }
    if let Some(h) = host {
        r.host = Some(h.to_owned());
    }
    if let Some(st) = sourcetype {
        r.attributes.insert("sourcetype".into(), Value::from(st));
    }
    if let Some(ix) = index {
        r.attributes.insert("index".into(), Value::from(ix));
    }
    if let Some(f) = hec_fields {
        r.attributes.insert("fields".into(), f.clone());
    }
    for (k, v) in obj {
        if !HEC_KEYS.contains(&k.as_str()) && !r.attributes.contains_key(k) {
            r.attributes.insert(k.clone(), v.clone());
        }
    }
    Ok(r)
}

/// A scanned key=value line.
pub(crate) struct KvLine<'a> {
    pub time: Option<DateTime<Utc>>,
    pub pairs: Map<String, Value>,
    pub pair_count: usize,
    /// Tokens that are not `key=value`.
    pub bare: Vec<&'a str>,
    /// Whether the first token after the optional timestamp is a pair.
    pub first_is_pair: bool,
}

/// Strict parse (a header named the format): at least one `key=value` pair,
/// and every quoted value closed.
pub(crate) fn parse_kv(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let kv = scan(line).map_err(|reason| ParseError::line("splunk-kv", reason))?;
    if kv.pair_count == 0 {
        return Err(ParseError::line("splunk-kv", "no key=value pairs"));
    }
    Ok(build(kv, line, raw, fallback))
}

/// Sniffing: at least three pairs, and the line starts with a pair or a
/// timestamp.
pub(crate) fn sniff_kv(line: &str, raw: &str, fallback: DateTime<Utc>) -> Option<LogRecord> {
    let kv = scan(line).ok()?;
    if kv.pair_count >= 3 && (kv.time.is_some() || kv.first_is_pair) {
        Some(build(kv, line, raw, fallback))
    } else {
        None
    }
}

fn build(kv: KvLine<'_>, line: &str, raw: &str, fallback: DateTime<Utc>) -> LogRecord {
    // Lenient mapping cannot fail; fall back to keeping everything as-is.
    let m = fields::map_object(&kv.pairs, Mode::Lenient, &["source"]).unwrap_or_default();
    let bare_text = kv.bare.join(" ");
    let has_message = m.message.is_some();
    let t = kv.time.or(m.time).unwrap_or(fallback);
    let mut r = new_record(
        SourceType::SplunkKv,
        t,
        m.message.unwrap_or_else(|| line.to_owned()),
        raw,
    );
    r.level = m.level.or_else(|| level::sniff_text(&bare_text));
    r.service = m.service;
    r.host = m.host;
    r.http = m.http;
    r.metrics = m.metrics;
    r.attributes = m.attributes;
    if has_message && !bare_text.is_empty() {
        r.attributes.insert("text".into(), Value::from(bare_text));
    }
    r
}

/// Leading `RFC 3339` token or `YYYY-MM-DD HH:MM:SS[.fff]` token pair.
fn leading_time(line: &str) -> (Option<DateTime<Utc>>, &str) {
    let Some((first, rest)) = text::word(line) else {
        return (None, line);
    };
    let date_like = first.len() >= 10
        && first.as_bytes().get(4) == Some(&b'-')
        && first.bytes().take(4).all(|b| b.is_ascii_digit());
    if !date_like {
        return (None, line);
    }
    if let Some(t) = time::parse_str(first) {
        return (Some(t), rest);
    }
    if first.len() == 10
        && let Some((second, rest2)) = text::word(rest)
        && second.as_bytes().get(2) == Some(&b':')
        && let Some(t) = time::parse_str(&format!("{first} {second}"))
    {
        return (Some(t), rest2);
    }
    (None, line)
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '@')
}

/// Unquoted value that reads as a number: digits with optional sign,
/// fraction and exponent, no leading zero before another digit.
fn number_value(v: &str) -> Option<Value> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let b = digits.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    if b.first() == Some(&b'0') && b.get(1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    if let Ok(i) = v.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f = v.parse::<f64>().ok().filter(|f| f.is_finite())?;
    Number::from_f64(f).map(Value::Number)
}

pub(crate) fn scan(line: &str) -> Result<KvLine<'_>, String> {
    let (time, mut rest) = leading_time(line);
    let mut kv = KvLine {
        time,
        pairs: Map::new(),
        pair_count: 0,
        bare: Vec::new(),
        first_is_pair: false,
    };
    let mut first = true;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let key_len = rest.find(|c: char| !is_key_char(c)).unwrap_or(rest.len());
        let (key, after) = rest.split_at_checked(key_len).unwrap_or((rest, ""));
        let key_ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        match after.strip_prefix('=') {
            Some(value_text) if key_ok => {
                let (value, after_value) = if value_text.starts_with('"') {
                    let (s, r) = text::quoted(value_text, &['"', '\\'])
                        .ok_or_else(|| format!("unterminated quoted value for key {key:?}"))?;
                    (Value::from(s), r)
                } else {
                    let (v, r) = value_text
                        .split_once(char::is_whitespace)
                        .unwrap_or((value_text, ""));
                    (number_value(v).unwrap_or_else(|| Value::from(v)), r)
                };
                kv.pairs.insert(key.to_owned(), value);
                kv.pair_count += 1;
                if first {
                    kv.first_is_pair = true;
                }
                rest = after_value;
            }
            _ => {
                let (tok, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                kv.bare.push(tok);
                rest = r;
            }
        }
        first = false;
    }
    Ok(kv)
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, fallback, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn hec_string_event() {
        let line = r#"{"time":1700000000.123,"host":"web-1","source":"checkout","sourcetype":"app:log","index":"main","event":"ERROR payment failed","fields":{"region":"eu"}}"#;
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::SplunkHec);
        assert_eq!(r.event_time, utc("2023-11-14T22:13:20.123Z"));
        assert_eq!(r.host.as_deref(), Some("web-1"));
        assert_eq!(r.service.as_deref(), Some("checkout"));
        assert_eq!(r.message, "ERROR payment failed");
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.attributes["sourcetype"], json!("app:log"));
        assert_eq!(r.attributes["index"], json!("main"));
        assert_eq!(r.attributes["fields"], json!({"region": "eu"}));
    }

    #[test]
    fn hec_object_event() {
        let line = r#"{"time":"2024-05-01T12:00:00Z","sourcetype":"_json","event":{"msg":"login","level":"warn","user":"bob","status":401,"method":"POST","path":"/login","duration_ms":8}}"#;
        let r = parse1(line, Some("splunk-hec"));
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.message, "login");
        assert_eq!(r.level, Some(Level::Warn));
        assert_eq!(r.service.as_deref(), Some("_json"));
        assert_eq!(r.host, None);
        assert_eq!(r.http.as_ref().unwrap().status, Some(401));
        assert_eq!(r.metrics["duration_ms"], 8.0);
        assert_eq!(r.attributes["user"], json!("bob"));
    }

    #[test]
    fn hec_object_without_message_uses_compact_json() {
        let line = r#"{"host":"h","event":{"a":1,"b":"x"}}"#;
        let r = parse1(line, Some("splunk"));
        assert_eq!(r.message, r#"{"a":1,"b":"x"}"#);
        assert_eq!(r.event_time, fallback());
        assert_eq!(r.host.as_deref(), Some("h"));
    }

    #[test]
    fn hec_violations() {
        for line in [
            r#"{"time":1700000000,"host":"h"}"#,
            r#"{"time":1700000000,"event":null}"#,
            r#"{"time":"noon","event":"x"}"#,
            r#"{"time":true,"event":"x"}"#,
            r#"{"host":5,"event":"x"}"#,
            r#"{"host":"h","event":"x","fields":[1]}"#,
            r#"{"host":"h","event":"  "}"#,
            r#"{"host":"h","event":{"status":"abc"}}"#,
        ] {
            assert_eq!(
                err_class(line, Some("splunk-hec")),
                "schema_violation",
                "{line}"
            );
        }
        assert_eq!(
            err_class(r#"{"event":"x","host":"#, Some("splunk")),
            "invalid_json"
        );
    }

    #[test]
    fn kv_example() {
        let line = r#"2024-05-01T12:00:00.000Z host=web-1 source=app sourcetype=access_combined level=ERROR msg="payment \"card\" failed" status=500 duration_ms=87"#;
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::SplunkKv);
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.host.as_deref(), Some("web-1"));
        assert_eq!(r.service.as_deref(), Some("app"));
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.message, r#"payment "card" failed"#);
        assert_eq!(r.metrics["duration_ms"], 87.0);
        assert_eq!(r.http.as_ref().unwrap().status, Some(500));
        assert_eq!(r.attributes["sourcetype"], json!("access_combined"));
    }

    #[test]
    fn kv_space_timestamp_no_msg_and_lenient_types() {
        let line = "2024-05-01 12:00:00.500 user=alice action=login status=abc bytes=0042 ratio=-1.5e3 empty=";
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::SplunkKv);
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00.500Z"));
        assert_eq!(r.message, line);
        assert_eq!(r.level, None);
        assert!(r.http.is_none());
        assert_eq!(r.attributes["status"], json!("abc"));
        assert_eq!(r.attributes["bytes"], json!("0042"));
        assert_eq!(r.attributes["empty"], json!(""));
        assert_eq!(r.metrics["ratio"], -1500.0);
    }

    #[test]
    fn kv_without_timestamp_and_bare_words() {
        let r = parse1(
            "service=auth host=a1 WARN token expired user=bob msg=rejected",
            None,
        );
        assert_eq!(r.source_type, SourceType::SplunkKv);
        assert_eq!(r.service.as_deref(), Some("auth"));
        assert_eq!(r.level, Some(Level::Warn));
        assert_eq!(r.message, "rejected");
        assert_eq!(r.attributes["text"], json!("WARN token expired"));
    }

    #[test]
    fn kv_sniff_needs_three_pairs_and_a_good_start() {
        assert_eq!(parse1("a=1 b=2", None).source_type, SourceType::Generic);
        assert_eq!(
            parse1("something happened a=1 b=2 c=3", None).source_type,
            SourceType::Generic
        );
        assert_eq!(
            parse1("a=1 b=2 c=3", None).source_type,
            SourceType::SplunkKv
        );
        // Strict parse accepts a single pair.
        assert_eq!(
            parse1("a=1", Some("splunk-kv")).source_type,
            SourceType::SplunkKv
        );
    }

    #[test]
    fn kv_malformed() {
        assert_eq!(
            err_class("just words here", Some("splunk-kv")),
            "invalid_line"
        );
        assert_eq!(
            err_class(r#"a=1 msg="never closed"#, Some("splunk-raw")),
            "invalid_line"
        );
        assert_eq!(err_class("=1 =2", Some("splunk")), "invalid_line");
        // Sniffing: an unterminated quote makes it plain text.
        assert_eq!(
            parse1(r#"a=1 b=2 msg="never closed"#, None).source_type,
            SourceType::Generic
        );
    }
}
