//! The detect function on the real stack: produce → ingest →
//! `log-processing` → detect → `alerts` / `ml-predictions`, redelivery, a
//! broker outage during publishing, and concurrent updates of one entity.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use detect::{DetectConfig, DetectResponse, Detector, RetryBatch};
use ingest::IngestConfig;
use lambda_runtime::{Context as LambdaContext, LambdaEvent};
use logpipe_detect::window::WindowConfig;
use logpipe_kafka::event::{EventRecord, EventSource, KafkaEventPayload};
use logpipe_kafka::{KafkaSettings, OutMessage, Publisher};
use logpipe_postgres::{Database, DbSettings};
use logpipe_schema::{Alert, KafkaCoordinates, LogRecord, Prediction, SourceType};
use logpipe_tests::*;
use produce::{ProduceConfig, Producer, parse_input};

async fn detector(stack: &LocalStack, config: DetectConfig) -> Detector {
    let db = Database::new(
        DbSettings::from_url(&stack.database_url(), "detect-test"),
        None,
    )
    .unwrap();
    let publisher = Publisher::new(
        KafkaSettings::plaintext(&stack.bootstrap_servers(), "detect-test"),
        None,
        config.message_timeout,
    )
    .await
    .unwrap();
    Detector::new(config, db, publisher)
}

/// Minute windows; a partition's batch may run a minute ahead of another's.
fn test_config() -> DetectConfig {
    let mut c = DetectConfig {
        report_batch_item_failures: true,
        message_timeout: Duration::from_secs(5),
        ..DetectConfig::default()
    };
    c.engine.window = WindowConfig {
        width_secs: 60,
        allowed_lateness_secs: 60,
    };
    c
}

async fn invoke_detect(
    d: &Detector,
    event: &serde_json::Value,
) -> Result<DetectResponse, RetryBatch> {
    let payload: KafkaEventPayload = serde_json::from_value(event.clone()).unwrap();
    detect::handle(d, LambdaEvent::new(payload, LambdaContext::default())).await
}

fn by_partition(records: Vec<EventRecord>) -> BTreeMap<i32, Vec<EventRecord>> {
    let mut out: BTreeMap<i32, Vec<EventRecord>> = BTreeMap::new();
    for r in records {
        out.entry(r.partition).or_default().push(r);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_burst_is_one_alert_with_a_prediction_per_window_and_redelivery_adds_nothing() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let produce_config = ProduceConfig {
        span: Duration::from_secs(60),
        message_timeout: Duration::from_secs(10),
        ..ProduceConfig::default()
    };
    let producer = Producer::new(
        produce_config.clone(),
        Publisher::new(
            KafkaSettings::plaintext(&bootstrap, "produce-test"),
            None,
            produce_config.message_timeout,
        )
        .await
        .unwrap(),
    );
    let ingestor = ingestor(&stack, IngestConfig::default()).await.unwrap();
    let detector = detector(&stack, test_config()).await;
    let ingest_tap = Tap::new(&bootstrap, "log-ingestion", "e2e-ingest");
    let detect_tap = Tap::new(&bootstrap, "log-processing", "e2e-detect");

    // Twelve one-minute scheduled runs; the eighth carries the incident.
    let t0 = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
    let incident_run = 7i64;
    let mut forwarded = 0usize;
    let mut totals = BTreeMap::<&str, u64>::new();
    let mut alerting_events = Vec::new();
    for run in 0..12i64 {
        let mut input = serde_json::json!({"count": 500, "seed": 1000 + run});
        if run == incident_run {
            input["anomalies"] = serde_json::json!([
                {"kind": "error_burst", "target": "checkout", "start": 0.0, "share": 1.0}
            ]);
        }
        let at = t0 + chrono::Duration::minutes(run);
        let report = producer
            .run(parse_input(&input).unwrap(), at)
            .await
            .unwrap();
        let raw = ingest_tap.take(report.produced).await;
        let ingested = invoke(
            &ingestor,
            &event(&raw, EventSource::SelfManaged, &bootstrap),
        )
        .await
        .unwrap();
        assert_eq!(ingested.summary.records_dead_lettered, 0);
        forwarded += ingested.summary.records_forwarded;

        // As the event source mapping would: one batch per partition.
        let normalized = detect_tap.take(ingested.summary.records_forwarded).await;
        for (_, records) in by_partition(normalized) {
            let ev = event(&records, EventSource::SelfManaged, &bootstrap);
            let r = invoke_detect(&detector, &ev).await.unwrap();
            assert!(r.batch.batch_item_failures.is_empty(), "{r:?}");
            let s = &r.summary;
            assert_eq!(
                s.records_in,
                s.records_processed
                    + s.records_duplicate
                    + s.records_dead_lettered
                    + s.records_retry
            );
            *totals.entry("processed").or_default() += s.records_processed as u64;
            *totals.entry("dead_lettered").or_default() += s.records_dead_lettered as u64;
            *totals.entry("retry").or_default() += s.records_retry as u64;
            *totals.entry("late").or_default() += s.records_late as u64;
            *totals.entry("alerts").or_default() += s.alerts_new;
            *totals.entry("predictions").or_default() += s.predictions_new;
            if s.alerts_new > 0 {
                alerting_events.push(ev);
            }
        }
    }
    eprintln!("totals: {totals:?}, forwarded {forwarded}");
    assert_eq!(
        totals["processed"] as usize, forwarded,
        "every record was seen"
    );
    assert_eq!(totals["dead_lettered"], 0);
    assert_eq!(totals["retry"], 0);

    // The alerts topic: exactly one alert, for the incident.
    let alerts_tap = Tap::new(&bootstrap, "alerts", "alerts-check");
    let alerts: Vec<Alert> = parse_values(&alerts_tap.take(totals["alerts"] as usize).await);
    for a in &alerts {
        eprintln!("alert: {} — {}", a.id, a.message);
    }
    let incident: Vec<&Alert> = alerts
        .iter()
        .filter(|a| {
            a.entity == "checkout" && (a.detector == "error_rate" || a.detector == "http_5xx_rate")
        })
        .collect();
    assert_eq!(incident.len(), 1, "one alert for the incident");
    let incident_start = t0 + chrono::Duration::minutes(incident_run);
    assert!(
        incident[0].window_start >= incident_start
            && incident[0].window_start < incident_start + chrono::Duration::minutes(2),
        "{:?}",
        incident[0]
    );
    assert!(!incident[0].sample_record_ids.is_empty());
    assert_eq!(alerts.len(), 1, "and nothing else fired: {alerts:?}");

    // ml-predictions: one per closed window and entity, ids unique, and the
    // incident's entity has an unbroken run of windows.
    let predictions_tap = Tap::new(&bootstrap, "ml-predictions", "predictions-check");
    let predictions: Vec<Prediction> =
        parse_values(&predictions_tap.take(totals["predictions"] as usize).await);
    let ids: BTreeSet<&str> = predictions.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), predictions.len(), "prediction ids are unique");
    let checkout: Vec<DateTime<Utc>> = predictions
        .iter()
        .filter(|p| p.entity == "checkout")
        .map(|p| p.window_start)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(checkout.len() >= 10, "{checkout:?}");
    assert!(checkout[0] <= t0, "{checkout:?}");
    assert!(
        checkout
            .windows(2)
            .all(|w| w[1] - w[0] == chrono::Duration::minutes(1))
    );
    assert!(
        predictions
            .iter()
            .all(|p| (0.0..=1.0).contains(&p.anomaly_score) && p.lower <= p.upper)
    );

    // The batch that raised the alert, delivered three more times.
    assert_eq!(alerting_events.len(), 1);
    for _ in 0..3 {
        let r = invoke_detect(&detector, &alerting_events[0]).await.unwrap();
        assert_eq!(r.summary.records_duplicate, r.summary.records_in);
        assert_eq!((r.summary.alerts_new, r.summary.predictions_new), (0, 0));
    }
    let db = sql(&stack.database_url()).await.unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM detect_outbox WHERE kind = 'alert'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM detect_outbox WHERE published_at IS NULL"
        )
        .await,
        0
    );
    let again = alerts_tap.rest(Duration::from_secs(3)).await;
    assert!(again.is_empty(), "no alert published twice: {again:?}");
}

/// A normalized sensor record as ingest forwards it.
fn sensor_record(
    partition: i32,
    offset: i64,
    at: DateTime<Utc>,
    station: &str,
    temp: f64,
) -> EventRecord {
    let mut r = LogRecord {
        event_time: at,
        source_type: SourceType::Sensor,
        service: Some("weather".into()),
        host: Some(station.into()),
        level: None,
        message: String::new(),
        http: None,
        metrics: [("temperature".to_string(), temp)].into_iter().collect(),
        attributes: serde_json::Map::new(),
        raw: String::new(),
        kafka: Some(KafkaCoordinates {
            topic: "log-ingestion".into(),
            partition,
            offset,
            seq: 0,
            timestamp_ms: at.timestamp_millis(),
        }),
    };
    r.level = None;
    EventRecord {
        topic: "log-processing".into(),
        partition,
        offset,
        timestamp_ms: at.timestamp_millis(),
        timestamp_type: "CREATE_TIME",
        key: Some(format!("log-ingestion-{partition}-{offset}").into_bytes()),
        value: Some(serde_json::to_vec(&r).unwrap()),
        headers: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_owed_while_the_broker_is_down_are_published_once_after_it_returns() {
    // The function's own log lines (RUST_LOG) help when this fails.
    logpipe_telemetry::init_json_logs();
    let mut stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let detector = detector(&stack, test_config()).await;
    detector.check_topics().await;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    // Two stations over the sensor threshold, plus one malformed record.
    let mut records: Vec<EventRecord> = (0..6)
        .map(|i| {
            let station = if i % 2 == 0 { "st-001" } else { "st-002" };
            sensor_record(0, i, t0 + chrono::Duration::seconds(i * 5), station, 45.0)
        })
        .collect();
    // A later reading of each moves its own clock, so its first minute
    // closes (each entity is judged on its own clock: another station's
    // reading would not close theirs).
    for (offset, station) in [(6, "st-001"), (7, "st-002")] {
        records.push(sensor_record(
            0,
            offset,
            t0 + chrono::Duration::minutes(3),
            station,
            20.0,
        ));
    }
    let mut bad = sensor_record(0, 8, t0, "st-001", 1.0);
    bad.value = Some(b"{not json".to_vec());
    records.push(bad);
    let ev = event(&records, EventSource::SelfManaged, &bootstrap);

    stack.stop_broker();
    let r = invoke_detect(&detector, &ev).await.unwrap();
    assert_eq!(
        r.batch.batch_item_failures,
        vec![logpipe_kafka::BatchItemFailure::new("log-processing", 0, 0)],
        "the partition is handed back: {r:?}"
    );
    // The dead letter could not be delivered either, so progress stops
    // before it; the alerts wait in the outbox, so the whole batch is
    // handed back (the 8 committed records come back as duplicates).
    assert_eq!(r.summary.records_processed, 0);
    assert_eq!(r.summary.records_retry, 9);
    assert_eq!(r.summary.records_in, 9);
    let db = sql(&stack.database_url()).await.unwrap();
    let pending =
        "SELECT count(*) FROM detect_outbox WHERE kind = 'alert' AND published_at IS NULL";
    assert_eq!(count(&db, pending).await, 2);

    // Without ReportBatchItemFailures the same situation is an error.
    let strict = detector_with(&stack, false).await;
    assert!(invoke_detect(&strict, &ev).await.is_err());

    stack.restart_broker().await.unwrap();
    let alerts_tap = Tap::new(&bootstrap, "alerts", "alerts-after-outage");
    let dlq_tap = Tap::new(&bootstrap, "log-processing.dlq", "dlq-after-outage");
    // The retry: records done are skipped, the dead letter goes out, the
    // owed alerts are published.
    let mut retry = None;
    for _ in 0..60 {
        match invoke_detect(&detector, &ev).await {
            Ok(r) if r.batch.batch_item_failures.is_empty() => {
                retry = Some(r);
                break;
            }
            // The fresh broker may need a moment before it takes writes.
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    let retry = retry.expect("retry succeeds once the broker is back");
    assert_eq!(retry.summary.records_duplicate, 8);
    assert_eq!(retry.summary.records_dead_lettered, 1);
    assert_eq!(count(&db, pending).await, 0);
    let alerts: Vec<Alert> = parse_values(&alerts_tap.take(2).await);
    let ids: BTreeSet<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{alerts:?}");
    assert!(
        alerts
            .iter()
            .all(|a| a.rule.as_deref() == Some("temperature_high"))
    );
    assert_eq!(dlq_tap.take(1).await.len(), 1);

    // Once more: nothing new anywhere.
    let r = invoke_detect(&detector, &ev).await.unwrap();
    assert_eq!(r.summary.records_duplicate, 9);
    assert!(alerts_tap.rest(Duration::from_secs(3)).await.is_empty());
}

/// A broker that restarts empty no longer knows the producer's id, so the
/// first send after it returns is refused; the producer is replaced and the
/// messages go out within the same call, each result in its message's place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_after_a_broker_restart_succeeds_within_one_call() {
    logpipe_telemetry::init_json_logs();
    let mut stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let publisher = Publisher::new(
        KafkaSettings::plaintext(&bootstrap, "restart-test"),
        None,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let message = |i: usize| {
        move || OutMessage {
            topic: "alerts".into(),
            key: Some(format!("k-{i}").into_bytes()),
            payload: Some(format!("{{\"n\":{i}}}").into_bytes()),
            headers: vec![("message-id".into(), format!("m-{i}").into_bytes())],
        }
    };
    let before = publisher.publish_all((0..5).map(message).collect()).await;
    assert!(before.iter().all(Result::is_ok), "{before:?}");
    assert_eq!(publisher.rebuilds(), 0);

    stack.restart_broker().await.unwrap();
    let tap = Tap::new(&bootstrap, "alerts", "after-restart");
    let after = publisher.publish_all((5..25).map(message).collect()).await;
    assert!(after.iter().all(Result::is_ok), "{after:?}");
    assert!(
        publisher.rebuilds() >= 1,
        "the restarted broker refused the old producer, so it was replaced"
    );

    // Exactly those 20 messages, and each result says where its own landed.
    let consumed = tap.take(20).await;
    let landed: BTreeMap<Vec<u8>, (i32, i64)> = consumed
        .iter()
        .map(|r| (r.key.clone().unwrap(), (r.partition, r.offset)))
        .collect();
    assert_eq!(landed.len(), 20, "no duplicates: {consumed:?}");
    for (i, result) in (5..25).zip(&after) {
        let d = result.as_ref().unwrap();
        assert_eq!(
            landed.get(format!("k-{i}").as_bytes()),
            Some(&(d.partition, d.offset)),
            "message {i}"
        );
    }
    assert!(tap.rest(Duration::from_secs(3)).await.is_empty());
}

async fn detector_with(stack: &LocalStack, report: bool) -> Detector {
    let mut c = test_config();
    c.report_batch_item_failures = report;
    c.message_timeout = Duration::from_secs(2);
    detector(stack, c).await
}

/// Two invocations, different partitions, the same entity, at the same
/// time: both updates survive (the entity row is locked, not overwritten).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_for_one_entity_lose_no_update() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let a = detector(&stack, test_config()).await;
    let b = detector(&stack, test_config()).await;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 21, 14, 0, 0).unwrap();
    let db = sql(&stack.database_url()).await.unwrap();
    let rounds = 5;
    let per_batch = 200i64;
    for round in 0..rounds {
        let batch = |partition: i32| {
            let records: Vec<EventRecord> = (0..per_batch)
                .map(|i| {
                    let offset = round * per_batch + i;
                    sensor_record(
                        partition,
                        offset,
                        t0 + chrono::Duration::milliseconds(offset * 100),
                        "st-007",
                        20.0,
                    )
                })
                .collect();
            event(&records, EventSource::SelfManaged, &bootstrap)
        };
        let (ea, eb) = (batch(1), batch(2));
        // Hold the entity's row so both invocations queue behind it, then
        // let go: they must serialize, not overwrite each other.
        let mut holder = sql(&stack.database_url()).await.unwrap();
        let txn = holder.transaction().await.unwrap();
        if round > 0 {
            txn.execute(
                "SELECT 1 FROM detect_entity_state WHERE entity = 'st-007' FOR UPDATE",
                &[],
            )
            .await
            .unwrap();
        }
        let (ra, rb, ()) = tokio::join!(invoke_detect(&a, &ea), invoke_detect(&b, &eb), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            txn.rollback().await.unwrap();
        });
        assert_eq!(ra.unwrap().summary.records_processed, per_batch as usize);
        assert_eq!(rb.unwrap().summary.records_processed, per_batch as usize);
        let seen = count(
            &db,
            "SELECT records_seen FROM detect_entity_state WHERE entity = 'st-007'",
        )
        .await;
        assert_eq!(seen, 2 * per_batch * (round + 1), "round {round}");
    }
    let versions = count(
        &db,
        "SELECT version FROM detect_entity_state WHERE entity = 'st-007'",
    )
    .await;
    assert!(
        versions >= 2 * rounds,
        "every batch wrote its own version: {versions}"
    );
    // States, rewritten by every batch, are stored lz4-compressed where the
    // server has lz4 (V11).
    let has_lz4 = count(
        &db,
        "SELECT count(*) FROM pg_settings
          WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)",
    )
    .await;
    let lz4 = count(
        &db,
        "SELECT count(*) FROM pg_attribute
          WHERE attrelid = 'detect_entity_state'::regclass AND attname = 'state'
            AND attcompression = 'l'",
    )
    .await;
    assert_eq!(lz4, has_lz4);
}

/// Two stations on two partitions, one's clock two hours behind the
/// other's (a replay, or a source with a slow clock): each is judged on its
/// own clock. None of the lagging station's records is late, its breach is
/// reported when its own window closes; the other station's records do not
/// close its windows, its own silence (wall time) does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_whose_clock_runs_behind_is_judged_on_its_own_clock() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let d = detector(&stack, test_config()).await;
    let db = sql(&stack.database_url()).await.unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
    let ahead_t0 = t0 + chrono::Duration::hours(2);
    // One batch per station and round: six readings 10 s apart.
    let batch = |partition: i32, station: &str, start: DateTime<Utc>, round: i64, hot: bool| {
        let records: Vec<EventRecord> = (0..6)
            .map(|i| {
                let temp = if hot && i == 0 { 45.0 } else { 20.0 };
                let at = start + chrono::Duration::seconds(round * 60 + i * 10);
                sensor_record(partition, round * 6 + i, at, station, temp)
            })
            .collect();
        event(&records, EventSource::SelfManaged, &bootstrap)
    };
    let mut late = 0;
    let mut processed = 0;
    for round in 0..10 {
        for e in [
            batch(0, "st-ahead", ahead_t0, round, false),
            batch(1, "st-behind", t0, round, round == 3),
        ] {
            let s = invoke_detect(&d, &e).await.unwrap().summary;
            late += s.records_late;
            processed += s.records_processed;
        }
    }
    assert_eq!(processed, 120);
    assert_eq!(
        late, 0,
        "the lagging station's records are on time for its own clock"
    );
    let breaches = count(
        &db,
        "SELECT count(*) FROM detect_outbox WHERE kind = 'alert' \
          AND payload->>'entity' = 'st-behind' AND payload->>'detector' = 'threshold'",
    )
    .await;
    assert_eq!(breaches, 1, "its breach at 10:03 is reported");

    let before = closed_until(&db, "st-behind").await;
    assert!(before < ahead_t0, "closed on its own clock: {before}");
    // st-behind pauses; st-ahead goes on for five more minutes: that moves
    // nothing of st-behind's.
    for round in 10..15 {
        let s = invoke_detect(&d, &batch(0, "st-ahead", ahead_t0, round, false))
            .await
            .unwrap()
            .summary;
        assert_eq!(s.records_late, 0);
    }
    assert_eq!(closed_until(&db, "st-behind").await, before);
    // Ten minutes of wall-time silence (IDLE_ADVANCE_SECONDS is 300): its
    // clock moves on by the five minutes beyond the allowance.
    db.execute(
        "UPDATE detect_entity_state
            SET state = jsonb_set(state, '{seen_at}',
                    to_jsonb((state->>'seen_at')::timestamptz - interval '10 minutes')),
                next_close_at = next_close_at - interval '10 minutes'
          WHERE entity = 'st-behind'",
        &[],
    )
    .await
    .unwrap();
    invoke_detect(&d, &serde_json::json!({"tick": true}))
        .await
        .unwrap();
    let after = closed_until(&db, "st-behind").await;
    assert_eq!(
        (after - before).num_seconds(),
        300,
        "its silent windows close once it has been idle"
    );
}

async fn closed_until(
    db: &logpipe_postgres::tokio_postgres::Client,
    entity: &str,
) -> DateTime<Utc> {
    db.query_one(
        "SELECT (state->>'closed_until')::timestamptz FROM detect_entity_state WHERE entity = $1",
        &[&entity],
    )
    .await
    .unwrap()
    .get(0)
}

/// The same records through the detect function twice, in different
/// batchings and partition orders (as concurrent mappings would deliver
/// them): the alerts and predictions are the same, id for id and byte for
/// byte. Each entity is judged on its own clock, so how other entities'
/// batches interleave with its own changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_do_not_depend_on_how_batches_interleave() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let d = detector(&stack, test_config()).await;
    let db = sql(&stack.database_url()).await.unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap();
    // Three stations, twenty minutes of readings every 10 s; st-b runs an
    // hour behind the others; a few breaches.
    let stations: [(&str, i32, i64); 3] = [("st-a", 0, 0), ("st-b", 1, -3600), ("st-c", 1, 0)];
    let mut by_partition: BTreeMap<i32, Vec<EventRecord>> = BTreeMap::new();
    for i in 0..120i64 {
        for (station, partition, shift) in stations {
            let temp = match (station, i) {
                ("st-a", 30) | ("st-b", 45) | ("st-c", 70) | ("st-c", 71) => 45.0,
                _ => 20.0 + (i % 7) as f64 * 0.1,
            };
            let list = by_partition.entry(partition).or_default();
            let offset = list.len() as i64;
            let at = t0 + chrono::Duration::seconds(shift + i * 10);
            list.push(sensor_record(partition, offset, at, station, temp));
        }
    }
    let run = |order: Vec<(i32, std::ops::Range<usize>)>| {
        let (d, db, by_partition, bootstrap) = (&d, &db, &by_partition, &bootstrap);
        async move {
            db.batch_execute(
                "TRUNCATE detect_entity_state, detect_clock, detect_outbox; \
                 DELETE FROM ingest_progress WHERE consumer_group = 'logpipe-detect'",
            )
            .await
            .unwrap();
            let mut late = 0;
            for (partition, range) in order {
                let records = &by_partition[&partition][range];
                let e = event(records, EventSource::SelfManaged, bootstrap);
                let s = invoke_detect(d, &e).await.unwrap().summary;
                assert_eq!(s.records_processed, records.len(), "{s:?}");
                late += s.records_late;
            }
            let rows = db
                .query(
                    "SELECT kind || ' ' || payload::text FROM detect_outbox ORDER BY kind, id",
                    &[],
                )
                .await
                .unwrap();
            let out: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            (out, late)
        }
    };
    let (p0, p1) = (by_partition[&0].len(), by_partition[&1].len());
    // Run 1: small batches, partition 0 first in every round.
    let mut order = Vec::new();
    for k in (0..p1.max(p0)).step_by(20) {
        if k < p0 {
            order.push((0, k..(k + 10).min(p0)));
        }
        order.push((1, k..(k + 20).min(p1)));
        if k + 10 < p0 {
            order.push((0, k + 10..(k + 20).min(p0)));
        }
    }
    let (first, late_first) = run(order).await;
    // Run 2: partition 1 all at once, then partition 0 in large batches.
    let mut order = vec![(1, 0..p1)];
    for k in (0..p0).step_by(50) {
        order.push((0, k..(k + 50).min(p0)));
    }
    let (second, late_second) = run(order).await;
    assert_eq!((late_first, late_second), (0, 0));
    let alerts = first.iter().filter(|m| m.starts_with("alert ")).count();
    assert_eq!(alerts, 3, "one per breaching window: {first:#?}");
    assert!(
        first.len() > 40,
        "predictions for the closed windows: {}",
        first.len()
    );
    assert_eq!(first, second, "the same verdicts whatever the interleaving");
}
