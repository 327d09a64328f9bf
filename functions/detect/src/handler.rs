//! The Lambda boundary: event in, response (or error) out.

use lambda_runtime::{Diagnostic, LambdaEvent};
use logpipe_kafka::BatchResponse;
use logpipe_kafka::event::KafkaEventPayload;
use serde::Serialize;

use crate::pipeline::{DetectOutcome, DetectSummary, Detector};

/// Returned when records must be retried and the event source mapping
/// cannot be told which (no `ReportBatchItemFailures`): Lambda then retries
/// the whole batch; stored progress skips what was already done and the
/// outbox still holds what was not delivered.
#[derive(Debug, thiserror::Error)]
#[error("batch must be retried ({retry} records): {cause}")]
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

/// The success response: partial-batch failures (empty when all went well)
/// and the counts, which Lambda ignores but people and tests read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectResponse {
    #[serde(flatten)]
    pub batch: BatchResponse,
    pub summary: DetectSummary,
}

pub async fn handle(
    detector: &Detector,
    event: LambdaEvent<KafkaEventPayload>,
) -> Result<DetectResponse, RetryBatch> {
    let outcome = detector
        .detect(event.payload.decode(), chrono::Utc::now())
        .await;
    let s = &outcome.summary;
    tracing::info!(
        request_id = %event.context.request_id,
        records_in = s.records_in,
        records_processed = s.records_processed,
        records_duplicate = s.records_duplicate,
        records_dead_lettered = s.records_dead_lettered,
        records_retry = s.records_retry,
        records_late = s.records_late,
        entities = s.entities,
        alerts_new = s.alerts_new,
        predictions_new = s.predictions_new,
        alerts_suppressed = s.alerts_suppressed,
        outbox_published = s.outbox_published,
        outbox_pending = s.outbox_pending,
        "batch done"
    );
    logpipe_telemetry::emit_metrics(
        &detector.config().function_name,
        &[
            ("RecordsIn", s.records_in as f64),
            ("RecordsDeadLettered", s.records_dead_lettered as f64),
            ("RecordsRetry", s.records_retry as f64),
            ("AlertsNew", s.alerts_new as f64),
            ("OutboxPending", s.outbox_pending as f64),
        ],
    );
    respond(outcome, detector.config().report_batch_item_failures)
}

/// Failures are reported per partition only to a mapping that reads them;
/// otherwise an error makes Lambda retry the batch (never a silent success).
pub fn respond(
    outcome: DetectOutcome,
    report_batch_item_failures: bool,
) -> Result<DetectResponse, RetryBatch> {
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
    Ok(DetectResponse {
        batch: BatchResponse {
            batch_item_failures: outcome.failures,
        },
        summary: outcome.summary,
    })
}
