//! The messages the function publishes: dead letters and forwarded records.
//! Pure builders, so the exact headers are unit-tested.

use logpipe_kafka::dlq::{self, Limits, Reason};
use logpipe_kafka::{InputRecord, OutMessage};
use logpipe_schema::LogRecord;

pub use logpipe_kafka::dlq::header;

/// The original record plus headers naming why (the project's one
/// dead-letter builder, [`logpipe_kafka::dlq::dead_letter`]). `value`: the
/// record's value when the record no longer holds it.
pub fn dead_letter(
    record: &InputRecord,
    value: Option<&[u8]>,
    class: &str,
    message: &str,
    dlq_topic: String,
    function: &str,
    max_value_bytes: usize,
) -> OutMessage {
    let mut source = dlq::Source::from(record);
    if value.is_some() {
        source.value = value;
    }
    dlq::dead_letter(
        source,
        dlq_topic,
        &Reason::new(class, message, function),
        &Limits::with_value_bytes(max_value_bytes),
    )
}

/// The header holding a forward's stable record id (its Kafka coordinates
/// and position in an envelope), so a replay can be recognised.
pub const RECORD_ID_HEADER: &str = "record-id";

/// Forward keys are cut to this many bytes (at a character boundary): a
/// key only has to send one entity to one partition.
pub const MAX_FORWARD_KEY_BYTES: usize = 256;

/// A normalized record for downstream consumers, keyed by the entity
/// detection attributes it to ([`LogRecord::entity`]): one entity's records
/// share a partition, so detect sees them in order and one sandbox holds an
/// entity's state. Its stable id travels in [`RECORD_ID_HEADER`] (and in
/// the payload's `kafka`). A record whose JSON would exceed `max_bytes`
/// is sent without `raw`, then with `message` and `attributes` cut, and
/// marked `forward_truncated` (the row in `logs` stays whole; detection
/// needs the fields, not the original text).
pub fn forward(record: &LogRecord, topic: &str, max_bytes: usize) -> OutMessage {
    let id = record
        .kafka
        .as_ref()
        .map(|k| k.record_id())
        .unwrap_or_default();
    let mut payload = to_json(record);
    if payload.len() > max_bytes {
        payload = slimmed(record, payload.len(), max_bytes);
    }
    OutMessage {
        topic: topic.to_string(),
        key: Some(dlq::truncate_str(&record.entity(), MAX_FORWARD_KEY_BYTES).into()),
        payload: Some(payload),
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            (
                "source-type".into(),
                record.source_type.as_str().as_bytes().to_vec(),
            ),
            (RECORD_ID_HEADER.into(), id.into_bytes()),
        ],
    }
}

fn to_json(record: &LogRecord) -> Vec<u8> {
    // ok: a LogRecord always serializes (string keys only; serde_json writes
    // non-finite floats as null).
    serde_json::to_vec(record).expect("LogRecord serializes") // ok: see above
}

/// The JSON of a copy that fits in `max_bytes` (at least 4096), slimmed
/// step by step until it does: no raw text; then a message of at most an
/// eighth of the budget (JSON escaping can grow text sixfold); then no
/// attributes, metrics or HTTP fields and short service and host names.
fn slimmed(record: &LogRecord, full_len: usize, max_bytes: usize) -> Vec<u8> {
    let marker = serde_json::json!({"original_bytes": full_len, "raw_bytes": record.raw.len()});
    let mut slim = record.clone();
    slim.raw = String::new();
    slim.attributes
        .insert("forward_truncated".into(), marker.clone());
    let steps: [fn(&mut LogRecord, usize); 2] = [
        |r, max| r.message = dlq::truncate_str(&r.message, max / 8).to_string(),
        |r, _| {
            r.http = None;
            r.metrics.clear();
            r.attributes.retain(|k, _| k == "forward_truncated");
            for name in [&mut r.service, &mut r.host].into_iter().flatten() {
                *name = dlq::truncate_str(name, 256).to_string();
            }
        },
    ];
    let mut json = to_json(&slim);
    for step in steps {
        if json.len() <= max_bytes {
            break;
        }
        step(&mut slim, max_bytes);
        json = to_json(&slim);
    }
    json
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
            key_schema: None,
            value_schema: None,
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
        let m = dead_letter(
            &record(),
            None,
            "invalid_json",
            "truncated",
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
        let long = "é".repeat(800);
        let m = dead_letter(
            &record(),
            None,
            "oversized",
            &long,
            "t.dlq".into(),
            "ingest",
            8,
        );
        assert_eq!(m.payload.as_ref().map(Vec::len), Some(8));
        assert_eq!(header(&m, header::TRUNCATED_FROM), Some(&b"20"[..]));
        let msg = header(&m, header::ERROR_MESSAGE).unwrap();
        assert!(msg.len() <= 1000 && std::str::from_utf8(msg).is_ok());
    }

    #[test]
    fn a_forward_with_huge_fields_still_fits() {
        let mut row = logpipe_schema::parse("x", None, chrono::Utc::now()).unwrap()[0].clone();
        row.message = "\u{1}".repeat(125_000);
        row.service = Some("s".repeat(300_000));
        for i in 0..3 {
            row.attributes.insert(
                format!("a{i}"),
                serde_json::Value::String("\u{2}".repeat(40_000)),
            );
        }
        let m = forward(&row, "log-processing", 100_000);
        assert_eq!(m.key.as_ref().map(Vec::len), Some(MAX_FORWARD_KEY_BYTES));
        let payload = m.payload.unwrap();
        assert!(payload.len() <= 100_000, "{}", payload.len());
        let back: LogRecord = serde_json::from_slice(&payload).unwrap();
        assert!(back.attributes.contains_key("forward_truncated"));
        assert_eq!(back.service.map(|s| s.len()), Some(256));
    }

    #[test]
    fn forwards_are_keyed_by_entity_and_carry_their_record_id() {
        let line = r#"{"level":"info","service":"checkout","message":"paid"}"#;
        let mut row = logpipe_schema::parse(line, None, chrono::Utc::now()).unwrap()[0].clone();
        row.kafka = Some(logpipe_schema::KafkaCoordinates {
            topic: "log-ingestion".into(),
            partition: 3,
            offset: 41,
            seq: 0,
            timestamp_ms: 0,
        });
        let m = forward(&row, "log-processing", 1_000_000);
        assert_eq!(m.key.as_deref(), Some(&b"checkout"[..]));
        let id = row.kafka.as_ref().unwrap().record_id();
        assert_eq!(header(&m, RECORD_ID_HEADER), Some(id.as_bytes()));
        // Another record of the same entity: the same key, its own id.
        row.kafka.as_mut().unwrap().offset = 42;
        let next = forward(&row, "log-processing", 1_000_000);
        assert_eq!(next.key, m.key);
        assert_ne!(
            header(&next, RECORD_ID_HEADER),
            header(&m, RECORD_ID_HEADER)
        );
    }

    #[test]
    fn a_forward_too_large_drops_raw_and_fits() {
        // Control characters escape to six bytes each in JSON.
        let text = "\u{1}".repeat(200_000);
        let rows = logpipe_schema::parse(&text, None, chrono::Utc::now()).unwrap();
        let mut row = rows[0].clone();
        row.kafka = Some(logpipe_schema::KafkaCoordinates {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            seq: 0,
            timestamp_ms: 0,
        });
        let small = forward(&row, "log-processing", 10_000_000);
        assert!(small.payload.as_ref().unwrap().len() > 1_000_000);
        let m = forward(&row, "log-processing", 100_000);
        let payload = m.payload.unwrap();
        assert!(payload.len() <= 100_000, "{}", payload.len());
        let back: LogRecord = serde_json::from_slice(&payload).unwrap();
        assert_eq!(back.raw, "");
        assert!(back.attributes.contains_key("forward_truncated"));
        assert_eq!(back.kafka, row.kafka);
    }
}
