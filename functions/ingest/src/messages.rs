//! The messages the function publishes: dead letters and forwarded records.
//! Pure builders, so the exact headers are unit-tested.

use logpipe_kafka::{InputRecord, OutMessage};
use logpipe_schema::LogRecord;

use crate::classify::Poison;

pub use logpipe_kafka::dlq::header;

/// The original record plus headers naming the poison (see
/// [`logpipe_kafka::dlq::dead_letter`]).
pub fn dead_letter(
    record: &InputRecord,
    poison: &Poison,
    dlq_topic: String,
    function: &str,
    max_value_bytes: usize,
) -> OutMessage {
    logpipe_kafka::dlq::dead_letter(
        record,
        poison.class,
        &poison.message,
        dlq_topic,
        function,
        max_value_bytes,
    )
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
            key_error: None,
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
