//! The ingest function: a Kafka event (MSK or self-managed/Confluent) becomes
//! rows in PostgreSQL `logs`, normalized records on `log-processing`, and
//! dead letters on `<topic>.dlq` — idempotently, with partial-batch retries.

pub mod classify;
pub mod config;
pub mod handler;
pub mod messages;
pub mod pipeline;
pub mod registry;

pub use classify::Limits;
pub use config::IngestConfig;
pub use handler::{IngestResponse, RetryBatch, handle};
pub use pipeline::{BatchOutcome, BatchSummary, Ingestor};

/// Builds the function's clients from the environment, once per sandbox.
pub async fn from_env() -> anyhow::Result<Ingestor> {
    let config = IngestConfig::from_env()?;
    let registry_settings =
        logpipe_registry::RegistrySettings::from_lookup(|k| std::env::var(k).ok())?;
    let clients = logpipe_lambda::Clients::from_env(
        &config.function_name,
        config.message_timeout,
        logpipe_kafka::settings::DEFAULT_LINGER_MS,
    )
    .await?;
    let registry = logpipe_registry::Registry::from_settings(&registry_settings).await?;
    Ok(Ingestor::new(config, clients.db, clients.publisher)
        .with_registry(std::sync::Arc::new(registry)))
}
