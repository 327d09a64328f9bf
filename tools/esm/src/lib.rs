//! Local Kafka event source mappings: what AWS Lambda's Kafka ESM does, run
//! on one machine against a real broker, because AWS has no local emulation.
//!
//! Each mapping is a real consumer group (manual commits) that gathers
//! batches by `BatchSize`, `MaximumBatchingWindowInSeconds` and the 6 MB
//! payload limit, builds the event exactly as AWS does (MSK or self-managed
//! envelope, via `logpipe_kafka::event::build_event`), invokes the function
//! ([`Invoke`]: in-process or the Lambda Invoke API), retries failures with
//! exponential backoff, honours `batchItemFailures` when
//! `ReportBatchItemFailures` is set, sends given-up records to the on-failure
//! destination topic, and commits only offsets processed contiguously.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use logpipe_esm::{InvokeError, MappingConfig, start_mapping};
//! use logpipe_kafka::KafkaSettings;
//!
//! let mut config = MappingConfig::new("ingest", &["log-ingestion"], "logpipe-ingest");
//! config.report_batch_item_failures = true;
//! let kafka = KafkaSettings::plaintext("127.0.0.1:9092", "logpipe-esm");
//! let handle = start_mapping(config, &kafka, |event: serde_json::Value| async move {
//!     // ... handle the Lambda Kafka event ...
//!     Ok::<_, InvokeError>(serde_json::json!({"batchItemFailures": []}))
//! })?;
//! println!("{:?}", handle.stats());
//! let final_stats = handle.stop().await?;
//! # Ok(()) }
//! ```
//!
//! Local choices (where AWS differs or is silent):
//! - `MaximumRetryAttempts` absent means 3 retries (AWS's Kafka default is
//!   to retry until the records expire); `-1` retries forever.
//! - A function that cannot be reached (endpoint down, still compiling) is
//!   retried forever and not counted as an attempt.
//! - Reported batch item failures of a partition at the same offset count as
//!   attempts too; once exhausted, that partition's records from the failed
//!   offset go to the destination.
//! - A record whose event alone exceeds 6 MB is never invoked: it goes
//!   straight to the destination (`dlq-error-class: esm_payload_too_large`).
//! - Without a destination, given-up records are logged and counted as
//!   discarded (AWS discards them too).
//! - One batch at a time per mapping (AWS may run partitions in parallel);
//!   per-partition order is the same.
//! - A stop gives an invocation in flight 10 s to finish (and be committed),
//!   then abandons it uncommitted: it is delivered again on the next run.
//! - Given-up records carry `dlq-*` headers (the project's DLQ convention);
//!   a value the failure topic refuses as too large is cut to 900,000 bytes
//!   with `dlq-truncated-from`.

pub mod batch;
pub mod config;
pub mod invoke;
pub mod mapping;
pub mod template;

use std::path::Path;

pub use config::{
    DEFAULT_MAXIMUM_RETRY_ATTEMPTS, MAX_BATCH_SIZE, MAX_PAYLOAD_BYTES, MappingConfig,
    StartingPosition, load_mappings_file,
};
pub use invoke::{HttpInvoker, Invoke, InvokeError};
pub use mapping::{
    MappingHandle, MappingStats, PartitionKey, StatsSnapshot, run_mapping, start_mapping,
};
pub use template::{load_template, parse_template};

#[derive(Debug, thiserror::Error)]
pub enum EsmError {
    #[error("event source mapping configuration: {0}")]
    Config(String),
    #[error("Kafka, for the mapping {mapping}: {detail}")]
    Kafka { mapping: String, detail: String },
    #[error("{0}")]
    Stopped(String),
}

/// Mappings from the SAM template when it exists, else from the mappings
/// file. Returns where they came from, for the log.
pub fn load_mappings(
    template: &Path,
    file: &Path,
) -> Result<(Vec<MappingConfig>, std::path::PathBuf), EsmError> {
    if template.exists() {
        let mappings = load_template(template)?;
        if !mappings.is_empty() {
            return Ok((mappings, template.to_path_buf()));
        }
    }
    Ok((load_mappings_file(file)?, file.to_path_buf()))
}
