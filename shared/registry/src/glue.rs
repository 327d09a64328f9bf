//! The AWS Glue Schema Registry through the AWS SDK: `GetSchemaVersion` by
//! the schema version id the Glue framing carries (the id is global, so no
//! registry or schema name is needed).

use aws_sdk_glue::Client;
use aws_sdk_glue::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::RegistryError;
use crate::schema::{SchemaText, SchemaType};

pub struct GlueClient {
    client: Client,
}

impl GlueClient {
    /// Built from the standard AWS environment (region, credentials,
    /// `AWS_ENDPOINT_URL` for moto).
    pub async fn from_env() -> Self {
        let config = aws_config::load_from_env().await;
        Self::new(Client::new(&config))
    }

    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub async fn fetch(&self, version_id: &str) -> Result<SchemaText, RegistryError> {
        let out = self
            .client
            .get_schema_version()
            .schema_version_id(version_id)
            .send()
            .await
            .map_err(|e| classify(version_id, e))?;
        let invalid = |detail: String| RegistryError::Invalid {
            id: version_id.to_string(),
            detail,
        };
        let format = out
            .data_format()
            .map(|f| f.as_str().to_string())
            .unwrap_or_default();
        let schema_type = match SchemaType::from_name(&format) {
            Some(t @ (SchemaType::Avro | SchemaType::Json)) => t,
            // Glue's Protobuf serializer frames messages its own way; only
            // Avro and JSON are read.
            _ => {
                return Err(invalid(format!(
                    "Glue data format {format:?} is not supported (AVRO and JSON are)"
                )));
            }
        };
        let text = out
            .schema_definition()
            .ok_or_else(|| invalid("Glue returned no schema definition".into()))?;
        Ok(SchemaText::new(schema_type, text))
    }
}

fn classify<E, R>(id: &str, err: SdkError<E, R>) -> RegistryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(&err).to_string();
    let id = id.to_string();
    match &err {
        SdkError::ServiceError(service) => match service.err().code() {
            // Ids are immutable: one Glue does not know is a wrong id.
            Some("EntityNotFoundException" | "InvalidInputException") => {
                RegistryError::Unknown { id, detail }
            }
            // Throttling, internal errors and refused access (an operator
            // fixes the role): hand the records back.
            _ => RegistryError::Unavailable { id, detail },
        },
        // Connect errors, timeouts, unreadable responses.
        _ => RegistryError::Unavailable { id, detail },
    }
}
