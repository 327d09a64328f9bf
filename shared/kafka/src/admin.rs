//! Applying the topic catalog: create what is missing, report drift, never
//! destroy or alter anything.

use std::collections::BTreeMap;
use std::time::Duration;

use logpipe_schema::catalog::{Catalog, TopicStatus, drift};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use crate::auth::AuthContext;
use crate::client::KafkaClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Kafka broker unreachable ({servers}): {detail}")]
    Unreachable { servers: String, detail: String },
    #[error("creating topic {topic} failed: {detail}")]
    CreateFailed { topic: String, detail: String },
    #[error("Kafka admin client could not be created: {0}")]
    Client(String),
}

/// Applies `catalog`. `replication_override` replaces every topic's
/// replication factor (a single local broker has only 1).
pub async fn apply_catalog(
    client: impl Into<KafkaClientConfig>,
    catalog: &Catalog,
    replication_override: Option<i32>,
) -> Result<Vec<TopicStatus>, AdminError> {
    let client: KafkaClientConfig = client.into();
    let servers = client.bootstrap_servers().to_string();
    let admin: AdminClient<AuthContext> = client
        .config
        .create_with_context(client.context.clone())
        .map_err(|e| AdminError::Client(e.to_string()))?;
    // An admin client never serves token refreshes, so it gets its token
    // here (it lives for one command, well within the token's lifetime).
    client
        .context
        .prime_async(admin.inner())
        .await
        .map_err(|e| AdminError::Client(e.to_string()))?;
    // A blocking call, acceptable in an admin command (not a function).
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| AdminError::Unreachable {
            servers: servers.clone(),
            detail: e.to_string(),
        })?;
    let existing: BTreeMap<String, i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect();

    let missing: Vec<_> = catalog
        .topics
        .iter()
        .filter(|t| !existing.contains_key(&t.name))
        .collect();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| {
            let rf = replication_override.unwrap_or(t.replication_factor);
            t.config.iter().fold(
                NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(rf)),
                |nt, (k, v)| nt.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let mut created = Vec::new();
    if !new_topics.is_empty() {
        let results =
            admin
                .create_topics(&new_topics, &opts)
                .await
                .map_err(|e| AdminError::Unreachable {
                    servers: servers.clone(),
                    detail: e.to_string(),
                })?;
        for r in results {
            match r {
                Ok(name) => created.push(name),
                // Someone else created it between our look and our create.
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => created.push(name),
                Err((name, code)) => {
                    return Err(AdminError::CreateFailed {
                        topic: name,
                        detail: code.to_string(),
                    });
                }
            }
        }
    }

    let present: Vec<_> = catalog
        .topics
        .iter()
        .filter(|t| existing.contains_key(&t.name))
        .collect();
    let configs = describe_configs(
        &admin,
        &present.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        &opts,
    )
    .await;
    let mut report = Vec::new();
    for spec in &catalog.topics {
        if created.contains(&spec.name) {
            report.push(TopicStatus::Created {
                name: spec.name.clone(),
            });
            continue;
        }
        let partitions = existing.get(&spec.name).copied().unwrap_or(0);
        let differences = drift(spec, partitions, configs.get(&spec.name));
        if differences.is_empty() {
            report.push(TopicStatus::Unchanged {
                name: spec.name.clone(),
            });
        } else {
            report.push(TopicStatus::Drift {
                name: spec.name.clone(),
                differences,
            });
        }
    }
    Ok(report)
}

/// Topic configs the broker reports; topics it cannot describe are left
/// out (their config is then not compared).
async fn describe_configs(
    admin: &AdminClient<AuthContext>,
    topics: &[&str],
    opts: &AdminOptions,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if topics.is_empty() {
        return out;
    }
    let specifiers: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let Ok(results) = admin.describe_configs(&specifiers, opts).await else {
        tracing::warn!("the broker does not answer DescribeConfigs; topic configs not compared");
        return out;
    };
    for (topic, result) in topics.iter().zip(results) {
        if let Ok(resource) = result {
            let entries: BTreeMap<String, String> = resource
                .entries
                .into_iter()
                .filter_map(|e| e.value.map(|v| (e.name, v)))
                .collect();
            if !entries.is_empty() {
                out.insert(topic.to_string(), entries);
            }
        }
    }
    out
}
