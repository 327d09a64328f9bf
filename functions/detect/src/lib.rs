//! The detect function: normalized records from `log-processing` feed the
//! detection engine (state in PostgreSQL, one locked row per entity);
//! alerts go to `alerts` and per-window predictions to `ml-predictions`
//! through an outbox, so a retry never loses or duplicates an id.

pub mod config;
pub mod handler;
pub mod pipeline;
pub mod state_cache;

pub use config::DetectConfig;
pub use handler::{DetectResponse, RetryBatch, handle};
pub use pipeline::{DetectOutcome, DetectSummary, Detector};

/// Builds the function's clients from the environment, once per sandbox.
pub async fn from_env() -> anyhow::Result<Detector> {
    let config = DetectConfig::from_env()?;
    // The outbox is published and every ack awaited before the batch can
    // answer: lingering would only delay it.
    let clients = logpipe_lambda::Clients::from_env(
        &config.function_name,
        config.message_timeout,
        logpipe_kafka::settings::AWAITED_BURST_LINGER_MS,
    )
    .await?;
    Ok(Detector::new(config, clients.db, clients.publisher))
}
