//! The cold-start baseline of `make bench` (BENCH_ONLY=coldstart): the
//! smallest `lambda_runtime` function, built with the same profile and
//! runtime flavour as the real ones, that echoes its event.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<serde_json::Value>| async {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
