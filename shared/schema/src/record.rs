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
    /// Reads a normalized record's JSON as detection needs it: `raw` is
    /// skipped (detection never reads it) and of `attributes` only
    /// [`KAFKA_KEY_ATTRIBUTE`] is kept (what [`LogRecord::entity`] reads).
    /// The two are about half of a forward's bytes, and building them was
    /// most of detect's decoding. Of `http`, the text fields (method, path,
    /// protocol, referrer, user agent) are checked but left `None`:
    /// detection reads only the status, bytes and latency. Accepts and
    /// refuses exactly what the full `Deserialize` does.
    pub fn from_json_for_detection(json: &[u8]) -> serde_json::Result<LogRecord> {
        #[derive(Deserialize)]
        struct Lean {
            event_time: DateTime<Utc>,
            source_type: SourceType,
            service: Option<String>,
            host: Option<String>,
            level: Option<Level>,
            message: String,
            http: Option<LeanHttp>,
            metrics: BTreeMap<String, f64>,
            attributes: KafkaKeyOnly,
            #[allow(dead_code)]
            raw: serde::de::IgnoredAny,
            kafka: Option<KafkaCoordinates>,
        }
        let lean: Lean = match std::str::from_utf8(json) {
            Ok(text) => serde_json::from_str(text)?,
            Err(_) => serde_json::from_slice(json)?,
        };
        Ok(LogRecord {
            event_time: lean.event_time,
            source_type: lean.source_type,
            service: lean.service,
            host: lean.host,
            level: lean.level,
            message: lean.message,
            http: lean.http.map(|h| HttpFields {
                status: h.status,
                bytes: h.bytes,
                client_ip: h.client_ip,
                latency_ms: h.latency_ms,
                ..HttpFields::default()
            }),
            metrics: lean.metrics,
            attributes: lean.attributes.0,
            raw: String::new(),
            kafka: lean.kafka,
        })
    }

    /// The entity a record is attributed to: the sensor id (host) for sensor
    /// records, otherwise the service, falling back to the host. A record that
    /// names neither is attributed to its Kafka key (kept by ingest in the
    /// [`KAFKA_KEY_ATTRIBUTE`] attribute: producers commonly key by system),
    /// then to its topic, and only then to "unknown". Blank names are skipped.
    pub fn entity(&self) -> String {
        self.entity_name().to_string()
    }

    /// [`LogRecord::entity`], borrowed from the record (no allocation).
    pub fn entity_name(&self) -> &str {
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
    }
}

/// [`HttpFields`] as detection reads them: the text fields are checked to be
/// strings (or null) and not kept.
#[derive(Deserialize)]
#[allow(dead_code)]
struct LeanHttp {
    method: Option<UnkeptString>,
    path: Option<UnkeptString>,
    protocol: Option<UnkeptString>,
    status: Option<u16>,
    bytes: Option<i64>,
    referrer: Option<UnkeptString>,
    user_agent: Option<UnkeptString>,
    client_ip: Option<IpAddr>,
    latency_ms: Option<f64>,
}

/// An attributes object reduced to its [`KAFKA_KEY_ATTRIBUTE`] entry; every
/// other value is skipped unbuilt (but must still be valid JSON).
struct KafkaKeyOnly(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for KafkaKeyOnly {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = KafkaKeyOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KafkaKeyOnly, A::Error> {
                let mut kept = serde_json::Map::new();
                while let Some(name) = map.next_key::<UnkeptString>()? {
                    if name.is_kafka_key {
                        kept.insert(KAFKA_KEY_ATTRIBUTE.to_string(), map.next_value()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(KafkaKeyOnly(kept))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A JSON string read without allocating and then forgotten, but for
/// whether it is [`KAFKA_KEY_ATTRIBUTE`] (asked of attribute names).
struct UnkeptString {
    is_kafka_key: bool,
}

impl<'de> Deserialize<'de> for UnkeptString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = UnkeptString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<UnkeptString, E> {
                Ok(UnkeptString {
                    is_kafka_key: text == KAFKA_KEY_ATTRIBUTE,
                })
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

#[cfg(test)]
mod detection_decode_tests {
    use super::*;

    fn full_json() -> serde_json::Value {
        serde_json::json!({
            "event_time": "2026-11-22T10:00:00Z",
            "source_type": "app_json",
            "service": null,
            "host": "web-1",
            "level": "error",
            "message": "payment \"declined\" for order 7",
            "http": {"method": "GET", "path": "/pay", "protocol": null, "status": 502, "bytes": 10,
                     "referrer": null, "user_agent": null, "client_ip": "10.0.0.1", "latency_ms": 12.5},
            "metrics": {"duration_ms": 3.25},
            "attributes": {"trace_id": "ab", "nested": {"a": [1, 2, {"b": null}]},
                           "kafka_key": "checkout", "user": "u-1"},
            "raw": "{\"level\":\"error\",\"msg\":\"x\"}",
            "kafka": {"topic": "log-processing", "partition": 2, "offset": 9, "seq": 0, "timestamp_ms": 1}
        })
    }

    #[test]
    fn detection_decode_equals_the_full_decode_without_raw_and_other_attributes() {
        let json = serde_json::to_vec(&full_json()).unwrap();
        let mut full: LogRecord = serde_json::from_slice(&json).unwrap();
        let lean = LogRecord::from_json_for_detection(&json).unwrap();
        assert_eq!(lean.raw, "");
        assert_eq!(lean.attributes.len(), 1);
        assert_eq!(lean.entity(), full.entity());
        full.raw.clear();
        full.attributes.retain(|k, _| k == KAFKA_KEY_ATTRIBUTE);
        let http = full.http.as_mut().unwrap();
        assert!(http.method.is_some() && http.path.is_some());
        (http.method, http.path, http.protocol) = (None, None, None);
        (http.referrer, http.user_agent) = (None, None);
        assert_eq!(lean, full);
    }

    #[test]
    fn detection_decode_refuses_what_the_full_decode_refuses() {
        let cases: Vec<serde_json::Value> = vec![
            {
                let mut v = full_json();
                v.as_object_mut().unwrap().remove("raw");
                v
            },
            {
                let mut v = full_json();
                v["attributes"] = serde_json::json!([1, 2]);
                v
            },
            {
                let mut v = full_json();
                v["event_time"] = serde_json::json!("yesterday");
                v
            },
            {
                let mut v = full_json();
                v["http"]["path"] = serde_json::json!(42);
                v
            },
            {
                let mut v = full_json();
                v["http"]["client_ip"] = serde_json::json!("not an address");
                v
            },
            {
                let mut v = full_json();
                v["http"]["status"] = serde_json::json!(70000);
                v
            },
        ];
        for case in cases {
            let json = serde_json::to_vec(&case).unwrap();
            assert!(serde_json::from_slice::<LogRecord>(&json).is_err());
            assert!(LogRecord::from_json_for_detection(&json).is_err(), "{case}");
        }
        // Invalid JSON inside a skipped attribute is refused too.
        let text = String::from_utf8(serde_json::to_vec(&full_json()).unwrap()).unwrap();
        let broken = text.replace("\"user\":\"u-1\"", "\"user\":tru");
        assert_ne!(broken, text);
        assert!(LogRecord::from_json_for_detection(broken.as_bytes()).is_err());
    }
}
