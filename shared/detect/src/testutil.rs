//! Deterministic synthetic data for tests (no external RNG crate).

use chrono::{DateTime, Utc};
use logpipe_schema::{HttpFields, KafkaCoordinates, Level, LogRecord, SourceType};
use std::collections::BTreeMap;

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// xorshift64* PRNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn record(at: DateTime<Utc>, service: &str) -> LogRecord {
    LogRecord {
        event_time: at,
        source_type: SourceType::AppJson,
        service: Some(service.to_string()),
        host: Some("host-1".to_string()),
        level: Some(Level::Info),
        message: "ok".to_string(),
        http: None,
        metrics: BTreeMap::new(),
        attributes: serde_json::Map::new(),
        raw: String::new(),
        kafka: Some(KafkaCoordinates {
            topic: "logs".into(),
            partition: 0,
            offset: at.timestamp_millis(),
            seq: 0,
            timestamp_ms: at.timestamp_millis(),
        }),
    }
}

pub fn sensor(at: DateTime<Utc>, id: &str, metrics: &[(&str, f64)]) -> LogRecord {
    let mut r = record(at, "weather");
    r.source_type = SourceType::Sensor;
    r.host = Some(id.to_string());
    r.metrics = metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    r
}

pub fn http(at: DateTime<Utc>, service: &str, status: u16, latency_ms: f64) -> LogRecord {
    let mut r = record(at, service);
    r.source_type = SourceType::WebAccess;
    r.http = Some(HttpFields {
        status: Some(status),
        latency_ms: Some(latency_ms),
        ..HttpFields::default()
    });
    r
}
