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

pub use engine::{Emitted, Engine, EngineConfig, EntityState};
pub use model::{Alert, Prediction, SCHEMA_VERSION, Severity};

use logpipe_schema::{LogRecord, SourceType};

/// Errors of this crate (only configuration parsing can fail).
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("invalid rule configuration: {0}")]
    InvalidRules(#[from] serde_json::Error),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// The entity a record is attributed to: the sensor id (host) for sensor
/// records, otherwise the service, falling back to the host, then "unknown".
pub fn entity_of(record: &LogRecord) -> String {
    let preferred = if record.source_type == SourceType::Sensor {
        record.host.as_ref().or(record.service.as_ref())
    } else {
        record.service.as_ref().or(record.host.as_ref())
    };
    preferred.cloned().unwrap_or_else(|| "unknown".to_string())
}

/// The record id (Kafka coordinates) if the record has one.
pub fn record_id_of(record: &LogRecord) -> Option<String> {
    record.kafka.as_ref().map(|k| k.record_id())
}
