//! Schema migrations (refinery), safe to run from many cold starts at once.

use tokio_postgres::Client;

use crate::error::DbError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Arbitrary but fixed key for the advisory lock that serializes migrations
/// across concurrently starting functions.
const MIGRATION_LOCK_KEY: i64 = 0x6c6f_6770_6970_6501;

/// The newest migration this build knows: the schema version the
/// functions need.
pub fn expected_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Checks, without DDL, that the schema is at least at
/// [`expected_version`] (a newer one is fine: functions are deployed one at
/// a time). The functions' runtime role may not migrate; the owner does
/// (the maintain function in AWS, `make up` locally).
pub async fn check_schema(client: &Client) -> Result<i32, DbError> {
    let expected = expected_version();
    let not_ready = |found: &str| {
        DbError::SchemaNotReady(format!(
            "{found}; this build needs version {expected}. Migrations run under the schema \
             owner: invoke the maintain function (DbOwnerSecretArn) after deploying, or \
             `make up` locally"
        ))
    };
    let row = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(DbError::from_query)?;
    if !row.get::<_, bool>(0) {
        return Err(not_ready("no migration has been applied"));
    }
    let version: Option<i32> = client
        .query_one(
            "SELECT max(version)::int4 FROM refinery_schema_history",
            &[],
        )
        .await
        .map_err(DbError::from_query)?
        .get(0);
    match version {
        Some(v) if v >= expected => Ok(v),
        Some(v) => Err(not_ready(&format!("the schema is at version {v}"))),
        None => Err(not_ready("no migration has been applied")),
    }
}

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
