//! Schema-registry payloads, decoded to JSON before parsing so the usual
//! parsers and normalization apply.
//!
//! A Kafka value written by a Confluent or AWS Glue serializer starts with
//! a framing that names its schema ([`wire`]); the schema comes from the
//! configured source — a Confluent-compatible REST registry
//! ([`confluent`]), the AWS Glue Schema Registry ([`glue`]), or files shipped
//! with the function ([`files`]) — is compiled once ([`schema`]) and kept in
//! a small bounded cache that lives as long as the sandbox. The decoded
//! record becomes JSON text (a schema whose value is a string gives that
//! string).
//!
//! Every failure is a [`RegistryError`] that says whether it is transient
//! (the registry did not answer: retry) or permanent (unknown schema,
//! unusable schema, payload that does not decode: dead-letter).

pub mod confluent;
pub mod error;
pub mod files;
pub mod glue;
pub mod schema;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use error::{RegistryConfigError, RegistryError};
pub use schema::{Schema, SchemaText, SchemaType};
pub use wire::{Framed, SchemaKey, format_uuid, is_framed, parse_uuid, unframe};

use confluent::{ConfluentClient, Credentials};
use files::SchemaDir;
use glue::GlueClient;

/// Where schemas come from, as configured.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `SCHEMA_REGISTRY` | `none` | `confluent`, `glue`, `files` or `none` (framed values are then dead-lettered as `schema_unknown`) |
/// | `SCHEMA_REGISTRY_URL` | — | `confluent`: the registry's root URL (`http://` or `https://`) |
/// | `SCHEMA_REGISTRY_SECRET_ARN` | — | `confluent`, optional: a Secrets Manager secret `{"username","password"}` for basic auth |
/// | `SCHEMA_REGISTRY_DIR` | — | `files`: the directory of schema files (`<id>.avsc`, `<id>.proto`, `<id>.json`) |
/// | `SCHEMA_CACHE_SIZE` | `1000` | compiled schemas kept across invocations |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    pub source: SourceSettings,
    pub cache_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSettings {
    None,
    Confluent {
        url: String,
        secret_arn: Option<String>,
    },
    Glue,
    Files {
        dir: PathBuf,
    },
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            source: SourceSettings::None,
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

/// Enough for every schema of a typical estate; a compiled schema is a few
/// kilobytes.
pub const DEFAULT_CACHE_SIZE: usize = 1000;

impl RegistrySettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, RegistryConfigError> {
        let value = |key: &str| {
            get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let required = |key: &str, kind: &str| {
            value(key)
                .ok_or_else(|| RegistryConfigError(format!("SCHEMA_REGISTRY={kind} needs {key}")))
        };
        let kind = value("SCHEMA_REGISTRY").unwrap_or_else(|| "none".into());
        let source = match kind.to_ascii_lowercase().as_str() {
            "none" => SourceSettings::None,
            "confluent" => SourceSettings::Confluent {
                url: required("SCHEMA_REGISTRY_URL", "confluent")?,
                secret_arn: value("SCHEMA_REGISTRY_SECRET_ARN"),
            },
            "glue" => SourceSettings::Glue,
            "files" => SourceSettings::Files {
                dir: required("SCHEMA_REGISTRY_DIR", "files")?.into(),
            },
            other => {
                return Err(RegistryConfigError(format!(
                    "SCHEMA_REGISTRY={other:?}: expected confluent, glue, files or none"
                )));
            }
        };
        let cache_size = match value("SCHEMA_CACHE_SIZE") {
            None => DEFAULT_CACHE_SIZE,
            Some(v) => v.parse::<usize>().map_err(|_| {
                RegistryConfigError(format!("SCHEMA_CACHE_SIZE={v:?} is not a number"))
            })?,
        }
        .max(1);
        Ok(Self { source, cache_size })
    }
}

enum Source {
    None,
    Confluent(Box<ConfluentClient>),
    Glue(GlueClient),
    Files(SchemaDir),
}

/// A decoded value: the JSON text, and which schema it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub value: Vec<u8>,
    pub schema_type: SchemaType,
    pub schema_id: String,
}

/// Schemas by id, from one source, compiled once and cached.
pub struct Registry {
    source: Source,
    cache: Mutex<SchemaCache>,
}

impl Registry {
    /// Builds the configured source; clients are built once per sandbox.
    pub async fn from_settings(settings: &RegistrySettings) -> Result<Self, RegistryConfigError> {
        let source = match &settings.source {
            SourceSettings::None => Source::None,
            SourceSettings::Confluent { url, secret_arn } => {
                let credentials = match secret_arn {
                    Some(arn) => Credentials::Secret {
                        arn: arn.clone(),
                        cache: logpipe_secrets::SecretsCache::from_env().await,
                    },
                    None => Credentials::None,
                };
                Source::Confluent(Box::new(ConfluentClient::new(url, credentials)?))
            }
            SourceSettings::Glue => Source::Glue(GlueClient::from_env().await),
            SourceSettings::Files { dir } => Source::Files(SchemaDir::new(dir.clone())?),
        };
        Ok(Self::with_source(source, settings.cache_size))
    }

    /// No registry: every framed value is `schema_unknown`.
    pub fn none() -> Self {
        Self::with_source(Source::None, 1)
    }

    pub fn confluent(client: ConfluentClient, cache_size: usize) -> Self {
        Self::with_source(Source::Confluent(Box::new(client)), cache_size)
    }

    pub fn glue(client: GlueClient, cache_size: usize) -> Self {
        Self::with_source(Source::Glue(client), cache_size)
    }

    pub fn files(dir: SchemaDir, cache_size: usize) -> Self {
        Self::with_source(Source::Files(dir), cache_size)
    }

    fn with_source(source: Source, cache_size: usize) -> Self {
        Self {
            source,
            cache: Mutex::new(SchemaCache::new(cache_size)),
        }
    }

    /// Whether a source is configured.
    pub fn is_configured(&self) -> bool {
        !matches!(self.source, Source::None)
    }

    /// The compiled schema, from the cache or the source.
    pub async fn schema(&self, key: &SchemaKey) -> Result<Arc<Schema>, RegistryError> {
        if let Some(hit) = self.cache_lock().get(key) {
            return Ok(hit);
        }
        let id = key.id();
        let text = match (&self.source, key) {
            (Source::None, _) => {
                return Err(RegistryError::Unknown {
                    id,
                    detail: "no schema registry is configured (set SCHEMA_REGISTRY)".into(),
                });
            }
            (Source::Confluent(c), SchemaKey::Confluent(n)) => c.fetch(*n).await?,
            (Source::Glue(g), SchemaKey::Glue(uuid)) => g.fetch(uuid).await?,
            (Source::Files(dir), _) => dir.fetch(&id)?,
            (Source::Confluent(_), SchemaKey::Glue(_)) => {
                return Err(RegistryError::Unknown {
                    id,
                    detail: "the value has Glue framing but the registry is Confluent".into(),
                });
            }
            (Source::Glue(_), SchemaKey::Confluent(_)) => {
                return Err(RegistryError::Unknown {
                    id,
                    detail: "the value has Confluent framing but the registry is Glue".into(),
                });
            }
        };
        let compiled = Arc::new(Schema::compile(&id, &text)?);
        tracing::info!(schema_id = %id, schema_type = compiled.schema_type().name(), "schema loaded");
        self.cache_lock().insert(key.clone(), compiled.clone());
        Ok(compiled)
    }

    /// Unframes, fetches the schema and decodes: the value as JSON text.
    pub async fn decode(&self, value: &[u8]) -> Result<Decoded, RegistryError> {
        let framed = unframe(value)?;
        let schema = self.schema(&framed.key).await?;
        decode_with(&schema, &framed)
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, SchemaCache> {
        // The cache holds no invariant a panic could break.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Decodes a framed payload with its (already fetched) schema.
pub fn decode_with(schema: &Schema, framed: &Framed<'_>) -> Result<Decoded, RegistryError> {
    let confluent = matches!(framed.key, SchemaKey::Confluent(_));
    Ok(Decoded {
        value: schema.decode(&framed.payload, confluent)?,
        schema_type: schema.schema_type(),
        schema_id: framed.key.id(),
    })
}

/// Compiled schemas by key, the oldest evicted first once full.
struct SchemaCache {
    capacity: usize,
    map: HashMap<SchemaKey, Arc<Schema>>,
    order: VecDeque<SchemaKey>,
}

impl SchemaCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, key: &SchemaKey) -> Option<Arc<Schema>> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: SchemaKey, schema: Arc<Schema>) {
        if self.map.insert(key.clone(), schema).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests;
