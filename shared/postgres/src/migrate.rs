//! Schema migrations (refinery), safe to run from many cold starts at once.

use tokio_postgres::Client;

use crate::error::DbError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Arbitrary but fixed key for the advisory lock that serializes migrations
/// across concurrently starting functions.
const MIGRATION_LOCK_KEY: i64 = 0x6c6f_6770_6970_6501;

/// Applies every pending migration. Concurrent callers wait for each other.
pub async fn migrate(client: &mut Client) -> Result<usize, DbError> {
    migrate_to(client, None).await
}

/// Applies the pending migrations up to and including version `target`
/// (`None`: all), e.g. to stage a schema upgrade or test one.
pub async fn migrate_to(client: &mut Client, target: Option<i32>) -> Result<usize, DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(DbError::from_query)?;
    // A function deployed from an older build must keep working against a
    // schema a newer one has already migrated (functions are deployed one
    // at a time): migrations it does not know are not an error.
    let result = embedded::migrations::runner()
        .set_abort_missing(false)
        .set_target(target.map_or(refinery::Target::Latest, refinery::Target::Version))
        .run_async(client)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(DbError::from_query)?;
    let report = result.map_err(|e| {
        // refinery's own message is terse; the PostgreSQL error is in the chain.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        DbError::Migration(text)
    })?;
    let applied = report.applied_migrations().len();
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(applied)
}
