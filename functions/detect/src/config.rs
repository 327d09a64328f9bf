//! The detect function's settings, all from environment variables.

use std::time::Duration;

use logpipe_detect::EngineConfig;
use logpipe_detect::threshold::{default_sensor_rules, parse_rules};
use logpipe_detect::window::WindowConfig;

/// | variable | default | meaning |
/// |---|---|---|
/// | `CONSUMER_GROUP` | `logpipe-detect` | the ESM's consumer group id (key of progress and state) |
/// | `REPORT_BATCH_ITEM_FAILURES` | `false` | `true` only when the ESM has `FunctionResponseTypes: [ReportBatchItemFailures]` |
/// | `ALERTS_TOPIC` | `alerts` | where [`Alert`](logpipe_schema::Alert)s go |
/// | `PREDICTIONS_TOPIC` | `ml-predictions` | where [`Prediction`](logpipe_schema::Prediction)s go; empty disables them |
/// | `DLQ_SUFFIX` | `.dlq` | dead-letter topic = source topic + suffix |
/// | `DLQ_MAX_VALUE_BYTES` | `900000` | larger dead-lettered values are truncated |
/// | `DETECT_STATE_CACHE_ENTITIES` | `2000` | entity states kept in memory between invocations of a sandbox (used only while the stored row is at the same version; `0` reads every state from PostgreSQL each batch) |
/// | `WINDOW_SECONDS` | `60` | event-time window width |
/// | `ALLOWED_LATENESS_SECONDS` | `30` | how long a window waits for late records |
/// | `COOLDOWN_WINDOWS` | `5` | clear windows before the same detector may alert again for an entity |
/// | `MAX_FUTURE_SKEW_SECONDS` | `300` | event times further ahead of the clock do not move the watermark |
/// | `DETECT_RULES` | sensor defaults | threshold rules as JSON (`[{name, field, op, value, severity, source_type?}]`) |
/// | `DETECT_RULES_FILE` | — | the same, read from a file (packaged with the function) |
/// | `RATE_MIN_COUNT` | `20` | records a window needs before its error / 5xx rate is judged |
/// | `RATE_WARMUP_WINDOWS` | `5` | an entity alerts on its error and 5xx rates only after this many judged windows of its own history (a level seen for the first time is not yet an incident); threshold rules apply at once |
/// | `VOLUME_WARMUP_WINDOWS` | `30` | windows of history before volume alerts |
/// | `TEMPLATE_WARMUP_MESSAGES` | `1000` | messages per entity before new templates alert |
/// | `DETECT_MAX_TEMPLATES_PER_ENTITY` | `1000` | message templates kept per entity; at the cap the least recently seen is evicted (counted in the state's `templates.evictions`) |
/// | `DETECT_MAX_ALERT_MESSAGE_BYTES` | `2048` | an alert's message is cut to this (at least 64) on a char boundary, ending in `… (truncated, N more findings)` |
/// | `OUTBOX_BATCH` | `10000` | outbox messages claimed per round; an invocation publishes rounds until the outbox is empty or its time budget is used |
/// | `OUTBOX_BUDGET_MS` | `10000` | time an invocation spends publishing the outbox at most (also bounded by the invocation's deadline less 3 s) |
/// | `OUTBOX_RETENTION_HOURS` | `168` | published outbox rows older than this are deleted (parked rows stay until an operator acts) |
/// | `IDLE_ADVANCE_SECONDS` | `300` | an entity that has sent nothing for this long (wall time) is silent: its own event-time clock then moves on with the wall time, so its last windows close at the next batch or tick (each entity otherwise runs on its own newest event time) |
/// | `KAFKA_MESSAGE_TIMEOUT_MS` | `20000` | how long a publish may wait for the broker |
/// | `RUN_MIGRATIONS` | `false` | apply migrations at init instead of only checking the schema version (needs DDL rights) |
/// | `AWS_LAMBDA_FUNCTION_NAME` | `detect` | named in dead-letter headers |
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    pub consumer_group: String,
    pub report_batch_item_failures: bool,
    pub alerts_topic: String,
    pub predictions_topic: Option<String>,
    pub dlq_suffix: String,
    pub dlq_max_value_bytes: usize,
    pub state_cache_entities: usize,
    pub max_future_skew: chrono::Duration,
    pub outbox_batch: i64,
    pub outbox_budget: Duration,
    pub outbox_retention: Duration,
    pub idle_advance: Duration,
    pub message_timeout: Duration,
    pub function_name: String,
    pub run_migrations: bool,
    pub engine: EngineConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("detect configuration is invalid: {0}")]
pub struct ConfigError(pub String);

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            consumer_group: "logpipe-detect".into(),
            report_batch_item_failures: false,
            alerts_topic: "alerts".into(),
            predictions_topic: Some("ml-predictions".into()),
            dlq_suffix: ".dlq".into(),
            dlq_max_value_bytes: 900_000,
            state_cache_entities: 2000,
            max_future_skew: chrono::Duration::seconds(300),
            outbox_batch: 10_000,
            outbox_budget: Duration::from_secs(10),
            outbox_retention: Duration::from_secs(168 * 3600),
            idle_advance: Duration::from_secs(300),
            message_timeout: Duration::from_secs(20),
            function_name: "detect".into(),
            run_migrations: false,
            engine: EngineConfig::default(),
        }
    }
}

impl DetectConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let text = |key: &str| {
            get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let number = |key: &str, default: u64| -> Result<u64, ConfigError> {
            match text(key) {
                Some(v) => v
                    .parse()
                    .map_err(|_| ConfigError(format!("{key}={v:?} is not a number"))),
                None => Ok(default),
            }
        };
        let flag = |key: &str, default: bool| -> Result<bool, ConfigError> {
            match text(key).as_deref() {
                None => Ok(default),
                Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
                Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
                Some(v) => Err(ConfigError(format!("{key}={v:?}: expected true or false"))),
            }
        };
        let rules = match (text("DETECT_RULES"), text("DETECT_RULES_FILE")) {
            (Some(json), _) => {
                parse_rules(&json).map_err(|e| ConfigError(format!("DETECT_RULES: {e}")))?
            }
            (None, Some(path)) => {
                let json = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError(format!("DETECT_RULES_FILE {path}: {e}")))?;
                parse_rules(&json)
                    .map_err(|e| ConfigError(format!("DETECT_RULES_FILE {path}: {e}")))?
            }
            (None, None) => default_sensor_rules(),
        };
        let de = &d.engine;
        let width = number("WINDOW_SECONDS", de.window.width_secs as u64)?;
        if width == 0 {
            return Err(ConfigError("WINDOW_SECONDS must be at least 1".into()));
        }
        let mut engine = EngineConfig {
            window: WindowConfig {
                width_secs: width as i64,
                allowed_lateness_secs: number(
                    "ALLOWED_LATENESS_SECONDS",
                    de.window.allowed_lateness_secs as u64,
                )? as i64,
            },
            rules,
            cooldown_windows: number("COOLDOWN_WINDOWS", de.cooldown_windows as u64)? as i64,
            ..de.clone()
        };
        engine.rate.min_count = number("RATE_MIN_COUNT", de.rate.min_count)?;
        engine.rate.warmup_windows = number("RATE_WARMUP_WINDOWS", de.rate.warmup_windows)?;
        engine.volume.warmup_windows = number("VOLUME_WARMUP_WINDOWS", de.volume.warmup_windows)?;
        engine.drain.warmup_messages =
            number("TEMPLATE_WARMUP_MESSAGES", de.drain.warmup_messages)?;
        engine.drain.max_templates = number(
            "DETECT_MAX_TEMPLATES_PER_ENTITY",
            de.drain.max_templates as u64,
        )?
        .max(1) as usize;
        engine.max_alert_message_bytes = number(
            "DETECT_MAX_ALERT_MESSAGE_BYTES",
            de.max_alert_message_bytes as u64,
        )? as usize;
        Ok(Self {
            consumer_group: text("CONSUMER_GROUP").unwrap_or(d.consumer_group),
            report_batch_item_failures: flag(
                "REPORT_BATCH_ITEM_FAILURES",
                d.report_batch_item_failures,
            )?,
            alerts_topic: text("ALERTS_TOPIC").unwrap_or(d.alerts_topic),
            predictions_topic: match get("PREDICTIONS_TOPIC") {
                Some(t) if t.trim().is_empty() => None,
                Some(t) => Some(t.trim().to_string()),
                None => d.predictions_topic,
            },
            dlq_suffix: text("DLQ_SUFFIX").unwrap_or(d.dlq_suffix),
            dlq_max_value_bytes: number("DLQ_MAX_VALUE_BYTES", d.dlq_max_value_bytes as u64)?
                as usize,
            state_cache_entities: usize::try_from(number(
                "DETECT_STATE_CACHE_ENTITIES",
                d.state_cache_entities as u64,
            )?)
            .unwrap_or(usize::MAX),
            max_future_skew: chrono::Duration::seconds(number(
                "MAX_FUTURE_SKEW_SECONDS",
                d.max_future_skew.num_seconds() as u64,
            )? as i64),
            outbox_batch: number("OUTBOX_BATCH", d.outbox_batch as u64)?.max(1) as i64,
            outbox_budget: Duration::from_millis(number(
                "OUTBOX_BUDGET_MS",
                d.outbox_budget.as_millis() as u64,
            )?),
            outbox_retention: Duration::from_secs(
                number(
                    "OUTBOX_RETENTION_HOURS",
                    d.outbox_retention.as_secs() / 3600,
                )?
                .saturating_mul(3600),
            ),
            idle_advance: Duration::from_secs(number(
                "IDLE_ADVANCE_SECONDS",
                d.idle_advance.as_secs(),
            )?),
            message_timeout: Duration::from_millis(number(
                "KAFKA_MESSAGE_TIMEOUT_MS",
                d.message_timeout.as_millis() as u64,
            )?),
            function_name: text("AWS_LAMBDA_FUNCTION_NAME").unwrap_or(d.function_name),
            run_migrations: flag("RUN_MIGRATIONS", d.run_migrations)?,
            engine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = DetectConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c, DetectConfig::default());
        assert_eq!(c.engine.rules.len(), 7, "the default sensor rules");
        let c = DetectConfig::from_lookup(|k| match k {
            "WINDOW_SECONDS" => Some("10".into()),
            "RATE_WARMUP_WINDOWS" => Some("0".into()),
            "PREDICTIONS_TOPIC" => Some(" ".into()),
            "DETECT_RULES" => Some(
                r#"[{"name":"slow","field":"latency_ms","op":"gt","value":900,"severity":"warning"}]"#
                    .into(),
            ),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.engine.window.width_secs, 10);
        assert_eq!(c.engine.rate.warmup_windows, 0);
        assert_eq!(DetectConfig::default().engine.rate.warmup_windows, 5);
        assert_eq!(c.predictions_topic, None);
        assert_eq!(c.engine.rules[0].name, "slow");
        for (k, v) in [
            ("WINDOW_SECONDS", "0"),
            ("WINDOW_SECONDS", "ten"),
            ("DETECT_RULES", "[{\"name\":1}]"),
            ("DETECT_RULES_FILE", "/nonexistent/rules.json"),
            ("REPORT_BATCH_ITEM_FAILURES", "yes"),
            ("RATE_WARMUP_WINDOWS", "-1"),
        ] {
            let e = DetectConfig::from_lookup(|key| (key == k).then(|| v.to_string()));
            assert!(e.is_err(), "{k}={v}");
        }
    }
}
