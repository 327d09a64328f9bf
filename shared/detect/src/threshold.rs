//! Static threshold rules on any numeric field of a record.
//!
//! Fields: `http.status` / `status`, `latency_ms` / `http.latency_ms`,
//! `http.bytes` / `bytes`, otherwise a key of `metrics` (optionally written
//! `metrics.<key>`).

use chrono::{DateTime, Utc};
use logpipe_schema::{LogRecord, SourceType};
use serde::{Deserialize, Serialize};

use crate::model::{Alert, Severity};
use crate::window::window_bounds;
use crate::{DetectError, entity_of, record_id_of};

pub const DETECTOR: &str = "threshold";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Gt,
    Lt,
    Gte,
    Lte,
}

impl Op {
    pub fn holds(self, observed: f64, value: f64) -> bool {
        match self {
            Op::Gt => observed > value,
            Op::Lt => observed < value,
            Op::Gte => observed >= value,
            Op::Lte => observed <= value,
        }
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Gte => "≥",
            Op::Lte => "≤",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    pub name: String,
    pub field: String,
    pub op: Op,
    pub value: f64,
    pub severity: Severity,
    /// Only records of this source type (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<SourceType>,
}

/// Parses `[{ "name", "field", "op", "value", "severity", "source_type"? }]`.
pub fn parse_rules(json: &str) -> Result<Vec<ThresholdRule>, DetectError> {
    Ok(serde_json::from_str(json)?)
}

fn sensor_rule(name: &str, field: &str, op: Op, value: f64, severity: Severity) -> ThresholdRule {
    ThresholdRule {
        name: name.to_string(),
        field: field.to_string(),
        op,
        value,
        severity,
        source_type: Some(SourceType::Sensor),
    }
}

/// The default sensor rules (°C, %, km/h, hPa): temperature > 40 critical,
/// < 0 warning; humidity < 20 or > 90; wind > 50; pressure < 980 or > 1040.
pub fn default_sensor_rules() -> Vec<ThresholdRule> {
    use Op::*;
    use Severity::*;
    vec![
        sensor_rule("temperature_high", "temperature", Gt, 40.0, Critical),
        sensor_rule("temperature_low", "temperature", Lt, 0.0, Warning),
        sensor_rule("humidity_low", "humidity", Lt, 20.0, Warning),
        sensor_rule("humidity_high", "humidity", Gt, 90.0, Warning),
        sensor_rule("wind_speed_high", "wind_speed", Gt, 50.0, Warning),
        sensor_rule("pressure_low", "pressure", Lt, 980.0, Warning),
        sensor_rule("pressure_high", "pressure", Gt, 1040.0, Warning),
    ]
}

/// The numeric value of `field` in `record`, if present and finite.
pub fn field_value(record: &LogRecord, field: &str) -> Option<f64> {
    let http = record.http.as_ref();
    let v = match field {
        "http.status" | "status" => http.and_then(|h| h.status).map(f64::from),
        "latency_ms" | "http.latency_ms" => http
            .and_then(|h| h.latency_ms)
            .or_else(|| record.metrics.get("latency_ms").copied()),
        "http.bytes" | "bytes" => http.and_then(|h| h.bytes).map(|b| b as f64),
        other => {
            let key = other.strip_prefix("metrics.").unwrap_or(other);
            record.metrics.get(key).copied()
        }
    };
    v.filter(|x| x.is_finite())
}

/// Evaluates rules against single records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdEngine {
    pub rules: Vec<ThresholdRule>,
    /// Window width used for the alert's window (and therefore its id).
    pub window_secs: i64,
}

impl ThresholdEngine {
    pub fn new(rules: Vec<ThresholdRule>, window_secs: i64) -> ThresholdEngine {
        ThresholdEngine { rules, window_secs }
    }

    /// One alert per rule that fires on `record`.
    pub fn evaluate(&self, record: &LogRecord) -> Vec<Alert> {
        let mut out = Vec::new();
        for rule in &self.rules {
            if rule.source_type.is_some_and(|st| st != record.source_type) {
                continue;
            }
            let Some(observed) = field_value(record, &rule.field) else {
                continue;
            };
            if !rule.op.holds(observed, rule.value) {
                continue;
            }
            let entity = entity_of(record);
            let (ws, we) = window_bounds(record.event_time, self.window_secs);
            let mut a = Alert::new(
                DETECTOR,
                Some(&rule.name),
                rule.severity,
                &entity,
                ws,
                we,
                observed,
                format!(
                    "{} on {entity}: {} = {observed} {} {} at {}",
                    rule.name,
                    rule.field,
                    rule.op.symbol(),
                    rule.value,
                    fmt_time(record.event_time)
                ),
            );
            a.threshold = Some(rule.value);
            a.sample_record_ids.extend(record_id_of(record));
            out.push(a);
        }
        out
    }
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Rng, http, sensor, t};
    use chrono::Duration;

    #[test]
    fn sensor_defaults_fire_on_injected_values() {
        let e = ThresholdEngine::new(default_sensor_rules(), 60);
        let r = sensor(
            t("2026-11-22T10:05:30Z"),
            "st-042",
            &[
                ("temperature", 41.5),
                ("humidity", 95.0),
                ("pressure", 1013.0),
            ],
        );
        let alerts = e.evaluate(&r);
        let names: Vec<_> = alerts.iter().filter_map(|a| a.rule.clone()).collect();
        assert_eq!(names, ["temperature_high", "humidity_high"]);
        assert_eq!(alerts[0].severity, Severity::Critical);
        assert_eq!(alerts[0].entity, "st-042");
        assert_eq!(
            alerts[0].id,
            "threshold.temperature_high:st-042:2026-11-22T10:05:00Z"
        );
        let cold = sensor(t("2026-11-22T10:05:30Z"), "st-1", &[("temperature", -3.0)]);
        assert_eq!(e.evaluate(&cold)[0].severity, Severity::Warning);
    }

    #[test]
    fn clean_sensor_stream_is_quiet() {
        // 0 alerts over 10,000 in-range readings.
        let e = ThresholdEngine::new(default_sensor_rules(), 60);
        let mut rng = Rng::new(7);
        let start = t("2026-11-22T00:00:00Z");
        for i in 0..10_000 {
            let r = sensor(
                start + Duration::seconds(i),
                "st-1",
                &[
                    ("temperature", 5.0 + 30.0 * rng.uniform()),
                    ("humidity", 25.0 + 60.0 * rng.uniform()),
                    ("wind_speed", 45.0 * rng.uniform()),
                    ("pressure", 990.0 + 40.0 * rng.uniform()),
                ],
            );
            assert!(e.evaluate(&r).is_empty());
        }
    }

    #[test]
    fn rules_from_json_on_http_fields() {
        let rules = parse_rules(
            r#"[{"name":"slow","field":"latency_ms","op":"gte","value":1000,"severity":"warning"},
                {"name":"server_error","field":"http.status","op":"gte","value":500,"severity":"info"}]"#,
        )
        .unwrap();
        let e = ThresholdEngine::new(rules, 60);
        assert!(
            e.evaluate(&http(t("2026-11-22T10:00:00Z"), "web", 200, 20.0))
                .is_empty()
        );
        let a = e.evaluate(&http(t("2026-11-22T10:00:00Z"), "web", 503, 1500.0));
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].entity, "web");
        assert!(
            parse_rules(r#"[{"name":"x","field":"f","op":"eq","value":1,"severity":"info"}]"#)
                .is_err()
        );
        assert!(
            parse_rules(
                r#"[{"name":"x","field":"f","op":"gt","value":1,"severity":"info","extra":1}]"#
            )
            .is_err()
        );
    }
}
