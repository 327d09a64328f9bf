//! One batch: records → per-entity state (locked rows) → outbox → Kafka,
//! in phases around the delivery ledger.
//!
//! 1. **decode** every record into a normalized [`LogRecord`] or a
//!    dead-letter verdict (pure).
//! 2. **process**, in one transaction: lock the batch's partitions (a
//!    redelivery racing the original waits, then sees its progress), skip
//!    records at or below the stored progress, publish the dead letters
//!    (while the transaction is open, so progress never passes an
//!    unpublished one), lock the entities' state rows in order, run the
//!    engine, advance the clock, close due windows, insert alerts and
//!    predictions into the outbox, save states and progress, commit.
//!    A permanent database error (a value PostgreSQL refuses) is isolated:
//!    the records are processed again in halves, and a single record that
//!    still fails is dead-lettered (`db_rejected`); a transient one hands
//!    the records back.
//! 3. **publish the outbox** — this batch's messages and any left behind —
//!    within the invocation's time budget, marking what Kafka confirmed and
//!    parking what it will never take. An invocation without records (the
//!    scheduled tick) does only this, after moving an idle clock on so the
//!    last windows close.
//!
//! A failure in 2 rolls the transaction back; a transient failure in 3
//! leaves messages in the outbox and hands the batch back, so the retry
//! (whose records are now duplicates) publishes what is pending: consumers
//! may see an id twice, never lose one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use logpipe_delivery::{Ledger, Settlement};
use logpipe_detect::{Emitted, Engine, EntityState, entity_name_of};
use logpipe_kafka::dlq::{self, Limits, Reason};
use logpipe_kafka::{DecodedEvent, InputRecord, OutMessage, PublishError, Publisher};
use logpipe_lambda::Schema;
use logpipe_postgres::detect::{
    EntityRow, EntityUpdate, OutboxMessage, OutboxResult, advance_clock, advance_idle_clock,
    claim_outbox, count_unpublished, finish_outbox, insert_outbox, load_states, lock_due_entities,
    lock_entities, lock_partitions, prune_outbox,
};
use logpipe_postgres::tokio_postgres::Transaction;
use logpipe_postgres::{Database, DbError, load_progress, save_progress};
use logpipe_schema::LogRecord;
use serde::Serialize;

use crate::config::DetectConfig;
use crate::state_cache::StateCache;

/// Silent entities whose windows one batch closes at most (the rest wait
/// for the next batch or tick).
const DUE_ENTITIES_PER_BATCH: i64 = 500;

/// Published outbox rows deleted per invocation at most.
const PRUNE_PER_INVOCATION: i64 = 10_000;

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
    /// Message templates evicted at the per-entity cap.
    pub template_evictions: u64,
    pub outbox_published: usize,
    pub outbox_pending: i64,
    /// Outbox messages the broker refused for good: kept, never retried.
    pub outbox_parked: i64,
    pub outbox_pruned: u64,
    pub dead_letter_classes: BTreeMap<String, usize>,
}

/// What the handler turns into the Lambda response.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOutcome {
    pub summary: DetectSummary,
    pub settlement: Settlement,
}

pub struct Detector {
    config: DetectConfig,
    engine: Engine,
    db: Database,
    publisher: Publisher,
    schema: Schema,
    cache: StateCache,
}

/// The states a batch holds, with the version each row had when locked.
type Held = BTreeMap<String, (i64, EntityState)>;

/// Why a record cannot be used.
#[derive(Debug, Clone)]
struct Poison {
    class: &'static str,
    message: String,
}

/// Phase 1: a record's normalized form, or why it has none.
fn decode(record: &InputRecord) -> Result<LogRecord, Poison> {
    if let Some(e) = &record.error {
        return Err(Poison {
            class: e.class,
            message: e.message.clone(),
        });
    }
    if record.partition < 0 || record.offset < 0 {
        // Without coordinates it can be neither skipped nor resumed.
        return Err(Poison {
            class: "missing_coordinates",
            message: "record has no usable partition/offset".into(),
        });
    }
    let Some(value) = &record.value else {
        return Err(Poison {
            class: "tombstone",
            message: "record has no value".into(),
        });
    };
    LogRecord::from_json_for_detection(value).map_err(|e| Poison {
        class: "invalid_record",
        message: format!("not a normalized log record: {e}"),
    })
}

/// The per-batch counts phase 2 produces (added once committed).
#[derive(Debug, Default)]
struct Processed {
    records_late: usize,
    entities: usize,
    alerts_new: u64,
    predictions_new: u64,
    alerts_suppressed: u64,
    template_evictions: u64,
}

impl Detector {
    pub fn new(config: DetectConfig, db: Database, publisher: Publisher) -> Self {
        let engine = Engine::new(config.engine.clone());
        Self {
            schema: Schema::new(config.run_migrations),
            cache: StateCache::new(config.state_cache_entities),
            config,
            engine,
            db,
            publisher,
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.config
    }

    /// Applies migrations once per sandbox.
    pub async fn ensure_schema(&self) -> Result<(), DbError> {
        self.schema.ensure(&self.db).await
    }

    /// Logs a specific error when the broker is unreachable or an output
    /// topic is missing (and warms the producer). Never fails.
    pub async fn check_topics(&self) {
        let mut topics = vec![self.config.alerts_topic.as_str()];
        topics.extend(self.config.predictions_topic.as_deref());
        logpipe_lambda::check_topics(&self.publisher, &topics).await;
    }

    /// One invocation. `budget`: how long the outbox may be published for.
    pub async fn detect(
        &self,
        event: DecodedEvent,
        now: DateTime<Utc>,
        budget: Duration,
    ) -> DetectOutcome {
        let started = Instant::now();
        let records = &event.records;
        let mut ledger = Ledger::new(
            records
                .iter()
                .map(|r| (r.topic.as_str(), r.partition, r.offset)),
        );
        let mut summary = DetectSummary::default();
        let decoded: Vec<Result<LogRecord, Poison>> = records.iter().map(decode).collect();
        let decoded_ms = started.elapsed().as_secs_f64() * 1e3;
        if records.is_empty() {
            self.tick().await;
        } else {
            let cluster = event.cluster.as_str();
            self.process_isolating(cluster, records, &decoded, now, &mut ledger, &mut summary)
                .await;
        }

        let processed_ms = started.elapsed().as_secs_f64() * 1e3;
        // What remains is delivering the outbox.
        let deadline = started + budget;
        match Box::pin(self.publish_outbox(deadline)).await {
            Ok(stats) => {
                summary.outbox_published = stats.published;
                summary.outbox_pending = stats.pending;
                summary.outbox_parked = stats.parked;
                summary.outbox_pruned = stats.pruned;
            }
            Err(cause) => {
                // The records are committed, their alerts are owed: hand the
                // batch back. The retry skips the records as duplicates and
                // publishes what is pending (so does the next tick).
                tracing::error!(%cause, "alerts/predictions not delivered; the batch will be retried to publish them");
                ledger.retry_all(&cause, true);
            }
        }
        let published_ms = started.elapsed().as_secs_f64() * 1e3;
        let settlement = ledger.settle();
        // Where the batch's time went (cumulative milliseconds).
        tracing::debug!(
            decoded_ms,
            processed_ms,
            published_ms,
            settled_ms = started.elapsed().as_secs_f64() * 1e3,
            "batch phases"
        );
        let c = &settlement.counts;
        summary.records_in = c.records_in;
        summary.records_processed = c.done;
        summary.records_duplicate = c.duplicate;
        summary.records_dead_lettered = c.dead_lettered;
        summary.records_retry = c.retry;
        summary.dead_letter_classes = c.dead_letter_classes.clone();
        DetectOutcome {
            summary,
            settlement,
        }
    }

    /// Phase 2 over the whole batch; a permanent database error is narrowed
    /// down by halves to the record that causes it.
    async fn process_isolating(
        &self,
        cluster: &str,
        records: &[InputRecord],
        decoded: &[Result<LogRecord, Poison>],
        now: DateTime<Utc>,
        ledger: &mut Ledger,
        summary: &mut DetectSummary,
    ) {
        let mut parts: Vec<Vec<usize>> = vec![(0..records.len()).collect()];
        let mut isolated = false;
        while let Some(part) = parts.pop() {
            let mut attempt = ledger.clone();
            // Boxed: the phase futures nest deeply.
            let processed =
                Box::pin(self.process(cluster, records, decoded, &part, now, &mut attempt));
            match processed.await {
                Ok(p) => {
                    *ledger = attempt;
                    summary.records_late += p.records_late;
                    summary.entities += p.entities;
                    summary.alerts_new += p.alerts_new;
                    summary.predictions_new += p.predictions_new;
                    summary.alerts_suppressed += p.alerts_suppressed;
                    summary.template_evictions += p.template_evictions;
                }
                Err(e) if e.is_transient() => {
                    tracing::error!(error = %e, "batch rolled back; it will be retried");
                    self.db.reset().await;
                    for &i in &part {
                        ledger.retry(i, e.to_string(), true);
                    }
                    return;
                }
                Err(e) => {
                    let open: Vec<usize> =
                        part.into_iter().filter(|&i| ledger.is_open(i)).collect();
                    isolated = true;
                    if open.len() > 1 {
                        tracing::warn!(error = %e, records = open.len(), "PostgreSQL refuses part of the batch; processing it in halves");
                        let (first, second) = open.split_at(open.len() / 2);
                        // Popped in order: the first half first.
                        parts.push(second.to_vec());
                        parts.push(first.to_vec());
                    } else if let Some(&i) = open.first() {
                        let p = Poison {
                            class: "db_rejected",
                            message: e.to_string(),
                        };
                        self.dead_letter(records, &[(i, &p)], ledger).await;
                    }
                }
            }
        }
        if isolated {
            // Records dead-lettered alone moved progress no transaction saved.
            if let Err(e) = self.save_progress(cluster, ledger).await {
                tracing::warn!(error = %e, "progress after isolating a record not saved; a redelivery dead-letters it again");
            }
        }
    }

    async fn save_progress(&self, cluster: &str, ledger: &Ledger) -> Result<(), DbError> {
        let mut client = self.db.client().await?;
        let txn = client.transaction().await.map_err(DbError::from_query)?;
        let group = &self.config.consumer_group;
        save_progress(&txn, group, cluster, &ledger.progress()).await?;
        txn.commit().await.map_err(DbError::from_query)
    }

    /// Phase 2 for the records `part` (indices into the batch), all or
    /// nothing: `ledger` is this attempt's copy.
    async fn process(
        &self,
        cluster: &str,
        records: &[InputRecord],
        decoded: &[Result<LogRecord, Poison>],
        part: &[usize],
        now: DateTime<Utc>,
        ledger: &mut Ledger,
    ) -> Result<Processed, DbError> {
        self.ensure_schema().await?;
        let started = Instant::now();
        let ms = || started.elapsed().as_secs_f64() * 1e3;
        let group = self.config.consumer_group.as_str();
        let partitions = ledger.partitions();
        let mut client = self.db.client().await?;
        let txn = client.transaction().await.map_err(DbError::from_query)?;
        // Pipelined: the server reads the progress once the locks are held.
        let ((), previous) = futures::try_join!(
            lock_partitions(&txn, group, &partitions),
            load_progress(&txn, group, cluster, &partitions),
        )?;
        ledger.skip_handled(&previous);

        let dead: Vec<(usize, &Poison)> = part
            .iter()
            .filter(|&&i| ledger.is_open(i))
            .filter_map(|&i| decoded[i].as_ref().err().map(|p| (i, p)))
            .collect();
        self.dead_letter(records, &dead, ledger).await;
        let live: Vec<(usize, &LogRecord)> = part
            .iter()
            .filter(|&&i| ledger.is_open(i))
            .filter_map(|&i| decoded[i].as_ref().ok().map(|r| (i, r)))
            .collect();

        let mut out = Processed::default();
        let locked_ms = ms();
        let (states, emitted) = self.observe(&txn, &live, now, &mut out).await?;
        let observed_ms = ms();
        for (i, _) in &live {
            ledger.done(*i);
        }
        out.alerts_suppressed = emitted.suppressed;
        out.template_evictions = emitted.template_evictions;
        let messages = self.outbox_messages(&emitted);
        let progress = ledger.progress();
        // Three independent writes, pipelined (sent back to back, answered
        // in order: the first error is the first statement's own).
        let (inserted, (), ()) = futures::try_join!(
            insert_outbox(&txn, &messages),
            self.save_states(&txn, &states),
            save_progress(&txn, group, cluster, &progress),
        )?;
        out.alerts_new = inserted.alerts;
        out.predictions_new = inserted.predictions;
        out.entities = states.len();
        let saved_ms = ms();
        txn.commit().await.map_err(DbError::from_query)?;
        // Where phase 2's time went (cumulative milliseconds).
        tracing::debug!(
            locked_ms,
            observed_ms,
            saved_ms,
            committed_ms = ms(),
            "process phases"
        );
        // Committed: each row is now at the version after the one locked.
        self.cache.put(
            states
                .into_iter()
                .map(|(entity, (version, state))| (entity, version.saturating_add(1), state)),
        );
        Ok(out)
    }

    /// Locks the entities of `live` (in order), feeds the engine, advances
    /// the clock and closes every due window — also of entities this batch
    /// did not touch (silence is scored too).
    async fn observe(
        &self,
        txn: &Transaction<'_>,
        live: &[(usize, &LogRecord)],
        now: DateTime<Utc>,
        out: &mut Processed,
    ) -> Result<(Held, Emitted), DbError> {
        let group = self.config.consumer_group.as_str();
        // Each record's entity, worked out once (borrowed: no allocation
        // per record).
        let keyed: Vec<(&str, &LogRecord)> = live
            .iter()
            .map(|(_, lr)| (entity_name_of(lr), *lr))
            .collect();
        let entities: Vec<String> = keyed
            .iter()
            .map(|(entity, _)| *entity)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_string)
            .collect();
        let versions = lock_entities(txn, group, &entities).await?;
        let mut states = Held::new();
        let mut stale = Vec::new();
        for (entity, version) in versions {
            match self.cache.take(&entity, version) {
                Some(state) => {
                    states.insert(entity, (version, state));
                }
                None => stale.push(entity),
            }
        }
        let stale_count = stale.len();
        for row in load_states(txn, group, &stale).await? {
            let version = row.version;
            let (entity, state) = self.state_of(row);
            states.insert(entity, (version, state));
        }
        let loaded = Instant::now();
        let mut emitted = Emitted::default();
        let mut newest: Option<DateTime<Utc>> = None;
        let horizon = now
            .checked_add_signed(self.config.max_future_skew)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        for (entity, lr) in keyed {
            let (_, state) = match states.get_mut(entity) {
                Some(held) => held,
                None => states
                    .entry(entity.to_string())
                    .or_insert_with(|| (0, self.engine.new_state())),
            };
            if !self.engine.observe(state, entity, lr, &mut emitted) {
                out.records_late += 1;
            }
            // A clock far ahead would make every later record late.
            if lr.event_time <= horizon {
                newest = Some(newest.map_or(lr.event_time, |n| n.max(lr.event_time)));
                self.engine.note_event_time(state, lr.event_time, now);
            }
        }
        let engine_ms = loaded.elapsed().as_secs_f64() * 1e3;
        let clock = advance_clock(txn, group, newest);
        self.close_due(txn, clock, now, &entities, &mut states, &mut emitted)
            .await?;
        tracing::debug!(
            engine_ms,
            states = states.len(),
            loaded_from_db = stale_count,
            "observed"
        );
        Ok((states, emitted))
    }

    /// Closes, at wall time `now`, every window due at its entity's own
    /// watermark ([`Engine::entity_watermark`]): those of the touched
    /// entities, and of untouched ones whose silence made them due (found
    /// by their `next_close_at`, a wall time). `clock` (the group's newest
    /// event time) only serves states saved before entities had clocks.
    async fn close_due(
        &self,
        txn: &Transaction<'_>,
        clock: impl Future<Output = Result<Option<DateTime<Utc>>, DbError>>,
        now: DateTime<Utc>,
        touched: &[String],
        states: &mut Held,
        emitted: &mut Emitted,
    ) -> Result<(), DbError> {
        let group = self.config.consumer_group.as_str();
        // Pipelined with the clock's statement (which takes the clock row's
        // lock first, keeping the lock order).
        let (clock, due) = futures::try_join!(
            clock,
            lock_due_entities(txn, group, now, touched, DUE_ENTITIES_PER_BATCH),
        )?;
        for row in due {
            let version = row.version;
            let (entity, state) = self.state_of(row);
            states.insert(entity, (version, state));
        }
        let idle = self.idle_secs();
        for (entity, (_, state)) in states.iter_mut() {
            if let Some(own) = self.engine.entity_watermark(state, now, idle, clock) {
                self.engine.close(state, entity, own, emitted);
            }
        }
        Ok(())
    }

    fn idle_secs(&self) -> i64 {
        i64::try_from(self.config.idle_advance.as_secs()).unwrap_or(i64::MAX)
    }

    async fn save_states(&self, txn: &Transaction<'_>, states: &Held) -> Result<(), DbError> {
        let updates: Vec<EntityUpdate> = states
            .iter()
            .map(|(entity, (_, state))| EntityUpdate {
                entity: entity.clone(),
                // ok: EntityState is plain data with string map keys.
                state: serde_json::to_string(state).unwrap_or_else(|_| "null".into()),
                records_seen: state.records_seen as i64,
                next_close_at: self.engine.next_due_at(state, self.idle_secs()),
            })
            .collect();
        tracing::debug!(
            states = updates.len(),
            state_bytes = updates.iter().map(|u| u.state.len()).sum::<usize>(),
            "saving states"
        );
        logpipe_postgres::detect::save_entities(txn, &self.config.consumer_group, &updates).await
    }

    /// An invocation without records: when input has stopped, move the
    /// clock on by the idle wall time and close what is due, so the last
    /// windows of every entity close and their predictions go out.
    async fn tick(&self) {
        let closed = async {
            self.ensure_schema().await?;
            let group = self.config.consumer_group.as_str();
            let mut client = self.db.client().await?;
            let txn = client.transaction().await.map_err(DbError::from_query)?;
            // The group's clock moves on only for states saved before
            // entities had clocks of their own; every other entity is due
            // by its own silence, at the wall time.
            let clock = match advance_idle_clock(&txn, group, self.config.idle_advance).await? {
                Some(clock) => Some(clock),
                None => advance_clock(&txn, group, None).await?,
            };
            let mut states = Held::new();
            let mut emitted = Emitted::default();
            let clock = std::future::ready(Ok(clock));
            self.close_due(&txn, clock, Utc::now(), &[], &mut states, &mut emitted)
                .await?;
            let messages = self.outbox_messages(&emitted);
            let n = insert_outbox(&txn, &messages).await?.total();
            self.save_states(&txn, &states).await?;
            txn.commit().await.map_err(DbError::from_query)?;
            Ok::<_, DbError>(n)
        };
        match closed.await {
            Ok(n) => tracing::info!(messages = n, "tick: idle windows closed"),
            Err(error) => tracing::error!(%error, "tick: closing idle windows failed"),
        }
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
                // ok: an Alert is plain data with string map keys.
                payload: serde_json::to_string(a).unwrap_or_else(|_| "null".into()),
            })
            .collect();
        if let Some(topic) = &self.config.predictions_topic {
            out.extend(emitted.predictions.iter().map(|p| OutboxMessage {
                topic: topic.clone(),
                id: p.id.clone(),
                key: p.entity.clone(),
                kind: "prediction",
                payload: serde_json::to_string(p).unwrap_or_else(|_| "null".into()),
            }));
        }
        out
    }

    /// Publishes the dead letters of `dead`; each delivered one is
    /// dead-lettered in the ledger, each failed one a retry (which stops its
    /// partition there).
    async fn dead_letter(
        &self,
        records: &[InputRecord],
        dead: &[(usize, &Poison)],
        ledger: &mut Ledger,
    ) {
        if dead.is_empty() {
            return;
        }
        let limits = Limits::with_value_bytes(self.config.dlq_max_value_bytes);
        let builders: Vec<_> = dead
            .iter()
            .map(|(i, p)| {
                let r = &records[*i];
                tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, error_class = p.class, error = %p.message, "record cannot be used; sending it to the dead-letter topic");
                let topic = format!("{}{}", r.topic, self.config.dlq_suffix);
                let limits = &limits;
                move || {
                    dlq::dead_letter(
                        r,
                        topic,
                        &Reason::new(p.class, &p.message, &self.config.function_name),
                        limits,
                    )
                }
            })
            .collect();
        let results = self.publisher.publish_all(builders).await;
        for ((i, p), result) in dead.iter().zip(results) {
            match result {
                Ok(_) => ledger.dead_letter(*i, p.class, p.message.clone()),
                Err(e) => {
                    let r = &records[*i];
                    tracing::error!(topic = %r.topic, partition = r.partition, offset = r.offset, error = %e, "dead letter not delivered; the record will be retried");
                    ledger.retry(*i, e.to_string(), e.is_transient());
                }
            }
        }
    }

    /// Phase 3: publishes pending outbox messages in rounds of
    /// `OUTBOX_BATCH` until none is left or `deadline` passes; a message
    /// the broker will never take is parked. Then prunes old published rows.
    pub async fn publish_outbox(&self, deadline: Instant) -> Result<OutboxStats, String> {
        let mut stats = OutboxStats::default();
        loop {
            let round = self.publish_outbox_round().await?;
            stats.published += round.published;
            if let Some(e) = round.error {
                return Err(e);
            }
            if round.claimed < self.config.outbox_batch as usize || Instant::now() >= deadline {
                break;
            }
        }
        let client = self.db.client().await.map_err(|e| e.to_string())?;
        // Pipelined; the count sees the rows the prune left.
        (stats.pruned, (stats.pending, stats.parked)) = futures::try_join!(
            prune_outbox(&*client, self.config.outbox_retention, PRUNE_PER_INVOCATION),
            count_unpublished(&*client),
        )
        .map_err(|e| e.to_string())?;
        Ok(stats)
    }

    /// Claims up to `OUTBOX_BATCH` pending messages, publishes them and
    /// records the results.
    async fn publish_outbox_round(&self) -> Result<OutboxRound, String> {
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
        let mut result = OutboxResult::default();
        let mut error: Option<String> = None;
        for (m, r) in pending.iter().zip(results) {
            let key = (m.topic.as_str(), m.id.as_str());
            match r {
                Ok(_) => result.delivered.push(key),
                Err(e) if !e.is_transient() => {
                    tracing::error!(topic = %m.topic, id = %m.id, error = %e, "the broker refuses this outbox message for good; parking it");
                    result.parked.push((key.0, key.1, e.to_string()));
                }
                Err(e) => {
                    error.get_or_insert_with(|| owed(&e, pending.len()));
                    result.failed.push((key.0, key.1, e.to_string()));
                }
            }
        }
        finish_outbox(&txn, &result)
            .await
            .map_err(|e| e.to_string())?;
        txn.commit()
            .await
            .map_err(|e| DbError::from_query(e).to_string())?;
        Ok(OutboxRound {
            claimed: pending.len(),
            published: result.delivered.len(),
            error,
        })
    }
}

fn owed(e: &PublishError, of: usize) -> String {
    format!("alerts/predictions not delivered (of {of} claimed): {e}")
}

/// What publishing the outbox did in one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub published: usize,
    pub pending: i64,
    pub parked: i64,
    pub pruned: u64,
}

struct OutboxRound {
    claimed: usize,
    published: usize,
    error: Option<String>,
}
