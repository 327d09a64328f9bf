//! The detect function: normalized records from `log-processing` feed the
//! detection engine (state in PostgreSQL, one locked row per entity);
//! alerts go to `alerts` and per-window predictions to `ml-predictions`
//! through an outbox, so a retry never loses or duplicates an id.

pub mod config;
pub mod handler;
pub mod pipeline;

pub use config::DetectConfig;
pub use handler::{DetectResponse, RetryBatch, handle};
pub use pipeline::{DetectOutcome, DetectSummary, Detector};

use std::sync::Arc;

use logpipe_kafka::settings::SaslCredentials;
use logpipe_kafka::{KafkaSettings, Publisher};
use logpipe_postgres::{Database, DbSettings, DbSource};
use logpipe_secrets::SecretsCache;

/// Builds the function's clients from the environment, once per sandbox.
pub async fn from_env() -> anyhow::Result<Detector> {
    let config = DetectConfig::from_env()?;
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
    Ok(Detector::new(config, db, publisher))
}
