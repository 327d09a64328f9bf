//! Wiring only: logs, clients built once, then the runtime loop.

use lambda_runtime::{Error, run, service_fn};

// One invocation at a time per sandbox: a single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logpipe_telemetry::init_json_logs();
    let detector = detect::from_env().await?;
    // Migrate and check topics at init so misconfiguration shows up in the
    // init log, side by side (neither waits for the other); neither is
    // fatal (the first batch retries the migration, the broker may come back).
    let (schema, ()) = tokio::join!(detector.ensure_schema(), detector.check_topics());
    if let Err(error) = schema {
        tracing::error!(%error, "database not ready at init");
    }
    run(service_fn(|event| detect::handle(&detector, event))).await
}
