//! The produce function against the real broker, and its records through
//! the ingest handler.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use ingest::IngestConfig;
use logpipe_kafka::event::EventSource;
use logpipe_kafka::{KafkaSettings, Publisher};
use logpipe_schema::SourceType;
use logpipe_tests::*;
use produce::{ProduceConfig, Producer, RunInput, parse_input};

async fn producer(stack: &LocalStack) -> Producer {
    let config = ProduceConfig {
        message_timeout: Duration::from_secs(10),
        ..ProduceConfig::default()
    };
    let publisher = Publisher::new(
        KafkaSettings::plaintext(&stack.bootstrap_servers(), "produce-test"),
        None,
        config.message_timeout,
    )
    .await
    .unwrap();
    Producer::new(config, publisher)
}

fn input(v: serde_json::Value) -> RunInput {
    parse_input(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_produces_exactly_n_parseable_records_that_ingest_without_dead_letters() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let p = producer(&stack).await;
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let n = 600;
    let report = p
        .run(input(serde_json::json!({"count": n, "seed": 42})), now)
        .await
        .unwrap();
    assert_eq!(report.produced, n);
    assert_eq!(
        report.partitions.values().map(|r| r.records).sum::<usize>(),
        n
    );
    assert!(
        report.partitions.len() > 1,
        "keys spread over partitions: {report:?}"
    );

    let records = consume(&bootstrap, "log-ingestion", "produce-check", n)
        .await
        .unwrap();
    let mut expected_rows = 0i64;
    for r in &records {
        assert!(
            r.key.as_ref().is_some_and(|k| !k.is_empty()),
            "every record is keyed"
        );
        for h in ["log-format", "content-type", "producer"] {
            assert!(header(r, h).is_some(), "header {h} missing");
        }
        let text = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
        let rows = logpipe_schema::parse(text, header(r, "log-format"), now)
            .expect("generated records parse");
        assert!(
            rows.iter()
                .all(|row| row.source_type != SourceType::Generic),
            "no generic fallback: {text}"
        );
        expected_rows += rows.len() as i64;
    }
    // An entity stays on one partition.
    let mut by_key: std::collections::HashMap<&[u8], i32> = Default::default();
    for r in &records {
        let k = r.key.as_deref().unwrap();
        assert_eq!(*by_key.entry(k).or_insert(r.partition), r.partition);
    }

    let ingestor = ingestor(
        &stack,
        IngestConfig {
            message_timeout: Duration::from_secs(10),
            ..IngestConfig::default()
        },
    )
    .await
    .unwrap();
    let out = invoke(&ingestor, &event(&records, EventSource::Msk, &bootstrap))
        .await
        .unwrap();
    assert_eq!(out.summary.records_stored, n, "{:?}", out.summary);
    assert_eq!(out.summary.records_dead_lettered, 0);
    assert_eq!(out.summary.rows_inserted as i64, expected_rows);
    let db = sql(&stack.database_url()).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, expected_rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_records_and_replays_produce_one_record_per_line() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let p = producer(&stack).await;
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let run = serde_json::json!({"count": 200, "seed": 9, "anomalies": [{"kind": "error_burst", "target": "checkout"}]});
    p.run(input(run.clone()), now).await.unwrap();
    let first = consume(&bootstrap, "log-ingestion", "seed-a", 200)
        .await
        .unwrap();
    p.run(input(run), now).await.unwrap();
    let both = consume(&bootstrap, "log-ingestion", "seed-b", 400)
        .await
        .unwrap();
    let payloads = |rs: &[logpipe_kafka::EventRecord]| {
        let mut v: Vec<Vec<u8>> = rs.iter().map(|r| r.value.clone().unwrap()).collect();
        v.sort();
        v
    };
    let second: Vec<_> = both
        .iter()
        .filter(|r| {
            !first
                .iter()
                .any(|f| f.partition == r.partition && f.offset == r.offset)
        })
        .cloned()
        .collect();
    assert_eq!(second.len(), 200);
    assert_eq!(
        payloads(&first),
        payloads(&second),
        "same seed, same payloads"
    );

    // Replay: JSON lines and CSV, one record per line/row.
    let dir = stack.dir();
    let jsonl = dir.join("replay.jsonl");
    std::fs::write(&jsonl, "{\"service\":\"a\",\"level\":\"info\",\"message\":\"one\"}\n\n{\"service\":\"b\",\"level\":\"error\",\"message\":\"two\"}\n{\"service\":\"a\",\"level\":\"warn\",\"message\":\"three\"}\n").unwrap();
    let csv = dir.join("replay.csv");
    std::fs::write(&csv, "sensor_id,timestamp,temperature,humidity\nst-1,2026-11-22T10:00:00Z,21.5,40\nst-2,2026-11-22T10:00:01Z,\"22.0\",41\n").unwrap();
    let r1 = p
        .run(
            input(serde_json::json!({"replay": {"path": jsonl.to_str().unwrap()}})),
            now,
        )
        .await
        .unwrap();
    assert_eq!(r1.produced, 3);
    let r2 = p
        .run(
            input(serde_json::json!({"replay": {"path": csv.to_str().unwrap(), "format": "csv"}})),
            now,
        )
        .await
        .unwrap();
    assert_eq!(r2.produced, 2);
    let missing = p
        .run(
            input(serde_json::json!({"replay": {"path": "/nonexistent/file.jsonl"}})),
            now,
        )
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/file.jsonl"),
        "{missing}"
    );
}
