//! Parsers for every supported log format, and the routing between them.
//!
//! Entry point: [`parse`]. The layouts accepted for each format are described
//! in `FORMATS.md` at the root of this crate.
//!
//! None of this code may panic on input data: the lints below forbid the
//! panicking shortcuts outside tests, and the test suite feeds truncated and
//! mutated variants of every example through [`parse`].
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::unreachable,
        clippy::todo
    )
)]

mod batch;
mod fields;
mod generic;
mod json_app;
mod level;
mod sap;
mod sensor;
mod splunk;
mod syslog;
mod text;
mod time;
mod web_access;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::record::{LogRecord, SourceType};

/// The formats a `log-format` Kafka header can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    AppJson,
    WebAccess,
    SplunkHec,
    SplunkKv,
    /// Splunk HEC when the value is JSON, Splunk key=value otherwise.
    Splunk,
    Sap,
    Sensor,
    Batch,
    /// RFC 5424 or RFC 3164, told apart by the version digit after the PRI.
    Syslog,
    Syslog5424,
    Syslog3164,
    Text,
}

impl Format {
    /// Parses a header value, case-insensitive, surrounding whitespace ignored.
    /// Returns `None` for anything not listed in `FORMATS.md`.
    pub fn from_header(value: &str) -> Option<Format> {
        let v = value.trim();
        if v.len() > 32 {
            return None;
        }
        let f = match v.to_ascii_lowercase().as_str() {
            "json" | "app-json" | "application/json" => Format::AppJson,
            "clf" | "combined" | "access" | "web-access" | "nginx" | "apache" => Format::WebAccess,
            "splunk-hec" => Format::SplunkHec,
            "splunk-kv" | "splunk-raw" => Format::SplunkKv,
            "splunk" => Format::Splunk,
            "sap" | "sap-syslog" | "sap-audit" => Format::Sap,
            "sensor" => Format::Sensor,
            "batch" => Format::Batch,
            "syslog" => Format::Syslog,
            "syslog5424" | "rfc5424" => Format::Syslog5424,
            "syslog3164" | "rfc3164" => Format::Syslog3164,
            "text" | "generic" | "plain" => Format::Text,
            _ => return None,
        };
        Some(f)
    }

    /// Canonical name; `Format::from_header(f.as_str()) == Some(f)`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::AppJson => "app-json",
            Format::WebAccess => "web-access",
            Format::SplunkHec => "splunk-hec",
            Format::SplunkKv => "splunk-kv",
            Format::Splunk => "splunk",
            Format::Sap => "sap",
            Format::Sensor => "sensor",
            Format::Batch => "batch",
            Format::Syslog => "syslog",
            Format::Syslog5424 => "syslog5424",
            Format::Syslog3164 => "syslog3164",
            Format::Text => "text",
        }
    }
}

/// Why a Kafka record value could not be turned into log records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The `log-format` header names a format we do not know.
    #[error("unknown log-format header value {0:?}")]
    UnknownFormat(String),
    /// The value is empty or whitespace only.
    #[error("empty record value")]
    EmptyValue,
    /// The value should be JSON (header, or it starts with `{`) but is not.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON of the wrong shape, or a known field of the wrong type.
    #[error("schema violation{}: {reason}", field_suffix(.field))]
    SchemaViolation {
        field: Option<String>,
        reason: String,
    },
    /// A text line that does not match the format the header named.
    #[error("invalid {format} line: {reason}")]
    InvalidLine {
        format: &'static str,
        reason: String,
    },
    /// A batch envelope whose `data` array is empty.
    #[error("batch envelope has an empty `data` array")]
    EmptyBatch,
    /// A batch envelope inside a batch envelope.
    #[error("batch envelope nested inside a batch envelope")]
    TooDeep,
    /// One element of a batch envelope failed; the whole envelope fails.
    #[error("batch element {index}: {error}")]
    BatchElement {
        index: usize,
        error: Box<ParseError>,
    },
}

fn field_suffix(field: &Option<String>) -> String {
    match field {
        Some(f) => format!(" in field `{f}`"),
        None => String::new(),
    }
}

impl ParseError {
    /// Short stable machine name of the error class, used in a DLQ header.
    /// For a failed batch element this is the class of the element's error.
    pub fn class(&self) -> &'static str {
        match self {
            ParseError::UnknownFormat(_) => "unknown_format",
            ParseError::EmptyValue => "empty_value",
            ParseError::InvalidJson(_) => "invalid_json",
            ParseError::SchemaViolation { .. } => "schema_violation",
            ParseError::InvalidLine { .. } => "invalid_line",
            ParseError::EmptyBatch => "empty_batch",
            ParseError::TooDeep => "too_deep",
            ParseError::BatchElement { error, .. } => error.class(),
        }
    }

    /// Index of the failing element when a batch envelope failed because of
    /// one of its elements.
    pub fn batch_index(&self) -> Option<usize> {
        match self {
            ParseError::BatchElement { index, .. } => Some(*index),
            _ => None,
        }
    }

    pub(crate) fn schema(field: Option<&str>, reason: impl Into<String>) -> ParseError {
        ParseError::SchemaViolation {
            field: field.map(str::to_owned),
            reason: reason.into(),
        }
    }

    pub(crate) fn line(format: &'static str, reason: impl Into<String>) -> ParseError {
        ParseError::InvalidLine {
            format,
            reason: reason.into(),
        }
    }
}

/// Parses one Kafka record value. `format_header` is the raw value of the
/// `log-format` header if present. `fallback_time` is the Kafka record
/// timestamp, used when the log carries no time.
/// Returns one record, or several for a batch envelope. Never panics on any input.
pub fn parse(
    value: &str,
    format_header: Option<&str>,
    fallback_time: DateTime<Utc>,
) -> Result<Vec<LogRecord>, ParseError> {
    let format = match format_header {
        None => None,
        Some(h) => Some(
            Format::from_header(h)
                .ok_or_else(|| ParseError::UnknownFormat(text::truncate(h, 64).to_owned()))?,
        ),
    };
    let text = clean(value);
    if text.is_empty() {
        return Err(ParseError::EmptyValue);
    }
    match format {
        None => sniff(text, value, fallback_time, false),
        Some(f) => parse_as(f, text, value, fallback_time),
    }
}

/// The text a parser looks at: surrounding whitespace and a leading UTF-8
/// byte order mark removed. `raw` keeps the untouched value.
fn clean(value: &str) -> &str {
    value.trim().trim_start_matches('\u{feff}').trim_start()
}

fn one(r: Result<LogRecord, ParseError>) -> Result<Vec<LogRecord>, ParseError> {
    r.map(|r| vec![r])
}

fn parse_as(
    format: Format,
    text: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<Vec<LogRecord>, ParseError> {
    match format {
        Format::AppJson => one(json_app::parse(&json_object(text)?, raw, fallback)),
        Format::WebAccess => one(web_access::parse(text, raw)),
        Format::SplunkHec => one(splunk::parse_hec(&json_object(text)?, raw, fallback)),
        Format::SplunkKv => one(splunk::parse_kv(text, raw, fallback)),
        Format::Splunk if text.starts_with('{') => {
            one(splunk::parse_hec(&json_object(text)?, raw, fallback))
        }
        Format::Splunk => one(splunk::parse_kv(text, raw, fallback)),
        Format::Sap => one(sap::parse(text, raw)),
        Format::Sensor => one(sensor::parse(&json_object(text)?, raw, fallback)),
        Format::Batch => batch::parse(&json_object(text)?, fallback),
        Format::Syslog => one(syslog::parse_any(text, raw, fallback)),
        Format::Syslog5424 => one(syslog::parse_5424(text, raw, fallback)),
        Format::Syslog3164 => one(syslog::parse_3164(text, raw, fallback)),
        Format::Text => Ok(vec![generic::parse(text, raw, fallback)]),
    }
}

/// Parses `text` as JSON that must be an object.
fn json_object(text: &str) -> Result<Map<String, Value>, ParseError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ParseError::schema(
            None,
            format!("expected a JSON object, got {}", json_kind(&other)),
        )),
        Err(e) => Err(ParseError::InvalidJson(e.to_string())),
    }
}

/// How a JSON value's type reads in an error message ("an array", ...).
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Format detection for a value without a `log-format` header (and for batch
/// elements). `nested` is true inside a batch envelope.
fn sniff(
    text: &str,
    raw: &str,
    fallback: DateTime<Utc>,
    nested: bool,
) -> Result<Vec<LogRecord>, ParseError> {
    if text.starts_with('{') {
        return sniff_object(&json_object(text)?, raw, fallback, nested);
    }
    if could_be_json_non_object(text)
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        return Err(ParseError::schema(
            None,
            format!("expected a JSON object, got {}", json_kind(&v)),
        ));
    }
    if let Some(r) = syslog::sniff(text, raw, fallback) {
        return Ok(vec![r]);
    }
    if let Ok(r) = web_access::parse(text, raw) {
        return Ok(vec![r]);
    }
    if let Ok(r) = sap::parse(text, raw) {
        return Ok(vec![r]);
    }
    if let Some(r) = splunk::sniff_kv(text, raw, fallback) {
        return Ok(vec![r]);
    }
    Ok(vec![generic::parse(text, raw, fallback)])
}

/// Whether a text could be a complete JSON array, string, number or literal;
/// only such texts are tried as JSON (and rejected) while sniffing.
fn could_be_json_non_object(text: &str) -> bool {
    match text.as_bytes().first() {
        Some(b'[' | b'"' | b'-' | b'0'..=b'9') => true,
        _ => matches!(text, "true" | "false" | "null"),
    }
}

/// Classifies a JSON object: batch envelope, Splunk HEC event, sensor
/// reading, or application JSON.
fn sniff_object(
    obj: &Map<String, Value>,
    raw: &str,
    fallback: DateTime<Utc>,
    nested: bool,
) -> Result<Vec<LogRecord>, ParseError> {
    if matches!(obj.get("data"), Some(Value::Array(_))) {
        if nested {
            return Err(ParseError::TooDeep);
        }
        return batch::parse(obj, fallback);
    }
    if obj.contains_key("event")
        && ["time", "sourcetype", "host"]
            .iter()
            .any(|k| obj.contains_key(*k))
    {
        return one(splunk::parse_hec(obj, raw, fallback));
    }
    if obj.contains_key("sensor_id") {
        return one(sensor::parse(obj, raw, fallback));
    }
    one(json_app::parse(obj, raw, fallback))
}

/// A record with every optional field empty.
fn new_record(
    source_type: SourceType,
    event_time: DateTime<Utc>,
    message: String,
    raw: &str,
) -> LogRecord {
    LogRecord {
        event_time,
        source_type,
        service: None,
        host: None,
        level: None,
        message,
        http: None,
        metrics: BTreeMap::new(),
        attributes: Map::new(),
        raw: raw.to_owned(),
        kafka: None,
    }
}
