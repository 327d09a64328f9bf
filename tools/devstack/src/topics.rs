//! Topic creation on the local broker.

use std::time::Duration;

use anyhow::{Result, bail};
use logpipe_kafka::rdkafka::ClientConfig;
use logpipe_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use logpipe_kafka::rdkafka::client::DefaultClientContext;
use logpipe_kafka::rdkafka::types::RDKafkaErrorCode;

/// The pipeline's topics with their partition counts.
pub const PIPELINE_TOPICS: &[(&str, i32)] = &[
    ("log-ingestion", 6),
    ("log-ingestion.dlq", 1),
    ("log-processing", 6),
    ("log-processing.dlq", 1),
    ("alerts", 1),
    ("ml-predictions", 1),
];

/// Creates the topics that do not exist yet.
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}
