//! Credentials from AWS Secrets Manager.
//!
//! Secrets are fetched once and cached for the life of the Lambda sandbox;
//! callers ask for a refresh when the credentials stop working (a rotated
//! password), which is the only moment a re-read is worth its latency.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

/// A database secret in the shape RDS writes (`{host,port,username,password,dbname}`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct DbSecret {
    pub host: String,
    #[serde(deserialize_with = "port_from_number_or_string")]
    pub port: u16,
    pub username: String,
    pub password: String,
    pub dbname: String,
}

impl fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSecret")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// Kafka SASL credentials (`{username,password}`); for Confluent Cloud the
/// API key and secret.
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct KafkaSecret {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for KafkaSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSecret")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn port_from_number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Port::deserialize(d)? {
        Port::Number(p) => Ok(p),
        Port::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("port {s:?} is not a number"))),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "secret {arn} is missing: Secrets Manager has no such secret (check the ARN and region)"
    )]
    Missing { arn: String },
    #[error("secret {arn} cannot be read: access denied ({detail})")]
    AccessDenied { arn: String, detail: String },
    #[error("secret {arn} has no string value or is not the expected JSON: {detail}")]
    Malformed { arn: String, detail: String },
    #[error("Secrets Manager is unreachable while reading {arn}: {detail}")]
    Unreachable { arn: String, detail: String },
}

impl SecretsError {
    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretsError::Unreachable { .. })
    }
}

/// Reads secrets, caching each secret string by ARN.
pub struct SecretsCache {
    client: Client,
    cache: Mutex<HashMap<String, String>>,
}

impl SecretsCache {
    /// Builds the client from the standard AWS environment (region, credentials,
    /// `AWS_ENDPOINT_URL` for moto or LocalStack).
    pub async fn from_env() -> Self {
        let config = aws_config::load_from_env().await;
        Self::new(Client::new(&config))
    }

    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The secret's JSON, from the cache unless `refresh` is set.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        arn: &str,
        refresh: bool,
    ) -> Result<T, SecretsError> {
        let text = self.get_string(arn, refresh).await?;
        serde_json::from_str(&text).map_err(|e| SecretsError::Malformed {
            arn: arn.to_string(),
            detail: e.to_string(),
        })
    }

    async fn get_string(&self, arn: &str, refresh: bool) -> Result<String, SecretsError> {
        let mut cache = self.cache.lock().await;
        if !refresh && let Some(text) = cache.get(arn) {
            return Ok(text.clone());
        }
        tracing::info!(secret = arn, refresh, "reading secret from Secrets Manager");
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| classify(arn, e))?;
        let text = out
            .secret_string()
            .ok_or_else(|| SecretsError::Malformed {
                arn: arn.to_string(),
                detail: "SecretString is empty (binary secrets are not supported)".into(),
            })?
            .to_string();
        cache.insert(arn.to_string(), text.clone());
        Ok(text)
    }
}

fn classify<E, R>(arn: &str, err: SdkError<E, R>) -> SecretsError
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let arn = arn.to_string();
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some("ResourceNotFoundException") => SecretsError::Missing { arn },
            Some("AccessDeniedException") | Some("UnrecognizedClientException") => {
                SecretsError::AccessDenied { arn, detail }
            }
            Some("InternalServiceError") | Some("ThrottlingException") => {
                SecretsError::Unreachable { arn, detail }
            }
            _ => SecretsError::Malformed { arn, detail },
        },
        _ => SecretsError::Unreachable { arn, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_secret_accepts_port_as_number_or_string() {
        let a: DbSecret = serde_json::from_str(
            r#"{"host":"h","port":5432,"username":"u","password":"p","dbname":"d","engine":"postgres"}"#,
        )
        .unwrap();
        let b: DbSecret = serde_json::from_str(
            r#"{"host":"h","port":"5432","username":"u","password":"p","dbname":"d"}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.port, 5432);
    }

    #[test]
    fn rds_secret_rejects_bad_port_and_hides_password() {
        let err = serde_json::from_str::<DbSecret>(
            r#"{"host":"h","port":"x","username":"u","password":"p","dbname":"d"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
        let s: KafkaSecret =
            serde_json::from_str(r#"{"username":"u","password":"hunter2"}"#).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
