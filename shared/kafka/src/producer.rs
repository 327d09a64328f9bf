//! Publishing with per-message delivery reports.
//!
//! The producer is created once per Lambda sandbox (at init), is idempotent
//! with `acks=all`, and every call waits for the broker to acknowledge each
//! message — nothing is left in a queue when the sandbox freezes.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use logpipe_secrets::{KafkaSecret, SecretsCache};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::settings::{KafkaSettings, SaslCredentials};

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishErrorKind {
    BrokerUnreachable,
    AuthFailed,
    TopicMissing,
    TooLarge,
    Config,
    Other,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishError {
    #[error("Kafka broker unreachable ({servers}) while publishing to {topic}: {detail}")]
    BrokerUnreachable {
        servers: String,
        topic: String,
        detail: String,
    },
    #[error("Kafka authentication failed ({servers}) while publishing to {topic}: {detail}")]
    AuthFailed {
        servers: String,
        topic: String,
        detail: String,
    },
    #[error(
        "Kafka topic {topic} is missing on {servers}: create it (make topics) or fix the topic name"
    )]
    TopicMissing { servers: String, topic: String },
    #[error("message for {topic} is larger than the broker accepts: {detail}")]
    TooLarge { topic: String, detail: String },
    #[error("Kafka client configuration failed: {0}")]
    Config(String),
    #[error("publishing to {topic} failed: {detail}")]
    Other { topic: String, detail: String },
}

impl PublishError {
    pub fn kind(&self) -> PublishErrorKind {
        match self {
            PublishError::BrokerUnreachable { .. } => PublishErrorKind::BrokerUnreachable,
            PublishError::AuthFailed { .. } => PublishErrorKind::AuthFailed,
            PublishError::TopicMissing { .. } => PublishErrorKind::TopicMissing,
            PublishError::TooLarge { .. } => PublishErrorKind::TooLarge,
            PublishError::Config(_) => PublishErrorKind::Config,
            PublishError::Other { .. } => PublishErrorKind::Other,
        }
    }

    /// Whether the same message may go through later. Only a message the
    /// broker will never accept is permanent; a missing topic or rejected
    /// credentials are fixed by an operator, after which the retry succeeds.
    pub fn is_transient(&self) -> bool {
        !matches!(self, PublishError::TooLarge { .. })
    }

    fn classify(servers: &str, topic: &str, err: &KafkaError) -> Self {
        let servers = servers.to_string();
        let topic = topic.to_string();
        let detail = err.to_string();
        use RDKafkaErrorCode as C;
        match err.rdkafka_error_code() {
            Some(
                C::MessageTimedOut
                | C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::NetworkException
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::Resolve,
            ) => PublishError::BrokerUnreachable {
                servers,
                topic,
                detail,
            },
            Some(
                C::Authentication
                | C::SaslAuthenticationFailed
                | C::ClusterAuthorizationFailed
                | C::TopicAuthorizationFailed
                | C::UnsupportedSASLMechanism
                | C::IllegalSASLState,
            ) => PublishError::AuthFailed {
                servers,
                topic,
                detail,
            },
            Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => {
                PublishError::TopicMissing { servers, topic }
            }
            Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => {
                PublishError::TooLarge { topic, detail }
            }
            _ => PublishError::Other { topic, detail },
        }
    }
}

/// Where a message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

pub struct Publisher {
    settings: KafkaSettings,
    secrets: Option<Arc<SecretsCache>>,
    message_timeout: Duration,
    producer: RwLock<FutureProducer>,
}

impl Publisher {
    /// Builds the producer (reading the SASL secret when one is configured).
    /// `message_timeout` bounds how long a message may wait for the broker;
    /// keep it well under the function timeout.
    pub async fn new(
        settings: KafkaSettings,
        secrets: Option<Arc<SecretsCache>>,
        message_timeout: Duration,
    ) -> Result<Self, PublishError> {
        let producer =
            build_producer(&settings, secrets.as_deref(), message_timeout, false).await?;
        Ok(Self {
            settings,
            secrets,
            message_timeout,
            producer: RwLock::new(producer),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.settings.bootstrap_servers
    }

    fn producer(&self) -> FutureProducer {
        // FutureProducer is a cheap handle (Arc inside); a poisoned lock only
        // means a panic elsewhere while swapping, and the old value is fine.
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Publishes every message concurrently and waits for each delivery.
    /// Results are in the order of `messages`.
    ///
    /// Messages are given as builders, called one at a time just before the
    /// message is queued and dropped as soon as librdkafka has copied it, so
    /// a large batch never sits in memory twice.
    pub async fn publish_all<F>(&self, messages: Vec<F>) -> Vec<Result<Delivered, PublishError>>
    where
        F: FnOnce() -> OutMessage,
    {
        let producer = self.producer();
        let servers = self.settings.bootstrap_servers.as_str();
        let sends = messages.into_iter().map(|build| {
            let producer = &producer;
            async move {
                let m = build();
                let topic = m.topic.clone();
                let delivery = loop {
                    let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
                    for (name, value) in &m.headers {
                        headers = headers.insert(Header {
                            key: name,
                            value: Some(value),
                        });
                    }
                    let mut record: FutureRecord<'_, [u8], [u8]> =
                        FutureRecord::to(&m.topic).headers(headers);
                    if let Some(k) = &m.key {
                        record = record.key(k.as_slice());
                    }
                    if let Some(p) = &m.payload {
                        record = record.payload(p.as_slice());
                    }
                    match producer.send_result(record) {
                        Ok(delivery) => break Ok(delivery),
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            // librdkafka's queue is full: let it drain.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err((e, _)) => break Err(e),
                    }
                };
                drop(m);
                match delivery {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(d)) => Ok(Delivered {
                            partition: d.partition,
                            offset: d.offset,
                        }),
                        Ok(Err((e, _))) => Err(PublishError::classify(servers, &topic, &e)),
                        Err(_cancelled) => Err(PublishError::Other {
                            topic,
                            detail: "the producer was dropped before delivery".into(),
                        }),
                    },
                    Err(e) => Err(PublishError::classify(servers, &topic, &e)),
                }
            }
        });
        let results = join_all(sends).await;
        let auth_failed = results
            .iter()
            .any(|r| matches!(r, Err(PublishError::AuthFailed { .. })));
        let topic_missing = results
            .iter()
            .any(|r| matches!(r, Err(PublishError::TopicMissing { .. })));
        // An idempotent producer that lost its producer id (a broker that
        // restarted empty, fenced epochs) is dead for good: every later send
        // fails. Only a new producer recovers.
        let fatal = producer.client().fatal_error();
        if let Some((code, reason)) = &fatal {
            tracing::warn!(?code, %reason, "Kafka producer hit a fatal error; building a new one");
        }
        if auth_failed || topic_missing || fatal.is_some() {
            // A fresh producer re-reads rotated credentials and forgets
            // librdkafka's cached "unknown topic", so the retry can succeed as
            // soon as an operator has fixed things.
            self.rebuild(auth_failed).await;
        }
        results
    }

    /// Replaces the producer, re-reading the secret when asked.
    pub async fn rebuild(&self, refresh_secret: bool) {
        let refresh_secret =
            refresh_secret && matches!(self.settings.credentials, SaslCredentials::Secret { .. });
        match build_producer(
            &self.settings,
            self.secrets.as_deref(),
            self.message_timeout,
            refresh_secret,
        )
        .await
        {
            Ok(p) => {
                tracing::warn!(
                    refresh_secret,
                    "rebuilt the Kafka producer after a failed publish"
                );
                match self.producer.write() {
                    Ok(mut guard) => *guard = p,
                    Err(poisoned) => *poisoned.into_inner() = p,
                }
            }
            Err(error) => tracing::error!(%error, "could not rebuild the Kafka producer"),
        }
    }

    /// Checks that the broker answers and the topics exist, with a specific
    /// error for each case. Used at init to log a clear message early.
    pub async fn check_topics(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<(), PublishError> {
        let producer = self.producer();
        let servers = self.settings.bootstrap_servers.clone();
        let wanted: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(None, timeout)
                .map_err(|e| PublishError::classify(&servers, "(metadata)", &e))?;
            for topic in &wanted {
                let found = metadata.topics().iter().any(|t| {
                    t.name() == topic && t.error().is_none() && !t.partitions().is_empty()
                });
                if !found {
                    return Err(PublishError::TopicMissing {
                        servers: servers.clone(),
                        topic: topic.clone(),
                    });
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| PublishError::Config(format!("metadata check panicked: {e}")))?
    }

    /// Waits for anything still queued (normally nothing: `publish_all` waits).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer().flush(timeout);
    }
}

async fn build_producer(
    settings: &KafkaSettings,
    secrets: Option<&SecretsCache>,
    message_timeout: Duration,
    refresh_secret: bool,
) -> Result<FutureProducer, PublishError> {
    let secret: Option<KafkaSecret> = match (&settings.credentials, secrets) {
        (SaslCredentials::Secret { arn }, Some(cache)) => Some(
            cache
                .get_json(arn, refresh_secret)
                .await
                .map_err(|e| PublishError::Config(e.to_string()))?,
        ),
        (SaslCredentials::Secret { arn }, None) => {
            return Err(PublishError::Config(format!(
                "KAFKA_SECRET_ARN={arn} is set but no Secrets Manager client was given"
            )));
        }
        _ => None,
    };
    let mut config = settings
        .client_config(secret.as_ref())
        .map_err(|e| PublishError::Config(e.to_string()))?;
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", env_or("KAFKA_COMPRESSION", "lz4"))
        .set("linger.ms", env_or("KAFKA_LINGER_MS", "5"))
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "100000")
        .set(
            "queue.buffering.max.kbytes",
            env_or("KAFKA_QUEUE_MAX_KBYTES", "65536"),
        )
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        )
        // Do not wait the default 30 s for a topic that does not exist.
        .set("topic.metadata.propagation.max.ms", "5000");
    config
        .create()
        .map_err(|e| PublishError::Config(e.to_string()))
}

/// A producer tuning knob from the environment.
fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}
