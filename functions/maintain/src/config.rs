//! The maintain function's settings, all from environment variables.

use std::time::Duration;

use logpipe_postgres::{DROP_LOCK_TIMEOUT, DbError, RetentionSettings};

/// | variable | default | meaning |
/// |---|---|---|
/// | `LOG_RETENTION_DAYS` | `30` | whole UTC days of `logs` kept before today (0 to 36500; 0 keeps everything); older daily partitions are dropped |
/// | `LOG_PARTITIONS_AHEAD` | `3` | daily partitions prepared after today (0 to 36500) |
/// | `RUN_MIGRATIONS` | `true` | apply pending migrations before each run (the database user must own the schema) |
/// | `LOG_DROP_LOCK_TIMEOUT_MS` | `5000` | how long dropping an expired partition waits for its lock on `logs` (1 to 600000); past it the drop is skipped until the next run |
/// | `AWS_LAMBDA_FUNCTION_NAME` | `maintain` | the `Function` dimension of its metrics |
/// | `DB_SECRET_ARN`, `DATABASE_URL`, `DB_SSLMODE`, `PGSSLROOTCERT`, `DB_CONNECT_TIMEOUT_MS` | | the database, as for every function |
///
/// The first two are the variables `make up` reads for the local stack,
/// with the same defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintainConfig {
    pub retention: RetentionSettings,
    pub run_migrations: bool,
    pub drop_lock_timeout: Duration,
    pub function_name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("maintain configuration is invalid: {0}")]
pub struct ConfigError(pub String);

impl Default for MaintainConfig {
    fn default() -> Self {
        Self {
            retention: RetentionSettings::default(),
            run_migrations: true,
            drop_lock_timeout: DROP_LOCK_TIMEOUT,
            function_name: "maintain".into(),
        }
    }
}

impl MaintainConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let text = |key: &str| {
            get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let run_migrations = match text("RUN_MIGRATIONS").as_deref() {
            None => d.run_migrations,
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
            Some(v) => {
                return Err(ConfigError(format!(
                    "RUN_MIGRATIONS={v:?}: expected true or false"
                )));
            }
        };
        let drop_lock_timeout = match text("LOG_DROP_LOCK_TIMEOUT_MS") {
            None => d.drop_lock_timeout,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=600_000).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "LOG_DROP_LOCK_TIMEOUT_MS={v:?}: expected 1 to 600000 milliseconds"
                    ))
                })?,
        };
        Ok(Self {
            retention: RetentionSettings::from_lookup(&get).map_err(|e| match e {
                // Already names the variable and the range.
                DbError::Config(text) => ConfigError(text),
                other => ConfigError(other.to_string()),
            })?,
            run_migrations,
            drop_lock_timeout,
            function_name: text("AWS_LAMBDA_FUNCTION_NAME").unwrap_or(d.function_name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_are_the_local_stacks() {
        let c = MaintainConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c, MaintainConfig::default());
        assert_eq!(c.retention.retention_days, 30);
        assert_eq!(c.retention.partitions_ahead, 3);
        assert!(c.run_migrations);
        assert_eq!(c.function_name, "maintain");
        // Empty values (an unset CloudFormation parameter) mean the default.
        let c = MaintainConfig::from_lookup(only(&[
            ("LOG_RETENTION_DAYS", " "),
            ("LOG_PARTITIONS_AHEAD", ""),
            ("RUN_MIGRATIONS", ""),
        ]))
        .unwrap();
        assert_eq!(c, MaintainConfig::default());
    }

    #[test]
    fn settings_are_read() {
        let c = MaintainConfig::from_lookup(only(&[
            ("LOG_RETENTION_DAYS", "14"),
            ("LOG_PARTITIONS_AHEAD", " 7 "),
            ("RUN_MIGRATIONS", "false"),
            ("LOG_DROP_LOCK_TIMEOUT_MS", "250"),
            ("AWS_LAMBDA_FUNCTION_NAME", "logpipe-maintain"),
        ]))
        .unwrap();
        assert_eq!(c.drop_lock_timeout, std::time::Duration::from_millis(250));
        assert_eq!(
            c.retention,
            RetentionSettings {
                retention_days: 14,
                partitions_ahead: 7
            }
        );
        assert!(!c.run_migrations);
        assert_eq!(c.function_name, "logpipe-maintain");
        let c = MaintainConfig::from_lookup(only(&[
            ("LOG_RETENTION_DAYS", "0"),
            ("LOG_PARTITIONS_AHEAD", "36500"),
        ]))
        .unwrap();
        assert_eq!(c.retention.retention_days, 0, "0 keeps everything");
        assert_eq!(c.retention.partitions_ahead, 36_500);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (key, value) in [
            ("LOG_RETENTION_DAYS", "-1"),
            ("LOG_RETENTION_DAYS", "a month"),
            ("LOG_RETENTION_DAYS", "30.5"),
            ("LOG_RETENTION_DAYS", "36501"),
            ("LOG_RETENTION_DAYS", "99999999999"),
            ("LOG_PARTITIONS_AHEAD", "-3"),
            ("LOG_PARTITIONS_AHEAD", "seven"),
            ("RUN_MIGRATIONS", "yes"),
        ] {
            let error = MaintainConfig::from_lookup(only(&[(key, value)]))
                .expect_err(&format!("{key}={value} must be refused"));
            let text = error.to_string();
            assert!(
                text.starts_with("maintain configuration is invalid: ")
                    && !text.contains("database")
                    && text.contains(key)
                    && text.contains(value),
                "{key}={value}: {text}"
            );
        }
    }
}
