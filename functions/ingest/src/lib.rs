//! The ingest function: a Kafka event (MSK or self-managed/Confluent) becomes
//! rows in PostgreSQL `logs`, normalized records on `log-processing`, and
//! dead letters on `<topic>.dlq` — idempotently, with partial-batch retries.

pub mod classify;
pub mod config;
pub mod handler;
pub mod messages;
pub mod pipeline;

pub use classify::Limits;
pub use config::IngestConfig;
pub use handler::{IngestResponse, RetryBatch, handle};
pub use pipeline::{BatchOutcome, BatchSummary, Ingestor};

use std::sync::Arc;

use logpipe_kafka::settings::SaslCredentials;
use logpipe_kafka::{KafkaSettings, Publisher};
use logpipe_postgres::{Database, DbSettings, DbSource};
use logpipe_secrets::SecretsCache;

/// Builds the function's clients from the environment, once per sandbox.
pub async fn from_env() -> anyhow::Result<Ingestor> {
    let config = IngestConfig::from_env()?;
    let db_settings = DbSettings::from_env(&config.function_name)?;
    let kafka_settings = KafkaSettings::from_env(&config.function_name)?;
    let needs_secrets = matches!(db_settings.source, DbSource::Secret { .. })
        || matches!(kafka_settings.credentials, SaslCredentials::Secret { .. });
    let secrets = if needs_secrets {
        Some(Arc::new(SecretsCache::from_env().await))
    } else {
        None
    };
    let db = Database::new(db_settings, secrets.clone())?;
    let publisher = Publisher::new(kafka_settings, secrets, config.message_timeout).await?;
    Ok(Ingestor::new(config, db, publisher))
}
