//! The partial batch response for Kafka event source mappings.
//!
//! The shape lives here alone so it can change in one place: Powertools and
//! aws-lambda-rust-runtime PR #1164 use an object identifier
//! `{"partition":"<topic>-<n>","offset":<n>}`. Lambda resumes each reported
//! partition at the reported offset — only when the mapping has
//! `FunctionResponseTypes: [ReportBatchItemFailures]`; otherwise it ignores
//! the list, so callers must return an error instead (see DESIGN.md).

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

/// Whether a batch must be answered with an error (Lambda retries all of
/// it) rather than with its failure list: when something failed and either
/// the mapping does not read the list or the failure cannot be expressed
/// per partition. Returning a list to a mapping that ignores it loses data.
pub fn must_fail_whole_batch(
    failures: &[BatchItemFailure],
    whole_batch_failed: bool,
    report_batch_item_failures: bool,
) -> bool {
    let has_failures = !failures.is_empty() || whole_batch_failed;
    has_failures && (!report_batch_item_failures || whole_batch_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_the_object_form() {
        let r = BatchResponse {
            batch_item_failures: vec![BatchItemFailure::new("log-ingestion", 3, 42)],
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"batchItemFailures":[{"itemIdentifier":{"partition":"log-ingestion-3","offset":42}}]})
        );
    }
}
