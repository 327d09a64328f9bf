//! The AWS Lambda Kafka event, decoded leniently and built faithfully.
//!
//! Shape: `eventSource` is `aws:kafka` (MSK, with `eventSourceArn`) or
//! `SelfManagedKafka` (self-managed, Confluent Cloud); `records` maps
//! `"<topic>-<partition>"` to arrays of records whose `key` and `value` are
//! base64 (either may be null) and whose `headers` are
//! `[{name: [signed bytes]}]`. Each record is decoded on its own: a record
//! that cannot be decoded becomes an [`InputRecord`] carrying a
//! [`RecordError`], to be dead-lettered, and never fails its neighbours.
//!
//! Leniency, and where it stops:
//! - base64 is the standard alphabet; padding may be absent or short, and
//!   non-zero trailing bits are accepted (the AWS developer guide's own
//!   example key `abcDEFghiJKLmnoPQRstuVWXyz1234==` has them, and common
//!   decoders such as Python's take it). Other characters, a wrong length or
//!   excess padding are still rejected.
//! - `partition`, `offset` and `timestamp` may be JSON integers, decimal
//!   strings (`"0"`, as older examples in the AWS docs have it) or integral
//!   floats (`15.0`, `"1.545084650987E12"`) up to 2^53 in magnitude, where a
//!   float is still exact. Fractions, other text and other types are
//!   unreadable.
//! - A key that cannot be decoded never costs the value: the record is
//!   decoded as usual with `key: None` and [`InputRecord::key_error`] set.
//! - A record that cannot be used still carries every coordinate that could
//!   be read, from its own fields or else from its `"<topic>-<partition>"`
//!   map key, so its dead letter says where it came from.

use std::collections::HashMap;

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as BASE64};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// Decodes keys and values: see the module documentation. Encoding (for
/// [`build_event`]) stays canonical.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The name ingest gives the stored record's attribute that marks a record
/// whose key could not be decoded (see [`InputRecord::key_error`]).
pub const KEY_UNDECODABLE_ATTRIBUTE: &str = "key_undecodable";

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
    /// Which cluster the records come from, as one stable string (see
    /// [`cluster_identity`]): the same cluster always gives the same value,
    /// whatever the order or case of its broker list.
    pub cluster: String,
    pub records: Vec<InputRecord>,
}

/// One record of the event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Set when the record's envelope could not be decoded: the record
    /// cannot be used and goes to the DLQ.
    pub error: Option<RecordError>,
    /// Set when only the key could not be decoded. The record is otherwise
    /// whole (`error` is `None` unless something else is wrong too) and is
    /// processed as usual; `key` is `None` and this keeps the key as it
    /// arrived, so the fact stays visible downstream.
    pub key_error: Option<KeyError>,
    /// `keySchemaMetadata` / `valueSchemaMetadata` as the mapping sent them
    /// (`{"dataFormat": "AVRO|PROTOBUF|JSON", "schemaId": "…"}`) when it
    /// validated the record against a schema registry (`SchemaRegistryConfig`).
    /// Kept as they arrived (any JSON object); anything else is dropped.
    pub key_schema: Option<serde_json::Map<String, Value>>,
    pub value_schema: Option<serde_json::Map<String, Value>>,
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

/// Why a record's key could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KeyError {
    /// `invalid_base64` (a string that is not base64) or
    /// `malformed_envelope` (not a string at all).
    pub class: &'static str,
    pub message: String,
    /// The key as it arrived: the string itself, or the JSON text of a key
    /// that is not a string.
    pub raw: String,
}

impl KafkaEventPayload {
    /// Decodes every record. Never fails: problems are attached to the records.
    pub fn decode(self) -> DecodedEvent {
        let source = match self.event_source.as_deref() {
            Some("aws:kafka") => Some(EventSource::Msk),
            Some("SelfManagedKafka") => Some(EventSource::SelfManaged),
            _ => None,
        };
        let cluster = cluster_identity(
            self.event_source_arn.as_deref(),
            self.bootstrap_servers.as_deref(),
        );
        let mut records = Vec::with_capacity(self.records.values().map(Vec::len).sum());
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
            cluster,
            records,
        }
    }
}

/// The identity of the cluster an event comes from:
///
/// - MSK: the cluster ARN from `eventSourceArn`, lowercased, as
///   `arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>` (a
///   topic or group ARN of the cluster gives the same; anything after the
///   UUID is dropped). Lowercasing merges nothing: the UUID alone is unique.
///   An ARN of another shape is kept as it is, trimmed.
/// - Otherwise the `bootstrapServers` list: entries trimmed, lowercased,
///   sorted, deduplicated and joined with `,`. (Two different listener lists
///   of one cluster are two identities; Lambda sends the list the mapping
///   was configured with.)
/// - `""` when the event names neither (hand-written events): they all share
///   one identity.
pub fn cluster_identity(event_source_arn: Option<&str>, bootstrap_servers: Option<&str>) -> String {
    if let Some(arn) = event_source_arn.map(str::trim).filter(|a| !a.is_empty()) {
        return normalize_kafka_arn(arn).unwrap_or_else(|| arn.to_string());
    }
    let mut servers: Vec<String> = bootstrap_servers
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    servers.sort();
    servers.dedup();
    servers.join(",")
}

/// `arn:aws:kafka:us-east-1:123456789012:topic/name/uuid/t` →
/// `arn:aws:kafka:us-east-1:123456789012:cluster/name/uuid`; `None` when the
/// ARN is not an MSK resource ARN.
fn normalize_kafka_arn(arn: &str) -> Option<String> {
    let lower = arn.to_ascii_lowercase();
    let fields: Vec<&str> = lower.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = fields[..] else {
        return None;
    };
    if prefix != "arn" || service != "kafka" || partition.is_empty() {
        return None;
    }
    let mut parts = resource.split('/');
    let kind = parts.next()?;
    let name = parts.next().filter(|s| !s.is_empty())?;
    let uuid = parts.next().filter(|s| !s.is_empty())?;
    if !matches!(kind, "cluster" | "topic" | "group" | "transactional-id") {
        return None;
    }
    Some(format!(
        "arn:{partition}:kafka:{region}:{account}:cluster/{name}/{uuid}"
    ))
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

/// What a record's field holds.
enum Field<T> {
    /// Absent or `null`.
    Missing,
    Unreadable,
    Read(T),
}

/// An integer as other encoders write one: see the module documentation.
fn lenient_i64(field: Option<&Value>) -> Field<i64> {
    // Every integer up to 2^53 in magnitude is exact in a double.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let integral =
        |f: f64| (f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT).then_some(f as i64);
    let read = match field {
        None | Some(Value::Null) => return Field::Missing,
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().and_then(integral)),
        Some(Value::String(s)) => s
            .parse::<i64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().and_then(integral)),
        Some(_) => None,
    };
    read.map_or(Field::Unreadable, Field::Read)
}

/// A key or value as it arrived: a JSON string (base64), or the JSON of
/// something that is not a string.
enum Encoded<'a> {
    /// A string's contents as they stand in the event, JSON escapes and all
    /// (borrowed: no copy of what may be megabytes of base64).
    Json(&'a str),
    /// A string with its escapes resolved.
    Text(String),
    NotText(String),
}

impl<'a> Encoded<'a> {
    /// `None` for `null`.
    fn from_raw(raw: &'a RawValue) -> Option<Self> {
        let text = raw.get();
        if text == "null" {
            return None;
        }
        // The event's parse has validated the string.
        if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            return Some(Self::Json(inner));
        }
        Some(Self::NotText(
            serde_json::from_str::<Value>(text)
                .map_or_else(|_| text.to_string(), |v| v.to_string()),
        ))
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Null => None,
            Value::String(s) => Some(Self::Text(s)),
            other => Some(Self::NotText(other.to_string())),
        }
    }
}

/// A string's base64 decoded, or the string (escapes resolved) with why it
/// is not base64.
fn decode_string(encoded: Encoded<'_>) -> Result<Vec<u8>, (String, base64::DecodeError)> {
    let text = match encoded {
        Encoded::Json(inner) => {
            // The base64 alphabet has no backslash: text with an escape
            // never passes here, so what does is the string itself.
            if let Ok(bytes) = base64_simd::STANDARD.decode_to_vec(inner) {
                return Ok(bytes);
            }
            if inner.contains('\\') {
                serde_json::from_str::<String>(&format!("\"{inner}\""))
                    .unwrap_or_else(|_| inner.to_string())
            } else {
                inner.to_string()
            }
        }
        Encoded::Text(text) | Encoded::NotText(text) => text,
    };
    decode_base64(&text).map_err(|e| (text, e))
}

/// Decodes base64 leniently (see the module documentation). Canonical
/// padded base64, what Lambda sends, takes the vectorized decoder; whatever
/// it refuses is decided by the lenient one, so both accept and produce
/// exactly what the lenient decoder alone would.
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    match base64_simd::STANDARD.decode_to_vec(text) {
        Ok(bytes) => Ok(bytes),
        Err(_) => LENIENT_BASE64.decode(text),
    }
}

/// The fields of one record that we read, each as whatever JSON it holds.
struct RawRecord<'a> {
    topic: Option<Value>,
    partition: Option<Value>,
    offset: Option<Value>,
    timestamp: Option<Value>,
    key: Option<Encoded<'a>>,
    value: Option<Encoded<'a>>,
    headers: Option<Value>,
    key_schema: Option<Value>,
    value_schema: Option<Value>,
}

/// The typed pass: key and value are borrowed, unparsed, from the event.
#[derive(Deserialize)]
struct TypedRecord<'a> {
    topic: Option<Value>,
    partition: Option<Value>,
    offset: Option<Value>,
    timestamp: Option<Value>,
    #[serde(borrow)]
    key: Option<&'a RawValue>,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    headers: Option<Value>,
    #[serde(rename = "keySchemaMetadata")]
    key_schema: Option<Value>,
    #[serde(rename = "valueSchemaMetadata")]
    value_schema: Option<Value>,
}

impl<'a> RawRecord<'a> {
    /// `None` when the record is not a JSON object.
    fn parse(text: &'a str) -> Option<Self> {
        // A derived struct would also take a JSON array, field by position.
        if !text.trim_start().starts_with('{') {
            return None;
        }
        // The typed pass skips the fields we do not read; a repeated field
        // fails it, and the generic pass then takes the last of each.
        if let Ok(r) = serde_json::from_str::<TypedRecord<'a>>(text) {
            return Some(Self {
                topic: r.topic,
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.and_then(Encoded::from_raw),
                value: r.value.and_then(Encoded::from_raw),
                headers: r.headers,
                key_schema: r.key_schema,
                value_schema: r.value_schema,
            });
        }
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let mut take = |name: &str| map.remove(name).filter(|v| !v.is_null());
        Some(Self {
            topic: take("topic"),
            partition: take("partition"),
            offset: take("offset"),
            timestamp: take("timestamp"),
            key: take("key").and_then(Encoded::from_value),
            value: take("value").and_then(Encoded::from_value),
            headers: take("headers"),
            key_schema: take("keySchemaMetadata"),
            value_schema: take("valueSchemaMetadata"),
        })
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
        ..InputRecord::default()
    };
    let Some(fields) = RawRecord::parse(raw.get()) else {
        record.value = Some(raw.get().as_bytes().to_vec());
        record.error = Some(malformed(format!(
            "record #{index} is not a Kafka record (not a JSON object)"
        )));
        return record;
    };
    let mut problems = Vec::new();
    if let Some(Value::String(t)) = fields.topic
        && !t.is_empty()
    {
        record.topic = t;
    }
    if record.topic.is_empty() {
        problems.push(malformed(format!("record #{index} has no topic")));
    }
    // The map key names the partition too; Lambda always files a record
    // under its own partition, so the key stands in for a bad field.
    if let Field::Read(p) = lenient_i64(fields.partition.as_ref())
        && let Ok(p) = i32::try_from(p)
        && p >= 0
    {
        record.partition = p;
    }
    if record.partition < 0 {
        problems.push(malformed(format!("record #{index} has no valid partition")));
    }
    match lenient_i64(fields.offset.as_ref()) {
        Field::Read(o) if o >= 0 => record.offset = o,
        _ => problems.push(malformed(format!("record #{index} has no valid offset"))),
    }
    match lenient_i64(fields.timestamp.as_ref()) {
        Field::Read(t) => record.timestamp_ms = t,
        // Kafka itself allows records without a timestamp.
        Field::Missing => {}
        Field::Unreadable => problems.push(malformed(format!(
            "record #{index} has an unreadable timestamp"
        ))),
    }
    match fields.value {
        None => {}
        Some(Encoded::NotText(_)) => {
            record.value = Some(raw.get().as_bytes().to_vec());
            problems.push(malformed(format!(
                "record #{index} has a value that is not a string"
            )));
        }
        Some(text) => match decode_string(text) {
            Ok(v) => record.value = Some(v),
            Err((text, e)) => {
                // Keep the undecodable text itself so the DLQ holds what arrived.
                record.value = Some(text.into_bytes());
                problems.push(RecordError {
                    class: "invalid_base64",
                    message: format!("record value is not valid base64: {e}"),
                });
            }
        },
    }
    match fields.key {
        None => {}
        Some(Encoded::NotText(json)) => {
            record.key_error = Some(KeyError {
                class: "malformed_envelope",
                message: "record key is not a string".into(),
                raw: json,
            });
        }
        Some(text) => match decode_string(text) {
            Ok(k) => record.key = Some(k),
            Err((text, e)) => {
                record.key_error = Some(KeyError {
                    class: "invalid_base64",
                    message: format!("record key is not valid base64: {e}"),
                    raw: text,
                });
            }
        },
    }
    match fields.headers {
        None | Some(Value::Null) => {}
        Some(h) => match decode_headers(h) {
            Ok(h) => record.headers = h,
            Err(e) => problems.push(e),
        },
    }
    record.key_schema = schema_metadata(fields.key_schema);
    record.value_schema = schema_metadata(fields.value_schema);
    record.error = problems.into_iter().next();
    record
}

/// Schema metadata is informational: an object is kept, anything else
/// (null, a string, or one holding a NUL, which PostgreSQL's jsonb cannot
/// store) is dropped rather than failing the record.
fn schema_metadata(value: Option<Value>) -> Option<serde_json::Map<String, Value>> {
    match value {
        Some(Value::Object(map))
            if !map.is_empty() && !Value::Object(map.clone()).to_string().contains("\\u0000") =>
        {
            Some(map)
        }
        _ => None,
    }
}

fn malformed(message: String) -> RecordError {
    RecordError {
        class: "malformed_envelope",
        message,
    }
}

/// `[{"name": [104, -61, -87]}, ...]` → `[("name", bytes)]`. Byte values may
/// be signed (as Lambda sends them) or unsigned.
fn decode_headers(value: Value) -> Result<Vec<(String, Vec<u8>)>, RecordError> {
    let bad = |why: &str| malformed(format!("record headers are malformed: {why}"));
    let Value::Array(list) = value else {
        return Err(bad("not an array"));
    };
    let mut headers = Vec::new();
    for entry in list {
        let Value::Object(map) = entry else {
            return Err(bad("an entry is not an object"));
        };
        for (name, bytes) in map {
            let Value::Array(bytes) = bytes else {
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
    fn schema_registry_metadata_is_kept_and_never_fails_a_record() {
        // The shape the mapping sends with SchemaRegistryConfig (JSON mode:
        // the value is the record as JSON text, base64 like any value).
        let event = decode(serde_json::json!({
            "eventSource": "aws:kafka",
            "records": {
                "orders-0": [
                    {"topic":"orders","partition":0,"offset":1,"timestamp":1,
                     "value": BASE64.encode(r#"{"level":"info","message":"paid"}"#),
                     "keySchemaMetadata": {"dataFormat":"JSON","schemaId":"k-1"},
                     "valueSchemaMetadata": {"dataFormat":"AVRO","schemaId":"c7b5b4d2-0000-4000-8000-000000000001"}},
                    {"topic":"orders","partition":0,"offset":2,"timestamp":1,"value":"aGk=",
                     "valueSchemaMetadata": "not an object", "keySchemaMetadata": null},
                    {"topic":"orders","partition":0,"offset":3,"timestamp":1,"value":"aGk=",
                     "offset": 3, "valueSchemaMetadata": {"dataFormat":"PROTOBUF","schemaId":"42"}}
                ]
            }
        }));
        let [a, b, c] = &event.records[..] else {
            panic!("{:?}", event.records)
        };
        assert_eq!(a.error, None);
        let v = a.value_schema.as_ref().unwrap();
        assert_eq!(
            (v["dataFormat"].as_str(), v["schemaId"].as_str()),
            (Some("AVRO"), Some("c7b5b4d2-0000-4000-8000-000000000001"))
        );
        assert_eq!(a.key_schema.as_ref().unwrap()["schemaId"], "k-1");
        assert_eq!(
            (b.error.as_ref(), &b.value_schema, &b.key_schema),
            (None, &None, &None)
        );
        // (a repeated field takes the generic pass, which reads metadata too)
        assert_eq!(c.value_schema.as_ref().unwrap()["dataFormat"], "PROTOBUF");
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
    fn the_fast_base64_path_accepts_and_decodes_exactly_what_the_lenient_one_does() {
        let mut cases: Vec<String> = [
            "",
            "aGk=",
            "aGk",
            "aGk==",
            "aGk===",
            "aGl=",
            "QR==",
            "QR",
            "QRE=",
            "QREx",
            "abcDEFghiJKLmnoPQRstuVWXyz1234==",
            "aG k=",
            " aGk=",
            "aGk=\n",
            "a",
            "ab=c",
            "!!notbase64",
            "aGk=aGk=",
            "////",
            "++++",
            "-_-_",
            "=",
            "====",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Long enough for the vectorized loops, with a bad byte at each place.
        let long = BASE64.encode((0..=255u8).cycle().take(300).collect::<Vec<u8>>());
        cases.push(long.clone());
        cases.push(long.trim_end_matches('=').to_string());
        for at in [0, 31, 32, 63, 64, 200, long.len() - 1] {
            let mut bad = long.clone().into_bytes();
            bad[at] = b'*';
            cases.push(String::from_utf8(bad).unwrap());
        }
        for case in cases {
            assert_eq!(
                decode_base64(&case).ok(),
                LENIENT_BASE64.decode(&case).ok(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn values_with_json_escapes_and_repeated_fields_decode_like_plain_ones() {
        // `\/` is how some JSON encoders write `/`; a repeated field takes the
        // generic pass.
        let event = decode_str(
            r#"{"eventSource":"aws:kafka","records":{"t-0":[
                {"topic":"t","partition":0,"offset":1,"timestamp":1,"value":"Pz8\/","key":"aGk=","headers":[]},
                {"topic":"t","partition":0,"offset":2,"timestamp":1,"value":"eA==","value":"Pz8/","key":7,"headers":[]},
                {"topic":"t","partition":0,"offset":3,"timestamp":1,"value":{"not":"text"},"headers":[]}
            ]}}"#,
        );
        let r = &event.records;
        assert_eq!(r[0].value.as_deref(), Some(&b"???"[..]));
        assert_eq!(r[0].key.as_deref(), Some(&b"hi"[..]));
        assert_eq!(r[1].value.as_deref(), Some(&b"???"[..]));
        assert_eq!(r[1].key, None);
        let key_error = r[1].key_error.as_ref().map(|e| (e.class, e.raw.as_str()));
        assert_eq!(key_error, Some(("malformed_envelope", "7")));
        assert_eq!(
            r[2].error.as_ref().map(|e| e.class),
            Some("malformed_envelope")
        );
    }

    fn decode_str(json: &str) -> DecodedEvent {
        serde_json::from_str::<KafkaEventPayload>(json)
            .unwrap()
            .decode()
    }

    const AWS_MSK: &str = include_str!("../../../events/ingest/aws-docs-msk.json");
    const AWS_SELF_MANAGED: &str =
        include_str!("../../../events/ingest/aws-docs-self-managed.json");
    const AWS_MSK_OLDER: &str = include_str!("../../../events/ingest/aws-docs-msk-older.json");
    const DOCS_CLUSTER: &str = "arn:aws:kafka:us-east-1:123456789012:cluster/vpc-2priv-2pub/751d2973-a626-431c-9d4e-d7975eb44dd7-2";
    const DOCS_BROKERS: &str = "b-1.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092,\
        b-2.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092";

    /// The one record of the AWS developer guide's examples, as decoded.
    fn assert_docs_record(event: &DecodedEvent) {
        assert_eq!(event.records.len(), 1);
        let r = &event.records[0];
        assert_eq!(r.error, None);
        assert_eq!(r.key_error, None);
        assert_eq!(r.value.as_deref(), Some(&b"Hello, this is a test."[..]));
        assert_eq!(
            (r.topic.as_str(), r.partition, r.offset, r.timestamp_ms),
            ("mytopic", 0, 15, 1_545_084_650_987)
        );
        // 30 base64 digits with non-zero trailing bits: 22 bytes.
        assert_eq!(r.key.as_ref().map(Vec::len), Some(22));
        assert_eq!(r.header("headerKey"), Some(&b"headerValue"[..]));
    }

    #[test]
    fn the_aws_docs_msk_example_decodes_whole() {
        let event = decode_str(AWS_MSK);
        assert_eq!(event.source, Some(EventSource::Msk));
        assert_eq!(event.cluster, DOCS_CLUSTER);
        assert_docs_record(&event);
    }

    #[test]
    fn the_aws_docs_self_managed_example_decodes_whole() {
        let event = decode_str(AWS_SELF_MANAGED);
        assert_eq!(event.source, Some(EventSource::SelfManaged));
        assert_eq!(event.cluster, DOCS_BROKERS, "sorted broker list");
        assert_docs_record(&event);
    }

    #[test]
    fn the_older_aws_docs_example_with_a_string_partition_decodes_whole() {
        assert!(AWS_MSK_OLDER.contains(r#""partition":"0""#));
        let event = decode_str(AWS_MSK_OLDER);
        assert_eq!(event.cluster, DOCS_CLUSTER);
        assert_docs_record(&event);
    }

    #[test]
    fn base64_with_loose_padding_or_trailing_bits_decodes_and_garbage_does_not() {
        for (text, bytes) in [
            ("aGk=", &b"hi"[..]),
            ("aGk", b"hi"),
            ("aGl=", b"hi"), // non-zero trailing bits
            ("aQ==", b"i"),
            ("aQ=", b"i"),
            ("aR==", b"i"),
            ("", b""),
        ] {
            assert_eq!(
                LENIENT_BASE64.decode(text).ok().as_deref(),
                Some(bytes),
                "{text:?}"
            );
        }
        for garbage in [
            "!!notbase64",
            "a",
            "aGk==",
            "aG=k",
            "aGk-",
            "aG_k",
            "aGk =",
            "a\nGk=",
        ] {
            assert!(LENIENT_BASE64.decode(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn numbers_may_be_strings_or_integral_floats() {
        let read = |v: serde_json::Value| match lenient_i64(Some(&v)) {
            Field::Read(n) => Some(n),
            Field::Unreadable => None,
            Field::Missing => panic!("{v} is there"),
        };
        use serde_json::json;
        assert_eq!(read(json!(15)), Some(15));
        assert_eq!(read(json!("15")), Some(15));
        assert_eq!(read(json!("-1")), Some(-1));
        assert_eq!(read(json!(15.0)), Some(15));
        assert_eq!(read(json!("1.545084650987E12")), Some(1_545_084_650_987));
        assert_eq!(read(json!(9_007_199_254_740_992.0_f64)), Some(1 << 53));
        for bad in [
            json!(15.5),
            json!("15.5"),
            json!("fifteen"),
            json!(""),
            json!(" 15"),
            json!("NaN"),
            json!("inf"),
            json!(1e300),
            json!(u64::MAX),
            json!(true),
            json!([15]),
        ] {
            assert_eq!(read(bad.clone()), None, "{bad}");
        }
        assert!(matches!(lenient_i64(None), Field::Missing));
        assert!(matches!(
            lenient_i64(Some(&serde_json::Value::Null)),
            Field::Missing
        ));
    }

    #[test]
    fn an_undecodable_key_never_costs_the_value() {
        let event = decode(serde_json::json!({
            "eventSource": "SelfManagedKafka",
            "records": {"t-0": [
                {"topic":"t","partition":0,"offset":1,"timestamp":5,"key":"not base64!!","value":"aGk="},
                {"topic":"t","partition":0,"offset":2,"timestamp":5,"key":{"id":7},"value":"aGk="},
                {"topic":"t","partition":0,"offset":3,"timestamp":5,"key":"not base64!!","value":"!!"},
                {"topic":"t","partition":0,"offset":4,"timestamp":5,"key":"a2V5","value":"aGk="}
            ]}
        }));
        let r = &event.records;
        assert_eq!((r[0].error.as_ref(), r[0].key.as_ref()), (None, None));
        assert_eq!(r[0].value.as_deref(), Some(&b"hi"[..]));
        let e = r[0].key_error.as_ref().expect("the key is marked");
        assert_eq!(
            (e.class, e.raw.as_str()),
            ("invalid_base64", "not base64!!")
        );
        assert!(e.message.contains("key"), "{}", e.message);

        assert_eq!(r[1].error, None);
        assert_eq!(r[1].value.as_deref(), Some(&b"hi"[..]));
        let e = r[1].key_error.as_ref().expect("the key is marked");
        assert_eq!(
            (e.class, e.raw.as_str()),
            ("malformed_envelope", r#"{"id":7}"#)
        );

        // A bad value is still a bad record; the key is marked as well.
        assert_eq!(r[2].error.as_ref().map(|e| e.class), Some("invalid_base64"));
        assert!(r[2].key_error.is_some());

        assert_eq!(
            (r[3].key.as_deref(), &r[3].key_error),
            (Some(&b"key"[..]), &None)
        );
    }

    #[test]
    fn a_malformed_record_keeps_every_coordinate_that_can_be_read() {
        let event = decode(serde_json::json!({
            "records": {
                "orders-3": [
                    // Bad value, coordinates as strings.
                    {"topic":"orders","partition":"3","offset":"41","timestamp":"1545084650987","value":"!!"},
                    // Bad partition field: the map key stands in.
                    {"topic":"orders","partition":"three","offset":42,"timestamp":1.545084650988e12,"value":"aGk="},
                    // No offset: only what is there.
                    {"partition":3,"timestamp":"1545084650989","value":"aGk="},
                    // Not an object: the map key is all there is.
                    [1, 2, 3],
                    // Not an object either, though as long as the record.
                    ["orders", 3, 43, 5, null, "aGk=", []],
                    // A value that is not a string: the record is kept whole.
                    {"topic":"orders","partition":3,"offset":44,"timestamp":7,"value":{"a":1}},
                    // An unreadable timestamp is not invented.
                    {"topic":"orders","partition":3,"offset":45,"timestamp":"soon","value":"aGk="}
                ],
                "oddly-named": [
                    {"topic":"events","partition":"1","offset":"9","timestamp":"3","value":"aGk=","headers":7}
                ]
            }
        }));
        let coords: Vec<(&str, i32, i64, i64, Option<&str>)> = event
            .records
            .iter()
            .map(|r| {
                (
                    r.topic.as_str(),
                    r.partition,
                    r.offset,
                    r.timestamp_ms,
                    r.error.as_ref().map(|e| e.class),
                )
            })
            .collect();
        assert_eq!(
            coords,
            vec![
                ("events", 1, 9, 3, Some("malformed_envelope")),
                // Equal keys keep their order in the event.
                (
                    "orders",
                    3,
                    -1,
                    1_545_084_650_989,
                    Some("malformed_envelope")
                ),
                ("orders", 3, -1, 0, Some("malformed_envelope")),
                ("orders", 3, -1, 0, Some("malformed_envelope")),
                ("orders", 3, 41, 1_545_084_650_987, Some("invalid_base64")),
                ("orders", 3, 42, 1_545_084_650_988, None),
                ("orders", 3, 44, 7, Some("malformed_envelope")),
                ("orders", 3, 45, 0, Some("malformed_envelope")),
            ]
        );
        let r = &event.records;
        assert_eq!(r[1].value.as_deref(), Some(&b"hi"[..]));
        assert_eq!(
            r[2].value.as_deref(),
            Some(&b"[1,2,3]"[..]),
            "raw text kept"
        );
        assert_eq!(r[4].value.as_deref(), Some(&b"!!"[..]));
        let whole: serde_json::Value =
            serde_json::from_slice(r[6].value.as_deref().unwrap()).unwrap();
        assert_eq!(
            whole["value"],
            serde_json::json!({"a": 1}),
            "raw record kept"
        );
        assert!(r[7].error.as_ref().unwrap().message.contains("timestamp"));
    }

    #[test]
    fn a_record_with_a_repeated_field_is_read_with_the_last_one() {
        let event = decode_str(
            r#"{"records":{"t-0":[{"topic":"t","partition":0,"offset":1,"offset":"2","timestamp":3,"value":"aGk=","value":"aG8="}]}}"#,
        );
        let r = &event.records[0];
        assert_eq!(r.error, None);
        assert_eq!((r.offset, r.value.as_deref()), (2, Some(&b"ho"[..])));
    }

    #[test]
    fn a_record_without_any_partition_is_malformed() {
        let event = decode(serde_json::json!({
            "records": {"weird": [{"topic":"t","offset":1,"timestamp":1,"value":"aGk="}]}
        }));
        let r = &event.records[0];
        assert_eq!((r.topic.as_str(), r.partition, r.offset), ("t", -1, 1));
        assert!(r.error.as_ref().unwrap().message.contains("partition"));
    }

    #[test]
    fn the_cluster_is_the_msk_arn_or_the_normalized_broker_list() {
        let id = cluster_identity;
        // Order, case, spaces and repeats of the broker list do not matter.
        let a = id(None, Some("B-2.example.com:9092,b-1.example.com:9092"));
        assert_eq!(a, "b-1.example.com:9092,b-2.example.com:9092");
        for same in [
            " b-1.example.com:9092 , b-2.EXAMPLE.com:9092 ",
            "b-2.example.com:9092,b-1.example.com:9092,b-1.example.com:9092,",
        ] {
            assert_eq!(id(None, Some(same)), a, "{same:?}");
        }
        assert_ne!(
            id(None, Some("b-1.example.com:9096,b-2.example.com:9096")),
            a
        );
        // MSK: the cluster ARN, whatever the case, or a topic ARN of it.
        let arn = "arn:aws:kafka:us-east-1:123456789012:cluster/Demo-Cluster/751D2973-a626-431c-9d4e-d7975eb44dd7-2";
        let want = "arn:aws:kafka:us-east-1:123456789012:cluster/demo-cluster/751d2973-a626-431c-9d4e-d7975eb44dd7-2";
        assert_eq!(id(Some(arn), Some("b-1:9098")), want);
        assert_eq!(id(Some(format!(" {arn} ").as_str()), None), want);
        assert_eq!(
            id(
                Some(
                    "arn:aws:kafka:us-east-1:123456789012:topic/demo-cluster/751d2973-a626-431c-9d4e-d7975eb44dd7-2/orders"
                ),
                None
            ),
            want
        );
        assert_eq!(
            id(
                Some("arn:aws-cn:kafka:cn-north-1:123456789012:cluster/c/u"),
                None
            ),
            "arn:aws-cn:kafka:cn-north-1:123456789012:cluster/c/u"
        );
        // Not an MSK resource ARN: kept as it is.
        assert_eq!(
            id(Some("arn:aws:kafka:us-east-1:1:cluster/only-name"), None),
            "arn:aws:kafka:us-east-1:1:cluster/only-name"
        );
        assert_eq!(id(Some("Something-Else"), Some("b:1")), "Something-Else");
        // Blank ARN: the broker list; neither: empty.
        assert_eq!(id(Some("  "), Some("b:1")), "b:1");
        assert_eq!(id(None, None), "");
        assert_eq!(id(None, Some(" , ")), "");
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
