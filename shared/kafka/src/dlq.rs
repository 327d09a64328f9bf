//! Dead letters: the original record, unchanged but for a bounded value,
//! plus headers that say what went wrong and where it came from. Shared by
//! every function that consumes a topic.

use crate::{InputRecord, OutMessage};

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
    error_class: &str,
    error_message: &str,
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
    let mut message = error_message.to_string();
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
            error_class.as_bytes().to_vec(),
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
