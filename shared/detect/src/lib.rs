//! Pure detection core for logpipe (no IO, no clock): every function takes
//! the time it needs, and every state struct is serde-serializable so a
//! caller can persist it (PostgreSQL) between invocations.
//!
//! Pipeline sketch: records → [`threshold`] (per record) and
//! [`window::Windows`] (per entity/window) → closed windows feed
//! [`rate`], [`volume`]; messages feed [`drain`]; numeric fields feed
//! [`outlier`]; all alerts pass through [`cooldown`].

pub mod calibrate;
pub mod cooldown;
pub mod drain;
pub mod engine;
pub mod model;
pub mod outlier;
pub mod rate;
pub mod stats;
pub mod threshold;
pub mod volume;
pub mod window;

#[cfg(test)]
pub(crate) mod testutil;

pub use engine::{Emitted, Engine, EngineConfig, EntityState, Finding};
pub use model::{Alert, Prediction, SCHEMA_VERSION, Severity};

use logpipe_schema::LogRecord;

/// Errors of this crate (only configuration parsing can fail).
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("invalid rule configuration: {0}")]
    InvalidRules(#[from] serde_json::Error),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// The entity a record is attributed to ([`LogRecord::entity`]; ingest
/// keys `log-processing` by it too, so an entity's records share a
/// partition and arrive in order).
pub fn entity_of(record: &LogRecord) -> String {
    record.entity()
}

/// [`entity_of`], borrowed from the record.
pub fn entity_name_of(record: &LogRecord) -> &str {
    record.entity_name()
}

/// The record id (Kafka coordinates) if the record has one.
pub fn record_id_of(record: &LogRecord) -> Option<String> {
    record.kafka.as_ref().map(|k| k.record_id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{record, sensor, t};
    use logpipe_schema::{KAFKA_KEY_ATTRIBUTE, KafkaCoordinates};

    #[test]
    fn entity_falls_back_to_key_then_topic_then_unknown() {
        let at = t("2026-11-22T08:00:00Z");
        let mut r = record(at, "checkout");
        assert_eq!(entity_of(&r), "checkout");
        r.service = Some("  ".into());
        r.host = Some("web-1".into());
        assert_eq!(entity_of(&r), "web-1");
        r.host = None;
        r.kafka = None;
        assert_eq!(entity_of(&r), "unknown");
        r.kafka = Some(KafkaCoordinates {
            topic: "app-logs".into(),
            partition: 0,
            offset: 1,
            seq: 0,
            timestamp_ms: 0,
        });
        assert_eq!(entity_of(&r), "app-logs");
        r.attributes
            .insert(KAFKA_KEY_ATTRIBUTE.into(), serde_json::json!("hdfs-node-7"));
        assert_eq!(entity_of(&r), "hdfs-node-7");
        // a sensor is its id (host) first
        let mut s = sensor(at, "st-001", &[("temperature", 20.0)]);
        s.service = Some("plant".into());
        assert_eq!(entity_of(&s), "st-001");
    }
}
