//! PostgreSQL adapter for logpipe: connection management with Secrets
//! Manager credentials, migrations, and idempotent batch writes.

mod connection;
pub mod detect;
mod error;
mod migrate;
mod retention;
mod store;

pub use connection::{Database, DbSettings, DbSource};
pub use error::DbError;
pub use migrate::{migrate, migrate_to};
pub use retention::{PartitionChange, RetentionSettings, maintain_partitions};
pub use store::{
    Inserted, PartitionProgress, copy_records, insert_isolating, insert_isolating_records,
    insert_records, load_progress, save_progress,
};
pub use tokio_postgres;
