//! Helpers shared by the integration tests: a real broker, a real
//! PostgreSQL, and the ingest handler invoked as Lambda would.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ingest::{IngestConfig, IngestResponse, Ingestor, RetryBatch};
use lambda_runtime::{Context as LambdaContext, LambdaEvent};
use logpipe_kafka::event::{EventRecord, EventSource, KafkaEventPayload, build_event};
use logpipe_kafka::rdkafka::ClientConfig;
use logpipe_kafka::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use logpipe_kafka::rdkafka::message::{Header, OwnedHeaders};
use logpipe_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use logpipe_kafka::{KafkaSettings, Publisher};
use logpipe_postgres::{Database, DbSettings};

pub use logpipe_devstack::{LocalStack, StackOptions};

/// A record to produce.
#[derive(Debug, Clone)]
pub struct Produce {
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Produce {
    pub fn text(key: &str, value: &str) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        }
    }

    pub fn with_format(mut self, format: &str) -> Self {
        self.headers
            .push(("log-format".into(), format.as_bytes().to_vec()));
        self
    }
}

/// Produces the records, in order, and waits for every delivery.
pub async fn produce(bootstrap: &str, topic: &str, records: &[Produce]) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_str());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
    }
    Ok(())
}

/// Consumes `count` records of `topic` with a real consumer group, commits
/// them, and returns them as they would appear in a Lambda event.
pub async fn consume(
    bootstrap: &str,
    topic: &str,
    group: &str,
    count: usize,
) -> Result<Vec<EventRecord>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut out = Vec::with_capacity(count);
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count {
        if Instant::now() > deadline {
            bail!(
                "consumed {} of {count} records from {topic} within 60 s",
                out.len()
            );
        }
        match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            Ok(Ok(m)) => {
                out.push(EventRecord::from_message(&m));
                consumer.commit_message(&m, CommitMode::Sync)?;
            }
            Ok(Err(e)) => bail!("consume failed: {e}"),
            Err(_) => continue,
        }
    }
    Ok(out)
}

/// Headers of a consumed record, by name.
pub fn header<'a>(r: &'a EventRecord, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

pub fn event(records: &[EventRecord], source: EventSource, bootstrap: &str) -> serde_json::Value {
    build_event(source, bootstrap, None, records)
}

/// Builds the handler's clients against the stack, as the functions'
/// DML-only runtime login (as in AWS).
pub async fn ingestor(stack: &LocalStack, config: IngestConfig) -> Result<Ingestor> {
    let db = Database::new(
        DbSettings::from_url(&stack.runtime_url(), "ingest-test"),
        None,
    )?;
    let publisher = Publisher::new(
        KafkaSettings::plaintext(&stack.bootstrap_servers(), "ingest-test"),
        None,
        config.message_timeout,
    )
    .await?;
    Ok(Ingestor::new(config, db, publisher))
}

/// Invokes the handler exactly as the Lambda runtime would, from JSON.
pub async fn invoke(
    ingestor: &Ingestor,
    event: &serde_json::Value,
) -> Result<IngestResponse, RetryBatch> {
    let bytes = serde_json::to_vec(event).expect("event serializes");
    let payload: KafkaEventPayload = serde_json::from_slice(&bytes).expect("event deserializes");
    ingest::handle(
        ingestor,
        LambdaEvent::new(payload, LambdaContext::default()),
    )
    .await
}

/// A plain connection for assertions.
pub async fn sql(url: &str) -> Result<logpipe_postgres::tokio_postgres::Client> {
    let (client, conn) =
        logpipe_postgres::tokio_postgres::connect(url, logpipe_postgres::tokio_postgres::NoTls)
            .await
            .context("connecting for assertions")?;
    tokio::spawn(conn);
    Ok(client)
}

pub async fn count(client: &logpipe_postgres::tokio_postgres::Client, query: &str) -> i64 {
    client
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get(0)
}

/// One valid line of every supported format, with the rows each makes.
pub fn every_format() -> Vec<(Produce, i64)> {
    vec![
        (Produce::text("checkout", r#"{"timestamp":"2026-11-22T10:00:00Z","level":"error","service":"checkout","message":"payment declined","trace_id":"abc123","duration_ms":87}"#), 1),
        (Produce::text("web-1", r#"203.0.113.9 - - [22/Nov/2026:10:00:01 +0000] "GET /api/orders HTTP/1.1" 200 512"#), 1),
        (Produce::text("web-1", r#"203.0.113.10 - alice [22/Nov/2026:10:00:02 +0000] "POST /api/pay HTTP/1.1" 502 17 "https://shop.example/" "Mozilla/5.0" 0.734"#).with_format("clf"), 1),
        (Produce::text("splunk", r#"{"time":1795860000.5,"host":"app-3","source":"billing","sourcetype":"_json","index":"main","event":{"message":"invoice sent","level":"info"}}"#), 1),
        (Produce::text("splunk", r#"2026-11-22T10:00:03Z host=app-4 source=auth level=WARN msg="token expired" user=bob duration_ms=12"#).with_format("splunk-kv"), 1),
        (Produce::text("sap-PRD", "2026-11-22 10:00:04 PRD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed (reason=1, type=A)"), 1),
        (Produce::text("st-042", r#"{"sensor_id":"st-042","timestamp":"2026-11-22T10:00:05Z","temperature":41.5,"humidity":55,"wind_speed":12.3,"pressure":1013.2}"#), 1),
        (Produce::text("api-pull", r#"{"source":"weather-api","timestamp":"2026-11-22T10:00:06Z","batch_size":3,"data":[{"sensor_id":"st-1","temperature":20.1},{"sensor_id":"st-2","temperature":-3.5},{"sensor_id":"st-3","humidity":95}]}"#).with_format("batch"), 3),
        (Produce::text("mymachine", "<34>1 2026-11-22T10:00:07.003Z mymachine.example.com su - ID47 [exampleSDID@32473 iut=\"3\"] 'su root' failed for lonvick"), 1),
        (Produce::text("mymachine", "<13>Nov 22 10:00:08 host1 sshd[4242]: Accepted publickey for deploy"), 1),
        (Produce::text("misc", "just some text that matches no format, with ünïcödé"), 1),
    ]
}

/// Records that can never be stored, each with the dead-letter class it must get.
pub fn poison() -> Vec<(Produce, &'static str)> {
    vec![
        (
            Produce {
                key: Some("bad".into()),
                value: Some(vec![0xff, 0xfe, 0x00, 0x41]),
                headers: vec![],
            },
            "invalid_utf8",
        ),
        (
            Produce::text("bad", r#"{"level":"error","mess"#),
            "invalid_json",
        ),
        (
            Produce::text("bad", r#"{"sensor_id":"st-9","temperature":"hot"}"#),
            "schema_violation",
        ),
        (
            Produce {
                key: Some("bad".into()),
                value: None,
                headers: vec![],
            },
            "tombstone",
        ),
        (
            Produce::text("bad", "some text").with_format("cobol-dump"),
            "unknown_format",
        ),
        (Produce::text("bad", &"x".repeat(300_000)), "oversized"),
    ]
}

/// The ingest handler as the target of a local event source mapping: the
/// event goes through JSON exactly as the Lambda runtime would hand it over,
/// a `RetryBatch` becomes a function error.
pub fn ingest_target(ingestor: std::sync::Arc<Ingestor>) -> impl logpipe_esm::Invoke {
    move |event: serde_json::Value| {
        let ingestor = ingestor.clone();
        async move {
            let payload: KafkaEventPayload = serde_json::from_value(event).map_err(|e| {
                logpipe_esm::InvokeError::function("DeserializeError", e.to_string())
            })?;
            match ingest::handle(
                &ingestor,
                LambdaEvent::new(payload, LambdaContext::default()),
            )
            .await
            {
                Ok(response) => serde_json::to_value(&response).map_err(|e| {
                    logpipe_esm::InvokeError::function("SerializeError", e.to_string())
                }),
                Err(retry) => Err(logpipe_esm::InvokeError::function(
                    "RetryBatch",
                    retry.to_string(),
                )),
            }
        }
    }
}

/// A consumer kept open across the steps of a test: joining a group takes
/// seconds, and a consumer that keeps running never resumes inside a
/// producer batch (which Tansu's memory engine mishandles: it skips the
/// rest of that batch).
pub struct Tap {
    consumer: StreamConsumer,
    topic: String,
}

impl Tap {
    pub fn new(bootstrap: &str, topic: &str, group: &str) -> Tap {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .create()
            .expect("consumer config is valid");
        consumer.subscribe(&[topic]).expect("subscribe");
        Tap {
            consumer,
            topic: topic.to_string(),
        }
    }

    /// Exactly `n` records (panics after 240 s without them).
    pub async fn take(&self, n: usize) -> Vec<EventRecord> {
        let mut out = Vec::with_capacity(n);
        let deadline = Instant::now() + Duration::from_secs(240);
        while out.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records arrived on {}",
                out.len(),
                self.topic
            );
            if let Ok(Ok(m)) =
                tokio::time::timeout(Duration::from_secs(2), self.consumer.recv()).await
            {
                out.push(EventRecord::from_message(&m));
            }
        }
        out
    }

    /// Whatever arrives until the topic stays quiet for `quiet`.
    pub async fn rest(&self, quiet: Duration) -> Vec<EventRecord> {
        let mut out = Vec::new();
        while let Ok(Ok(m)) = tokio::time::timeout(quiet, self.consumer.recv()).await {
            out.push(EventRecord::from_message(&m));
        }
        out
    }
}

/// The JSON values of consumed records, as `T`.
pub fn parse_values<T: serde::de::DeserializeOwned>(records: &[EventRecord]) -> Vec<T> {
    records
        .iter()
        .map(|r| {
            let value = r.value.as_deref().expect("record has a value");
            serde_json::from_slice(value).expect("value parses")
        })
        .collect()
}

/// Runs the produce function once (`count` generated records of the default
/// mix with `seed`, event times from `start`) onto `log-ingestion` and the
/// ingest function over what it produced, asserting every record stored.
/// Returns how many were stored. The dashboards' tests start from this.
pub async fn produce_and_ingest(
    stack: &LocalStack,
    client_id: &str,
    count: usize,
    seed: u64,
    start: chrono::DateTime<chrono::Utc>,
) -> usize {
    let bootstrap = stack.bootstrap_servers();
    let config = produce::ProduceConfig {
        span: Duration::from_secs(60),
        message_timeout: Duration::from_secs(10),
        ..produce::ProduceConfig::default()
    };
    let publisher = Publisher::new(
        KafkaSettings::plaintext(&bootstrap, client_id),
        None,
        config.message_timeout,
    )
    .await
    .expect("producer");
    let producer = produce::Producer::new(config, publisher);
    let tap = Tap::new(&bootstrap, "log-ingestion", &format!("{client_id}-ingest"));
    let input = serde_json::json!({"count": count, "seed": seed});
    let report = producer
        .run(produce::parse_input(&input).expect("valid input"), start)
        .await
        .expect("produce run");
    let raw = tap.take(report.produced).await;
    let ingestor = ingestor(stack, IngestConfig::default())
        .await
        .expect("ingest clients");
    let out = invoke(
        &ingestor,
        &event(&raw, EventSource::SelfManaged, &bootstrap),
    )
    .await
    .expect("ingest succeeds");
    assert_eq!(out.summary.records_stored, raw.len(), "{:?}", out.summary);
    raw.len()
}

/// The most frequent word of more than four letters in stored messages (a
/// search term that finds rows).
pub async fn frequent_word(db: &logpipe_postgres::tokio_postgres::Client) -> String {
    db.query_one(
        "SELECT w FROM logs, regexp_split_to_table(message, '[^a-zA-Z]+') AS w \
         WHERE length(w) > 4 GROUP BY w ORDER BY count(*) DESC, w LIMIT 1",
        &[],
    )
    .await
    .expect("a word")
    .get(0)
}

/// The names of `logs`' partitions.
pub async fn logs_partitions(
    client: &logpipe_postgres::tokio_postgres::Client,
) -> std::collections::BTreeSet<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'logs'::regclass",
            &[],
        )
        .await
        .expect("partitions")
        .iter()
        .map(|r| r.get(0))
        .collect()
}
