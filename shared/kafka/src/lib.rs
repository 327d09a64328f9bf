//! Kafka adapter for logpipe.
//!
//! - [`event`]: the AWS Lambda Kafka event (MSK and self-managed/Confluent),
//!   decoded record by record so one malformed record never fails the batch,
//!   and built from consumed messages (tests, local event source mappings).
//! - [`settings`]: bootstrap servers and security (PLAINTEXT, SASL PLAIN/SCRAM,
//!   SSL, mutual TLS, MSK IAM) from the environment and Secrets Manager.
//! - [`client`]: the configuration and context every client is created with.
//! - [`auth`]: MSK IAM OAUTHBEARER tokens (SigV4) and the client context
//!   that hands them to librdkafka.
//! - [`producer`]: publishes many messages at once and reports each delivery.
//! - [`response`]: the partial batch response (`batchItemFailures`).

pub mod admin;
pub mod auth;
pub mod client;
pub mod dlq;
pub mod event;
pub mod producer;
pub mod response;
pub mod settings;

pub use auth::{AuthContext, IamError};
pub use client::{ClientError, KafkaClientConfig};
pub use event::{DecodedEvent, EventRecord, EventSource, InputRecord, RecordError};
pub use producer::{OutMessage, PublishError, PublishErrorKind, Publisher};
pub use rdkafka;
pub use response::{BatchItemFailure, BatchResponse, ItemIdentifier};
pub use settings::{KafkaSettings, SecurityProtocol, SettingsError};
