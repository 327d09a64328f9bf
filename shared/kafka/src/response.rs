//! The partial batch response for Kafka event source mappings; its shape
//! lives in `logpipe-delivery` (one place), re-exported here for callers
//! that only know the Kafka adapter.

pub use logpipe_delivery::response::{BatchItemFailure, BatchResponse, ItemIdentifier};
