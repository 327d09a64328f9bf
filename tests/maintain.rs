//! The scheduled maintain function against a real PostgreSQL (and nothing
//! else: no broker): on a fresh database it applies the migrations and
//! prepares the days around "now"; a month later it drops exactly the
//! expired daily partitions with their rows, moves what logs_default holds
//! into the kept days' new partitions, deletes logs_default's expired rows,
//! prepares the days ahead, and keeps every other row. The next hourly run
//! changes nothing; an override reaches the SQL; bad input and a database
//! outage are errors (the latter transient, so the invocation is retried).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use logpipe_devstack::{Lifetime, Postgres};
use logpipe_postgres::tokio_postgres::Client;
use logpipe_postgres::{Database, DbSettings, RetentionSettings};
use logpipe_tests::{count, logs_partitions, sql};
use maintain::{MaintainConfig, MaintainError, MaintainSummary, Maintainer};
use serde_json::json;

/// A PostgreSQL server of its own; the server stops before its directory goes.
struct Server {
    pg: Postgres,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("logpipe-maintain-")
            .tempdir()
            .expect("temporary directory");
        let pg = Postgres::start(&dir.path().join("pg"), Lifetime::TiedToParent)
            .expect("postgres starts");
        Server { pg, _dir: dir }
    }

    /// A new, empty (unmigrated) database on the server.
    async fn database(&self, name: &str) -> String {
        let admin = sql(&self.pg.url()).await.expect("admin connection");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        self.pg.url_for(
            logpipe_devstack::postgres::SUPERUSER,
            logpipe_devstack::postgres::SUPERUSER_PASSWORD,
            name,
        )
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

fn maintainer(url: &str) -> Maintainer {
    let config = MaintainConfig {
        retention: RetentionSettings {
            retention_days: 30,
            partitions_ahead: 7,
        },
        run_migrations: true,
        function_name: "maintain-test".into(),
        ..MaintainConfig::default()
    };
    let db = Database::new(DbSettings::from_url(url, "maintain-test"), None).expect("database");
    Maintainer::new(config, db)
}

/// `logs_pYYYYMMDD` of each day from `first` to `last` (YYYY-MM-DD).
fn days(first: &str, last: &str) -> BTreeSet<String> {
    let first = chrono::NaiveDate::parse_from_str(first, "%Y-%m-%d").expect("day");
    let last = chrono::NaiveDate::parse_from_str(last, "%Y-%m-%d").expect("day");
    first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| d.format("logs_p%Y%m%d").to_string())
        .collect()
}

fn names(list: &[String]) -> BTreeSet<String> {
    list.iter().cloned().collect()
}

/// Rows per UTC day of their Kafka timestamp.
async fn rows_per_day(client: &Client) -> BTreeMap<String, i64> {
    client
        .query(
            "SELECT to_char(kafka_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*)
               FROM logs GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .expect("rows per day")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Inserts `n` rows with Kafka timestamps on `day` (spread over the day).
async fn insert(client: &Client, day: &str, n: i32, first_offset: i64) {
    client
        .execute(
            "INSERT INTO logs (topic, kafka_partition, kafka_offset, seq, kafka_timestamp, event_time,
                               source_type, message, raw)
             SELECT 'maintain-test', 0, $2::bigint + g, 0, t, t, 'text', 'row ' || g, 'row ' || g
               FROM generate_series(0, $3::int - 1) g,
                    LATERAL (SELECT ($1::date + g * interval '47 minutes')::timestamp
                                    AT TIME ZONE 'UTC') x(t)",
            &[
                &chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").expect("day"),
                &first_offset,
                &n,
            ],
        )
        .await
        .expect("insert rows");
}

async fn run(
    m: &Maintainer,
    payload: serde_json::Value,
    now: &str,
) -> Result<MaintainSummary, MaintainError> {
    m.run(&payload, at(now)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_maintenance_drops_exactly_the_expired_days_and_keeps_the_rest() {
    let mut server = Server::start();
    let url = server.database("maintained").await;
    let m = maintainer(&url);

    // 1. A fresh database, 2030-02-10: the migrations are applied and the
    // days from yesterday to a week ahead prepared. The partitions the
    // migration made for the real present are long expired by then.
    let first = run(&m, json!({}), "2030-02-10T12:00:00Z")
        .await
        .expect("first run");
    assert!(first.migrations_applied > 0, "{first:?}");
    assert_eq!(
        names(&first.partitions_created),
        days("2030-02-09", "2030-02-17"),
        "{first:?}"
    );
    assert!(
        first
            .partitions_dropped
            .iter()
            .all(|p| p.starts_with("logs_p") && p.as_str() < "logs_p20300111"),
        "only days before the first kept day (2030-01-11) go: {first:?}"
    );
    let client = sql(&url).await.unwrap();
    let mut expected = days("2030-02-09", "2030-02-17");
    expected.insert("logs_default".into());
    assert_eq!(logs_partitions(&client).await, expected);

    // 2. Rows in prepared days and, for days without a partition, in
    // logs_default: an expired one (01-20), a kept one (03-01), "today"
    // (03-15) and one ahead (03-20); nothing ran for a month.
    for (day, n, offset) in [
        ("2030-02-09", 3, 0),
        ("2030-02-12", 2, 100),
        ("2030-02-13", 4, 200),
        ("2030-02-17", 1, 300),
        ("2030-01-20", 2, 400),
        ("2030-03-01", 5, 500),
        ("2030-03-15", 6, 600),
        ("2030-03-20", 1, 700),
    ] {
        insert(&client, day, n, offset).await;
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM logs_default").await,
        2 + 5 + 6 + 1,
        "the days without a partition"
    );

    // 3. 2030-03-15, 30 days kept: the first kept day is 02-13.
    let second = run(
        &m,
        json!({"source": "aws.scheduler"}),
        "2030-03-15T10:00:00Z",
    )
    .await
    .expect("scheduled run");
    assert_eq!(second.migrations_applied, 0);
    assert_eq!((second.retention_days, second.partitions_ahead), (30, 7));
    assert_eq!(
        names(&second.partitions_dropped),
        days("2030-02-09", "2030-02-12"),
        "exactly the days ending at or before 02-13: {second:?}"
    );
    let mut created = days("2030-03-14", "2030-03-22");
    created.insert("logs_p20300301".into());
    assert_eq!(names(&second.partitions_created), created, "{second:?}");
    assert_eq!(second.rows_moved_from_default, 5 + 6 + 1, "{second:?}");
    assert_eq!(second.rows_expired_from_default, 2, "{second:?}");

    let mut expected: BTreeSet<String> = days("2030-02-13", "2030-02-17");
    expected.extend(created.iter().cloned());
    expected.insert("logs_default".into());
    assert_eq!(logs_partitions(&client).await, expected);
    // The expired rows are gone; every kept row is still there, each in
    // its own day's partition; logs_default is empty.
    let kept: BTreeMap<String, i64> = [
        ("2030-02-13", 4),
        ("2030-02-17", 1),
        ("2030-03-01", 5),
        ("2030-03-15", 6),
        ("2030-03-20", 1),
    ]
    .into_iter()
    .map(|(d, n)| (d.to_string(), n))
    .collect();
    assert_eq!(rows_per_day(&client).await, kept);
    assert_eq!(count(&client, "SELECT count(*) FROM logs_default").await, 0);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM logs
              WHERE tableoid::regclass::text
                    <> 'logs_p' || to_char(kafka_timestamp AT TIME ZONE 'UTC', 'YYYYMMDD')"
        )
        .await,
        0,
        "every row in its day's partition"
    );

    // 4. The next hourly run: nothing to do.
    let third = run(&m, json!({}), "2030-03-15T11:00:00Z")
        .await
        .expect("next run");
    assert!(third.is_no_op(), "{third:?}");
    assert_eq!(logs_partitions(&client).await, expected);
    assert_eq!(rows_per_day(&client).await, kept);

    // 5. A manual run's override reaches the SQL: one more day ahead.
    let manual = run(
        &m,
        json!({"retention_days": 31, "partitions_ahead": 8}),
        "2030-03-15T11:30:00Z",
    )
    .await
    .expect("manual run");
    assert_eq!((manual.retention_days, manual.partitions_ahead), (31, 8));
    assert_eq!(
        names(&manual.partitions_created),
        days("2030-03-23", "2030-03-23")
    );
    assert!(manual.partitions_dropped.is_empty(), "{manual:?}");
    assert_eq!(rows_per_day(&client).await, kept);

    // 6. An unusable override changes nothing and says why.
    let refused = run(&m, json!({"retention_days": -5}), "2030-03-15T12:00:00Z")
        .await
        .expect_err("negative retention refused");
    assert!(matches!(refused, MaintainError::Input(_)), "{refused}");
    assert!(!refused.is_transient());
    expected.insert("logs_p20300323".into());
    assert_eq!(logs_partitions(&client).await, expected);

    // 7. The database goes away: an error, and a transient one (Lambda
    // retries the scheduled invocation; the next run tries again anyway).
    drop(client);
    server.pg.stop();
    let outage = run(&m, json!({}), "2030-03-15T13:00:00Z")
        .await
        .expect_err("no database");
    assert!(
        matches!(outage, MaintainError::Database(_)) && outage.is_transient(),
        "{outage:?}"
    );
    let diagnostic = lambda_runtime::Diagnostic::from(outage);
    assert_eq!(diagnostic.error_type, "DatabaseUnavailable");
}

/// A drop waits behind a long query only a bounded time: the run returns
/// with the drop skipped (counted in the summary) and the partition still
/// there, and writes to `logs` are not queued behind it; once the query
/// ends, the next run drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_blocked_by_a_long_query_is_skipped_and_done_by_the_next_run() {
    let server = Server::start();
    let url = server.database("locked").await;
    let config = MaintainConfig {
        retention: RetentionSettings {
            retention_days: 30,
            partitions_ahead: 1,
        },
        drop_lock_timeout: std::time::Duration::from_millis(200),
        function_name: "maintain-lock-test".into(),
        ..MaintainConfig::default()
    };
    let db = Database::new(DbSettings::from_url(&url, "maintain-test"), None).expect("database");
    let m = Maintainer::new(config, db);
    run(&m, json!({}), "2030-02-10T12:00:00Z")
        .await
        .expect("first run");
    let client = sql(&url).await.unwrap();
    insert(&client, "2030-02-09", 3, 0).await;

    // A long query on an expiring day: its transaction holds the
    // partition's lock until it ends.
    let reader = sql(&url).await.unwrap();
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM logs_p20300209;")
        .await
        .unwrap();

    // 2030-03-15: 02-09 to 02-11 expire. Their drops cannot get the lock:
    // skipped, the run still does the rest.
    let blocked = run(&m, json!({}), "2030-03-15T10:00:00Z")
        .await
        .expect("the run returns despite the lock");
    assert!(
        names(&blocked.partitions_skipped).contains("logs_p20300209"),
        "{blocked:?}"
    );
    assert!(
        !names(&blocked.partitions_dropped).contains("logs_p20300209"),
        "{blocked:?}"
    );
    assert_eq!(
        names(&blocked.partitions_created),
        days("2030-03-14", "2030-03-16"),
        "{blocked:?}"
    );
    assert!(
        logs_partitions(&client).await.contains("logs_p20300209"),
        "the partition stays while the query runs"
    );
    // Writers are not queued behind the drop.
    insert(&client, "2030-03-15", 2, 100).await;
    assert_eq!(
        count(&reader, "SELECT count(*) FROM logs_p20300209").await,
        3
    );

    // The query ends: the next run drops what was skipped.
    reader.batch_execute("COMMIT").await.unwrap();
    let next = run(&m, json!({}), "2030-03-15T11:00:00Z")
        .await
        .expect("next run");
    assert!(
        names(&next.partitions_dropped).contains("logs_p20300209"),
        "{next:?}"
    );
    assert!(next.partitions_skipped.is_empty(), "{next:?}");
    assert!(!logs_partitions(&client).await.contains("logs_p20300209"));
    assert_eq!(rows_per_day(&client).await.get("2030-03-15"), Some(&2));
}
