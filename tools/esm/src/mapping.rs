//! Running one mapping: a real consumer group, batches by size, window and
//! payload limit, the invocation, retries, the on-failure destination and
//! commits — only ever of offsets processed contiguously.
//!
//! Batches are handled one at a time per mapping, so records of a partition
//! reach the function in order and a retried batch is retried before any
//! later record of its partitions is delivered.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logpipe_delivery::Ledger;
use logpipe_kafka::dlq;
use logpipe_kafka::event::build_event;
use logpipe_kafka::rdkafka::ClientContext;
use logpipe_kafka::rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use logpipe_kafka::rdkafka::{Offset, TopicPartitionList};
use logpipe_kafka::{
    BatchItemFailure, EventRecord, KafkaSettings, OutMessage, PublishErrorKind, Publisher,
};
use serde_json::Value;
use tokio::sync::watch;

use crate::EsmError;
use crate::batch::EventSize;
use crate::config::{MAX_PAYLOAD_BYTES, MappingConfig};
use crate::invoke::{Invoke, InvokeError};

/// How long a stop waits for an invocation in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `(topic, partition)`.
pub type PartitionKey = (String, i32);

/// Live counters of a mapping, shared with whoever started it.
#[derive(Debug, Clone, Default)]
pub struct MappingStats {
    inner: Arc<StatsInner>,
}

#[derive(Debug, Default)]
struct StatsInner {
    invocations: AtomicU64,
    batches: AtomicU64,
    records_delivered: AtomicU64,
    function_errors: AtomicU64,
    retries: AtomicU64,
    records_to_destination: AtomicU64,
    records_discarded: AtomicU64,
    committed: Mutex<BTreeMap<PartitionKey, i64>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Every call of the function, retries included.
    pub invocations: u64,
    /// Batches finished: delivered, or given up and sent to the destination.
    pub batches: u64,
    /// Records a successful invocation accepted (not reported as failed).
    pub records_delivered: u64,
    /// Invocations that ended in a function error (or an unreadable response).
    pub function_errors: u64,
    /// Re-deliveries after a function error or a reported batch item failure.
    pub retries: u64,
    /// Records sent to the on-failure destination topic.
    pub records_to_destination: u64,
    /// Records given up with no destination configured (logged).
    pub records_discarded: u64,
    /// The last offset committed per partition (the next one to deliver).
    pub committed: BTreeMap<PartitionKey, i64>,
}

impl StatsSnapshot {
    /// The counters as JSON, committed offsets keyed `<topic>-<partition>`
    /// (for a demo that reads them from a file).
    pub fn to_json(&self) -> Value {
        let committed: serde_json::Map<String, Value> = self
            .committed
            .iter()
            .map(|((topic, partition), offset)| (format!("{topic}-{partition}"), (*offset).into()))
            .collect();
        serde_json::json!({
            "invocations": self.invocations,
            "batches": self.batches,
            "records_delivered": self.records_delivered,
            "function_errors": self.function_errors,
            "retries": self.retries,
            "records_to_destination": self.records_to_destination,
            "records_discarded": self.records_discarded,
            "committed": committed,
        })
    }
}

impl MappingStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let i = &self.inner;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            invocations: load(&i.invocations),
            batches: load(&i.batches),
            records_delivered: load(&i.records_delivered),
            function_errors: load(&i.function_errors),
            retries: load(&i.retries),
            records_to_destination: load(&i.records_to_destination),
            records_discarded: load(&i.records_discarded),
            committed: match i.committed.lock() {
                Ok(c) => c.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            },
        }
    }

    fn add(&self, counter: fn(&StatsInner) -> &AtomicU64, n: u64) {
        counter(&self.inner).fetch_add(n, Ordering::Relaxed);
    }

    fn committed(&self, offsets: &[(PartitionKey, i64)]) {
        let mut map = match self.inner.committed.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (key, offset) in offsets {
            map.insert(key.clone(), *offset);
        }
    }
}

/// A running mapping: read its counters, stop it.
pub struct MappingHandle {
    config: MappingConfig,
    stats: MappingStats,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), EsmError>>,
}

impl MappingHandle {
    pub fn config(&self) -> &MappingConfig {
        &self.config
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// True when the mapping ended by itself (an unrecoverable error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops: an invocation in flight gets a few seconds to finish (and be
    /// committed), a pending retry or a batch being gathered is abandoned
    /// uncommitted (delivered again next time); returns the final counters.
    pub async fn stop(self) -> Result<StatsSnapshot, EsmError> {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(result) => result.map(|()| self.stats.snapshot()),
            Err(e) => Err(EsmError::Stopped(format!(
                "{}: the mapping task failed: {e}",
                self.config.describe()
            ))),
        }
    }
}

/// Starts a mapping on the current tokio runtime.
pub fn start_mapping<I: Invoke>(
    config: MappingConfig,
    kafka: &KafkaSettings,
    invoker: I,
) -> Result<MappingHandle, EsmError> {
    config.validate()?;
    let stats = MappingStats::default();
    let (shutdown, stopped) = watch::channel(false);
    let task = tokio::spawn(run_mapping(
        config.clone(),
        kafka.clone(),
        invoker,
        stats.clone(),
        stopped,
    ));
    Ok(MappingHandle {
        config,
        stats,
        shutdown,
        task,
    })
}

/// Runs a mapping until `shutdown` turns true (or its sender is dropped).
pub async fn run_mapping<I: Invoke>(
    config: MappingConfig,
    kafka: KafkaSettings,
    invoker: I,
    stats: MappingStats,
    shutdown: watch::Receiver<bool>,
) -> Result<(), EsmError> {
    config.validate()?;
    let consumer = Arc::new(create_consumer(&config, &kafka)?);
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| kafka_error(&config, "subscribing", e))?;
    let publisher = match &config.on_failure_topic {
        Some(_) => Some(
            Publisher::new(kafka.clone(), None, Duration::from_secs(30))
                .await
                .map_err(|e| EsmError::Kafka {
                    mapping: config.describe(),
                    detail: format!("creating the on-failure producer: {e}"),
                })?,
        ),
        None => None,
    };
    tracing::info!(mapping = %config.describe(), "event source mapping started");
    let size = EventSize::new(
        config.event_source,
        &kafka.bootstrap_servers,
        config.event_source_arn.as_deref(),
    );
    let mut runner = Runner {
        bootstrap_servers: kafka.bootstrap_servers.clone(),
        config,
        consumer,
        invoker,
        publisher,
        stats,
        shutdown,
        size,
        carry: None,
        positions: HashMap::new(),
        streaks: HashMap::new(),
    };
    let result = runner.run().await;
    tracing::info!(mapping = %runner.config.describe(), "event source mapping stopped");
    result
}

/// Partitions revoked by a rebalance, for the runner to forget: another
/// member may move them on, so what this one expected of them is stale.
struct RebalanceWatch {
    mapping: String,
    revoked: Mutex<Vec<PartitionKey>>,
}

impl ClientContext for RebalanceWatch {}

impl ConsumerContext for RebalanceWatch {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let keys: Vec<PartitionKey> = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            tracing::info!(mapping = %self.mapping, partitions = ?keys, "partitions revoked");
            match self.revoked.lock() {
                Ok(mut r) => r.extend(keys),
                Err(poisoned) => poisoned.into_inner().extend(keys),
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let keys: Vec<String> = list
                .elements()
                .iter()
                .map(|e| format!("{}-{}", e.topic(), e.partition()))
                .collect();
            tracing::info!(mapping = %self.mapping, partitions = ?keys, "partitions assigned");
        }
    }
}

type MappingConsumer = StreamConsumer<RebalanceWatch>;

fn create_consumer(
    config: &MappingConfig,
    kafka: &KafkaSettings,
) -> Result<MappingConsumer, EsmError> {
    let mut client = kafka.client_config(None).map_err(|e| EsmError::Kafka {
        mapping: config.describe(),
        detail: e.to_string(),
    })?;
    client
        .set("group.id", &config.consumer_group_id)
        .set("client.id", format!("logpipe-esm-{}", config.function_name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            config.starting_position.auto_offset_reset(),
        )
        // A batch may be retried (not polled) for a long time, and a first
        // `cargo lambda watch` invoke compiles: do not leave the group.
        .set("max.poll.interval.ms", "86400000");
    let context = RebalanceWatch {
        mapping: config.describe(),
        revoked: Mutex::new(Vec::new()),
    };
    client
        .create_with_context(context)
        .map_err(|e| kafka_error(config, "creating the consumer", e))
}

fn kafka_error(config: &MappingConfig, what: &str, e: impl std::fmt::Display) -> EsmError {
    EsmError::Kafka {
        mapping: config.describe(),
        detail: format!("{what}: {e}"),
    }
}

/// What gathering produced.
enum Gathered {
    Batch(Vec<EventRecord>),
    /// A record whose event alone would exceed the payload limit.
    TooLarge(EventRecord),
    Shutdown,
}

/// Whether to go on after a step.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Shutdown,
}

/// The next offset expected of a partition.
#[derive(Debug, Clone, Copy)]
struct Position {
    next: i64,
    /// After a seek: only `next` itself may come next. librdkafka discards
    /// messages fetched before a seek; this makes sure of it.
    exact: bool,
}

struct Runner<I> {
    config: MappingConfig,
    bootstrap_servers: String,
    consumer: Arc<MappingConsumer>,
    invoker: I,
    publisher: Option<Publisher>,
    stats: MappingStats,
    shutdown: watch::Receiver<bool>,
    size: EventSize,
    /// A record that did not fit the previous batch; it starts the next.
    carry: Option<EventRecord>,
    positions: HashMap<PartitionKey, Position>,
    /// Consecutive reported failures of a partition at the same offset.
    streaks: HashMap<PartitionKey, (i64, u32)>,
}

fn key_of(r: &EventRecord) -> PartitionKey {
    (r.topic.clone(), r.partition)
}

impl<I: Invoke> Runner<I> {
    async fn run(&mut self) -> Result<(), EsmError> {
        loop {
            let flow = match self.gather().await {
                Gathered::Shutdown => return Ok(()),
                Gathered::Batch(batch) => self.deliver(batch).await?,
                Gathered::TooLarge(record) => self.give_up_too_large(record).await?,
            };
            if flow == Flow::Shutdown {
                return Ok(());
            }
        }
    }

    /// Gathers up to `BatchSize` records, within the batching window that
    /// starts with the first record, without exceeding the payload limit.
    async fn gather(&mut self) -> Gathered {
        let mut batch = Vec::new();
        self.size.clear();
        let mut deadline: Option<tokio::time::Instant> = None;
        if let Some(record) = self.carry.take() {
            let cost = self.size.cost(&record);
            if self.size.total() + cost > MAX_PAYLOAD_BYTES {
                return Gathered::TooLarge(record);
            }
            self.size.add(&record, cost);
            batch.push(record);
            deadline = Some(tokio::time::Instant::now() + self.config.batching_window);
        }
        loop {
            if batch.len() >= self.config.batch_size {
                return Gathered::Batch(batch);
            }
            let window = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let received = tokio::select! {
                biased;
                () = stopped(&mut self.shutdown) => return Gathered::Shutdown,
                m = self.consumer.recv() => m.map(|m| EventRecord::from_message(&m)),
                () = window => return Gathered::Batch(batch),
            };
            let record = match received {
                Ok(r) => r,
                Err(error) => {
                    tracing::warn!(mapping = %self.config.describe(), %error, "the consumer reported an error");
                    if pause(&mut self.shutdown, Duration::from_secs(1)).await == Flow::Shutdown {
                        return Gathered::Shutdown;
                    }
                    continue;
                }
            };
            if !self.accept(&record) {
                continue;
            }
            let cost = self.size.cost(&record);
            if self.size.total() + cost > MAX_PAYLOAD_BYTES {
                if batch.is_empty() {
                    return Gathered::TooLarge(record);
                }
                self.carry = Some(record);
                return Gathered::Batch(batch);
            }
            self.size.add(&record, cost);
            batch.push(record);
            if deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + self.config.batching_window);
            }
        }
    }

    /// Drops records already delivered (a redelivery below the position) and
    /// anything fetched before a seek.
    fn accept(&mut self, record: &EventRecord) -> bool {
        self.forget_revoked();
        let key = key_of(record);
        if let Some(p) = self.positions.get(&key) {
            let stale = if p.exact {
                record.offset != p.next
            } else {
                record.offset < p.next
            };
            if stale {
                tracing::debug!(topic = %record.topic, partition = record.partition, offset = record.offset, expected = p.next, "skipping a record fetched before a seek or already delivered");
                return false;
            }
        }
        self.positions.insert(
            key,
            Position {
                next: record.offset + 1,
                exact: false,
            },
        );
        true
    }

    fn forget_revoked(&mut self) {
        let revoked: Vec<PartitionKey> = match self.consumer.context().revoked.lock() {
            Ok(mut r) => r.drain(..).collect(),
            Err(poisoned) => poisoned.into_inner().drain(..).collect(),
        };
        for key in revoked {
            self.positions.remove(&key);
            self.streaks.remove(&key);
            if self.carry.as_ref().is_some_and(|c| key_of(c) == key) {
                self.carry = None;
            }
        }
    }

    /// Invokes the function with the batch until it succeeds, or its retries
    /// are exhausted and the batch goes to the destination; then commits.
    async fn deliver(&mut self, batch: Vec<EventRecord>) -> Result<Flow, EsmError> {
        let started = Instant::now();
        let mut failed_attempts: u32 = 0;
        let mut unavailable: u32 = 0;
        loop {
            let event = build_event(
                self.config.event_source,
                &self.bootstrap_servers,
                self.config.event_source_arn.as_deref(),
                &batch,
            );
            self.stats.add(|s| &s.invocations, 1);
            tracing::debug!(mapping = %self.config.describe(), records = batch.len(), "invoking the function");
            let Some(result) = self.invoke(event).await else {
                tracing::warn!(mapping = %self.config.describe(), records = batch.len(), "stopped with an invocation in flight: its batch is not committed and will be delivered again");
                return Ok(Flow::Shutdown);
            };
            let error = match result {
                Ok(response) => match self.reported_failures(&response, &batch) {
                    Ok(failures) => return self.finish(batch, failures, started).await,
                    Err(e) => e,
                },
                Err(InvokeError::Unavailable(detail)) => {
                    unavailable += 1;
                    tracing::warn!(mapping = %self.config.describe(), %detail, "the function is unavailable; retrying");
                    let delay = self.backoff(unavailable);
                    if pause(&mut self.shutdown, delay).await == Flow::Shutdown {
                        return Ok(Flow::Shutdown);
                    }
                    continue;
                }
                Err(e) => e,
            };
            self.stats.add(|s| &s.function_errors, 1);
            failed_attempts += 1;
            if self.exhausted(failed_attempts) {
                tracing::error!(mapping = %self.config.describe(), records = batch.len(), attempts = failed_attempts, %error, "retries exhausted; sending the batch to the on-failure destination");
                let records: Vec<&EventRecord> = batch.iter().collect();
                let reason = Reason {
                    class: "esm_retries_exhausted",
                    error_type: error.error_type().to_string(),
                    message: error.to_string(),
                    attempts: failed_attempts,
                };
                if self.give_up(&records, &reason).await? == Flow::Shutdown {
                    return Ok(Flow::Shutdown);
                }
                let mut ledger = Ledger::new(
                    batch
                        .iter()
                        .map(|r| (r.topic.as_str(), r.partition, r.offset)),
                );
                for i in 0..batch.len() {
                    ledger.dead_letter(i, reason.class, reason.message.clone());
                }
                let ends: Vec<(PartitionKey, i64)> =
                    ledger.settle().next_offsets.into_iter().collect();
                self.commit(&ends).await;
                self.stats.add(|s| &s.batches, 1);
                return Ok(Flow::Continue);
            }
            tracing::warn!(mapping = %self.config.describe(), records = batch.len(), attempt = failed_attempts, %error, "the function failed; retrying the batch");
            self.stats.add(|s| &s.retries, 1);
            let delay = self.backoff(failed_attempts);
            if pause(&mut self.shutdown, delay).await == Flow::Shutdown {
                return Ok(Flow::Shutdown);
            }
        }
    }

    /// Invokes the function. On a stop, an invocation in flight gets
    /// [`SHUTDOWN_GRACE`] to finish so its result is committed, but a
    /// function that hangs (or a `cargo lambda watch` that is recompiling)
    /// is not waited for: `None`.
    async fn invoke(&mut self, event: Value) -> Option<Result<Value, InvokeError>> {
        let invocation = self.invoker.invoke(event);
        tokio::pin!(invocation);
        tokio::select! {
            r = &mut invocation => return Some(r),
            () = stopped(&mut self.shutdown) => {}
        }
        tokio::time::timeout(SHUTDOWN_GRACE, invocation).await.ok()
    }

    /// With `ReportBatchItemFailures`, the first unprocessed offset of each
    /// reported partition of the batch. An unreadable list fails the
    /// invocation (AWS treats an invalid response as a failure); without
    /// the setting the list is ignored, as AWS does.
    fn reported_failures(
        &self,
        response: &Value,
        batch: &[EventRecord],
    ) -> Result<BTreeMap<PartitionKey, i64>, InvokeError> {
        let mut failures = BTreeMap::new();
        if !self.config.report_batch_item_failures {
            if response["batchItemFailures"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
            {
                tracing::warn!(mapping = %self.config.describe(), "the function reported batch item failures, but the mapping lacks ReportBatchItemFailures: ignored, as AWS does (the records count as processed)");
            }
            return Ok(failures);
        }
        let list = match response.get("batchItemFailures") {
            None | Some(Value::Null) => return Ok(failures),
            Some(list) => list,
        };
        let items: Vec<BatchItemFailure> = serde_json::from_value(list.clone()).map_err(|e| {
            InvokeError::function(
                "InvalidBatchItemFailures",
                format!("batchItemFailures is not [{{itemIdentifier:{{partition,offset}}}}]: {e}"),
            )
        })?;
        for item in items {
            let id = &item.item_identifier;
            let key = batch
                .iter()
                .find(|r| format!("{}-{}", r.topic, r.partition) == id.partition)
                .map(key_of);
            match key {
                Some(key) => {
                    let offset = failures.entry(key).or_insert(id.offset);
                    *offset = (*offset).min(id.offset);
                }
                None => {
                    tracing::warn!(mapping = %self.config.describe(), partition = %id.partition, "ignoring a batch item failure for a partition not in the batch")
                }
            }
        }
        Ok(failures)
    }

    /// After a successful invocation: each record's disposition from the
    /// reported failures (before its partition's resume point: done; at or
    /// after it: retried, or given up once its retries are exhausted); the
    /// ledger then says what to commit and where to seek.
    async fn finish(
        &mut self,
        batch: Vec<EventRecord>,
        failures: BTreeMap<PartitionKey, i64>,
        started: Instant,
    ) -> Result<Flow, EsmError> {
        let mut ledger = Ledger::new(
            batch
                .iter()
                .map(|r| (r.topic.as_str(), r.partition, r.offset)),
        );
        let mut give_up: Vec<usize> = Vec::new();
        let mut worst_streak = 0u32;
        for (key, (first, last)) in partition_bounds(&batch) {
            let in_partition: Vec<usize> = (0..batch.len())
                .filter(|&i| key_of(&batch[i]) == key)
                .collect();
            // A reported offset outside the batch is clamped: never commit
            // backwards, never past what was delivered.
            let resume = failures
                .get(&key)
                .map(|k| (*k).clamp(first, last + 1))
                .filter(|k| *k <= last);
            let Some(resume) = resume else {
                in_partition.iter().for_each(|&i| ledger.done(i));
                self.streaks.remove(&key);
                continue;
            };
            let streak = self.streaks.entry(key.clone()).or_insert((resume, 0));
            if streak.0 != resume {
                *streak = (resume, 0);
            }
            streak.1 += 1;
            let attempts = streak.1;
            let exhausted = self.exhausted(attempts);
            if exhausted {
                self.streaks.remove(&key);
            } else {
                worst_streak = worst_streak.max(attempts);
            }
            for i in in_partition {
                if batch[i].offset < resume {
                    ledger.done(i);
                } else if exhausted {
                    give_up.push(i);
                } else {
                    ledger.retry(i, "the function reported the record as failed", true);
                }
            }
        }
        if !give_up.is_empty() {
            let reason = Reason {
                class: "esm_retries_exhausted",
                error_type: "BatchItemFailure".into(),
                message: "the function reported these records as failed on every attempt".into(),
                attempts: self.config.maximum_retry_attempts.unwrap_or(0) + 1,
            };
            let records: Vec<&EventRecord> = give_up.iter().map(|&i| &batch[i]).collect();
            if self.give_up(&records, &reason).await? == Flow::Shutdown {
                return Ok(Flow::Shutdown);
            }
            for i in give_up {
                ledger.dead_letter(i, reason.class, reason.message.clone());
            }
        }
        let settled = ledger.settle();
        let commits: Vec<(PartitionKey, i64)> = settled.next_offsets.into_iter().collect();
        let seeks: Vec<(PartitionKey, i64)> = settled.resume.into_iter().collect();
        let delivered = settled.counts.done as u64;
        self.commit(&commits).await;
        self.seek(&seeks).await?;
        self.stats.add(|s| &s.records_delivered, delivered);
        self.stats.add(|s| &s.batches, 1);
        tracing::info!(
            mapping = %self.config.describe(),
            records = batch.len(),
            delivered,
            partitions_retried = seeks.len(),
            records_to_destination = settled.counts.dead_lettered,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch done"
        );
        if !seeks.is_empty() {
            self.stats.add(|s| &s.retries, 1);
            let delay = self.backoff(worst_streak);
            return Ok(pause(&mut self.shutdown, delay).await);
        }
        Ok(Flow::Continue)
    }

    /// A record whose event alone exceeds 6 MB can never be delivered (AWS
    /// fails such a batch too): it goes to the destination at once.
    async fn give_up_too_large(&mut self, record: EventRecord) -> Result<Flow, EsmError> {
        let size = self.size.alone(&record);
        tracing::error!(mapping = %self.config.describe(), topic = %record.topic, partition = record.partition, offset = record.offset, size, "a record is too large for one invocation");
        let reason = Reason {
            class: "esm_payload_too_large",
            error_type: "PayloadTooLarge".into(),
            message: format!(
                "the event for this record alone is {size} bytes; the invocation limit is {MAX_PAYLOAD_BYTES}"
            ),
            attempts: 0,
        };
        if self.give_up(&[&record], &reason).await? == Flow::Shutdown {
            return Ok(Flow::Shutdown);
        }
        self.commit(&[(key_of(&record), record.offset + 1)]).await;
        self.stats.add(|s| &s.batches, 1);
        Ok(Flow::Continue)
    }

    fn exhausted(&self, failed_attempts: u32) -> bool {
        self.config
            .maximum_retry_attempts
            .is_some_and(|max| failed_attempts > max)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.config
            .retry_backoff_initial
            .saturating_mul(factor)
            .min(self.config.retry_backoff_max)
    }

    /// Publishes the records to the on-failure topic (original key, value and
    /// headers plus `dlq-*` headers saying why), retrying until every one is
    /// acknowledged; with no destination they are discarded and counted.
    async fn give_up(
        &mut self,
        records: &[&EventRecord],
        reason: &Reason,
    ) -> Result<Flow, EsmError> {
        let (Some(topic), Some(publisher)) = (&self.config.on_failure_topic, &self.publisher)
        else {
            tracing::error!(mapping = %self.config.describe(), records = records.len(), class = reason.class, "no on-failure destination: discarding the records");
            self.stats
                .add(|s| &s.records_discarded, records.len() as u64);
            return Ok(Flow::Continue);
        };
        let mut pending: Vec<OutMessage> = records
            .iter()
            .map(|r| failure_message(topic, r, reason, &self.config))
            .collect();
        let mut round = 0;
        while !pending.is_empty() {
            round += 1;
            let builders: Vec<_> = pending.iter().map(|m| move || m.clone()).collect();
            let results = publisher.publish_all(builders).await;
            let mut failed = Vec::new();
            for (message, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(_) => {}
                    // The broker will never take it whole: keep what fits,
                    // say so (the project's DLQ convention), and go on.
                    Err(error) if error.kind() == PublishErrorKind::TooLarge => {
                        tracing::warn!(mapping = %self.config.describe(), %topic, %error, "the record is too large for the on-failure topic; sending it without its value");
                        failed.push(without_value(message));
                    }
                    Err(error) => {
                        tracing::warn!(mapping = %self.config.describe(), %topic, %error, "could not publish to the on-failure destination; retrying");
                        failed.push(message);
                    }
                }
            }
            pending = failed;
            if !pending.is_empty() {
                let delay = self.backoff(round);
                if pause(&mut self.shutdown, delay).await == Flow::Shutdown {
                    return Ok(Flow::Shutdown);
                }
            }
        }
        self.stats
            .add(|s| &s.records_to_destination, records.len() as u64);
        Ok(Flow::Continue)
    }

    async fn commit(&self, offsets: &[(PartitionKey, i64)]) {
        if offsets.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in offsets {
            if let Err(error) =
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                tracing::warn!(%topic, partition, %error, "could not list an offset to commit");
            }
        }
        let consumer = Arc::clone(&self.consumer);
        let result =
            tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await;
        match result {
            Ok(Ok(())) => self.stats.committed(offsets),
            // Not fatal: the records were processed; a restart redelivers
            // them (at least once), never skips them.
            Ok(Err(error)) => {
                tracing::warn!(mapping = %self.config.describe(), %error, "committing offsets failed")
            }
            Err(error) => {
                tracing::warn!(mapping = %self.config.describe(), %error, "the commit task failed")
            }
        }
    }

    /// Rewinds failed partitions. A seek that fails would let later records
    /// through past a failed one, so it stops the mapping (its offsets are
    /// committed at the failed record: a restart resumes there).
    async fn seek(&mut self, seeks: &[(PartitionKey, i64)]) -> Result<(), EsmError> {
        for (key, offset) in seeks {
            let consumer = Arc::clone(&self.consumer);
            let (topic, partition, offset) = (key.0.clone(), key.1, *offset);
            let result = tokio::task::spawn_blocking(move || {
                consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(10),
                )
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(kafka_error(
                        &self.config,
                        &format!("seeking {}-{} to {offset}", key.0, key.1),
                        e,
                    ));
                }
                Err(e) => return Err(kafka_error(&self.config, "the seek task", e)),
            }
            self.positions.insert(
                key.clone(),
                Position {
                    next: offset,
                    exact: true,
                },
            );
            if self
                .carry
                .as_ref()
                .is_some_and(|c| key_of(c) == *key && c.offset >= offset)
            {
                self.carry = None;
            }
        }
        Ok(())
    }
}

/// Resolves once a stop is asked for (or the handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped: nobody can stop us any more
    // but nobody reads the results either, so stop too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sleeps unless asked to stop.
async fn pause(shutdown: &mut watch::Receiver<bool>, delay: Duration) -> Flow {
    tokio::select! {
        () = stopped(shutdown) => Flow::Shutdown,
        () = tokio::time::sleep(delay) => Flow::Continue,
    }
}

/// Why records were given up.
struct Reason {
    class: &'static str,
    error_type: String,
    message: String,
    attempts: u32,
}

fn failure_message(
    topic: &str,
    record: &EventRecord,
    reason: &Reason,
    config: &MappingConfig,
) -> OutMessage {
    let mut why = dlq::Reason::new(reason.class, &reason.message, &config.function_name);
    why.extra = vec![
        (dlq::header::ERROR_TYPE, reason.error_type.clone()),
        (
            dlq::header::CONSUMER_GROUP,
            config.consumer_group_id.clone(),
        ),
        (dlq::header::ATTEMPTS, reason.attempts.to_string()),
    ];
    dlq::dead_letter(record, topic.to_string(), &why, &dlq::Limits::default())
}

/// What is left of a failure message the topic refuses even bounded (its
/// `max.message.bytes` is below the builder's limits): the headers, which
/// say where the record is, and the value's size.
fn without_value(mut message: OutMessage) -> OutMessage {
    if let Some(value) = message.payload.take()
        && !message
            .headers
            .iter()
            .any(|(n, _)| n == dlq::header::TRUNCATED_FROM)
    {
        message.headers.push((
            dlq::header::TRUNCATED_FROM.into(),
            value.len().to_string().into_bytes(),
        ));
    }
    message
}

/// First and last offset of each partition in the batch.
fn partition_bounds(batch: &[EventRecord]) -> BTreeMap<PartitionKey, (i64, i64)> {
    let mut bounds: BTreeMap<PartitionKey, (i64, i64)> = BTreeMap::new();
    for r in batch {
        let b = bounds.entry(key_of(r)).or_insert((r.offset, r.offset));
        b.0 = b.0.min(r.offset);
        b.1 = b.1.max(r.offset);
    }
    bounds
}
