//! The Lambda boundary: event in, response (or error) out.

use lambda_runtime::{Diagnostic, LambdaEvent};
use logpipe_kafka::BatchResponse;
use logpipe_kafka::event::KafkaEventPayload;
use serde::Serialize;

use crate::pipeline::{BatchOutcome, BatchSummary, Ingestor};

/// Returned when records must be retried and the event source mapping
/// cannot be told which (no `ReportBatchItemFailures`): Lambda then retries
/// the whole batch, and the stored progress skips what was already done.
#[derive(Debug, thiserror::Error)]
#[error("{retry} records must be retried: {cause}")]
pub struct RetryBatch {
    pub cause: String,
    pub retry: usize,
}

impl From<RetryBatch> for Diagnostic {
    fn from(e: RetryBatch) -> Self {
        Diagnostic {
            error_type: "RetryBatch".into(),
            error_message: e.to_string(),
        }
    }
}

/// The success response: the partial-batch failures (empty when all went
/// well) and the counts, which Lambda ignores but people and tests read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestResponse {
    #[serde(flatten)]
    pub batch: BatchResponse,
    pub summary: BatchSummary,
}

pub async fn handle(
    ingestor: &Ingestor,
    event: LambdaEvent<KafkaEventPayload>,
) -> Result<IngestResponse, RetryBatch> {
    let started = std::time::Instant::now();
    let decoded = event.payload.decode();
    tracing::debug!(
        decode_ms = started.elapsed().as_millis() as u64,
        "event decoded"
    );
    let outcome = ingestor.ingest(decoded).await;
    tracing::debug!(
        ingest_done_ms = started.elapsed().as_millis() as u64,
        "batch ingested"
    );
    let s = &outcome.summary;
    tracing::info!(
        request_id = %event.context.request_id,
        records_in = s.records_in,
        records_stored = s.records_stored,
        records_duplicate = s.records_duplicate,
        records_dead_lettered = s.records_dead_lettered,
        records_retry = s.records_retry,
        rows_inserted = s.rows_inserted,
        rows_already_present = s.rows_already_present,
        records_forwarded = s.records_forwarded,
        "batch done"
    );
    logpipe_telemetry::emit_metrics(
        "ingest",
        &[
            ("RecordsIn", s.records_in),
            ("RecordsStored", s.records_stored),
            ("RecordsDeadLettered", s.records_dead_lettered),
            ("RecordsRetry", s.records_retry),
        ],
    );
    respond(outcome, ingestor.config().report_batch_item_failures)
}

/// Failures are reported per partition only to a mapping that reads them;
/// otherwise an error makes Lambda retry the batch (never a silent success).
pub fn respond(
    outcome: BatchOutcome,
    report_batch_item_failures: bool,
) -> Result<IngestResponse, RetryBatch> {
    if logpipe_kafka::response::must_fail_whole_batch(
        &outcome.failures,
        outcome.whole_batch_failed,
        report_batch_item_failures,
    ) {
        return Err(RetryBatch {
            cause: outcome.cause.unwrap_or_else(|| "unknown".into()),
            retry: outcome.summary.records_retry,
        });
    }
    Ok(IngestResponse {
        batch: BatchResponse {
            batch_item_failures: outcome.failures,
        },
        summary: outcome.summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpipe_kafka::BatchItemFailure;

    fn outcome(failures: Vec<BatchItemFailure>, whole: bool) -> BatchOutcome {
        BatchOutcome {
            summary: BatchSummary {
                records_in: 3,
                records_retry: 2,
                ..Default::default()
            },
            failures,
            cause: Some("database unreachable".into()),
            whole_batch_failed: whole,
        }
    }

    #[test]
    fn failures_are_listed_only_for_a_mapping_that_reads_them() {
        let f = vec![BatchItemFailure::new("t", 0, 5)];
        let ok = respond(outcome(f.clone(), false), true).unwrap();
        assert_eq!(ok.batch.batch_item_failures, f);
        let err = respond(outcome(f, false), false).unwrap_err();
        assert!(err.to_string().contains("database unreachable"));
        assert_eq!(err.retry, 2);
    }

    #[test]
    fn a_whole_batch_failure_is_always_an_error() {
        assert!(respond(outcome(vec![], true), true).is_err());
    }

    #[test]
    fn success_has_an_empty_failure_list() {
        let r = respond(outcome(vec![], false), false).unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["batchItemFailures"], serde_json::json!([]));
        assert_eq!(json["summary"]["records_in"], 3);
    }
}
