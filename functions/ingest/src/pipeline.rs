//! One batch, start to finish: classify every record, skip what was already
//! done, dead-letter poison, forward normalized records, then store rows and
//! progress in one transaction.
//!
//! Ordering is what makes retries safe. Publishing (dead letters and
//! forwards) finishes before the transaction commits, so a crash in between
//! re-publishes on retry (a duplicate downstream, keyed by record id) rather
//! than losing anything; rows and progress commit together, so a retry after
//! the commit skips the records instead of storing them twice.

use std::collections::{BTreeMap, HashMap};

use logpipe_kafka::producer::Delivered;
use logpipe_kafka::{
    BatchItemFailure, DecodedEvent, InputRecord, OutMessage, PublishError, Publisher,
};
use logpipe_postgres::{
    Database, DbError, PartitionProgress, insert_records, load_progress, migrate, save_progress,
    store_batch,
};
use logpipe_schema::LogRecord;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::classify::{Verdict, classify_all};
use crate::config::IngestConfig;
use crate::messages::{dead_letter, forward};

/// Per-batch counts. Every input record is in exactly one of stored,
/// duplicate, dead-lettered or retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchSummary {
    pub records_in: usize,
    /// Records whose rows were committed by this invocation.
    pub records_stored: usize,
    /// Records at or below the group's stored progress (already handled).
    pub records_duplicate: usize,
    pub records_dead_lettered: usize,
    /// Records handed back to the event source for another attempt.
    pub records_retry: usize,
    pub rows_inserted: u64,
    /// Rows that were already in `logs` (a replay that progress did not catch).
    pub rows_already_present: u64,
    pub records_forwarded: usize,
    pub dead_letter_classes: BTreeMap<String, usize>,
}

/// What the handler turns into the Lambda response.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome {
    pub summary: BatchSummary,
    /// First unprocessed offset of each partition that must be retried.
    pub failures: Vec<BatchItemFailure>,
    /// Why there are failures.
    pub cause: Option<String>,
    /// A failure that cannot be expressed per partition (a record without
    /// usable coordinates could not be dead-lettered): retry the whole batch.
    pub whole_batch_failed: bool,
}

type PartitionKey = (String, i32);

pub struct Ingestor {
    config: IngestConfig,
    db: Database,
    publisher: Publisher,
    schema_ready: OnceCell<()>,
}

impl Ingestor {
    pub fn new(config: IngestConfig, db: Database, publisher: Publisher) -> Self {
        Self {
            config,
            db,
            publisher,
            schema_ready: OnceCell::new(),
        }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Applies migrations once per sandbox (at init, or at the first batch
    /// when the database was down at init).
    pub async fn ensure_schema(&self) -> Result<(), DbError> {
        self.schema_ready
            .get_or_try_init(|| async {
                if !self.config.run_migrations {
                    return Ok(());
                }
                let mut client = self.db.client().await?;
                migrate(&mut client).await.map(|_| ())
            })
            .await
            .map(|_| ())
    }

    /// Logs a specific error when the broker is unreachable or the forward
    /// topic is missing. Never fails: the broker may come back.
    pub async fn check_topics(&self) {
        let topics: Vec<&str> = self
            .config
            .forward_topic
            .iter()
            .map(String::as_str)
            .collect();
        match self
            .publisher
            .check_topics(&topics, std::time::Duration::from_secs(5))
            .await
        {
            Ok(()) => tracing::info!(?topics, "Kafka reachable and topics present"),
            Err(error) => tracing::error!(%error, "Kafka not ready at init"),
        }
    }

    pub async fn ingest(&self, event: DecodedEvent) -> BatchOutcome {
        let started = std::time::Instant::now();
        let mut records = event.records;
        let verdicts = classify_all(&records, self.config.max_record_bytes);
        let mut summary = BatchSummary {
            records_in: records.len(),
            ..Default::default()
        };

        let partitions = partitions_of(&records);
        let progress = match self.load_progress(&partitions).await {
            Ok(p) => p,
            Err(e) => return fail_everything(summary, &records, &HashMap::new(), e.to_string()),
        };

        // Everything to publish, each message remembering its record.
        // Forwarded records are serialized only when queued (see publish_all).
        let mut messages: Vec<Pending<'_>> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        for (i, (record, verdict)) in records.iter().zip(&verdicts).enumerate() {
            if already_done(&progress, record) {
                continue;
            }
            match verdict {
                Verdict::Poison(p) => {
                    tracing::warn!(
                        topic = %record.topic, partition = record.partition, offset = record.offset,
                        error_class = p.class, error = %p.message,
                        "record cannot be ingested; sending it to the dead-letter topic"
                    );
                    messages.push(Pending::Ready(dead_letter(
                        record,
                        p,
                        format!("{}{}", record.topic, self.config.dlq_suffix),
                        &self.config.function_name,
                        self.config.dlq_max_value_bytes,
                    )));
                    owners.push(i);
                }
                Verdict::Rows(rows) => {
                    if let Some(topic) = &self.config.forward_topic {
                        for row in rows {
                            messages.push(Pending::Forward(row, topic));
                            owners.push(i);
                        }
                    }
                }
            }
        }

        // The values are in the dead letters and the parsed rows now.
        for r in &mut records {
            r.value = None;
        }
        let no_stops = HashMap::new();
        let rows = handled_rows(&records, &verdicts, &progress, &no_stops);
        let progress_all = new_progress(&partitions, &no_stops);
        let classified_ms = started.elapsed().as_millis() as u64;
        let (stored, results) = self
            .store_while_publishing(&rows, &progress_all, messages)
            .await;
        tracing::debug!(
            classified_ms,
            stored_and_published_ms = started.elapsed().as_millis() as u64 - classified_ms,
            "batch phases"
        );

        // A failed delivery stops its partition at that record.
        let mut stop_at: HashMap<PartitionKey, i64> = HashMap::new();
        let mut cause = None;
        let mut whole_batch_failed = false;
        for (result, &owner) in results.iter().zip(&owners) {
            if let Err(e) = result {
                let r = &records[owner];
                tracing::error!(topic = %r.topic, partition = r.partition, offset = r.offset, error = %e, "publish failed; the record will be retried");
                cause.get_or_insert_with(|| e.to_string());
                if r.offset < 0 || r.partition < 0 {
                    whole_batch_failed = true;
                }
                let at = stop_at
                    .entry((r.topic.clone(), r.partition))
                    .or_insert(r.offset);
                *at = (*at).min(r.offset);
            }
        }
        summary.records_forwarded = results
            .iter()
            .zip(&owners)
            .filter(|(res, o)| res.is_ok() && matches!(verdicts[**o], Verdict::Rows(_)))
            .count();
        let (rows_written, stored) = match stored {
            Err(e) => return fail_everything(summary, &records, &progress, e.to_string()),
            Ok(Some(inserted)) => (rows.len(), Ok(inserted)),
            // Some deliveries failed, so nothing was committed: store what
            // was handled, up to the first failure of each partition.
            Ok(None) => {
                let rows = handled_rows(&records, &verdicts, &progress, &stop_at);
                let progress = new_progress(&partitions, &stop_at);
                (rows.len(), self.store(&rows, &progress).await)
            }
        };
        let inserted = match stored {
            Ok(n) => n,
            Err(e) => return fail_everything(summary, &records, &progress, e.to_string()),
        };
        summary.rows_inserted = inserted;
        summary.rows_already_present = rows_written as u64 - inserted;

        tracing::debug!(
            before_accounting_ms = started.elapsed().as_millis() as u64,
            "stored"
        );
        // Account for every record.
        let mut failures: BTreeMap<PartitionKey, i64> = BTreeMap::new();
        for (record, verdict) in records.iter().zip(&verdicts) {
            if already_done(&progress, record) {
                summary.records_duplicate += 1;
            } else if stopped(&stop_at, record) {
                summary.records_retry += 1;
                failures
                    .entry((record.topic.clone(), record.partition))
                    .or_insert(record.offset);
            } else {
                match verdict {
                    Verdict::Rows(_) => summary.records_stored += 1,
                    Verdict::Poison(p) => {
                        summary.records_dead_lettered += 1;
                        *summary
                            .dead_letter_classes
                            .entry(p.class.to_string())
                            .or_default() += 1;
                    }
                }
            }
        }
        // Freeing ~10^5 small allocations takes tens of milliseconds; do it
        // off the response path (a frozen sandbox just finishes it later).
        if records.len() >= 1_000 {
            std::thread::spawn(move || drop((records, verdicts)));
        }
        BatchOutcome {
            summary,
            failures: failures
                .into_iter()
                .map(|((t, p), o)| BatchItemFailure::new(&t, p, o))
                .collect(),
            cause,
            whole_batch_failed,
        }
    }

    async fn load_progress(
        &self,
        partitions: &BTreeMap<PartitionKey, OffsetRange>,
    ) -> Result<HashMap<PartitionKey, i64>, DbError> {
        self.ensure_schema().await?;
        let keys: Vec<PartitionKey> = partitions.keys().cloned().collect();
        let client = self.db.client().await?;
        load_progress(&*client, &self.config.consumer_group, &keys).await
    }

    async fn store(
        &self,
        rows: &[&LogRecord],
        progress: &[PartitionProgress],
    ) -> Result<u64, DbError> {
        let mut client = self.db.client().await?;
        store_batch(&mut client, &self.config.consumer_group, rows, progress).await
    }

    /// Writes rows and progress in a transaction while the messages are
    /// published, and commits only when every delivery succeeded. Returns
    /// `Ok(Some(rows inserted))` when committed, `Ok(None)` when a delivery
    /// failed (rolled back, nothing stored), and the publish results.
    async fn store_while_publishing(
        &self,
        rows: &[&LogRecord],
        progress: &[PartitionProgress],
        messages: Vec<Pending<'_>>,
    ) -> (
        Result<Option<u64>, DbError>,
        Vec<Result<Delivered, PublishError>>,
    ) {
        let group = &self.config.consumer_group;
        let mut client = match self.db.client().await {
            Ok(c) => c,
            Err(e) => return (Err(e), Vec::new()),
        };
        let mut txn = match client.transaction().await {
            Ok(t) => t,
            Err(e) => return (Err(DbError::from_query(e)), Vec::new()),
        };
        let write = async {
            let inserted = insert_records(&mut txn, rows).await?;
            save_progress(&txn, group, progress).await?;
            Ok::<_, DbError>(inserted)
        };
        let t0 = std::time::Instant::now();
        let publish = async {
            let count = messages.len();
            let builders: Vec<_> = messages.into_iter().map(|m| move || m.build()).collect();
            let r = self.publisher.publish_all(builders).await;
            tracing::debug!(
                publish_ms = t0.elapsed().as_millis() as u64,
                messages = count,
                "published"
            );
            r
        };
        let write = async {
            let r = write.await;
            tracing::debug!(
                write_ms = t0.elapsed().as_millis() as u64,
                rows = rows.len(),
                "rows written"
            );
            r
        };
        let (written, results) = tokio::join!(write, publish);
        let all_delivered = results.iter().all(Result::is_ok);
        let outcome = match written {
            Err(e) => Err(e),
            Ok(_) if !all_delivered => Ok(None), // dropping the transaction rolls it back
            Ok(inserted) => txn
                .commit()
                .await
                .map(|_| Some(inserted))
                .map_err(DbError::from_query),
        };
        (outcome, results)
    }
}

/// A message to publish, built when it is queued.
enum Pending<'a> {
    Ready(OutMessage),
    Forward(&'a LogRecord, &'a str),
}

impl Pending<'_> {
    fn build(self) -> OutMessage {
        match self {
            Pending::Ready(m) => m,
            Pending::Forward(record, topic) => forward(record, topic),
        }
    }
}

/// Whether the group already handled this record (at or below its progress).
fn already_done(progress: &HashMap<PartitionKey, i64>, r: &InputRecord) -> bool {
    progress
        .get(&(r.topic.clone(), r.partition))
        .is_some_and(|last| r.offset <= *last)
}

/// Whether the record is at or after its partition's first failure.
fn stopped(stop_at: &HashMap<PartitionKey, i64>, r: &InputRecord) -> bool {
    stop_at
        .get(&(r.topic.clone(), r.partition))
        .is_some_and(|k| r.offset >= *k)
}

/// The rows of every record handled in this batch: not done before, not
/// stopped by a failure in its partition.
fn handled_rows<'a>(
    records: &'a [InputRecord],
    verdicts: &'a [Verdict],
    progress: &HashMap<PartitionKey, i64>,
    stop_at: &HashMap<PartitionKey, i64>,
) -> Vec<&'a LogRecord> {
    records
        .iter()
        .zip(verdicts)
        .filter(|(r, _)| !already_done(progress, r) && !stopped(stop_at, r))
        .filter_map(|(_, v)| match v {
            Verdict::Rows(rows) => Some(rows.iter()),
            Verdict::Poison(_) => None,
        })
        .flatten()
        .collect()
}

/// Progress to store: the last offset of each partition, or just before its
/// first failure (nothing when the failure is at its first offset).
fn new_progress(
    partitions: &BTreeMap<PartitionKey, OffsetRange>,
    stop_at: &HashMap<PartitionKey, i64>,
) -> Vec<PartitionProgress> {
    partitions
        .iter()
        .filter_map(|(key, range)| {
            let last = match stop_at.get(key) {
                Some(k) if *k > range.first => k - 1,
                Some(_) => return None,
                None => range.last,
            };
            Some(PartitionProgress {
                topic: key.0.clone(),
                partition: key.1,
                last_offset: last,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct OffsetRange {
    first: i64,
    last: i64,
}

/// The offset range of each partition in the batch (records with usable
/// coordinates only).
fn partitions_of(records: &[InputRecord]) -> BTreeMap<PartitionKey, OffsetRange> {
    let mut map: BTreeMap<PartitionKey, OffsetRange> = BTreeMap::new();
    for r in records.iter().filter(|r| r.offset >= 0 && r.partition >= 0) {
        map.entry((r.topic.clone(), r.partition))
            .and_modify(|range| {
                range.first = range.first.min(r.offset);
                range.last = range.last.max(r.offset);
            })
            .or_insert(OffsetRange {
                first: r.offset,
                last: r.offset,
            });
    }
    map
}

/// Nothing was committed: every record not already handled goes back.
fn fail_everything(
    mut summary: BatchSummary,
    records: &[InputRecord],
    progress: &HashMap<PartitionKey, i64>,
    cause: String,
) -> BatchOutcome {
    tracing::error!(error = %cause, "batch not stored; it will be retried");
    let mut failures: BTreeMap<PartitionKey, i64> = BTreeMap::new();
    let mut whole_batch_failed = false;
    for r in records {
        let key = (r.topic.clone(), r.partition);
        if progress.get(&key).is_some_and(|last| r.offset <= *last) {
            summary.records_duplicate += 1;
            continue;
        }
        summary.records_retry += 1;
        if r.offset < 0 || r.partition < 0 {
            whole_batch_failed = true;
            continue;
        }
        let first = failures.entry(key).or_insert(r.offset);
        *first = (*first).min(r.offset);
    }
    BatchOutcome {
        summary,
        failures: failures
            .into_iter()
            .map(|((t, p), o)| BatchItemFailure::new(&t, p, o))
            .collect(),
        cause: Some(cause),
        whole_batch_failed,
    }
}
