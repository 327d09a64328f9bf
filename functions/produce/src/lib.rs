//! The produce function: realistic traffic (every format the schema crate
//! parses, with optional injected anomalies) or a replayed file, published
//! to `log-ingestion` keyed by service/host/sensor so an entity stays on one
//! partition.

pub mod input;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use logpipe_generator::{GenerateError, GeneratedRecord, generate, replay};
use logpipe_kafka::settings::SaslCredentials;
use logpipe_kafka::{KafkaSettings, OutMessage, Publisher};
use logpipe_secrets::SecretsCache;
use serde::Serialize;

pub use input::{InputError, ReplaySource, RunInput, parse_input};

/// | variable | default | meaning |
/// |---|---|---|
/// | `PRODUCE_TOPIC` | `log-ingestion` | where records go |
/// | `PRODUCE_SPAN_SECONDS` | `120` | event times of one run spread over this span (the schedule interval) |
/// | `KAFKA_MESSAGE_TIMEOUT_MS` | `20000` | how long a record may wait for the broker |
/// | `AWS_LAMBDA_FUNCTION_NAME` | `produce` | sent in the `producer` header |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceConfig {
    pub topic: String,
    pub span: Duration,
    pub message_timeout: Duration,
    pub function_name: String,
}

impl Default for ProduceConfig {
    fn default() -> Self {
        Self {
            topic: "log-ingestion".into(),
            span: Duration::from_secs(120),
            message_timeout: Duration::from_secs(20),
            function_name: "produce".into(),
        }
    }
}

impl ProduceConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let secs = |k: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(k) {
                Ok(v) if !v.trim().is_empty() => Ok(v
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{k}={v:?} is not a number"))?),
                _ => Ok(default),
            }
        };
        Ok(Self {
            topic: std::env::var("PRODUCE_TOPIC")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or(d.topic),
            span: Duration::from_secs(secs("PRODUCE_SPAN_SECONDS", d.span.as_secs())?),
            message_timeout: Duration::from_millis(secs(
                "KAFKA_MESSAGE_TIMEOUT_MS",
                d.message_timeout.as_millis() as u64,
            )?),
            function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or(d.function_name),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    pub records: usize,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// The response: what was produced where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProduceReport {
    pub mode: &'static str,
    pub topic: String,
    pub produced: usize,
    pub partitions: BTreeMap<i32, PartitionReport>,
    pub kinds: BTreeMap<String, usize>,
    pub seed: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("replay file {path} cannot be used: {detail}")]
    Replay { path: String, detail: String },
    #[error("invalid produce input: {0}")]
    Generate(#[from] GenerateError),
    /// Some records went out and some did not: said loudly, never hidden.
    #[error(
        "produced {produced} of {total} records to {topic}; {failed} failed (first error: {first_error})"
    )]
    Partial {
        topic: String,
        produced: usize,
        failed: usize,
        total: usize,
        first_error: String,
    },
}

impl From<ProduceError> for Diagnostic {
    fn from(e: ProduceError) -> Self {
        let error_type = match &e {
            ProduceError::Input(_) | ProduceError::Generate(_) => "InvalidInput",
            ProduceError::Replay { .. } => "ReplayFileUnusable",
            ProduceError::Partial { .. } => "PartiallyProduced",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

pub struct Producer {
    config: ProduceConfig,
    publisher: Publisher,
}

impl Producer {
    pub fn new(config: ProduceConfig, publisher: Publisher) -> Self {
        Self { config, publisher }
    }

    /// Builds the producer from the environment (once per sandbox).
    pub async fn from_env() -> anyhow::Result<Self> {
        let config = ProduceConfig::from_env()?;
        let settings = KafkaSettings::from_env(&config.function_name)?;
        let secrets = match settings.credentials {
            SaslCredentials::Secret { .. } => Some(Arc::new(SecretsCache::from_env().await)),
            _ => None,
        };
        let publisher = Publisher::new(settings, secrets, config.message_timeout).await?;
        Ok(Self::new(config, publisher))
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Generates or replays, publishes, and reports per partition.
    pub async fn run(
        &self,
        input: RunInput,
        now: DateTime<Utc>,
    ) -> Result<ProduceReport, ProduceError> {
        let (mode, seed, records) = match input {
            RunInput::Generate(request) => {
                let span = chrono::Duration::from_std(self.config.span)
                    .unwrap_or(chrono::Duration::minutes(2));
                ("generate", request.seed, generate(&request, now, span)?)
            }
            RunInput::Replay(source) => {
                let format = source.replay_format()?;
                let text =
                    std::fs::read_to_string(&source.path).map_err(|e| ProduceError::Replay {
                        path: source.path.clone(),
                        detail: e.to_string(),
                    })?;
                let records = replay(&text, format, source.key_field.as_deref()).map_err(|e| {
                    ProduceError::Replay {
                        path: source.path.clone(),
                        detail: e.to_string(),
                    }
                })?;
                ("replay", None, records)
            }
        };
        self.publish(mode, seed, records).await
    }

    async fn publish(
        &self,
        mode: &'static str,
        seed: Option<u64>,
        records: Vec<GeneratedRecord>,
    ) -> Result<ProduceReport, ProduceError> {
        let total = records.len();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for r in &records {
            *kinds.entry(kind_name(r)).or_default() += 1;
        }
        let topic = self.config.topic.as_str();
        let producer_name = self.config.function_name.as_str();
        let builders: Vec<_> = records
            .into_iter()
            .map(|r| move || to_message(r, topic, producer_name))
            .collect();
        let results = self.publisher.publish_all(builders).await;
        let mut report = ProduceReport {
            mode,
            topic: topic.to_string(),
            seed,
            kinds,
            ..Default::default()
        };
        let mut failed = 0;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(d) => {
                    report.produced += 1;
                    let p = report
                        .partitions
                        .entry(d.partition)
                        .or_insert(PartitionReport {
                            records: 0,
                            first_offset: d.offset,
                            last_offset: d.offset,
                        });
                    p.records += 1;
                    p.first_offset = p.first_offset.min(d.offset);
                    p.last_offset = p.last_offset.max(d.offset);
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        tracing::info!(
            mode,
            topic,
            produced = report.produced,
            failed,
            "produce run done"
        );
        match first_error {
            None => Ok(report),
            Some(first_error) => Err(ProduceError::Partial {
                topic: topic.to_string(),
                produced: report.produced,
                failed,
                total,
                first_error,
            }),
        }
    }
}

fn kind_name(r: &GeneratedRecord) -> String {
    serde_json::to_value(r.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", r.kind))
}

/// A generated record as a Kafka message with the pipeline's headers.
pub fn to_message(r: GeneratedRecord, topic: &str, producer: &str) -> OutMessage {
    let content_type: &[u8] = if r.value.trim_start().starts_with('{') {
        b"application/json"
    } else {
        b"text/plain"
    };
    let mut headers = vec![
        ("log-format".to_string(), r.log_format.as_bytes().to_vec()),
        ("content-type".to_string(), content_type.to_vec()),
        ("producer".to_string(), producer.as_bytes().to_vec()),
    ];
    if let Some(t) = r.trace_id {
        headers.push(("trace-id".to_string(), t.into_bytes()));
    }
    // An access-log line does not name the service it was served by: say it
    // in a header (ingest uses it when the format carries no service).
    if r.kind == logpipe_generator::Kind::WebAccess {
        headers.push(("service".to_string(), r.key.clone().into_bytes()));
    }
    OutMessage {
        topic: topic.to_string(),
        key: Some(r.key.into_bytes()),
        payload: Some(r.value.into_bytes()),
        headers,
    }
}

/// The Lambda handler: schedule payload in, report out.
pub async fn handle(
    producer: &Producer,
    event: LambdaEvent<serde_json::Value>,
) -> Result<ProduceReport, ProduceError> {
    let input = parse_input(&event.payload)?;
    producer.run(input, Utc::now()).await
}
