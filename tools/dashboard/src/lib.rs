//! The local dashboard: the panels of the Grafana dashboard
//! (`infra/grafana/logpipe.json`) served on 127.0.0.1 from logpipe's
//! PostgreSQL, with the same SQL and Grafana's macros expanded here.
//!
//! - `/`: the page (timeseries and bar charts drawn by uPlot, tables and
//!   stats as HTML), refreshing every few seconds
//! - `/api/panels?minutes=N&search=TEXT`: every panel's columns and rows for
//!   the last N minutes as JSON ([`PanelsReport`])
//! - `/assets/…`: the page's script and style and the vendored uPlot
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use logpipe_dashboard::{Dashboard, DashboardSpec, serve, until_stopped};
//! use logpipe_postgres::{Database, DbSettings};
//! let db = Database::new(DbSettings::from_url("postgres://127.0.0.1/logpipe", "dashboard"), None)?;
//! let dashboard = Arc::new(Dashboard::new(DashboardSpec::builtin()?, db));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
//! serve(listener, dashboard, until_stopped()).await;
//! # Ok(()) }
//! ```

mod assets;
pub mod macros;
pub mod query;
pub mod server;
pub mod spec;

pub use macros::{MacroError, expand, expand_title};
pub use query::{
    Column, ColumnKind, Dashboard, DashboardError, PanelData, PanelQuery, PanelsReport, QueryError,
};
pub use server::{DEFAULT_PORT, is_loopback_host, port_from_env, serve, until_stopped};
pub use spec::{DashboardSpec, GRAFANA_DASHBOARD, GridPos, PanelSpec, SpecError};
