//! Wiring only: logs, clients built once, then the runtime loop.

use std::sync::Arc;

use lambda_runtime::{Error, run, service_fn};
use logpipe_lambda::InitChecks;

// One invocation at a time per sandbox: a single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logpipe_telemetry::init_json_logs();
    let detector = Arc::new(detect::from_env().await?);
    // Check the schema version (or migrate, with RUN_MIGRATIONS=true) and
    // the topics in the background from init on, side by side, so
    // misconfiguration shows up in the first log lines without delaying the
    // first `next`; the first invocation waits for them. Neither is fatal
    // (the first batch checks the schema again, the broker may come back).
    let checks = InitChecks::spawn({
        let detector = Arc::clone(&detector);
        async move {
            logpipe_lambda::schema_and_topics(detector.ensure_schema(), detector.check_topics())
                .await
        }
    });
    run(service_fn(|event| {
        checks.then(detect::handle(&detector, event))
    }))
    .await
}
