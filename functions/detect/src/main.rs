//! Wiring only: logs, clients built once, then the runtime loop.

use lambda_runtime::{Error, run, service_fn};

// One invocation at a time per sandbox: a single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logpipe_telemetry::init_json_logs();
    let detector = detect::from_env().await?;
    // Neither is fatal at init: the first batch retries the migration, and
    // the broker may come back.
    if let Err(error) = detector.ensure_schema().await {
        tracing::error!(%error, "database not ready at init");
    }
    detector.check_topics().await;
    run(service_fn(|event| detect::handle(&detector, event))).await
}
