//! The AWS Lambda Kafka event, decoded leniently and built faithfully.
//!
//! Shape (FACTS.md): `eventSource` is `aws:kafka` (MSK, with
//! `eventSourceArn`) or `SelfManagedKafka` (self-managed, Confluent Cloud);
//! `records` maps `"<topic>-<partition>"` to arrays of records whose `key`
//! and `value` are base64 (either may be null) and whose `headers` are
//! `[{name: [signed bytes]}]`. Each record is decoded on its own: a record
//! that cannot be decoded becomes an [`InputRecord`] carrying a
//! [`RecordError`], to be dead-lettered, and never fails its neighbours.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The event as Lambda delivers it, with each record kept as raw JSON until
/// it is decoded on its own.
#[derive(Debug, Deserialize)]
pub struct KafkaEventPayload {
    #[serde(rename = "eventSource", default)]
    pub event_source: Option<String>,
    #[serde(rename = "eventSourceArn", default)]
    pub event_source_arn: Option<String>,
    #[serde(rename = "bootstrapServers", default)]
    pub bootstrap_servers: Option<String>,
    #[serde(default)]
    pub records: HashMap<String, Vec<Box<RawValue>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// Amazon MSK (`aws:kafka`).
    Msk,
    /// Self-managed Apache Kafka or Confluent Cloud (`SelfManagedKafka`).
    SelfManaged,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Msk => "aws:kafka",
            EventSource::SelfManaged => "SelfManagedKafka",
        }
    }
}

/// A decoded event: the records sorted by topic, partition and offset.
#[derive(Debug)]
pub struct DecodedEvent {
    /// `None` when the event names a source we do not know; the records are
    /// still decoded (the shape is the same).
    pub source: Option<EventSource>,
    pub bootstrap_servers: Option<String>,
    pub records: Vec<InputRecord>,
}

/// One record of the event.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Set when the record's envelope could not be decoded.
    pub error: Option<RecordError>,
}

impl InputRecord {
    /// The value of the first header with this name, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a record's envelope could not be decoded. The record goes to the DLQ
/// with `raw` (the undecodable text, so nothing is lost).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RecordError {
    /// Stable machine name (`invalid_base64`, `malformed_envelope`).
    pub class: &'static str,
    pub message: String,
}

/// Lenient view of one record: every field optional, checked by hand.
#[derive(Deserialize)]
struct RawRecord {
    topic: Option<String>,
    partition: Option<i64>,
    offset: Option<i64>,
    timestamp: Option<i64>,
    key: Option<String>,
    value: Option<String>,
    headers: Option<serde_json::Value>,
}

impl KafkaEventPayload {
    /// Decodes every record. Never fails: problems are attached to the records.
    pub fn decode(self) -> DecodedEvent {
        let source = match self.event_source.as_deref() {
            Some("aws:kafka") => Some(EventSource::Msk),
            Some("SelfManagedKafka") => Some(EventSource::SelfManaged),
            _ => None,
        };
        let mut records = Vec::new();
        for (key, list) in self.records {
            let (key_topic, key_partition) = split_partition_key(&key);
            for (index, raw) in list.into_iter().enumerate() {
                records.push(decode_record(&raw, key_topic, key_partition, index));
            }
        }
        records.sort_by(|a, b| {
            (a.topic.as_str(), a.partition, a.offset).cmp(&(
                b.topic.as_str(),
                b.partition,
                b.offset,
            ))
        });
        DecodedEvent {
            source,
            bootstrap_servers: self.bootstrap_servers,
            records,
        }
    }
}

/// `"log-ingestion-3"` → `("log-ingestion", Some(3))`.
fn split_partition_key(key: &str) -> (&str, Option<i32>) {
    match key.rsplit_once('-') {
        Some((topic, p)) => match p.parse() {
            Ok(n) => (topic, Some(n)),
            Err(_) => (key, None),
        },
        None => (key, None),
    }
}

fn decode_record(
    raw: &RawValue,
    key_topic: &str,
    key_partition: Option<i32>,
    index: usize,
) -> InputRecord {
    let mut record = InputRecord {
        topic: key_topic.to_string(),
        partition: key_partition.unwrap_or(-1),
        offset: -1,
        timestamp_ms: 0,
        key: None,
        value: None,
        headers: Vec::new(),
        error: None,
    };
    let parsed: RawRecord = match serde_json::from_str(raw.get()) {
        Ok(r) => r,
        Err(e) => {
            record.value = Some(raw.get().as_bytes().to_vec());
            record.error = Some(malformed(format!(
                "record #{index} is not a Kafka record: {e}"
            )));
            return record;
        }
    };
    if let Some(t) = parsed.topic.filter(|t| !t.is_empty()) {
        record.topic = t;
    }
    if let Some(p) = parsed.partition.and_then(|p| i32::try_from(p).ok()) {
        record.partition = p;
    }
    record.timestamp_ms = parsed.timestamp.unwrap_or(0);
    let mut problems = Vec::new();
    match parsed.offset {
        Some(o) if o >= 0 => record.offset = o,
        _ => problems.push(malformed(format!("record #{index} has no valid offset"))),
    }
    if record.partition < 0 {
        problems.push(malformed(format!("record #{index} has no valid partition")));
    }
    match decode_base64("value", parsed.value.as_deref()) {
        Ok(v) => record.value = v,
        Err(e) => {
            // Keep the undecodable text itself so the DLQ holds what arrived.
            record.value = parsed.value.map(String::into_bytes);
            problems.push(e);
        }
    }
    match decode_base64("key", parsed.key.as_deref()) {
        Ok(k) => record.key = k,
        Err(e) => {
            record.key = parsed.key.map(String::into_bytes);
            problems.push(e);
        }
    }
    match parsed.headers.map(decode_headers).transpose() {
        Ok(h) => record.headers = h.unwrap_or_default(),
        Err(e) => problems.push(e),
    }
    record.error = problems.into_iter().next();
    record
}

fn malformed(message: String) -> RecordError {
    RecordError {
        class: "malformed_envelope",
        message,
    }
}

fn decode_base64(field: &str, text: Option<&str>) -> Result<Option<Vec<u8>>, RecordError> {
    match text {
        None => Ok(None),
        Some(t) => BASE64.decode(t).map(Some).map_err(|e| RecordError {
            class: "invalid_base64",
            message: format!("record {field} is not valid base64: {e}"),
        }),
    }
}

/// `[{"name": [104, -61, -87]}, ...]` → `[("name", bytes)]`. Byte values may
/// be signed (as Lambda sends them) or unsigned.
fn decode_headers(value: serde_json::Value) -> Result<Vec<(String, Vec<u8>)>, RecordError> {
    let bad = |why: &str| malformed(format!("record headers are malformed: {why}"));
    let serde_json::Value::Array(list) = value else {
        return Err(bad("not an array"));
    };
    let mut headers = Vec::new();
    for entry in list {
        let serde_json::Value::Object(map) = entry else {
            return Err(bad("an entry is not an object"));
        };
        for (name, bytes) in map {
            let serde_json::Value::Array(bytes) = bytes else {
                return Err(bad("a header value is not a byte array"));
            };
            let mut out = Vec::with_capacity(bytes.len());
            for b in bytes {
                match b.as_i64() {
                    Some(n) if (-128..=255).contains(&n) => out.push(n as u8),
                    _ => return Err(bad("a header byte is out of range")),
                }
            }
            headers.push((name, out));
        }
    }
    Ok(headers)
}

/// A record to put into an event, e.g. one consumed from a broker.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// `CREATE_TIME` or `LOG_APPEND_TIME`.
    pub timestamp_type: &'static str,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl EventRecord {
    /// Copies a consumed message.
    pub fn from_message<M: rdkafka::Message>(m: &M) -> Self {
        use rdkafka::message::Headers;
        let (timestamp_ms, timestamp_type) = match m.timestamp() {
            rdkafka::Timestamp::CreateTime(t) => (t, "CREATE_TIME"),
            rdkafka::Timestamp::LogAppendTime(t) => (t, "LOG_APPEND_TIME"),
            rdkafka::Timestamp::NotAvailable => (0, "CREATE_TIME"),
        };
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms,
            timestamp_type,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// The record as Lambda puts it into the event.
    pub fn to_json(&self) -> serde_json::Value {
        let headers: Vec<serde_json::Value> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let signed: Vec<i8> = value.iter().map(|b| *b as i8).collect();
                serde_json::json!({ name: signed })
            })
            .collect();
        serde_json::json!({
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp_ms,
            "timestampType": self.timestamp_type,
            "key": self.key.as_ref().map(|k| BASE64.encode(k)),
            "value": self.value.as_ref().map(|v| BASE64.encode(v)),
            "headers": headers,
        })
    }
}

/// Builds the event exactly as Lambda's Kafka event source mapping does.
pub fn build_event(
    source: EventSource,
    bootstrap_servers: &str,
    event_source_arn: Option<&str>,
    records: &[EventRecord],
) -> serde_json::Value {
    let mut by_partition: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
        Default::default();
    for r in records {
        by_partition
            .entry(format!("{}-{}", r.topic, r.partition))
            .or_default()
            .push(r.to_json());
    }
    let mut event = serde_json::json!({
        "eventSource": source.as_str(),
        "bootstrapServers": bootstrap_servers,
        "records": by_partition,
    });
    if source == EventSource::Msk {
        event["eventSourceArn"] = serde_json::Value::String(
            event_source_arn
                .unwrap_or("arn:aws:kafka:us-east-1:123456789012:cluster/logpipe-local/local")
                .to_string(),
        );
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: serde_json::Value) -> DecodedEvent {
        serde_json::from_value::<KafkaEventPayload>(json)
            .unwrap()
            .decode()
    }

    #[test]
    fn built_events_round_trip_and_match_the_official_type() {
        let records = vec![
            EventRecord {
                topic: "log-ingestion".into(),
                partition: 1,
                offset: 7,
                timestamp_ms: 1_700_000_000_000,
                timestamp_type: "CREATE_TIME",
                key: Some(b"web-1".to_vec()),
                value: Some("héllo".as_bytes().to_vec()),
                headers: vec![("log-format".into(), "é".as_bytes().to_vec())],
            },
            EventRecord {
                topic: "log-ingestion".into(),
                partition: 0,
                offset: 3,
                timestamp_ms: 1_700_000_000_001,
                timestamp_type: "LOG_APPEND_TIME",
                key: None,
                value: None,
                headers: vec![],
            },
        ];
        let json = build_event(EventSource::Msk, "b-1:9092", None, &records);
        // Signed bytes, as Lambda sends them.
        assert_eq!(
            json["records"]["log-ingestion-1"][0]["headers"][0]["log-format"],
            serde_json::json!([-61, -87])
        );
        let official: aws_lambda_events::event::kafka::KafkaEvent =
            serde_json::from_value(json.clone()).unwrap();
        assert_eq!(official.records.len(), 2);
        let decoded = decode(json);
        assert_eq!(decoded.source, Some(EventSource::Msk));
        assert_eq!(decoded.records.len(), 2);
        assert_eq!(decoded.records[0].partition, 0, "sorted by partition");
        assert_eq!(decoded.records[0].value, None);
        let r = &decoded.records[1];
        assert_eq!(r.error, None);
        assert_eq!(r.value.as_deref(), Some("héllo".as_bytes()));
        assert_eq!(r.header("log-format"), Some("é".as_bytes()));
        assert_eq!((r.offset, r.timestamp_ms), (7, 1_700_000_000_000));
    }

    #[test]
    fn a_bad_record_does_not_spoil_its_neighbours() {
        let event = decode(serde_json::json!({
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": "localhost:9092",
            "records": {
                "t-0": [
                    {"topic":"t","partition":0,"offset":1,"timestamp":1,"value":"!!notbase64","headers":[]},
                    {"topic":"t","partition":0,"offset":2,"timestamp":1,"value":"aGk=","headers":[{"h":[1,2]}]},
                    {"topic":"t","partition":0,"offset":3,"timestamp":1,"value":"aGk="},
                    {"topic":"t","partition":0,"offset":4,"timestamp":1,"value":"aGk=","headers":"nope"},
                    {"topic":"t","partition":0,"timestamp":1,"value":"aGk=","headers":[]},
                    "not an object"
                ]
            }
        }));
        assert_eq!(event.source, Some(EventSource::SelfManaged));
        let classes: Vec<Option<&str>> = event
            .records
            .iter()
            .map(|r| r.error.as_ref().map(|e| e.class))
            .collect();
        // The two records without offsets sort first (offset -1).
        assert_eq!(
            classes,
            vec![
                Some("malformed_envelope"),
                Some("malformed_envelope"),
                Some("invalid_base64"),
                None,
                None,
                Some("malformed_envelope"),
            ]
        );
        assert_eq!(event.records[2].value.as_deref(), Some(&b"!!notbase64"[..]));
        assert_eq!(event.records[3].value.as_deref(), Some(&b"hi"[..]));
        assert!(
            event.records[4].headers.is_empty(),
            "missing headers are fine"
        );
    }

    #[test]
    fn partition_keys_split_on_the_last_dash() {
        assert_eq!(
            split_partition_key("log-ingestion-12"),
            ("log-ingestion", Some(12))
        );
        assert_eq!(split_partition_key("weird"), ("weird", None));
        assert_eq!(split_partition_key("a-b"), ("a-b", None));
    }
}
