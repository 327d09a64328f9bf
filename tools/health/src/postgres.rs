//! What `ingest_progress` shows: when each group last handled a batch on a
//! partition. Ingest writes it in the same transaction as the rows, just
//! before the event source mapping commits to Kafka, so its `updated_at` is
//! the nearest thing to a commit timestamp Kafka does not give.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use logpipe_postgres::tokio_postgres::Client;
use serde::Serialize;

use crate::HealthError;

/// One `ingest_progress` row with its age.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestFreshness {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// Highest offset fully handled (the Kafka commit is this + 1).
    pub last_offset: i64,
    pub updated_at: DateTime<Utc>,
    /// Seconds since `updated_at`, by the database's clock.
    pub age_seconds: f64,
}

/// Every progress row, oldest group/topic/partition order.
pub async fn freshness(client: &Client) -> Result<Vec<IngestFreshness>, HealthError> {
    let rows = client
        .query(
            "SELECT consumer_group, topic, kafka_partition, last_offset, updated_at,
                    EXTRACT(EPOCH FROM (now() - updated_at))::float8
               FROM ingest_progress
              ORDER BY consumer_group, topic, kafka_partition",
            &[],
        )
        .await
        .map_err(|e| HealthError::Database(e.to_string()))?;
    rows.iter()
        .map(|r| {
            Ok(IngestFreshness {
                group: r.try_get(0).map_err(db)?,
                topic: r.try_get(1).map_err(db)?,
                partition: r.try_get(2).map_err(db)?,
                last_offset: r.try_get(3).map_err(db)?,
                updated_at: r.try_get(4).map_err(db)?,
                age_seconds: r.try_get::<_, f64>(5).map_err(db)?.max(0.0),
            })
        })
        .collect()
}

/// A group's progress on one partition as `ingest_progress` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedProgress {
    /// On our clock: `observed_at` minus the age the database computes (so
    /// a skewed database clock does not matter).
    pub at: DateTime<Utc>,
    /// `last_offset + 1`, comparable with a Kafka commit.
    pub next_offset: i64,
}

/// The recorded progress of `groups`, by (group, topic, partition).
pub async fn recorded_progress(
    client: &Client,
    groups: &[String],
    observed_at: DateTime<Utc>,
) -> Result<BTreeMap<(String, String, i32), RecordedProgress>, HealthError> {
    let rows = client
        .query(
            "SELECT consumer_group, topic, kafka_partition, last_offset,
                    (EXTRACT(EPOCH FROM (now() - updated_at)) * 1000)::int8
               FROM ingest_progress
              WHERE consumer_group = ANY($1)",
            &[&groups],
        )
        .await
        .map_err(|e| HealthError::Database(e.to_string()))?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let last_offset: i64 = r.try_get(3).map_err(db)?;
        let age_ms: i64 = r.try_get(4).map_err(db)?;
        out.insert(
            (
                r.try_get(0).map_err(db)?,
                r.try_get(1).map_err(db)?,
                r.try_get(2).map_err(db)?,
            ),
            RecordedProgress {
                at: observed_at - TimeDelta::milliseconds(age_ms.max(0)),
                next_offset: last_offset.saturating_add(1),
            },
        );
    }
    Ok(out)
}

fn db(e: logpipe_postgres::tokio_postgres::Error) -> HealthError {
    HealthError::Database(e.to_string())
}
