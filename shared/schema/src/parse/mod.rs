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

mod applog;
mod aws;
mod batch;
mod cef;
mod cloudwatch;
mod error_log;
mod fields;
mod generic;
mod json_app;
mod level;
mod logfmt;
pub mod patterns;
mod sap;
mod sensor;
mod splunk;
mod stamp;
mod syslog;
mod syslog_file;
mod text;
mod time;
mod useragent;
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
    /// Syslog as written to files (no `<PRI>`): messages, auth.log, macOS system.log.
    SyslogFile,
    /// log4j / logback / Spark / Hadoop text layouts.
    Log4j,
    Python,
    GoLog,
    Slog,
    Logcat,
    NginxError,
    ApacheError,
    Logfmt,
    Cef,
    Klog,
    AwsAlb,
    AwsElb,
    VpcFlow,
    /// CloudWatch Logs subscription message (gzip+base64 or decoded JSON).
    CloudWatch,
}

impl Format {
    /// Every format, in documentation order.
    pub const ALL: [Format; 27] = [
        Format::AppJson,
        Format::WebAccess,
        Format::SplunkHec,
        Format::SplunkKv,
        Format::Splunk,
        Format::Sap,
        Format::Sensor,
        Format::Batch,
        Format::Syslog,
        Format::Syslog5424,
        Format::Syslog3164,
        Format::Text,
        Format::SyslogFile,
        Format::Log4j,
        Format::Python,
        Format::GoLog,
        Format::Slog,
        Format::Logcat,
        Format::NginxError,
        Format::ApacheError,
        Format::Logfmt,
        Format::Cef,
        Format::Klog,
        Format::AwsAlb,
        Format::AwsElb,
        Format::VpcFlow,
        Format::CloudWatch,
    ];

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
            "syslog-file" | "messages" | "auth-log" | "secure" | "macos-syslog"
            | "rsyslog-file" => Format::SyslogFile,
            "log4j" | "log4j2" | "logback" | "java" | "spark" | "hadoop" => Format::Log4j,
            "python" | "python-logging" => Format::Python,
            "go-log" | "golog" => Format::GoLog,
            "slog" | "go-slog" => Format::Slog,
            "logcat" | "android" => Format::Logcat,
            "nginx-error" => Format::NginxError,
            "apache-error" | "httpd-error" => Format::ApacheError,
            "logfmt" => Format::Logfmt,
            "cef" => Format::Cef,
            "klog" | "glog" => Format::Klog,
            "aws-alb" | "alb" => Format::AwsAlb,
            "aws-elb" | "elb" => Format::AwsElb,
            "vpc-flow" | "vpc-flow-log" => Format::VpcFlow,
            "cloudwatch" | "cloudwatch-logs" => Format::CloudWatch,
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
            Format::SyslogFile => syslog_file::FORMAT,
            Format::Log4j => applog::LOG4J,
            Format::Python => applog::PYTHON,
            Format::GoLog => applog::GO_LOG,
            Format::Slog => logfmt::SLOG,
            Format::Logcat => applog::LOGCAT,
            Format::NginxError => error_log::NGINX,
            Format::ApacheError => error_log::APACHE,
            Format::Logfmt => logfmt::LOGFMT,
            Format::Cef => cef::FORMAT,
            Format::Klog => applog::KLOG,
            Format::AwsAlb => aws::ALB,
            Format::AwsElb => aws::ELB,
            Format::VpcFlow => aws::VPC,
            Format::CloudWatch => cloudwatch::FORMAT,
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
/// Returns one record, or several for a batch or CloudWatch envelope (none
/// for a CloudWatch control message: see [`parse_counted`]). Never panics on
/// any input.
pub fn parse(
    value: &str,
    format_header: Option<&str>,
    fallback_time: DateTime<Utc>,
) -> Result<Vec<LogRecord>, ParseError> {
    parse_counted(value, format_header, fallback_time).map(|p| p.records)
}

/// What [`parse_counted`] returns: the records, and how many CloudWatch
/// control messages were dropped (they carry no log data; a caller should
/// count them, not dead-letter them).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub records: Vec<LogRecord>,
    pub control_messages: usize,
}

impl From<Vec<LogRecord>> for Parsed {
    fn from(records: Vec<LogRecord>) -> Self {
        Parsed {
            records,
            control_messages: 0,
        }
    }
}

/// [`parse`], also reporting dropped CloudWatch control messages.
pub fn parse_counted(
    value: &str,
    format_header: Option<&str>,
    fallback_time: DateTime<Utc>,
) -> Result<Parsed, ParseError> {
    parse_with(
        value,
        format_header,
        fallback_time,
        &patterns::Selected::NONE,
    )
}

/// [`parse_counted`] with user-defined patterns (tried before the generic
/// fallback, or alone when a pattern is selected by header).
pub fn parse_with(
    value: &str,
    format_header: Option<&str>,
    fallback_time: DateTime<Utc>,
    patterns: &patterns::Selected<'_>,
) -> Result<Parsed, ParseError> {
    let mut parsed = parse_any(value, format_header, fallback_time, patterns)?;
    for r in &mut parsed.records {
        r.event_time = without_leap_second(r.event_time);
    }
    Ok(parsed)
}

/// A leap second (`:60`, which chrono holds as a second past 999,999,999
/// nanoseconds) becomes the last microsecond of its minute: PostgreSQL has
/// no leap seconds and would store the next minute instead.
fn without_leap_second(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    if t.nanosecond() < 1_000_000_000 {
        return t;
    }
    t.with_nanosecond(999_999_000).unwrap_or(t)
}

fn parse_any(
    value: &str,
    format_header: Option<&str>,
    fallback_time: DateTime<Utc>,
    patterns: &patterns::Selected<'_>,
) -> Result<Parsed, ParseError> {
    let text = clean(value);
    if text.is_empty() {
        return Err(ParseError::EmptyValue);
    }
    if let Some(h) = format_header
        && let Some(p) = patterns.by_header(h)
    {
        return p.parse(text, value, fallback_time).map(|r| vec![r].into());
    }
    let format = match format_header {
        None => None,
        Some(h) => Some(
            Format::from_header(h)
                .ok_or_else(|| ParseError::UnknownFormat(text::truncate(h, 64).to_owned()))?,
        ),
    };
    match format {
        None => sniff_top(text, value, fallback_time, patterns),
        Some(Format::CloudWatch) => {
            let obj = if cloudwatch::looks_encoded(text) || !text.starts_with('{') {
                cloudwatch::decode(text)?
            } else {
                json_object(text)?
            };
            cloudwatch_rows(&obj, fallback_time)
        }
        Some(f) => parse_as(f, text, value, fallback_time).map(Parsed::from),
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
        Format::SyslogFile => one(syslog_file::parse(text, raw, fallback)),
        Format::Log4j => one(applog::parse_log4j(text, raw, fallback)),
        Format::Python => one(applog::parse_python(text, raw, fallback)),
        Format::GoLog => one(applog::parse_go_log(text, raw, fallback)),
        Format::Slog => one(logfmt::parse_slog(text, raw, fallback)),
        Format::Logcat => one(applog::parse_logcat(text, raw, fallback)),
        Format::NginxError => one(error_log::parse_nginx(text, raw, fallback)),
        Format::ApacheError => one(error_log::parse_apache(text, raw, fallback)),
        Format::Logfmt => one(logfmt::parse_logfmt(text, raw, fallback)),
        Format::Cef => one(cef::parse(text, raw, fallback)),
        Format::Klog => one(applog::parse_klog(text, raw, fallback)),
        Format::AwsAlb => one(aws::parse_alb(text, raw)),
        Format::AwsElb => one(aws::parse_elb(text, raw)),
        Format::VpcFlow => one(aws::parse_vpc(text, raw)),
        Format::CloudWatch => cloudwatch_rows(&json_object(text)?, fallback).map(|p| p.records),
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

fn cloudwatch_rows(
    obj: &Map<String, Value>,
    fallback: DateTime<Utc>,
) -> Result<Parsed, ParseError> {
    let e = cloudwatch::expand(obj, fallback)?;
    Ok(Parsed {
        records: e.records,
        control_messages: e.control_messages,
    })
}

/// Sniffing of a whole Kafka record value: CloudWatch envelopes (which hold
/// other records) and user patterns, around [`sniff`].
fn sniff_top(
    text: &str,
    raw: &str,
    fallback: DateTime<Utc>,
    patterns: &patterns::Selected<'_>,
) -> Result<Parsed, ParseError> {
    if cloudwatch::looks_encoded(text)
        && let Ok(obj) = cloudwatch::decode(text)
        && cloudwatch::is_envelope(&obj)
    {
        return cloudwatch_rows(&obj, fallback);
    }
    if text.starts_with('{') {
        let obj = json_object(text)?;
        if cloudwatch::is_envelope(&obj) {
            return cloudwatch_rows(&obj, fallback);
        }
        return sniff_object(&obj, raw, fallback, false).map(Parsed::from);
    }
    match sniff_text(text, raw, fallback)? {
        Some(r) => Ok(vec![r].into()),
        None => {
            if let Some(r) = patterns.try_all(text, raw, fallback) {
                return Ok(vec![r].into());
            }
            Ok(vec![generic::parse(text, raw, fallback)].into())
        }
    }
}

/// Format detection for a value without a `log-format` header (and for batch
/// and CloudWatch elements). `nested` is true inside a batch envelope.
fn sniff(
    text: &str,
    raw: &str,
    fallback: DateTime<Utc>,
    nested: bool,
) -> Result<Vec<LogRecord>, ParseError> {
    if text.starts_with('{') {
        return sniff_object(&json_object(text)?, raw, fallback, nested);
    }
    Ok(vec![
        sniff_text(text, raw, fallback)?.unwrap_or_else(|| generic::parse(text, raw, fallback)),
    ])
}

/// Text formats, first that accepts the line wins; `None` → generic.
fn sniff_text(
    text: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<Option<LogRecord>, ParseError> {
    if could_be_json_non_object(text)
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        return Err(ParseError::schema(
            None,
            format!("expected a JSON object, got {}", json_kind(&v)),
        ));
    }
    if let Some(r) = syslog::sniff(text, raw, fallback) {
        return Ok(Some(r));
    }
    if let Ok(r) = web_access::parse(text, raw) {
        return Ok(Some(r));
    }
    if let Ok(r) = sap::parse(text, raw) {
        return Ok(Some(r));
    }
    if let Some(r) = sniff_new_text(text, raw, fallback) {
        return Ok(Some(r));
    }
    if let Some(r) = splunk::sniff_kv(text, raw, fallback) {
        return Ok(Some(r));
    }
    Ok(None)
}

/// The text formats added after the ones above, dispatched on the first
/// byte and the leading timestamp's layout so a line tries at most a few
/// parsers. Each is strict: a line that fails them all goes on to Splunk
/// key=value and generic text exactly as before.
fn sniff_new_text(text: &str, raw: &str, fallback: DateTime<Utc>) -> Option<LogRecord> {
    type P = fn(&str, &str, DateTime<Utc>) -> Result<LogRecord, ParseError>;
    let first = *text.as_bytes().first()?;
    let try_all = |parsers: &[P]| parsers.iter().find_map(|p| p(text, raw, fallback).ok());
    let alb: P = |t, r, _| aws::parse_alb(t, r);
    let elb: P = |t, r, _| aws::parse_elb(t, r);
    let vpc: P = |t, r, _| aws::parse_vpc(t, r);
    match first {
        b'C' if text.starts_with("CEF:") => cef::parse(text, raw, fallback).ok(),
        b'2' if text.starts_with("2 ") => vpc(text, raw, fallback).ok(),
        b'0'..=b'9' => {
            let l = stamp::leading(text, fallback)?;
            match l.layout {
                // `<ISO time> key=value …` (Splunk key=value, the common
                // path): none of these takes a `key=` second field.
                stamp::Layout::Iso
                    if text.as_bytes().get(10) == Some(&b'T') && second_field_is_kv(text) =>
                {
                    None
                }
                stamp::Layout::Iso if text.as_bytes().get(10) == Some(&b'T') => try_all(&[
                    elb,
                    cef::parse,
                    syslog_file::parse,
                    applog::parse_log4j,
                    applog::parse_python,
                ]),
                stamp::Layout::Iso => try_all(&[applog::parse_log4j, applog::parse_python]),
                stamp::Layout::SlashYear4 => {
                    try_all(&[error_log::parse_nginx, applog::parse_go_log])
                }
                stamp::Layout::MonthDay => applog::parse_logcat(text, raw, fallback).ok(),
                stamp::Layout::SlashYear2 | stamp::Layout::Compact | stamp::Layout::TimeOnly => {
                    applog::parse_log4j(text, raw, fallback).ok()
                }
                _ => None,
            }
        }
        b'[' => error_log::parse_apache(text, raw, fallback).ok(),
        b'h' | b'w' | b'g' if aws::looks_like_alb(text) => alb(text, raw, fallback).ok(),
        b't' if logfmt::is_slog(text) => logfmt::parse_slog(text, raw, fallback).ok(),
        b't' if logfmt::sniff(text) => logfmt::parse_logfmt(text, raw, fallback).ok(),
        b'A'..=b'Z' => {
            if matches!(first, b'I' | b'W' | b'E' | b'F')
                && text.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
            {
                return applog::parse_klog(text, raw, fallback).ok();
            }
            if text.as_bytes().get(3) == Some(&b' ') {
                return try_all(&[cef::parse, syslog_file::parse]);
            }
            applog::parse_python(text, raw, fallback).ok()
        }
        _ => None,
    }
}

/// Whether the second space-separated field of `text` is `key=value`.
fn second_field_is_kv(text: &str) -> bool {
    text.split(' ')
        .nth(1)
        .is_some_and(|f| f.find('=').is_some_and(|i| i > 0))
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
    if !nested && cloudwatch::is_envelope(obj) {
        return cloudwatch_rows(obj, fallback).map(|p| p.records);
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
