//! Init work that need not come before the first `next` request.
//!
//! A function's schema check and topic check (which also connects the
//! producer to the broker) take one or two network round trips that Lambda
//! would bill as Init and that the first batch does not need until it
//! touches the database or the broker. [`InitChecks`] starts them at init as
//! a task of their own, so they run while the runtime asks for the first
//! event, logs what they find as soon as it is known (still the first lines
//! of the sandbox's log), and holds the first invocation until they are done,
//! so the batch starts on a checked schema and a connected producer, or
//! fails with the same typed error as it would have without the checks.

use std::future::Future;

use logpipe_postgres::DbError;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Checks running in the background since init.
pub struct InitChecks {
    task: Mutex<Option<JoinHandle<()>>>,
}

impl InitChecks {
    /// Starts `checks` on the runtime now and returns at once. `checks`
    /// reports its own findings (they are logged, never fatal).
    pub fn spawn<F>(checks: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Self {
            task: Mutex::new(Some(tokio::spawn(checks))),
        }
    }

    /// Waits until the checks are done: the first caller waits as long as
    /// they still take, later callers not at all.
    pub async fn finished(&self) {
        let mut task = self.task.lock().await;
        if let Some(handle) = task.as_mut() {
            // Awaited by reference: a caller dropped mid-wait leaves the
            // handle for the next one.
            if let Err(error) = handle.await {
                tracing::error!(%error, "init checks did not finish");
            }
            *task = None;
        }
    }

    /// `work` once the checks are done: what the handler of every
    /// invocation is wrapped in (only the first one can wait).
    pub async fn then<F: Future>(&self, work: F) -> F::Output {
        self.finished().await;
        work.await
    }
}

/// A Kafka-triggered function's init checks, side by side (neither waits
/// for the other): `schema` (its failure is logged, and the first batch
/// tries again and fails with the typed error if it still fails) and
/// `topics` (which logs its own findings).
pub async fn schema_and_topics(
    schema: impl Future<Output = Result<(), DbError>>,
    topics: impl Future<Output = ()>,
) {
    let (schema, ()) = tokio::join!(schema, topics);
    if let Err(error) = schema {
        tracing::error!(%error, "database not ready at init");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex as StdMutex};

    use tokio::sync::oneshot;

    use super::*;

    type Log = Arc<StdMutex<Vec<&'static str>>>;

    fn push(log: &Log, entry: &'static str) {
        log.lock().expect("test log").push(entry);
    }

    fn entries(log: &Log) -> Vec<&'static str> {
        log.lock().expect("test log").clone()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn checks_run_while_init_goes_on_and_hold_only_the_first_invocation() {
        let log = Log::default();
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let checks = InitChecks::spawn({
            let log = log.clone();
            async move {
                push(&log, "checks started");
                let _ = started_tx.send(());
                let _ = release_rx.await;
                push(&log, "checks done");
            }
        });
        // Init goes on (here: waits for something else, as the runtime
        // waits for `next`) and the checks start meanwhile, unasked.
        started_rx.await.expect("the checks started");
        assert_eq!(entries(&log), ["checks started"]);

        // The first invocation does not start its work before the checks
        // are done.
        let first = checks.then({
            let log = log.clone();
            async move { push(&log, "first batch") }
        });
        tokio::pin!(first);
        for _ in 0..10 {
            tokio::select! {
                biased;
                () = &mut first => panic!("the first batch ran before the checks were done"),
                () = tokio::task::yield_now() => {}
            }
        }
        assert_eq!(entries(&log), ["checks started"]);
        release_tx.send(()).expect("the checks wait");
        first.await;
        assert_eq!(
            entries(&log),
            ["checks started", "checks done", "first batch"]
        );

        // Later invocations do not wait at all.
        checks
            .then({
                let log = log.clone();
                async move { push(&log, "second batch") }
            })
            .await;
        assert_eq!(entries(&log).last(), Some(&"second batch"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_check_that_panics_does_not_block_the_batches() {
        let checks = InitChecks::spawn(async { panic!("check failed badly") });
        assert_eq!(checks.then(async { 1 }).await, 1);
        assert_eq!(checks.then(async { 2 }).await, 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn both_checks_run_even_when_the_schema_fails() {
        let log = Log::default();
        schema_and_topics(async { Err(DbError::Config("no database".into())) }, {
            let log = log.clone();
            async move { push(&log, "topics checked") }
        })
        .await;
        assert_eq!(entries(&log), ["topics checked"]);
    }
}
