//! The wiring every Kafka-triggered function shares, in one place: its
//! clients built from the environment once per sandbox, the migrations
//! applied once (at init, or at the first batch when the database was down
//! at init), and the init-time check that names a missing topic or an
//! unreachable broker in the init log ([`InitChecks`] runs those checks
//! beside the runtime's first `next` request instead of before it).

mod init_checks;

pub use init_checks::{InitChecks, schema_and_topics};

use std::sync::Arc;
use std::time::Duration;

use logpipe_kafka::settings::SaslCredentials;
use logpipe_kafka::{KafkaSettings, PublishError, Publisher, SettingsError};
use logpipe_postgres::{Database, DbError, DbSettings, DbSource, check_schema, migrate};
use logpipe_secrets::SecretsCache;
use tokio::sync::OnceCell;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    KafkaSettings(#[from] SettingsError),
    #[error(transparent)]
    Kafka(#[from] PublishError),
}

/// A function's clients: reused across invocations.
pub struct Clients {
    pub db: Database,
    pub publisher: Publisher,
}

impl Clients {
    /// Reads the database and Kafka settings (`DB_*`, `DATABASE_URL`,
    /// `KAFKA_*`), fetching secrets from Secrets Manager only when one is
    /// configured.
    /// `default_linger_ms`: the producer's `linger.ms` unless
    /// `KAFKA_LINGER_MS` says otherwise.
    pub async fn from_env(
        function_name: &str,
        message_timeout: Duration,
        default_linger_ms: u32,
    ) -> Result<Self, WiringError> {
        let db_settings = DbSettings::from_env(function_name)?;
        let kafka_settings = KafkaSettings::from_env_with_linger(function_name, default_linger_ms)?;
        let needs_secrets = matches!(db_settings.source, DbSource::Secret { .. })
            || matches!(kafka_settings.credentials, SaslCredentials::Secret { .. });
        let secrets = if needs_secrets {
            Some(Arc::new(SecretsCache::from_env().await))
        } else {
            None
        };
        let db = Database::new(db_settings, secrets.clone())?;
        let publisher = Publisher::new(kafka_settings, secrets, message_timeout).await?;
        Ok(Self { db, publisher })
    }
}

/// The schema, checked (or migrated) at most once per sandbox.
pub struct Schema {
    run_migrations: bool,
    ready: OnceCell<()>,
}

impl Schema {
    /// `run_migrations`: `RUN_MIGRATIONS` (default off). Off, the function
    /// only checks that the schema is at the version this build needs: its
    /// runtime role has no DDL rights; the owner migrates (the maintain
    /// function, `make up`). On, it migrates (a single-user setup).
    pub fn new(run_migrations: bool) -> Self {
        Self {
            run_migrations,
            ready: OnceCell::new(),
        }
    }

    /// Until it succeeds once, every call tries again: a database down at
    /// init is checked at the first batch.
    pub async fn ensure(&self, db: &Database) -> Result<(), DbError> {
        // Boxed: the migration future is deep, and callers nest it further.
        let init = Box::pin(self.ready.get_or_try_init(|| async {
            let mut client = db.client().await?;
            if self.run_migrations {
                migrate(&mut client).await.map(|_| ())
            } else {
                check_schema(&client).await.map(|_| ())
            }
        }));
        init.await.map(|_| ())
    }
}

/// Logs a specific error when the broker is unreachable or a topic is
/// missing (and warms the producer). Never fails: the broker may come back.
pub async fn check_topics(publisher: &Publisher, topics: &[&str]) {
    match publisher.check_topics(topics, Duration::from_secs(5)).await {
        Ok(()) => tracing::info!(?topics, "Kafka reachable and topics present"),
        Err(error) => tracing::error!(%error, "Kafka not ready at init"),
    }
}
