//! MSK IAM access control: SASL/OAUTHBEARER tokens that are SigV4-presigned
//! `kafka-cluster:Connect` requests (made by `aws-msk-iam-sasl-signer`),
//! signed with the standard AWS credential chain.
//!
//! [`AuthContext`] is the rdkafka client context every logpipe client uses.
//! In IAM mode it answers librdkafka's token refresh requests
//! (`generate_oauth_token`); librdkafka asks again at 80 % of the lifetime
//! we report, so the expiry returned here must be the token's real one: the
//! presigned URL's (signing time + `X-Amz-Expires`), or the credentials'
//! own expiry when that comes first (a presigned URL dies with the session
//! token that signed it).
//!
//! rdkafka only serves refresh requests from a client's main queue, which
//! producers poll all the time but an admin client never does and consumers
//! only do inside `poll`. So every client is also handed a first token as
//! soon as it is created ([`AuthContext::prime`]); after that, producers
//! refresh on librdkafka's schedule and short-lived clients (the topics
//! command, health checks) live well within one token's 15 minutes.

use std::ffi::{CString, c_char};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_types::region::Region;
use rdkafka::ClientContext;
use rdkafka::client::{Client, OAuthToken};
use rdkafka::consumer::ConsumerContext;

/// `KAFKA_SASL_MECHANISM` value that selects MSK IAM.
pub const IAM_MECHANISM: &str = "AWS_MSK_IAM";

/// The credential sources the default AWS chain tries, in its order, for
/// the missing-credentials error. (logpipe builds aws-config without the
/// `sso` and `credentials-process` features, so profiles that use those
/// are not among them.)
pub const CREDENTIAL_SOURCES: &str = "environment (AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY [+ AWS_SESSION_TOKEN]), \
shared config and credentials files (AWS_PROFILE, ~/.aws/config, ~/.aws/credentials), \
web identity token (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), \
ECS container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI), \
EC2 instance metadata (IMDSv2)";

/// Credentials expiring sooner than this are fetched again, so a token
/// never has less than this left when it is made.
const CREDENTIALS_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How long one token (credentials included) may take, so a stuck
/// credential endpoint cannot hold a librdkafka thread forever.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    #[error(
        "KAFKA_SASL_MECHANISM={IAM_MECHANISM} needs an AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)"
    )]
    MissingRegion,
    #[error("MSK IAM auth found no AWS credentials; tried: {tried}. ({detail})")]
    MissingCredentials { tried: &'static str, detail: String },
    #[error("MSK IAM auth: the AWS credential configuration is invalid: {0}")]
    InvalidCredentials(String),
    /// A credential endpoint (IMDS, ECS, STS) failed or timed out.
    #[error("MSK IAM auth: AWS credentials could not be fetched now: {0}")]
    CredentialsUnavailable(String),
    #[error("MSK IAM auth: the token could not be signed: {0}")]
    Sign(String),
    #[error(
        "MSK IAM auth needs a Tokio runtime to fetch credentials; create the client inside one"
    )]
    NoRuntime,
    #[error("librdkafka refused the MSK IAM token: {0}")]
    SetToken(String),
}

impl IamError {
    /// Whether the same call may succeed later without a configuration change.
    pub fn is_transient(&self) -> bool {
        matches!(self, IamError::CredentialsUnavailable(_))
    }
}

/// The region IAM tokens are signed for: `AWS_REGION`, then
/// `AWS_DEFAULT_REGION` (empty counts as unset).
pub fn region_from(get: impl Fn(&str) -> Option<String>) -> Result<String, IamError> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find_map(|k| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        })
        .ok_or(IamError::MissingRegion)
}

/// One signed token and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamToken {
    /// base64url (unpadded) of the presigned URL.
    pub value: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// Signs MSK IAM tokens for one region from one credentials provider.
pub struct IamTokenSource {
    region: Region,
    provider: SharedCredentialsProvider,
    /// Expiring credentials (IMDS, ECS, web identity) are kept until
    /// [`CREDENTIALS_REFRESH_MARGIN`] before they expire; credentials
    /// without an expiry (environment, static) are read again each time,
    /// which costs nothing.
    cached: Mutex<Option<Credentials>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for IamTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamTokenSource")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl IamTokenSource {
    /// A source over `provider`. Must be called inside a Tokio runtime:
    /// librdkafka's threads fetch credentials on it.
    pub fn new(region: &str, provider: SharedCredentialsProvider) -> Result<Self, IamError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| IamError::NoRuntime)?;
        Ok(Self {
            region: Region::new(region.to_string()),
            provider,
            cached: Mutex::new(None),
            runtime,
        })
    }

    /// A source over the default AWS credential chain, checked now: an
    /// error here names what is missing instead of every publish failing
    /// later with an authentication error.
    pub async fn from_default_chain(region: &str) -> Result<Self, IamError> {
        let chain = DefaultCredentialsChain::builder()
            .region(Region::new(region.to_string()))
            .build()
            .await;
        let source = Self::new(region, SharedCredentialsProvider::new(chain))?;
        source.credentials().await?;
        Ok(source)
    }

    pub fn region(&self) -> &str {
        self.region.as_ref()
    }

    async fn credentials(&self) -> Result<Credentials, IamError> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_some_and(|t| t > SystemTime::now() + CREDENTIALS_REFRESH_MARGIN)
        };
        if let Some(c) = self.lock_cache().as_ref()
            && fresh(c)
        {
            return Ok(c.clone());
        }
        let credentials = self
            .provider
            .provide_credentials()
            .await
            .map_err(credentials_error)?;
        if credentials.expiry().is_some() {
            *self.lock_cache() = Some(credentials.clone());
        }
        Ok(credentials)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Option<Credentials>> {
        // A poisoned cache only means a panic elsewhere; its value is fine.
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signs a new token.
    pub async fn token(&self) -> Result<IamToken, IamError> {
        let credentials = self.credentials().await?;
        let credentials_expiry = credentials.expiry();
        let (value, signed_expiry_ms) =
            aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
                self.region.clone(),
                SharedCredentialsProvider::new(credentials),
            )
            .await
            .map_err(|e| IamError::Sign(error_chain(&e)))?;
        let expires_at_ms = match credentials_expiry.map(epoch_ms) {
            Some(credentials_ms) => signed_expiry_ms.min(credentials_ms),
            None => signed_expiry_ms,
        };
        Ok(IamToken {
            value,
            expires_at_ms,
        })
    }

    /// [`token`](Self::token) from synchronous code (librdkafka's threads,
    /// blocking tasks): runs on a helper thread on the source's runtime, so
    /// it works whether or not the caller is inside a runtime.
    pub fn token_blocking(&self) -> Result<IamToken, IamError> {
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.runtime
                        .block_on(async { tokio::time::timeout(TOKEN_TIMEOUT, self.token()).await })
                })
                .join()
        });
        match outcome {
            Ok(Ok(token)) => token,
            Ok(Err(_elapsed)) => Err(IamError::CredentialsUnavailable(format!(
                "no token within {} s",
                TOKEN_TIMEOUT.as_secs()
            ))),
            Err(_panic) => Err(IamError::Sign("the signing thread panicked".into())),
        }
    }
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An error with its sources, `: `-separated (AWS errors say little at the top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn credentials_error(e: CredentialsError) -> IamError {
    let detail = error_chain(&e);
    match e {
        CredentialsError::CredentialsNotLoaded(_) => IamError::MissingCredentials {
            tried: CREDENTIAL_SOURCES,
            detail,
        },
        CredentialsError::InvalidConfiguration(_) => IamError::InvalidCredentials(detail),
        _ => IamError::CredentialsUnavailable(detail),
    }
}

/// The context of every Kafka client logpipe creates: without IAM it is
/// rdkafka's default behaviour; with IAM it signs OAUTHBEARER tokens.
#[derive(Debug, Clone, Default)]
pub struct AuthContext {
    iam: Option<Arc<IamTokenSource>>,
}

impl AuthContext {
    /// No token signing (PLAINTEXT, SSL, SASL PLAIN/SCRAM).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn iam(source: IamTokenSource) -> Self {
        Self {
            iam: Some(Arc::new(source)),
        }
    }

    pub fn iam_source(&self) -> Option<&IamTokenSource> {
        self.iam.as_deref()
    }

    /// Hands a freshly created client its first token (a no-op without
    /// IAM); see the module docs for why. From synchronous code only
    /// (it waits for the token on a helper thread); async code uses
    /// [`IamTokenSource::token`] and [`set_token`].
    pub fn prime<C: ClientContext>(&self, client: &Client<C>) -> Result<(), IamError> {
        match &self.iam {
            Some(source) => set_token(client, &source.token_blocking()?),
            None => Ok(()),
        }
    }

    /// [`prime`](Self::prime) from async code.
    pub async fn prime_async<C: ClientContext>(&self, client: &Client<C>) -> Result<(), IamError> {
        match &self.iam {
            Some(source) => set_token(client, &source.token().await?),
            None => Ok(()),
        }
    }
}

impl ClientContext for AuthContext {
    // Only consulted when sasl.mechanism is OAUTHBEARER, which only IAM sets.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let source = self.iam.as_ref().ok_or(
            "an OAUTHBEARER token was requested but KAFKA_SASL_MECHANISM is not AWS_MSK_IAM",
        )?;
        let token = source.token_blocking().inspect_err(|error| {
            tracing::error!(%error, "could not refresh the MSK IAM token");
        })?;
        Ok(OAuthToken {
            token: token.value,
            // MSK takes the principal from the signature.
            principal_name: String::new(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

impl ConsumerContext for AuthContext {}

/// Gives `client` a token now (librdkafka's public
/// `rd_kafka_oauthbearer_set_token`, meant to be called at any time).
pub fn set_token<C: ClientContext>(client: &Client<C>, token: &IamToken) -> Result<(), IamError> {
    let value = CString::new(token.value.as_str())
        .map_err(|_| IamError::SetToken("the token contains a NUL byte".into()))?;
    let principal = c"";
    let mut errstr = [0 as c_char; 512];
    // SAFETY: `client` keeps the native handle alive for the call; every
    // pointer is valid for its duration (librdkafka copies the strings);
    // no extensions are passed (null, 0); errstr's capacity is passed.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_oauthbearer_set_token(
            client.native_ptr(),
            value.as_ptr(),
            token.expires_at_ms,
            principal.as_ptr(),
            std::ptr::null_mut(),
            0,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if code == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        // SAFETY: librdkafka NUL-terminates errstr within its capacity.
        let message = unsafe { std::ffi::CStr::from_ptr(errstr.as_ptr()) };
        Err(IamError::SetToken(format!(
            "{code:?}: {}",
            message.to_string_lossy()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::collections::HashMap;

    fn static_source(region: &str) -> IamTokenSource {
        let credentials = Credentials::from_keys("AKIDEXAMPLE", "secret", None);
        IamTokenSource::new(region, SharedCredentialsProvider::new(credentials)).unwrap()
    }

    fn decode(token: &IamToken) -> url::Url {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token.value)
            .unwrap();
        url::Url::parse(&String::from_utf8(bytes).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_token_is_a_presigned_connect_request_for_the_region() {
        let token = static_source("eu-west-1").token().await.unwrap();
        let url = decode(&token);
        assert_eq!(url.host_str(), Some("kafka.eu-west-1.amazonaws.com"));
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["Action"], "kafka-cluster:Connect");
        assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert!(q["X-Amz-Credential"].starts_with("AKIDEXAMPLE/"));
        assert!(q["X-Amz-Credential"].contains("/eu-west-1/kafka-cluster/"));
        let expires: i64 = q["X-Amz-Expires"].parse().unwrap();
        assert!(expires > 0);
        assert!(token.expires_at_ms > epoch_ms(SystemTime::now()));
    }

    #[tokio::test]
    async fn the_expiry_is_the_credentials_when_they_end_first() {
        let soon = SystemTime::now() + Duration::from_secs(400);
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session".into()),
            Some(soon),
            "test",
        );
        let source =
            IamTokenSource::new("us-east-1", SharedCredentialsProvider::new(credentials)).unwrap();
        let token = source.token().await.unwrap();
        assert_eq!(token.expires_at_ms, epoch_ms(soon));
    }

    #[test]
    fn region_comes_from_aws_region_then_the_default() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            region_from(env(&[
                ("AWS_REGION", "eu-west-1"),
                ("AWS_DEFAULT_REGION", "us-east-1")
            ]))
            .unwrap(),
            "eu-west-1"
        );
        assert_eq!(
            region_from(env(&[
                ("AWS_REGION", " "),
                ("AWS_DEFAULT_REGION", "us-east-1")
            ]))
            .unwrap(),
            "us-east-1"
        );
        assert_eq!(region_from(env(&[])), Err(IamError::MissingRegion));
    }

    #[tokio::test]
    async fn missing_credentials_name_the_sources_tried() {
        // What the default chain answers when no source has credentials.
        #[derive(Debug)]
        struct Nothing;
        impl ProvideCredentials for Nothing {
            fn provide_credentials<'a>(
                &'a self,
            ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                    CredentialsError::not_loaded("no providers in chain provided credentials"),
                ))
            }
        }
        let source =
            IamTokenSource::new("us-east-1", SharedCredentialsProvider::new(Nothing)).unwrap();
        let err = source.token().await.unwrap_err();
        assert!(matches!(err, IamError::MissingCredentials { .. }), "{err}");
        assert!(!err.is_transient());
        let text = err.to_string();
        for source in ["AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE", "IMDS"] {
            assert!(text.contains(source), "{text}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_iam_client_takes_the_contexts_token() {
        let context = AuthContext::iam(static_source("us-east-1"));
        // The rdkafka callback itself.
        let token = context.generate_oauth_token(None).unwrap();
        assert!(
            decode(&IamToken {
                value: token.token.clone(),
                expires_at_ms: 0
            })
            .query_pairs()
            .any(|(k, v)| k == "Action" && v == "kafka-cluster:Connect")
        );
        assert!(token.lifetime_ms > epoch_ms(SystemTime::now()));
        // A real librdkafka client in OAUTHBEARER mode accepts it (no broker
        // is contacted: set_token only checks the token and its expiry).
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("security.protocol", "sasl_plaintext")
            .set("sasl.mechanism", "OAUTHBEARER");
        let producer: BaseConsumer<AuthContext> =
            config.create_with_context(context.clone()).unwrap();
        context.prime_async(producer.client()).await.unwrap();
        // An expired token is refused by librdkafka: set_token really ran.
        let expired = IamToken {
            value: token.token,
            expires_at_ms: 1,
        };
        assert!(matches!(
            set_token(producer.client(), &expired),
            Err(IamError::SetToken(_))
        ));
        // Without IAM the callback refuses instead of sending a bogus token.
        assert!(AuthContext::none().generate_oauth_token(None).is_err());
    }
}
