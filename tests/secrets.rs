//! Database credentials from AWS Secrets Manager (moto's real API server),
//! re-read when the password is rotated.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use ingest::{IngestConfig, Ingestor};
use logpipe_kafka::event::EventSource;
use logpipe_kafka::{KafkaSettings, Publisher};
use logpipe_postgres::{Database, DbError, DbSettings, DbSource, TlsMode};
use logpipe_secrets::{SecretsCache, SecretsError};
use logpipe_tests::*;

fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(conf)
}

fn secret_json(port: u16, password: &str) -> String {
    serde_json::json!({
        "engine": "postgres", "host": "127.0.0.1", "port": port,
        "username": "logpipe_app", "password": password, "dbname": "postgres"
    })
    .to_string()
}

fn settings(arn: &str) -> DbSettings {
    DbSettings {
        source: DbSource::Secret {
            arn: arn.to_string(),
        },
        ssl_mode: Some(TlsMode::Disable),
        ssl_root_cert: None,
        connect_timeout: Duration::from_secs(5),
        application_name: "ingest-secret-test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_is_reread_and_the_next_invocation_succeeds() {
    let stack = LocalStack::start(StackOptions { moto: true })
        .await
        .unwrap();
    let bootstrap = stack.bootstrap_servers();
    let admin = sql(&stack.database_url()).await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE logpipe_app LOGIN PASSWORD 'first-password';
             GRANT ALL ON ALL TABLES IN SCHEMA public TO logpipe_app;
             GRANT CREATE ON SCHEMA public TO logpipe_app;",
        )
        .await
        .unwrap();
    let sm = secrets_client(&stack.moto_url().unwrap());
    let arn = sm
        .create_secret()
        .name("logpipe/db")
        .secret_string(secret_json(stack.postgres.port(), "first-password"))
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    let cache = Arc::new(SecretsCache::new(secrets_client(
        &stack.moto_url().unwrap(),
    )));
    let db = Database::new(settings(&arn), Some(cache.clone())).unwrap();
    let config = IngestConfig {
        message_timeout: Duration::from_secs(5),
        ..IngestConfig::default()
    };
    let publisher = Publisher::new(
        KafkaSettings::plaintext(&bootstrap, "t"),
        None,
        config.message_timeout,
    )
    .await
    .unwrap();
    let ingestor = Ingestor::new(config, db, publisher);

    produce(
        &bootstrap,
        "log-ingestion",
        &[Produce::text("k", "first batch line")],
    )
    .await
    .unwrap();
    let first = consume(&bootstrap, "log-ingestion", "secrets", 1)
        .await
        .unwrap();
    let out = invoke(&ingestor, &event(&first, EventSource::Msk, &bootstrap))
        .await
        .unwrap();
    assert_eq!(out.summary.records_stored, 1);

    // Rotate: new password in PostgreSQL and in the secret; existing sessions
    // are dropped, as a rotation that recycles connections does.
    admin
        .batch_execute("ALTER ROLE logpipe_app PASSWORD 'second-password'")
        .await
        .unwrap();
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(secret_json(stack.postgres.port(), "second-password"))
        .send()
        .await
        .unwrap();
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'logpipe_app'",
        )
        .await
        .unwrap();
    // The old password really is gone.
    let old = stack
        .postgres
        .url_for("logpipe_app", "first-password", "postgres");
    assert!(sql(&old).await.is_err());

    produce(
        &bootstrap,
        "log-ingestion",
        &[Produce::text("k", "second batch line")],
    )
    .await
    .unwrap();
    let second = consume(&bootstrap, "log-ingestion", "secrets", 1)
        .await
        .unwrap();
    let out = invoke(&ingestor, &event(&second, EventSource::Msk, &bootstrap))
        .await
        .expect("reconnects with the new password");
    assert_eq!(out.summary.records_stored, 1, "{out:?}");
    assert_eq!(count(&admin, "SELECT count(*) FROM logs").await, 2);
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'logpipe_app'"
        )
        .await,
        1,
        "one live connection, with the new password"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_named_as_such() {
    let stack = LocalStack::start(StackOptions { moto: true })
        .await
        .unwrap();
    let cache = Arc::new(SecretsCache::new(secrets_client(
        &stack.moto_url().unwrap(),
    )));
    let db = Database::new(
        settings("arn:aws:secretsmanager:us-east-1:123456789012:secret:nope"),
        Some(cache),
    )
    .unwrap();
    let Err(err) = db.client().await else {
        panic!("no such secret")
    };
    assert!(
        matches!(err, DbError::Secret(SecretsError::Missing { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_and_broker_get_specific_errors() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    // Nothing listens on this port.
    let port = logpipe_devstack::process::free_port().unwrap();
    let db = Database::new(
        DbSettings::from_url(&format!("postgres://u:p@127.0.0.1:{port}/x"), "t"),
        None,
    )
    .unwrap();
    let Err(err) = db.client().await else {
        panic!("no server")
    };
    assert!(matches!(err, DbError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().starts_with("database unreachable"), "{err}");
    assert!(err.is_transient());

    let wrong = Database::new(
        DbSettings::from_url(
            &stack.postgres.url_for("postgres", "wrong", "postgres"),
            "t",
        ),
        None,
    )
    .unwrap();
    let Err(err) = wrong.client().await else {
        panic!("bad password")
    };
    assert!(err.to_string().contains("authentication failed"), "{err}");

    let publisher = Publisher::new(
        KafkaSettings::plaintext(&format!("127.0.0.1:{port}"), "t"),
        None,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let err = publisher
        .check_topics(&["log-processing"], Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");

    let publisher = Publisher::new(
        KafkaSettings::plaintext(&stack.bootstrap_servers(), "t"),
        None,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    publisher
        .check_topics(&["log-processing"], Duration::from_secs(5))
        .await
        .unwrap();
    let err = publisher
        .check_topics(&["no-such-topic"], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no-such-topic is missing"),
        "{err}"
    );
}
