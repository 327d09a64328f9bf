//! The delivery ledger: the per-batch bookkeeping every Kafka consumer in
//! logpipe shares (the ingest and detect functions, the local event source
//! mapping).
//!
//! Every input record ends with exactly one [`Disposition`]: done, duplicate
//! (at or below the stored progress), dead-lettered, or retry. Functions
//! only say what happened to each record, phase by phase; from those alone
//! the ledger derives
//! - the new progress per partition (the highest offset below which every
//!   record of the batch is handled — never past a record to be retried),
//! - the first unprocessed offset per partition (where Lambda resumes),
//! - the counts, and
//! - the Lambda response: a `batchItemFailures` list for a mapping that
//!   reads it, otherwise an error so the whole batch is retried.
//!
//! Kafka delivers a partition in order and resumes it at the reported
//! offset, so one retried record hands back every later record of its
//! partition: they count as retries whatever a phase said about them.

pub mod response;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

pub use response::{
    BatchItemFailure, BatchResponse, ItemIdentifier, ReportMode, Response, RetryBatch,
};

/// `(topic, partition)`.
pub type PartitionKey = (String, i32);

/// What became of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Stored or processed by this invocation.
    Done,
    /// At or below the stored progress: handled by an earlier invocation.
    Duplicate,
    /// Can never succeed; published to the dead-letter topic.
    DeadLettered { class: String, message: String },
    /// Handed back to the event source. `transient`: a retry later may
    /// succeed unchanged (a permanent cause that could not be isolated,
    /// e.g. an undeliverable dead letter, is reported as such).
    Retry { cause: String, transient: bool },
}

/// Highest offset a consumer group fully handled in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Progress {
    pub topic: String,
    pub partition: i32,
    pub last_offset: i64,
}

/// The counts every function reports. `records_in = done + duplicate +
/// dead_lettered + retry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub records_in: usize,
    pub done: usize,
    pub duplicate: usize,
    pub dead_lettered: usize,
    pub retry: usize,
    /// Of `retry`, those whose cause is not transient.
    pub retry_permanent: usize,
    pub dead_letter_classes: BTreeMap<String, usize>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Index into [`Ledger::parts`]; `None`: the record's partition or
    /// offset could not be read.
    part: Option<usize>,
    offset: i64,
    disposition: Option<Disposition>,
}

/// The bookkeeping of one batch. Indices are the positions of the records
/// as given to [`Ledger::new`]. Partitions are numbered once, so the
/// per-record work (asked several times per record by every phase) is
/// indexing, not hashing topic names.
#[derive(Debug, Clone)]
pub struct Ledger {
    entries: Vec<Entry>,
    /// The batch's distinct partitions, in order of first appearance.
    parts: Vec<PartitionKey>,
    /// Stored progress per partition (by index).
    previous: Vec<Option<i64>>,
    /// Lowest retried offset per partition (by index), kept as retries are
    /// recorded.
    retried: Vec<Option<i64>>,
    /// A record without coordinates is retried.
    retried_without_coordinates: bool,
}

/// `slot = min(slot, offset)`, an empty slot taking `offset`.
fn lower(slot: &mut Option<i64>, offset: i64) {
    *slot = Some(slot.map_or(offset, |s| s.min(offset)));
}

/// `slot = max(slot, offset)`, an empty slot taking `offset`.
fn raise(slot: &mut Option<i64>, offset: i64) {
    *slot = Some(slot.map_or(offset, |s| s.max(offset)));
}

impl Ledger {
    /// One entry per record, `(topic, partition, offset)`; a negative
    /// partition or offset means the coordinates could not be read.
    pub fn new<'a>(records: impl IntoIterator<Item = (&'a str, i32, i64)>) -> Self {
        let mut index: HashMap<(&'a str, i32), usize> = HashMap::new();
        let mut parts: Vec<PartitionKey> = Vec::new();
        // Batches come grouped by partition: most records reuse the last one.
        let mut last: Option<((&'a str, i32), usize)> = None;
        let entries = records
            .into_iter()
            .map(|(topic, partition, offset)| {
                let part = (partition >= 0 && offset >= 0).then(|| match last {
                    Some((k, n)) if k == (topic, partition) => n,
                    _ => {
                        let n = *index.entry((topic, partition)).or_insert_with(|| {
                            parts.push((topic.to_string(), partition));
                            parts.len() - 1
                        });
                        last = Some(((topic, partition), n));
                        n
                    }
                });
                Entry {
                    part,
                    offset,
                    disposition: None,
                }
            })
            .collect();
        let n = parts.len();
        Self {
            entries,
            parts,
            previous: vec![None; n],
            retried: vec![None; n],
            retried_without_coordinates: false,
        }
    }

    /// The distinct partitions of the records with coordinates, in order:
    /// whose stored progress [`Ledger::skip_handled`] wants.
    pub fn partitions(&self) -> Vec<PartitionKey> {
        let mut keys = self.parts.clone();
        keys.sort();
        keys
    }

    /// Marks the records at or below `previous` (the group's stored
    /// progress) as duplicates; the new progress is only ever above it.
    pub fn skip_handled(&mut self, previous: &HashMap<PartitionKey, i64>) {
        self.previous = self
            .parts
            .iter()
            .map(|k| previous.get(k).copied())
            .collect();
        for e in &mut self.entries {
            let handled = e
                .part
                .and_then(|p| self.previous[p])
                .is_some_and(|last| e.offset <= last);
            if handled && e.disposition.is_none() {
                e.disposition = Some(Disposition::Duplicate);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn disposition(&self, i: usize) -> Option<&Disposition> {
        self.entries[i].disposition.as_ref()
    }

    /// Whether record `i` still needs work: no disposition yet, and no
    /// earlier record of its partition is to be retried.
    pub fn is_open(&self, i: usize) -> bool {
        self.entries[i].disposition.is_none() && !self.is_stopped(i)
    }

    /// The records that still need work, in order.
    pub fn open(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.entries.len()).filter(|&i| self.is_open(i))
    }

    /// Whether record `i` or an earlier record of its partition is to be
    /// retried (or a record without coordinates is, which retries all).
    pub fn is_stopped(&self, i: usize) -> bool {
        let e = &self.entries[i];
        self.retried_without_coordinates
            || e.part
                .and_then(|p| self.retried[p])
                .is_some_and(|s| s <= e.offset)
    }

    pub fn done(&mut self, i: usize) {
        self.set(i, Disposition::Done);
    }

    pub fn dead_letter(&mut self, i: usize, class: impl Into<String>, message: impl Into<String>) {
        self.set(
            i,
            Disposition::DeadLettered {
                class: class.into(),
                message: message.into(),
            },
        );
    }

    /// Hands record `i` back. A later phase may turn a done or dead-lettered
    /// record into a retry (its earlier outcome did not commit); duplicates
    /// stay duplicates.
    pub fn retry(&mut self, i: usize, cause: impl Into<String>, transient: bool) {
        self.set(
            i,
            Disposition::Retry {
                cause: cause.into(),
                transient,
            },
        );
    }

    /// Every record that is not a duplicate goes back: nothing of this
    /// invocation was committed.
    pub fn retry_all(&mut self, cause: &str, transient: bool) {
        for i in 0..self.entries.len() {
            self.retry(i, cause, transient);
        }
    }

    /// Every record without a disposition goes back (a phase failed as a
    /// whole before it could say anything about them).
    pub fn retry_undecided(&mut self, cause: &str, transient: bool) {
        for i in 0..self.entries.len() {
            if self.entries[i].disposition.is_none() {
                self.retry(i, cause, transient);
            }
        }
    }

    /// Records a disposition. Duplicates and retries are final: a retry
    /// already stopped its partition, and a duplicate was handled before.
    fn set(&mut self, i: usize, d: Disposition) {
        let e = &mut self.entries[i];
        if matches!(
            e.disposition,
            Some(Disposition::Duplicate | Disposition::Retry { .. })
        ) {
            return;
        }
        if matches!(d, Disposition::Retry { .. }) {
            match e.part {
                None => self.retried_without_coordinates = true,
                Some(p) => lower(&mut self.retried[p], e.offset),
            }
        }
        e.disposition = Some(d);
    }

    /// Per partition (by index), the lowest offset that is to be retried or
    /// has no disposition yet; and whether a record without coordinates is.
    fn stops(&self) -> (Vec<Option<i64>>, bool) {
        let mut stops = vec![None; self.parts.len()];
        let mut whole = false;
        for e in &self.entries {
            if !matches!(e.disposition, None | Some(Disposition::Retry { .. })) {
                continue;
            }
            match e.part {
                None => whole = true,
                Some(p) => lower(&mut stops[p], e.offset),
            }
        }
        (stops, whole)
    }

    /// Per-partition values (by index) keyed by partition, in key order.
    fn by_key(&self, values: &[Option<i64>]) -> BTreeMap<PartitionKey, i64> {
        self.parts
            .iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
            .collect()
    }

    /// The progress to store now: per partition, the highest offset below
    /// its first unhandled record, when that is beyond the stored progress.
    /// Records without a disposition count as unhandled.
    pub fn progress(&self) -> Vec<Progress> {
        self.progress_with(&self.stops().0)
    }

    fn progress_with(&self, stops: &[Option<i64>]) -> Vec<Progress> {
        let mut last = vec![None; self.parts.len()];
        for e in &self.entries {
            let Some(p) = e.part else { continue };
            if stops[p].is_some_and(|s| e.offset >= s) {
                continue;
            }
            raise(&mut last[p], e.offset);
        }
        for (l, prev) in last.iter_mut().zip(&self.previous) {
            if l.zip(*prev).is_some_and(|(l, p)| l <= p) {
                *l = None;
            }
        }
        self.by_key(&last)
            .into_iter()
            .map(|((topic, partition), last_offset)| Progress {
                topic,
                partition,
                last_offset,
            })
            .collect()
    }

    /// The final account of the batch. Records without a disposition are
    /// retried (nothing said they were handled).
    pub fn settle(self) -> Settlement {
        let (stops, whole_batch) = self.stops();
        let progress = self.progress_with(&stops);
        let mut counts = Counts {
            records_in: self.entries.len(),
            ..Default::default()
        };
        let mut cause = None;
        let mut dispositions = Vec::with_capacity(self.entries.len());
        let mut ends = vec![None; self.parts.len()];
        for e in &self.entries {
            if let Some(p) = e.part {
                raise(&mut ends[p], e.offset + 1);
            }
        }
        let next: Vec<Option<i64>> = ends
            .iter()
            .zip(&stops)
            .map(|(end, stop)| stop.or(*end))
            .collect();
        let resume = self.by_key(&stops);
        let next_offsets = self.by_key(&next);
        for e in self.entries {
            let behind_stop = e.part.and_then(|p| stops[p]).is_some_and(|s| e.offset > s);
            let d = match e.disposition {
                Some(Disposition::Duplicate) => Disposition::Duplicate,
                Some(r @ Disposition::Retry { .. }) => r,
                None => Disposition::Retry {
                    cause: "not processed".into(),
                    transient: true,
                },
                Some(_) if behind_stop => Disposition::Retry {
                    cause: "an earlier record of its partition is retried".into(),
                    transient: true,
                },
                Some(d) => d,
            };
            match &d {
                Disposition::Done => counts.done += 1,
                Disposition::Duplicate => counts.duplicate += 1,
                Disposition::DeadLettered { class, .. } => {
                    counts.dead_lettered += 1;
                    if let Some(n) = counts.dead_letter_classes.get_mut(class) {
                        *n += 1;
                    } else {
                        counts.dead_letter_classes.insert(class.clone(), 1);
                    }
                }
                Disposition::Retry {
                    cause: c,
                    transient,
                } => {
                    counts.retry += 1;
                    if !transient {
                        counts.retry_permanent += 1;
                    }
                    cause.get_or_insert_with(|| c.clone());
                }
            }
            dispositions.push(d);
        }
        Settlement {
            counts,
            progress,
            resume,
            next_offsets,
            whole_batch,
            cause,
            dispositions,
        }
    }
}

/// What a batch came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub counts: Counts,
    /// New progress per partition (only partitions that advanced).
    pub progress: Vec<Progress>,
    /// First unprocessed offset of each partition that must be retried.
    pub resume: BTreeMap<PartitionKey, i64>,
    /// Per partition, where consumption continues: the first unprocessed
    /// offset, or one past the batch's last record (what a consumer commits).
    pub next_offsets: BTreeMap<PartitionKey, i64>,
    /// A record without coordinates is to be retried: only a retry of the
    /// whole batch can express that.
    pub whole_batch: bool,
    /// The first cause of a retry.
    pub cause: Option<String>,
    /// Each record's final disposition, in input order.
    pub dispositions: Vec<Disposition>,
}

impl Settlement {
    pub fn has_retries(&self) -> bool {
        self.counts.retry > 0
    }

    /// The partial batch failures: one per partition to retry.
    pub fn failures(&self) -> Vec<BatchItemFailure> {
        self.resume
            .iter()
            .map(|((t, p), o)| BatchItemFailure::new(t, *p, *o))
            .collect()
    }

    /// The Lambda response with the function's own `summary`: failures are
    /// listed only to a mapping that reads them; otherwise, or when only a
    /// whole retry can express them, an error (never a silent success).
    pub fn respond<S>(&self, summary: S, mode: ReportMode) -> Result<Response<S>, RetryBatch> {
        if self.has_retries() && (mode == ReportMode::WholeBatch || self.whole_batch) {
            return Err(RetryBatch {
                cause: self.cause.clone().unwrap_or_else(|| "unknown".into()),
                retry: self.counts.retry,
            });
        }
        Ok(Response {
            batch: BatchResponse {
                batch_item_failures: self.failures(),
            },
            summary,
        })
    }
}

#[cfg(test)]
mod tests;
