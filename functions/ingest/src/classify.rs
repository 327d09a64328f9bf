//! Turning one event record into rows or a poison verdict. Pure: no IO.

use chrono::{DateTime, Utc};
use logpipe_kafka::InputRecord;
use std::sync::Arc;

use logpipe_schema::{KafkaCoordinates, LogRecord, Patterns, parse_with};

/// What one Kafka record becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Normalized rows (one, or several for a batch envelope).
    Rows(Vec<LogRecord>),
    /// Can never succeed: dead-letter it.
    Poison(Poison),
    /// Carries no log at all (a CloudWatch Logs control message): nothing
    /// to store or forward; counted in the summary's `control_messages`.
    Control,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// Stable machine name, sent as the `dlq-error-class` header.
    pub class: &'static str,
    pub message: String,
}

impl Poison {
    fn new(class: &'static str, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

/// What one record may be, each limit with its own dead-letter class or
/// documented behaviour, and the user's own formats it is read with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Larger values are dead-lettered (`oversized`).
    pub max_record_bytes: usize,
    /// A record (a batch envelope) that expands into more rows is
    /// dead-lettered (`too_many_rows`).
    pub max_rows_per_record: usize,
    /// Event times later than the Kafka timestamp plus this, or before
    /// 1970, are not believed: the row keeps the Kafka timestamp as its
    /// event time and the original in `attributes.event_time_original`
    /// (a clock or parse error must neither lose the log nor skew every
    /// time-based view and detector).
    pub max_event_time_ahead: chrono::Duration,
    /// User patterns (`LOG_PATTERNS` / `LOG_PATTERNS_FILE`), tried before
    /// the generic fallback or alone when a `log-format` header names one.
    pub patterns: Arc<Patterns>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: 256 * 1024,
            max_rows_per_record: 10_000,
            max_event_time_ahead: chrono::Duration::days(1),
            patterns: Arc::default(),
        }
    }
}

/// Classifies a whole batch, on every available core for large batches
/// (Lambda gives 2+ vCPUs from 1,769 MB of memory). Order is preserved.
pub fn classify_all(records: &[InputRecord], limits: &Limits) -> Vec<Verdict> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || records.len() < 2_000 {
        return records.iter().map(|r| classify(r, limits)).collect();
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|r| classify(r, limits)).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(verdicts) => verdicts,
                // classify never panics on input; if it somehow did, re-raise.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Decodes, checks and parses one record.
pub fn classify(record: &InputRecord, limits: &Limits) -> Verdict {
    match rows_of(record, limits) {
        Ok(rows) if rows.is_empty() => Verdict::Control,
        Ok(rows) => Verdict::Rows(rows),
        Err(p) => Verdict::Poison(p),
    }
}

fn rows_of(record: &InputRecord, limits: &Limits) -> Result<Vec<LogRecord>, Poison> {
    let max_record_bytes = limits.max_record_bytes;
    if let Some(e) = &record.error {
        return Err(Poison::new(e.class, e.message.clone()));
    }
    let Some(bytes) = record.value.as_deref() else {
        return Err(Poison::new(
            "tombstone",
            "record value is null (a tombstone): there is no log to store",
        ));
    };
    if bytes.len() > max_record_bytes {
        return Err(Poison::new(
            "oversized",
            format!(
                "record value is {} bytes, over the limit of {max_record_bytes}",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Poison::new(
            "invalid_utf8",
            format!("record value is not valid UTF-8: {e}"),
        )
    })?;
    // PostgreSQL text and jsonb cannot hold U+0000: storing it would fail the
    // whole batch, so such a record is set aside instead.
    // JSON is whatever starts with `{` once the parser's cleaning (whitespace,
    // leading byte order marks) is done.
    let json_like = text
        .trim_start()
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{');
    if text.contains('\0') || (json_like && has_nul_escape(text)) {
        return Err(Poison::new(
            "nul_character",
            "record value contains a NUL character, which PostgreSQL cannot store",
        ));
    }
    let format = match record.header("log-format") {
        Some(h) => Some(std::str::from_utf8(h).map_err(|_| {
            Poison::new("unknown_format", "the log-format header is not valid UTF-8")
        })?),
        None => None,
    };
    // A Kafka timestamp before 1970 (or none) is no time either: the epoch
    // stands in, so every row has a time PostgreSQL can store.
    let kafka_time = DateTime::from_timestamp_millis(record.timestamp_ms)
        .filter(|t| *t >= DateTime::UNIX_EPOCH)
        .unwrap_or(DateTime::UNIX_EPOCH);
    let key_text = record.key.as_deref().and_then(entity_key);
    let patterns = limits.patterns.select(Some(&record.topic), key_text);
    let mut rows = parse_with(text, format, kafka_time, &patterns)
        .map_err(|e| Poison::new(e.class(), e.to_string()))?
        .records;
    if rows.len() > limits.max_rows_per_record {
        return Err(Poison::new(
            "too_many_rows",
            format!(
                "record expands into {} rows, over the limit of {}",
                rows.len(),
                limits.max_rows_per_record
            ),
        ));
    }
    let latest = kafka_time
        .checked_add_signed(limits.max_event_time_ahead)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    // Formats without a service field (access logs, syslog) may be named
    // by the producer in a `service` header.
    let service_header = record
        .header("service")
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(str::trim)
        // (a NUL would make PostgreSQL refuse the row: such a header is ignored)
        .filter(|s| !s.is_empty() && !s.contains('\0'));
    for (seq, row) in rows.iter_mut().enumerate() {
        if row.event_time > latest || row.event_time < DateTime::UNIX_EPOCH {
            row.attributes.insert(
                "event_time_original".into(),
                serde_json::Value::String(row.event_time.to_rfc3339()),
            );
            row.event_time = kafka_time;
        }
        if row.service.is_none() {
            row.service = service_header.map(str::to_string);
        }
        // A row that names no system keeps the Kafka key its producer chose
        // (commonly the system's name): detection attributes it to that.
        if row.service.is_none()
            && row.host.is_none()
            && let Some(key) = key_text
        {
            row.attributes.insert(
                logpipe_schema::KAFKA_KEY_ATTRIBUTE.into(),
                serde_json::Value::String(key.to_string()),
            );
        }
        // Which registry schema the mapping validated the record against.
        for (name, schema) in [
            ("key_schema", &record.key_schema),
            ("value_schema", &record.value_schema),
        ] {
            if let Some(schema) = schema {
                row.attributes
                    .insert(name.into(), serde_json::Value::Object(schema.clone()));
            }
        }
        // The value is fine; keep the fact that the key was not.
        if let Some(k) = &record.key_error {
            row.attributes.insert(
                logpipe_kafka::event::KEY_UNDECODABLE_ATTRIBUTE.into(),
                serde_json::json!({"class": k.class, "message": k.message}),
            );
        }
        row.kafka = Some(KafkaCoordinates {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            seq: seq as i32,
            timestamp_ms: record.timestamp_ms,
        });
    }
    Ok(rows)
}

/// A Kafka key usable as an entity name: UTF-8, 1–256 bytes after trimming,
/// no control characters (a binary or hashed key names nothing).
fn entity_key(key: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(key).ok()?.trim();
    (!text.is_empty() && text.len() <= 256 && !text.chars().any(char::is_control)).then_some(text)
}

/// Whether JSON text holds a `\u0000` escape (not an escaped backslash
/// followed by `u0000`, which is storable text).
fn has_nul_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("\\u0000").any(|(at, _)| {
        let backslashes = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        backslashes % 2 == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, value: Option<&[u8]>) -> InputRecord {
        InputRecord {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: value.map(<[u8]>::to_vec),
            headers: vec![],
            error: None,
            key_error: None,
            key_schema: None,
            value_schema: None,
        }
    }

    fn poison_class(v: &Verdict) -> Option<&'static str> {
        match v {
            Verdict::Poison(p) => Some(p.class),
            Verdict::Rows(_) | Verdict::Control => None,
        }
    }

    #[test]
    fn user_patterns_read_their_format_and_others_are_untouched() {
        let patterns = Patterns::from_json(
            r#"[{"name":"door","regex":"^(?P<time>\\d{8}T\\d{6}) DOOR (?P<host>\\S+) (?P<level>\\w+) (?P<message>.*)$","time_format":"%Y%m%dT%H%M%S"}]"#,
        )
        .unwrap();
        let limits = Limits {
            patterns: Arc::new(patterns),
            ..Limits::default()
        };
        let door = record(1, Some(b"20231114T120000 DOOR gate-3 ERROR badge refused"));
        let Verdict::Rows(rows) = classify(&door, &limits) else {
            panic!("the pattern's line was refused")
        };
        assert_eq!(rows[0].host.as_deref(), Some("gate-3"));
        assert_eq!(rows[0].message, "badge refused");
        assert_eq!(rows[0].event_time.to_rfc3339(), "2023-11-14T12:00:00+00:00");
        // Without the pattern the same line is generic text at the Kafka time.
        let Verdict::Rows(plain) = classify(&door, &Limits::default()) else {
            panic!("refused without patterns")
        };
        assert_eq!(plain[0].host, None);
        // A JSON line is still JSON with the pattern configured.
        let json = record(
            2,
            Some(br#"{"level":"info","message":"hi","service":"api"}"#),
        );
        let Verdict::Rows(rows) = classify(&json, &limits) else {
            panic!("json refused")
        };
        assert_eq!(rows[0].service.as_deref(), Some("api"));
    }

    #[test]
    fn registry_schema_metadata_is_kept_in_attributes() {
        let mut r = record(
            4,
            Some(br#"{"level":"info","message":"paid","service":"checkout"}"#),
        );
        let meta = |format: &str, id: &str| {
            serde_json::json!({"dataFormat": format, "schemaId": id})
                .as_object()
                .cloned()
        };
        r.value_schema = meta("AVRO", "v-1");
        r.key_schema = meta("JSON", "k-1");
        let Verdict::Rows(rows) = classify(&r, &Limits::default()) else {
            panic!("refused")
        };
        assert_eq!(rows[0].attributes["value_schema"]["dataFormat"], "AVRO");
        assert_eq!(rows[0].attributes["key_schema"]["schemaId"], "k-1");
        assert_eq!(
            rows[0].service.as_deref(),
            Some("checkout"),
            "still parsed as JSON"
        );
    }

    #[test]
    fn a_cloudwatch_control_message_is_control_not_rows_or_poison() {
        let control = br#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1714564800000,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
        assert_eq!(
            classify(&record(3, Some(control)), &Limits::default()),
            Verdict::Control
        );
    }

    #[test]
    fn large_batches_keep_their_order() {
        let records: Vec<InputRecord> = (0..5_000)
            .map(|i| record(i, Some(format!("line number {i}").as_bytes())))
            .collect();
        let limits = Limits {
            max_record_bytes: 1024,
            ..Limits::default()
        };
        let verdicts = classify_all(&records, &limits);
        assert_eq!(verdicts.len(), records.len());
        for (i, v) in verdicts.iter().enumerate() {
            let Verdict::Rows(rows) = v else {
                panic!("record {i} rejected")
            };
            assert_eq!(rows[0].raw, format!("line number {i}"));
            let k = rows[0].kafka.as_ref().unwrap();
            assert_eq!((k.offset, k.seq), (i as i64, 0));
        }
    }

    #[test]
    fn a_service_header_with_a_nul_is_ignored() {
        // Found by fuzz/fuzz_targets/classify.rs.
        let mut r = record(1, Some(b"plain line"));
        r.headers = vec![("service".into(), b"-\0".to_vec())];
        let Verdict::Rows(rows) = classify(&r, &Limits::default()) else {
            panic!("rejected")
        };
        assert_eq!(rows[0].service, None);
        r.headers = vec![("service".into(), b" web ".to_vec())];
        let Verdict::Rows(rows) = classify(&r, &Limits::default()) else {
            panic!("rejected")
        };
        assert_eq!(rows[0].service.as_deref(), Some("web"));
    }

    #[test]
    fn a_row_without_service_or_host_keeps_a_text_key() {
        let rows = |key: Option<&[u8]>, value: &[u8]| {
            let mut r = record(1, Some(value));
            r.key = key.map(<[u8]>::to_vec);
            let Verdict::Rows(rows) = classify(&r, &Limits::default()) else {
                panic!("rejected")
            };
            rows[0]
                .attributes
                .get(logpipe_schema::KAFKA_KEY_ATTRIBUTE)
                .cloned()
        };
        assert_eq!(
            rows(Some(b" hdfs-7 "), b"plain line"),
            Some(serde_json::json!("hdfs-7"))
        );
        // a named service wins; binary, blank and control-character keys name nothing
        assert_eq!(
            rows(Some(b"hdfs-7"), br#"{"service":"api","message":"x"}"#),
            None
        );
        assert_eq!(rows(Some(&[0xff, 0xfe]), b"plain line"), None);
        assert_eq!(rows(Some(b"  "), b"plain line"), None);
        assert_eq!(rows(Some(b"a\x01b"), b"plain line"), None);
        assert_eq!(rows(None, b"plain line"), None);
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_not_a_nul() {
        assert!(has_nul_escape(r#"{"m":"a\u0000b"}"#));
        assert!(!has_nul_escape(r#"{"m":"a\\u0000b"}"#));
        assert!(has_nul_escape(r#"{"m":"a\\\u0000b"}"#));
        let ok = record(1, Some(br#"{"message":"path C:\\u0000x"}"#));
        assert!(matches!(
            classify(&ok, &Limits::default()),
            Verdict::Rows(_)
        ));
    }

    #[test]
    fn poison_is_classified() {
        let nul = record(1, Some(b"a\0b"));
        let escaped_nul = record(2, Some(br#"{"message":"a\u0000b"}"#));
        // Seen through fuzz/fuzz_targets/classify.rs: the parser skips a BOM.
        let bom_nul = record(7, Some("\u{feff}{\"message\":\"a\\u0000b\"}".as_bytes()));
        let tombstone = record(3, None);
        let big = record(4, Some(&[b'x'; 101]));
        let bad_utf8 = record(5, Some(&[0xff, 0xfe]));
        let far_future = record(
            6,
            Some(br#"{"message":"m","timestamp":"9999-01-01T00:00:00Z"}"#),
        );
        let small = Limits {
            max_record_bytes: 100,
            ..Limits::default()
        };
        let classes: Vec<_> = [nul, escaped_nul, bom_nul, tombstone, big, bad_utf8]
            .iter()
            .map(|r| poison_class(&classify(r, &small)))
            .collect();
        assert_eq!(
            classes,
            vec![
                Some("nul_character"),
                Some("nul_character"),
                Some("nul_character"),
                Some("tombstone"),
                Some("oversized"),
                Some("invalid_utf8")
            ]
        );
        // A time nobody can believe keeps the log, at its Kafka time.
        let Verdict::Rows(rows) = classify(&far_future, &Limits::default()) else {
            panic!("far-future event time rejected")
        };
        assert_eq!(rows[0].event_time.timestamp_millis(), 1_700_000_000_000);
        assert!(rows[0].attributes.contains_key("event_time_original"));
    }
}
