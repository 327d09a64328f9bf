//! Publishing with per-message delivery reports.
//!
//! The producer is created once per Lambda sandbox (at init), is idempotent
//! with `acks=all`, and every call waits for the broker to acknowledge each
//! message — nothing is left in a queue when the sandbox freezes.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use logpipe_secrets::SecretsCache;
use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::statistics::Statistics;

use crate::auth::AuthContext;
use crate::client::{auth_context, read_secret};
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
    ProducerFenced,
    Config,
    Other,
}

/// Why a message was not published.
///
/// Transient or permanent: [`PublishError::is_transient`] is the one answer
/// for publishing. Only [`PublishError::TooLarge`] is permanent (the broker
/// will never take that message); every other kind is transient — an
/// unreachable broker comes back, an operator fixes credentials or creates
/// the topic, and a fenced producer is replaced.
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
    /// The broker no longer accepts this producer's idempotence state: it
    /// was fenced, its producer id or epoch is unknown (a broker that
    /// restarted empty, producer state expired while a sandbox was frozen),
    /// its sequence numbers are out of step, or librdkafka raised a fatal
    /// error. Every later send on that producer fails the same way; a new
    /// producer succeeds, so `publish_all` rebuilds it and sends again.
    #[error("Kafka producer fenced ({servers}) while publishing to {topic}: {detail}")]
    ProducerFenced {
        servers: String,
        topic: String,
        detail: String,
    },
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
            PublishError::ProducerFenced { .. } => PublishErrorKind::ProducerFenced,
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

    /// The error for a failed send or delivery.
    pub fn classify(servers: &str, topic: &str, err: &KafkaError) -> Self {
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
            Some(code) if producer_state_lost(code) => PublishError::ProducerFenced {
                servers,
                topic,
                detail,
            },
            _ => PublishError::Other { topic, detail },
        }
    }

    /// The error for a message that failed on a dead producer: librdkafka
    /// declared it dead (`fatal_error()`), or its [`WatchState`] showed the
    /// broker refusing it and the call purged it. Such a producer purges its
    /// queue (`PurgeQueue`, `PurgeInflight`) and fails the rest, so a timeout
    /// or an unexplained failure is the dead producer's doing and a new
    /// producer can send the message. Errors with a cause of their own keep it.
    fn on_dead_producer(self, servers: &str, code: RDKafkaErrorCode, reason: &str) -> Self {
        let (topic, detail) = match self {
            PublishError::BrokerUnreachable { topic, detail, .. }
            | PublishError::Other { topic, detail } => (topic, detail),
            PublishError::Config(detail) => (String::new(), detail),
            e => return e,
        };
        PublishError::ProducerFenced {
            servers: servers.to_string(),
            topic,
            detail: format!("{detail}; producer fatal error {code:?}: {reason}"),
        }
    }
}

/// Error codes that mean the broker no longer accepts this producer's
/// idempotent (or transactional) state, so every later send on the same
/// producer fails too.
fn producer_state_lost(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::ProducerFenced
            | C::InvalidProducerEpoch
            | C::UnknownProducerId
            | C::OutOfOrderSequenceNumber
            | C::InvalidProducerIdMapping
            | C::InvalidTransactionalState
            | C::Fatal
            | C::Fenced
            | C::GaplessGuarantee
            | C::Inconsistent
    )
}

/// Where a message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// How many times one `publish_all` call may replace a fenced producer and
/// send the fenced messages again. One covers a broker that forgot the
/// producer id; the second covers a new producer that met the same broker
/// before it settled (or another call's rebuild racing this one). A producer
/// fenced beyond that is left to the next call, so a broker that keeps
/// refusing costs this invocation a few round trips, not its timeout.
pub const MAX_REBUILDS_PER_CALL: usize = 2;

/// A producer whose epoch moves this many times within one call while a
/// broker is up is one the broker keeps refusing (see [`Watch`]).
const REFUSED_EPOCH_BUMPS: u64 = 5;

/// How often librdkafka reports statistics (the producer epoch, broker
/// states) to the [`Watch`], and how often a call looks at them.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// librdkafka's `reconnect.backoff.ms` for the functions' producers (its
/// default: 100). librdkafka also spaces its connects to a random broker,
/// while none is up, by half of it (at least 11 ms); since 2.10 the
/// bootstrap connection is dropped once Metadata names the brokers, and the
/// connect to the named broker waits out that spacing: with the default, a
/// cold start's first metadata request (the init topic check) waited ~50 ms
/// for it. 20 ms brings the wait to the 11 ms floor; reconnects after a
/// broker loss still back off exponentially up to `reconnect.backoff.max.ms`.
pub const RECONNECT_BACKOFF_MS: u32 = 20;

/// What the producer's statistics say about its idempotence state.
///
/// A broker that answers `UNKNOWN_PRODUCER_ID` (one that restarted empty,
/// like Tansu's memory engine, or expired the producer's state) makes
/// librdkafka bump its own epoch and send again, in a loop: no delivery
/// report says so, every message just times out in the end, and the
/// producer never recovers. The loop shows as an epoch that keeps moving
/// while a broker is up; a call that sees it purges the producer and
/// treats what was purged as fenced (rebuilt and sent again).
#[derive(Default)]
struct WatchState {
    /// Epoch changes seen so far (the sum of the increments).
    bumps: AtomicU64,
    last_epoch: AtomicI64,
    broker_up: AtomicBool,
    /// Set once a call concluded the broker refuses this producer.
    refused: AtomicBool,
}

/// The producer's context: the [`WatchState`] it feeds, and the
/// [`AuthContext`] that signs MSK IAM tokens (when IAM is configured).
#[derive(Clone)]
struct Watch {
    state: Arc<WatchState>,
    auth: AuthContext,
}

impl ClientContext for Watch {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = AuthContext::ENABLE_REFRESH_OAUTH_TOKEN;

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.auth.generate_oauth_token(oauthbearer_config)
    }

    fn stats(&self, statistics: Statistics) {
        let state = &self.state;
        if let Some(eos) = statistics.eos {
            let last = state.last_epoch.swap(eos.producer_epoch, Ordering::Relaxed);
            // -1 until a producer id is assigned; a wrap counts as one.
            if last >= 0 && eos.producer_epoch != last {
                let moved = (eos.producer_epoch - last).max(1) as u64;
                state.bumps.fetch_add(moved, Ordering::Relaxed);
            }
        }
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        state.broker_up.store(up, Ordering::Relaxed);
    }
}

type Inner = FutureProducer<Watch>;

/// The current producer, its generation (a rebuild bumps it, so
/// concurrent calls that saw the same dead producer replace it once) and
/// its watch.
#[derive(Clone)]
struct Current {
    generation: u64,
    producer: Inner,
    watch: Arc<WatchState>,
}

pub struct Publisher {
    settings: KafkaSettings,
    secrets: Option<Arc<SecretsCache>>,
    /// Kept across rebuilds (the IAM token source caches credentials).
    auth: AuthContext,
    message_timeout: Duration,
    current: RwLock<Current>,
}

/// A message not yet sent (its builder) or to be sent again (as built).
enum Pending<F> {
    Build(F),
    Built(OutMessage),
}

/// One send's outcome; a failed message comes back when sending it again
/// could succeed.
struct Attempt {
    result: Result<Delivered, PublishError>,
    returned: Option<OutMessage>,
}

impl Publisher {
    /// Builds the producer (reading the SASL secret when one is configured,
    /// checking the AWS credentials in MSK IAM mode). `message_timeout`
    /// bounds how long a message may wait for the broker; keep it well
    /// under the function timeout.
    pub async fn new(
        settings: KafkaSettings,
        secrets: Option<Arc<SecretsCache>>,
        message_timeout: Duration,
    ) -> Result<Self, PublishError> {
        let auth = auth_context(&settings)
            .await
            .map_err(|e| PublishError::Config(e.to_string()))?;
        let (producer, watch) =
            build_producer(&settings, &auth, secrets.as_deref(), message_timeout, false).await?;
        Ok(Self {
            settings,
            secrets,
            auth,
            message_timeout,
            current: RwLock::new(Current {
                generation: 0,
                producer,
                watch,
            }),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.settings.bootstrap_servers
    }

    /// How many times the producer has been replaced since [`new`](Self::new).
    pub fn rebuilds(&self) -> u64 {
        self.current().generation
    }

    fn current(&self) -> Current {
        // FutureProducer is a cheap handle (Arc inside); a poisoned lock only
        // means a panic elsewhere while swapping, and the old value is fine.
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn producer(&self) -> Inner {
        self.current().producer
    }

    /// Publishes every message concurrently and waits for each delivery.
    /// Results are in the order of `messages`.
    ///
    /// Messages are given as builders, called one at a time just before the
    /// message is queued and dropped as soon as librdkafka has copied it, so
    /// a large batch never sits in memory twice.
    ///
    /// A message that fails because the producer was fenced
    /// ([`PublishError::ProducerFenced`]: a fenced or lost producer id or
    /// epoch, a sequence desync, a fatal error, or a broker that keeps
    /// refusing the producer, which is then purged rather than left to time
    /// out) is sent again on a new producer
    /// within this call, at most [`MAX_REBUILDS_PER_CALL`] times; librdkafka
    /// hands the failed message back with its delivery report, so nothing is
    /// kept for that. A fenced message may have reached the log already, so
    /// the resend can duplicate it (at least once; consumers dedupe by id).
    /// Messages that failed otherwise are not sent again here.
    pub async fn publish_all<F>(&self, messages: Vec<F>) -> Vec<Result<Delivered, PublishError>>
    where
        F: FnOnce() -> OutMessage,
    {
        let servers = self.settings.bootstrap_servers.as_str();
        let mut results: Vec<Option<Result<Delivered, PublishError>>> =
            std::iter::repeat_with(|| None)
                .take(messages.len())
                .collect();
        let mut pending: Vec<(usize, Pending<F>)> = messages
            .into_iter()
            .map(Pending::Build)
            .enumerate()
            .collect();
        let mut rebuilds = 0;
        while !pending.is_empty() {
            let Current {
                generation,
                producer,
                watch,
            } = self.current();
            let sends = pending.into_iter().map(|(i, message)| {
                let producer = &producer;
                async move { (i, send(producer, servers, message).await) }
            });
            let attempts = watched(&producer, &watch, join_all(sends)).await;
            let fatal = producer.client().fatal_error().or_else(|| {
                watch.refused.load(Ordering::Relaxed).then(|| {
                    (
                        RDKafkaErrorCode::UnknownProducerId,
                        "the broker keeps refusing the producer id (its epoch keeps moving); purged"
                            .to_string(),
                    )
                })
            });
            if let Some((code, reason)) = &fatal {
                tracing::warn!(?code, %reason, "Kafka producer is dead");
            }
            let may_resend = rebuilds < MAX_REBUILDS_PER_CALL;
            pending = Vec::new();
            for (i, attempt) in attempts {
                let result = match (attempt.result, &fatal) {
                    (Err(e), Some((code, reason))) => {
                        Err(e.on_dead_producer(servers, *code, reason))
                    }
                    (r, _) => r,
                };
                match (result, attempt.returned) {
                    (Err(e @ PublishError::ProducerFenced { .. }), Some(m)) if may_resend => {
                        results[i] = Some(Err(e));
                        pending.push((i, Pending::Built(m)));
                    }
                    (r, _) => results[i] = Some(r),
                }
            }
            drop(producer);
            if pending.is_empty() {
                break;
            }
            rebuilds += 1;
            tracing::warn!(
                messages = pending.len(),
                rebuild = rebuilds,
                "Kafka producer fenced (producer id or epoch no longer valid on the broker); sending again on a new producer"
            );
            if !self.rebuild_from(generation, false).await {
                // No new producer: the fenced results stand.
                break;
            }
        }
        let results: Vec<Result<Delivered, PublishError>> = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(PublishError::Other {
                        topic: String::new(),
                        detail: "message was not sent".into(),
                    })
                })
            })
            .collect();
        let auth_failed = results
            .iter()
            .any(|r| matches!(r, Err(PublishError::AuthFailed { .. })));
        let topic_missing = results
            .iter()
            .any(|r| matches!(r, Err(PublishError::TopicMissing { .. })));
        if auth_failed || topic_missing {
            // A fresh producer re-reads rotated credentials and forgets
            // librdkafka's cached "unknown topic", so the retry can succeed as
            // soon as an operator has fixed things. (A producer still fenced
            // here is replaced by the next call, which sees it fenced.)
            self.rebuild(auth_failed).await;
        }
        results
    }

    /// Replaces the producer, re-reading the secret when asked.
    pub async fn rebuild(&self, refresh_secret: bool) {
        let generation = self.current().generation;
        self.rebuild_from(generation, refresh_secret).await;
    }

    /// Replaces the producer of `generation`, unless another call already
    /// has. False when no new producer could be built.
    async fn rebuild_from(&self, generation: u64, refresh_secret: bool) -> bool {
        if self.current().generation != generation {
            return true;
        }
        let refresh_secret =
            refresh_secret && matches!(self.settings.credentials, SaslCredentials::Secret { .. });
        match build_producer(
            &self.settings,
            &self.auth,
            self.secrets.as_deref(),
            self.message_timeout,
            refresh_secret,
        )
        .await
        {
            Ok((producer, watch)) => {
                let mut guard = match self.current.write() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if guard.generation == generation {
                    *guard = Current {
                        generation: generation + 1,
                        producer,
                        watch,
                    };
                    tracing::warn!(
                        refresh_secret,
                        "rebuilt the Kafka producer after a failed publish"
                    );
                }
                true
            }
            Err(error) => {
                tracing::error!(%error, "could not rebuild the Kafka producer");
                false
            }
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

/// Waits for `deliveries`; meanwhile, when the producer's epoch keeps
/// moving while a broker is up (see [`WatchState`]), purges it so that the
/// waiting messages fail now instead of at their timeout, and marks it
/// refused.
async fn watched<T>(
    producer: &Inner,
    watch: &WatchState,
    deliveries: impl std::future::Future<Output = T>,
) -> T {
    let start = watch.bumps.load(Ordering::Relaxed);
    let refused = async {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let bumps = watch.bumps.load(Ordering::Relaxed) - start;
            if watch.refused.load(Ordering::Relaxed)
                || (bumps >= REFUSED_EPOCH_BUMPS && watch.broker_up.load(Ordering::Relaxed))
            {
                break;
            }
        }
    };
    tokio::pin!(deliveries);
    tokio::select! {
        done = &mut deliveries => return done,
        () = refused => {}
    }
    watch.refused.store(true, Ordering::Relaxed);
    producer.purge(PurgeConfig::default().queue().inflight());
    deliveries.await
}

/// Queues one message (waiting while librdkafka's queue is full) and waits
/// for its delivery report.
async fn send<F>(producer: &Inner, servers: &str, message: Pending<F>) -> Attempt
where
    F: FnOnce() -> OutMessage,
{
    let m = match message {
        Pending::Build(build) => build(),
        Pending::Built(m) => m,
    };
    let queued = loop {
        let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
        for (name, value) in &m.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&m.topic).headers(headers);
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
    let delivery = match queued {
        Ok(delivery) => delivery,
        Err(e) => {
            // Not queued: the message is still ours to send again.
            let result = Err(PublishError::classify(servers, &m.topic, &e));
            return Attempt {
                result,
                returned: Some(m),
            };
        }
    };
    // librdkafka has its own copy now (and returns it on failure).
    let topic = m.topic.clone();
    drop(m);
    match delivery.await {
        Ok(Ok(d)) => Attempt {
            result: Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            returned: None,
        },
        Ok(Err((e, failed))) => Attempt {
            result: Err(PublishError::classify(servers, &topic, &e)),
            returned: Some(out_message(&failed)),
        },
        Err(_cancelled) => Attempt {
            result: Err(PublishError::Other {
                topic,
                detail: "the producer was dropped before delivery".into(),
            }),
            returned: None,
        },
    }
}

/// The message a failed delivery report carries, as it was given.
fn out_message(failed: &OwnedMessage) -> OutMessage {
    OutMessage {
        topic: failed.topic().to_string(),
        key: failed.key().map(<[u8]>::to_vec),
        payload: failed.payload().map(<[u8]>::to_vec),
        headers: failed
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

async fn build_producer(
    settings: &KafkaSettings,
    auth: &AuthContext,
    secrets: Option<&SecretsCache>,
    message_timeout: Duration,
    refresh_secret: bool,
) -> Result<(Inner, Arc<WatchState>), PublishError> {
    let secret = read_secret(settings, secrets, refresh_secret)
        .await
        .map_err(|e| PublishError::Config(e.to_string()))?;
    let mut config = settings
        .client_config(secret.as_ref())
        .map_err(|e| PublishError::Config(e.to_string()))?;
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", settings.compression.as_str())
        .set("linger.ms", settings.linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "100000")
        .set(
            "queue.buffering.max.kbytes",
            settings.queue_max_kbytes.to_string(),
        )
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        )
        // Do not wait the default 30 s for a topic that does not exist.
        .set("topic.metadata.propagation.max.ms", "5000")
        .set("reconnect.backoff.ms", RECONNECT_BACKOFF_MS.to_string())
        .set(
            "statistics.interval.ms",
            WATCH_INTERVAL.as_millis().to_string(),
        );
    let watch = Arc::new(WatchState {
        last_epoch: AtomicI64::new(-1),
        ..WatchState::default()
    });
    let producer: Inner = config
        .create_with_context(Watch {
            state: watch.clone(),
            auth: auth.clone(),
        })
        .map_err(|e| PublishError::Config(e.to_string()))?;
    // The first token now, not when the polling thread gets to it.
    auth.prime_async(producer.client())
        .await
        .map_err(|e| PublishError::Config(e.to_string()))?;
    Ok((producer, watch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn delivery_error(code: RDKafkaErrorCode) -> PublishError {
        let err = KafkaError::MessageProduction(code);
        PublishError::classify("b:9092", "alerts", &err)
    }

    #[test]
    fn lost_producer_state_is_a_fenced_producer_and_transient() {
        use RDKafkaErrorCode as C;
        for code in [
            C::ProducerFenced,
            C::InvalidProducerEpoch,
            C::UnknownProducerId,
            C::OutOfOrderSequenceNumber,
            C::InvalidProducerIdMapping,
            C::InvalidTransactionalState,
            C::Fatal,
            C::Fenced,
            C::GaplessGuarantee,
        ] {
            let e = delivery_error(code);
            assert_eq!(e.kind(), PublishErrorKind::ProducerFenced, "{code:?}: {e}");
            assert!(e.is_transient(), "{code:?}");
            assert!(e.to_string().contains("alerts"), "{e}");
        }
    }

    #[test]
    fn other_delivery_errors_keep_their_kind() {
        use RDKafkaErrorCode as C;
        let cases = [
            (
                C::MessageTimedOut,
                PublishErrorKind::BrokerUnreachable,
                true,
            ),
            (C::AllBrokersDown, PublishErrorKind::BrokerUnreachable, true),
            (
                C::SaslAuthenticationFailed,
                PublishErrorKind::AuthFailed,
                true,
            ),
            (
                C::UnknownTopicOrPartition,
                PublishErrorKind::TopicMissing,
                true,
            ),
            (C::MessageSizeTooLarge, PublishErrorKind::TooLarge, false),
            (C::PurgeQueue, PublishErrorKind::Other, true),
            (C::DuplicateSequenceNumber, PublishErrorKind::Other, true),
        ];
        for (code, kind, transient) in cases {
            let e = delivery_error(code);
            assert_eq!(e.kind(), kind, "{code:?}: {e}");
            assert_eq!(e.is_transient(), transient, "{code:?}");
        }
    }

    #[test]
    fn a_dead_producer_turns_its_failures_into_fenced_ones() {
        use RDKafkaErrorCode as C;
        let dead = |e: PublishError| e.on_dead_producer("b:9092", C::ProducerFenced, "fenced");
        // Purged from the dead producer's queue, or timed out in it.
        for code in [C::PurgeQueue, C::MessageTimedOut] {
            let e = dead(delivery_error(code));
            assert_eq!(e.kind(), PublishErrorKind::ProducerFenced, "{code:?}");
            assert!(e.to_string().contains("fenced"), "{e}");
        }
        // Causes of their own stay what they are.
        for code in [
            C::MessageSizeTooLarge,
            C::UnknownTopicOrPartition,
            C::SaslAuthenticationFailed,
        ] {
            let before = delivery_error(code);
            assert_eq!(dead(before.clone()), before, "{code:?}");
        }
    }

    #[test]
    fn a_failed_delivery_gives_back_the_message_as_sent() {
        let sent = OutMessage {
            topic: "alerts".into(),
            key: Some(b"st-001".to_vec()),
            payload: Some(b"{\"id\":1}".to_vec()),
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("message-id".into(), b"a-1".to_vec()),
                ("empty".into(), Vec::new()),
            ],
        };
        let mut headers = OwnedHeaders::new();
        for (k, v) in &sent.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let failed = OwnedMessage::new(
            sent.payload.clone(),
            sent.key.clone(),
            sent.topic.clone(),
            Timestamp::NotAvailable,
            0,
            -1,
            Some(headers),
        );
        assert_eq!(out_message(&failed), sent);
        let bare = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, -1, None);
        assert_eq!(
            out_message(&bare),
            OutMessage {
                topic: "t".into(),
                key: None,
                payload: None,
                headers: vec![],
            }
        );
    }
}
