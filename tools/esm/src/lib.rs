//! Local Kafka event source mappings (work in progress).
