//! The normalized record every log format becomes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The attribute in which ingest keeps a record's Kafka key (UTF-8 text,
/// when the log names no service or host): detection attributes such a
/// record to the system its producer keyed it by.
pub const KAFKA_KEY_ATTRIBUTE: &str = "kafka_key";

/// Where a record sits on Kafka. One Kafka record may expand into several
/// log records (batch envelopes), told apart by `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KafkaCoordinates {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Position inside the Kafka record (0 unless the record was a batch envelope).
    pub seq: i32,
    /// The Kafka record's own timestamp, in milliseconds since the epoch.
    pub timestamp_ms: i64,
}

impl KafkaCoordinates {
    /// Stable record id: the same Kafka record always yields the same id,
    /// so downstream consumers can deduplicate replays.
    pub fn record_id(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.topic, self.partition, self.offset, self.seq
        )
    }
}

/// Which format a record was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    AppJson,
    WebAccess,
    SplunkHec,
    SplunkKv,
    SapSyslog,
    Sensor,
    Syslog5424,
    Syslog3164,
    SyslogFile,
    Log4j,
    PythonLogging,
    GoLog,
    GoSlog,
    Logcat,
    NginxError,
    ApacheError,
    Logfmt,
    Cef,
    Klog,
    AwsAlb,
    AwsElb,
    VpcFlow,
    Pattern,
    Generic,
}

impl SourceType {
    pub const ALL: [SourceType; 24] = [
        SourceType::AppJson,
        SourceType::WebAccess,
        SourceType::SplunkHec,
        SourceType::SplunkKv,
        SourceType::SapSyslog,
        SourceType::Sensor,
        SourceType::Syslog5424,
        SourceType::Syslog3164,
        SourceType::SyslogFile,
        SourceType::Log4j,
        SourceType::PythonLogging,
        SourceType::GoLog,
        SourceType::GoSlog,
        SourceType::Logcat,
        SourceType::NginxError,
        SourceType::ApacheError,
        SourceType::Logfmt,
        SourceType::Cef,
        SourceType::Klog,
        SourceType::AwsAlb,
        SourceType::AwsElb,
        SourceType::VpcFlow,
        SourceType::Pattern,
        SourceType::Generic,
    ];

    /// The name stored in the `source_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::AppJson => "app_json",
            SourceType::WebAccess => "web_access",
            SourceType::SplunkHec => "splunk_hec",
            SourceType::SplunkKv => "splunk_kv",
            SourceType::SapSyslog => "sap_syslog",
            SourceType::Sensor => "sensor",
            SourceType::Syslog5424 => "syslog5424",
            SourceType::Syslog3164 => "syslog3164",
            SourceType::SyslogFile => "syslog_file",
            SourceType::Log4j => "log4j",
            SourceType::PythonLogging => "python_logging",
            SourceType::GoLog => "go_log",
            SourceType::GoSlog => "go_slog",
            SourceType::Logcat => "logcat",
            SourceType::NginxError => "nginx_error",
            SourceType::ApacheError => "apache_error",
            SourceType::Logfmt => "logfmt",
            SourceType::Cef => "cef",
            SourceType::Klog => "klog",
            SourceType::AwsAlb => "aws_alb",
            SourceType::AwsElb => "aws_elb",
            SourceType::VpcFlow => "vpc_flow",
            SourceType::Pattern => "pattern",
            SourceType::Generic => "generic",
        }
    }
}

/// Normalized severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Notice,
    Warn,
    Error,
    Critical,
    Fatal,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Fatal => "fatal",
        }
    }
}

/// Fields of an HTTP request, filled for web access logs (and for app/Splunk
/// events that carry them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpFields {
    pub method: Option<String>,
    pub path: Option<String>,
    pub protocol: Option<String>,
    pub status: Option<u16>,
    pub bytes: Option<i64>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub latency_ms: Option<f64>,
}

/// One normalized log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When the event happened (from the log itself; the Kafka timestamp when
    /// the log carries none).
    pub event_time: DateTime<Utc>,
    pub source_type: SourceType,
    pub service: Option<String>,
    pub host: Option<String>,
    pub level: Option<Level>,
    pub message: String,
    pub http: Option<HttpFields>,
    /// Numeric measurements (sensor readings, durations, counters).
    pub metrics: BTreeMap<String, f64>,
    /// Everything else the format carried, as JSON values.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// The original text this record was parsed from (for a batch element,
    /// the element's JSON).
    pub raw: String,
    /// Set by the ingest path once the record's Kafka origin is known.
    pub kafka: Option<KafkaCoordinates>,
}

impl LogRecord {
    /// The entity a record is attributed to: the sensor id (host) for sensor
    /// records, otherwise the service, falling back to the host. A record that
    /// names neither is attributed to its Kafka key (kept by ingest in the
    /// [`KAFKA_KEY_ATTRIBUTE`] attribute: producers commonly key by system),
    /// then to its topic, and only then to "unknown". Blank names are skipped.
    pub fn entity(&self) -> String {
        let record = self;
        fn named(s: &Option<String>) -> Option<&str> {
            s.as_deref().filter(|s| !s.trim().is_empty())
        }
        let (first, second) = if record.source_type == SourceType::Sensor {
            (&record.host, &record.service)
        } else {
            (&record.service, &record.host)
        };
        named(first)
            .or_else(|| named(second))
            .or_else(|| {
                record
                    .attributes
                    .get(KAFKA_KEY_ATTRIBUTE)
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.trim().is_empty())
            })
            .or_else(|| {
                record
                    .kafka
                    .as_ref()
                    .map(|k| k.topic.as_str())
                    .filter(|s| !s.trim().is_empty())
            })
            .unwrap_or("unknown")
            .to_string()
    }
}
