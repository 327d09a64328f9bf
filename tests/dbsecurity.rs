//! Database security by default, against a real PostgreSQL.
//!
//! - Least privilege: the stack migrates as the schema owner and hands the
//!   functions a login in the NOLOGIN group `logpipe_runtime`. That login
//!   runs a real ingest (the schema check, progress, COPY into the
//!   partitioned `logs`, the staging path) and detect's kind of writes (a
//!   sequence-backed outbox row), and is refused every DDL statement and
//!   TRUNCATE with SQLSTATE 42501 (insufficient_privilege).
//! - TLS: a server with a certificate from a CA made here. verify-full with
//!   that CA (PGSSLROOTCERT) connects; with the default trust roots (the
//!   embedded Amazon RDS bundle) it fails with a permanent error; a host name
//!   the certificate does not name fails under verify-full (and passes
//!   verify-ca); `require` connects; a server without TLS is refused under
//!   the default mode — never a silent plaintext fallback.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ingest::IngestConfig;
use logpipe_devstack::postgres::{SUPERUSER, SUPERUSER_PASSWORD};
use logpipe_devstack::{Lifetime, Postgres};
use logpipe_kafka::event::EventSource;
use logpipe_postgres::tokio_postgres::error::SqlState;
use logpipe_postgres::{Database, DbError, DbSettings, DbSource, TlsMode, check_schema};
use logpipe_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_role_does_dml_and_no_ddl() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let admin = sql(&stack.database_url()).await.unwrap();

    // The tables belong to the owner, not to the functions' login.
    let owners: Vec<String> = admin
        .query(
            "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class
              WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, ["logpipe_owner"]);

    // A real ingest through the pipeline, as the runtime login.
    let bootstrap = stack.bootstrap_servers();
    let lines: Vec<Produce> = (0..5)
        .map(|i| {
            Produce::text(
                "svc",
                &format!(
                    r#"{{"timestamp":"2026-11-22T10:00:0{i}Z","level":"info","service":"svc","message":"row {i}"}}"#
                ),
            )
        })
        .collect();
    produce(&bootstrap, "log-ingestion", &lines).await.unwrap();
    let records = consume(&bootstrap, "log-ingestion", "dbsecurity", lines.len())
        .await
        .unwrap();
    let ingestor = ingestor(&stack, IngestConfig::default()).await.unwrap();
    ingestor
        .ensure_schema()
        .await
        .expect("the schema check needs no DDL");
    let out = invoke(
        &ingestor,
        &event(&records, EventSource::SelfManaged, &bootstrap),
    )
    .await
    .expect("ingest as the runtime role");
    assert_eq!(out.summary.records_stored, lines.len(), "{:?}", out.summary);
    assert_eq!(
        count(&admin, "SELECT count(*) FROM logs").await,
        lines.len() as i64
    );
    // A replay: the staging table (TEMP) and INSERT … ON CONFLICT path.
    admin
        .execute("DELETE FROM ingest_progress", &[])
        .await
        .unwrap();
    let again = invoke(
        &ingestor,
        &event(&records, EventSource::SelfManaged, &bootstrap),
    )
    .await
    .expect("replay as the runtime role");
    assert_eq!(again.summary.records_retry, 0, "{:?}", again.summary);
    assert_eq!(
        count(&admin, "SELECT count(*) FROM logs").await,
        lines.len() as i64
    );

    // Detect's kind of writes: a sequence-backed outbox row, updated and
    // deleted; its state tables read.
    let runtime = sql(&stack.runtime_url()).await.unwrap();
    runtime
        .batch_execute(
            "INSERT INTO detect_outbox (topic, id, msg_key, kind, payload)
                  VALUES ('alerts', 'a-1', 'svc', 'alert', '{}');
             UPDATE detect_outbox SET attempts = attempts + 1 WHERE id = 'a-1';
             DELETE FROM detect_outbox WHERE id = 'a-1';
             SELECT count(*) FROM detect_entity_state;
             SELECT count(*) FROM detect_clock;",
        )
        .await
        .expect("DML as the runtime role");

    // A daily partition, created by maintenance after the migrations.
    let dated: String = admin
        .query_one(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'logs'::regclass AND c.relname <> 'logs_default'
              ORDER BY 1 DESC LIMIT 1",
            &[],
        )
        .await
        .expect("the stack prepares daily partitions")
        .get(0);
    let delete_dated = format!("DELETE FROM {dated}");
    // And no DDL, no TRUNCATE, no maintenance.
    for statement in [
        "CREATE TABLE intruder (a int)",
        "DROP TABLE logs_default",
        "ALTER TABLE logs ADD COLUMN intruder int",
        "TRUNCATE logs",
        "TRUNCATE ingest_progress",
        "CREATE INDEX intruder ON logs (message)",
        "SELECT * FROM logpipe_maintain_partitions(30, 3, now(), 5000)",
        // logs is append-only for the functions, partitions included, and
        // the migration history read-only.
        "UPDATE logs SET message = ''",
        "DELETE FROM logs",
        "DELETE FROM logs_default",
        delete_dated.as_str(),
        "DELETE FROM refinery_schema_history",
    ] {
        let error = runtime
            .batch_execute(statement)
            .await
            .expect_err(&format!("{statement} must be refused"));
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {error}"
        );
    }
    assert_eq!(
        count(&admin, "SELECT count(*) FROM logs").await,
        lines.len() as i64,
        "nothing was emptied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_role_on_an_unmigrated_schema_gets_a_permanent_error_naming_maintain() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(&dir.path().join("pg"), Lifetime::TiedToParent).unwrap();
    let db = Database::new(DbSettings::from_url(&pg.url(), "dbsecurity"), None).unwrap();
    let client = db.client().await.unwrap();
    let error = check_schema(&client)
        .await
        .expect_err("no migration applied");
    assert!(matches!(error, DbError::SchemaNotReady(_)), "{error}");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("maintain"), "{error}");
}

/// A CA and a server certificate for `localhost` only, made with the
/// openssl CLI in `dir`: (ca.pem, server.crt, server.key).
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=logpipe test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
}

fn settings(host: &str, port: u16, mode: Option<TlsMode>, root: Option<&Path>) -> DbSettings {
    DbSettings {
        source: DbSource::Url(format!(
            "postgres://{SUPERUSER}:{SUPERUSER_PASSWORD}@{host}:{port}/postgres"
        )),
        ssl_mode: mode,
        ssl_root_cert: root.map(|p| p.display().to_string()),
        connect_timeout: Duration::from_secs(5),
        application_name: "dbsecurity".into(),
    }
}

/// Whether the session `db` opened is encrypted, by the server's account.
async fn encrypted(db: &Database) -> Result<bool, DbError> {
    let client = db.client().await?;
    let row = client
        .query_one(
            "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
            &[],
        )
        .await
        .map_err(DbError::from_query)?;
    Ok(row.get(0))
}

async fn connect(settings: DbSettings) -> Result<bool, DbError> {
    encrypted(&Database::new(settings, None)?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_by_default_and_never_falls_back_to_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = Postgres::start(&dir.path().join("pg"), Lifetime::TiedToParent).unwrap();
    let port = pg.port();

    // 1. A server without TLS: the default mode (verify-full) refuses it.
    let error = connect(settings("localhost", port, None, None))
        .await
        .expect_err("no plaintext fallback");
    assert!(matches!(error, DbError::Tls { .. }), "{error}");
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("verify-full"), "{error}");
    eprintln!("verify-full, no TLS on the server: {error}");
    // Plaintext only when said.
    assert!(
        !connect(settings("127.0.0.1", port, Some(TlsMode::Disable), None))
            .await
            .expect("explicit disable connects")
    );

    // 2. TLS on, with a certificate for `localhost` from our own CA.
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let data = dir.path().join("pg").join("data");
    let meta = std::fs::metadata(&data).unwrap();
    for name in ["server.crt", "server.key"] {
        let target = data.join(name);
        std::fs::copy(certs.join(name), &target).unwrap();
        std::os::unix::fs::chown(&target, Some(meta.uid()), Some(meta.gid())).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let admin = sql(&pg.url()).await.unwrap();
    admin
        .batch_execute("ALTER SYSTEM SET ssl = on")
        .await
        .unwrap();
    drop(admin);
    pg.restart().expect("postgres restarts with TLS");
    let ca = certs.join("ca.pem");

    // 3. verify-full with that CA: connects, encrypted.
    assert!(
        connect(settings("localhost", port, None, Some(&ca)))
            .await
            .expect("verify-full with PGSSLROOTCERT connects")
    );
    // 4. verify-full with the default roots (the RDS bundle): refused,
    // permanently, saying which roots were used.
    let error = connect(settings("localhost", port, None, None))
        .await
        .expect_err("our CA is not Amazon RDS");
    assert!(matches!(error, DbError::Tls { .. }), "{error}");
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("Amazon RDS"), "{error}");
    assert!(
        error.to_string().contains("certificate verify failed"),
        "{error}"
    );
    // 5. A host name the certificate does not name: verify-full refuses,
    // verify-ca (chain only) accepts.
    let error = connect(settings(
        "127.0.0.1",
        port,
        Some(TlsMode::VerifyFull),
        Some(&ca),
    ))
    .await
    .expect_err("127.0.0.1 is not in the certificate");
    assert!(matches!(error, DbError::Tls { .. }), "{error}");
    assert!(!error.is_transient(), "{error}");
    assert!(
        connect(settings(
            "127.0.0.1",
            port,
            Some(TlsMode::VerifyCa),
            Some(&ca)
        ))
        .await
        .expect("verify-ca checks the chain only")
    );
    // 6. require: encrypted, not verified.
    assert!(
        connect(settings("127.0.0.1", port, Some(TlsMode::Require), None))
            .await
            .expect("require connects")
    );
    // 7. The URL's own sslmode, and the legacy `prefer`, which never means
    // plaintext.
    let url = format!(
        "postgres://{SUPERUSER}:{SUPERUSER_PASSWORD}@localhost:{port}/postgres?sslmode=prefer"
    );
    assert!(
        connect(DbSettings::from_url(&url, "dbsecurity"))
            .await
            .expect("prefer means require")
    );
}
