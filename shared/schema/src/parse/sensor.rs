//! Sensor readings: one JSON object per reading, identified by `sensor_id`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::fields::TIME_KEYS;
use super::{ParseError, json_kind, new_record, time};
use crate::record::{Level, LogRecord, SourceType};

/// Fields that, when present, must be numbers.
const MEASUREMENTS: &[&str] = &[
    "temperature",
    "humidity",
    "wind_speed",
    "wind_direction",
    "wind_gust",
    "pressure",
    "precipitation",
    "rainfall",
    "dew_point",
    "solar_radiation",
    "uv_index",
    "visibility",
];

/// Value of `service` for every sensor record.
pub(crate) const SERVICE: &str = "sensors";

pub(crate) fn parse(
    obj: &Map<String, Value>,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let sensor_id = match obj.get("sensor_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(other) => {
            return Err(ParseError::schema(
                Some("sensor_id"),
                format!(
                    "expected a non-empty string or an integer, got {}",
                    json_kind(other)
                ),
            ));
        }
        None => return Err(ParseError::schema(Some("sensor_id"), "missing")),
    };
    let time_key = TIME_KEYS
        .iter()
        .copied()
        .find(|k| obj.get(*k).is_some_and(|v| !v.is_null()));
    let event_time = match time_key.and_then(|k| obj.get(k).map(|v| (k, v))) {
        Some((k, v)) => time::from_json(v).map_err(|reason| ParseError::schema(Some(k), reason))?,
        None => fallback,
    };

    let mut r = new_record(SourceType::Sensor, event_time, String::new(), raw);
    for (k, v) in obj {
        if k == "sensor_id" || Some(k.as_str()) == time_key {
            continue;
        }
        match v {
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    r.metrics.insert(k.clone(), f);
                }
            }
            Value::Null => {
                r.attributes.insert(k.clone(), Value::Null);
            }
            other if MEASUREMENTS.contains(&k.as_str()) => {
                return Err(ParseError::schema(
                    Some(k),
                    format!("measurement must be a number, got {}", json_kind(other)),
                ));
            }
            other => {
                r.attributes.insert(k.clone(), other.clone());
            }
        }
    }
    if r.metrics.is_empty() {
        return Err(ParseError::schema(
            None,
            "sensor reading without any numeric measurement",
        ));
    }
    let mut message = format!("sensor {sensor_id}:");
    for (k, v) in &r.metrics {
        let _ = write!(message, " {k}={v}");
    }
    r.message = message;
    r.host = Some(sensor_id);
    r.service = Some(SERVICE.to_owned());
    r.level = Some(Level::Info);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, fallback, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn reading() {
        let line = r#"{"sensor_id":"st-042","timestamp":"2024-05-01T12:00:00Z","temperature":21.5,"humidity":55,"wind_speed":12.3,"pressure":1013.2,"location":{"lat":52.5,"lon":13.4},"station":"Berlin-Mitte","unit":"metric"}"#;
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::Sensor);
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.host.as_deref(), Some("st-042"));
        assert_eq!(r.service.as_deref(), Some("sensors"));
        assert_eq!(r.level, Some(Level::Info));
        assert_eq!(
            r.message,
            "sensor st-042: humidity=55 pressure=1013.2 temperature=21.5 wind_speed=12.3"
        );
        assert_eq!(r.metrics.len(), 4);
        assert_eq!(r.metrics["temperature"], 21.5);
        assert_eq!(r.attributes["station"], json!("Berlin-Mitte"));
        assert_eq!(r.attributes["location"], json!({"lat": 52.5, "lon": 13.4}));
        assert!(r.http.is_none());
    }

    #[test]
    fn integer_id_other_metrics_and_fallback_time() {
        let r = parse1(
            r#"{"sensor_id":42,"co2_ppm":415,"battery":3.7}"#,
            Some("sensor"),
        );
        assert_eq!(r.host.as_deref(), Some("42"));
        assert_eq!(r.event_time, fallback());
        assert_eq!(r.message, "sensor 42: battery=3.7 co2_ppm=415");
    }

    #[test]
    fn violations() {
        for line in [
            r#"{"sensor_id":"st-1","temperature":"hot"}"#,
            r#"{"sensor_id":"st-1","humidity":true}"#,
            r#"{"sensor_id":"","temperature":1}"#,
            r#"{"sensor_id":1.5,"temperature":1}"#,
            r#"{"sensor_id":null,"temperature":1}"#,
            r#"{"sensor_id":"st-1"}"#,
            r#"{"sensor_id":"st-1","station":"x"}"#,
            r#"{"sensor_id":"st-1","timestamp":"soon","temperature":1}"#,
        ] {
            assert_eq!(err_class(line, None), "schema_violation", "{line}");
            assert_eq!(
                err_class(line, Some("sensor")),
                "schema_violation",
                "{line}"
            );
        }
        let e = crate::parse(
            r#"{"sensor_id":"st-1","temperature":"hot"}"#,
            None,
            fallback(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`temperature`"), "{e}");
        assert_eq!(
            err_class(r#"{"temperature":1}"#, Some("sensor")),
            "schema_violation"
        );
    }
}
