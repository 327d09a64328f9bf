//! Daily partitions of `logs` against a real PostgreSQL: records of any
//! Kafka timestamp are stored (days without a partition in logs_default),
//! maintenance creates the days ahead and drops exactly the expired ones,
//! a replay across a day boundary adds nothing, the range queries prune
//! partitions, and the conversion of an unpartitioned table keeps every row.

// The handler's future is deep (handler, pipeline, publisher, COPY).
#![recursion_limit = "256"]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ingest::IngestConfig;
use logpipe_kafka::event::{EventRecord, EventSource};
use logpipe_postgres::tokio_postgres::Client;
use logpipe_postgres::{
    Database, DbSettings, RetentionSettings, maintain_partitions, migrate, migrate_to,
};
use logpipe_tests::*;

const TOPIC: &str = "log-ingestion";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

/// An access-log record whose line time is its Kafka timestamp.
fn access(offset: i64, ts: &str, status: u16) -> EventRecord {
    let t = at(ts);
    let line = format!(
        r#"203.0.113.{} - - [{}] "GET /api/orders HTTP/1.1" {status} 512"#,
        offset % 250,
        t.format("%d/%b/%Y:%H:%M:%S +0000")
    );
    EventRecord {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        timestamp_ms: t.timestamp_millis(),
        timestamp_type: "CREATE_TIME",
        key: Some(b"web-1".to_vec()),
        value: Some(line.into_bytes()),
        headers: vec![],
    }
}

/// Partition of each stored row, by Kafka offset.
async fn placement(client: &Client) -> Vec<(i64, String)> {
    client
        .query(
            "SELECT kafka_offset, tableoid::regclass::text FROM logs WHERE topic = $1 ORDER BY 1",
            &[&TOPIC],
        )
        .await
        .expect("placement")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn changes(list: &[logpipe_postgres::PartitionChange], action: &str) -> BTreeSet<String> {
    list.iter()
        .filter(|c| c.action == action)
        .map(|c| c.partition.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_every_record_and_drops_exactly_the_expired_days() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let url = stack.database_url();
    let client = sql(&url).await.unwrap();
    let before_2030 = logs_partitions(&client).await;
    assert!(before_2030.contains("logs_default"), "{before_2030:?}");

    // Days nobody prepared: an ancient, a far-future and the days around a
    // midnight, none of them with a partition yet.
    let records = vec![
        access(0, "1999-06-01T12:00:00Z", 200),
        access(1, "2030-01-04T12:00:00Z", 200),
        access(2, "2030-01-05T23:59:59.999Z", 500),
        access(3, "2030-01-06T00:00:00Z", 404),
        access(4, "2030-01-07T10:00:00Z", 200),
        access(5, "2030-01-08T10:00:00Z", 200),
        access(6, "2030-01-09T07:30:00Z", 503),
        access(7, "2030-01-20T10:00:00Z", 200),
    ];
    let config = IngestConfig {
        message_timeout: Duration::from_secs(10),
        ..IngestConfig::default()
    };
    let ingestor = ingestor(&stack, config).await.unwrap();
    let ev = event(
        &records,
        EventSource::SelfManaged,
        &stack.bootstrap_servers(),
    );
    invoke(&ingestor, &ev).await.expect("batch stored");
    let stored = placement(&client).await;
    assert_eq!(
        stored.len(),
        records.len(),
        "every record stored: {stored:?}"
    );
    assert!(
        stored.iter().all(|(_, p)| p == "logs_default"),
        "no 2030 partition yet: {stored:?}"
    );

    // 2030-01-06: 30 days kept, two ahead. The kept days only logs_default
    // held get partitions (rows moved), the 1999 row expires, and the
    // partitions the migration made for the real present are far older than
    // the first kept day (2029-12-07): dropped.
    let first = maintain_partitions(
        &client,
        RetentionSettings {
            retention_days: 30,
            partitions_ahead: 2,
        },
        Some(at("2030-01-06T08:00:00Z")),
    )
    .await
    .unwrap();
    let made = set(&[
        "logs_p20300104",
        "logs_p20300105",
        "logs_p20300106",
        "logs_p20300107",
        "logs_p20300108",
    ]);
    assert_eq!(changes(&first, "created"), made, "{first:?}");
    let mut old = before_2030.clone();
    old.remove("logs_default");
    assert_eq!(changes(&first, "dropped"), old, "{first:?}");
    assert_eq!(
        changes(&first, "expired"),
        set(&["logs_default"]),
        "{first:?}"
    );
    let moved: i64 = first.iter().filter_map(|c| c.rows).sum::<i64>();
    // five rows moved into their days, one expired
    assert_eq!(moved, 5 + 1, "{first:?}");
    let mut expect_parts = made.clone();
    expect_parts.insert("logs_default".into());
    assert_eq!(logs_partitions(&client).await, expect_parts);
    let stored = placement(&client).await;
    assert_eq!(
        stored,
        vec![
            (1, "logs_p20300104".to_string()),
            (2, "logs_p20300105".to_string()),
            (3, "logs_p20300106".to_string()),
            (4, "logs_p20300107".to_string()),
            (5, "logs_p20300108".to_string()),
            (6, "logs_default".to_string()),
            (7, "logs_default".to_string()),
        ]
    );

    // A replay across the midnight, with the progress lost (so the ledger
    // does not skip it): the same Kafka timestamps reach the same
    // partitions, whose primary keys already hold them. Nothing is added.
    client
        .execute("DELETE FROM ingest_progress", &[])
        .await
        .unwrap();
    let replay = event(
        &records[2..4],
        EventSource::SelfManaged,
        &stack.bootstrap_servers(),
    );
    invoke(&ingestor, &replay).await.expect("replay handled");
    assert_eq!(placement(&client).await, stored, "the replay added nothing");

    // 2030-01-09, three days kept: the first kept day is 01-06, so 01-04 and
    // 01-05 go, 01-09 (holding a row from logs_default) and 01-10 come.
    let second = maintain_partitions(
        &client,
        RetentionSettings {
            retention_days: 3,
            partitions_ahead: 1,
        },
        Some(at("2030-01-09T08:00:00Z")),
    )
    .await
    .unwrap();
    assert_eq!(
        changes(&second, "dropped"),
        set(&["logs_p20300104", "logs_p20300105"]),
        "{second:?}"
    );
    assert_eq!(
        changes(&second, "created"),
        set(&["logs_p20300109", "logs_p20300110"]),
        "{second:?}"
    );
    assert!(changes(&second, "expired").is_empty(), "{second:?}");
    assert_eq!(
        placement(&client).await,
        vec![
            (3, "logs_p20300106".to_string()),
            (4, "logs_p20300107".to_string()),
            (5, "logs_p20300108".to_string()),
            (6, "logs_p20300109".to_string()),
            (7, "logs_default".to_string()),
        ]
    );
    // Maintenance again at the same time changes nothing.
    let again = maintain_partitions(
        &client,
        RetentionSettings {
            retention_days: 3,
            partitions_ahead: 1,
        },
        Some(at("2030-01-09T08:00:00Z")),
    )
    .await
    .unwrap();
    assert!(again.is_empty(), "{again:?}");

    // The last hour's dashboard query reads the partitions within a day of
    // it (01-08 to 01-10), never the others and not logs_default.
    for query in [
        "status_code_distribution",
        "top_endpoints",
        "error_rate_per_minute",
        "traffic_by_client_ip",
    ] {
        let plan: Vec<String> = client
            .query(
                &format!(
                    "EXPLAIN SELECT * FROM {query}('2030-01-09T07:00:00Z', '2030-01-09T08:00:00Z')"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        let text = plan.join("\n");
        let read: BTreeSet<String> = ["logs_default", "logs_p20300106", "logs_p20300107"]
            .into_iter()
            .chain(["logs_p20300108", "logs_p20300109", "logs_p20300110"])
            .filter(|p| text.contains(&format!(" on {p}")) || text.contains(&format!(" {p} ")))
            .map(String::from)
            .collect();
        assert!(
            read.is_subset(&set(&[
                "logs_p20300108",
                "logs_p20300109",
                "logs_p20300110"
            ])) && !read.is_empty(),
            "{query} reads {read:?}:\n{text}"
        );
        eprintln!("EXPLAIN {query} (last hour):\n{text}");
    }
    // The range query counts what is in the range; the view (all days) too.
    let in_range = client
        .query(
            "SELECT status_class, http_status, requests FROM
               status_code_distribution('2030-01-06T00:00:00Z', '2030-01-10T00:00:00Z')",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, i32, i64)> = in_range
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got.iter().map(|g| g.2).sum::<i64>(),
        4,
        "offsets 3 to 6: {got:?}"
    );
    assert!(got.contains(&("5xx".to_string(), 503, 1)), "{got:?}");
    assert_eq!(
        count(
            &client,
            "SELECT sum(requests)::bigint FROM status_code_distribution"
        )
        .await,
        5
    );
    for view in [
        "top_endpoints",
        "error_rate_per_minute",
        "traffic_by_client_ip",
    ] {
        assert!(count(&client, &format!("SELECT count(*) FROM {view}")).await > 0);
    }
}

/// A database of its own on the stack's server, migrated up to `version`.
async fn database_at(stack: &LocalStack, name: &str, version: i32) -> (Client, Database) {
    let admin = sql(&stack.database_url()).await.unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = stack.postgres.url_for(
        logpipe_devstack::postgres::SUPERUSER,
        logpipe_devstack::postgres::SUPERUSER_PASSWORD,
        name,
    );
    let db = Database::new(DbSettings::from_url(&url, "retention-test"), None).unwrap();
    {
        let mut c = db.client().await.unwrap();
        migrate_to(&mut c, Some(version)).await.unwrap();
    }
    (sql(&url).await.unwrap(), db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversion_to_partitions_keeps_every_row() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let (client, db) = database_at(&stack, "conversion", 5).await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'logs'::regclass"
        )
        .await,
        0,
        "still the unpartitioned table"
    );
    // 20,000 rows over ~40 days, an ancient and a far-future one, envelopes
    // (several seq per offset) and two clusters.
    client
        .batch_execute(
            "INSERT INTO logs (topic, kafka_partition, kafka_offset, seq, kafka_timestamp, event_time,
                               source_type, service, message, http_status, raw, source_cluster)
             SELECT 'conv', g % 3, g / 2, g % 2, t, t - interval '2 seconds', 'json',
                    'svc-' || (g % 7), 'message ' || g, 200 + (g % 4) * 100, 'raw ' || g,
                    CASE WHEN g % 5 = 0 THEN 'b' ELSE '' END
               FROM generate_series(1, 20000) g,
                    LATERAL (SELECT timestamptz '2026-10-01T00:00:00Z' + g * interval '3 minutes') x(t);
             INSERT INTO logs (topic, kafka_partition, kafka_offset, seq, kafka_timestamp, event_time,
                               source_type, message, raw)
             VALUES ('conv', 9, 1, 0, '1970-01-01T00:00:00Z', '1970-01-01T00:00:00Z', 'text', 'old', 'old'),
                    ('conv', 9, 2, 0, '2199-12-31T23:59:59Z', '2199-12-31T23:59:59Z', 'text', 'new', 'new');",
        )
        .await
        .unwrap();
    let fingerprint = "SELECT count(*)::text || ':' || md5(string_agg(
            concat_ws('|', topic, kafka_partition, kafka_offset, seq, source_cluster, kafka_timestamp,
                      event_time, service, message, http_status, raw, metrics, attributes, ingested_at),
            ',' ORDER BY topic, kafka_partition, kafka_offset, seq, source_cluster)) FROM logs";
    let before: String = client.query_one(fingerprint, &[]).await.unwrap().get(0);
    assert!(before.starts_with("20002:"), "{before}");

    {
        let mut c = db.client().await.unwrap();
        migrate(&mut c).await.unwrap();
    }
    let after: String = client.query_one(fingerprint, &[]).await.unwrap().get(0);
    assert_eq!(after, before, "every row, unchanged");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'logs'::regclass"
        )
        .await,
        1
    );
    // Every row in a day partition (none left in logs_default).
    assert_eq!(count(&client, "SELECT count(*) FROM logs_default").await, 0);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM logs
              WHERE tableoid::regclass::text
                    <> 'logs_p' || to_char(kafka_timestamp AT TIME ZONE 'UTC', 'YYYYMMDD')"
        )
        .await,
        0
    );
    assert!(
        count(
            &client,
            "SELECT count(*) FROM pg_class WHERE relname = 'logs_p19700101'"
        )
        .await
            == 1
            && count(
                &client,
                "SELECT count(*) FROM pg_class WHERE relname = 'logs_p21991231'"
            )
            .await
                == 1
    );
    // The primary key still refuses a duplicate, now with the day in it.
    let dup = client
        .execute(
            "INSERT INTO logs (topic, kafka_partition, kafka_offset, seq, kafka_timestamp, event_time,
                               source_type, message, raw)
             VALUES ('conv', 9, 1, 0, '1970-01-01T00:00:00Z', now(), 'text', 'again', 'again')
             ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(dup, 0);
}
