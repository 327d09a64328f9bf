//! Kafka client settings: bootstrap servers and security, from the
//! environment, with SASL credentials optionally from Secrets Manager.
//!
//! | variable | meaning |
//! |---|---|
//! | `KAFKA_BOOTSTRAP_SERVERS` | `host:port,...` (required) |
//! | `KAFKA_SECURITY_PROTOCOL` | `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT`, `SASL_SSL` (default with `AWS_MSK_IAM`) |
//! | `KAFKA_SASL_MECHANISM` | `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` (default for SASL), `AWS_MSK_IAM` |
//! | `AWS_REGION`, `AWS_DEFAULT_REGION` | with `AWS_MSK_IAM`: the region tokens are signed for (first one set) |
//! | `KAFKA_SECRET_ARN` | secret `{username,password}` for SASL |
//! | `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD` | SASL credentials without a secret (local use) |
//! | `KAFKA_SSL_CA_LOCATION` | CA bundle to verify brokers (default: system store) |
//! | `KAFKA_SSL_CERTIFICATE_LOCATION`, `KAFKA_SSL_KEY_LOCATION`, `KAFKA_SSL_KEY_PASSWORD` | client certificate for mutual TLS |
//! | `KAFKA_CLIENT_ID` | client id (default: the function name) |
//! | `KAFKA_LINGER_MS` | producer `linger.ms`, 0..=900000 (default 5; the detect function: 0) |
//! | `KAFKA_COMPRESSION` | producer `compression.type`: `none`, `gzip`, `snappy`, `lz4` (default), `zstd` |
//! | `KAFKA_QUEUE_MAX_KBYTES` | producer `queue.buffering.max.kbytes`, 1..=2147483647 (default 65536) |

use logpipe_secrets::KafkaSecret;
use rdkafka::ClientConfig;

use crate::auth::{IAM_MECHANISM, region_from};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(s: &str) -> Result<Self, SettingsError> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(SettingsError(format!(
                "KAFKA_SECURITY_PROTOCOL={s:?}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Kafka configuration is invalid: {0}")]
pub struct SettingsError(pub String);

/// The producer's `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn parse(s: &str) -> Result<Self, SettingsError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "snappy" => Ok(Self::Snappy),
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            _ => Err(SettingsError(format!(
                "KAFKA_COMPRESSION={s:?}: expected none, gzip, snappy, lz4 or zstd"
            ))),
        }
    }

    /// The librdkafka value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Producer defaults: a short linger batches a burst without delaying a
/// lone message noticeably; lz4 is cheap on CPU; 64 MiB of queue holds a
/// full 6 MB Lambda batch many times over.
pub const DEFAULT_LINGER_MS: u32 = 5;
/// For a producer that sends a burst and then waits for every ack before it
/// can answer (the detect function's outbox): there is nothing more to wait
/// for, so a linger would only delay the acks. Messages queued while a
/// request is in flight are still batched.
pub const AWAITED_BURST_LINGER_MS: u32 = 0;
pub const DEFAULT_COMPRESSION: Compression = Compression::Lz4;
pub const DEFAULT_QUEUE_MAX_KBYTES: u32 = 65536;

/// An integer setting within librdkafka's accepted range.
fn bounded(
    get: impl Fn(&str) -> Option<String>,
    key: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
) -> Result<u32, SettingsError> {
    let Some(raw) = get(key) else {
        return Ok(default);
    };
    match raw.trim().parse::<u32>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(SettingsError(format!(
            "{key}={raw:?}: expected a whole number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// Where SASL credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslCredentials {
    None,
    Inline {
        username: String,
        password: String,
    },
    Secret {
        arn: String,
    },
    /// MSK IAM (`KAFKA_SASL_MECHANISM=AWS_MSK_IAM`): OAUTHBEARER tokens
    /// signed for `region` with the default AWS credential chain.
    AwsIam {
        region: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub protocol: SecurityProtocol,
    pub sasl_mechanism: String,
    pub credentials: SaslCredentials,
    pub ssl_ca_location: Option<String>,
    pub ssl_certificate_location: Option<String>,
    pub ssl_key_location: Option<String>,
    pub ssl_key_password: Option<String>,
    pub client_id: String,
    /// `KAFKA_LINGER_MS`: producer `linger.ms`.
    pub linger_ms: u32,
    /// `KAFKA_COMPRESSION`: producer `compression.type`.
    pub compression: Compression,
    /// `KAFKA_QUEUE_MAX_KBYTES`: producer `queue.buffering.max.kbytes`.
    pub queue_max_kbytes: u32,
}

impl KafkaSettings {
    pub fn from_env(default_client_id: &str) -> Result<Self, SettingsError> {
        Self::from_lookup(default_client_id, |k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) with another default for
    /// `KAFKA_LINGER_MS` (e.g. [`AWAITED_BURST_LINGER_MS`]).
    pub fn from_env_with_linger(
        default_client_id: &str,
        default_linger_ms: u32,
    ) -> Result<Self, SettingsError> {
        Self::from_lookup_with_linger(default_client_id, default_linger_ms, |k| {
            std::env::var(k).ok()
        })
    }

    /// Same as [`from_env`](Self::from_env) over any key lookup (tests).
    pub fn from_lookup(
        default_client_id: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        Self::from_lookup_with_linger(default_client_id, DEFAULT_LINGER_MS, get)
    }

    /// Same as [`from_env_with_linger`](Self::from_env_with_linger) over any
    /// key lookup.
    pub fn from_lookup_with_linger(
        default_client_id: &str,
        default_linger_ms: u32,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let bootstrap_servers = get("KAFKA_BOOTSTRAP_SERVERS")
            .ok_or_else(|| SettingsError("KAFKA_BOOTSTRAP_SERVERS is not set".into()))?;
        let sasl_mechanism = get("KAFKA_SASL_MECHANISM")
            .map(|m| m.trim().to_ascii_uppercase())
            .unwrap_or_else(|| "SCRAM-SHA-512".into());
        let iam = sasl_mechanism == IAM_MECHANISM;
        if !iam
            && !matches!(
                sasl_mechanism.as_str(),
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
            )
        {
            return Err(SettingsError(format!(
                "KAFKA_SASL_MECHANISM={sasl_mechanism:?}: expected PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or {IAM_MECHANISM}"
            )));
        }
        let protocol = match get("KAFKA_SECURITY_PROTOCOL") {
            Some(p) => SecurityProtocol::parse(&p)?,
            // MSK's IAM listener is TLS only.
            None if iam => SecurityProtocol::SaslSsl,
            None => SecurityProtocol::Plaintext,
        };
        let credentials = match (
            get("KAFKA_SECRET_ARN"),
            get("KAFKA_SASL_USERNAME"),
            get("KAFKA_SASL_PASSWORD"),
        ) {
            (None, None, None) if iam => SaslCredentials::AwsIam {
                region: region_from(get).map_err(|e| SettingsError(e.to_string()))?,
            },
            _ if iam => {
                return Err(SettingsError(format!(
                    "KAFKA_SASL_MECHANISM={IAM_MECHANISM} signs with the AWS credentials: unset KAFKA_SECRET_ARN, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
                )));
            }
            (Some(arn), _, _) => SaslCredentials::Secret { arn },
            (None, Some(username), Some(password)) => {
                SaslCredentials::Inline { username, password }
            }
            _ => SaslCredentials::None,
        };
        if iam && protocol != SecurityProtocol::SaslSsl {
            return Err(SettingsError(format!(
                "KAFKA_SASL_MECHANISM={IAM_MECHANISM} needs KAFKA_SECURITY_PROTOCOL=SASL_SSL (MSK's IAM listener, port 9098, is TLS only), not {}",
                protocol.as_str().to_ascii_uppercase()
            )));
        }
        if protocol.uses_sasl() && credentials == SaslCredentials::None {
            return Err(SettingsError(format!(
                "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SECRET_ARN or KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD",
                protocol.as_str().to_ascii_uppercase()
            )));
        }
        let ssl_certificate_location = get("KAFKA_SSL_CERTIFICATE_LOCATION");
        let ssl_key_location = get("KAFKA_SSL_KEY_LOCATION");
        if ssl_certificate_location.is_some() != ssl_key_location.is_some() {
            return Err(SettingsError(
                "mutual TLS needs both KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"
                    .into(),
            ));
        }
        let linger_ms = bounded(get, "KAFKA_LINGER_MS", 0..=900_000, default_linger_ms)?;
        let compression = match get("KAFKA_COMPRESSION") {
            Some(c) => Compression::parse(&c)?,
            None => DEFAULT_COMPRESSION,
        };
        let queue_max_kbytes = bounded(
            get,
            "KAFKA_QUEUE_MAX_KBYTES",
            1..=2_147_483_647,
            DEFAULT_QUEUE_MAX_KBYTES,
        )?;
        Ok(Self {
            bootstrap_servers,
            protocol,
            sasl_mechanism,
            credentials,
            ssl_ca_location: get("KAFKA_SSL_CA_LOCATION"),
            ssl_certificate_location,
            ssl_key_location,
            ssl_key_password: get("KAFKA_SSL_KEY_PASSWORD"),
            client_id: get("KAFKA_CLIENT_ID").unwrap_or_else(|| default_client_id.to_string()),
            linger_ms,
            compression,
            queue_max_kbytes,
        })
    }

    pub fn plaintext(bootstrap_servers: &str, client_id: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_string(),
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: "SCRAM-SHA-512".into(),
            credentials: SaslCredentials::None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            client_id: client_id.to_string(),
            linger_ms: DEFAULT_LINGER_MS,
            compression: DEFAULT_COMPRESSION,
            queue_max_kbytes: DEFAULT_QUEUE_MAX_KBYTES,
        }
    }

    /// The librdkafka configuration. `secret` must be given when the
    /// credentials come from a secret.
    pub fn client_config(
        &self,
        secret: Option<&KafkaSecret>,
    ) -> Result<ClientConfig, SettingsError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("security.protocol", self.protocol.as_str());
        if let SaslCredentials::AwsIam { .. } = self.credentials {
            // The token comes from the client context (crate::auth).
            c.set("sasl.mechanism", "OAUTHBEARER");
        } else if self.protocol.uses_sasl() {
            let (user, pass) = match (&self.credentials, secret) {
                (SaslCredentials::Inline { username, password }, _) => (username, password),
                (SaslCredentials::Secret { .. }, Some(s)) => (&s.username, &s.password),
                (SaslCredentials::Secret { arn }, None) => {
                    return Err(SettingsError(format!(
                        "the Kafka secret {arn} was not read"
                    )));
                }
                (SaslCredentials::None | SaslCredentials::AwsIam { .. }, _) => {
                    return Err(SettingsError("SASL needs credentials".into()));
                }
            };
            c.set("sasl.mechanism", &self.sasl_mechanism)
                .set("sasl.username", user)
                .set("sasl.password", pass);
        }
        if matches!(
            self.protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        ) {
            if let Some(ca) = &self.ssl_ca_location {
                c.set("ssl.ca.location", ca);
            }
            if let (Some(cert), Some(key)) =
                (&self.ssl_certificate_location, &self.ssl_key_location)
            {
                c.set("ssl.certificate.location", cert)
                    .set("ssl.key.location", key);
                if let Some(pw) = &self.ssl_key_password {
                    c.set("ssl.key.password", pw);
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<KafkaSettings, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KafkaSettings::from_lookup("ingest", |k| map.get(k).cloned())
    }

    #[test]
    fn plaintext_by_default() {
        let s = settings(&[("KAFKA_BOOTSTRAP_SERVERS", "b:9092")]).unwrap();
        let c = s.client_config(None).unwrap();
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("client.id"), Some("ingest"));
        assert_eq!(c.get("sasl.username"), None);
    }

    #[test]
    fn sasl_scram_with_a_secret() {
        let s = settings(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "b:9096"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-256"),
            (
                "KAFKA_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:AmazonMSK_x",
            ),
        ])
        .unwrap();
        assert!(
            s.client_config(None).is_err(),
            "the secret must be read first"
        );
        let secret = KafkaSecret {
            username: "u".into(),
            password: "p".into(),
        };
        let c = s.client_config(Some(&secret)).unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(c.get("sasl.username"), Some("u"));
    }

    #[test]
    fn mutual_tls_and_bad_combinations() {
        let s = settings(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "b:9094"),
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", "/c.pem"),
            ("KAFKA_SSL_KEY_LOCATION", "/k.pem"),
        ])
        .unwrap();
        let c = s.client_config(None).unwrap();
        assert_eq!(c.get("ssl.certificate.location"), Some("/c.pem"));
        assert!(
            settings(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "b"),
                ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
            ])
            .is_err()
        );
        assert!(
            settings(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "b"),
                ("KAFKA_SECURITY_PROTOCOL", "TLS")
            ])
            .is_err()
        );
        assert!(
            settings(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "b"),
                ("KAFKA_SSL_KEY_LOCATION", "/k")
            ])
            .is_err()
        );
        assert!(
            settings(&[])
                .unwrap_err()
                .0
                .contains("KAFKA_BOOTSTRAP_SERVERS")
        );
    }

    #[test]
    fn producer_tuning_defaults_and_overrides() {
        let s = settings(&[("KAFKA_BOOTSTRAP_SERVERS", "b:9092")]).unwrap();
        assert_eq!(
            (s.linger_ms, s.compression, s.queue_max_kbytes),
            (5, Compression::Lz4, 65536)
        );
        assert_eq!(s, KafkaSettings::plaintext("b:9092", "ingest"));
        let s = settings(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "b:9092"),
            ("KAFKA_LINGER_MS", "0"),
            ("KAFKA_COMPRESSION", "ZSTD"),
            ("KAFKA_QUEUE_MAX_KBYTES", "1024"),
        ])
        .unwrap();
        assert_eq!(
            (s.linger_ms, s.compression.as_str(), s.queue_max_kbytes),
            (0, "zstd", 1024)
        );
        // Empty means unset, as for every other variable.
        let s = settings(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "b:9092"),
            ("KAFKA_COMPRESSION", ""),
        ])
        .unwrap();
        assert_eq!(s.compression, Compression::Lz4);
    }

    #[test]
    fn a_function_may_bring_its_own_linger_default_and_the_variable_still_wins() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let own = AWAITED_BURST_LINGER_MS;
        let unset = KafkaSettings::from_lookup_with_linger(
            "detect",
            own,
            lookup(&[("KAFKA_BOOTSTRAP_SERVERS", "b:9092")]),
        )
        .unwrap();
        assert_eq!(unset.linger_ms, 0);
        let set = KafkaSettings::from_lookup_with_linger(
            "detect",
            own,
            lookup(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "b:9092"),
                ("KAFKA_LINGER_MS", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(set.linger_ms, 7);
    }

    #[test]
    fn bad_producer_tuning_names_the_variable() {
        for (key, value) in [
            ("KAFKA_LINGER_MS", "five"),
            ("KAFKA_LINGER_MS", "-1"),
            ("KAFKA_LINGER_MS", "900001"),
            ("KAFKA_COMPRESSION", "brotli"),
            ("KAFKA_QUEUE_MAX_KBYTES", "0"),
            ("KAFKA_QUEUE_MAX_KBYTES", "4294967296"),
        ] {
            let err = settings(&[("KAFKA_BOOTSTRAP_SERVERS", "b"), (key, value)]).unwrap_err();
            assert!(err.0.contains(key) && err.0.contains(value), "{err}");
        }
    }

    #[test]
    fn msk_iam_mode_and_its_errors() {
        let s = settings(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "b-1.msk:9098"),
            ("KAFKA_SASL_MECHANISM", "aws_msk_iam"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!(s.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(
            s.credentials,
            SaslCredentials::AwsIam {
                region: "eu-west-1".into()
            }
        );
        let c = s.client_config(None).unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(c.get("sasl.username"), None);
        let err = |vars: &[(&str, &str)]| settings(vars).unwrap_err().0;
        let iam = [
            ("KAFKA_BOOTSTRAP_SERVERS", "b:9098"),
            ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
        ];
        assert!(err(&iam).contains("AWS_REGION"));
        let plain = [
            iam[0],
            iam[1],
            ("AWS_REGION", "us-east-1"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ];
        assert!(err(&plain).contains("SASL_SSL"));
        let secret = [
            iam[0],
            iam[1],
            ("AWS_REGION", "us-east-1"),
            ("KAFKA_SECRET_ARN", "arn:x"),
        ];
        assert!(err(&secret).contains("KAFKA_SECRET_ARN"));
        let unknown = [iam[0], ("KAFKA_SASL_MECHANISM", "GSSAPI")];
        assert!(err(&unknown).contains("AWS_MSK_IAM"));
    }
}
