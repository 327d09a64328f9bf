//! Turning one event record into rows or a poison verdict. Pure: no IO.

use chrono::{DateTime, Datelike, Utc};
use logpipe_kafka::InputRecord;
use logpipe_schema::{KafkaCoordinates, LogRecord, parse};

/// What one Kafka record becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Normalized rows (one, or several for a batch envelope).
    Rows(Vec<LogRecord>),
    /// Can never succeed: dead-letter it.
    Poison(Poison),
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

/// Decodes, checks and parses one record.
pub fn classify(record: &InputRecord, max_record_bytes: usize) -> Verdict {
    match rows_of(record, max_record_bytes) {
        Ok(rows) => Verdict::Rows(rows),
        Err(p) => Verdict::Poison(p),
    }
}

fn rows_of(record: &InputRecord, max_record_bytes: usize) -> Result<Vec<LogRecord>, Poison> {
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
    if text.contains('\0') || (text.trim_start().starts_with('{') && text.contains("\\u0000")) {
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
    let kafka_time =
        DateTime::from_timestamp_millis(record.timestamp_ms).unwrap_or(DateTime::UNIX_EPOCH);
    let mut rows =
        parse(text, format, kafka_time).map_err(|e| Poison::new(e.class(), e.to_string()))?;
    for (seq, row) in rows.iter_mut().enumerate() {
        check_storable_time(row.event_time)?;
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

/// PostgreSQL's timestamptz ends before chrono's range does; a year outside
/// 1..=9999 is a producer bug, not a time.
fn check_storable_time(t: DateTime<Utc>) -> Result<(), Poison> {
    if (1..=9999).contains(&t.year()) {
        Ok(())
    } else {
        Err(Poison::new(
            "schema_violation",
            format!("event time {t} is out of range"),
        ))
    }
}
