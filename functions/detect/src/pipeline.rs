//! One batch: records → per-entity state (locked rows) → outbox → Kafka.
//!
//! Order of work, and why:
//! 1. In one transaction: lock the batch's partitions (a redelivery racing
//!    the original waits, then sees its progress), skip records at or below
//!    the stored progress, dead-letter undecodable records (published while
//!    the transaction is open, so progress never passes an unpublished dead
//!    letter), lock the entities' state rows in order, run the engine,
//!    advance the clock, close due windows, insert alerts/predictions into
//!    the outbox, save states and progress, commit.
//! 2. Publish the outbox (this batch's messages and any a failed earlier
//!    invocation left behind) and mark what Kafka confirmed.
//!
//! A failure in 1 rolls everything back; a failure in 2 leaves messages in
//! the outbox. Either way the partitions are handed back for retry, and the
//! retry (whose records are now at or below progress) publishes what is
//! still pending: consumers may see an id twice, never lose one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use logpipe_detect::{Emitted, Engine, EntityState, entity_of};
use logpipe_kafka::dlq::dead_letter;
use logpipe_kafka::{BatchItemFailure, DecodedEvent, InputRecord, OutMessage, Publisher};
use logpipe_postgres::detect::{
    EntityRow, EntityUpdate, OutboxMessage, advance_clock, claim_outbox, count_unpublished,
    finish_outbox, insert_outbox, lock_due_entities, lock_entities, lock_partitions,
};
use logpipe_postgres::{
    Database, DbError, PartitionProgress, load_progress, migrate, save_progress,
};
use logpipe_schema::LogRecord;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::config::DetectConfig;

type PartitionKey = (String, i32);

/// Silent entities whose windows one batch closes at most (the rest wait
/// for the next batch).
const DUE_ENTITIES_PER_BATCH: i64 = 500;

/// Counts for one batch. `records_in = records_processed +
/// records_duplicate + records_dead_lettered + records_retry`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectSummary {
    pub records_in: usize,
    /// Records fed to the detectors and committed.
    pub records_processed: usize,
    /// Records at or below the group's stored progress (already handled).
    pub records_duplicate: usize,
    pub records_dead_lettered: usize,
    /// Records handed back to the event source for another attempt.
    pub records_retry: usize,
    /// Processed records whose window had already closed (counted, scored
    /// per record, not added to a window).
    pub records_late: usize,
    pub entities: usize,
    pub alerts_new: u64,
    pub predictions_new: u64,
    pub alerts_suppressed: u64,
    pub outbox_published: usize,
    pub outbox_pending: i64,
    pub dead_letter_classes: BTreeMap<String, usize>,
}

/// What the handler turns into the Lambda response.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOutcome {
    pub summary: DetectSummary,
    /// First unprocessed offset of each partition that must be retried.
    pub failures: Vec<BatchItemFailure>,
    pub cause: Option<String>,
    /// A failure that cannot be expressed per partition.
    pub whole_batch_failed: bool,
}

pub struct Detector {
    config: DetectConfig,
    engine: Engine,
    db: Database,
    publisher: Publisher,
    schema_ready: OnceCell<()>,
}

/// Why a record cannot be used.
struct Poison {
    class: &'static str,
    message: String,
}

fn parse(record: &InputRecord) -> Result<LogRecord, Poison> {
    if let Some(e) = &record.error {
        return Err(Poison {
            class: e.class,
            message: e.message.clone(),
        });
    }
    let Some(value) = &record.value else {
        return Err(Poison {
            class: "tombstone",
            message: "record has no value".into(),
        });
    };
    serde_json::from_slice::<LogRecord>(value).map_err(|e| Poison {
        class: "invalid_record",
        message: format!("not a normalized log record: {e}"),
    })
}

impl Detector {
    pub fn new(config: DetectConfig, db: Database, publisher: Publisher) -> Self {
        let engine = Engine::new(config.engine.clone());
        Self {
            config,
            engine,
            db,
            publisher,
            schema_ready: OnceCell::new(),
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.config
    }

    /// Applies migrations once per sandbox.
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

    /// Logs a specific error when the broker is unreachable or an output
    /// topic is missing (and warms the producer). Never fails.
    pub async fn check_topics(&self) {
        let mut topics = vec![self.config.alerts_topic.as_str()];
        topics.extend(self.config.predictions_topic.as_deref());
        match self
            .publisher
            .check_topics(&topics, std::time::Duration::from_secs(5))
            .await
        {
            Ok(()) => tracing::info!(?topics, "Kafka reachable and topics present"),
            Err(error) => tracing::error!(%error, "Kafka not ready at init"),
        }
    }

    pub async fn detect(&self, event: DecodedEvent, now: DateTime<Utc>) -> DetectOutcome {
        let records = event.records;
        let mut summary = DetectSummary {
            records_in: records.len(),
            ..Default::default()
        };
        let first_offsets = first_offsets(&records);
        // Hands every partition back from its first offset. `committed`:
        // the records were handled (their counts stand) and only delivery
        // of the outbox is owed; otherwise all of them are to be retried.
        let fail_all = |mut summary: DetectSummary, cause: String, committed: bool| {
            if !committed {
                summary.records_retry = summary.records_in;
            }
            DetectOutcome {
                summary,
                failures: first_offsets
                    .iter()
                    .map(|((t, p), o)| BatchItemFailure::new(t, *p, *o))
                    .collect(),
                cause: Some(cause),
                whole_batch_failed: false,
            }
        };
        if records.iter().any(|r| r.partition < 0 || r.offset < 0) {
            // Without coordinates nothing can be skipped or resumed safely.
            let mut o = fail_all(summary, "a record has no partition/offset".into(), false);
            o.whole_batch_failed = true;
            return o;
        }

        let stops = match self.process(&records, now, &mut summary).await {
            Ok(stops) => stops,
            Err(e) => {
                tracing::error!(error = %e, "batch rolled back; it will be retried");
                if e.is_transient() {
                    self.db.reset().await;
                }
                let summary = DetectSummary {
                    records_in: summary.records_in,
                    ..Default::default()
                };
                return fail_all(summary, e.to_string(), false);
            }
        };

        // The batch is committed: what remains is delivering the outbox.
        match self.publish_outbox().await {
            Ok((published, pending)) => {
                summary.outbox_published = published;
                summary.outbox_pending = pending;
                let cause =
                    (!stops.is_empty()).then(|| "a dead letter could not be published".to_string());
                DetectOutcome {
                    summary,
                    failures: stops
                        .into_iter()
                        .map(|((t, p), o)| BatchItemFailure::new(&t, p, o))
                        .collect(),
                    cause,
                    whole_batch_failed: false,
                }
            }
            Err(cause) => {
                // The records are committed (the counts say so), but their
                // alerts are owed: hand the partitions back. The retry skips
                // the records as duplicates and publishes what is pending.
                tracing::error!(%cause, "alerts/predictions not delivered; the batch will be retried to publish them");
                fail_all(summary, cause, true)
            }
        }
    }

    /// Step 1 of the module docs: everything up to the commit.
    async fn process(
        &self,
        records: &[InputRecord],
        now: DateTime<Utc>,
        summary: &mut DetectSummary,
    ) -> Result<HashMap<PartitionKey, i64>, DbError> {
        self.ensure_schema().await?;
        let group = self.config.consumer_group.as_str();
        let partitions: Vec<PartitionKey> = first_offsets(records).into_keys().collect();
        let mut client = self.db.client().await?;
        let txn = client.transaction().await.map_err(DbError::from_query)?;
        lock_partitions(&txn, group, &partitions).await?;
        let progress = load_progress(&txn, group, &partitions).await?;
        let done = |r: &InputRecord| {
            progress
                .get(&(r.topic.clone(), r.partition))
                .is_some_and(|last| r.offset <= *last)
        };

        // Parse; dead-letter what cannot be used.
        let mut parsed: Vec<(&InputRecord, LogRecord)> = Vec::with_capacity(records.len());
        let mut dead: Vec<(&InputRecord, Poison)> = Vec::new();
        for r in records {
            if done(r) {
                summary.records_duplicate += 1;
                continue;
            }
            match parse(r) {
                Ok(lr) => parsed.push((r, lr)),
                Err(p) => dead.push((r, p)),
            }
        }
        let stops = self.dead_letter(&dead).await;
        if !stops.is_empty() {
            // Keep only what precedes the first undelivered dead letter of
            // each partition; the rest is retried.
            parsed.retain(|(r, _)| !stopped(&stops, r));
            summary.records_retry = records
                .iter()
                .filter(|r| !done(r) && stopped(&stops, r))
                .count();
        }
        for (r, p) in &dead {
            if !stopped(&stops, r) {
                summary.records_dead_lettered += 1;
                *summary
                    .dead_letter_classes
                    .entry(p.class.to_string())
                    .or_default() += 1;
            }
        }

        // State: lock the batch's entities (in order), feed the engine.
        let entities: Vec<String> = parsed
            .iter()
            .map(|(_, lr)| entity_of(lr))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let rows = lock_entities(&txn, group, &entities).await?;
        let mut states: BTreeMap<String, EntityState> =
            rows.into_iter().map(|row| self.state_of(row)).collect();
        let mut emitted = Emitted::default();
        let mut newest: Option<DateTime<Utc>> = None;
        let horizon = now + self.config.max_future_skew;
        for (_, lr) in &parsed {
            let entity = entity_of(lr);
            let state = states
                .entry(entity.clone())
                .or_insert_with(|| self.engine.new_state());
            if !self.engine.observe(state, &entity, lr, &mut emitted) {
                summary.records_late += 1;
            }
            // A clock far ahead would make every later record late.
            if lr.event_time <= horizon {
                newest = Some(newest.map_or(lr.event_time, |n| n.max(lr.event_time)));
            }
        }
        summary.records_processed = parsed.len();

        // Advance the clock, then close every due window — also of entities
        // this batch did not touch (silence is scored too).
        let clock = advance_clock(&txn, group, newest).await?;
        if let Some(clock) = clock {
            let watermark = self.engine.watermark(clock);
            let due = lock_due_entities(&txn, group, watermark, &entities, DUE_ENTITIES_PER_BATCH)
                .await?;
            states.extend(due.into_iter().map(|row| self.state_of(row)));
            for (entity, state) in states.iter_mut() {
                self.engine.close(state, entity, watermark, &mut emitted);
            }
        }
        summary.entities = states.len();
        summary.alerts_suppressed = emitted.suppressed;

        let (alerts, predictions): (Vec<OutboxMessage>, Vec<OutboxMessage>) = self
            .outbox_messages(&emitted)
            .into_iter()
            .partition(|m| m.kind == "alert");
        summary.alerts_new = insert_outbox(&txn, &alerts).await?;
        summary.predictions_new = insert_outbox(&txn, &predictions).await?;

        let updates: Vec<EntityUpdate> = states
            .iter()
            .map(|(entity, state)| EntityUpdate {
                entity: entity.clone(),
                // ok: EntityState is plain data with string map keys.
                state: serde_json::to_value(state).unwrap_or(serde_json::Value::Null),
                records_seen: state.records_seen as i64,
                next_close_at: self.engine.next_close(state),
            })
            .collect();
        logpipe_postgres::detect::save_entities(&txn, group, &updates).await?;
        let progress_rows = new_progress(records, &stops);
        save_progress(&txn, group, &progress_rows).await?;
        txn.commit().await.map_err(DbError::from_query)?;

        Ok(stops)
    }

    /// A stored state, or a fresh one (logged) when the row is new or its
    /// JSON no longer fits: learned history is lost, the pipeline is not.
    fn state_of(&self, row: EntityRow) -> (String, EntityState) {
        let state = match row.state {
            None | Some(serde_json::Value::Null) => self.engine.new_state(),
            Some(v) => match serde_json::from_value::<EntityState>(v) {
                Ok(mut s) => {
                    self.engine.refresh(&mut s);
                    s
                }
                Err(error) => {
                    tracing::error!(entity = %row.entity, version = row.version, %error, "stored detector state unreadable; starting afresh");
                    self.engine.new_state()
                }
            },
        };
        (row.entity, state)
    }

    fn outbox_messages(&self, emitted: &Emitted) -> Vec<OutboxMessage> {
        let mut out: Vec<OutboxMessage> = emitted
            .alerts
            .iter()
            .map(|a| OutboxMessage {
                topic: self.config.alerts_topic.clone(),
                id: a.id.clone(),
                key: a.entity.clone(),
                kind: "alert",
                payload: serde_json::to_value(a).unwrap_or_default(),
            })
            .collect();
        if let Some(topic) = &self.config.predictions_topic {
            out.extend(emitted.predictions.iter().map(|p| OutboxMessage {
                topic: topic.clone(),
                id: p.id.clone(),
                key: p.entity.clone(),
                kind: "prediction",
                payload: serde_json::to_value(p).unwrap_or_default(),
            }));
        }
        out
    }

    /// Publishes the dead letters; returns, per partition, the offset of
    /// the first one that was not delivered.
    async fn dead_letter(&self, dead: &[(&InputRecord, Poison)]) -> HashMap<PartitionKey, i64> {
        let mut stops: HashMap<PartitionKey, i64> = HashMap::new();
        if dead.is_empty() {
            return stops;
        }
        let builders: Vec<_> = dead
            .iter()
            .map(|(r, p)| {
                tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, error_class = p.class, error = %p.message, "record cannot be used; sending it to the dead-letter topic");
                let topic = format!("{}{}", r.topic, self.config.dlq_suffix);
                move || {
                    dead_letter(
                        r,
                        p.class,
                        &p.message,
                        topic,
                        &self.config.function_name,
                        self.config.dlq_max_value_bytes,
                    )
                }
            })
            .collect();
        let results = self.publisher.publish_all(builders).await;
        for ((r, _), result) in dead.iter().zip(results) {
            if let Err(e) = result {
                tracing::error!(topic = %r.topic, partition = r.partition, offset = r.offset, error = %e, "dead letter not delivered; the record will be retried");
                let at = stops
                    .entry((r.topic.clone(), r.partition))
                    .or_insert(r.offset);
                *at = (*at).min(r.offset);
            }
        }
        stops
    }

    /// Step 2: publishes up to `OUTBOX_BATCH` pending messages and marks the
    /// delivered ones. Returns (published, still pending) or why it failed.
    pub async fn publish_outbox(&self) -> Result<(usize, i64), String> {
        let mut client = self.db.client().await.map_err(|e| e.to_string())?;
        let txn = client
            .transaction()
            .await
            .map_err(|e| DbError::from_query(e).to_string())?;
        let pending = claim_outbox(&txn, self.config.outbox_batch)
            .await
            .map_err(|e| e.to_string())?;
        let builders: Vec<_> = pending
            .iter()
            .map(|m| {
                move || OutMessage {
                    topic: m.topic.clone(),
                    key: Some(m.key.clone().into_bytes()),
                    payload: Some(m.payload.clone().into_bytes()),
                    headers: vec![
                        ("content-type".into(), b"application/json".to_vec()),
                        ("message-id".into(), m.id.clone().into_bytes()),
                        (
                            "schema-version".into(),
                            logpipe_schema::alert::SCHEMA_VERSION
                                .to_string()
                                .into_bytes(),
                        ),
                    ],
                }
            })
            .collect();
        let results = self.publisher.publish_all(builders).await;
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        let mut error = None;
        for (m, r) in pending.iter().zip(&results) {
            match r {
                Ok(_) => delivered.push((m.topic.as_str(), m.id.as_str())),
                Err(e) => {
                    error.get_or_insert_with(|| e.to_string());
                    failed.push((m.topic.as_str(), m.id.as_str()));
                }
            }
        }
        finish_outbox(&txn, &delivered, &failed, error.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        txn.commit()
            .await
            .map_err(|e| DbError::from_query(e).to_string())?;
        if let Some(e) = error {
            return Err(format!(
                "{} of {} alerts/predictions not delivered: {e}",
                failed.len(),
                pending.len()
            ));
        }
        let still = count_unpublished(&*client)
            .await
            .map_err(|e| e.to_string())?;
        Ok((delivered.len(), still))
    }
}

fn stopped(stops: &HashMap<PartitionKey, i64>, r: &InputRecord) -> bool {
    stops
        .get(&(r.topic.clone(), r.partition))
        .is_some_and(|at| r.offset >= *at)
}

/// The first offset of each partition in the batch (records are sorted).
fn first_offsets(records: &[InputRecord]) -> BTreeMap<PartitionKey, i64> {
    let mut out = BTreeMap::new();
    for r in records {
        out.entry((r.topic.clone(), r.partition))
            .and_modify(|o: &mut i64| *o = (*o).min(r.offset))
            .or_insert(r.offset);
    }
    out
}

/// Progress after this batch: the last handled offset of each partition,
/// never reaching a stop.
fn new_progress(
    records: &[InputRecord],
    stops: &HashMap<PartitionKey, i64>,
) -> Vec<PartitionProgress> {
    let mut last: BTreeMap<PartitionKey, i64> = BTreeMap::new();
    for r in records {
        if stopped(stops, r) {
            continue;
        }
        let e = last
            .entry((r.topic.clone(), r.partition))
            .or_insert(r.offset);
        *e = (*e).max(r.offset);
    }
    last.into_iter()
        .map(|((topic, partition), last_offset)| PartitionProgress {
            topic,
            partition,
            last_offset,
        })
        .collect()
}
