//! Topic creation on the local broker.

use std::time::Duration;

use anyhow::{Result, bail};
use logpipe_kafka::rdkafka::ClientConfig;
use logpipe_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use logpipe_kafka::rdkafka::client::DefaultClientContext;
use logpipe_kafka::rdkafka::types::RDKafkaErrorCode;

use logpipe_kafka::admin::apply_catalog;
use logpipe_schema::catalog::{Catalog, TopicStatus};

use crate::root::workspace_root;

/// The topic catalog: `LOGPIPE_TOPIC_CATALOG`, else `infra/topics.json`.
pub fn load_catalog() -> Result<Catalog> {
    let path = match std::env::var_os("LOGPIPE_TOPIC_CATALOG") {
        Some(p) => std::path::PathBuf::from(p),
        None => workspace_root()?.join("infra/topics.json"),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading the topic catalog {}: {e}", path.display()))?;
    Ok(Catalog::from_json(&text)?)
}

/// Applies the catalog to a broker (replication 1: a single local broker).
pub async fn apply_local_catalog(bootstrap: &str) -> Result<Vec<TopicStatus>> {
    let catalog = load_catalog()?;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    Ok(apply_catalog(&config, &catalog, Some(1)).await?)
}

/// One line per topic, and "no changes" when nothing was created or drifted.
pub fn describe(report: &[TopicStatus]) -> String {
    let mut lines = Vec::new();
    for status in report {
        match status {
            TopicStatus::Created { name } => lines.push(format!("created   {name}")),
            TopicStatus::Unchanged { name } => lines.push(format!("unchanged {name}")),
            TopicStatus::Drift { name, differences } => {
                lines.push(format!("DRIFT     {name}: {}", differences.join("; ")))
            }
        }
    }
    if report
        .iter()
        .all(|s| matches!(s, TopicStatus::Unchanged { .. }))
    {
        lines.push("no changes".into());
    }
    lines.join("\n")
}

/// Creates ad hoc topics that do not exist yet (tests).
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
