//! Hostile input through the real stack: a producer writes a corpus of
//! poison records (every dead-letter class ingest has) mixed with hundreds
//! of valid records of every format over all 6 partitions of
//! `log-ingestion`; the local ESM runner (small batches, many invocations)
//! feeds ingest, ingest feeds `log-processing`, a second mapping feeds
//! detect. Then every record is accounted for:
//!
//! - ingest: distinct records in `logs` + dead letters on
//!   `log-ingestion.dlq` = records produced, each poison record with its
//!   expected `dlq-error-class`, no record both stored and dead-lettered,
//!   exactly the expected rows;
//! - detect: processed + dead-lettered = records on `log-processing`;
//! - both groups committed the end of every partition (counted from what was
//!   produced/seen, not from Tansu's watermarks, which are unreliable);
//! - each forward is on `log-processing` once (distinct `record-id` headers = messages);
//! - every invocation returned (no panic, no function error).
//!
//! Records are produced one per producer request: a mapping that seeks
//! (records handed back for the row budget) must resume at a batch boundary,
//! since Tansu returns nothing for a fetch starting inside a batch.

// The detect handler's future nests deeply (its phases are async).
#![recursion_limit = "256"]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use detect::{DetectConfig, Detector};
use ingest::{IngestConfig, Ingestor, Limits};
use lambda_runtime::{Context as LambdaContext, LambdaEvent};
use logpipe_detect::window::WindowConfig;
use logpipe_esm::{InvokeError, MappingConfig, MappingHandle, StatsSnapshot, start_mapping};
use logpipe_kafka::event::{EventRecord, KafkaEventPayload};
use logpipe_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use logpipe_kafka::rdkafka::message::{Header, OwnedHeaders};
use logpipe_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use logpipe_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use logpipe_kafka::{KafkaSettings, Publisher};
use logpipe_postgres::{Database, DbSettings};
use logpipe_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(300);
const PARTITIONS: i32 = 6;
const MAX_ROWS_PER_RECORD: usize = 50;
const MAX_ROWS_PER_INVOCATION: usize = 30;
const MAX_RECORD_BYTES: usize = 256 * 1024;

/// What a corpus record must become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Stored as this many rows.
    Rows(i64),
    /// Dead-lettered with this class.
    Dead(&'static str),
}

struct Item {
    name: &'static str,
    record: Produce,
    expect: Expect,
}

fn item(name: &'static str, record: Produce, expect: Expect) -> Item {
    Item {
        name,
        record,
        expect,
    }
}

fn bytes(key: &str, value: &[u8]) -> Produce {
    Produce {
        key: Some(key.into()),
        value: Some(value.to_vec()),
        headers: vec![],
    }
}

fn with_header(mut p: Produce, name: &str, value: &[u8]) -> Produce {
    p.headers.push((name.into(), value.to_vec()));
    p
}

/// Letters and digits from a fixed xorshift: text pglz cannot compress, so
/// its index entry really is as long as the text.
fn incompressible(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

fn batch_envelope(elements: usize) -> String {
    let data: Vec<Value> = (0..elements)
        .map(|i| serde_json::json!({"sensor_id": format!("st-{i}"), "temperature": 20.0 + (i % 7) as f64}))
        .collect();
    serde_json::json!({"source": "edge", "timestamp": "2026-11-22T10:00:00Z",
        "batch_size": elements, "data": data})
    .to_string()
}

/// The poison records and the edge cases that must be stored.
fn hostile() -> Vec<Item> {
    use Expect::*;
    let ctrl_line: String = (0..200_000u32)
        .map(|i| char::from_u32(1 + i % 31).unwrap_or('\u{1}'))
        .collect();
    // A key=value line whose forward is far above MAX_FORWARD_BYTES (1 MB):
    // slimming cuts the message, then drops the attributes, until it fits;
    // the row in `logs` is whole.
    let unslimmable = format!(
        "2026-11-22T10:00:00Z host=h1 level=info msg={} a={} b={}",
        "\u{1}".repeat(125_000),
        "\u{2}".repeat(40_000),
        "\u{3}".repeat(40_000)
    );
    let deep = {
        let mut v = "1".to_string();
        for _ in 0..200 {
            v = format!("{{\"a\":{v}}}");
        }
        v
    };
    vec![
        item(
            "invalid utf-8",
            bytes("bad", &[0xff, 0xfe, 0x00, 0x41]),
            Dead("invalid_utf8"),
        ),
        item(
            "utf-8 surrogate bytes",
            bytes("bad", b"log \xed\xa0\x80 line"),
            Dead("invalid_utf8"),
        ),
        item(
            "truncated json",
            Produce::text("bad", r#"{"level":"error","mess"#).with_format("json"),
            Dead("invalid_json"),
        ),
        item(
            "truncated json, sniffed",
            Produce::text("bad", r#"{"level":"info","message":"x","#),
            Dead("invalid_json"),
        ),
        item(
            "json lone surrogate",
            Produce::text("bad", r#"{"message":"\ud800 alone"}"#),
            Dead("invalid_json"),
        ),
        item(
            "schema violation",
            Produce::text("st-9", r#"{"sensor_id":"st-9","temperature":"hot"}"#)
                .with_format("sensor"),
            Dead("schema_violation"),
        ),
        item(
            "json array",
            Produce::text("bad", "[1,2,3]"),
            Dead("schema_violation"),
        ),
        item(
            "tombstone",
            Produce {
                key: Some("gone".into()),
                value: None,
                headers: vec![],
            },
            Dead("tombstone"),
        ),
        item(
            "unknown log-format",
            Produce::text("bad", "some text").with_format("cobol-dump"),
            Dead("unknown_format"),
        ),
        item(
            "log-format not utf-8",
            with_header(
                Produce::text("bad", "some text"),
                "log-format",
                &[0xff, 0x00],
            ),
            Dead("unknown_format"),
        ),
        item(
            "oversized",
            Produce::text("big", &"x".repeat(MAX_RECORD_BYTES + 1)),
            Dead("oversized"),
        ),
        item(
            "nul byte",
            Produce::text("nul", "before\0after"),
            Dead("nul_character"),
        ),
        item(
            "nul escape",
            Produce::text("nul", r#"{"level":"info","message":"a\u0000b"}"#),
            Dead("nul_character"),
        ),
        item(
            "too many rows",
            Produce::text("edge", &batch_envelope(MAX_ROWS_PER_RECORD + 1)).with_format("batch"),
            Dead("too_many_rows"),
        ),
        item(
            "empty batch",
            Produce::text("edge", r#"{"source":"edge","data":[]}"#).with_format("batch"),
            Dead("empty_batch"),
        ),
        item(
            "batch in a batch",
            Produce::text(
                "edge",
                r#"{"source":"a","data":[{"source":"b","data":["x"]}]}"#,
            ),
            Dead("too_deep"),
        ),
        item(
            "not syslog",
            Produce::text("bad", "this is not syslog").with_format("syslog"),
            Dead("invalid_line"),
        ),
        item("empty value", bytes("empty", b""), Dead("empty_value")),
        item(
            "whitespace value",
            Produce::text("empty", " \n\t \u{feff} "),
            Dead("empty_value"),
        ),
        // Parsed fine, refused by PostgreSQL: a btree entry of
        // logs_service_time is at most 2704 bytes.
        item(
            "service too long for the index",
            Produce::text(
                "svc",
                &serde_json::json!({"level":"info","message":"m","service": incompressible(3000)})
                    .to_string(),
            ),
            Dead("db_rejected"),
        ),
        // One refused row among three: the record's other rows must go too.
        item(
            "batch with one service too long",
            Produce::text(
                "edge",
                &serde_json::json!({"source": "edge", "data": [
                    {"message": "first"},
                    {"message": "second", "service": incompressible(3000)},
                    {"message": "third"},
                ]})
                .to_string(),
            ),
            Dead("db_rejected"),
        ),
        // An access log has no service field, so the `service` header names
        // it; one with a NUL (PostgreSQL text cannot hold it) is ignored.
        item(
            "nul in the service header",
            with_header(
                Produce::text(
                    "web",
                    r#"203.0.113.9 - - [22/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 5"#,
                ),
                "service",
                b"we\0b",
            ),
            Rows(1),
        ),
        item(
            "forward far too large: slimmed in steps",
            Produce::text("kv", &unslimmable).with_format("splunk-kv"),
            Rows(1),
        ),
        // Stored, with corrections or slimmed forwards.
        item(
            "batch at the row limit",
            Produce::text("edge", &batch_envelope(MAX_ROWS_PER_RECORD)).with_format("batch"),
            Rows(MAX_ROWS_PER_RECORD as i64),
        ),
        item(
            "far-future event time",
            Produce::text(
                "t",
                r#"{"timestamp":"9999-01-01T00:00:00Z","level":"info","service":"clock","message":"from the future"}"#,
            ),
            Rows(1),
        ),
        item(
            "pre-1970 event time",
            Produce::text(
                "t",
                r#"{"timestamp":"1900-01-01T00:00:00Z","level":"info","service":"clock","message":"from the past"}"#,
            ),
            Rows(1),
        ),
        item(
            "negative epoch",
            Produce::text(
                "t",
                r#"{"timestamp":-86400,"level":"info","service":"clock","message":"before the epoch"}"#,
            ),
            Rows(1),
        ),
        item(
            "control characters, long line",
            Produce::text("ctrl", &ctrl_line),
            Rows(1),
        ),
        item(
            "very long line",
            Produce::text("long", &"word ".repeat(50_000)),
            Rows(1),
        ),
        // serde_json's recursion limit (128) is a parse error like any other.
        item(
            "json nested 200 deep",
            Produce::text("deep", &deep),
            Dead("invalid_json"),
        ),
        item(
            "unicode",
            Produce::text(
                "uni",
                "🦀 ẞtraße — עברית — ﷽ — e\u{301}\u{301}\u{301} — \u{202e}reversed\u{202c} — \u{ffff}\u{10ffff}",
            ),
            Rows(1),
        ),
        item(
            "unicode json",
            Produce::text(
                "uni",
                r#"{"level":"warn","service":"sërvïcé-ü","message":"\ud83e\udd80 \u202e \uffff","user":"zoë"}"#,
            ),
            Rows(1),
        ),
        item(
            "bom json",
            Produce::text("bom", "\u{feff}{\"level\":\"info\",\"message\":\"bom\"}"),
            Rows(1),
        ),
        item(
            "escaped backslash-u",
            Produce::text(
                "esc",
                r#"<13>Nov 22 10:00:08 host1 app: literal \u0000 in text"#,
            ),
            Rows(1),
        ),
    ]
}

/// Valid records of every format, `rounds` times each.
fn valid(rounds: usize) -> Vec<Item> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        for (p, rows) in every_format() {
            out.push(item("valid", p, Expect::Rows(rows)));
        }
    }
    out
}

/// Produces each record to its partition, one record per request.
async fn produce_to(bootstrap: &str, topic: &str, records: &[(i32, &Produce)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    for (partition, r) in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .partition(*partition)
            .headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_str());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
}

/// A consumer copying everything on a topic into a shared list, from
/// offset 0, for as long as the test runs.
struct Collector {
    records: Arc<Mutex<Vec<EventRecord>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    fn start(bootstrap: &str, topic: &str, group: &str) -> Collector {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("fetch.message.max.bytes", "4000000")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let records: Arc<Mutex<Vec<EventRecord>>> = Arc::default();
        let sink = Arc::clone(&records);
        let task = tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(m) => sink.lock().unwrap().push(EventRecord::from_message(&m)),
                    Err(e) => eprintln!("collector: {e}"),
                }
            }
        });
        Collector { records, task }
    }

    fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    fn snapshot(&self) -> Vec<EventRecord> {
        self.records.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Default, Clone)]
struct Totals {
    ingest_calls: u64,
    ingest_returned: u64,
    ingest_in: usize,
    ingest_stored: usize,
    ingest_duplicate: usize,
    ingest_dead: usize,
    ingest_retry: usize,
    rows_inserted: u64,
    rows_rejected: usize,
    classes: BTreeMap<String, usize>,
    detect_calls: u64,
    detect_returned: u64,
    detect_in: usize,
    detect_processed: usize,
    detect_duplicate: usize,
    detect_dead: usize,
    detect_retry: usize,
    detect_classes: BTreeMap<String, usize>,
}

type Shared = Arc<Mutex<Totals>>;

fn mapping(function: &str, topic: &str, group: &str, batch_size: usize) -> MappingConfig {
    let mut c = MappingConfig::new(function, &[topic], group);
    c.report_batch_item_failures = true;
    c.batch_size = batch_size;
    c.batching_window = Duration::from_millis(100);
    c.retry_backoff_initial = Duration::from_millis(100);
    c.retry_backoff_max = Duration::from_millis(500);
    c
}

fn start_ingest(stack: &LocalStack, ingestor: Ingestor, totals: Shared) -> MappingHandle {
    let ingestor = Arc::new(ingestor);
    let kafka = KafkaSettings::plaintext(&stack.bootstrap_servers(), "esm-ingest");
    start_mapping(
        mapping("ingest", "log-ingestion", "logpipe-ingest", 7),
        &kafka,
        move |event: Value| {
            let ingestor = Arc::clone(&ingestor);
            let totals = Arc::clone(&totals);
            async move {
                totals.lock().unwrap().ingest_calls += 1;
                let payload: KafkaEventPayload = serde_json::from_value(event)
                    .map_err(|e| InvokeError::function("InvalidEvent", e.to_string()))?;
                let result = ingest::handle(
                    &ingestor,
                    LambdaEvent::new(payload, LambdaContext::default()),
                )
                .await;
                let mut t = totals.lock().unwrap();
                t.ingest_returned += 1;
                let response =
                    result.map_err(|e| InvokeError::function("RetryBatch", e.to_string()))?;
                let s = &response.summary;
                t.ingest_in += s.records_in;
                t.ingest_stored += s.records_stored;
                t.ingest_duplicate += s.records_duplicate;
                t.ingest_dead += s.records_dead_lettered;
                t.ingest_retry += s.records_retry;
                t.rows_inserted += s.rows_inserted;
                t.rows_rejected += s.rows_rejected;
                for (class, n) in &s.dead_letter_classes {
                    *t.classes.entry(class.clone()).or_default() += n;
                }
                drop(t);
                serde_json::to_value(&response)
                    .map_err(|e| InvokeError::function("InvalidResponse", e.to_string()))
            }
        },
    )
    .expect("ingest mapping")
}

fn start_detect(stack: &LocalStack, detector: Detector, totals: Shared) -> MappingHandle {
    let detector = Arc::new(detector);
    let kafka = KafkaSettings::plaintext(&stack.bootstrap_servers(), "esm-detect");
    start_mapping(
        mapping("detect", "log-processing", "logpipe-detect", 25),
        &kafka,
        move |event: Value| {
            let detector = Arc::clone(&detector);
            let totals = Arc::clone(&totals);
            async move {
                totals.lock().unwrap().detect_calls += 1;
                let payload: KafkaEventPayload = serde_json::from_value(event)
                    .map_err(|e| InvokeError::function("InvalidEvent", e.to_string()))?;
                let result = detect::handle(
                    &detector,
                    LambdaEvent::new(payload, LambdaContext::default()),
                )
                .await;
                let mut t = totals.lock().unwrap();
                t.detect_returned += 1;
                let response =
                    result.map_err(|e| InvokeError::function("RetryBatch", e.to_string()))?;
                let s = &response.summary;
                t.detect_in += s.records_in;
                t.detect_processed += s.records_processed;
                t.detect_duplicate += s.records_duplicate;
                t.detect_dead += s.records_dead_lettered;
                t.detect_retry += s.records_retry;
                for (class, n) in &s.dead_letter_classes {
                    *t.detect_classes.entry(class.clone()).or_default() += n;
                }
                drop(t);
                serde_json::to_value(&response)
                    .map_err(|e| InvokeError::function("InvalidResponse", e.to_string()))
            }
        },
    )
    .expect("detect mapping")
}

/// Next offsets committed per partition of `topic`, by the mapping.
fn committed(stats: &StatsSnapshot, topic: &str) -> BTreeMap<i32, i64> {
    stats
        .committed
        .iter()
        .filter(|((t, _), _)| t == topic)
        .map(|((_, p), o)| (*p, *o))
        .collect()
}

/// The group's committed offsets as the broker has them.
fn broker_committed(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .map(|e| {
            let o = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            (e.partition(), o)
        })
        .collect()
}

fn header_str<'a>(r: &'a EventRecord, name: &str) -> &'a str {
    header(r, name).unwrap_or("")
}

/// Per partition: how many records there are (offsets 0..n, no gaps).
fn per_partition(records: &[EventRecord]) -> BTreeMap<i32, i64> {
    let mut out: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        let e = out.entry(r.partition).or_default();
        *e = (*e).max(r.offset + 1);
    }
    out
}

async fn wait_for(what: &str, mut done: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        match done() {
            Ok(()) => return,
            Err(state) => assert!(
                Instant::now() < deadline,
                "{what}: not reached after {} s: {state}",
                WAIT.as_secs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_input_is_stored_or_dead_lettered_exactly_once() {
    let started = Instant::now();
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();

    let ingest_config = IngestConfig {
        report_batch_item_failures: true,
        message_timeout: Duration::from_secs(10),
        limits: Limits {
            max_record_bytes: MAX_RECORD_BYTES,
            max_rows_per_record: MAX_ROWS_PER_RECORD,
            ..Limits::default()
        },
        max_rows_per_invocation: MAX_ROWS_PER_INVOCATION,
        ..IngestConfig::default()
    };
    let ingestor = ingestor(&stack, ingest_config).await.unwrap();
    let mut detect_config = DetectConfig {
        report_batch_item_failures: true,
        message_timeout: Duration::from_secs(5),
        ..DetectConfig::default()
    };
    detect_config.engine.window = WindowConfig {
        width_secs: 60,
        allowed_lateness_secs: 60,
    };
    let detector = Detector::new(
        detect_config.clone(),
        Database::new(DbSettings::from_url(&stack.database_url(), "detect"), None).unwrap(),
        Publisher::new(
            KafkaSettings::plaintext(&bootstrap, "detect"),
            None,
            detect_config.message_timeout,
        )
        .await
        .unwrap(),
    );

    // The corpus: poison spread among the valid records, round-robin over
    // the partitions.
    let mut corpus = valid(40);
    let poison = hostile();
    let step = corpus.len() / poison.len();
    for (k, p) in poison.into_iter().enumerate() {
        corpus.insert((k * (step + 1) + 3).min(corpus.len()), p);
    }
    let placed: Vec<(i32, &Item)> = corpus
        .iter()
        .enumerate()
        .map(|(i, it)| ((i % PARTITIONS as usize) as i32, it))
        .collect();
    let mut produced: BTreeMap<i32, i64> = BTreeMap::new();
    let mut expected: BTreeMap<(i32, i64), &Item> = BTreeMap::new();
    for (p, it) in &placed {
        let offset = produced.entry(*p).or_default();
        expected.insert((*p, *offset), it);
        *offset += 1;
    }
    let total = corpus.len();
    let expected_dead: BTreeMap<(i32, i64), &str> = expected
        .iter()
        .filter_map(|(k, it)| match it.expect {
            Expect::Dead(c) => Some((*k, c)),
            Expect::Rows(_) => None,
        })
        .collect();
    let expected_rows: i64 = expected
        .values()
        .map(|it| match it.expect {
            Expect::Rows(n) => n,
            Expect::Dead(_) => 0,
        })
        .sum();

    let dlq = Collector::start(&bootstrap, "log-ingestion.dlq", "hostile-dlq");
    let forwards = Collector::start(&bootstrap, "log-processing", "hostile-forwards");
    let detect_dlq = Collector::start(&bootstrap, "log-processing.dlq", "hostile-dlq2");

    let totals: Shared = Arc::default();
    let ingest = start_ingest(&stack, ingestor, Arc::clone(&totals));
    let detect = start_detect(&stack, detector, Arc::clone(&totals));

    let producing = Instant::now();
    let records: Vec<(i32, &Produce)> = placed.iter().map(|(p, it)| (*p, &it.record)).collect();
    produce_to(&bootstrap, "log-ingestion", &records).await;
    eprintln!(
        "produced {total} records ({} poison) in {:.1} s: {produced:?}",
        expected_dead.len(),
        producing.elapsed().as_secs_f64()
    );

    // Ingest finished with every partition, and every dead letter arrived.
    wait_for("ingest committed every partition", || {
        let s = ingest.stats();
        if ingest.is_finished() {
            return Err("the ingest mapping ended".into());
        }
        let c = committed(&s, "log-ingestion");
        if c == produced && dlq.len() >= expected_dead.len() {
            Ok(())
        } else {
            Err(format!(
                "committed {c:?} of {produced:?}, {} dead letters; {s:?}; {:?}",
                dlq.len(),
                totals.lock().unwrap()
            ))
        }
    })
    .await;
    let ingest_done = started.elapsed();

    // Detect finished with everything on log-processing (at least one
    // message per stored row; what the forwards collector saw).
    let client = sql(&stack.database_url()).await.unwrap();
    let rows_in_logs = count(&client, "SELECT count(*) FROM logs").await;
    let mut last = (usize::MAX, Instant::now());
    wait_for("detect committed everything forwarded", || {
        let s = detect.stats();
        if detect.is_finished() {
            return Err("the detect mapping ended".into());
        }
        let seen = forwards.snapshot();
        let ends = per_partition(&seen);
        let c = committed(&s, "log-processing");
        if seen.len() != last.0 {
            last = (seen.len(), Instant::now());
        }
        // Quiet for 3 s: the collector has what ingest published.
        let settled = last.1.elapsed() > Duration::from_secs(3);
        if settled && seen.len() as i64 >= rows_in_logs && c == ends {
            Ok(())
        } else {
            Err(format!(
                "{} forwards seen, {rows_in_logs} rows, detect committed {c:?} of {ends:?}; {s:?}",
                seen.len()
            ))
        }
    })
    .await;
    let all_done = started.elapsed();

    let ingest_stats = ingest.stop().await.unwrap();
    let detect_stats = detect.stop().await.unwrap();
    let totals = totals.lock().unwrap().clone();
    let dead = dlq.snapshot();
    let seen = forwards.snapshot();
    let detect_dead = detect_dlq.snapshot();

    // The counts, one line per class.
    eprintln!(
        "== hostile corpus: {total} records over {PARTITIONS} partitions, {expected_rows} rows expected"
    );
    eprintln!("ingest mapping: {ingest_stats:?}");
    eprintln!("detect mapping: {detect_stats:?}");
    eprintln!("handler totals: {totals:?}");
    let mut got_classes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &dead {
        *got_classes
            .entry(header_str(r, "dlq-error-class"))
            .or_default() += 1;
    }
    let mut want_classes: BTreeMap<&str, usize> = BTreeMap::new();
    for c in expected_dead.values() {
        *want_classes.entry(c).or_default() += 1;
    }
    for (class, n) in &got_classes {
        eprintln!("dead letter {class:<18} {n}");
    }
    let records_in_logs = count(
        &client,
        "SELECT count(DISTINCT (topic, kafka_partition, kafka_offset)) FROM logs",
    )
    .await;
    eprintln!("records stored      {records_in_logs}");
    eprintln!("rows in logs        {rows_in_logs}");
    eprintln!("dead letters        {}", dead.len());
    eprintln!(
        "forwards            {} ({} distinct record ids)",
        seen.len(),
        seen.iter()
            .map(|r| header(r, "record-id"))
            .collect::<BTreeSet<_>>()
            .len()
    );
    eprintln!(
        "detect processed    {}, dead-lettered {} {:?}",
        totals.detect_processed, totals.detect_dead, totals.detect_classes
    );
    eprintln!(
        "invocations         ingest {} ({} batches), detect {}",
        ingest_stats.invocations, ingest_stats.batches, detect_stats.invocations
    );
    eprintln!(
        "timing              ingest done {:.1} s, detect done {:.1} s (from stack start)",
        ingest_done.as_secs_f64(),
        all_done.as_secs_f64()
    );

    // Every invocation returned (no panic), none failed as a whole.
    assert_eq!(totals.ingest_calls, totals.ingest_returned);
    assert_eq!(totals.detect_calls, totals.detect_returned);
    for s in [&ingest_stats, &detect_stats] {
        assert_eq!(s.function_errors, 0, "{s:?}");
        assert_eq!(s.records_to_destination, 0, "{s:?}");
        assert_eq!(s.records_discarded, 0, "{s:?}");
    }
    assert!(
        ingest_stats.invocations as usize > total / 7,
        "many small invocations"
    );

    // Ingest: produced = records in logs + dead letters, each as expected.
    let dead_at: BTreeMap<(i32, i64), &str> = dead
        .iter()
        .map(|r| {
            let p: i32 = header_str(r, "dlq-source-partition").parse().unwrap();
            let o: i64 = header_str(r, "dlq-source-offset").parse().unwrap();
            assert_eq!(header_str(r, "dlq-source-topic"), "log-ingestion");
            assert_eq!(header_str(r, "dlq-function"), "ingest");
            ((p, o), header_str(r, "dlq-error-class"))
        })
        .collect();
    assert_eq!(dead_at.len(), dead.len(), "each record dead-lettered once");
    let mismatched: Vec<String> = expected
        .iter()
        .filter_map(|(k, it)| {
            let want = match it.expect {
                Expect::Dead(c) => Some(c),
                Expect::Rows(_) => None,
            };
            let got = dead_at.get(k).copied();
            (want != got).then(|| format!("{} at {k:?}: expected {want:?}, got {got:?}", it.name))
        })
        .collect();
    assert!(mismatched.is_empty(), "{mismatched:#?}");
    assert_eq!(got_classes, want_classes);
    assert_eq!(records_in_logs as usize + dead.len(), total);
    assert_eq!(rows_in_logs, expected_rows);
    assert_eq!(rows_in_logs as u64, totals.rows_inserted);
    assert_eq!(totals.ingest_stored, records_in_logs as usize);
    assert_eq!(totals.ingest_dead, dead.len());
    assert_eq!(totals.ingest_duplicate, 0);
    assert_eq!(
        totals
            .classes
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<BTreeMap<_, _>>(),
        want_classes
    );
    // No row stored twice, none of a dead-lettered record, rows of a record
    // numbered 0..n.
    let stored: Vec<(i32, i64, i64, i32)> = client
        .query(
            "SELECT kafka_partition, kafka_offset, count(*), max(seq) FROM logs
              WHERE topic = 'log-ingestion' GROUP BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    for (p, o, n, max_seq) in &stored {
        assert_eq!(i64::from(*max_seq) + 1, *n, "rows of {p}/{o}");
        assert!(
            !dead_at.contains_key(&(*p, *o)),
            "{p}/{o} stored and dead-lettered"
        );
        let it = expected[&(*p, *o)];
        assert_eq!(it.expect, Expect::Rows(*n), "{} at {p}/{o}", it.name);
    }
    let nul_header = count(
        &client,
        "SELECT count(*) FROM logs WHERE source_type = 'web_access' AND service IS NULL
            AND http_path = '/' AND http_bytes = 5",
    )
    .await;
    assert_eq!(nul_header, 1, "the access log with a NUL service header");
    // Unbelievable event times were replaced by the Kafka time.
    let corrected = count(
        &client,
        "SELECT count(*) FROM logs WHERE attributes ? 'event_time_original'
            AND event_time = kafka_timestamp",
    )
    .await;
    assert_eq!(corrected, 3, "far-future, pre-1970 and negative epoch");
    let out_of_range = count(
        &client,
        "SELECT count(*) FROM logs WHERE event_time < 'epoch'
            OR event_time > kafka_timestamp + interval '1 day'",
    )
    .await;
    assert_eq!(out_of_range, 0);

    // Ingest's group committed the end of every partition, by the broker.
    assert_eq!(committed(&ingest_stats, "log-ingestion"), produced);
    assert_eq!(
        broker_committed(&bootstrap, "logpipe-ingest", "log-ingestion"),
        produced
    );

    // Forwards: once each; every stored row among them; the long
    // control-character line slimmed.
    let keys: BTreeSet<Vec<u8>> = seen
        .iter()
        .filter_map(|r| header(r, "record-id").map(|id| id.as_bytes().to_vec()))
        .collect();
    assert_eq!(keys.len(), seen.len(), "a forward published twice");
    let row_ids: BTreeSet<Vec<u8>> = client
        .query(
            "SELECT topic || '-' || kafka_partition || '-' || kafka_offset || '-' || seq FROM logs",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0).into_bytes())
        .collect();
    let missing = row_ids.difference(&keys).count();
    assert_eq!(missing, 0, "stored rows never forwarded");
    let phantoms: Vec<String> = keys
        .difference(&row_ids)
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    eprintln!("forwards of records not in logs: {phantoms:?}");
    let slimmed = seen
        .iter()
        .filter(|r| {
            r.value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                .is_some_and(|v| v["attributes"].get("forward_truncated").is_some())
        })
        .count();
    eprintln!("slimmed forwards    {slimmed}");
    assert!(slimmed >= 1, "the control-character line was slimmed");

    // Detect: processed + dead letters = what was on log-processing, and its
    // group committed the end of every partition it saw.
    assert_eq!(
        totals.detect_processed + totals.detect_dead,
        seen.len(),
        "{totals:?}"
    );
    assert_eq!((totals.detect_duplicate, totals.detect_retry), (0, 0));
    assert_eq!(detect_dead.len(), totals.detect_dead);
    let ends = per_partition(&seen);
    assert_eq!(committed(&detect_stats, "log-processing"), ends);
    let broker = broker_committed(&bootstrap, "logpipe-detect", "log-processing");
    for (p, end) in &ends {
        assert_eq!(broker.get(p), Some(end), "detect group, partition {p}");
    }

    // Forwards go out while the rows are written, so a record whose row
    // PostgreSQL then refuses has its forward on log-processing as well as
    // its dead letter (ingest's pipeline says so: "its forwards may be
    // out"). Nothing else may be forwarded without being stored.
    let rejected_ids: BTreeSet<String> = dead_at
        .iter()
        .filter(|(_, c)| **c == "db_rejected")
        .map(|((p, o), _)| format!("log-ingestion-{p}-{o}-"))
        .collect();
    for id in &phantoms {
        assert!(
            rejected_ids.iter().any(|r| id.starts_with(r.as_str())),
            "{id} was forwarded but neither stored nor refused by PostgreSQL"
        );
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}
