//! The local stack: a real PostgreSQL, a real Kafka-protocol broker (Tansu)
//! and moto's AWS API server on free loopback ports.
//!
//! Tests start a [`LocalStack`] and drop it at the end; every process is
//! also tied to the test process (`PR_SET_PDEATHSIG`), so nothing outlives a
//! failed, panicking or killed test. `logpipe-dev up` starts the same
//! services detached for `make up` and the demo.

pub mod demo;
pub mod ownership;
pub mod postgres;
pub mod process;
pub mod root;
pub mod services;
pub mod state;
pub mod topics;

use std::path::Path;

use anyhow::{Context, Result};
pub use postgres::Postgres;
pub use process::Lifetime;
pub use root::{RootError, workspace_root};
pub use services::{Service, start_moto, start_tansu};
pub use state::StackPaths;
pub use topics::{apply_local_catalog, create_topics, describe, load_catalog};

/// What a test needs from the stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct StackOptions {
    pub moto: bool,
}

/// A whole local stack owned by one test; dropping it stops everything.
pub struct LocalStack {
    pub postgres: Postgres,
    pub tansu: Service,
    pub moto: Option<Service>,
    // Last: removed after the processes using it are gone.
    dir: tempfile::TempDir,
}

impl LocalStack {
    /// Starts PostgreSQL (migrated) and Tansu (with the pipeline topics),
    /// and moto when asked.
    pub async fn start(options: StackOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("logpipe-stack-")
            .tempdir()?;
        let postgres = Postgres::start(&dir.path().join("pg"), Lifetime::TiedToParent)?;
        let tansu = start_tansu(dir.path(), Lifetime::TiedToParent)?;
        let moto = if options.moto {
            Some(start_moto(dir.path(), Lifetime::TiedToParent)?)
        } else {
            None
        };
        let stack = Self {
            postgres,
            tansu,
            moto,
            dir,
        };
        create_roles(&stack.database_url()).await?;
        migrate(&stack.owner_url()).await?;
        apply_local_catalog(&stack.bootstrap_servers()).await?;
        Ok(stack)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the broker (to test what happens while it is away).
    pub fn stop_broker(&mut self) {
        self.tansu.stop();
    }

    /// Starts the broker again on the same port and re-creates the pipeline
    /// topics (Tansu's storage is in memory, so it comes back empty).
    pub async fn restart_broker(&mut self) -> Result<()> {
        let port = self.tansu.port();
        self.tansu.stop();
        self.tansu = services::start_tansu_on(self.dir.path(), port, Lifetime::TiedToParent)?;
        apply_local_catalog(&self.bootstrap_servers()).await?;
        Ok(())
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.tansu.port())
    }

    /// The superuser's URL: for tests' assertions and set-up.
    pub fn database_url(&self) -> String {
        self.postgres.url()
    }

    /// The schema owner's URL (migrations, partition maintenance).
    pub fn owner_url(&self) -> String {
        self.postgres.owner_url()
    }

    /// The functions' URL: a member of `logpipe_runtime`, DML only.
    pub fn runtime_url(&self) -> String {
        self.postgres.runtime_url()
    }

    pub fn moto_url(&self) -> Option<String> {
        self.moto
            .as_ref()
            .map(|m| format!("http://127.0.0.1:{}", m.port()))
    }
}

/// Creates (as the superuser at `superuser_url`) the roles the AWS
/// deployment has: the schema owner `logpipe_owner`, the NOLOGIN group
/// `logpipe_runtime` and the functions' login `logpipe_functions` in it —
/// the README's "Database roles" SQL. Objects an older local stack created
/// as the superuser are handed to the owner. Idempotent.
pub async fn create_roles(superuser_url: &str) -> Result<()> {
    use postgres::{OWNER, OWNER_PASSWORD, RUNTIME, RUNTIME_PASSWORD};
    let db = logpipe_postgres::Database::new(
        logpipe_postgres::DbSettings::from_url(superuser_url, "logpipe-dev"),
        None,
    )?;
    let client = db.client().await?;
    client
        .batch_execute(&format!(
            "DO $$
             DECLARE r record;
             BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'logpipe_runtime') THEN
                     CREATE ROLE logpipe_runtime NOLOGIN;
                 END IF;
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER}') THEN
                     CREATE ROLE {OWNER} LOGIN PASSWORD '{OWNER_PASSWORD}';
                 END IF;
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{RUNTIME}') THEN
                     CREATE ROLE {RUNTIME} LOGIN PASSWORD '{RUNTIME_PASSWORD}' IN ROLE logpipe_runtime;
                 END IF;
                 FOR r IN SELECT c.relname, c.relkind FROM pg_class c
                           WHERE c.relnamespace = 'public'::regnamespace
                             AND c.relkind IN ('r', 'p', 'v', 'm')
                             AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                 LOOP
                     EXECUTE format('ALTER %s %I OWNER TO {OWNER}',
                                    CASE r.relkind WHEN 'v' THEN 'VIEW'
                                                   WHEN 'm' THEN 'MATERIALIZED VIEW'
                                                   ELSE 'TABLE' END, r.relname);
                 END LOOP;
                 FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
                           WHERE p.pronamespace = 'public'::regnamespace
                             AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                 LOOP
                     EXECUTE format('ALTER FUNCTION %s OWNER TO {OWNER}', r.f);
                 END LOOP;
             END $$;
             GRANT CREATE, USAGE ON SCHEMA public TO {OWNER};"
        ))
        .await
        .context("creating the database roles")?;
    Ok(())
}

/// Applies the migrations to the database at `url`.
pub async fn migrate(url: &str) -> Result<()> {
    let db = logpipe_postgres::Database::new(
        logpipe_postgres::DbSettings::from_url(url, "logpipe-dev"),
        None,
    )?;
    let mut client = db.client().await?;
    logpipe_postgres::migrate(&mut client)
        .await
        .context("applying migrations")?;
    Ok(())
}

/// Prepares the `logs` partitions ahead and drops the expired ones
/// (`LOG_RETENTION_DAYS`, `LOG_PARTITIONS_AHEAD`), as the scheduled
/// `maintain` function (functions/maintain) does in AWS, with the same
/// variables and defaults.
pub async fn maintain(url: &str) -> Result<Vec<logpipe_postgres::PartitionChange>> {
    let settings = logpipe_postgres::RetentionSettings::from_env()?;
    let db = logpipe_postgres::Database::new(
        logpipe_postgres::DbSettings::from_url(url, "logpipe-dev"),
        None,
    )?;
    let client = db.client().await?;
    logpipe_postgres::maintain_partitions(&*client, settings, None)
        .await
        .context("maintaining the logs partitions")
}
