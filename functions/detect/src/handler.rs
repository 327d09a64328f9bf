//! The Lambda boundary: event in, response (or error) out.

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use logpipe_delivery::{ReportMode, Response};
use logpipe_kafka::event::KafkaEventPayload;

use crate::pipeline::{DetectSummary, Detector};

pub use logpipe_delivery::RetryBatch;

/// The success response: partial-batch failures (empty when all went well)
/// and the counts, which Lambda ignores but people and tests read.
pub type DetectResponse = Response<DetectSummary>;

/// Time kept back from the invocation's deadline for answering.
const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

/// Handles a Kafka batch, or a scheduled tick (an EventBridge Scheduler or
/// rule event has no `records`: it reads as an empty batch).
pub async fn handle(
    detector: &Detector,
    event: LambdaEvent<KafkaEventPayload>,
) -> Result<DetectResponse, RetryBatch> {
    let budget = outbox_budget(detector.config().outbox_budget, event.context.deadline);
    let started = std::time::Instant::now();
    let decoded = event.payload.decode();
    let event_decoded_ms = started.elapsed().as_secs_f64() * 1e3;
    let outcome = detector.detect(decoded, chrono::Utc::now(), budget).await;
    tracing::debug!(
        event_decoded_ms,
        detected_ms = started.elapsed().as_secs_f64() * 1e3,
        "invocation phases"
    );
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
        outbox_parked = s.outbox_parked,
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
            ("OutboxParked", s.outbox_parked as f64),
        ],
    );
    let mode = ReportMode::from_flag(detector.config().report_batch_item_failures);
    outcome.settlement.respond(outcome.summary, mode)
}

/// The configured budget, cut to what the invocation's deadline (epoch
/// milliseconds; 0 when unknown, as in tests) leaves.
fn outbox_budget(configured: Duration, deadline_ms: u64) -> Duration {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if deadline_ms == 0 {
        return configured;
    }
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    configured.min(left.saturating_sub(DEADLINE_MARGIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_passes_the_deadline() {
        let ten = Duration::from_secs(10);
        assert_eq!(outbox_budget(ten, 0), ten);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(outbox_budget(ten, now_ms + 5_000) <= Duration::from_secs(2));
        assert_eq!(outbox_budget(ten, now_ms + 1_000), Duration::ZERO);
        assert_eq!(outbox_budget(ten, now_ms + 60_000), ten);
    }
}
