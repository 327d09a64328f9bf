//! Sizing a batch so its event JSON stays within the invocation limit.
//!
//! The size is counted while records are added, from each record's own JSON
//! (the same encoder `build_event` uses), so a batch is cut before it would
//! exceed the limit rather than split afterwards.

use std::collections::BTreeSet;

use logpipe_kafka::{EventRecord, EventSource, event::build_event};

/// The running size of an event being gathered. Never below the real size.
#[derive(Debug, Clone)]
pub struct EventSize {
    envelope: usize,
    records: usize,
    partitions: BTreeSet<(String, i32)>,
}

impl EventSize {
    pub fn new(source: EventSource, bootstrap_servers: &str, arn: Option<&str>) -> Self {
        let empty = build_event(source, bootstrap_servers, arn, &[]);
        Self {
            envelope: serde_json::to_vec(&empty).map(|v| v.len()).unwrap_or(0),
            records: 0,
            partitions: BTreeSet::new(),
        }
    }

    /// The event's size in bytes with what was added so far.
    pub fn total(&self) -> usize {
        self.envelope + self.records
    }

    /// What adding `record` would add: its JSON plus a comma, and for a new
    /// partition its `"<topic>-<n>":[]` key and a comma.
    pub fn cost(&self, record: &EventRecord) -> usize {
        let json = serde_json::to_vec(&record.to_json())
            .map(|v| v.len())
            .unwrap_or(usize::MAX / 4);
        let key = (record.topic.clone(), record.partition);
        let partition_cost = if self.partitions.contains(&key) {
            0
        } else {
            format!("{}-{}", record.topic, record.partition).len() + 6
        };
        json + 1 + partition_cost
    }

    /// The size of an event holding only this record.
    pub fn alone(&self, record: &EventRecord) -> usize {
        let empty = Self {
            envelope: self.envelope,
            records: 0,
            partitions: BTreeSet::new(),
        };
        empty.envelope + empty.cost(record)
    }

    pub fn add(&mut self, record: &EventRecord, cost: usize) {
        self.records += cost;
        self.partitions
            .insert((record.topic.clone(), record.partition));
    }

    pub fn clear(&mut self) {
        self.records = 0;
        self.partitions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64, len: usize) -> EventRecord {
        EventRecord {
            topic: "log-ingestion".into(),
            partition,
            offset,
            timestamp_ms: 1_700_000_000_000 + offset,
            timestamp_type: "CREATE_TIME",
            key: (offset % 3 != 0).then(|| format!("key-{offset}").into_bytes()),
            value: (offset % 5 != 0).then(|| vec![b'x'; len]),
            headers: vec![("h".into(), vec![200, 1, 255])],
        }
    }

    #[test]
    fn the_estimate_is_an_upper_bound_and_close() {
        for source in [EventSource::Msk, EventSource::SelfManaged] {
            let mut size = EventSize::new(source, "127.0.0.1:9092", None);
            let mut records = Vec::new();
            for i in 0..200 {
                let r = record(i % 7, i64::from(i), (i as usize * 37) % 1000);
                let cost = size.cost(&r);
                size.add(&r, cost);
                records.push(r);
                let real =
                    serde_json::to_vec(&build_event(source, "127.0.0.1:9092", None, &records))
                        .unwrap()
                        .len();
                assert!(size.total() >= real, "{} < {real}", size.total());
                assert!(size.total() - real <= 8, "{} vs {real}", size.total());
            }
            let lone = record(3, 5, 10);
            let real = serde_json::to_vec(&build_event(
                source,
                "127.0.0.1:9092",
                None,
                std::slice::from_ref(&lone),
            ))
            .unwrap()
            .len();
            assert!(size.alone(&lone) >= real);
        }
    }
}
