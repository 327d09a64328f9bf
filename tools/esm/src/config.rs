//! One local event source mapping, and the small JSON file that lists them
//! when there is no SAM template (`infra/local-mappings.json`).
//!
//! Field names are the CloudFormation ones (`AWS::Lambda::EventSourceMapping`)
//! so the file reads like the template it stands in for.

use std::path::Path;
use std::time::Duration;

use logpipe_kafka::EventSource;
use serde::Deserialize;

use crate::EsmError;

/// AWS limits a Kafka mapping's batch to 1–10,000 records.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// The Lambda synchronous invocation payload limit (6 MB), which AWS also
/// applies to a Kafka batch: the event JSON never exceeds it.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Where a consumer group with no committed offsets starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartingPosition {
    /// The oldest record (`auto.offset.reset=earliest`).
    #[default]
    TrimHorizon,
    /// Only records produced after the group first joins (`latest`).
    Latest,
}

impl StartingPosition {
    pub fn parse(s: &str) -> Result<Self, EsmError> {
        match s {
            "TRIM_HORIZON" => Ok(Self::TrimHorizon),
            "LATEST" => Ok(Self::Latest),
            other => Err(EsmError::Config(format!(
                "StartingPosition {other:?} is not supported locally (TRIM_HORIZON or LATEST)"
            ))),
        }
    }

    pub fn auto_offset_reset(self) -> &'static str {
        match self {
            Self::TrimHorizon => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// One event source mapping: which topics feed which function, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    /// The function to invoke (the local name `cargo lambda watch` serves).
    pub function_name: String,
    pub topics: Vec<String>,
    /// The mapping's own consumer group (AWS: `ConsumerGroupId`).
    pub consumer_group_id: String,
    /// 1–10,000 records per invocation (AWS default 100).
    pub batch_size: usize,
    /// How long to gather records once the first arrived (AWS default 0.5 s for Kafka).
    pub batching_window: Duration,
    pub starting_position: StartingPosition,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`: read
    /// `batchItemFailures` from a successful response. Without it a failure
    /// list is ignored and the batch counts as done, as on AWS.
    pub report_batch_item_failures: bool,
    /// Retries after the first attempt before the batch goes to the
    /// on-failure destination; `None` retries forever (AWS's Kafka default,
    /// until the records expire). Locally the default is
    /// [`DEFAULT_MAXIMUM_RETRY_ATTEMPTS`] so a broken function shows up fast.
    pub maximum_retry_attempts: Option<u32>,
    /// The Kafka topic that receives a batch whose retries are exhausted.
    /// `None`: such a batch is discarded (logged and counted), as on AWS.
    pub on_failure_topic: Option<String>,
    /// `aws:kafka` (MSK) or `SelfManagedKafka`: decides the event envelope.
    pub event_source: EventSource,
    /// `eventSourceArn` of an MSK event (a local placeholder when `None`).
    pub event_source_arn: Option<String>,
    /// First delay between retries; doubles each time up to `retry_backoff_max`.
    pub retry_backoff_initial: Duration,
    pub retry_backoff_max: Duration,
}

pub const DEFAULT_BATCH_SIZE: usize = 100;
pub const DEFAULT_BATCHING_WINDOW: Duration = Duration::from_millis(500);
pub const DEFAULT_MAXIMUM_RETRY_ATTEMPTS: u32 = 3;

impl MappingConfig {
    /// A mapping with AWS's defaults (and the local retry default).
    pub fn new(function_name: &str, topics: &[&str], consumer_group_id: &str) -> Self {
        Self {
            function_name: function_name.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            consumer_group_id: consumer_group_id.to_string(),
            batch_size: DEFAULT_BATCH_SIZE,
            batching_window: DEFAULT_BATCHING_WINDOW,
            starting_position: StartingPosition::TrimHorizon,
            report_batch_item_failures: false,
            maximum_retry_attempts: Some(DEFAULT_MAXIMUM_RETRY_ATTEMPTS),
            on_failure_topic: None,
            event_source: EventSource::SelfManaged,
            event_source_arn: None,
            retry_backoff_initial: Duration::from_millis(500),
            retry_backoff_max: Duration::from_secs(30),
        }
    }

    /// A short name for logs: `function<-topics (group)`.
    pub fn describe(&self) -> String {
        format!(
            "{} <- {} (group {})",
            self.function_name,
            self.topics.join(","),
            self.consumer_group_id
        )
    }

    pub fn validate(&self) -> Result<(), EsmError> {
        let bad = |why: String| Err(EsmError::Config(format!("{}: {why}", self.describe())));
        if self.function_name.is_empty() {
            return bad("FunctionName is empty".into());
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return bad("Topics must name at least one topic".into());
        }
        if self.consumer_group_id.is_empty() {
            return bad("ConsumerGroupId is empty".into());
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return bad(format!(
                "BatchSize {} is outside 1–{MAX_BATCH_SIZE}",
                self.batch_size
            ));
        }
        if self.batching_window > Duration::from_secs(300) {
            return bad("MaximumBatchingWindowInSeconds is above 300".into());
        }
        Ok(())
    }
}

/// `kafka://topic` names a Kafka topic. Any other destination (an SQS, SNS
/// or S3 ARN, or an unresolved reference) has no local counterpart, so the
/// failed records go to `<first topic>.dlq`, the project's DLQ naming.
pub fn on_failure_topic(destination: &str, topics: &[String]) -> Option<String> {
    if let Some(topic) = destination.strip_prefix("kafka://") {
        return Some(topic.trim_matches('/').to_string()).filter(|t| !t.is_empty());
    }
    topics.first().map(|t| format!("{t}.dlq"))
}

/// `MaximumRetryAttempts`: `-1` means forever (AWS's Kafka default);
/// absent means the local default.
pub fn retry_attempts(value: Option<i64>) -> Result<Option<u32>, EsmError> {
    match value {
        None => Ok(Some(DEFAULT_MAXIMUM_RETRY_ATTEMPTS)),
        Some(-1) => Ok(None),
        Some(n) => u32::try_from(n).map(Some).map_err(|_| {
            EsmError::Config(format!(
                "MaximumRetryAttempts {n} must be -1 (forever) or 0 or more"
            ))
        }),
    }
}

/// The file form: `{"Mappings": [ {...}, ... ]}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct MappingsFile {
    #[serde(rename = "$comment", default)]
    _comment: Option<String>,
    mappings: Vec<MappingEntry>,
}

/// One mapping in the file, with the template's property names.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct MappingEntry {
    function_name: String,
    topics: Vec<String>,
    consumer_group_id: String,
    batch_size: Option<usize>,
    maximum_batching_window_in_seconds: Option<f64>,
    starting_position: Option<String>,
    #[serde(default)]
    function_response_types: Vec<String>,
    maximum_retry_attempts: Option<i64>,
    /// `kafka://topic` (see [`on_failure_topic`]).
    on_failure_destination: Option<String>,
    /// `SelfManagedKafka` (default) or `aws:kafka`.
    event_source: Option<String>,
    event_source_arn: Option<String>,
}

/// Reads `infra/local-mappings.json`-style files.
pub fn load_mappings_file(path: &Path) -> Result<Vec<MappingConfig>, EsmError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EsmError::Config(format!("reading {}: {e}", path.display())))?;
    parse_mappings_json(&text).map_err(|e| match e {
        EsmError::Config(detail) => EsmError::Config(format!("{}: {detail}", path.display())),
        other => other,
    })
}

pub fn parse_mappings_json(text: &str) -> Result<Vec<MappingConfig>, EsmError> {
    let file: MappingsFile =
        serde_json::from_str(text).map_err(|e| EsmError::Config(e.to_string()))?;
    file.mappings
        .into_iter()
        .map(|m| {
            let mut c = MappingConfig::new(&m.function_name, &[], &m.consumer_group_id);
            c.topics = m.topics;
            if let Some(n) = m.batch_size {
                c.batch_size = n;
            }
            if let Some(w) = m.maximum_batching_window_in_seconds {
                c.batching_window = window(w)?;
            }
            if let Some(p) = m.starting_position {
                c.starting_position = StartingPosition::parse(&p)?;
            }
            c.report_batch_item_failures = reports_failures(&m.function_response_types);
            c.maximum_retry_attempts = retry_attempts(m.maximum_retry_attempts)?;
            c.on_failure_topic = m
                .on_failure_destination
                .as_deref()
                .and_then(|d| on_failure_topic(d, &c.topics));
            c.event_source = match m.event_source.as_deref() {
                None | Some("SelfManagedKafka") => EventSource::SelfManaged,
                Some("aws:kafka") => EventSource::Msk,
                Some(other) => {
                    return Err(EsmError::Config(format!(
                        "EventSource {other:?}: expected SelfManagedKafka or aws:kafka"
                    )));
                }
            };
            c.event_source_arn = m.event_source_arn;
            c.validate()?;
            Ok(c)
        })
        .collect()
}

pub(crate) fn reports_failures(types: &[String]) -> bool {
    types.iter().any(|t| t == "ReportBatchItemFailures")
}

pub(crate) fn window(seconds: f64) -> Result<Duration, EsmError> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        EsmError::Config(format!(
            "MaximumBatchingWindowInSeconds {seconds} is not a duration"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/local-mappings.json");
        let mappings = load_mappings_file(&path).unwrap();
        assert_eq!(mappings.len(), 2);
        let ingest = &mappings[0];
        assert_eq!(ingest.function_name, "ingest");
        assert_eq!(ingest.topics, vec!["log-ingestion".to_string()]);
        assert_eq!(ingest.consumer_group_id, "logpipe-ingest");
        assert_eq!(ingest.batch_size, 100);
        assert_eq!(ingest.batching_window, Duration::from_millis(500));
        assert!(ingest.report_batch_item_failures);
        assert_eq!(ingest.event_source, EventSource::SelfManaged);
        assert_eq!(mappings[1].function_name, "detect");
        assert_eq!(mappings[1].batch_size, 500);
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse_mappings_json(
            r#"{"Mappings":[{"FunctionName":"f","Topics":["t"],"ConsumerGroupId":"g","BatchSize":10001}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("BatchSize 10001"), "{err}");
        assert!(parse_mappings_json(r#"{"Mappings":[{"FunctionName":"f","Topics":["t"],"ConsumerGroupId":"g","Typo":1}]}"#).is_err());
        assert_eq!(retry_attempts(Some(-1)).unwrap(), None);
        assert!(retry_attempts(Some(-2)).is_err());
    }

    #[test]
    fn destinations_map_to_topics() {
        let topics = vec!["log-ingestion".to_string()];
        assert_eq!(
            on_failure_topic("kafka://failures", &topics).as_deref(),
            Some("failures")
        );
        assert_eq!(
            on_failure_topic("arn:aws:sqs:us-east-1:1:q", &topics).as_deref(),
            Some("log-ingestion.dlq")
        );
    }
}
