//! Idempotent batch writes of normalized records, with the consumer
//! progress in the same transaction.

use std::collections::HashMap;
use std::ops::Range;

use chrono::{DateTime, Utc};
use futures::pin_mut;
use logpipe_schema::LogRecord;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{GenericClient, Transaction};

use crate::error::DbError;

/// The `logs` columns written by COPY, in order (everything but `ingested_at`).
/// `source_cluster` names the cluster a record came from (see the
/// `cluster` arguments below).
const COLUMNS: &str = "source_cluster, topic, kafka_partition, kafka_offset, seq, kafka_timestamp, event_time, \
    source_type, service, host, level, message, http_method, http_path, http_protocol, \
    http_status, http_bytes, http_referrer, user_agent, client_ip, latency_ms, metrics, \
    attributes, raw";

const TYPES: [Type; 24] = [
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::INT8,
    Type::INT4,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INET,
    Type::FLOAT8,
    Type::JSONB,
    Type::JSONB,
    Type::TEXT,
];

/// How far a consumer group got in one partition (the ledger's progress).
pub use logpipe_delivery::Progress as PartitionProgress;

/// Last handled offsets of `group` on `cluster` for the given partitions
/// (absent when the group never wrote to that partition). A progress row
/// from before clusters were named (empty cluster) is adopted by the first
/// cluster that asks, so a single-cluster deployment carries on.
pub async fn load_progress(
    client: &impl GenericClient,
    group: &str,
    cluster: &str,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>, DbError> {
    let topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
    let numbers: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
    if !cluster.is_empty() {
        client
            .execute_typed(
                "UPDATE ingest_progress p SET source_cluster = $4
                   FROM unnest($2::text[], $3::int4[]) AS want(topic, kafka_partition)
                  WHERE p.consumer_group = $1 AND p.source_cluster = ''
                    AND want.topic = p.topic AND want.kafka_partition = p.kafka_partition
                    AND NOT EXISTS (
                        SELECT 1 FROM ingest_progress q
                         WHERE q.consumer_group = $1 AND q.topic = p.topic
                           AND q.kafka_partition = p.kafka_partition AND q.source_cluster = $4)",
                &[
                    (&group, Type::TEXT),
                    (&topics, Type::TEXT_ARRAY),
                    (&numbers, Type::INT4_ARRAY),
                    (&cluster, Type::TEXT),
                ],
            )
            .await
            .map_err(DbError::from_query)?;
    }
    let rows = client
        .query_typed(
            "SELECT p.topic, p.kafka_partition, p.last_offset
               FROM ingest_progress p
               JOIN unnest($2::text[], $3::int4[]) AS want(topic, kafka_partition)
                 ON want.topic = p.topic AND want.kafka_partition = p.kafka_partition
              WHERE p.consumer_group = $1 AND p.source_cluster = $4",
            &[
                (&group, Type::TEXT),
                (&topics, Type::TEXT_ARRAY),
                (&numbers, Type::INT4_ARRAY),
                (&cluster, Type::TEXT),
            ],
        )
        .await
        .map_err(DbError::from_query)?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                (r.get::<_, String>(0), r.get::<_, i32>(1)),
                r.get::<_, i64>(2),
            )
        })
        .collect())
}

/// Inserts the rows, skipping any already present. Returns how many were new.
///
/// Common case first: rows above the stored progress cannot be in `logs`
/// yet (rows and progress commit together), so a binary COPY straight into
/// `logs` inside a savepoint usually succeeds at full COPY speed. If another
/// writer got there first (a unique violation), the savepoint is rolled back
/// and the rows go through a staging table and `INSERT … ON CONFLICT DO
/// NOTHING` instead — still one COPY, and idempotent.
pub async fn insert_records(
    txn: &mut Transaction<'_>,
    cluster: &str,
    records: &[&LogRecord],
) -> Result<u64, DbError> {
    if records.is_empty() {
        return Ok(0);
    }
    let direct = txn
        .savepoint("direct_copy")
        .await
        .map_err(DbError::from_query)?;
    match copy_rows(&direct, "logs", cluster, records).await {
        Ok(n) => {
            direct.commit().await.map_err(DbError::from_query)?;
            return Ok(n);
        }
        Err(DbError::Rejected { code, .. }) if code == "23505" => {
            direct.rollback().await.map_err(DbError::from_query)?;
            release(txn, "direct_copy").await?;
        }
        Err(e) => return Err(e),
    }
    txn.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS logs_staging
             (LIKE logs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    )
    .await
    .map_err(DbError::from_query)?;
    copy_rows(txn, "logs_staging", cluster, records).await?;
    txn.execute(
        &format!(
            "INSERT INTO logs ({COLUMNS}) SELECT {COLUMNS} FROM logs_staging
             ON CONFLICT DO NOTHING"
        ),
        &[],
    )
    .await
    .map_err(DbError::from_query)
}

/// What [`insert_isolating`] did: rows new to `logs`, and what PostgreSQL
/// refused (by index into the input: a row, or for
/// [`insert_isolating_records`] a record) with why.
#[derive(Debug, Default)]
pub struct Inserted {
    pub inserted: u64,
    pub rejected: Vec<(usize, DbError)>,
}

/// Inserts the rows like [`insert_records`]; when PostgreSQL refuses the
/// data itself (a value it cannot store, an index row too large), finds the
/// refused rows by retrying the chunk in halves under savepoints, inserts
/// every other row and reports the refused ones. The clean path is one
/// savepoint and one COPY, as before; `k` bad rows among `n` cost about
/// `2·k·log2(n)` extra COPYs of shrinking chunks.
pub async fn insert_isolating(
    txn: &mut Transaction<'_>,
    cluster: &str,
    records: &[&LogRecord],
) -> Result<Inserted, DbError> {
    let units: Vec<Range<usize>> = (0..records.len()).map(|i| i..i + 1).collect();
    insert_units(txn, cluster, records, &units).await
}

/// Like [`insert_isolating`], but a refusal dead-ends a whole record (the
/// consecutive `rows_per_record[i]` rows of record `i`): the halving stops
/// at a record instead of finding its bad row, so a batch envelope of
/// thousands of refused rows costs `log2(records)` COPYs, not thousands.
/// `rejected` holds record indices; none of a refused record's rows is
/// written.
pub async fn insert_isolating_records(
    txn: &mut Transaction<'_>,
    cluster: &str,
    records: &[&LogRecord],
    rows_per_record: &[usize],
) -> Result<Inserted, DbError> {
    let mut units = Vec::with_capacity(rows_per_record.len());
    let mut start = 0;
    for n in rows_per_record {
        units.push(start..start + n);
        start += n;
    }
    if start != records.len() {
        return Err(DbError::Config(format!(
            "{} rows given for records of {start} rows",
            records.len()
        )));
    }
    insert_units(txn, cluster, records, &units).await
}

/// The halving over `units` (consecutive row ranges).
async fn insert_units(
    txn: &mut Transaction<'_>,
    cluster: &str,
    records: &[&LogRecord],
    units: &[Range<usize>],
) -> Result<Inserted, DbError> {
    let mut out = Inserted::default();
    // Explicit stack instead of recursion (async recursion needs boxing).
    let mut chunks: Vec<(usize, usize)> = vec![(0, units.len())];
    while let Some((first, end)) = chunks.pop() {
        if first >= end {
            continue;
        }
        let rows = &records[units[first].start..units[end - 1].end];
        if rows.is_empty() {
            continue;
        }
        let mut sp = txn
            .savepoint("isolate")
            .await
            .map_err(DbError::from_query)?;
        match insert_records(&mut sp, cluster, rows).await {
            Ok(n) => {
                sp.commit().await.map_err(DbError::from_query)?;
                out.inserted += n;
            }
            Err(e) if e.is_data_error() => {
                sp.rollback().await.map_err(DbError::from_query)?;
                release(txn, "isolate").await?;
                if end - first == 1 {
                    out.rejected.push((first, e));
                } else {
                    let mid = first + (end - first) / 2;
                    // Popped in order: the first half first.
                    chunks.push((mid, end));
                    chunks.push((first, mid));
                }
            }
            Err(e) => return Err(e),
        }
    }
    out.rejected.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// Ends a savepoint that was rolled back to. `ROLLBACK TO` keeps it (and its
/// subtransaction) alive; thousands of those exhaust the server's lock table
/// ("out of shared memory") while the transaction runs.
async fn release(txn: &Transaction<'_>, savepoint: &str) -> Result<(), DbError> {
    txn.batch_execute(&format!("RELEASE SAVEPOINT {savepoint}"))
        .await
        .map_err(DbError::from_query)
}

/// Plain binary COPY of `records` into `table` (no conflict handling, no
/// cluster name): the benchmark's baseline.
pub async fn copy_records(
    client: &Transaction<'_>,
    table: &str,
    records: &[&LogRecord],
) -> Result<u64, DbError> {
    copy_rows(client, table, "", records).await
}

/// Binary COPY of `records` from `cluster` into `table`.
async fn copy_rows(
    client: &Transaction<'_>,
    table: &str,
    cluster: &str,
    records: &[&LogRecord],
) -> Result<u64, DbError> {
    let sink = client
        .copy_in(&format!(
            "COPY {table} ({COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .map_err(DbError::from_query)?;
    let writer = BinaryCopyInWriter::new(sink, &TYPES);
    pin_mut!(writer);
    for record in records {
        let row = Row::from_record(record)?;
        writer
            .as_mut()
            .write(&row.values(&cluster))
            .await
            .map_err(DbError::from_query)?;
    }
    writer.finish().await.map_err(DbError::from_query)
}

/// Advances the group's progress (never backwards).
pub async fn save_progress(
    txn: &Transaction<'_>,
    group: &str,
    cluster: &str,
    progress: &[PartitionProgress],
) -> Result<(), DbError> {
    if progress.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = progress.iter().map(|p| p.topic.as_str()).collect();
    let partitions: Vec<i32> = progress.iter().map(|p| p.partition).collect();
    let offsets: Vec<i64> = progress.iter().map(|p| p.last_offset).collect();
    // GREATEST: a late retry of an older batch must never move progress back.
    txn.execute_typed(
        "INSERT INTO ingest_progress AS p
                (consumer_group, topic, kafka_partition, last_offset, source_cluster)
         SELECT $1, t, k, o, $5 FROM unnest($2::text[], $3::int4[], $4::int8[]) AS u(t, k, o)
         ON CONFLICT (consumer_group, topic, kafka_partition, source_cluster) DO UPDATE
            SET last_offset = GREATEST(p.last_offset, EXCLUDED.last_offset),
                updated_at = now()",
        &[
            (&group, Type::TEXT),
            (&topics, Type::TEXT_ARRAY),
            (&partitions, Type::INT4_ARRAY),
            (&offsets, Type::INT8_ARRAY),
            (&cluster, Type::TEXT),
        ],
    )
    .await
    .map_err(DbError::from_query)?;
    Ok(())
}

/// One record as COPY values.
struct Row<'a> {
    record: &'a LogRecord,
    topic: &'a str,
    partition: i32,
    offset: i64,
    seq: i32,
    kafka_timestamp: DateTime<Utc>,
    source_type: &'static str,
    level: Option<&'static str>,
    status: Option<i32>,
    metrics: Json<&'a std::collections::BTreeMap<String, f64>>,
    attributes: Json<&'a serde_json::Map<String, serde_json::Value>>,
}

impl<'a> Row<'a> {
    fn from_record(record: &'a LogRecord) -> Result<Self, DbError> {
        let kafka = record.kafka.as_ref().ok_or_else(|| {
            DbError::Config("a record without Kafka coordinates cannot be stored".into())
        })?;
        Ok(Self {
            record,
            topic: &kafka.topic,
            partition: kafka.partition,
            offset: kafka.offset,
            seq: kafka.seq,
            kafka_timestamp: DateTime::from_timestamp_millis(kafka.timestamp_ms)
                .unwrap_or(record.event_time),
            source_type: record.source_type.as_str(),
            level: record.level.map(|l| l.as_str()),
            status: record.http.as_ref().and_then(|h| h.status).map(i32::from),
            metrics: Json(&record.metrics),
            attributes: Json(&record.attributes),
        })
    }

    fn values<'v>(&'v self, cluster: &'v &str) -> [&'v (dyn ToSql + Sync); 24] {
        let r = self.record;
        let http = r.http.as_ref();
        [
            cluster,
            &self.topic,
            &self.partition,
            &self.offset,
            &self.seq,
            &self.kafka_timestamp,
            &r.event_time,
            &self.source_type,
            &r.service,
            &r.host,
            &self.level,
            &r.message,
            http.map_or(&None::<String>, |h| &h.method),
            http.map_or(&None::<String>, |h| &h.path),
            http.map_or(&None::<String>, |h| &h.protocol),
            &self.status,
            http.map_or(&None::<i64>, |h| &h.bytes),
            http.map_or(&None::<String>, |h| &h.referrer),
            http.map_or(&None::<String>, |h| &h.user_agent),
            http.map_or(&None::<std::net::IpAddr>, |h| &h.client_ip),
            http.map_or(&None::<f64>, |h| &h.latency_ms),
            &self.metrics,
            &self.attributes,
            &r.raw,
        ]
    }
}
