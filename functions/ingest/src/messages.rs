//! The messages the function publishes: dead letters and forwarded records.
//! Pure builders, so the exact headers are unit-tested.

use logpipe_kafka::{InputRecord, OutMessage};
use logpipe_schema::LogRecord;

use crate::classify::Poison;

/// Header names on dead-lettered records.
pub mod header {
    pub const ERROR_CLASS: &str = "dlq-error-class";
    pub const ERROR_MESSAGE: &str = "dlq-error-message";
    pub const SOURCE_TOPIC: &str = "dlq-source-topic";
    pub const SOURCE_PARTITION: &str = "dlq-source-partition";
    pub const SOURCE_OFFSET: &str = "dlq-source-offset";
    pub const SOURCE_TIMESTAMP: &str = "dlq-source-timestamp";
    pub const FUNCTION: &str = "dlq-function";
    pub const TRUNCATED_FROM: &str = "dlq-truncated-from";
}

/// The original record, unchanged but for a value cut to `max_value_bytes`,
/// plus headers that say what went wrong and where it came from.
pub fn dead_letter(
    record: &InputRecord,
    poison: &Poison,
    dlq_topic: String,
    function: &str,
    max_value_bytes: usize,
) -> OutMessage {
    let mut headers = record.headers.clone();
    let mut payload = record.value.clone();
    if let Some(v) = payload.as_mut().filter(|v| v.len() > max_value_bytes) {
        headers.push((
            header::TRUNCATED_FROM.into(),
            v.len().to_string().into_bytes(),
        ));
        v.truncate(max_value_bytes);
    }
    // Header values are bytes; keep the message readable and bounded.
    let mut message = poison.message.clone();
    if message.len() > 1000 {
        let mut cut = 1000;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    headers.extend([
        (
            header::ERROR_CLASS.to_string(),
            poison.class.as_bytes().to_vec(),
        ),
        (header::ERROR_MESSAGE.to_string(), message.into_bytes()),
        (
            header::SOURCE_TOPIC.to_string(),
            record.topic.as_bytes().to_vec(),
        ),
        (
            header::SOURCE_PARTITION.to_string(),
            record.partition.to_string().into_bytes(),
        ),
        (
            header::SOURCE_OFFSET.to_string(),
            record.offset.to_string().into_bytes(),
        ),
        (
            header::SOURCE_TIMESTAMP.to_string(),
            record.timestamp_ms.to_string().into_bytes(),
        ),
        (header::FUNCTION.to_string(), function.as_bytes().to_vec()),
    ]);
    OutMessage {
        topic: dlq_topic,
        key: record.key.clone(),
        payload,
        headers,
    }
}

/// A normalized record for downstream consumers, keyed by its stable id so
/// a replay can be recognised.
pub fn forward(record: &LogRecord, topic: &str) -> OutMessage {
    let id = record
        .kafka
        .as_ref()
        .map(|k| k.record_id())
        .unwrap_or_default();
    // ok: a LogRecord always serializes (string keys only; serde_json writes
    // non-finite floats as null).
    let payload = serde_json::to_vec(record).expect("LogRecord serializes"); // ok: see above
    OutMessage {
        topic: topic.to_string(),
        key: Some(id.into_bytes()),
        payload: Some(payload),
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            (
                "source-type".into(),
                record.source_type.as_str().as_bytes().to_vec(),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> InputRecord {
        InputRecord {
            topic: "log-ingestion".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: 1_700_000_000_000,
            key: Some(b"svc".to_vec()),
            value: Some(vec![b'x'; 20]),
            headers: vec![("log-format".into(), b"json".to_vec())],
            error: None,
        }
    }

    fn header<'a>(m: &'a OutMessage, name: &str) -> Option<&'a [u8]> {
        m.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn dead_letters_keep_the_record_and_say_why() {
        let poison = Poison {
            class: "invalid_json",
            message: "truncated".into(),
        };
        let m = dead_letter(
            &record(),
            &poison,
            "log-ingestion.dlq".into(),
            "ingest",
            1000,
        );
        assert_eq!(m.topic, "log-ingestion.dlq");
        assert_eq!(m.key.as_deref(), Some(&b"svc"[..]));
        assert_eq!(m.payload.as_ref().map(Vec::len), Some(20));
        assert_eq!(
            header(&m, "log-format"),
            Some(&b"json"[..]),
            "original headers kept"
        );
        assert_eq!(header(&m, header::ERROR_CLASS), Some(&b"invalid_json"[..]));
        assert_eq!(header(&m, header::SOURCE_PARTITION), Some(&b"2"[..]));
        assert_eq!(header(&m, header::SOURCE_OFFSET), Some(&b"41"[..]));
        assert_eq!(header(&m, header::FUNCTION), Some(&b"ingest"[..]));
        assert_eq!(header(&m, header::TRUNCATED_FROM), None);
    }

    #[test]
    fn oversized_dead_letters_are_truncated_and_marked() {
        let poison = Poison {
            class: "oversized",
            message: "é".repeat(800),
        };
        let m = dead_letter(&record(), &poison, "t.dlq".into(), "ingest", 8);
        assert_eq!(m.payload.as_ref().map(Vec::len), Some(8));
        assert_eq!(header(&m, header::TRUNCATED_FROM), Some(&b"20"[..]));
        let msg = header(&m, header::ERROR_MESSAGE).unwrap();
        assert!(msg.len() <= 1000 && std::str::from_utf8(msg).is_ok());
    }
}
