//! `logpipe-dashboard`: serves the local dashboard on 127.0.0.1 until Ctrl-C.
//! The database: `DATABASE_URL` or `DB_SECRET_ARN` (as the functions read
//! it); the port: `DASHBOARD_PORT` (default 8090, 0 = any free port).

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use logpipe_dashboard::{Dashboard, DashboardSpec, port_from_env, serve, until_stopped};
use logpipe_postgres::{Database, DbSettings, DbSource};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let port = port_from_env().map_err(anyhow::Error::msg)?;
    let settings = DbSettings::from_env("logpipe-dashboard").context(
        "the dashboard reads logpipe's database: `make dashboard` uses the local stack's",
    )?;
    let secrets = match settings.source {
        DbSource::Secret { .. } => Some(Arc::new(logpipe_secrets::SecretsCache::from_env().await)),
        DbSource::Url(_) => None,
    };
    let dashboard = Arc::new(Dashboard::new(
        DashboardSpec::builtin()?,
        Database::new(settings, secrets)?,
    ));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} (set DASHBOARD_PORT)"))?;
    let address = listener.local_addr()?;
    println!("dashboard: http://{address}/");
    std::io::stdout().flush()?;
    serve(listener, dashboard, until_stopped()).await;
    Ok(())
}
