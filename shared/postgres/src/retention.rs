//! Partition look-ahead and retention of `logs` (daily partitions by the
//! Kafka timestamp). The work is the SQL function
//! `logpipe_maintain_partitions` (migration V6), so a scheduler that can
//! only run SQL does the same; this calls it and reports what changed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::error::DbError;

/// How long rows stay and how far ahead partitions are prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Whole UTC days kept before today; 0 keeps everything.
    pub retention_days: i32,
    /// Daily partitions prepared after today.
    pub partitions_ahead: i32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            retention_days: 30,
            partitions_ahead: 3,
        }
    }
}

impl RetentionSettings {
    /// `LOG_RETENTION_DAYS` (default 30, 0 = keep forever) and
    /// `LOG_PARTITIONS_AHEAD` (default 3).
    pub fn from_env() -> Result<Self, DbError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The same settings from any source of variables (tests, a scheduled
    /// function's configuration).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, DbError> {
        let defaults = Self::default();
        let day_count = |name: &str, default: i32| match get(name) {
            None => Ok(default),
            Some(v) if v.trim().is_empty() => Ok(default),
            Some(v) => Self::check_days(v.trim().parse::<i64>().ok()).ok_or_else(|| {
                DbError::Config(format!(
                    "{name}={v:?}: expected {} to {} days",
                    Self::MIN_DAYS,
                    Self::MAX_DAYS
                ))
            }),
        };
        Ok(Self {
            retention_days: day_count("LOG_RETENTION_DAYS", defaults.retention_days)?,
            partitions_ahead: day_count("LOG_PARTITIONS_AHEAD", defaults.partitions_ahead)?,
        })
    }

    /// The smallest day count either setting takes (0: keep everything /
    /// prepare only today).
    pub const MIN_DAYS: i32 = 0;
    /// The largest: a century, far more than anyone keeps, small enough that
    /// the day arithmetic never leaves PostgreSQL's date range.
    pub const MAX_DAYS: i32 = 36_500;

    /// `n` when it is a valid day count for either setting.
    pub fn check_days(n: Option<i64>) -> Option<i32> {
        n.filter(|n| (i64::from(Self::MIN_DAYS)..=i64::from(Self::MAX_DAYS)).contains(n))
            .and_then(|n| i32::try_from(n).ok())
    }
}

/// One change maintenance made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionChange {
    /// `created` (rows: moved out of `logs_default`), `dropped` (no count:
    /// counting would read the partition), `skipped` (a drop that could not
    /// get its lock in time; retried next run) or `expired` (rows deleted
    /// from `logs_default`).
    pub action: String,
    pub partition: String,
    pub rows: Option<i64>,
}

/// How long dropping an expired partition waits for its lock (ACCESS
/// EXCLUSIVE on `logs`) before it is skipped until the next run.
pub const DROP_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the partitions ahead and drops the expired ones, as of `at`
/// (`None`: the server's clock). Retention is the one place the clock
/// decides; which partition a row goes to never depends on it. A drop that
/// cannot get its lock within [`DROP_LOCK_TIMEOUT`] is reported as
/// `skipped` (the partition stays, the next run drops it).
pub async fn maintain_partitions(
    client: &impl GenericClient,
    settings: RetentionSettings,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<PartitionChange>, DbError> {
    maintain_partitions_with(client, settings, at, DROP_LOCK_TIMEOUT).await
}

/// [`maintain_partitions`] with the drops' lock wait bounded by
/// `drop_lock_timeout` (at least 1 ms).
pub async fn maintain_partitions_with(
    client: &impl GenericClient,
    settings: RetentionSettings,
    at: Option<DateTime<Utc>>,
    drop_lock_timeout: Duration,
) -> Result<Vec<PartitionChange>, DbError> {
    let timeout_ms = i32::try_from(drop_lock_timeout.as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    let rows = client
        .query(
            "SELECT action, partition_name, row_count
               FROM logpipe_maintain_partitions($1, $2, coalesce($3, now()), $4)",
            &[
                &settings.retention_days,
                &settings.partitions_ahead,
                &at,
                &timeout_ms,
            ],
        )
        .await
        .map_err(DbError::from_query)?;
    Ok(rows
        .iter()
        .map(|r| PartitionChange {
            action: r.get(0),
            partition: r.get(1),
            rows: r.get(2),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_counts_are_checked() {
        // SAFETY: this test is the only one in the crate touching these names.
        unsafe { std::env::set_var("LOG_RETENTION_DAYS", "7") };
        unsafe { std::env::set_var("LOG_PARTITIONS_AHEAD", "") };
        let s = RetentionSettings::from_env().expect("valid");
        assert_eq!(s.retention_days, 7);
        assert_eq!(s.partitions_ahead, 3);
        unsafe { std::env::set_var("LOG_RETENTION_DAYS", "-1") };
        assert!(RetentionSettings::from_env().is_err());
        unsafe { std::env::set_var("LOG_RETENTION_DAYS", "a week") };
        assert!(RetentionSettings::from_env().is_err());
        unsafe { std::env::remove_var("LOG_RETENTION_DAYS") };
        unsafe { std::env::remove_var("LOG_PARTITIONS_AHEAD") };
        assert_eq!(
            RetentionSettings::from_env().expect("defaults"),
            RetentionSettings::default()
        );
    }
}
