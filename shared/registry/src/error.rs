//! What can go wrong, each answering "transient or permanent?".

/// Why a schema-registry payload could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry (or the schema directory) has no schema with this id,
    /// or no registry is configured: permanent, dead-letter class
    /// `schema_unknown`.
    #[error("schema {id} is unknown: {detail}")]
    Unknown { id: String, detail: String },
    /// The schema exists but cannot be used (unparseable text, an
    /// unsupported type or reference): permanent, `schema_invalid`.
    #[error("schema {id} cannot be used: {detail}")]
    Invalid { id: String, detail: String },
    /// The payload does not match its framing or its schema (truncated,
    /// wrong magic byte, bad compression, bytes the schema cannot read):
    /// permanent, `schema_decode_failed`.
    #[error("payload cannot be decoded: {0}")]
    Decode(String),
    /// The registry did not answer (connect error, timeout, 5xx,
    /// throttling, credentials that could not be read): transient, the
    /// record is handed back for retry and never dead-lettered.
    #[error("schema registry unavailable while reading schema {id}: {detail}")]
    Unavailable { id: String, detail: String },
}

impl RegistryError {
    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }

    /// The stable dead-letter class (`dlq-error-class` header).
    pub fn class(&self) -> &'static str {
        match self {
            RegistryError::Unknown { .. } => "schema_unknown",
            RegistryError::Invalid { .. } => "schema_invalid",
            RegistryError::Decode(_) => "schema_decode_failed",
            RegistryError::Unavailable { .. } => "schema_registry_unavailable",
        }
    }

    pub(crate) fn decode(detail: impl Into<String>) -> Self {
        RegistryError::Decode(detail.into())
    }
}

/// The registry settings cannot work (found at init).
#[derive(Debug, thiserror::Error)]
#[error("schema registry configuration is invalid: {0}")]
pub struct RegistryConfigError(pub String);
