//! Wiring only: logs, the configuration and database client built once,
//! then the runtime loop.

// The runtime's future nests the handler's (migrations, TLS connect): deep.
#![recursion_limit = "256"]

use lambda_runtime::{Error, run, service_fn};

// One invocation at a time per sandbox: a single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logpipe_telemetry::init_json_logs();
    // A bad setting fails here, at init, naming the variable.
    let maintainer = maintain::Maintainer::from_env().await?;
    run(service_fn(|event| maintain::handle(&maintainer, event))).await
}
