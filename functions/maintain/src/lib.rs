//! The maintain function: on a schedule, the daily partitions of `logs` are
//! prepared ahead, the expired days dropped and the rows `logs_default`
//! holds for a kept day moved into their partition — the SQL function
//! `logpipe_maintain_partitions` (migration V6) through
//! [`logpipe_postgres::maintain_partitions`], exactly what `make up` runs
//! locally. It needs the database and nothing else.

pub mod config;

use chrono::{DateTime, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use logpipe_postgres::{
    Database, DbError, PartitionChange, RetentionSettings, maintain_partitions_with, migrate,
};
use serde::Serialize;
use serde_json::Value;

pub use config::{ConfigError, MaintainConfig};

/// What one invocation may set instead of the configuration (manual runs:
/// `{"retention_days": 7, "partitions_ahead": 2}`). Absent fields keep the
/// configured value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub retention_days: Option<i32>,
    pub partitions_ahead: Option<i32>,
}

impl Overrides {
    pub fn apply(self, configured: RetentionSettings) -> RetentionSettings {
        RetentionSettings {
            retention_days: self.retention_days.unwrap_or(configured.retention_days),
            partitions_ahead: self.partitions_ahead.unwrap_or(configured.partitions_ahead),
        }
    }
}

/// Reads the overrides from the invocation payload. Anything else a
/// schedule delivers (an EventBridge Scheduler input, a classic `Scheduled
/// Event` envelope, `null`) is ignored; the two fields, when present, must
/// be whole day counts in range. A classic envelope's `detail` may carry
/// them too.
pub fn parse_overrides(payload: &Value) -> Result<Overrides, MaintainError> {
    let Value::Object(top) = payload else {
        return Ok(Overrides::default());
    };
    let body = match (top.get("detail-type"), top.get("detail")) {
        (Some(Value::String(kind)), Some(Value::Object(detail))) if kind == "Scheduled Event" => {
            detail
        }
        _ => top,
    };
    let days = |field: &str| -> Result<Option<i32>, MaintainError> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => RetentionSettings::check_days(v.as_i64())
                .map(Some)
                .ok_or_else(|| {
                    MaintainError::Input(format!(
                        "{field}: expected a whole number of days from {} to {}, got {v}",
                        RetentionSettings::MIN_DAYS,
                        RetentionSettings::MAX_DAYS
                    ))
                }),
        }
    };
    Ok(Overrides {
        retention_days: days("retention_days")?,
        partitions_ahead: days("partitions_ahead")?,
    })
}

/// The response, also logged: what the run changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaintainSummary {
    /// The clock the run went by (its UTC day is "today").
    pub at: DateTime<Utc>,
    pub retention_days: i32,
    pub partitions_ahead: i32,
    pub migrations_applied: usize,
    /// New daily partitions, in day order.
    pub partitions_created: Vec<String>,
    /// Expired daily partitions, dropped with their rows.
    pub partitions_dropped: Vec<String>,
    /// Expired partitions whose drop could not get its lock in time (a
    /// long query held `logs`): still there, dropped by a later run.
    pub partitions_skipped: Vec<String>,
    /// Rows of `logs_default` moved into the partitions just created.
    pub rows_moved_from_default: i64,
    /// Rows of `logs_default` older than the first kept day, deleted.
    pub rows_expired_from_default: i64,
}

impl MaintainSummary {
    fn new(at: DateTime<Utc>, settings: RetentionSettings, migrations_applied: usize) -> Self {
        Self {
            at,
            retention_days: settings.retention_days,
            partitions_ahead: settings.partitions_ahead,
            migrations_applied,
            ..Self::default()
        }
    }

    fn record(&mut self, change: PartitionChange) {
        let rows = change.rows.unwrap_or(0);
        match change.action.as_str() {
            "created" => {
                self.partitions_created.push(change.partition);
                self.rows_moved_from_default += rows;
            }
            "dropped" => self.partitions_dropped.push(change.partition),
            "skipped" => self.partitions_skipped.push(change.partition),
            "expired" => self.rows_expired_from_default += rows,
            // A newer schema reporting a change this build does not know.
            other => {
                tracing::warn!(action = other, partition = %change.partition, "unknown partition change")
            }
        }
    }

    /// Nothing changed (the state a second run in the same hour finds).
    pub fn is_no_op(&self) -> bool {
        self.migrations_applied == 0
            && self.partitions_created.is_empty()
            && self.partitions_dropped.is_empty()
            && self.partitions_skipped.is_empty()
            && self.rows_moved_from_default == 0
            && self.rows_expired_from_default == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    /// The invocation's overrides are unusable: a retry cannot help.
    #[error("invalid maintain input: {0}")]
    Input(String),
    /// Connecting, migrating or maintaining failed. An error return makes
    /// Lambda retry the (asynchronous) scheduled invocation, and the next
    /// scheduled run tries again in any case.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl MaintainError {
    /// Whether the same run may succeed later (the database was away).
    pub fn is_transient(&self) -> bool {
        match self {
            MaintainError::Input(_) => false,
            MaintainError::Database(e) => e.is_transient(),
        }
    }
}

impl From<MaintainError> for Diagnostic {
    fn from(e: MaintainError) -> Self {
        let error_type = match &e {
            MaintainError::Input(_) => "InvalidInput",
            MaintainError::Database(_) if e.is_transient() => "DatabaseUnavailable",
            MaintainError::Database(_) => "DatabaseError",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// The function's state across invocations: its settings and one database
/// connection.
pub struct Maintainer {
    config: MaintainConfig,
    db: Database,
}

impl Maintainer {
    pub fn new(config: MaintainConfig, db: Database) -> Self {
        Self { config, db }
    }

    /// Builds the configuration and the database client from the
    /// environment, once per sandbox. Connects lazily: a database that is
    /// down at init fails the first run, not the init.
    pub async fn from_env() -> anyhow::Result<Self> {
        let config = MaintainConfig::from_env()?;
        let db = Database::from_env(&config.function_name).await?;
        Ok(Self::new(config, db))
    }

    pub fn config(&self) -> &MaintainConfig {
        &self.config
    }

    /// One maintenance run as of `now`: pending migrations (when
    /// `RUN_MIGRATIONS`), then partitions ahead, retention and the moves
    /// out of `logs_default`; logged, reported as metrics and returned.
    pub async fn run(
        &self,
        payload: &Value,
        now: DateTime<Utc>,
    ) -> Result<MaintainSummary, MaintainError> {
        let result = match parse_overrides(payload) {
            Ok(overrides) => {
                self.maintain(overrides.apply(self.config.retention), now)
                    .await
            }
            Err(refused) => Err(refused),
        };
        match &result {
            Ok(s) => {
                tracing::info!(
                    retention_days = s.retention_days,
                    partitions_ahead = s.partitions_ahead,
                    migrations_applied = s.migrations_applied,
                    partitions_created = s.partitions_created.len(),
                    partitions_dropped = s.partitions_dropped.len(),
                    partition_drops_skipped = s.partitions_skipped.len(),
                    rows_moved_from_default = s.rows_moved_from_default,
                    rows_expired_from_default = s.rows_expired_from_default,
                    created = ?s.partitions_created,
                    dropped = ?s.partitions_dropped,
                    skipped = ?s.partitions_skipped,
                    "maintenance done"
                );
                if !s.partitions_skipped.is_empty() {
                    tracing::warn!(
                        skipped = ?s.partitions_skipped,
                        lock_timeout_ms = self.config.drop_lock_timeout.as_millis() as u64,
                        "expired partitions not dropped: a query held logs longer than the \
                         lock timeout; the next run drops them"
                    );
                }
                logpipe_telemetry::emit_metrics(
                    &self.config.function_name,
                    &[
                        ("PartitionsCreated", s.partitions_created.len() as i64),
                        ("PartitionsDropped", s.partitions_dropped.len() as i64),
                        ("PartitionDropsSkipped", s.partitions_skipped.len() as i64),
                        ("RowsMovedFromDefault", s.rows_moved_from_default),
                        ("RowsExpiredFromDefault", s.rows_expired_from_default),
                    ],
                );
            }
            Err(error) => {
                tracing::error!(%error, transient = error.is_transient(), "maintenance failed")
            }
        }
        result
    }

    async fn maintain(
        &self,
        settings: RetentionSettings,
        now: DateTime<Utc>,
    ) -> Result<MaintainSummary, MaintainError> {
        let mut client = self.db.client().await?;
        let migrations_applied = if self.config.run_migrations {
            // Boxed: refinery's future is large.
            Box::pin(migrate(&mut client)).await?
        } else {
            0
        };
        let changes =
            maintain_partitions_with(&*client, settings, Some(now), self.config.drop_lock_timeout)
                .await?;
        let mut summary = MaintainSummary::new(now, settings, migrations_applied);
        for change in changes {
            summary.record(change);
        }
        Ok(summary)
    }
}

/// The Lambda handler: any schedule payload in, the summary out, by the
/// function's clock.
pub async fn handle(
    maintainer: &Maintainer,
    event: LambdaEvent<Value>,
) -> Result<MaintainSummary, MaintainError> {
    maintainer.run(&event.payload, Utc::now()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONFIGURED: RetentionSettings = RetentionSettings {
        retention_days: 30,
        partitions_ahead: 7,
    };

    #[test]
    fn schedule_events_change_nothing() {
        for payload in [
            Value::Null,
            json!({}),
            json!("tick"),
            json!([1, 2]),
            // EventBridge Scheduler delivers its Input as is.
            json!({"source": "logpipe.schedule", "tick": true}),
            // A classic rule's envelope.
            json!({"version": "0", "id": "x", "detail-type": "Scheduled Event",
                   "source": "aws.events", "time": "2030-01-01T00:00:00Z", "detail": {}}),
        ] {
            let o = parse_overrides(&payload).unwrap_or_else(|e| panic!("{payload}: {e}"));
            assert_eq!(o, Overrides::default(), "{payload}");
            assert_eq!(o.apply(CONFIGURED), CONFIGURED);
        }
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let o = parse_overrides(&json!({"retention_days": 7, "partitions_ahead": 2})).unwrap();
        assert_eq!(
            o.apply(CONFIGURED),
            RetentionSettings {
                retention_days: 7,
                partitions_ahead: 2
            }
        );
        let o = parse_overrides(&json!({"partitions_ahead": 0, "note": "manual"})).unwrap();
        assert_eq!(
            o.apply(CONFIGURED),
            RetentionSettings {
                retention_days: 30,
                partitions_ahead: 0
            }
        );
        let o = parse_overrides(&json!({"retention_days": null})).unwrap();
        assert_eq!(o.apply(CONFIGURED), CONFIGURED);
        // The same fields in a classic envelope's detail.
        let o = parse_overrides(&json!({"detail-type": "Scheduled Event",
                                        "detail": {"retention_days": 0}}))
        .unwrap();
        assert_eq!(o.apply(CONFIGURED).retention_days, 0);
        assert_eq!(o.apply(CONFIGURED).partitions_ahead, 7);
    }

    #[test]
    fn bad_overrides_are_refused_by_name() {
        for (payload, field) in [
            (json!({"retention_days": -1}), "retention_days"),
            (json!({"retention_days": 36501}), "retention_days"),
            (json!({"retention_days": 7.5}), "retention_days"),
            (json!({"retention_days": "7"}), "retention_days"),
            (json!({"retention_days": true}), "retention_days"),
            (json!({"retention_days": 1e12}), "retention_days"),
            (
                json!({"retention_days": 3, "partitions_ahead": [2]}),
                "partitions_ahead",
            ),
            (json!({"partitions_ahead": {"days": 2}}), "partitions_ahead"),
            (
                json!({"detail-type": "Scheduled Event", "detail": {"partitions_ahead": -2}}),
                "partitions_ahead",
            ),
        ] {
            let error = parse_overrides(&payload).expect_err(&payload.to_string());
            assert!(!error.is_transient(), "{payload}");
            let text = error.to_string();
            assert!(text.contains(field), "{payload}: {text}");
            let diagnostic = Diagnostic::from(error);
            assert_eq!(diagnostic.error_type, "InvalidInput");
        }
    }

    #[test]
    fn the_summary_adds_up_the_changes() {
        let at = DateTime::parse_from_rfc3339("2030-03-15T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut s = MaintainSummary::new(at, CONFIGURED, 0);
        assert!(s.is_no_op());
        for (action, partition, rows) in [
            ("created", "logs_p20300301", Some(4)),
            ("created", "logs_p20300316", Some(0)),
            ("dropped", "logs_p20300210", None),
            ("skipped", "logs_p20300211", None),
            ("expired", "logs_default", Some(3)),
            ("created", "logs_p20300320", Some(2)),
        ] {
            s.record(PartitionChange {
                action: action.into(),
                partition: partition.into(),
                rows,
            });
        }
        assert_eq!(
            s.partitions_created,
            ["logs_p20300301", "logs_p20300316", "logs_p20300320"]
        );
        assert_eq!(s.partitions_dropped, ["logs_p20300210"]);
        assert_eq!(s.partitions_skipped, ["logs_p20300211"]);
        assert_eq!(s.rows_moved_from_default, 6);
        assert_eq!(s.rows_expired_from_default, 3);
        assert!(!s.is_no_op());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["at"], "2030-03-15T10:00:00Z");
        assert_eq!(v["partitions_ahead"], 7);
    }
}
