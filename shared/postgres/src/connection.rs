//! One PostgreSQL connection per Lambda sandbox, opened lazily and reopened
//! when it breaks. Credentials come from `DATABASE_URL` or from an RDS-shaped
//! secret; a secret is re-read once when the server rejects the password
//! (the password was rotated).

use std::sync::Arc;
use std::time::Duration;

use logpipe_secrets::{DbSecret, SecretsCache};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config};

use crate::error::{DbError, is_auth_failure};

/// Where the connection settings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbSource {
    /// A libpq-style URL or key/value string (`postgres://user:pw@host:port/db`).
    Url(String),
    /// An AWS Secrets Manager secret in the RDS shape.
    Secret { arn: String },
}

#[derive(Debug, Clone)]
pub struct DbSettings {
    pub source: DbSource,
    /// `disable`, `prefer` or `require` (libpq semantics: `require` encrypts
    /// without verifying unless `PGSSLROOTCERT` names a CA bundle).
    pub ssl_mode: SslMode,
    /// `DB_SSLMODE` was set: it also applies to a `DATABASE_URL` (whose own
    /// `sslmode` otherwise decides).
    pub ssl_mode_explicit: bool,
    /// `PGSSLROOTCERT`: the CA bundle that verifies the server (e.g. the RDS
    /// global bundle); without it TLS encrypts but does not verify.
    pub ssl_root_cert: Option<String>,
    pub connect_timeout: Duration,
    pub application_name: String,
}

impl DbSettings {
    /// Reads `DB_SECRET_ARN` (preferred) or `DATABASE_URL`, plus `DB_SSLMODE`
    /// (default `prefer`) and `DB_CONNECT_TIMEOUT_MS` (default 5000).
    pub fn from_env(application_name: &str) -> Result<Self, DbError> {
        let source = match (
            std::env::var("DB_SECRET_ARN"),
            std::env::var("DATABASE_URL"),
        ) {
            (Ok(arn), _) if !arn.trim().is_empty() => DbSource::Secret { arn },
            (_, Ok(url)) if !url.trim().is_empty() => DbSource::Url(url),
            _ => {
                return Err(DbError::Config(
                    "set DB_SECRET_ARN (an RDS-shaped secret) or DATABASE_URL".into(),
                ));
            }
        };
        let ssl_mode = match std::env::var("DB_SSLMODE").as_deref() {
            Err(_) | Ok("") | Ok("prefer") => SslMode::Prefer,
            Ok("disable") => SslMode::Disable,
            Ok("require") => SslMode::Require,
            Ok(other) => {
                return Err(DbError::Config(format!(
                    "DB_SSLMODE={other:?}: expected disable, prefer or require"
                )));
            }
        };
        let connect_timeout = match std::env::var("DB_CONNECT_TIMEOUT_MS") {
            Ok(ms) => Duration::from_millis(ms.parse().map_err(|_| {
                DbError::Config(format!("DB_CONNECT_TIMEOUT_MS={ms:?} is not a number"))
            })?),
            Err(_) => Duration::from_secs(5),
        };
        Ok(Self {
            source,
            ssl_mode,
            ssl_mode_explicit: std::env::var("DB_SSLMODE").is_ok(),
            ssl_root_cert: std::env::var("PGSSLROOTCERT")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            connect_timeout,
            application_name: application_name.to_string(),
        })
    }

    pub fn from_url(url: &str, application_name: &str) -> Self {
        Self {
            source: DbSource::Url(url.to_string()),
            ssl_mode: SslMode::Prefer,
            ssl_mode_explicit: false,
            ssl_root_cert: None,
            connect_timeout: Duration::from_secs(5),
            application_name: application_name.to_string(),
        }
    }
}

/// A lazily opened, self-healing connection.
pub struct Database {
    settings: DbSettings,
    secrets: Option<Arc<SecretsCache>>,
    tls: MakeTlsConnector,
    client: Mutex<Option<Client>>,
}

impl Database {
    /// `secrets` is required when the settings name a secret.
    pub fn new(settings: DbSettings, secrets: Option<Arc<SecretsCache>>) -> Result<Self, DbError> {
        if matches!(settings.source, DbSource::Secret { .. }) && secrets.is_none() {
            return Err(DbError::Config(
                "DB_SECRET_ARN is set but no Secrets Manager client was given".into(),
            ));
        }
        Ok(Self {
            tls: tls_connector(settings.ssl_root_cert.as_deref())?,
            settings,
            secrets,
            client: Mutex::new(None),
        })
    }

    /// Reads [`DbSettings::from_env`] and, only when they name a secret,
    /// builds a Secrets Manager client: the wiring of a function that needs
    /// the database and nothing else (no Kafka).
    pub async fn from_env(application_name: &str) -> Result<Self, DbError> {
        let settings = DbSettings::from_env(application_name)?;
        let secrets = match settings.source {
            DbSource::Secret { .. } => Some(Arc::new(SecretsCache::from_env().await)),
            DbSource::Url(_) => None,
        };
        Self::new(settings, secrets)
    }

    /// The open connection, opening (or reopening) it when needed.
    pub async fn client(&self) -> Result<MappedMutexGuard<'_, Client>, DbError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.connect().await?);
        }
        // The option was filled just above, so the error arm cannot happen.
        MutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| DbError::Config("the database connection vanished".into()))
    }

    /// Drops the connection so the next call opens a new one.
    pub async fn reset(&self) {
        *self.client.lock().await = None;
    }

    async fn connect(&self) -> Result<Client, DbError> {
        let config = self.config(false).await?;
        match self.open(&config).await {
            Err(DbError::AuthFailed { .. }) if self.secrets.is_some() => {
                tracing::warn!("database rejected the cached credentials; re-reading the secret");
                let config = self.config(true).await?;
                self.open(&config).await
            }
            other => other,
        }
    }

    async fn config(&self, refresh_secret: bool) -> Result<Config, DbError> {
        let mut config = match &self.settings.source {
            DbSource::Url(url) => url
                .parse::<Config>()
                .map_err(|e| DbError::Config(format!("DATABASE_URL cannot be parsed: {e}")))?,
            DbSource::Secret { arn } => {
                let secrets = self.secrets.as_ref().ok_or_else(|| {
                    DbError::Config("no Secrets Manager client for DB_SECRET_ARN".into())
                })?;
                let secret: DbSecret = secrets.get_json(arn, refresh_secret).await?;
                let mut c = Config::new();
                c.host(&secret.host)
                    .port(secret.port)
                    .user(&secret.username)
                    .password(secret.password.as_bytes())
                    .dbname(&secret.dbname);
                c.ssl_mode(self.settings.ssl_mode);
                c
            }
        };
        if matches!(self.settings.source, DbSource::Secret { .. })
            || self.settings.ssl_mode_explicit
        {
            config.ssl_mode(self.settings.ssl_mode);
        }
        config
            .connect_timeout(self.settings.connect_timeout)
            .application_name(&self.settings.application_name);
        Ok(config)
    }

    async fn open(&self, config: &Config) -> Result<Client, DbError> {
        let target = describe(config);
        let user = config.get_user().unwrap_or_default().to_string();
        match config.connect(self.tls.clone()).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::warn!(%error, "database connection closed");
                    }
                });
                tracing::info!(target = %target, "connected to the database");
                Ok(client)
            }
            Err(source) if is_auth_failure(&source) => Err(DbError::AuthFailed {
                target,
                user,
                source,
            }),
            Err(source) => Err(DbError::Unreachable { target, source }),
        }
    }
}

fn describe(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default())
}

fn tls_connector(root_cert: Option<&str>) -> Result<MakeTlsConnector, DbError> {
    let mut builder = SslConnector::builder(SslMethod::tls())
        .map_err(|e| DbError::Config(format!("TLS setup failed: {e}")))?;
    match root_cert {
        Some(ca) => builder
            .set_ca_file(ca)
            .map_err(|e| DbError::Config(format!("PGSSLROOTCERT={ca}: {e}")))?,
        // libpq's `require`: encrypt, do not verify. Set PGSSLROOTCERT (e.g. the
        // RDS global bundle) to verify the server.
        _ => builder.set_verify(SslVerifyMode::NONE),
    }
    Ok(MakeTlsConnector::new(builder.build()))
}
