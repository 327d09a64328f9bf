//! The Lambda boundary: event in, response (or error) out.

use lambda_runtime::LambdaEvent;
use logpipe_delivery::{ReportMode, Response};
use logpipe_kafka::event::KafkaEventPayload;

use crate::pipeline::{BatchSummary, Ingestor};

pub use logpipe_delivery::RetryBatch;

/// The success response: the partial-batch failures (empty when all went
/// well) and the counts, which Lambda ignores but people and tests read.
pub type IngestResponse = Response<BatchSummary>;

pub async fn handle(
    ingestor: &Ingestor,
    event: LambdaEvent<KafkaEventPayload>,
) -> Result<IngestResponse, RetryBatch> {
    let outcome = ingestor.ingest(event.payload.decode()).await;
    let s = &outcome.summary;
    tracing::info!(
        request_id = %event.context.request_id,
        records_in = s.records_in,
        records_stored = s.records_stored,
        records_duplicate = s.records_duplicate,
        records_dead_lettered = s.records_dead_lettered,
        records_retry = s.records_retry,
        records_retry_permanent = s.records_retry_permanent,
        rows_inserted = s.rows_inserted,
        rows_already_present = s.rows_already_present,
        rows_rejected = s.rows_rejected,
        records_forwarded = s.records_forwarded,
        control_messages = s.control_messages,
        records_schema_decoded = s.records_schema_decoded,
        "batch done"
    );
    logpipe_telemetry::emit_metrics(
        &ingestor.config().function_name,
        &[
            ("RecordsIn", s.records_in as f64),
            ("RecordsStored", s.records_stored as f64),
            ("RecordsDeadLettered", s.records_dead_lettered as f64),
            ("RecordsRetry", s.records_retry as f64),
            ("RowsRejected", s.rows_rejected as f64),
            ("ControlMessages", s.control_messages as f64),
        ],
    );
    let mode = ReportMode::from_flag(ingestor.config().report_batch_item_failures);
    outcome.settlement.respond(outcome.summary, mode)
}
