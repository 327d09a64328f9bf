//! Dead letters: the one builder every consumer in logpipe uses (ingest,
//! detect, the local event source mapping's on-failure topic).
//!
//! A dead letter is the original record — key, value and headers — plus
//! `dlq-*` headers that say what went wrong and where it came from. Its size
//! is bounded so the broker takes it: the value, the key and the original
//! headers are cut to [`Limits`], each cut marked by a header that gives the
//! original size (truncation rather than refusal: a dead letter that cannot
//! be published would stall its partition, and what is kept is enough to
//! find the record at its source offset).

use crate::event::EventRecord;
use crate::{InputRecord, OutMessage};

/// Header names on dead-lettered records.
pub mod header {
    pub const ERROR_CLASS: &str = "dlq-error-class";
    pub const ERROR_MESSAGE: &str = "dlq-error-message";
    pub const ERROR_TYPE: &str = "dlq-error-type";
    pub const SOURCE_TOPIC: &str = "dlq-source-topic";
    pub const SOURCE_PARTITION: &str = "dlq-source-partition";
    pub const SOURCE_OFFSET: &str = "dlq-source-offset";
    pub const SOURCE_TIMESTAMP: &str = "dlq-source-timestamp";
    pub const FUNCTION: &str = "dlq-function";
    pub const CONSUMER_GROUP: &str = "dlq-consumer-group";
    pub const ATTEMPTS: &str = "dlq-attempts";
    /// The value was cut; this is its original length in bytes.
    pub const TRUNCATED_FROM: &str = "dlq-truncated-from";
    /// The key was cut; this is its original length in bytes.
    pub const KEY_TRUNCATED_FROM: &str = "dlq-key-truncated-from";
    /// The key could not be decoded (its class); the key is as it arrived.
    pub const KEY_ERROR: &str = "dlq-key-error";
    /// This many original headers did not fit and were left out.
    pub const HEADERS_DROPPED: &str = "dlq-headers-dropped";
}

/// Size bounds of a dead letter. The defaults keep one well under Kafka's
/// default 1 MB `message.max.bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub value_bytes: usize,
    pub key_bytes: usize,
    /// All original headers together (names and values).
    pub headers_bytes: usize,
    /// The error message header.
    pub message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            value_bytes: 900_000,
            key_bytes: 16 * 1024,
            headers_bytes: 32 * 1024,
            message_bytes: 1000,
        }
    }
}

impl Limits {
    /// The defaults with another value bound (`DLQ_MAX_VALUE_BYTES`).
    pub fn with_value_bytes(value_bytes: usize) -> Self {
        Self {
            value_bytes,
            ..Self::default()
        }
    }
}

/// Why a record is dead-lettered and by whom.
#[derive(Debug, Clone)]
pub struct Reason<'a> {
    /// Stable machine name of the error (`invalid_json`, `db_rejected`, …).
    pub class: &'a str,
    pub message: &'a str,
    pub function: &'a str,
    /// More `dlq-*` headers (the event source mapping adds the error type,
    /// its consumer group and the attempts).
    pub extra: Vec<(&'static str, String)>,
}

impl<'a> Reason<'a> {
    pub fn new(class: &'a str, message: &'a str, function: &'a str) -> Self {
        Self {
            class,
            message,
            function,
            extra: Vec::new(),
        }
    }
}

/// The parts of a consumed record a dead letter keeps.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(String, Vec<u8>)],
    /// Why the key could not be decoded (then `key` is the key as it
    /// arrived, so the dead letter keeps it).
    pub key_error: Option<&'a str>,
}

impl<'a> From<&'a InputRecord> for Source<'a> {
    fn from(r: &'a InputRecord) -> Self {
        let undecodable = r.key.is_none().then_some(r.key_error.as_ref()).flatten();
        Self {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: match undecodable {
                Some(k) => Some(k.raw.as_bytes()),
                None => r.key.as_deref(),
            },
            value: r.value.as_deref(),
            headers: &r.headers,
            key_error: undecodable.map(|k| k.class),
        }
    }
}

impl<'a> From<&'a EventRecord> for Source<'a> {
    fn from(r: &'a EventRecord) -> Self {
        Self {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &r.headers,
            key_error: None,
        }
    }
}

/// The dead letter of `source` for `dlq_topic`.
pub fn dead_letter<'a>(
    source: impl Into<Source<'a>>,
    dlq_topic: String,
    reason: &Reason<'_>,
    limits: &Limits,
) -> OutMessage {
    let source = source.into();
    let mut headers: Vec<(String, Vec<u8>)> = Vec::with_capacity(source.headers.len() + 12);
    let mut header_bytes = 0usize;
    let mut dropped = 0usize;
    for (name, value) in source.headers {
        let size = name.len() + value.len();
        if header_bytes + size <= limits.headers_bytes {
            header_bytes += size;
            headers.push((name.clone(), value.clone()));
        } else {
            dropped += 1;
        }
    }
    let mut add = |name: &str, value: String| headers.push((name.to_string(), value.into_bytes()));
    if dropped > 0 {
        add(header::HEADERS_DROPPED, dropped.to_string());
    }
    let (key, key_cut) = bounded(source.key, limits.key_bytes);
    if let Some(len) = key_cut {
        add(header::KEY_TRUNCATED_FROM, len.to_string());
    }
    if let Some(class) = source.key_error {
        add(header::KEY_ERROR, class.to_string());
    }
    let (payload, value_cut) = bounded(source.value, limits.value_bytes);
    if let Some(len) = value_cut {
        add(header::TRUNCATED_FROM, len.to_string());
    }
    add(header::ERROR_CLASS, reason.class.to_string());
    add(
        header::ERROR_MESSAGE,
        truncate_str(reason.message, limits.message_bytes).to_string(),
    );
    add(header::SOURCE_TOPIC, source.topic.to_string());
    add(header::SOURCE_PARTITION, source.partition.to_string());
    add(header::SOURCE_OFFSET, source.offset.to_string());
    add(header::SOURCE_TIMESTAMP, source.timestamp_ms.to_string());
    add(header::FUNCTION, reason.function.to_string());
    for (name, value) in &reason.extra {
        add(name, value.clone());
    }
    OutMessage {
        topic: dlq_topic,
        key,
        payload,
        headers,
    }
}

/// A copy of `bytes` cut to `max`, and the original length when cut.
fn bounded(bytes: Option<&[u8]>, max: usize) -> (Option<Vec<u8>>, Option<usize>) {
    match bytes {
        None => (None, None),
        Some(b) if b.len() > max => (Some(b[..max].to_vec()), Some(b.len())),
        Some(b) => (Some(b.to_vec()), None),
    }
}

/// `s` cut to at most `max` bytes on a char boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: Vec<u8>, key: Vec<u8>, headers: usize) -> InputRecord {
        InputRecord {
            topic: "log-ingestion".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: 1_700_000_000_000,
            key: Some(key),
            value: Some(value),
            headers: (0..headers)
                .map(|i| (format!("h{i}"), vec![b'x'; 100]))
                .collect(),
            ..Default::default()
        }
    }

    fn get<'m>(m: &'m OutMessage, name: &str) -> Option<&'m str> {
        m.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    #[test]
    fn keeps_the_record_and_says_why_and_where_from() {
        let r = record(b"{bad".to_vec(), b"svc".to_vec(), 1);
        let mut why = Reason::new("invalid_json", "eof at 4", "ingest");
        why.extra.push((header::ATTEMPTS, "3".into()));
        let m = dead_letter(&r, "log-ingestion.dlq".into(), &why, &Limits::default());
        assert_eq!(m.topic, "log-ingestion.dlq");
        assert_eq!(m.payload.as_deref(), Some(&b"{bad"[..]));
        assert_eq!(m.key.as_deref(), Some(&b"svc"[..]));
        assert_eq!(m.headers[0].0, "h0");
        assert_eq!(get(&m, header::ERROR_CLASS), Some("invalid_json"));
        assert_eq!(get(&m, header::ERROR_MESSAGE), Some("eof at 4"));
        assert_eq!(get(&m, header::SOURCE_TOPIC), Some("log-ingestion"));
        assert_eq!(get(&m, header::SOURCE_PARTITION), Some("2"));
        assert_eq!(get(&m, header::SOURCE_OFFSET), Some("41"));
        assert_eq!(get(&m, header::SOURCE_TIMESTAMP), Some("1700000000000"));
        assert_eq!(get(&m, header::FUNCTION), Some("ingest"));
        assert_eq!(get(&m, header::ATTEMPTS), Some("3"));
        assert_eq!(get(&m, header::TRUNCATED_FROM), None);
    }

    #[test]
    fn value_key_headers_and_message_are_bounded_and_marked() {
        let r = record(vec![b'v'; 5000], vec![b'k'; 300], 50);
        let long = "é".repeat(600);
        let why = Reason::new("oversized", &long, "ingest");
        let limits = Limits {
            value_bytes: 1000,
            key_bytes: 100,
            headers_bytes: 1030,
            message_bytes: 99,
        };
        let m = dead_letter(&r, "dlq".into(), &why, &limits);
        assert_eq!(m.payload.as_ref().map(Vec::len), Some(1000));
        assert_eq!(m.key.as_ref().map(Vec::len), Some(100));
        assert_eq!(get(&m, header::TRUNCATED_FROM), Some("5000"));
        assert_eq!(get(&m, header::KEY_TRUNCATED_FROM), Some("300"));
        // 10 headers of 102 bytes fit in 1030.
        assert_eq!(get(&m, header::HEADERS_DROPPED), Some("40"));
        assert_eq!(get(&m, header::ERROR_MESSAGE).map(str::len), Some(98));
    }
}
