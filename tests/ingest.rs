//! The ingest function end to end: records produced to a real broker (Tansu),
//! consumed by a real consumer group, turned into the Lambda Kafka event and
//! handled by the ingest handler against a real PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use ingest::IngestConfig;
use logpipe_kafka::event::EventSource;
use logpipe_tests::*;

const TOPIC: &str = "log-ingestion";

fn config(report: bool) -> IngestConfig {
    IngestConfig {
        report_batch_item_failures: report,
        message_timeout: Duration::from_secs(5),
        ..IngestConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_becomes_rows_once_and_poison_is_dead_lettered() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let valid = every_format();
    let bad = poison();
    let mut input: Vec<Produce> = valid.iter().map(|(p, _)| p.clone()).collect();
    input.extend(bad.iter().map(|(p, _)| p.clone()));
    // A valid record with no key and one with non-ASCII header bytes.
    input.push(Produce {
        key: None,
        value: Some(b"keyless generic line".to_vec()),
        headers: vec![],
    });
    input.push(Produce::text("hdr", "header bytes over 127").with_format("text"));
    input
        .last_mut()
        .unwrap()
        .headers
        .push(("producer".into(), "café".as_bytes().to_vec()));
    produce(&bootstrap, TOPIC, &input).await.unwrap();

    let records = consume(&bootstrap, TOPIC, "test-consumer", input.len())
        .await
        .unwrap();
    let event = event(&records, EventSource::Msk, &bootstrap);
    let handler = ingestor(&stack, config(true)).await.unwrap();

    let expected_rows: i64 = valid.iter().map(|(_, n)| n).sum::<i64>() + 2;
    let valid_records = valid.len() + 2;
    let first = invoke(&handler, &event)
        .await
        .expect("first invocation succeeds");
    let s = &first.summary;
    assert!(first.batch.batch_item_failures.is_empty(), "{first:?}");
    assert_eq!(s.records_in, input.len());
    assert_eq!(s.records_stored, valid_records, "{s:?}");
    assert_eq!(s.records_dead_lettered, bad.len(), "{s:?}");
    assert_eq!(
        s.records_stored + s.records_dead_lettered,
        s.records_in,
        "every record accounted for"
    );
    assert_eq!(s.rows_inserted as i64, expected_rows);
    let mut want_classes: BTreeMap<String, usize> = BTreeMap::new();
    for (_, class) in &bad {
        *want_classes.entry(class.to_string()).or_default() += 1;
    }
    assert_eq!(s.dead_letter_classes, want_classes);

    let db = sql(&stack.database_url()).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, expected_rows);
    // Every format landed under its own source type.
    let types = count(&db, "SELECT count(DISTINCT source_type) FROM logs").await;
    assert_eq!(types, 9, "all nine source types stored");
    // Full-text search finds a message.
    assert_eq!(
        count(&db, "SELECT count(*) FROM logs WHERE to_tsvector('simple', message) @@ plainto_tsquery('simple', 'payment declined')").await,
        1
    );

    // The same event twice more: nothing new.
    for _ in 0..2 {
        let again = invoke(&handler, &event).await.expect("replay succeeds");
        assert_eq!(
            again.summary.records_duplicate,
            input.len(),
            "{:?}",
            again.summary
        );
        assert_eq!(again.summary.rows_inserted, 0);
        assert_eq!(
            again.summary.records_dead_lettered, 0,
            "replays are not dead-lettered twice"
        );
    }
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, expected_rows);

    // A second consumer group on the same topic has no progress of its own:
    // its rows already exist, so the direct COPY conflicts and the staging
    // path inserts nothing.
    let other = ingestor(
        &stack,
        IngestConfig {
            consumer_group: "another-group".into(),
            ..config(true)
        },
    )
    .await
    .unwrap();
    let second = invoke(&other, &event).await.expect("second group succeeds");
    assert_eq!(second.summary.rows_inserted, 0, "{:?}", second.summary);
    assert_eq!(second.summary.rows_already_present as i64, expected_rows);
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, expected_rows);

    // The poison records are on the DLQ with their error headers.
    let dead = consume(&bootstrap, "log-ingestion.dlq", "test-dlq", bad.len())
        .await
        .unwrap();
    let mut got_classes: Vec<&str> = dead
        .iter()
        .map(|r| header(r, "dlq-error-class").unwrap())
        .collect();
    got_classes.sort();
    let mut want: Vec<&str> = bad.iter().map(|(_, c)| *c).collect();
    want.sort();
    assert_eq!(got_classes, want);
    for r in &dead {
        assert_eq!(header(r, "dlq-source-topic"), Some(TOPIC));
        let offset: i64 = header(r, "dlq-source-offset").unwrap().parse().unwrap();
        let partition: i32 = header(r, "dlq-source-partition").unwrap().parse().unwrap();
        let original = records
            .iter()
            .find(|o| o.offset == offset && o.partition == partition)
            .expect("source record");
        assert_eq!(r.key, original.key);
        assert_eq!(header(r, "dlq-function"), Some("ingest"));
        assert!(!header(r, "dlq-error-message").unwrap().is_empty());
        if header(r, "dlq-error-class") != Some("oversized") {
            assert_eq!(
                r.value, original.value,
                "dead letter keeps the original value"
            );
        }
    }
    // Stored rows + dead letters = input.
    assert_eq!(s.records_stored + dead.len(), input.len());

    // Normalized records were forwarded once each, keyed by entity, with
    // their record id in a header.
    let forwarded = consume(
        &bootstrap,
        "log-processing",
        "test-forward",
        2 * expected_rows as usize,
    )
    .await
    .unwrap();
    let mut ids: Vec<&str> = forwarded
        .iter()
        .filter_map(|r| header(r, "record-id"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), expected_rows as usize);
    for f in &forwarded {
        let one: logpipe_schema::LogRecord =
            serde_json::from_slice(f.value.as_deref().unwrap()).unwrap();
        assert_eq!(
            header(f, "record-id"),
            one.kafka.as_ref().map(|k| k.record_id()).as_deref()
        );
        assert_eq!(f.key.as_deref(), Some(one.entity().as_bytes()));
    }

    // Progress stored per partition, at the last offset of each.
    let progress = count(
        &db,
        "SELECT count(*) FROM ingest_progress WHERE consumer_group = 'logpipe-ingest'",
    )
    .await;
    let partitions: std::collections::BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert_eq!(progress as usize, partitions.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_views_answer() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let input: Vec<Produce> = every_format().into_iter().map(|(p, _)| p).collect();
    produce(&bootstrap, TOPIC, &input).await.unwrap();
    let records = consume(&bootstrap, TOPIC, "views", input.len())
        .await
        .unwrap();
    let ingestor = ingestor(&stack, config(false)).await.unwrap();
    invoke(
        &ingestor,
        &event(&records, EventSource::SelfManaged, &bootstrap),
    )
    .await
    .unwrap();
    let db = sql(&stack.database_url()).await.unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM status_code_distribution WHERE http_status = 502"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT requests FROM top_endpoints WHERE http_path = '/api/orders'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM traffic_by_client_ip").await,
        2
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM error_rate_per_minute WHERE errors > 0"
        )
        .await
            >= 1
    );
}

/// PostgreSQL dies while the batch transaction is open: nothing of the batch
/// is visible, the handler reports every partition for retry, and the retry
/// after a restart stores exactly the expected rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_mid_batch_loses_nothing_and_stores_nothing_twice() {
    let mut stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let valid = every_format();
    let input: Vec<Produce> = valid.iter().map(|(p, _)| p.clone()).collect();
    let expected_rows: i64 = valid.iter().map(|(_, n)| n).sum();
    produce(&bootstrap, TOPIC, &input).await.unwrap();
    let records = consume(&bootstrap, TOPIC, "fault", input.len())
        .await
        .unwrap();
    let event = event(&records, EventSource::Msk, &bootstrap);
    let ingestor = ingestor(&stack, config(true)).await.unwrap();
    ingestor.ensure_schema().await.unwrap();

    // Hold a lock on ingest_progress so the batch blocks after inserting its
    // rows, inside its transaction; then stop the server under it.
    let mut locker = sql(&stack.database_url()).await.unwrap();
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE ingest_progress IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let watcher = sql(&stack.database_url()).await.unwrap();
    let handle = {
        let event = event.clone();
        let ingestor = std::sync::Arc::new(ingestor);
        let i2 = ingestor.clone();
        (
            tokio::spawn(async move { invoke(&i2, &event).await }),
            ingestor,
        )
    };
    let (task, ingestor) = handle;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = count(&watcher, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ingest-test' AND wait_event_type = 'Lock'").await;
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never reached the progress write"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.postgres.kill();
    let outcome = task
        .await
        .unwrap()
        .expect("with ReportBatchItemFailures the handler answers");
    let failures = &outcome.batch.batch_item_failures;
    let partitions: std::collections::BTreeMap<i32, i64> =
        records.iter().fold(BTreeMap::new(), |mut m, r| {
            let e = m.entry(r.partition).or_insert(r.offset);
            *e = (*e).min(r.offset);
            m
        });
    assert_eq!(
        failures.len(),
        partitions.len(),
        "every partition is handed back: {failures:?}"
    );
    for f in failures {
        let p: i32 = f
            .item_identifier
            .partition
            .rsplit_once('-')
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert_eq!(
            f.item_identifier.offset, partitions[&p],
            "resume at the first offset"
        );
    }
    assert_eq!(outcome.summary.records_retry, input.len());
    assert_eq!(outcome.summary.records_stored, 0);
    drop(lock);
    drop(locker);
    drop(watcher);

    stack.postgres.restart().unwrap();
    let db = sql(&stack.database_url()).await.unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM logs").await,
        0,
        "no partial batch is visible"
    );

    // Without ReportBatchItemFailures the same failure is an error, never a success.
    stack.postgres.stop();
    let strict = ingestor_with(&stack, config(false)).await;
    assert!(
        invoke(&strict, &event).await.is_err(),
        "an ESM that ignores failure lists gets an error"
    );
    stack.postgres.restart().unwrap();

    let retry = invoke(&ingestor, &event).await.expect("the retry succeeds");
    assert!(retry.batch.batch_item_failures.is_empty());
    assert_eq!(retry.summary.records_stored, input.len());
    let db = sql(&stack.database_url()).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, expected_rows);
    let again = invoke(&ingestor, &event).await.unwrap();
    assert_eq!(again.summary.records_duplicate, input.len());
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, expected_rows);
}

async fn ingestor_with(stack: &LocalStack, config: IngestConfig) -> ingest::Ingestor {
    ingestor(stack, config).await.unwrap()
}

/// A dead letter that cannot be published (its topic is missing) stops only
/// its own partition, at that record; the other partitions commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dead_letter_stops_only_its_partition() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    // `other` has no `other.dlq` topic.
    logpipe_devstack::create_topics(&bootstrap, &[("other", 1)])
        .await
        .unwrap();
    produce(
        &bootstrap,
        TOPIC,
        &[
            Produce::text("a", "fine line one"),
            Produce::text("a", "{broken json"),
        ],
    )
    .await
    .unwrap();
    produce(
        &bootstrap,
        "other",
        &[
            Produce::text("b", "fine line two"),
            Produce::text("b", "{broken json"),
            Produce::text("b", "after the poison"),
        ],
    )
    .await
    .unwrap();
    let mut records = consume(&bootstrap, TOPIC, "partial", 2).await.unwrap();
    records.extend(consume(&bootstrap, "other", "partial", 3).await.unwrap());
    let event = event(&records, EventSource::SelfManaged, &bootstrap);
    let ingestor = ingestor(&stack, config(true)).await.unwrap();
    let out = invoke(&ingestor, &event)
        .await
        .expect("partial failure is reported, not raised");
    let other_poison = records
        .iter()
        .find(|r| r.topic == "other" && r.value.as_deref() == Some(b"{broken json"))
        .unwrap();
    assert_eq!(out.batch.batch_item_failures.len(), 1, "{out:?}");
    let f = &out.batch.batch_item_failures[0];
    assert_eq!(
        f.item_identifier.partition,
        format!("other-{}", other_poison.partition)
    );
    assert_eq!(f.item_identifier.offset, other_poison.offset);
    let s = &out.summary;
    assert_eq!(
        (s.records_stored, s.records_dead_lettered, s.records_retry),
        (2, 1, 2),
        "{s:?}"
    );
    assert_eq!(
        s.records_stored + s.records_dead_lettered + s.records_retry,
        s.records_in
    );
    let db = sql(&stack.database_url()).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, 2);
    // Once the topic exists, the retry (from the reported offset) completes.
    logpipe_devstack::create_topics(&bootstrap, &[("other.dlq", 1)])
        .await
        .unwrap();
    let retry = invoke(&ingestor, &event).await.unwrap();
    assert!(retry.batch.batch_item_failures.is_empty(), "{retry:?}");
    assert_eq!(retry.summary.records_duplicate, 3);
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, 3);
}
