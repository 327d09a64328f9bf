//! `make bench`: the ingest handler on a 10,000-record (~5 MB) event against
//! a bare binary COPY of the same rows into the same table, in the same run.
//!
//! The handler runs in a child process of its own so that its peak RSS is
//! the handler's alone (the parent holds the event, the baseline rows and
//! the stack).
//!
//! `ingest_isolation_overhead`: the same batch with one row PostgreSQL
//! refuses, against the batch clean, both through the handler.
//!
//! `init_ms_*`: each function's cold start against a hello-world
//! `lambda_runtime` binary plus a bare connect (see `coldstart.rs`).

mod classify;
mod coldstart;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ingest::{IngestConfig, Ingestor};
use lambda_runtime::{Context as LambdaContext, LambdaEvent};
use logpipe_devstack::{LocalStack, StackOptions};
use logpipe_kafka::event::{EventRecord, EventSource, KafkaEventPayload, build_event};
use logpipe_kafka::{KafkaSettings, Publisher};
use logpipe_postgres::{Database, DbSettings, copy_records};
use logpipe_schema::{KafkaCoordinates, LogRecord};

const RECORDS: usize = 10_000;
const PARTITIONS: i32 = 6;
const RUNS: usize = 5;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--ingest-once") && (5..=6).contains(&args.len()) {
        // Optional: how many records PostgreSQL must refuse (`db_rejected`).
        let refused = args.get(5).map_or(Ok(0), |n| n.parse())?;
        // The same single-threaded runtime as the function's main.rs.
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(ingest_once(&args[2], &args[3], &args[4], refused));
    }
    tokio::runtime::Runtime::new()?.block_on(bench())
}

async fn bench() -> Result<()> {
    let formats = logpipe_devstack::workspace_root()?.join("events/formats");
    // CPU only: no stack needed.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("classify") {
        return classify::classify_bench(&sample_records(), &formats);
    }
    let stack = LocalStack::start(StackOptions::default()).await?;
    // BENCH_ONLY=classify|detect|produce|e2e|isolation|coldstart runs one
    // part (the full run takes minutes).
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("isolation") => return isolation_bench(&stack).await,
        Ok("detect") => return detect_bench(&stack).await,
        Ok("produce") => return produce_bench(&stack).await,
        Ok("e2e") => return e2e_bench(&stack).await,
        Ok("coldstart") => return coldstart::coldstart_bench(&stack).await,
        _ => {}
    }
    let records = sample_records();
    let event = build_event(EventSource::Msk, &stack.bootstrap_servers(), None, &records);
    let event_bytes = serde_json::to_vec(&event)?;
    eprintln!(
        "bench: {} records, event {:.1} MB, {RUNS} runs each, median reported",
        records.len(),
        event_bytes.len() as f64 / 1e6
    );
    let event_file = stack.dir().join("event.json");
    std::fs::write(&event_file, &event_bytes)?;
    let rows = baseline_rows(&records)?;

    let url = stack.database_url();
    let admin = Database::new(DbSettings::from_url(&url, "bench"), None)?;
    let mut ingest_rates = Vec::new();
    let mut copy_rates = Vec::new();
    let mut peak_rss_kb = 0u64;
    for _ in 0..RUNS {
        truncate(&admin).await?;
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["--ingest-once", &url, &stack.bootstrap_servers()])
            .arg(&event_file)
            .output()
            .context("running the ingest child")?;
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!(
                "ingest child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (secs, rss): (f64, u64) = parse_child(text.lines().last().unwrap_or_default())?;
        for line in text.lines().filter(|l| l.starts_with('{')) {
            eprintln!("child: {line}");
        }
        ingest_rates.push(records.len() as f64 / secs);
        peak_rss_kb = peak_rss_kb.max(rss);

        truncate(&admin).await?;
        let mut client = admin.client().await?;
        let started = Instant::now();
        let txn = client.transaction().await?;
        copy_records(&txn, "logs", &rows.iter().collect::<Vec<_>>()).await?;
        txn.commit().await?;
        copy_rates.push(records.len() as f64 / started.elapsed().as_secs_f64());
    }
    let ingest = median(&mut ingest_rates);
    let copy = median(&mut copy_rates);
    println!("RESULT ingest_records_per_s={ingest:.0}");
    println!("RESULT copy_records_per_s={copy:.0}");
    println!("RESULT ingest_vs_copy={:.2}", ingest / copy);
    println!("RESULT peak_rss_mb={:.1}", peak_rss_kb as f64 / 1024.0);
    classify::classify_bench(&records, &formats)?;
    isolation_bench(&stack).await?;
    produce_bench(&stack).await?;
    detect_bench(&stack).await?;
    e2e_bench(&stack).await?;
    coldstart::coldstart_bench(&stack).await
}

/// The detect handler on 10,000-record batches of normalized records
/// (state rows loaded, locked and saved, outbox written and published)
/// against the bare detection engine on the same records in memory, for
/// two event-time densities of the same 36 entities:
/// - **steady** (the headline `detect_records_per_s`): a batch spans one
///   minute of event time, as 10,000 records do in a stream of ~170/s;
///   each batch closes about one window per entity.
/// - **sparse** (`detect_sparse_*`): a batch spans an hour (~3 records/s),
///   so each batch closes 60 windows per entity: 2,160 predictions per
///   10,000 records, and their outbox rows and Kafka messages dominate.
async fn detect_bench(stack: &LocalStack) -> Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        // Where a batch's time goes (the detect function's debug lines).
        logpipe_telemetry::init_json_logs();
    }
    let rows = baseline_rows(&sample_records())?;
    // On the same single-threaded runtime as the function's main.rs (its
    // database connection task shares the handler's thread), away from the
    // bench's own runtime.
    let (steady, sparse) = std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let steady = detect_scenario(stack, &rows, "bench-steady", 60).await?;
                let sparse = detect_scenario(stack, &rows, "bench-sparse", 1).await?;
                Ok::<_, anyhow::Error>((steady, sparse))
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the detect bench thread panicked"))?
    })?;
    println!("RESULT detect_records_per_s={:.0}", steady.ours);
    println!("RESULT detect_engine_records_per_s={:.0}", steady.bare);
    println!("RESULT detect_vs_engine={:.2}", steady.ours / steady.bare);
    println!("RESULT detect_sparse_records_per_s={:.0}", sparse.ours);
    println!(
        "RESULT detect_sparse_engine_records_per_s={:.0}",
        sparse.bare
    );
    println!(
        "RESULT detect_sparse_vs_engine={:.2}",
        sparse.ours / sparse.bare
    );
    Ok(())
}

/// Median records/s of the detect handler and of the bare engine.
struct DetectRates {
    ours: f64,
    bare: f64,
}

/// `RUNS` consecutive batches of `rows` (which span an hour) with their
/// event times compressed `compress` times, each batch starting where the
/// previous one ended, under their own consumer group (own state rows).
async fn detect_scenario(
    stack: &LocalStack,
    rows: &[LogRecord],
    group: &str,
    compress: i32,
) -> Result<DetectRates> {
    use detect::{DetectConfig, Detector};
    use logpipe_detect::{Emitted, Engine, entity_of};
    let config = DetectConfig {
        consumer_group: group.to_string(),
        ..DetectConfig::default()
    };
    let db = Database::new(DbSettings::from_url(&stack.database_url(), "bench"), None)?;
    // The producer settings detect's main.rs gets by default.
    let kafka = KafkaSettings {
        linger_ms: logpipe_kafka::settings::AWAITED_BURST_LINGER_MS,
        ..KafkaSettings::plaintext(&stack.bootstrap_servers(), "bench-detect")
    };
    let publisher = Publisher::new(kafka, None, config.message_timeout).await?;
    let detector = Detector::new(config.clone(), db, publisher);
    detector.check_topics().await;
    let first = rows.iter().map(|r| r.event_time).min().unwrap_or_default();
    let span = chrono::Duration::hours(1) / compress;
    // Event times a few days back, the next span per run: every run closes
    // windows and finds existing state (as a steady stream would).
    let base = chrono::Utc::now() - chrono::Duration::days(3);
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for run in 0..RUNS as i32 {
        let batch: Vec<LogRecord> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.event_time = base + (r.event_time - first) / compress + span * run;
                r
            })
            .collect();
        let records: Vec<EventRecord> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| EventRecord {
                topic: "log-processing".into(),
                partition: (i % PARTITIONS as usize) as i32,
                offset: i64::from(run) * RECORDS as i64 + (i / PARTITIONS as usize) as i64,
                timestamp_ms: r.event_time.timestamp_millis(),
                timestamp_type: "CREATE_TIME",
                key: None,
                value: serde_json::to_vec(r).ok(),
                headers: vec![],
            })
            .collect();
        let event = build_event(EventSource::Msk, &stack.bootstrap_servers(), None, &records);
        let payload: KafkaEventPayload = serde_json::from_value(event)?;
        let started = Instant::now();
        let response = detect::handle(
            &detector,
            LambdaEvent::new(payload, LambdaContext::default()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("detect failed: {e}"))?;
        let secs = started.elapsed().as_secs_f64();
        let s = &response.summary;
        if s.records_processed != records.len() {
            bail!(
                "detect processed {} of {}",
                s.records_processed,
                records.len()
            );
        }
        eprintln!(
            "detect {group} run {run}: {:.0} ms, {} entities, {} alerts, {} predictions",
            secs * 1e3,
            s.entities,
            s.alerts_new,
            s.predictions_new
        );
        ours.push(records.len() as f64 / secs);

        // The same records through the engine alone (no IO, no JSON).
        let engine = Engine::new(config.engine.clone());
        let started = Instant::now();
        let mut states = std::collections::BTreeMap::new();
        let mut out = Emitted::default();
        let mut newest = batch[0].event_time;
        for r in &batch {
            let entity = entity_of(r);
            let state = states
                .entry(entity.clone())
                .or_insert_with(|| engine.new_state());
            engine.observe(state, &entity, r, &mut out);
            newest = newest.max(r.event_time);
        }
        for (entity, state) in states.iter_mut() {
            engine.close(state, entity, engine.watermark(newest), &mut out);
        }
        bare.push(records.len() as f64 / started.elapsed().as_secs_f64());
    }
    Ok(DetectRates {
        ours: median(&mut ours),
        bare: median(&mut bare),
    })
}

/// The produce function's generator + producer against a bare rdkafka send
/// loop of the same pre-built payloads, both warmed up, same broker.
async fn produce_bench(stack: &LocalStack) -> Result<()> {
    use logpipe_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
    let count = 10_000;
    let request: logpipe_generator::GenerateRequest =
        serde_json::from_value(serde_json::json!({"count": count, "seed": 1}))?;
    let now = chrono::Utc::now();
    let config = produce::ProduceConfig::default();
    let publisher = Publisher::new(
        KafkaSettings::plaintext(&stack.bootstrap_servers(), "bench-produce"),
        None,
        config.message_timeout,
    )
    .await?;
    let producer = produce::Producer::new(config, publisher);
    let warm: logpipe_generator::GenerateRequest =
        serde_json::from_value(serde_json::json!({"count": 100, "seed": 2}))?;
    producer.run(produce::RunInput::Generate(warm), now).await?;

    let raw: FutureProducer = KafkaSettings::plaintext(&stack.bootstrap_servers(), "bench-raw")
        .client_config(None)?
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()?;
    let records = logpipe_generator::generate(&request, now, chrono::Duration::minutes(2))?;
    let send_all = |records: &[logpipe_generator::GeneratedRecord]| {
        let mut futures = Vec::with_capacity(records.len());
        for r in records {
            let mut rec = FutureRecord::to("log-ingestion")
                .key(r.key.as_str())
                .payload(r.value.as_str());
            loop {
                match raw.send_result(rec) {
                    Ok(f) => break futures.push(f),
                    // Queue full: librdkafka's own thread drains it.
                    Err((_, back)) => {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        futures
    };
    for f in send_all(&records[..100]) {
        let _ = f.await;
    }

    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let report = producer
            .run(produce::RunInput::Generate(request.clone()), now)
            .await?;
        ours.push(report.produced as f64 / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut delivered = 0;
        for f in send_all(&records) {
            if matches!(f.await, Ok(Ok(_))) {
                delivered += 1;
            }
        }
        bare.push(delivered as f64 / started.elapsed().as_secs_f64());
    }
    let ours = median(&mut ours);
    let bare = median(&mut bare);
    println!("RESULT produce_records_per_s={ours:.0}");
    println!("RESULT raw_send_records_per_s={bare:.0}");
    println!("RESULT produce_vs_raw={:.2}", ours / bare);
    Ok(())
}

/// Steady traffic for the end-to-end latency.
const E2E_TOPIC: &str = "bench-e2e";
const E2E_RATE_PER_S: usize = 200;
const E2E_SECONDS: usize = 15;
const E2E_TICK_MS: usize = 50;
const E2E_WARMUP: usize = 100;
const E2E_WAIT: Duration = Duration::from_secs(180);

/// Latency from produce to PostgreSQL through the local event source
/// mapping (AWS defaults: BatchSize 100, MaximumBatchingWindowInSeconds
/// 0.5) and the in-process ingest handler, under a steady ~200 records/s
/// of generated traffic for ~15 s. Per record: `logs.ingested_at`
/// (`now()` of the storing transaction, i.e. its start, a few ms before the
/// commit) − `logs.kafka_timestamp` (the producer's CreateTime, stamped by
/// librdkafka when the record is queued, so linger is included). Both
/// clocks are this machine's.
///
/// The floor is the batching window: at 200 records/s a batch of 100 fills
/// in ~0.5 s, so a record waits between 0 and ~500 ms for its batch to
/// close (~250 ms on average) before the function is even invoked. The
/// baselines, measured on the same records at the same time: a bare
/// consumer (its own group) that COPYs whatever it has fetched straight
/// into a copy of `logs`, no window, no handler — once with librdkafka's
/// defaults (as the mapping's consumer), once with `fetch.wait.max.ms=10`.
/// On Tansu the two differ by hundreds of ms (seen: p50 385 vs 20 ms): it
/// appears to hold a fetch for the whole `fetch.wait.max.ms` even when
/// records arrive meanwhile (Kafka answers once `fetch.min.bytes` is met),
/// so locally that wait is part of every figure here, the mapping's too.
async fn e2e_bench(stack: &LocalStack) -> Result<()> {
    use logpipe_esm::{InvokeError, MappingConfig, start_mapping};
    use logpipe_kafka::rdkafka::message::{Header, OwnedHeaders};
    use logpipe_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let bootstrap = stack.bootstrap_servers();
    let url = stack.database_url();
    logpipe_devstack::create_topics(&bootstrap, &[(E2E_TOPIC, PARTITIONS)]).await?;
    let db = Database::new(DbSettings::from_url(&url, "bench-e2e"), None)?;
    db.client()
        .await?
        .batch_execute(
            "DROP TABLE IF EXISTS logs_bare, logs_bare_fast; \
             CREATE TABLE logs_bare (LIKE logs INCLUDING DEFAULTS); \
             CREATE TABLE logs_bare_fast (LIKE logs INCLUDING DEFAULTS)",
        )
        .await?;

    // The ingest mapping, as in tests/pipeline.rs.
    let config = IngestConfig {
        report_batch_item_failures: true,
        message_timeout: Duration::from_secs(30),
        ..IngestConfig::default()
    };
    let publisher = Publisher::new(
        KafkaSettings::plaintext(&bootstrap, "bench-e2e-ingest"),
        None,
        config.message_timeout,
    )
    .await?;
    let ingestor = Arc::new(Ingestor::new(
        config,
        Database::new(DbSettings::from_url(&url, "bench-e2e-ingest"), None)?,
        publisher,
    ));
    let mut mapping = MappingConfig::new("ingest", &[E2E_TOPIC], "bench-e2e-ingest");
    mapping.report_batch_item_failures = true;
    let window_ms = mapping.batching_window.as_millis();
    let esm = start_mapping(
        mapping,
        &KafkaSettings::plaintext(&bootstrap, "bench-e2e-esm"),
        move |event: serde_json::Value| {
            let ingestor = Arc::clone(&ingestor);
            async move {
                let payload: KafkaEventPayload = serde_json::from_value(event)
                    .map_err(|e| InvokeError::function("InvalidEvent", e.to_string()))?;
                let response = ingest::handle(
                    &ingestor,
                    LambdaEvent::new(payload, LambdaContext::default()),
                )
                .await
                .map_err(|e| InvokeError::function("RetryBatch", e.to_string()))?;
                serde_json::to_value(&response)
                    .map_err(|e| InvokeError::function("InvalidResponse", e.to_string()))
            }
        },
    )?;

    // The baseline: consume and COPY, nothing else.
    // Twice: with librdkafka's default fetch.wait.max.ms (500, as the
    // mapping's consumer has), and with 10 ms, which shows how much of the
    // floor is the broker holding a fetch rather than the pipeline.
    let copied = Arc::new(AtomicU64::new(0));
    let copied_fast = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bare = tokio::spawn(bare_consume_and_copy(
        bootstrap.clone(),
        url.clone(),
        Bare {
            table: "logs_bare",
            fetch_wait_max_ms: None,
        },
        Arc::clone(&copied),
        stopped.clone(),
    ));
    let bare_fast = tokio::spawn(bare_consume_and_copy(
        bootstrap.clone(),
        url.clone(),
        Bare {
            table: "logs_bare_fast",
            fetch_wait_max_ms: Some(10),
        },
        Arc::clone(&copied_fast),
        stopped,
    ));

    let producer: FutureProducer = KafkaSettings::plaintext(&bootstrap, "bench-e2e-producer")
        .client_config(None)?
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let total = E2E_WARMUP + E2E_RATE_PER_S * E2E_SECONDS;
    let request: logpipe_generator::GenerateRequest =
        serde_json::from_value(serde_json::json!({"count": total, "seed": 3}))?;
    let records = logpipe_generator::generate(
        &request,
        chrono::Utc::now(),
        chrono::Duration::seconds(E2E_SECONDS as i64),
    )?;
    let send = |r: &logpipe_generator::GeneratedRecord| {
        let headers = OwnedHeaders::new().insert(Header {
            key: "log-format",
            value: Some(r.log_format),
        });
        producer
            .send_result(
                FutureRecord::to(E2E_TOPIC)
                    .key(r.key.as_str())
                    .payload(r.value.as_str())
                    .headers(headers),
            )
            .map_err(|(e, _)| anyhow::anyhow!("e2e produce: {e}"))
    };
    let committed = || esm.stats().committed.values().sum::<i64>() as usize;
    let copied_n = || {
        (copied.load(Ordering::Relaxed) as usize).min(copied_fast.load(Ordering::Relaxed) as usize)
    };

    // Warm-up (not measured): both groups joined and fetching.
    for r in &records[..E2E_WARMUP] {
        let f = send(r)?;
        f.await?
            .map_err(|(e, _)| anyhow::anyhow!("e2e produce: {e}"))?;
    }
    wait_for(&esm, "warm-up", || {
        committed() >= E2E_WARMUP && copied_n() >= E2E_WARMUP
    })
    .await?;

    // Steady traffic: E2E_RATE_PER_S records a second, in ticks. Kafka
    // timestamps are whole milliseconds: the start is too (a record sent in
    // the same millisecond would otherwise fall before it), and comes
    // later than the last warm-up record's millisecond.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let now = chrono::Utc::now();
    let measured_from =
        chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let per_tick = E2E_RATE_PER_S * E2E_TICK_MS / 1000;
    let mut ticker = tokio::time::interval(Duration::from_millis(E2E_TICK_MS as u64));
    let mut deliveries = Vec::with_capacity(total);
    for chunk in records[E2E_WARMUP..].chunks(per_tick) {
        ticker.tick().await;
        for r in chunk {
            deliveries.push(send(r)?);
        }
    }
    for f in deliveries {
        f.await?
            .map_err(|(e, _)| anyhow::anyhow!("e2e produce: {e}"))?;
    }
    wait_for(&esm, "ingest and the bare path", || {
        committed() >= total && copied_n() >= total
    })
    .await?;
    let stats = esm.stop().await?;
    let _ = stop.send(true);
    bare.await??;
    bare_fast.await??;

    let client = db.client().await?;
    let percentiles = |table: &str| {
        format!(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), \
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), count(*) \
             FROM (SELECT (extract(epoch FROM ingested_at - kafka_timestamp) * 1000)::float8 AS ms \
                   FROM {table} WHERE topic = $1 AND seq = 0 AND kafka_timestamp >= $2) AS l"
        )
    };
    let row = client
        .query_one(&percentiles("logs"), &[&E2E_TOPIC, &measured_from])
        .await?;
    let (p50, p99, n): (f64, f64, i64) = (row.get(0), row.get(1), row.get(2));
    let row = client
        .query_one(&percentiles("logs_bare"), &[&E2E_TOPIC, &measured_from])
        .await?;
    let (bare_p50, bare_p99, bare_n): (f64, f64, i64) = (row.get(0), row.get(1), row.get(2));
    let row = client
        .query_one(
            &percentiles("logs_bare_fast"),
            &[&E2E_TOPIC, &measured_from],
        )
        .await?;
    let (fast_p50, fast_p99): (f64, f64) = (row.get(0), row.get(1));
    eprintln!(
        "e2e: {n} records measured (bare path {bare_n}); mapping: {} invocations, {:.0} records per batch",
        stats.invocations,
        stats.records_delivered as f64 / stats.batches.max(1) as f64
    );
    if n as usize != total - E2E_WARMUP {
        bail!(
            "e2e: {n} of {} measured records in logs",
            total - E2E_WARMUP
        );
    }
    println!("RESULT e2e_latency_p50_ms={p50:.0}");
    println!("RESULT e2e_latency_p99_ms={p99:.0}");
    println!("RESULT e2e_batching_window_ms={window_ms}");
    println!("RESULT e2e_bare_copy_latency_p50_ms={bare_p50:.0}");
    println!("RESULT e2e_bare_copy_latency_p99_ms={bare_p99:.0}");
    println!("RESULT e2e_bare_copy_fetch_wait_10ms_latency_p50_ms={fast_p50:.0}");
    println!("RESULT e2e_bare_copy_fetch_wait_10ms_latency_p99_ms={fast_p99:.0}");
    Ok(())
}

/// The handler on the 10,000-record batch with one row PostgreSQL refuses
/// (found by halving under savepoints, its record dead-lettered
/// `db_rejected`) against the same batch clean: same child process, same
/// run, alternating, median of each.
async fn isolation_bench(stack: &LocalStack) -> Result<()> {
    let clean = sample_records();
    let mut dirty = clean.clone();
    // Mid-batch: the first COPY fails halfway and the halving runs its
    // typical depth.
    let bad = RECORDS / 2 + 17;
    dirty[bad].value = Some(refused_value().into_bytes());
    let url = stack.database_url();
    let bootstrap = stack.bootstrap_servers();
    let mut files = Vec::new();
    for (name, records) in [("clean", &clean), ("dirty", &dirty)] {
        let file = stack.dir().join(format!("isolation-{name}.json"));
        let event = build_event(EventSource::Msk, &bootstrap, None, records);
        std::fs::write(&file, serde_json::to_vec(&event)?)?;
        files.push(file);
    }
    let admin = Database::new(DbSettings::from_url(&url, "bench"), None)?;
    let mut clean_secs = Vec::new();
    let mut dirty_secs = Vec::new();
    for _ in 0..RUNS {
        for (file, refused, secs) in [
            (&files[0], 0, &mut clean_secs),
            (&files[1], 1, &mut dirty_secs),
        ] {
            truncate(&admin).await?;
            let out = std::process::Command::new(std::env::current_exe()?)
                .args(["--ingest-once", &url, &bootstrap])
                .arg(file)
                .arg(refused.to_string())
                .output()
                .context("running the ingest child")?;
            if !out.status.success() {
                bail!(
                    "ingest child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            secs.push(parse_child(text.lines().last().unwrap_or_default())?.0);
        }
        // The refused record is not in `logs`; its neighbours are.
        let client = admin.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE kafka_partition = $1 AND kafka_offset = $2),
                        count(*)
                   FROM logs",
                &[&dirty[bad].partition, &dirty[bad].offset],
            )
            .await?;
        let (stored_bad, stored): (i64, i64) = (row.get(0), row.get(1));
        if stored_bad != 0 || stored != (RECORDS - 1) as i64 {
            bail!("isolation: {stored} rows stored, {stored_bad} of the refused record");
        }
    }
    let clean = median(&mut clean_secs);
    let dirty = median(&mut dirty_secs);
    eprintln!(
        "bench: isolation clean {:.0} ms, one refused row {:.0} ms (median of {RUNS})",
        clean * 1e3,
        dirty * 1e3
    );
    println!("RESULT ingest_isolation_overhead={:.2}", dirty / clean);
    Ok(())
}

/// An application log the parser accepts and PostgreSQL refuses: its
/// 3 KB service does not compress, and a btree entry of (service,
/// event_time) may not exceed ~2.7 KB (`logs_service_time`, SQLSTATE 54000).
fn refused_value() -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let service: String = (0..3_000)
        .map(|_| {
            // xorshift64: letters and digits without a pattern to compress
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                    [(state % 62) as usize],
            )
        })
        .collect();
    format!(
        r#"{{"timestamp":"2026-11-22T10:30:00Z","level":"info","service":"{service}","message":"a service name too large for its index"}}"#
    )
}

async fn wait_for(
    esm: &logpipe_esm::MappingHandle,
    what: &str,
    done: impl Fn() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + E2E_WAIT;
    while !done() {
        if Instant::now() > deadline || esm.is_finished() {
            bail!("e2e: {what} not done within {} s", E2E_WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The bare path: one consumer that COPYs every fetched record (parsed, no
/// progress, no forwarding, no dead letters) into `logs_bare`, one
/// transaction per poll of what is already there.
struct Bare {
    table: &'static str,
    /// librdkafka's `fetch.wait.max.ms`; `None`: its default (500).
    fetch_wait_max_ms: Option<u32>,
}

async fn bare_consume_and_copy(
    bootstrap: String,
    url: String,
    bare: Bare,
    copied: std::sync::Arc<std::sync::atomic::AtomicU64>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    use logpipe_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
    let mut config = KafkaSettings::plaintext(&bootstrap, "bench-e2e-bare").client_config(None)?;
    config
        .set("group.id", format!("bench-e2e-{}", bare.table))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    if let Some(ms) = bare.fetch_wait_max_ms {
        config.set("fetch.wait.max.ms", ms.to_string());
    }
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[E2E_TOPIC])?;
    let db = Database::new(DbSettings::from_url(&url, "bench-e2e-bare"), None)?;
    loop {
        let first = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return Ok(()),
            m = consumer.recv() => EventRecord::from_message(&m?),
        };
        let mut batch = vec![first];
        // Whatever is already fetched, without waiting.
        while batch.len() < 500 {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(m) => batch.push(EventRecord::from_message(&m?)),
                Err(_) => break,
            }
        }
        let rows = baseline_rows(&batch)?;
        let mut client = db.client().await?;
        let txn = client.transaction().await?;
        copy_records(&txn, bare.table, &rows.iter().collect::<Vec<_>>()).await?;
        txn.commit().await?;
        copied.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Child mode: build the clients (untimed, as Lambda init), handle the
/// event once (timed, including decoding the JSON), report time and peak RSS.
async fn ingest_once(url: &str, bootstrap: &str, event_file: &str, refused: usize) -> Result<()> {
    // The environment may tune the handler (e.g. FORWARD_TOPIC= to see the
    // cost of forwarding); defaults otherwise.
    let config = IngestConfig {
        message_timeout: Duration::from_secs(30),
        ..IngestConfig::from_env()?
    };
    if std::env::var_os("RUST_LOG").is_some() {
        logpipe_telemetry::init_json_logs();
    }
    let db = Database::new(DbSettings::from_url(url, "bench-ingest"), None)?;
    let publisher = Publisher::new(
        KafkaSettings::plaintext(bootstrap, "bench"),
        None,
        config.message_timeout,
    )
    .await?;
    let ingestor = Ingestor::new(config, db, publisher);
    // The same init as the function's main.rs.
    ingestor.ensure_schema().await?;
    ingestor.check_topics().await;
    let init_rss_kb = peak_rss_kb();
    let bytes = std::fs::read(event_file)?;
    let started = Instant::now();
    let payload: KafkaEventPayload = serde_json::from_slice(&bytes)?;
    tracing::debug!(
        parse_ms = started.elapsed().as_millis() as u64,
        "event JSON parsed"
    );
    drop(bytes);
    let response = ingest::handle(
        &ingestor,
        LambdaEvent::new(payload, LambdaContext::default()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = started.elapsed().as_secs_f64();
    tracing::debug!(handled_ms = (secs * 1000.0) as u64, "handler returned");
    let s = &response.summary;
    let rejected = s
        .dead_letter_classes
        .get("db_rejected")
        .copied()
        .unwrap_or(0);
    if s.records_stored != RECORDS - refused
        || s.records_dead_lettered != refused
        || rejected != refused
    {
        bail!(
            "expected {} stored and {refused} dead-lettered db_rejected, got {s:?}",
            RECORDS - refused
        );
    }
    eprintln!("child: peak RSS after init {} kB", init_rss_kb);
    println!("{secs} {}", peak_rss_kb());
    Ok(())
}

fn parse_child(text: &str) -> Result<(f64, u64)> {
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(s), Some(r)) => Ok((s.parse()?, r.parse()?)),
        _ => bail!("unexpected child output: {text}"),
    }
}

/// Peak RSS of this process in kB. VmHWM, not getrusage's ru_maxrss: the
/// latter survives execve, so a child would report its parent's peak.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn truncate(db: &Database) -> Result<()> {
    db.client()
        .await?
        .batch_execute("TRUNCATE logs, ingest_progress")
        .await?;
    Ok(())
}

/// 10,000 records of a realistic mix (~330 bytes each, ~5 MB as an event).
fn sample_records() -> Vec<EventRecord> {
    let services = ["checkout", "payments", "search", "auth", "inventory"];
    let paths = [
        "/api/orders",
        "/api/cart",
        "/api/search?q=shoes",
        "/login",
        "/api/items/42",
    ];
    (0..RECORDS)
        .map(|i| {
            let svc = services[i % services.len()];
            let value = match i % 4 {
                0 => format!(
                    r#"{{"timestamp":"2026-11-22T10:{:02}:{:02}.{:03}Z","level":"{}","service":"{svc}","message":"request handled for order {i} after checking inventory and pricing rules","trace_id":"{:032x}","span_id":"{:016x}","duration_ms":{},"user_id":"u-{}","region":"eu-west-1"}}"#,
                    (i / 60) % 60, i % 60, i % 1000,
                    if i % 50 == 0 { "error" } else { "info" },
                    i * 7919, i * 104729, i % 900, i % 977
                ),
                1 => format!(
                    r#"10.{}.{}.{} - - [22/Nov/2026:10:{:02}:{:02} +0000] "GET {} HTTP/1.1" {} {} "https://shop.example.com/products/{}" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36" 0.{:03}"#,
                    i % 200, (i / 200) % 250, i % 250, (i / 60) % 60, i % 60,
                    paths[i % paths.len()], if i % 40 == 0 { 503 } else { 200 }, 1000 + i % 5000, i, i % 1000
                ),
                2 => format!(
                    r#"{{"sensor_id":"st-{:03}","timestamp":"2026-11-22T10:{:02}:{:02}Z","temperature":{:.1},"humidity":{},"wind_speed":{:.1},"pressure":{:.1},"station":"station-{}","location":{{"lat":48.{},"lon":11.{}}},"firmware":"2.4.1"}}"#,
                    i % 120, (i / 60) % 60, i % 60, 10.0 + (i % 250) as f64 / 10.0, 30 + i % 60,
                    (i % 400) as f64 / 10.0, 990.0 + (i % 400) as f64 / 10.0, i % 12, i % 1000, i % 1000
                ),
                _ => format!(
                    "2026-11-22T10:{:02}:{:02}Z host=app-{} source={svc} sourcetype=app level={} msg=\"cache refresh finished for tenant {} with {} entries\" duration_ms={} status=200 user=svc-{} region=eu-west-1 build=1.{}.{}",
                    (i / 60) % 60, i % 60, i % 8, if i % 30 == 0 { "WARN" } else { "INFO" }, i % 300, i * 3 % 10000, i % 700, i % 50, i % 9, i % 90
                ),
            };
            EventRecord {
                topic: "log-ingestion".into(),
                partition: (i % PARTITIONS as usize) as i32,
                offset: (i / PARTITIONS as usize) as i64,
                timestamp_ms: 1_795_860_000_000 + i as i64,
                timestamp_type: "CREATE_TIME",
                key: Some(svc.as_bytes().to_vec()),
                value: Some(value.into_bytes()),
                headers: vec![("producer".into(), b"bench".to_vec())],
            }
        })
        .collect()
}

/// The rows the handler stores, parsed once up front (not timed).
fn baseline_rows(records: &[EventRecord]) -> Result<Vec<LogRecord>> {
    let mut rows = Vec::with_capacity(records.len());
    for r in records {
        let text = std::str::from_utf8(r.value.as_deref().unwrap_or_default())?;
        let time = chrono::DateTime::from_timestamp_millis(r.timestamp_ms).unwrap_or_default();
        for (seq, mut row) in logpipe_schema::parse(text, None, time)?
            .into_iter()
            .enumerate()
        {
            row.kafka = Some(KafkaCoordinates {
                topic: r.topic.clone(),
                partition: r.partition,
                offset: r.offset,
                seq: seq as i32,
                timestamp_ms: r.timestamp_ms,
            });
            rows.push(row);
        }
    }
    Ok(rows)
}
