use logpipe_secrets::SecretsError;
use tokio_postgres::error::SqlState;

/// Everything that can go wrong talking to PostgreSQL, classified so the
/// caller can tell a retry from a rejected row.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unreachable at {target}: {source}")]
    Unreachable {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database authentication failed for user {user:?} at {target}: {source}")]
    AuthFailed {
        target: String,
        user: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database TLS failed at {target} (sslmode={mode}, trust roots: {roots}): {detail}")]
    Tls {
        target: String,
        mode: &'static str,
        roots: String,
        /// The whole cause chain (the handshake error's own text is terse).
        detail: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database schema not ready: {0}")]
    SchemaNotReady(String),
    #[error("database credentials unavailable: {0}")]
    Secret(#[from] SecretsError),
    #[error("database configuration is invalid: {0}")]
    Config(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("database rejected the data ({code}): {source}")]
    Rejected {
        code: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database query failed ({code}): {source}")]
    Query {
        code: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl DbError {
    /// Whether retrying later, unchanged, may succeed. Only connection loss,
    /// resource exhaustion, conflicts between transactions and shutdowns are
    /// transient; data and schema errors are not.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Unreachable { .. } => true,
            DbError::Secret(e) => e.is_transient(),
            DbError::Query { source, .. } => is_transient_pg(source),
            DbError::AuthFailed { .. }
            | DbError::Tls { .. }
            | DbError::SchemaNotReady(_)
            | DbError::Config(_)
            | DbError::Migration(_)
            | DbError::Rejected { .. } => false,
        }
    }

    /// Whether the error is about the rows themselves (a value PostgreSQL
    /// refuses), so that storing the rows one by one can isolate the culprit.
    pub fn is_data_error(&self) -> bool {
        matches!(self, DbError::Rejected { .. })
    }

    /// Classifies an error returned by a query or a COPY.
    pub fn from_query(source: tokio_postgres::Error) -> Self {
        let code = source
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| "connection".into());
        if source.is_closed() || source.code().is_none() {
            return DbError::Query { code, source };
        }
        // Class 22 (data exception), 23 (integrity constraint violation)
        // and 54 (program limit exceeded: an index row or a value too
        // large) are about the data: retrying the same rows never helps.
        if code.starts_with("22") || code.starts_with("23") || code.starts_with("54") {
            DbError::Rejected { code, source }
        } else {
            DbError::Query { code, source }
        }
    }
}

fn is_transient_pg(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQLSTATE: an I/O error or a protocol-level failure.
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08") // connection exception
                || c.starts_with("40") // serialization failure, deadlock
                || c.starts_with("53") // insufficient resources
                || c.starts_with("57") // operator intervention (shutdown, cancel)
                || c.starts_with("58") // system error
        }
    }
}

pub(crate) fn is_auth_failure(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::INVALID_PASSWORD
            || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    )
}
