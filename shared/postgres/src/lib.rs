//! PostgreSQL adapter for logpipe: connection management with Secrets
//! Manager credentials, migrations, and idempotent batch writes.

mod connection;
pub mod detect;
mod error;
mod migrate;
mod retention;
mod store;

pub use connection::{Database, DbSettings, DbSource, RDS_CA_BUNDLE, TlsMode, split_sslmode};
pub use error::DbError;
pub use migrate::{check_schema, expected_version, migrate, migrate_to};
pub use retention::{
    DROP_LOCK_TIMEOUT, PartitionChange, RetentionSettings, maintain_partitions,
    maintain_partitions_with,
};
pub use store::{
    Inserted, PartitionProgress, copy_records, insert_isolating, insert_isolating_records,
    insert_records, load_progress, save_progress,
};
pub use tokio_postgres;
