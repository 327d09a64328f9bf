//! Pipeline health against a real broker and database: a consumer group
//! that stops part-way is STOP with the exact lag, one whose commits keep
//! coming without progress is STALL, and one that catches up is OK; after a
//! real ingest run the pipeline's own groups, freshness and DLQ add up.

use std::time::Duration;

use ingest::IngestConfig;
use logpipe_devstack::create_topics;
use logpipe_health::{EXIT_ERROR, EXIT_OK, GroupSpec, HealthOptions, HealthReport, Status, check};
use logpipe_kafka::event::EventSource;
use logpipe_kafka::rdkafka::ClientConfig;
use logpipe_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use logpipe_postgres::{Database, DbSettings};
use logpipe_tests::*;

const GROUP: &str = "health-test-consumer";
const TOPIC: &str = "health-orders";
const RECORDS: i64 = 40;
const CONSUMED_FIRST: i64 = 15;

/// Sends every record before awaiting any, so the producer batches them:
/// Tansu's ListOffsets then answers "newest batch base + 1", far below the
/// true end, which health must see past.
async fn produce_batched(bootstrap: &str, topic: &str, from: i64, count: i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "50")
        .create()
        .unwrap();
    let sends: Vec<_> = (from..from + count)
        .map(|i| {
            let value = format!("record {i}");
            let producer = producer.clone();
            async move {
                producer
                    .send(
                        FutureRecord::<str, str>::to(topic).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| e)
            }
        })
        .collect();
    for result in futures::future::join_all(sends).await {
        result.unwrap();
    }
}

fn options() -> HealthOptions {
    let mut groups = GroupSpec::pipeline_defaults();
    groups.push(GroupSpec {
        group: GROUP.into(),
        topics: vec![TOPIC.into()],
    });
    HealthOptions {
        groups,
        samples: 4,
        interval: Duration::from_millis(700),
        ..HealthOptions::default()
    }
}

async fn health(stack: &LocalStack, db: &Database) -> HealthReport {
    health_with(stack, db, &options()).await
}

async fn health_with(stack: &LocalStack, db: &Database, options: &HealthOptions) -> HealthReport {
    let mut kafka = ClientConfig::new();
    kafka.set("bootstrap.servers", stack.bootstrap_servers());
    let report = check(&kafka, Some(db), options).await.unwrap();
    eprintln!("{}", report.render_table());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_then_stalled_then_caught_up() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    create_topics(&bootstrap, &[(TOPIC, 1)]).await.unwrap();
    produce_batched(&bootstrap, "log-ingestion.dlq", 0, 3).await;
    let db = Database::new(
        DbSettings::from_url(&stack.database_url(), "health-test"),
        None,
    )
    .unwrap();

    // A real group reads what is there, commits, and goes away; more
    // records arrive. (Two separate produce calls: Tansu returns nothing to
    // a fetch that starts inside a batch, so the group must resume at a
    // batch boundary to catch up later.)
    produce_batched(&bootstrap, TOPIC, 0, CONSUMED_FIRST).await;
    let read = consume(&bootstrap, TOPIC, GROUP, CONSUMED_FIRST as usize)
        .await
        .unwrap();
    assert_eq!(read.len(), CONSUMED_FIRST as usize);
    produce_batched(&bootstrap, TOPIC, CONSUMED_FIRST, RECORDS - CONSUMED_FIRST).await;

    // No commit during the window and records waiting: STOP (rule 3).
    let report = health(&stack, &db).await;
    let group = report.group(GROUP).unwrap();
    assert_eq!(group.status, Status::Stop);
    let p = &group.partitions[0];
    assert_eq!(
        (p.committed, p.log_end, p.lag),
        (Some(CONSUMED_FIRST), RECORDS, RECORDS - CONSUMED_FIRST)
    );
    assert_eq!(p.seconds_since_last_commit, None);
    assert_eq!(group.total_lag, RECORDS - CONSUMED_FIRST);
    // The idle pipeline groups have nothing to read: OK.
    assert_eq!(report.group("logpipe-ingest").unwrap().status, Status::Ok);
    assert_eq!(report.exit_code(), EXIT_ERROR);
    let dlq = report
        .dlq
        .iter()
        .find(|d| d.topic == "log-ingestion.dlq")
        .unwrap();
    assert_eq!((dlq.records, dlq.counted_by_reading), (3, true));

    // The group keeps recording progress at the same offset (a function
    // failing on one batch and retrying): commits without progress, STALL.
    let client = sql(&stack.database_url()).await.unwrap();
    client
        .execute(
            "INSERT INTO ingest_progress (consumer_group, topic, kafka_partition, last_offset)
             VALUES ($1, $2, 0, $3)",
            &[&GROUP, &TOPIC, &(CONSUMED_FIRST - 1)],
        )
        .await
        .unwrap();
    let bumper = tokio::spawn(async move {
        loop {
            client
                .execute(
                    "UPDATE ingest_progress SET updated_at = now() WHERE consumer_group = $1",
                    &[&GROUP],
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let report = health(&stack, &db).await;
    bumper.abort();
    let group = report.group(GROUP).unwrap();
    assert_eq!(group.status, Status::Stall);
    assert_eq!(group.partitions[0].lag, RECORDS - CONSUMED_FIRST);
    assert!(group.partitions[0].seconds_since_last_commit.is_some());
    let fresh = report.ingest_freshness.as_ref().unwrap();
    assert!(
        fresh
            .iter()
            .any(|f| f.group == GROUP && f.last_offset == CONSUMED_FIRST - 1),
        "{fresh:?}"
    );
    let client = sql(&stack.database_url()).await.unwrap();
    client
        .execute(
            "DELETE FROM ingest_progress WHERE consumer_group = $1",
            &[&GROUP],
        )
        .await
        .unwrap();

    // The group comes back and reads to the end: lag 0, OK, exit 0.
    let rest = consume(
        &bootstrap,
        TOPIC,
        GROUP,
        (RECORDS - CONSUMED_FIRST) as usize,
    )
    .await
    .unwrap();
    assert_eq!(rest.first().map(|r| r.offset), Some(CONSUMED_FIRST));
    let report = health(&stack, &db).await;
    let group = report.group(GROUP).unwrap();
    assert_eq!(group.status, Status::Ok);
    let p = &group.partitions[0];
    assert_eq!((p.committed, p.log_end, p.lag), (Some(RECORDS), RECORDS, 0));
    assert_eq!(report.exit_code(), EXIT_OK);
    assert!(report.all_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_groups_after_a_real_ingest_run() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let db = Database::new(
        DbSettings::from_url(&stack.database_url(), "health-test"),
        None,
    )
    .unwrap();
    let mut input: Vec<Produce> = every_format().into_iter().map(|(p, _)| p).collect();
    let poison = poison();
    input.extend(poison.iter().map(|(p, _)| p.clone()));
    produce(&bootstrap, "log-ingestion", &input).await.unwrap();

    // The ingest mapping's group reads everything and commits; the ingest
    // handler stores it, dead-letters the poison and forwards the rest to
    // log-processing, where nobody consumes (detect is not running).
    let records = consume(&bootstrap, "log-ingestion", "logpipe-ingest", input.len())
        .await
        .unwrap();
    let handler = ingestor(
        &stack,
        IngestConfig {
            message_timeout: Duration::from_secs(10),
            ..IngestConfig::default()
        },
    )
    .await
    .unwrap();
    let outcome = invoke(
        &handler,
        &event(&records, EventSource::SelfManaged, &bootstrap),
    )
    .await
    .expect("ingest succeeds");
    let forwarded = outcome.summary.records_forwarded as i64;
    assert!(forwarded > 0, "{outcome:?}");

    let report = health_with(&stack, &db, &HealthOptions::default()).await;
    let ingest = report.group("logpipe-ingest").unwrap();
    assert_eq!(ingest.status, Status::Ok);
    assert_eq!(ingest.total_lag, 0);
    // Nothing ever committed on log-processing while records wait: STOP,
    // with every forwarded record as lag (ingest's producer batches them, so
    // this also checks the log end is read past Tansu's watermark).
    let detect = report.group("logpipe-detect").unwrap();
    assert_eq!(detect.status, Status::Stop);
    assert_eq!(detect.total_lag, forwarded);
    assert_eq!(report.exit_code(), EXIT_ERROR);

    // Freshness: one progress row per partition ingest handled, agreeing
    // with the group's Kafka commit there.
    let fresh = report.ingest_freshness.as_ref().unwrap();
    assert!(!fresh.is_empty());
    for row in fresh {
        assert_eq!(row.group, "logpipe-ingest");
        let committed = ingest
            .partitions
            .iter()
            .find(|p| p.topic == row.topic && p.partition == row.partition)
            .and_then(|p| p.committed);
        assert_eq!(committed, Some(row.last_offset + 1), "{row:?}");
    }
    let dlq = report
        .dlq
        .iter()
        .find(|d| d.topic == "log-ingestion.dlq")
        .unwrap();
    assert_eq!(dlq.records, poison.len() as i64);
}
