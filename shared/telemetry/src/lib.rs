//! Structured logs: one JSON object per line on stdout, which CloudWatch
//! Logs (and `cargo lambda watch`) capture as is.

use tracing_subscriber::EnvFilter;

/// Installs the global JSON subscriber. The level comes from `RUST_LOG`
/// (default `info`). Calling it twice is harmless: the second call is ignored.
pub fn init_json_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        // CloudWatch adds its own timestamp; keeping ours helps local runs.
        .try_init();
}
