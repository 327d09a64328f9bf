//! Detection output types: [`Alert`] (to the `alerts` topic) and
//! [`Prediction`] (to `ml-predictions`). Versioned JSON, documented in
//! `ALERTS.md` beside this crate's `FORMATS.md`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Version of the [`Alert`] / [`Prediction`] JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Alert {
    pub schema_version: u32,
    /// Deterministic: `<key>:<entity>:<window_start RFC 3339>`, see [`alert_id`].
    pub id: String,
    pub detector: String,
    pub rule: Option<String>,
    pub severity: Severity,
    pub entity: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub observed: f64,
    pub expected: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    pub sample_record_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Prediction {
    pub schema_version: u32,
    pub id: String,
    pub entity: String,
    pub metric: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub predicted: f64,
    pub lower: f64,
    pub upper: f64,
    pub actual: f64,
    /// In `[0, 1]`; 0.5 at the alerting band edge.
    pub anomaly_score: f64,
    pub model: String,
    pub model_version: String,
}

/// The key used in ids: the detector, or `detector.rule` when there is a rule.
pub fn alert_key(detector: &str, rule: Option<&str>) -> String {
    match rule {
        Some(r) => format!("{detector}.{r}"),
        None => detector.to_string(),
    }
}

/// Deterministic id: `<key>:<entity>:<window_start>` (RFC 3339, seconds, `Z`).
pub fn alert_id(key: &str, entity: &str, window_start: DateTime<Utc>) -> String {
    format!(
        "{key}:{entity}:{}",
        window_start.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

impl Alert {
    /// Builds an alert with a deterministic id; optional fields start empty.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        detector: &str,
        rule: Option<&str>,
        severity: Severity,
        entity: &str,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        observed: f64,
        message: String,
    ) -> Alert {
        Alert {
            schema_version: SCHEMA_VERSION,
            id: alert_id(&alert_key(detector, rule), entity, window_start),
            detector: detector.to_string(),
            rule: rule.map(str::to_string),
            severity,
            entity: entity.to_string(),
            window_start,
            window_end,
            observed,
            expected: None,
            threshold: None,
            message,
            sample_record_ids: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn id_is_deterministic_and_json_round_trips() {
        let mut a = Alert::new(
            "error_rate",
            None,
            Severity::Critical,
            "checkout",
            t("2026-11-22T10:05:00Z"),
            t("2026-11-22T10:06:00Z"),
            0.3,
            "error rate 30 %".into(),
        );
        a.expected = Some(0.01);
        assert_eq!(a.id, "error_rate:checkout:2026-11-22T10:05:00Z");
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains(r#""severity":"critical""#));
        let back: Alert = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v = serde_json::to_value(Alert::new(
            "x",
            Some("r"),
            Severity::Info,
            "e",
            t("2026-11-22T10:05:00Z"),
            t("2026-11-22T10:06:00Z"),
            1.0,
            String::new(),
        ))
        .unwrap();
        assert_eq!(v["id"], "x.r:e:2026-11-22T10:05:00Z");
        v["bogus"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Alert>(v).is_err());
    }
}
