//! Structured logs: one JSON object per line on stdout, which CloudWatch
//! Logs (and `cargo lambda watch`) capture as is; and metrics as CloudWatch
//! Embedded Metric Format lines on the same stream ([`emit_metrics`]).

use tracing_subscriber::EnvFilter;

/// Installs the global JSON subscriber. The level comes from `RUST_LOG`
/// (default `info`). Calling it twice is harmless: the second call is ignored.
pub fn init_json_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        // CloudWatch adds its own timestamp; keeping ours helps local runs.
        .try_init();
}

/// The CloudWatch namespace of every logpipe metric.
pub const METRICS_NAMESPACE: &str = "logpipe";

/// A number a metric can carry (counts of any integer width, or a float).
pub trait MetricValue: Copy {
    fn to_json(self) -> serde_json::Value;
}

macro_rules! metric_value {
    ($($t:ty),*) => {$(
        impl MetricValue for $t {
            fn to_json(self) -> serde_json::Value {
                serde_json::Value::from(self)
            }
        }
    )*};
}
metric_value!(u8, u16, u32, u64, usize, i32, i64, f64);

/// Prints one CloudWatch Embedded Metric Format line to stdout: CloudWatch
/// Logs turns it into metrics in namespace `logpipe` with the single
/// dimension `Function` (unit `Count`), e.g.
/// `emit_metrics("ingest", &[("RecordsDeadLettered", 3), ("RecordsStored", 997)])`.
/// The alarms in `infra/template.yaml` read these metrics.
pub fn emit_metrics<V: MetricValue>(function: &str, metrics: &[(&str, V)]) {
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    println!("{}", metrics_line(function, metrics, timestamp_ms));
}

/// The EMF JSON object [`emit_metrics`] prints (one line, no newline).
pub fn metrics_line<V: MetricValue>(
    function: &str,
    metrics: &[(&str, V)],
    timestamp_ms: u64,
) -> String {
    use serde_json::{Map, Value, json};
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, _)| json!({ "Name": name, "Unit": "Count" }))
        .collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": definitions,
            }],
        }),
    );
    line.insert("Function".into(), Value::from(function));
    for (name, value) in metrics {
        line.insert((*name).to_string(), value.to_json());
    }
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_line_is_embedded_metric_format() {
        let line = metrics_line(
            "ingest",
            &[("RecordsDeadLettered", 3usize), ("RecordsStored", 997)],
            1_700_000_000_000,
        );
        assert!(!line.contains('\n'), "one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(
            v,
            serde_json::json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "logpipe",
                        "Dimensions": [["Function"]],
                        "Metrics": [
                            {"Name": "RecordsDeadLettered", "Unit": "Count"},
                            {"Name": "RecordsStored", "Unit": "Count"}
                        ]
                    }]
                },
                "Function": "ingest",
                "RecordsDeadLettered": 3,
                "RecordsStored": 997
            })
        );
    }

    #[test]
    fn every_integer_width_is_accepted() {
        let line = metrics_line("detect", &[("AlertsPublished", 2u64)], 0);
        assert!(line.contains(r#""AlertsPublished":2"#), "{line}");
        let line = metrics_line::<u64>("detect", &[], 0);
        assert!(line.contains(r#""Metrics":[]"#), "{line}");
    }
}
