//! What the broker shows: partitions, committed offsets per group, log
//! ends, and DLQ record counts. Blocking rdkafka calls: run them off the
//! async runtime (`spawn_blocking`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use logpipe_kafka::rdkafka::config::ClientConfig;
use logpipe_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use logpipe_kafka::rdkafka::error::KafkaError;
use logpipe_kafka::rdkafka::message::Message;
use logpipe_kafka::rdkafka::{Offset, TopicPartitionList};
use logpipe_kafka::{AuthContext, KafkaClientConfig};

use crate::HealthError;

/// How long one sample may read to find where partitions end; a partition
/// that does not report its end by then keeps its watermark.
const LOG_END_READ: Duration = Duration::from_secs(3);

/// (topic, partition)
pub type PartitionKey = (String, i32);

/// Offsets of one partition as the broker reports them now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    pub start: i64,
    pub end: i64,
}

/// The broker side of a health check: one metadata/probe consumer and one
/// offset-reading consumer per group. None of them subscribes or commits.
pub struct Broker {
    servers: String,
    probe: BaseConsumer<AuthContext>,
    groups: BTreeMap<String, BaseConsumer<AuthContext>>,
    timeout: Duration,
}

impl Broker {
    pub fn connect(
        base: &KafkaClientConfig,
        groups: &[String],
        timeout: Duration,
    ) -> Result<Self, HealthError> {
        let servers = base.bootstrap_servers().to_string();
        // Blocking context: `create` hands each consumer its first MSK IAM
        // token (in IAM mode) before it is used.
        let consume = |config: &ClientConfig| {
            base.create(config, BaseConsumer::client)
                .map_err(|e| HealthError::Client(e.to_string()))
        };
        let probe = consume(
            reader(&base.config, "logpipe-health-probe")
                // Scans must see where a partition ends.
                .set("enable.partition.eof", "true")
                .set("auto.offset.reset", "latest")
                .set("fetch.wait.max.ms", "100"),
        )?;
        let mut by_group = BTreeMap::new();
        for group in groups {
            let consumer = consume(&reader(&base.config, group))?;
            by_group.insert(group.clone(), consumer);
        }
        Ok(Self {
            servers,
            probe,
            groups: by_group,
            timeout,
        })
    }

    fn unreachable(&self, e: KafkaError) -> HealthError {
        HealthError::Unreachable {
            servers: self.servers.clone(),
            detail: e.to_string(),
        }
    }

    /// Partition counts of every topic the broker knows (internal topics
    /// left out).
    pub fn topics(&self) -> Result<BTreeMap<String, i32>, HealthError> {
        let metadata = self
            .probe
            .fetch_metadata(None, self.timeout)
            .map_err(|e| self.unreachable(e))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect())
    }

    /// The group's committed offsets on `partitions` (`None`: no commit).
    pub fn committed(
        &self,
        group: &str,
        partitions: &[PartitionKey],
    ) -> Result<BTreeMap<PartitionKey, Option<i64>>, HealthError> {
        let Some(consumer) = self.groups.get(group) else {
            return Err(HealthError::Client(format!(
                "no consumer for group {group}"
            )));
        };
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        let committed = consumer
            .committed_offsets(tpl, self.timeout)
            .map_err(|e| self.unreachable(e))?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(n) if n >= 0 => Some(n),
                    _ => None,
                };
                ((e.topic().to_string(), e.partition()), offset)
            })
            .collect())
    }

    /// Log start and end of every partition of `topic`. The end is the high
    /// watermark, pushed forward by reading from just below it: Tansu's
    /// memory engine answers "base offset of the newest batch + 1" (far
    /// below the true end) and returns nothing for a fetch that starts
    /// inside a batch, so the read starts at that base (watermark − 1; on
    /// real Kafka just the last record) and what it fetches cannot be wrong.
    /// `known_ends` are ends seen before (the log never shrinks at the end).
    pub fn log_bounds(
        &self,
        topic: &str,
        partitions: i32,
        known_ends: &BTreeMap<PartitionKey, i64>,
    ) -> Result<BTreeMap<i32, LogBounds>, HealthError> {
        let mut bounds = BTreeMap::new();
        let mut starts = BTreeMap::new();
        for partition in 0..partitions {
            let (low, high) = self
                .probe
                .fetch_watermarks(topic, partition, self.timeout)
                .map_err(|e| self.unreachable(e))?;
            let known = known_ends
                .get(&(topic.to_string(), partition))
                .copied()
                .unwrap_or(0);
            bounds.insert(
                partition,
                LogBounds {
                    start: low.max(0),
                    end: high.max(known).max(0),
                },
            );
            // Empty (or unreadable) partitions: from the beginning, which
            // ends at once.
            starts.insert(partition, if high > low { high - 1 } else { -2 });
        }
        let scan = self.scan(topic, &starts, self.timeout.min(LOG_END_READ))?;
        for (partition, seen) in scan.next_offsets {
            if let Some(b) = bounds.get_mut(&partition) {
                b.end = b.end.max(seen);
            }
        }
        Ok(bounds)
    }

    /// Records in `topic`, counted by reading it from the beginning, bounded
    /// by `timeout`. Also returns what the offsets alone say.
    pub fn count_records(&self, topic: &str, partitions: i32, timeout: Duration) -> DlqCount {
        let mut from_offsets = 0;
        for partition in 0..partitions {
            if let Ok((low, high)) = self.probe.fetch_watermarks(topic, partition, self.timeout) {
                from_offsets += (high - low).max(0);
            }
        }
        let starts = (0..partitions).map(|p| (p, -2)).collect();
        match self.scan(topic, &starts, timeout) {
            Ok(scan) => DlqCount {
                topic: topic.to_string(),
                // A complete scan is the truth; a partial one is a floor.
                records: if scan.complete {
                    scan.records
                } else {
                    scan.records.max(from_offsets)
                },
                from_offsets,
                counted_by_reading: scan.complete,
            },
            Err(_) => DlqCount {
                topic: topic.to_string(),
                records: from_offsets,
                from_offsets,
                counted_by_reading: false,
            },
        }
    }

    /// Reads `topic`'s partitions from the given offsets (`-2`: the
    /// beginning) until each reports its end or `timeout` passes.
    fn scan(
        &self,
        topic: &str,
        starts: &BTreeMap<i32, i64>,
        timeout: Duration,
    ) -> Result<Scan, HealthError> {
        let mut tpl = TopicPartitionList::new();
        for (partition, start) in starts {
            let offset = if *start < 0 {
                Offset::Beginning
            } else {
                Offset::Offset(*start)
            };
            tpl.add_partition_offset(topic, *partition, offset)
                .map_err(|e| HealthError::Client(e.to_string()))?;
        }
        self.probe
            .assign(&tpl)
            .map_err(|e| HealthError::Client(e.to_string()))?;
        let mut pending: BTreeSet<i32> = starts.keys().copied().collect();
        let mut next_offsets = BTreeMap::new();
        let mut records = 0i64;
        let deadline = Instant::now() + timeout;
        while !pending.is_empty() && Instant::now() < deadline {
            match self.probe.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.topic() == topic => {
                    records += 1;
                    let next = next_offsets.entry(m.partition()).or_insert(0);
                    *next = (*next).max(m.offset() + 1);
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    pending.remove(&partition);
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => {
                    tracing::debug!(topic, error = %e, "reading the log end failed");
                }
            }
        }
        let _ = self.probe.unassign();
        Ok(Scan {
            next_offsets,
            records,
            complete: pending.is_empty(),
        })
    }
}

/// A consumer configuration that only reads: no commits, no offset store.
fn reader(base: &ClientConfig, group: &str) -> ClientConfig {
    let mut c = base.clone();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

struct Scan {
    /// Per partition: the offset after the last record read.
    next_offsets: BTreeMap<i32, i64>,
    records: i64,
    /// Every partition reported its end within the time allowed.
    complete: bool,
}

/// Records in a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DlqCount {
    pub topic: String,
    /// The best count: read when `counted_by_reading`, else the larger of a
    /// partial read and the offsets.
    pub records: i64,
    /// High minus low watermark, summed (too low on Tansu; too high when
    /// records were compacted or are transaction markers).
    pub from_offsets: i64,
    pub counted_by_reading: bool,
}
