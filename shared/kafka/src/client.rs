//! The one place logpipe's Kafka clients get their configuration and
//! context: security settings, the SASL secret when there is one, and the
//! MSK IAM token source when `KAFKA_SASL_MECHANISM=AWS_MSK_IAM`.

use logpipe_secrets::{KafkaSecret, SecretsCache};
use rdkafka::ClientConfig;
use rdkafka::config::FromClientConfigAndContext;

use crate::auth::{AuthContext, IamError, IamTokenSource};
use crate::settings::{KafkaSettings, SaslCredentials, SettingsError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("KAFKA_SECRET_ARN={arn} is set but no Secrets Manager client was given")]
    NoSecretsClient { arn: String },
    #[error("Kafka secret {arn} could not be read: {detail}")]
    Secret { arn: String, detail: String },
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error("Kafka client could not be created: {0}")]
    Create(String),
}

/// A librdkafka configuration and the context to create clients with.
#[derive(Debug, Clone)]
pub struct KafkaClientConfig {
    pub config: ClientConfig,
    pub context: AuthContext,
}

impl KafkaClientConfig {
    /// Without IAM (local brokers, tests).
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            context: AuthContext::none(),
        }
    }

    pub fn bootstrap_servers(&self) -> &str {
        self.config.get("bootstrap.servers").unwrap_or_default()
    }

    /// Creates a client from `config` (this configuration plus a caller's
    /// own settings); in IAM mode `client` hands it its first token.
    pub fn create<T>(
        &self,
        config: &ClientConfig,
        client: impl FnOnce(&T) -> &rdkafka::client::Client<AuthContext>,
    ) -> Result<T, ClientError>
    where
        T: FromClientConfigAndContext<AuthContext>,
    {
        let created = T::from_config_and_context(config, self.context.clone())
            .map_err(|e| ClientError::Create(e.to_string()))?;
        self.context.prime(client(&created))?;
        Ok(created)
    }
}

/// A bare configuration: no IAM (local brokers, tests).
impl From<&ClientConfig> for KafkaClientConfig {
    fn from(config: &ClientConfig) -> Self {
        Self::new(config.clone())
    }
}

impl From<&KafkaClientConfig> for KafkaClientConfig {
    fn from(client: &KafkaClientConfig) -> Self {
        client.clone()
    }
}

/// The SASL secret when the settings name one (`refresh` re-reads it).
pub async fn read_secret(
    settings: &KafkaSettings,
    secrets: Option<&SecretsCache>,
    refresh: bool,
) -> Result<Option<KafkaSecret>, ClientError> {
    match (&settings.credentials, secrets) {
        (SaslCredentials::Secret { arn }, Some(cache)) => cache
            .get_json(arn, refresh)
            .await
            .map(Some)
            .map_err(|e| ClientError::Secret {
                arn: arn.clone(),
                detail: e.to_string(),
            }),
        (SaslCredentials::Secret { arn }, None) => {
            Err(ClientError::NoSecretsClient { arn: arn.clone() })
        }
        _ => Ok(None),
    }
}

/// The client context for `settings`: in IAM mode a token source over the
/// default AWS credential chain, checked now (missing credentials fail here).
pub async fn auth_context(settings: &KafkaSettings) -> Result<AuthContext, IamError> {
    match &settings.credentials {
        SaslCredentials::AwsIam { region } => Ok(AuthContext::iam(
            IamTokenSource::from_default_chain(region).await?,
        )),
        _ => Ok(AuthContext::none()),
    }
}

impl KafkaSettings {
    /// Everything a client needs: the secret read when one is configured,
    /// the IAM credentials checked when IAM is.
    pub async fn client(
        &self,
        secrets: Option<&SecretsCache>,
    ) -> Result<KafkaClientConfig, ClientError> {
        let secret = read_secret(self, secrets, false).await?;
        Ok(KafkaClientConfig {
            config: self.client_config(secret.as_ref())?,
            context: auth_context(self).await?,
        })
    }
}
