//! Wiring only: logs, the producer built once, then the runtime loop.

use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logpipe_telemetry::init_json_logs();
    let producer = produce::Producer::from_env().await?;
    run(service_fn(|event| produce::handle(&producer, event))).await
}
