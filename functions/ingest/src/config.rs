//! The ingest function's settings, all from environment variables.

use std::time::Duration;

use logpipe_schema::Patterns;

use crate::classify::Limits;

/// | variable | default | meaning |
/// |---|---|---|
/// | `CONSUMER_GROUP` | `logpipe-ingest` | the ESM's consumer group id (key of `ingest_progress`) |
/// | `REPORT_BATCH_ITEM_FAILURES` | `false` | `true` only when the ESM has `FunctionResponseTypes: [ReportBatchItemFailures]` |
/// | `FORWARD_TOPIC` | `log-processing` | where normalized records go; empty disables forwarding |
/// | `DLQ_SUFFIX` | `.dlq` | dead-letter topic = source topic + suffix |
/// | `MAX_RECORD_BYTES` | `262144` | larger values are dead-lettered (`oversized`) |
/// | `MAX_ROWS_PER_RECORD` | `10000` | a record (batch envelope) expanding into more rows is dead-lettered (`too_many_rows`) |
/// | `MAX_ROWS_PER_INVOCATION` | `200000` | records past this many rows are handed back for the next invocation (the first record always fits) |
/// | `MAX_FORWARD_BYTES` | `1000000` | a forwarded record larger than this is sent without `raw` (then with `message` and `attributes` cut), marked `forward_truncated`; the row in `logs` is whole |
/// | `MAX_EVENT_TIME_AHEAD_SECS` | `86400` | event times further ahead of the Kafka timestamp (or before 1970) are replaced by the Kafka timestamp, the original kept in `attributes.event_time_original` |
/// | `LOG_PATTERNS` | — | your own formats: a JSON array of `{name, regex, time_format?, topics?, key_prefixes?, headers?}` (named captures `time`, `level`, `service`, `host`, `message`; any other capture becomes an attribute), tried before the generic fallback; a `log-format` header equal to one of `headers` selects that pattern alone (see shared/schema/FORMATS.md). Invalid patterns fail at init |
/// | `SCHEMA_REGISTRY` | `none` | framed values (Confluent `0x00`, Glue `0x03`) are decoded with schemas from `confluent`, `glue` or `files`; with `none` they are dead-lettered as `schema_unknown` (see `logpipe_registry::RegistrySettings` for `SCHEMA_REGISTRY_URL`, `SCHEMA_REGISTRY_SECRET_ARN`, `SCHEMA_REGISTRY_DIR`, `SCHEMA_CACHE_SIZE`) |
/// | `LOG_PATTERNS_FILE` | — | the same, read from a file (packaged with the function); not together with `LOG_PATTERNS` |
/// | `DLQ_MAX_VALUE_BYTES` | `900000` | larger dead-lettered values are truncated (header `dlq-truncated-from`); keys, headers and the error message are bounded too |
/// | `KAFKA_MESSAGE_TIMEOUT_MS` | `20000` | how long a publish may wait for the broker |
/// | `RUN_MIGRATIONS` | `false` | apply migrations at init instead of only checking the schema version (the database user then needs DDL rights: for a single-user setup, not the least-privilege one) |
/// | `AWS_LAMBDA_FUNCTION_NAME` | `ingest` | named in dead-letter headers |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    pub consumer_group: String,
    pub report_batch_item_failures: bool,
    pub forward_topic: Option<String>,
    pub dlq_suffix: String,
    pub limits: Limits,
    pub max_rows_per_invocation: usize,
    pub max_forward_bytes: usize,
    pub dlq_max_value_bytes: usize,
    pub message_timeout: Duration,
    pub function_name: String,
    pub run_migrations: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("ingest configuration is invalid: {0}")]
pub struct ConfigError(pub String);

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            consumer_group: "logpipe-ingest".into(),
            report_batch_item_failures: false,
            forward_topic: Some("log-processing".into()),
            dlq_suffix: ".dlq".into(),
            limits: Limits::default(),
            max_rows_per_invocation: 200_000,
            max_forward_bytes: 1_000_000,
            dlq_max_value_bytes: 900_000,
            message_timeout: Duration::from_secs(20),
            function_name: "ingest".into(),
            run_migrations: false,
        }
    }
}

impl IngestConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let number = |key: &str, default: u64| -> Result<u64, ConfigError> {
            match get(key) {
                Some(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError(format!("{key}={v:?} is not a number"))),
                _ => Ok(default),
            }
        };
        let flag = |key: &str, default: bool| -> Result<bool, ConfigError> {
            match get(key).as_deref().map(str::trim) {
                None | Some("") => Ok(default),
                Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
                Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
                Some(v) => Err(ConfigError(format!("{key}={v:?}: expected true or false"))),
            }
        };
        let report = flag("REPORT_BATCH_ITEM_FAILURES", d.report_batch_item_failures)?;
        let patterns = user_patterns(&get)?;
        Ok(Self {
            consumer_group: get("CONSUMER_GROUP")
                .filter(|v| !v.is_empty())
                .unwrap_or(d.consumer_group),
            report_batch_item_failures: report,
            forward_topic: match get("FORWARD_TOPIC") {
                Some(t) if t.trim().is_empty() => None,
                Some(t) => Some(t),
                None => d.forward_topic,
            },
            dlq_suffix: get("DLQ_SUFFIX")
                .filter(|v| !v.is_empty())
                .unwrap_or(d.dlq_suffix),
            limits: Limits {
                max_record_bytes: number("MAX_RECORD_BYTES", d.limits.max_record_bytes as u64)?
                    as usize,
                max_rows_per_record: number(
                    "MAX_ROWS_PER_RECORD",
                    d.limits.max_rows_per_record as u64,
                )?
                .max(1) as usize,
                max_event_time_ahead: chrono::Duration::seconds(
                    number(
                        "MAX_EVENT_TIME_AHEAD_SECS",
                        d.limits.max_event_time_ahead.num_seconds() as u64,
                    )?
                    .min(i32::MAX as u64) as i64,
                ),
                patterns: std::sync::Arc::new(patterns),
            },
            max_rows_per_invocation: number(
                "MAX_ROWS_PER_INVOCATION",
                d.max_rows_per_invocation as u64,
            )?
            .max(1) as usize,
            max_forward_bytes: number("MAX_FORWARD_BYTES", d.max_forward_bytes as u64)?.max(4096)
                as usize,
            dlq_max_value_bytes: number("DLQ_MAX_VALUE_BYTES", d.dlq_max_value_bytes as u64)?
                as usize,
            message_timeout: Duration::from_millis(number(
                "KAFKA_MESSAGE_TIMEOUT_MS",
                d.message_timeout.as_millis() as u64,
            )?),
            function_name: get("AWS_LAMBDA_FUNCTION_NAME")
                .filter(|v| !v.is_empty())
                .unwrap_or(d.function_name),
            run_migrations: flag("RUN_MIGRATIONS", d.run_migrations)?,
        })
    }
}

/// `LOG_PATTERNS` (JSON) or `LOG_PATTERNS_FILE` (a file holding the same):
/// refused at init, naming the variable and the pattern, when invalid.
fn user_patterns(get: &impl Fn(&str) -> Option<String>) -> Result<Patterns, ConfigError> {
    let inline = get("LOG_PATTERNS").filter(|v| !v.trim().is_empty());
    let file = get("LOG_PATTERNS_FILE").filter(|v| !v.trim().is_empty());
    let (source, json) = match (inline, file) {
        (None, None) => return Ok(Patterns::default()),
        (Some(_), Some(_)) => {
            return Err(ConfigError(
                "set LOG_PATTERNS or LOG_PATTERNS_FILE, not both".into(),
            ));
        }
        (Some(json), None) => ("LOG_PATTERNS".to_string(), json),
        (None, Some(path)) => {
            let json = std::fs::read_to_string(path.trim())
                .map_err(|e| ConfigError(format!("LOG_PATTERNS_FILE={path}: {e}")))?;
            (format!("LOG_PATTERNS_FILE={path}"), json)
        }
    };
    Patterns::from_json(&json).map_err(|e| ConfigError(format!("{source}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = IngestConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c, IngestConfig::default());
        let c = IngestConfig::from_lookup(|k| match k {
            "REPORT_BATCH_ITEM_FAILURES" => Some("TRUE".into()),
            "FORWARD_TOPIC" => Some("".into()),
            "MAX_RECORD_BYTES" => Some("10".into()),
            _ => None,
        })
        .unwrap();
        assert!(c.report_batch_item_failures);
        assert_eq!(c.forward_topic, None);
        assert_eq!(c.limits.max_record_bytes, 10);
        assert!(IngestConfig::from_lookup(|k| (k == "REPORT_BATCH_ITEM_FAILURES").then(|| "yes".into())).is_err());
        assert!(
            IngestConfig::from_lookup(|k| (k == "MAX_RECORD_BYTES").then(|| "big".into())).is_err()
        );
    }

    #[test]
    fn user_patterns_from_json_or_file() {
        let json = r#"[{"name":"door","regex":"^DOOR (?P<host>\\S+) (?P<message>.*)$"}]"#;
        let c = IngestConfig::from_lookup(|k| (k == "LOG_PATTERNS").then(|| json.into())).unwrap();
        assert_eq!(c.limits.patterns.len(), 1);
        let path =
            std::env::temp_dir().join(format!("logpipe-patterns-{}.json", std::process::id()));
        std::fs::write(&path, json).unwrap();
        let file = path.to_string_lossy().to_string();
        let c = IngestConfig::from_lookup(|k| (k == "LOG_PATTERNS_FILE").then(|| file.clone()))
            .unwrap();
        assert_eq!(c.limits.patterns.len(), 1);
        let both = IngestConfig::from_lookup(|k| match k {
            "LOG_PATTERNS" => Some(json.into()),
            "LOG_PATTERNS_FILE" => Some(file.clone()),
            _ => None,
        });
        assert!(both.unwrap_err().0.contains("not both"));
        std::fs::remove_file(&path).unwrap();
        for (k, v, says) in [
            (
                "LOG_PATTERNS",
                r#"[{"name":"x","regex":"("}]"#,
                "LOG_PATTERNS: pattern \"x\"",
            ),
            (
                "LOG_PATTERNS",
                "not json",
                "LOG_PATTERNS: pattern configuration is not valid JSON",
            ),
            (
                "LOG_PATTERNS_FILE",
                "/nonexistent/patterns.json",
                "LOG_PATTERNS_FILE=/nonexistent",
            ),
        ] {
            let e = IngestConfig::from_lookup(|key| (key == k).then(|| v.to_string())).unwrap_err();
            assert!(e.0.contains(says), "{k}={v}: {e}");
        }
    }
}
