//! The Lambda response to a Kafka batch: the partial batch response
//! (`batchItemFailures`) beside the function's own summary, or an error.
//!
//! The failure shape lives here alone so it can change in one place:
//! Powertools for Python and aws-lambda-rust-runtime PR #1164 use an object
//! identifier `{"partition":"<topic>-<n>","offset":<n>}`. Lambda resumes each
//! reported partition at the reported offset — only when the mapping has
//! `FunctionResponseTypes: [ReportBatchItemFailures]`; otherwise it ignores
//! the list and treats the batch as a success, so a batch with failures must
//! then be answered with an error (Lambda retries all of it and the stored
//! progress skips what was already done).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    pub item_identifier: ItemIdentifier,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemIdentifier {
    /// `<topic>-<partition>`, as the event's `records` keys.
    pub partition: String,
    /// The first offset of that partition that was not processed.
    pub offset: i64,
}

impl BatchItemFailure {
    pub fn new(topic: &str, partition: i32, offset: i64) -> Self {
        Self {
            item_identifier: ItemIdentifier {
                partition: format!("{topic}-{partition}"),
                offset,
            },
        }
    }
}

/// A successful answer: the failure list (empty when all went well) and the
/// function's counts, which Lambda ignores but people and tests read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response<S> {
    #[serde(flatten)]
    pub batch: BatchResponse,
    pub summary: S,
}

/// Returned when records must be retried and the mapping cannot be told
/// which (no `ReportBatchItemFailures`, or a record without coordinates):
/// Lambda retries the whole batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{retry} records must be retried: {cause}")]
pub struct RetryBatch {
    pub cause: String,
    pub retry: usize,
}

#[cfg(feature = "lambda")]
impl From<RetryBatch> for lambda_runtime::Diagnostic {
    fn from(e: RetryBatch) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "RetryBatch".into(),
            error_message: e.to_string(),
        }
    }
}

/// How the event source mapping reads a response. Set by the IaC together
/// with the mapping's `FunctionResponseTypes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportMode {
    /// `ReportBatchItemFailures` is on: failures are listed per partition.
    ItemFailures,
    /// The mapping ignores a failure list: any failure is an error.
    WholeBatch,
}

impl ReportMode {
    pub fn from_flag(report_batch_item_failures: bool) -> Self {
        if report_batch_item_failures {
            ReportMode::ItemFailures
        } else {
            ReportMode::WholeBatch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_the_object_form_beside_the_summary() {
        let r = Response {
            batch: BatchResponse {
                batch_item_failures: vec![BatchItemFailure::new("log-ingestion", 3, 42)],
            },
            summary: serde_json::json!({"records_in": 1}),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "batchItemFailures":[{"itemIdentifier":{"partition":"log-ingestion-3","offset":42}}],
                "summary": {"records_in": 1}
            })
        );
    }
}
