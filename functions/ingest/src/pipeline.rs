//! One batch, start to finish, in phases around the delivery ledger:
//!
//! 1. **skip** what the group already handled (stored progress);
//! 2. **classify** every record into rows or a dead-letter verdict, and keep
//!    the invocation within its row budget;
//! 3. **deliver**: write the rows in a transaction while the dead letters
//!    and forwards are published; commit rows and progress together only
//!    when every delivery succeeded.
//!
//! Permanent and transient failures part ways in phase 3, in one place
//! ([`Ingestor::attempt`]): a row PostgreSQL refuses or a forward the broker
//! will never take makes its own record a dead letter and the attempt is
//! repeated for the rest (already-delivered messages are not re-sent); a
//! transient failure hands the record, and what follows it in its
//! partition, back for retry.
//!
//! Ordering is what makes retries safe. Publishing finishes before the
//! commit, so a crash in between re-publishes on retry (a duplicate
//! downstream, with the same `record-id` header) rather than losing anything; rows and
//! progress commit together, so a retry after the commit skips the records
//! instead of storing them twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use logpipe_delivery::{Ledger, Settlement};
use logpipe_kafka::{DecodedEvent, InputRecord, OutMessage, PublishError, Publisher};
use logpipe_lambda::Schema;
use logpipe_postgres::{
    Database, DbError, Inserted, insert_isolating_records, load_progress, save_progress,
};
use logpipe_registry::Registry;
use logpipe_schema::LogRecord;
use serde::Serialize;

use crate::classify::{Poison, Verdict, classify_all};
use crate::config::IngestConfig;
use crate::messages::{dead_letter, forward};
use crate::registry::decode_framed;

/// A batch settles in at most this many attempts (each attempt after the
/// first isolates records a permanent failure of the previous one named).
const MAX_ATTEMPTS: usize = 4;

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
    /// Of those, the ones whose cause is not transient (e.g. a dead letter
    /// the broker refuses): an operator must look.
    pub records_retry_permanent: usize,
    pub rows_inserted: u64,
    /// Rows that were already in `logs` (a replay that progress did not catch).
    pub rows_already_present: u64,
    /// Rows PostgreSQL refused; their records were dead-lettered (`db_rejected`).
    pub rows_rejected: usize,
    /// Forwards published (one per row: a batch envelope forwards several).
    pub records_forwarded: usize,
    pub dead_letter_classes: BTreeMap<String, usize>,
    /// CloudWatch Logs control messages: no log to store or forward, so
    /// nothing was written; they count as stored (handled) above.
    pub control_messages: usize,
    /// Schema-registry framed values decoded to JSON before parsing.
    pub records_schema_decoded: usize,
}

/// What the handler turns into the Lambda response.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome {
    pub summary: BatchSummary,
    pub settlement: Settlement,
}

pub struct Ingestor {
    config: IngestConfig,
    db: Database,
    publisher: Publisher,
    schema: Schema,
    /// Decodes schema-registry framed values (none configured: they are
    /// dead-lettered as `schema_unknown`).
    registry: Arc<Registry>,
}

/// Phase 3's view of the batch: each record's verdict and whether its
/// messages are already out.
struct Work<'a> {
    /// The source cluster's identity: part of every stored coordinate.
    cluster: &'a str,
    records: &'a [InputRecord],
    verdicts: Vec<Verdict>,
    /// The record's dead letter or forwards were delivered in an earlier
    /// attempt: never send them twice.
    published: Vec<bool>,
    /// The record's value was freed because its one row holds the same text
    /// as `raw` (a batch must not sit in memory twice).
    freed: Vec<bool>,
    /// For a freed record that became a dead letter: its value again.
    stashed: Vec<Option<String>>,
}

/// How one attempt ended.
enum Attempt {
    /// Nothing more to do: committed, or everything left is retried.
    Settled,
    /// Records were isolated (or stopped); try again with the rest.
    Again,
}

impl Ingestor {
    pub fn new(config: IngestConfig, db: Database, publisher: Publisher) -> Self {
        Self {
            schema: Schema::new(config.run_migrations),
            config,
            db,
            publisher,
            registry: Arc::new(Registry::none()),
        }
    }

    /// Decode framed values with this registry (built once per sandbox).
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = registry;
        self
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
        self.schema.ensure(&self.db).await
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
        logpipe_lambda::check_topics(&self.publisher, &topics).await;
    }

    pub async fn ingest(&self, event: DecodedEvent) -> BatchOutcome {
        let mut records = event.records;
        let cluster = event.cluster.as_str();
        let mut ledger = Ledger::new(
            records
                .iter()
                .map(|r| (r.topic.as_str(), r.partition, r.offset)),
        );
        let mut summary = BatchSummary::default();
        if self.skip_handled(cluster, &mut ledger).await {
            let decoding = decode_framed(&self.registry, &mut records, &mut ledger).await;
            summary.records_schema_decoded = decoding.decoded;
            let verdicts = classify_all(&records, &self.config.limits);
            summary.control_messages = (0..verdicts.len())
                .filter(|&i| ledger.is_open(i) && matches!(verdicts[i], Verdict::Control))
                .count();
            let freed = free_values_held_as_raw(&mut records, &verdicts);
            let mut work = self.plan(cluster, &records, verdicts, freed, &mut ledger);
            self.deliver(&mut work, &mut ledger, &mut summary).await;
            summary.records_forwarded = match self.config.forward_topic {
                // One forward per row: what a consumer of the topic sees.
                Some(_) => (0..records.len())
                    .filter(|&i| work.published[i])
                    .map(|i| rows_in(&work.verdicts[i]))
                    .sum(),
                None => 0,
            };
            // Freeing ~10^5 small allocations takes tens of milliseconds; do
            // it off the response path (a frozen sandbox finishes it later).
            if records.len() >= 1_000 {
                let verdicts = std::mem::take(&mut work.verdicts);
                std::thread::spawn(move || drop(verdicts));
            }
        }
        let settlement = ledger.settle();
        fill_counts(&mut summary, &settlement);
        if let Some(cause) = &settlement.cause {
            tracing::error!(error = %cause, retry = summary.records_retry, "records handed back for retry");
        }
        if records.len() >= 1_000 {
            std::thread::spawn(move || drop(records));
        }
        BatchOutcome {
            summary,
            settlement,
        }
    }

    /// Phase 1: marks what the group already handled. `false` when the
    /// progress cannot be read (then everything is retried).
    async fn skip_handled(&self, cluster: &str, ledger: &mut Ledger) -> bool {
        let loaded = async {
            self.ensure_schema().await?;
            let client = self.db.client().await?;
            let group = &self.config.consumer_group;
            load_progress(&*client, group, cluster, &ledger.partitions()).await
        };
        match loaded.await {
            Ok(progress) => {
                ledger.skip_handled(&progress);
                true
            }
            Err(e) => {
                self.retry_all(ledger, &e).await;
                false
            }
        }
    }

    /// Phase 2 (after [`classify_all`]): the invocation's row budget —
    /// records past it are handed back; the first record always fits.
    fn plan<'a>(
        &self,
        cluster: &'a str,
        records: &'a [InputRecord],
        verdicts: Vec<Verdict>,
        freed: Vec<bool>,
        ledger: &mut Ledger,
    ) -> Work<'a> {
        let mut rows = 0usize;
        let mut admitted = false;
        for (i, verdict) in verdicts.iter().enumerate() {
            if !ledger.is_open(i) {
                continue;
            }
            if let Verdict::Rows(r) = verdict {
                rows += r.len();
            }
            if admitted && rows > self.config.max_rows_per_invocation {
                ledger.retry(
                    i,
                    format!(
                        "the invocation's row budget ({}) is used up; the rest comes next time",
                        self.config.max_rows_per_invocation
                    ),
                    true,
                );
            }
            admitted = true;
        }
        Work {
            cluster,
            records,
            published: vec![false; records.len()],
            freed,
            stashed: vec![None; records.len()],
            verdicts,
        }
    }

    /// Phase 3: attempts until the batch settles.
    async fn deliver(&self, work: &mut Work<'_>, ledger: &mut Ledger, summary: &mut BatchSummary) {
        for _ in 0..MAX_ATTEMPTS {
            if let Attempt::Settled = self.attempt(work, ledger, summary).await {
                return;
            }
        }
        ledger.retry_undecided(
            &format!("the batch did not settle in {MAX_ATTEMPTS} attempts"),
            true,
        );
    }

    /// One transaction: rows written while the open records' messages are
    /// published; committed with the progress only when nothing failed.
    async fn attempt(
        &self,
        work: &mut Work<'_>,
        ledger: &mut Ledger,
        summary: &mut BatchSummary,
    ) -> Attempt {
        let open: Vec<usize> = ledger.open().collect();
        let (rows, owners, rows_per_owner) = rows_of(work, &open);
        let rows_total = rows.len();
        let messages: Vec<(usize, Message<'_>)> = open
            .iter()
            .filter(|&&i| !work.published[i])
            .flat_map(|&i| self.messages_of(work, i))
            .collect();

        let mut client = match self.db.client().await {
            Ok(c) => c,
            Err(e) => {
                self.retry_open(ledger, &e).await;
                return Attempt::Settled;
            }
        };
        let mut txn = match client.transaction().await {
            Ok(t) => t,
            Err(e) => {
                self.retry_open(ledger, &DbError::from_query(e)).await;
                return Attempt::Settled;
            }
        };
        let (written, published) = tokio::join!(
            insert_isolating_records(&mut txn, work.cluster, &rows, &rows_per_owner),
            self.publish(messages)
        );
        let mut again = self.settle_publishing(work, ledger, published);
        let inserted = match written {
            Ok(inserted) => inserted,
            Err(e) => {
                self.retry_open(ledger, &e).await;
                return Attempt::Settled;
            }
        };
        let isolated = isolate_rejected(work, &inserted, &owners);
        let rows_refused: usize = isolated.iter().map(|(_, n)| n).sum();
        summary.rows_rejected += rows_refused;
        let isolated: Vec<usize> = isolated.into_iter().map(|(i, _)| i).collect();
        // Rows behind a retry are in the transaction and must go.
        if again {
            return Attempt::Again;
        }
        if !isolated.is_empty() {
            let messages = isolated
                .iter()
                .flat_map(|&i| self.messages_of(work, i))
                .collect();
            let published = self.publish(messages).await;
            again = self.settle_publishing(work, ledger, published);
            if again {
                return Attempt::Again;
            }
        }

        for &i in &open {
            match &work.verdicts[i] {
                Verdict::Rows(_) | Verdict::Control => ledger.done(i),
                Verdict::Poison(p) => ledger.dead_letter(i, p.class, p.message.clone()),
            }
        }
        let committed = async {
            let group = &self.config.consumer_group;
            save_progress(&txn, group, work.cluster, &ledger.progress()).await?;
            txn.commit().await.map_err(DbError::from_query)
        };
        match committed.await {
            Ok(()) => {
                summary.rows_inserted += inserted.inserted;
                let written = rows_total - rows_refused;
                summary.rows_already_present += written as u64 - inserted.inserted;
            }
            Err(e) => self.retry_all(ledger, &e).await,
        }
        Attempt::Settled
    }

    /// The messages record `i` owes: its dead letter, or one forward per row.
    fn messages_of<'w>(&self, work: &'w Work<'_>, i: usize) -> Vec<(usize, Message<'w>)> {
        let record = &work.records[i];
        match &work.verdicts[i] {
            Verdict::Poison(p) => {
                tracing::warn!(
                    topic = %record.topic, partition = record.partition, offset = record.offset,
                    error_class = p.class, error = %p.message,
                    "record cannot be ingested; sending it to the dead-letter topic"
                );
                vec![(
                    i,
                    Message::DeadLetter(record, p, work.stashed[i].as_deref()),
                )]
            }
            Verdict::Rows(rows) if self.config.forward_topic.is_some() => {
                rows.iter().map(|r| (i, Message::Forward(r))).collect()
            }
            Verdict::Rows(_) | Verdict::Control => Vec::new(),
        }
    }

    /// Publishes `messages`; per owning record, the first failure.
    async fn publish(
        &self,
        messages: Vec<(usize, Message<'_>)>,
    ) -> Vec<(usize, Result<(), PublishError>)> {
        let owners: Vec<usize> = messages.iter().map(|(i, _)| *i).collect();
        let builders: Vec<_> = messages
            .into_iter()
            .map(|(_, m)| move || self.build(m))
            .collect();
        let results = self.publisher.publish_all(builders).await;
        let mut per_record: Vec<(usize, Result<(), PublishError>)> = Vec::new();
        for (owner, result) in owners.into_iter().zip(results) {
            match per_record.last_mut() {
                Some((last, r)) if *last == owner => {
                    if r.is_ok() {
                        *r = result.map(|_| ());
                    }
                }
                _ => per_record.push((owner, result.map(|_| ()))),
            }
        }
        per_record
    }

    fn build(&self, message: Message<'_>) -> OutMessage {
        match message {
            Message::DeadLetter(record, p, value) => dead_letter(
                record,
                value.map(str::as_bytes),
                p.class,
                &p.message,
                format!("{}{}", record.topic, self.config.dlq_suffix),
                &self.config.function_name,
                self.config.dlq_max_value_bytes,
            ),
            Message::Forward(row) => forward(
                row,
                self.config.forward_topic.as_deref().unwrap_or_default(),
                self.config.max_forward_bytes,
            ),
        }
    }

    /// Turns publish results into dispositions: delivered ⇒ never sent
    /// again; transient ⇒ retry; a forward the broker will never take ⇒ the
    /// record becomes a dead letter; a dead letter it will never take ⇒ a
    /// retry marked permanent (only an operator can fix the DLQ topic).
    /// Returns whether anything failed.
    fn settle_publishing(
        &self,
        work: &mut Work<'_>,
        ledger: &mut Ledger,
        results: Vec<(usize, Result<(), PublishError>)>,
    ) -> bool {
        let mut failed = false;
        for (i, result) in results {
            let e = match result {
                Ok(()) => {
                    work.published[i] = true;
                    continue;
                }
                Err(e) => e,
            };
            failed = true;
            let r = &work.records[i];
            let is_forward = matches!(work.verdicts[i], Verdict::Rows(_));
            if !e.is_transient() && is_forward {
                tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, error = %e, "the broker refuses this record's forward; dead-lettering it");
                become_dead_letter(work, i, "forward_rejected", e.to_string());
            } else {
                tracing::error!(topic = %r.topic, partition = r.partition, offset = r.offset, error = %e, "publish failed; the record will be retried");
                ledger.retry(i, e.to_string(), e.is_transient());
            }
        }
        failed
    }

    /// Every open record goes back (the attempt failed as a whole).
    async fn retry_open(&self, ledger: &mut Ledger, e: &DbError) {
        if e.is_transient() {
            self.db.reset().await;
        }
        ledger.retry_undecided(&e.to_string(), e.is_transient());
    }

    /// Nothing of this invocation was committed: every record goes back.
    async fn retry_all(&self, ledger: &mut Ledger, e: &DbError) {
        if e.is_transient() {
            self.db.reset().await;
        }
        ledger.retry_all(&e.to_string(), e.is_transient());
    }
}

/// A message to publish, built when it is queued.
enum Message<'a> {
    /// The record, why, and its value when it was freed.
    DeadLetter(&'a InputRecord, &'a Poison, Option<&'a str>),
    Forward(&'a LogRecord),
}

fn rows_in(v: &Verdict) -> usize {
    match v {
        Verdict::Rows(r) => r.len(),
        Verdict::Poison(_) | Verdict::Control => 0,
    }
}

/// The rows of the open records, the records that have rows, and how many
/// rows each has (in the order of `rows`).
fn rows_of<'w>(work: &'w Work<'_>, open: &[usize]) -> (Vec<&'w LogRecord>, Vec<usize>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut owners = Vec::new();
    let mut counts = Vec::new();
    for &i in open {
        if let Verdict::Rows(r) = &work.verdicts[i]
            && !r.is_empty()
        {
            rows.extend(r.iter());
            owners.push(i);
            counts.push(r.len());
        }
    }
    (rows, owners, counts)
}

/// Records PostgreSQL refused become dead letters (`db_rejected`); none of
/// their rows was written. Returns them with their row counts.
fn isolate_rejected(
    work: &mut Work<'_>,
    inserted: &Inserted,
    owners: &[usize],
) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(inserted.rejected.len());
    for (k, error) in &inserted.rejected {
        let i = owners[*k];
        let r = &work.records[i];
        tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, %error, "PostgreSQL refuses this record's rows; dead-lettering it");
        out.push((i, rows_in(&work.verdicts[i])));
        // Its forwards may be out; its dead letter is not.
        work.published[i] = false;
        become_dead_letter(work, i, "db_rejected", error.to_string());
    }
    out
}

/// Turns record `i` into a dead letter, taking its value back from its row
/// when it was freed.
fn become_dead_letter(work: &mut Work<'_>, i: usize, class: &'static str, message: String) {
    let verdict = std::mem::replace(
        &mut work.verdicts[i],
        Verdict::Poison(Poison { class, message }),
    );
    if work.freed[i]
        && let Verdict::Rows(mut rows) = verdict
        && let Some(row) = rows.first_mut()
    {
        work.stashed[i] = Some(std::mem::take(&mut row.raw));
    }
}

/// Frees the value of every record whose single row holds the same text as
/// its `raw`: forwards and rows are built from the rows, and a dead letter
/// takes the value back from the row. Returns which were freed.
fn free_values_held_as_raw(records: &mut [InputRecord], verdicts: &[Verdict]) -> Vec<bool> {
    records
        .iter_mut()
        .zip(verdicts)
        .map(|(r, v)| match (v, &r.value) {
            (Verdict::Rows(rows), Some(value))
                if rows.len() == 1 && rows[0].raw.as_bytes() == value.as_slice() =>
            {
                r.value = None;
                true
            }
            _ => false,
        })
        .collect()
}

/// The ledger's counts in the function's summary.
fn fill_counts(summary: &mut BatchSummary, s: &Settlement) {
    let c = &s.counts;
    summary.records_in = c.records_in;
    summary.records_stored = c.done;
    summary.records_duplicate = c.duplicate;
    summary.records_dead_lettered = c.dead_lettered;
    summary.records_retry = c.retry;
    summary.records_retry_permanent = c.retry_permanent;
    summary.dead_letter_classes = c.dead_letter_classes.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Limits;

    fn record(offset: i64, value: &str) -> InputRecord {
        InputRecord {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp_ms: 1_700_000_000_000,
            value: Some(value.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    #[test]
    fn a_freed_value_comes_back_in_the_dead_letter() {
        let envelope = r#"{"source":"s","data":[{"message":"a"},{"message":"b"}]}"#;
        let mut records = vec![record(0, "plain text line"), record(1, envelope)];
        records[1]
            .headers
            .push(("log-format".into(), b"batch".to_vec()));
        let verdicts = classify_all(&records, &Limits::default());
        let freed = free_values_held_as_raw(&mut records, &verdicts);
        // One row holding the whole value: freed; an envelope: kept.
        assert_eq!(freed, vec![true, false]);
        assert!(records[0].value.is_none() && records[1].value.is_some());
        let mut work = Work {
            cluster: "",
            records: &records,
            published: vec![false; 2],
            freed,
            stashed: vec![None; 2],
            verdicts,
        };
        become_dead_letter(&mut work, 0, "db_rejected", "refused".into());
        assert_eq!(work.stashed[0].as_deref(), Some("plain text line"));
        let Verdict::Poison(p) = &work.verdicts[0] else {
            panic!("not a dead letter")
        };
        let m = dead_letter(
            &records[0],
            work.stashed[0].as_deref().map(str::as_bytes),
            p.class,
            &p.message,
            "t.dlq".into(),
            "ingest",
            1000,
        );
        assert_eq!(m.payload.as_deref(), Some(&b"plain text line"[..]));
    }
}
