//! Pipeline health: per consumer group and partition the committed offset,
//! log end, lag and time since the last commit, with a status by Burrow's
//! rules ([`evaluate`]); ingest freshness from `ingest_progress`; records
//! per dead-letter topic.
//!
//! ```no_run
//! # async fn demo() -> Result<(), logpipe_health::HealthError> {
//! use logpipe_health::{HealthOptions, check};
//! let mut kafka = logpipe_kafka::rdkafka::ClientConfig::new();
//! kafka.set("bootstrap.servers", "127.0.0.1:9092");
//! let report = check(&kafka, None, &HealthOptions::default()).await?;
//! println!("{}", report.render_table());
//! std::process::exit(report.exit_code());
//! # }
//! ```
//!
//! The status needs a window: [`check`] samples the broker `samples` times,
//! `interval` apart, and judges the series. The window must be longer than
//! the gap between a healthy consumer's commits, or a slow committer looks
//! stopped.

pub mod cli;
pub mod evaluate;
pub mod kafka;
pub mod postgres;
mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use logpipe_kafka::KafkaClientConfig;
#[cfg(doc)]
use logpipe_kafka::rdkafka::ClientConfig;
use logpipe_postgres::Database;

pub use evaluate::{Sample, Status, Verdict, evaluate, worst};
pub use kafka::DlqCount;
pub use postgres::IngestFreshness;
pub use report::{EXIT_ERROR, EXIT_OK, EXIT_WARN, GroupHealth, HealthReport, PartitionHealth};

use kafka::{Broker, PartitionKey};

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("Kafka broker unreachable ({servers}): {detail}")]
    Unreachable { servers: String, detail: String },
    #[error("Kafka client could not be created: {0}")]
    Client(String),
    #[error("reading ingest_progress failed: {0}")]
    Database(String),
    #[error("invalid health options: {0}")]
    Options(String),
}

/// A consumer group to judge, and the topics it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub group: String,
    /// Empty: every topic on which the group has a committed offset.
    pub topics: Vec<String>,
}

impl GroupSpec {
    /// `GROUP` or `GROUP=TOPIC[,TOPIC...]`.
    pub fn parse(spec: &str) -> Result<Self, HealthError> {
        let (group, topics) = match spec.split_once('=') {
            Some((g, t)) => (
                g,
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            None => (spec, Vec::new()),
        };
        let group = group.trim();
        if group.is_empty() {
            return Err(HealthError::Options(format!(
                "{spec:?}: expected GROUP or GROUP=TOPIC[,TOPIC]"
            )));
        }
        Ok(Self {
            group: group.to_string(),
            topics,
        })
    }

    /// The pipeline's two event source mappings.
    pub fn pipeline_defaults() -> Vec<Self> {
        vec![
            Self {
                group: "logpipe-ingest".into(),
                topics: vec!["log-ingestion".into()],
            },
            Self {
                group: "logpipe-detect".into(),
                topics: vec!["log-processing".into()],
            },
        ]
    }
}

/// How to look.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    pub groups: Vec<GroupSpec>,
    /// Observations per partition (at least 2: the rules judge a trend).
    pub samples: usize,
    /// Pause between observations.
    pub interval: Duration,
    /// Per broker request.
    pub request_timeout: Duration,
    /// Reading a whole dead-letter topic to count it.
    pub dlq_scan_timeout: Duration,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self {
            groups: GroupSpec::pipeline_defaults(),
            samples: 5,
            interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            dlq_scan_timeout: Duration::from_secs(10),
        }
    }
}

/// Samples the broker (and `ingest_progress`, when a database is given)
/// over the window and judges every group. `kafka` is a bare
/// [`ClientConfig`] or a [`KafkaClientConfig`] from
/// [`KafkaSettings::client`](logpipe_kafka::KafkaSettings::client) (which
/// carries the MSK IAM token source when IAM is configured).
pub async fn check(
    kafka: impl Into<KafkaClientConfig>,
    database: Option<&Database>,
    options: &HealthOptions,
) -> Result<HealthReport, HealthError> {
    if options.samples < 2 {
        return Err(HealthError::Options(
            "at least 2 samples are needed to judge a trend".into(),
        ));
    }
    let group_names: Vec<String> = options.groups.iter().map(|g| g.group.clone()).collect();
    let (broker, plan) = {
        let kafka: KafkaClientConfig = kafka.into();
        let specs = options.groups.clone();
        let timeout = options.request_timeout;
        blocking(move || {
            let names: Vec<String> = specs.iter().map(|g| g.group.clone()).collect();
            let broker = Broker::connect(&kafka, &names, timeout)?;
            let plan = plan(&broker, &specs)?;
            Ok((Arc::new(broker), plan))
        })
        .await?
    };
    let mut notes = Vec::new();

    // series[group][(topic, partition)] = samples, oldest first
    let mut series: BTreeMap<String, BTreeMap<PartitionKey, Vec<Sample>>> = BTreeMap::new();
    let mut known_ends: BTreeMap<PartitionKey, i64> = BTreeMap::new();
    let mut first_at = None;
    let mut last_at = Utc::now();
    for i in 0..options.samples {
        if i > 0 {
            tokio::time::sleep(options.interval).await;
        }
        let observation = {
            let broker = Arc::clone(&broker);
            let plan = plan.clone();
            let ends = known_ends.clone();
            blocking(move || observe(&broker, &plan, &ends)).await?
        };
        let recorded = match database {
            Some(db) => match read_recorded_progress(db, &group_names, observation.at).await {
                Ok(t) => t,
                Err(e) => {
                    note_once(&mut notes, e.to_string());
                    BTreeMap::new()
                }
            },
            None => BTreeMap::new(),
        };
        first_at.get_or_insert(observation.at);
        last_at = observation.at;
        for (key, bounds) in &observation.bounds {
            known_ends.insert(key.clone(), bounds.end);
        }
        for (group, committed) in &observation.committed {
            for (key, offset) in committed {
                let Some(bounds) = observation.bounds.get(key) else {
                    continue;
                };
                let recorded = recorded
                    .get(&(group.clone(), key.0.clone(), key.1))
                    .copied();
                series
                    .entry(group.clone())
                    .or_default()
                    .entry(key.clone())
                    .or_default()
                    .push(Sample {
                        at: observation.at,
                        committed: *offset,
                        log_start: bounds.start,
                        log_end: bounds.end,
                        commit_seen_at: recorded.map(|r| r.at),
                        recorded_offset: recorded.map(|r| r.next_offset),
                    });
            }
        }
    }

    let dlq = {
        let broker = Arc::clone(&broker);
        let topics: Vec<(String, i32)> = plan
            .topics
            .iter()
            .filter(|(t, _)| t.ends_with(".dlq"))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        let timeout = options.dlq_scan_timeout;
        blocking(move || {
            Ok(topics
                .iter()
                .map(|(t, n)| broker.count_records(t, *n, timeout))
                .collect::<Vec<_>>())
        })
        .await?
    };

    let freshness = match database {
        Some(db) => match read_freshness(db).await {
            Ok(rows) => Some(rows),
            Err(e) => {
                note_once(&mut notes, e.to_string());
                None
            }
        },
        None => None,
    };

    let groups = options
        .groups
        .iter()
        .map(|spec| {
            report::group_health(
                &spec.group,
                series.get(&spec.group),
                plan.missing.get(&spec.group),
            )
        })
        .collect();
    let window = last_at - first_at.unwrap_or(last_at);
    Ok(HealthReport {
        checked_at: last_at,
        samples: options.samples,
        window_seconds: window.num_milliseconds().max(0) as f64 / 1000.0,
        groups,
        ingest_freshness: freshness,
        dlq,
        notes,
    })
}

/// Which partitions each group is judged on.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// Every topic on the broker with its partition count.
    topics: BTreeMap<String, i32>,
    partitions: BTreeMap<String, Vec<PartitionKey>>,
    /// Per group: topics it should read that the broker does not have.
    missing: BTreeMap<String, Vec<String>>,
}

fn plan(broker: &Broker, specs: &[GroupSpec]) -> Result<Plan, HealthError> {
    let topics = broker.topics()?;
    let all_of = |topic: &str| -> Vec<PartitionKey> {
        let n = topics.get(topic).copied().unwrap_or(0);
        (0..n).map(|p| (topic.to_string(), p)).collect()
    };
    let mut plan = Plan {
        topics: topics.clone(),
        ..Plan::default()
    };
    for spec in specs {
        let partitions = if spec.topics.is_empty() {
            // Discover: the topics where the group has committed anything.
            let everything: Vec<PartitionKey> = topics.keys().flat_map(|t| all_of(t)).collect();
            let committed = broker.committed(&spec.group, &everything)?;
            let used: Vec<&String> = committed
                .iter()
                .filter(|(_, o)| o.is_some())
                .map(|((t, _), _)| t)
                .collect();
            everything
                .into_iter()
                .filter(|(t, _)| used.contains(&t))
                .collect()
        } else {
            let mut partitions = Vec::new();
            for topic in &spec.topics {
                if topics.contains_key(topic) {
                    partitions.extend(all_of(topic));
                } else {
                    plan.missing
                        .entry(spec.group.clone())
                        .or_default()
                        .push(topic.clone());
                }
            }
            partitions
        };
        plan.partitions.insert(spec.group.clone(), partitions);
    }
    Ok(plan)
}

/// One look at the broker.
struct Observation {
    at: DateTime<Utc>,
    bounds: BTreeMap<PartitionKey, kafka::LogBounds>,
    committed: BTreeMap<String, BTreeMap<PartitionKey, Option<i64>>>,
}

fn observe(
    broker: &Broker,
    plan: &Plan,
    known_ends: &BTreeMap<PartitionKey, i64>,
) -> Result<Observation, HealthError> {
    let mut topics: BTreeMap<&str, i32> = BTreeMap::new();
    for (topic, _) in plan.partitions.values().flatten() {
        if let Some(n) = plan.topics.get(topic) {
            topics.insert(topic, *n);
        }
    }
    // Committed offsets first, log ends after: a commit that lands in
    // between then makes the lag look smaller, never negative.
    let mut committed = BTreeMap::new();
    for (group, partitions) in &plan.partitions {
        committed.insert(group.clone(), broker.committed(group, partitions)?);
    }
    let mut bounds = BTreeMap::new();
    for (topic, n) in topics {
        for (partition, b) in broker.log_bounds(topic, n, known_ends)? {
            bounds.insert((topic.to_string(), partition), b);
        }
    }
    Ok(Observation {
        at: Utc::now(),
        bounds,
        committed,
    })
}

async fn read_recorded_progress(
    db: &Database,
    groups: &[String],
    at: DateTime<Utc>,
) -> Result<BTreeMap<(String, String, i32), postgres::RecordedProgress>, HealthError> {
    let client = db
        .client()
        .await
        .map_err(|e| HealthError::Database(e.to_string()))?;
    postgres::recorded_progress(&client, groups, at).await
}

async fn read_freshness(db: &Database) -> Result<Vec<IngestFreshness>, HealthError> {
    let client = db
        .client()
        .await
        .map_err(|e| HealthError::Database(e.to_string()))?;
    postgres::freshness(&client).await
}

fn note_once(notes: &mut Vec<String>, note: String) {
    if !notes.contains(&note) {
        notes.push(note);
    }
}

/// Runs blocking rdkafka calls off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HealthError> + Send + 'static,
) -> Result<T, HealthError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HealthError::Client(format!("the broker sampling task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_specs_parse() {
        assert_eq!(
            GroupSpec::parse("g").unwrap(),
            GroupSpec {
                group: "g".into(),
                topics: vec![]
            }
        );
        assert_eq!(
            GroupSpec::parse("g=a, b,").unwrap().topics,
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(GroupSpec::parse("=a").is_err());
    }
}
