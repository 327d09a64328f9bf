//! One PostgreSQL connection per Lambda sandbox, opened lazily and reopened
//! when it breaks. Credentials come from `DATABASE_URL` or from an RDS-shaped
//! secret; a secret is re-read once when the server rejects the password
//! (the password was rotated).

use std::sync::Arc;
use std::time::Duration;

use logpipe_secrets::{DbSecret, SecretsCache};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use postgres_openssl::MakeTlsConnector;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config};

use crate::error::{DbError, is_auth_failure};

/// The Amazon RDS global CA bundle (every region's root CAs), shipped inside
/// the binary: the default trust roots of `verify-ca` and `verify-full`.
/// Source, date and checksum: `shared/postgres/certs/README.md`.
pub const RDS_CA_BUNDLE: &str = include_str!("../certs/rds-global-bundle.pem");

/// How the connection is protected, with libpq's names and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext. Only when configured explicitly (warned about at init).
    Disable,
    /// TLS, the server's certificate not verified.
    Require,
    /// TLS, the certificate chain verified against the trust roots.
    VerifyCa,
    /// TLS, the chain verified and the host name matched (the default).
    VerifyFull,
}

impl TlsMode {
    /// Parses a libpq `sslmode`. `prefer` and `allow` (which fall back to
    /// plaintext) are accepted as legacy values and mean `require`: never
    /// plaintext unless `disable` is said.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "disable" => Ok(Self::Disable),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            legacy @ ("prefer" | "allow") => {
                tracing::warn!(
                    sslmode = legacy,
                    "sslmode={legacy} is a legacy value and is treated as `require` \
                     (no plaintext fallback); say verify-full, require or disable"
                );
                Ok(Self::Require)
            }
            other => Err(format!(
                "sslmode {other:?}: expected disable, require, verify-ca or verify-full"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

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
    /// `DB_SSLMODE` (`disable`, `require`, `verify-ca`, `verify-full`). When
    /// unset, a `DATABASE_URL`'s own `sslmode` decides; without either the
    /// mode is `verify-full`.
    pub ssl_mode: Option<TlsMode>,
    /// `PGSSLROOTCERT`: a PEM file of trust roots replacing the embedded
    /// Amazon RDS bundle (for a server whose CA is not Amazon RDS).
    pub ssl_root_cert: Option<String>,
    pub connect_timeout: Duration,
    pub application_name: String,
}

impl DbSettings {
    /// Reads `DB_SECRET_ARN` (preferred) or `DATABASE_URL`, plus `DB_SSLMODE`
    /// (default: the URL's `sslmode`, else `verify-full`), `PGSSLROOTCERT`
    /// and `DB_CONNECT_TIMEOUT_MS` (default 5000).
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
        let ssl_mode = match std::env::var("DB_SSLMODE") {
            Ok(v) if !v.trim().is_empty() => {
                Some(TlsMode::parse(&v).map_err(|e| DbError::Config(format!("DB_SSLMODE: {e}")))?)
            }
            _ => None,
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
            ssl_root_cert: std::env::var("PGSSLROOTCERT")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            connect_timeout,
            application_name: application_name.to_string(),
        })
    }

    /// A URL whose own `sslmode` decides (default `verify-full`).
    pub fn from_url(url: &str, application_name: &str) -> Self {
        Self {
            source: DbSource::Url(url.to_string()),
            ssl_mode: None,
            ssl_root_cert: None,
            connect_timeout: Duration::from_secs(5),
            application_name: application_name.to_string(),
        }
    }
}

/// Splits `sslmode` off a libpq URL or key/value string (tokio-postgres
/// knows neither `verify-ca` nor `verify-full`): the rest, and the value.
pub fn split_sslmode(url: &str) -> (String, Option<String>) {
    let mut mode = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), None);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.strip_prefix("sslmode=") {
                Some(v) => {
                    mode = Some(v.to_string());
                    false
                }
                None => !kv.is_empty(),
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, mode)
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|kv| match kv.strip_prefix("sslmode=") {
                Some(v) => {
                    mode = Some(v.trim_matches('\'').to_string());
                    false
                }
                None => true,
            })
            .collect();
        (kept.join(" "), mode)
    }
}

/// A lazily opened, self-healing connection.
pub struct Database {
    settings: DbSettings,
    /// The URL without its `sslmode` (for a URL source).
    url: Option<String>,
    mode: TlsMode,
    secrets: Option<Arc<SecretsCache>>,
    tls: MakeTlsConnector,
    client: Mutex<Option<Client>>,
}

impl Database {
    /// `secrets` is required when the settings name a secret. Logs a warning
    /// when the connection will not verify the server (or be plaintext).
    pub fn new(settings: DbSettings, secrets: Option<Arc<SecretsCache>>) -> Result<Self, DbError> {
        if matches!(settings.source, DbSource::Secret { .. }) && secrets.is_none() {
            return Err(DbError::Config(
                "DB_SECRET_ARN is set but no Secrets Manager client was given".into(),
            ));
        }
        let (url, url_mode) = match &settings.source {
            DbSource::Url(url) => {
                let (rest, mode) = split_sslmode(url);
                (Some(rest), mode)
            }
            DbSource::Secret { .. } => (None, None),
        };
        let mode = match (settings.ssl_mode, url_mode) {
            (Some(mode), _) => mode,
            (None, Some(v)) => {
                TlsMode::parse(&v).map_err(|e| DbError::Config(format!("DATABASE_URL: {e}")))?
            }
            (None, None) => TlsMode::VerifyFull,
        };
        match mode {
            TlsMode::Disable => tracing::warn!(
                sslmode = mode.as_str(),
                "database connection is PLAINTEXT (sslmode=disable configured): \
                 credentials and rows cross the network unencrypted"
            ),
            TlsMode::Require => tracing::warn!(
                sslmode = mode.as_str(),
                "database connection is encrypted but the server is not verified; \
                 use verify-full"
            ),
            TlsMode::VerifyCa | TlsMode::VerifyFull => tracing::info!(
                sslmode = mode.as_str(),
                roots = settings
                    .ssl_root_cert
                    .as_deref()
                    .unwrap_or("embedded Amazon RDS bundle"),
                "database TLS verifies the server"
            ),
        }
        Ok(Self {
            tls: tls_connector(mode, settings.ssl_root_cert.as_deref())?,
            url,
            mode,
            settings,
            secrets,
            client: Mutex::new(None),
        })
    }

    /// The TLS mode in force.
    pub fn tls_mode(&self) -> TlsMode {
        self.mode
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
            DbSource::Url(url) => self
                .url
                .as_deref()
                .unwrap_or(url)
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
                c
            }
        };
        // TLS is mandatory unless `disable` was said: tokio-postgres'
        // `Require` never falls back; verification is the connector's.
        config.ssl_mode(match self.mode {
            TlsMode::Disable => SslMode::Disable,
            _ => SslMode::Require,
        });
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
            Err(source) if is_tls_failure(&source) => Err(DbError::Tls {
                target,
                mode: self.mode.as_str(),
                roots: match &self.settings.ssl_root_cert {
                    Some(path) => format!("PGSSLROOTCERT={path}"),
                    None => "the embedded Amazon RDS CA bundle (set PGSSLROOTCERT for another CA)"
                        .into(),
                },
                detail: chain(&source),
                source,
            }),
            Err(source) => Err(DbError::Unreachable { target, source }),
        }
    }
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A TLS failure that retrying does not mend: the server refuses TLS, or
/// its certificate does not verify. An I/O error during the handshake is a
/// connection problem (transient).
fn is_tls_failure(e: &tokio_postgres::Error) -> bool {
    if !e.to_string().starts_with("error performing TLS handshake") {
        return false;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(ssl) = s.downcast_ref::<openssl::ssl::Error>() {
            return ssl.io_error().is_none();
        }
        source = s.source();
    }
    true
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

fn tls_connector(mode: TlsMode, root_cert: Option<&str>) -> Result<MakeTlsConnector, DbError> {
    let config = |e: openssl::error::ErrorStack| DbError::Config(format!("TLS setup failed: {e}"));
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(config)?;
    match mode {
        TlsMode::Disable | TlsMode::Require => builder.set_verify(SslVerifyMode::NONE),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            // Exactly these roots (not the system's): the RDS bundle, or
            // the file PGSSLROOTCERT names.
            let pem = match root_cert {
                Some(path) => std::fs::read(path)
                    .map_err(|e| DbError::Config(format!("PGSSLROOTCERT={path}: {e}")))?,
                None => RDS_CA_BUNDLE.as_bytes().to_vec(),
            };
            let certs = X509::stack_from_pem(&pem).map_err(|e| {
                DbError::Config(format!(
                    "{}: not a PEM certificate bundle: {e}",
                    root_cert.unwrap_or("the embedded RDS CA bundle")
                ))
            })?;
            if certs.is_empty() {
                return Err(DbError::Config(format!(
                    "{}: no certificate in it",
                    root_cert.unwrap_or("the embedded RDS CA bundle")
                )));
            }
            let mut store = X509StoreBuilder::new().map_err(config)?;
            for cert in certs {
                store.add_cert(cert).map_err(config)?;
            }
            builder.set_cert_store(store.build());
            builder.set_verify(SslVerifyMode::PEER);
        }
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    // postgres-openssl checks the host name by default: verify-full keeps
    // that, verify-ca (chain only) and require (nothing) turn it off.
    if mode != TlsMode::VerifyFull {
        connector.set_callback(|config, _| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_split_off_urls() {
        assert_eq!(
            split_sslmode("postgres://u:p@h:5432/db?sslmode=verify-full&application_name=x"),
            (
                "postgres://u:p@h:5432/db?application_name=x".into(),
                Some("verify-full".into())
            )
        );
        assert_eq!(
            split_sslmode("postgres://u:p@h/db?sslmode=disable"),
            ("postgres://u:p@h/db".into(), Some("disable".into()))
        );
        assert_eq!(
            split_sslmode("host=h user=u sslmode='require'"),
            ("host=h user=u".into(), Some("require".into()))
        );
        assert_eq!(
            split_sslmode("postgres://u@h/db"),
            ("postgres://u@h/db".into(), None)
        );
    }

    #[test]
    fn modes_parse_and_prefer_never_means_plaintext() {
        assert_eq!(TlsMode::parse("verify-full"), Ok(TlsMode::VerifyFull));
        assert_eq!(TlsMode::parse("verify-ca"), Ok(TlsMode::VerifyCa));
        assert_eq!(TlsMode::parse("disable"), Ok(TlsMode::Disable));
        assert_eq!(TlsMode::parse("prefer"), Ok(TlsMode::Require));
        assert!(TlsMode::parse("on").is_err());
    }

    #[test]
    fn a_url_without_sslmode_verifies_fully() {
        let db = Database::new(DbSettings::from_url("postgres://u@h/db", "t"), None)
            .expect("valid settings");
        assert_eq!(db.tls_mode(), TlsMode::VerifyFull);
        let db = Database::new(
            DbSettings::from_url("postgres://u@h/db?sslmode=disable", "t"),
            None,
        )
        .expect("valid settings");
        assert_eq!(db.tls_mode(), TlsMode::Disable);
    }

    #[test]
    fn the_embedded_bundle_is_amazon_rds_roots() {
        let certs = X509::stack_from_pem(RDS_CA_BUNDLE.as_bytes()).expect("bundle parses");
        assert!(certs.len() >= 100, "{} certificates", certs.len());
        for cert in &certs {
            let cn = cert
                .subject_name()
                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                .next()
                .and_then(|e| e.data().to_string().ok())
                .unwrap_or_default();
            assert!(cn.starts_with("Amazon RDS"), "{cn}");
        }
    }
}
