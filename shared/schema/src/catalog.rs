//! The topic catalog (`infra/topics.json`): every topic the pipeline uses,
//! with partitions, replication and configuration. Pure: applying it to a
//! broker is the Kafka adapter's job.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level configuration (`cleanup.policy`, `retention.ms`, ...).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(rename = "$comment", default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub topics: Vec<TopicSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("topic catalog is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("topic catalog is invalid: {0}")]
    Invalid(String),
}

/// Topics that a function consumes and so need a dead-letter topic.
pub const CONSUMED_TOPICS: [&str; 2] = ["log-ingestion", "log-processing"];

impl Catalog {
    pub fn from_json(text: &str) -> Result<Self, CatalogError> {
        let catalog: Catalog =
            serde_json::from_str(text).map_err(|e| CatalogError::Malformed(e.to_string()))?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// Unique, legal names; positive partitions and replication; a `.dlq`
    /// for every consumed topic.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let mut seen = BTreeSet::new();
        for t in &self.topics {
            let legal = !t.name.is_empty()
                && t.name.len() <= 249
                && t.name != "."
                && t.name != ".."
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !legal {
                return Err(CatalogError::Invalid(format!(
                    "illegal topic name {:?}",
                    t.name
                )));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(CatalogError::Invalid(format!(
                    "topic {} listed twice",
                    t.name
                )));
            }
            if t.partitions < 1 || t.replication_factor < 1 {
                return Err(CatalogError::Invalid(format!(
                    "topic {} needs at least 1 partition and replication factor 1",
                    t.name
                )));
            }
        }
        for consumed in CONSUMED_TOPICS {
            if seen.contains(consumed) && !seen.contains(format!("{consumed}.dlq").as_str()) {
                return Err(CatalogError::Invalid(format!(
                    "consumed topic {consumed} has no {consumed}.dlq"
                )));
            }
        }
        Ok(())
    }

    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }
}

/// What applying the catalog found for one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TopicStatus {
    Created {
        name: String,
    },
    Unchanged {
        name: String,
    },
    /// Exists but differs; nothing is changed (partitions can only grow and
    /// config changes deserve a human).
    Drift {
        name: String,
        differences: Vec<String>,
    },
}

/// Differences between the wanted spec and what the broker has.
/// `actual_config` holds only the keys the broker reported.
pub fn drift(
    want: &TopicSpec,
    actual_partitions: i32,
    actual_config: Option<&BTreeMap<String, String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    if actual_partitions != want.partitions {
        out.push(format!(
            "partitions: catalog {} vs broker {actual_partitions}{}",
            want.partitions,
            if actual_partitions < want.partitions {
                " (fewer)"
            } else {
                " (more)"
            }
        ));
    }
    if let Some(actual) = actual_config {
        for (key, value) in &want.config {
            match actual.get(key) {
                Some(v) if v == value => {}
                Some(v) => out.push(format!("{key}: catalog {value} vs broker {v}")),
                None => out.push(format!("{key}: catalog {value} vs broker (not set)")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../../infra/topics.json");

    #[test]
    fn the_shipped_catalog_is_valid() {
        let c = Catalog::from_json(SHIPPED).unwrap();
        assert_eq!(c.topic("log-ingestion").unwrap().partitions, 6);
        for name in [
            "log-processing",
            "alerts",
            "ml-predictions",
            "log-ingestion.dlq",
            "log-processing.dlq",
        ] {
            assert!(c.topic(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn invalid_catalogs_are_refused() {
        let dup = r#"{"topics":[{"name":"a","partitions":1,"replication_factor":1},{"name":"a","partitions":1,"replication_factor":1}]}"#;
        assert!(
            Catalog::from_json(dup)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let no_dlq =
            r#"{"topics":[{"name":"log-ingestion","partitions":1,"replication_factor":1}]}"#;
        assert!(
            Catalog::from_json(no_dlq)
                .unwrap_err()
                .to_string()
                .contains(".dlq")
        );
        let zero = r#"{"topics":[{"name":"a","partitions":0,"replication_factor":1}]}"#;
        assert!(Catalog::from_json(zero).is_err());
        let bad_name = r#"{"topics":[{"name":"a b","partitions":1,"replication_factor":1}]}"#;
        assert!(Catalog::from_json(bad_name).is_err());
        let unknown_field =
            r#"{"topics":[{"name":"a","partitions":1,"replication_factor":1,"retention":1}]}"#;
        assert!(matches!(
            Catalog::from_json(unknown_field),
            Err(CatalogError::Malformed(_))
        ));
    }

    #[test]
    fn drift_names_partitions_and_config() {
        let want = TopicSpec {
            name: "t".into(),
            partitions: 6,
            replication_factor: 1,
            config: BTreeMap::from([("retention.ms".to_string(), "100".to_string())]),
        };
        assert!(drift(&want, 6, None).is_empty());
        let d = drift(
            &want,
            3,
            Some(&BTreeMap::from([("retention.ms".into(), "5".into())])),
        );
        assert_eq!(d.len(), 2);
        assert!(d[0].contains("fewer"));
        assert!(d[1].contains("retention.ms"));
    }
}
