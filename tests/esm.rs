//! The local event source mapping against a real broker (Tansu) and real
//! consumer groups, with in-process test functions as targets.
//!
//! No timed assertions: every wait is for a condition, with a generous
//! deadline. Every produced record is accounted for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logpipe_esm::{
    Invoke, InvokeError, MAX_PAYLOAD_BYTES, MappingConfig, MappingHandle, StatsSnapshot,
    start_mapping,
};
use logpipe_kafka::KafkaSettings;
use logpipe_kafka::event::KafkaEventPayload;
use logpipe_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use logpipe_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use logpipe_tests::*;
use serde_json::{Value, json};

const TOPIC: &str = "esm-input";
const FAILURES: &str = "esm-input.failures";
const PARTITIONS: i32 = 3;
const WAIT: Duration = Duration::from_secs(180);

/// One record as the function saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

/// One invocation of the test function.
#[derive(Debug, Clone)]
struct Call {
    records: Vec<Seen>,
    event_bytes: usize,
    outcome: Result<Value, InvokeError>,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// A test function: checks the envelope, records the call, answers with
/// `decide(call number, records)`.
fn recording_function<D>(calls: Calls, bootstrap: String, decide: D) -> impl Invoke
where
    D: Fn(usize, &[Seen]) -> Result<Value, InvokeError> + Send + Sync + 'static,
{
    move |event: Value| {
        let event_bytes = serde_json::to_vec(&event).expect("event serializes").len();
        assert_eq!(event["eventSource"], "SelfManagedKafka");
        assert_eq!(event["bootstrapServers"], bootstrap.as_str());
        for (key, list) in event["records"].as_object().expect("records map") {
            for r in list.as_array().expect("record list") {
                assert_eq!(
                    format!("{}-{}", r["topic"].as_str().unwrap(), r["partition"]),
                    *key
                );
                assert!(r["headers"].is_array(), "headers always present");
                assert!(r["timestampType"].is_string());
            }
        }
        let decoded = serde_json::from_value::<KafkaEventPayload>(event)
            .expect("the event has Lambda's shape")
            .decode();
        let records: Vec<Seen> = decoded
            .records
            .into_iter()
            .map(|r| {
                assert!(r.error.is_none(), "{:?}", r.error);
                assert_eq!(r.topic, TOPIC);
                Seen {
                    partition: r.partition,
                    offset: r.offset,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                }
            })
            .collect();
        let outcome = {
            let mut calls = calls.lock().unwrap();
            let outcome = decide(calls.len(), &records);
            calls.push(Call {
                records,
                event_bytes,
                outcome: outcome.clone(),
            });
            outcome
        };
        async move { outcome }
    }
}

fn ok() -> Result<Value, InvokeError> {
    Ok(json!({ "batchItemFailures": [] }))
}

fn config(group: &str) -> MappingConfig {
    let mut c = MappingConfig::new("test-function", &[TOPIC], group);
    c.batching_window = Duration::from_millis(300);
    c.retry_backoff_initial = Duration::from_millis(50);
    c.retry_backoff_max = Duration::from_millis(400);
    c
}

async fn stack_with_topics() -> (LocalStack, String) {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    logpipe_devstack::create_topics(&bootstrap, &[(TOPIC, PARTITIONS), (FAILURES, 1)])
        .await
        .unwrap();
    (stack, bootstrap)
}

/// Records spread over the partitions by key, numbered in their values.
fn numbered(from: usize, count: usize) -> Vec<Produce> {
    (from..from + count)
        .map(|i| Produce::text(&format!("key-{}", i % 7), &format!("record-{i}")))
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {} s waiting for {what}",
            WAIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn calls_of(calls: &Calls) -> Vec<Call> {
    calls.lock().unwrap().clone()
}

/// Records of successful invocations, minus what a reported failure gave
/// back (from its offset on, per partition): what the function accepted.
fn accepted(calls: &[Call]) -> Vec<Seen> {
    let mut out = Vec::new();
    for call in calls {
        let Ok(response) = &call.outcome else {
            continue;
        };
        let mut failed_from: BTreeMap<String, i64> = BTreeMap::new();
        if let Some(list) = response["batchItemFailures"].as_array() {
            for f in list {
                failed_from.insert(
                    f["itemIdentifier"]["partition"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    f["itemIdentifier"]["offset"].as_i64().unwrap(),
                );
            }
        }
        for r in &call.records {
            let key = format!("{TOPIC}-{}", r.partition);
            if failed_from.get(&key).is_none_or(|k| r.offset < *k) {
                out.push(r.clone());
            }
        }
    }
    out
}

/// Per partition, the offsets in delivery order.
fn by_partition(records: &[Seen]) -> BTreeMap<i32, Vec<i64>> {
    let mut map: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in records {
        map.entry(r.partition).or_default().push(r.offset);
    }
    map
}

/// Each partition's offsets are exactly 0..n, in order, once each.
fn assert_contiguous_once(records: &[Seen]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for (partition, offsets) in by_partition(records) {
        let want: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, want,
            "partition {partition}: in order, none skipped, none twice"
        );
        ends.insert(partition, offsets.len() as i64);
    }
    ends
}

fn committed_in_stats(stats: &StatsSnapshot) -> BTreeMap<i32, i64> {
    stats
        .committed
        .iter()
        .filter(|((topic, _), _)| topic == TOPIC)
        .map(|((_, p), o)| (*p, *o))
        .collect()
}

/// What the broker has committed for the group (a separate client).
fn committed_on_broker(bootstrap: &str, group: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition(TOPIC, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(15))
        .unwrap();
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

fn start(config: MappingConfig, bootstrap: &str, target: impl Invoke) -> MappingHandle {
    start_mapping(
        config,
        &KafkaSettings::plaintext(bootstrap, "esm-test"),
        target,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_fails_twice_gets_every_record_once_then_commits_to_the_end() {
    let (_stack, bootstrap) = stack_with_topics().await;
    const FIRST: usize = 300;
    produce(&bootstrap, TOPIC, &numbered(0, FIRST))
        .await
        .unwrap();

    let calls: Calls = Default::default();
    let target = recording_function(calls.clone(), bootstrap.clone(), |n, _| {
        if n < 2 {
            Err(InvokeError::function("Boom", format!("failure #{}", n + 1)))
        } else {
            ok()
        }
    });
    let mapping = start(config("esm-fail-twice"), &bootstrap, target);
    wait_for("all first records accepted", || {
        accepted(&calls_of(&calls)).len() >= FIRST
    })
    .await;
    let calls_now = calls_of(&calls);
    // The failed batch was retried as it was, before anything else.
    assert_eq!(calls_now[0].records, calls_now[1].records);
    assert_eq!(calls_now[1].records, calls_now[2].records);
    let delivered = accepted(&calls_now);
    let ends = assert_contiguous_once(&delivered);
    assert_eq!(
        ends.values().sum::<i64>(),
        FIRST as i64,
        "every record counted"
    );
    wait_for("commits up to the end", || {
        committed_in_stats(&mapping.stats()) == ends
    })
    .await;
    let values: BTreeSet<Vec<u8>> = delivered.iter().filter_map(|r| r.value.clone()).collect();
    let want: BTreeSet<Vec<u8>> = (0..FIRST)
        .map(|i| format!("record-{i}").into_bytes())
        .collect();
    assert_eq!(values, want);

    // A clean stop returns the counters and leaves the commits on the broker.
    let stats = mapping.stop().await.unwrap();
    assert_eq!(stats.function_errors, 2, "{stats:?}");
    assert_eq!(stats.retries, 2, "{stats:?}");
    assert_eq!(stats.records_delivered, FIRST as u64, "{stats:?}");
    assert_eq!(stats.records_to_destination + stats.records_discarded, 0);
    assert_eq!(committed_on_broker(&bootstrap, "esm-fail-twice"), ends);

    // Started again, the group resumes exactly where it committed.
    const MORE: usize = 90;
    produce(&bootstrap, TOPIC, &numbered(FIRST, MORE))
        .await
        .unwrap();
    let later: Calls = Default::default();
    let target = recording_function(later.clone(), bootstrap.clone(), |_, _| ok());
    let mapping = start(config("esm-fail-twice"), &bootstrap, target);
    wait_for("the later records", || {
        accepted(&calls_of(&later)).len() >= MORE
    })
    .await;
    let resumed = accepted(&calls_of(&later));
    assert_eq!(
        resumed.len(),
        MORE,
        "nothing redelivered after a clean stop"
    );
    for (partition, offsets) in by_partition(&resumed) {
        let start = ends.get(&partition).copied().unwrap_or(0);
        let want: Vec<i64> = (start..start + offsets.len() as i64).collect();
        assert_eq!(offsets, want, "partition {partition} resumes at its commit");
    }
    let mut all = delivered.clone();
    all.extend(resumed);
    let final_ends = assert_contiguous_once(&all);
    wait_for("commits up to the new end", || {
        committed_in_stats(&mapping.stats()) == final_ends
    })
    .await;
    mapping.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_item_failure_resumes_that_partition_there_and_commits_the_others() {
    let (_stack, bootstrap) = stack_with_topics().await;
    const COUNT: usize = 120;
    produce(&bootstrap, TOPIC, &numbered(0, COUNT))
        .await
        .unwrap();

    // Reports one failure, in the first call that has several partitions
    // and at least two records of one: at that partition's second record.
    let injected: Arc<Mutex<Option<(usize, i32, i64)>>> = Default::default();
    let calls: Calls = Default::default();
    let target = {
        let injected = injected.clone();
        recording_function(calls.clone(), bootstrap.clone(), move |n, records| {
            let mut injected = injected.lock().unwrap();
            if injected.is_some() {
                return ok();
            }
            let partitions = by_partition(records);
            let Some((partition, offsets)) = partitions.iter().find(|(_, o)| o.len() >= 2) else {
                return ok();
            };
            if partitions.len() < 2 {
                return ok();
            }
            let k = offsets[1];
            *injected = Some((n, *partition, k));
            Ok(json!({"batchItemFailures": [
                {"itemIdentifier": {"partition": format!("{TOPIC}-{partition}"), "offset": k}}
            ]}))
        })
    };
    let mut c = config("esm-item-failure");
    c.report_batch_item_failures = true;
    c.batching_window = Duration::from_secs(1);
    let mapping = start(c, &bootstrap, target);
    wait_for("every record accepted", || {
        accepted(&calls_of(&calls)).len() >= COUNT
    })
    .await;
    let all_calls = calls_of(&calls);
    let (failed_call, partition, k) = injected.lock().unwrap().expect("a failure was reported");

    // The next delivery of that partition starts at k.
    let next = all_calls[failed_call + 1..]
        .iter()
        .find_map(|c| c.records.iter().find(|r| r.partition == partition))
        .expect("the partition is delivered again");
    assert_eq!(
        next.offset, k,
        "partition {partition} resumes at the reported offset"
    );

    // The other partitions of the failed call are never delivered again.
    let failed_records = &all_calls[failed_call].records;
    let others: BTreeSet<i32> = failed_records
        .iter()
        .map(|r| r.partition)
        .filter(|p| *p != partition)
        .collect();
    assert!(!others.is_empty());
    for later in &all_calls[failed_call + 1..] {
        for r in &later.records {
            assert!(
                !(others.contains(&r.partition)
                    && failed_records
                        .iter()
                        .any(|f| f.partition == r.partition && f.offset == r.offset)),
                "{r:?} was committed and must not come again"
            );
        }
    }

    // Everything accepted once, in order; the commits reach the end.
    let delivered = accepted(&all_calls);
    let ends = assert_contiguous_once(&delivered);
    assert_eq!(
        ends.values().sum::<i64>(),
        COUNT as i64,
        "every record counted"
    );
    wait_for("commits up to the end", || {
        committed_in_stats(&mapping.stats()) == ends
    })
    .await;
    let stats = mapping.stop().await.unwrap();
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert_eq!(stats.function_errors, 0, "{stats:?}");
    assert_eq!(stats.records_delivered, COUNT as u64, "{stats:?}");
    assert_eq!(committed_on_broker(&bootstrap, "esm-item-failure"), ends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_send_the_batch_to_the_failure_topic_and_the_mapping_goes_on() {
    let (_stack, bootstrap) = stack_with_topics().await;
    const FIRST: usize = 40;
    let mut first = numbered(0, FIRST);
    first[17] = Produce::text("key-3", "poison");
    first[17]
        .headers
        .push(("trace-id".into(), "t-17 é".as_bytes().to_vec()));
    produce(&bootstrap, TOPIC, &first).await.unwrap();

    let calls: Calls = Default::default();
    let target = recording_function(calls.clone(), bootstrap.clone(), |_, records| {
        if records
            .iter()
            .any(|r| r.value.as_deref() == Some(b"poison"))
        {
            Err(InvokeError::function("PoisonError", "cannot handle poison"))
        } else {
            ok()
        }
    });
    let mut c = config("esm-exhausted");
    c.maximum_retry_attempts = Some(2);
    c.on_failure_topic = Some(FAILURES.into());
    let mapping = start(c, &bootstrap, target);
    wait_for("the poisoned batch given up", || {
        mapping.stats().records_to_destination > 0
    })
    .await;

    // Later records still flow.
    const MORE: usize = 30;
    produce(&bootstrap, TOPIC, &numbered(FIRST, MORE))
        .await
        .unwrap();
    let given_up = mapping.stats().records_to_destination as usize;
    wait_for("every record accepted or given up", || {
        accepted(&calls_of(&calls)).len() + given_up >= FIRST + MORE
    })
    .await;
    let all_calls = calls_of(&calls);
    let failed: Vec<&Call> = all_calls.iter().filter(|c| c.outcome.is_err()).collect();
    assert_eq!(failed.len(), 3, "the first attempt and two retries");
    assert!(failed.iter().all(|c| c.records == failed[0].records));
    let failed_batch = &failed[0].records;
    assert_eq!(failed_batch.len(), given_up);

    // The failure topic holds exactly that batch, with the original key,
    // value and headers, and why.
    let dead = consume(&bootstrap, FAILURES, "esm-failure-reader", given_up)
        .await
        .unwrap();
    let mut dead_coordinates = BTreeSet::new();
    for d in &dead {
        let partition: i32 = header(d, "dlq-source-partition").unwrap().parse().unwrap();
        let offset: i64 = header(d, "dlq-source-offset").unwrap().parse().unwrap();
        let original = failed_batch
            .iter()
            .find(|r| r.partition == partition && r.offset == offset)
            .expect("a record of the failed batch");
        assert_eq!(d.key, original.key);
        assert_eq!(d.value, original.value);
        for h in &original.headers {
            assert!(d.headers.contains(h), "original header {h:?} kept");
        }
        assert_eq!(header(d, "dlq-error-class"), Some("esm_retries_exhausted"));
        assert_eq!(header(d, "dlq-error-type"), Some("PoisonError"));
        assert!(
            header(d, "dlq-error-message")
                .unwrap()
                .contains("cannot handle poison")
        );
        assert_eq!(header(d, "dlq-source-topic"), Some(TOPIC));
        assert_eq!(header(d, "dlq-function"), Some("test-function"));
        assert_eq!(header(d, "dlq-attempts"), Some("3"));
        dead_coordinates.insert((partition, offset));
    }
    assert_eq!(
        dead_coordinates.len(),
        given_up,
        "each given-up record once"
    );
    let poison = failed_batch
        .iter()
        .find(|r| r.value.as_deref() == Some(b"poison"))
        .unwrap();
    assert!(
        poison
            .headers
            .contains(&("trace-id".into(), "t-17 é".as_bytes().to_vec()))
    );

    // Accepted and given up: every record exactly once, none skipped.
    let delivered = accepted(&all_calls);
    let mut everything = delivered.clone();
    everything.extend(failed_batch.iter().cloned());
    everything.sort_by_key(|r| (r.partition, r.offset));
    let ends = assert_contiguous_once(&everything);
    assert_eq!(
        ends.values().sum::<i64>(),
        (FIRST + MORE) as i64,
        "every record counted"
    );
    assert!(
        delivered
            .iter()
            .all(|r| !dead_coordinates.contains(&(r.partition, r.offset))),
        "nothing both delivered and given up"
    );
    // The records after the failed batch came later, in order per partition.
    for (partition, offsets) in by_partition(&delivered) {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} in order"
        );
    }
    wait_for("commits up to the end", || {
        committed_in_stats(&mapping.stats()) == ends
    })
    .await;
    let stats = mapping.stop().await.unwrap();
    assert_eq!(stats.function_errors, 3, "{stats:?}");
    assert_eq!(stats.records_to_destination as usize, given_up);
    assert_eq!(stats.records_delivered as usize, delivered.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_never_exceed_the_batch_size_or_six_megabytes() {
    let (_stack, bootstrap) = stack_with_topics().await;

    // Small records: the batch size is the limit.
    const SMALL: usize = 200;
    produce(&bootstrap, TOPIC, &numbered(0, SMALL))
        .await
        .unwrap();
    let calls: Calls = Default::default();
    let target = recording_function(calls.clone(), bootstrap.clone(), |_, _| ok());
    let mut c = config("esm-sizes");
    c.batch_size = 7;
    let mapping = start(c, &bootstrap, target);
    wait_for("the small records", || {
        accepted(&calls_of(&calls)).len() >= SMALL
    })
    .await;
    let small_calls = calls_of(&calls);
    assert!(small_calls.iter().all(|c| c.records.len() <= 7));
    assert!(
        small_calls.iter().any(|c| c.records.len() == 7),
        "batches fill up"
    );
    mapping.stop().await.unwrap();

    // Large records (~700 KB, ~930 KB once base64-encoded): the 6 MB payload
    // limit cuts the batch long before BatchSize 100.
    const LARGE: usize = 24;
    let large: Vec<Produce> = (0..LARGE)
        .map(|i| Produce {
            key: Some(format!("key-{}", i % 5)),
            value: Some(vec![b'a' + (i % 26) as u8; 700_000]),
            headers: vec![("n".into(), i.to_string().into_bytes())],
        })
        .collect();
    produce(&bootstrap, TOPIC, &large).await.unwrap();
    let big_calls: Calls = Default::default();
    let target = recording_function(big_calls.clone(), bootstrap.clone(), |_, _| ok());
    let mut c = config("esm-sizes");
    c.batch_size = 100;
    c.batching_window = Duration::from_secs(2);
    let mapping = start(c, &bootstrap, target);
    wait_for("the large records", || {
        accepted(&calls_of(&big_calls)).len() >= LARGE
    })
    .await;
    let big = calls_of(&big_calls);
    for call in &big {
        assert!(
            call.event_bytes <= MAX_PAYLOAD_BYTES,
            "an event of {} bytes",
            call.event_bytes
        );
        assert!(call.records.len() <= 100);
    }
    assert!(
        big.iter().any(|c| c.records.len() > 1),
        "several large records share a batch"
    );
    let mut all = accepted(&small_calls);
    all.extend(accepted(&big));
    let ends = assert_contiguous_once(&all);
    assert_eq!(
        ends.values().sum::<i64>(),
        (SMALL + LARGE) as i64,
        "every record counted"
    );
    assert_eq!(
        accepted(&big).len(),
        LARGE,
        "only the large records, once each"
    );
    for r in accepted(&big) {
        let n: usize = std::str::from_utf8(&r.headers[0].1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            r.value,
            Some(vec![b'a' + (n % 26) as u8; 700_000]),
            "value intact"
        );
    }
    wait_for("commits up to the end", || {
        committed_in_stats(&mapping.stats()) == ends
    })
    .await;
    mapping.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_a_hung_invocation_commits_what_was_done_and_nothing_more() {
    let (_stack, bootstrap) = stack_with_topics().await;
    const COUNT: usize = 50;
    produce(&bootstrap, TOPIC, &numbered(0, COUNT))
        .await
        .unwrap();

    // The first call succeeds; every later one never answers.
    let calls: Calls = Default::default();
    let target = {
        let calls = calls.clone();
        let inner = Arc::new(recording_function(
            calls.clone(),
            bootstrap.clone(),
            |_, _| ok(),
        ));
        move |event: Value| {
            let first = calls.lock().unwrap().is_empty();
            let inner = inner.clone();
            async move {
                if first {
                    inner.invoke(event).await
                } else {
                    std::future::pending().await
                }
            }
        }
    };
    let mut c = config("esm-hung");
    c.batch_size = 20;
    let mapping = start(c, &bootstrap, target);
    wait_for("the second invocation", || mapping.stats().invocations >= 2).await;
    let stats = mapping.stop().await.expect("the stop returns");
    let done = accepted(&calls_of(&calls));
    assert_eq!(done.len(), stats.records_delivered as usize);
    assert!(!done.is_empty() && done.len() <= 20);
    let ends = assert_contiguous_once(&done);
    assert_eq!(committed_in_stats(&stats), ends, "only the finished batch");
    assert_eq!(committed_on_broker(&bootstrap, "esm-hung"), ends);

    // The abandoned batch comes again, from exactly the commits.
    let later: Calls = Default::default();
    let target = recording_function(later.clone(), bootstrap.clone(), |_, _| ok());
    let mapping = start(config("esm-hung"), &bootstrap, target);
    wait_for("the rest", || {
        done.len() + accepted(&calls_of(&later)).len() >= COUNT
    })
    .await;
    let rest = accepted(&calls_of(&later));
    for (partition, offsets) in by_partition(&rest) {
        assert_eq!(offsets[0], ends.get(&partition).copied().unwrap_or(0));
    }
    let mut all = done.clone();
    all.extend(rest);
    let final_ends = assert_contiguous_once(&all);
    assert_eq!(
        final_ends.values().sum::<i64>(),
        COUNT as i64,
        "every record counted"
    );
    mapping.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_in_one_group_share_the_partitions_and_lose_nothing() {
    let (_stack, bootstrap) = stack_with_topics().await;
    const FIRST: usize = 150;
    const MORE: usize = 150;
    produce(&bootstrap, TOPIC, &numbered(0, FIRST))
        .await
        .unwrap();
    let (calls_a, calls_b): (Calls, Calls) = Default::default();
    let a = start(
        config("esm-shared"),
        &bootstrap,
        recording_function(calls_a.clone(), bootstrap.clone(), |_, _| ok()),
    );
    wait_for("the first runner to deliver", || {
        !calls_of(&calls_a).is_empty()
    })
    .await;
    // A second member joins: the group rebalances while records flow.
    let b = start(
        config("esm-shared"),
        &bootstrap,
        recording_function(calls_b.clone(), bootstrap.clone(), |_, _| ok()),
    );
    // Records keep coming until the new member has taken some partitions.
    let mut produced = FIRST;
    let deadline = Instant::now() + WAIT;
    while calls_of(&calls_b).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the second member never got a partition"
        );
        produce(&bootstrap, TOPIC, &numbered(produced, 10))
            .await
            .unwrap();
        produced += 10;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    produce(&bootstrap, TOPIC, &numbered(produced, MORE))
        .await
        .unwrap();
    let total = produced + MORE;
    let union = || {
        let mut all = accepted(&calls_of(&calls_a));
        all.extend(accepted(&calls_of(&calls_b)));
        all
    };
    wait_for("every record delivered", || {
        let unique: BTreeSet<(i32, i64)> =
            union().iter().map(|r| (r.partition, r.offset)).collect();
        unique.len() >= total
    })
    .await;
    // At least once: a record may come twice around the rebalance (to the
    // member that had it and the one that takes over), and none is missing.
    let mut unique: Vec<Seen> = union();
    unique.sort_by_key(|r| (r.partition, r.offset));
    unique.dedup_by_key(|r| (r.partition, r.offset));
    let ends = assert_contiguous_once(&unique);
    assert_eq!(
        ends.values().sum::<i64>(),
        total as i64,
        "every record counted"
    );
    for calls in [&calls_a, &calls_b] {
        for call in calls_of(calls) {
            for (partition, offsets) in by_partition(&call.records) {
                assert!(
                    offsets.windows(2).all(|w| w[1] == w[0] + 1),
                    "partition {partition} in order within a batch: {offsets:?}"
                );
            }
        }
    }
    let bootstrap_for_wait = bootstrap.clone();
    wait_for("the group's commits reach the end", || {
        committed_on_broker(&bootstrap_for_wait, "esm-shared") == ends
    })
    .await;
    let (sa, sb) = (a.stop().await.unwrap(), b.stop().await.unwrap());
    assert!(sa.records_delivered + sb.records_delivered >= total as u64);
    assert!(sb.records_delivered > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_any_invocation_goes_to_the_failure_topic() {
    use logpipe_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
    let (_stack, bootstrap) = stack_with_topics().await;
    const HUGE: usize = 7_000_000;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.max.bytes", "20000000")
        .create()
        .unwrap();
    // One key: one partition, in this order.
    let values = [b"before".to_vec(), vec![b'h'; HUGE], b"after".to_vec()];
    for value in &values {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(TOPIC)
                    .key("big")
                    .payload(value.as_slice()),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let calls: Calls = Default::default();
    let target = recording_function(calls.clone(), bootstrap.clone(), |_, _| ok());
    let mut c = config("esm-huge");
    c.on_failure_topic = Some(FAILURES.into());
    let mapping = start(c, &bootstrap, target);
    wait_for("the small records and the huge one given up", || {
        accepted(&calls_of(&calls)).len() == 2 && mapping.stats().records_to_destination == 1
    })
    .await;
    let seen = accepted(&calls_of(&calls));
    assert_eq!(seen[0].value.as_deref(), Some(&b"before"[..]));
    assert_eq!(seen[1].value.as_deref(), Some(&b"after"[..]));
    assert_eq!(
        seen[1].offset,
        seen[0].offset + 2,
        "the huge one in between"
    );
    assert!(
        calls_of(&calls)
            .iter()
            .all(|c| c.event_bytes <= MAX_PAYLOAD_BYTES)
    );

    let dead = consume(&bootstrap, FAILURES, "esm-huge-reader", 1)
        .await
        .unwrap();
    let d = &dead[0];
    assert_eq!(header(d, "dlq-error-class"), Some("esm_payload_too_large"));
    assert_eq!(
        header(d, "dlq-source-offset"),
        Some((seen[0].offset + 1).to_string().as_str())
    );
    assert_eq!(d.key.as_deref(), Some(&b"big"[..]));
    // Whole, or cut to what the failure topic takes, and then said so.
    let value = d.value.as_deref().unwrap();
    assert!(value.iter().all(|b| *b == b'h'));
    if value.len() < HUGE {
        assert_eq!(header(d, "dlq-truncated-from"), Some("7000000"));
    }
    let partition = seen[0].partition;
    wait_for("the commit past all three", || {
        committed_in_stats(&mapping.stats()).get(&partition) == Some(&(seen[1].offset + 1))
    })
    .await;
    let stats = mapping.stop().await.unwrap();
    assert_eq!(stats.records_delivered, 2);
    assert_eq!(stats.records_to_destination, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_starts_a_new_group_after_what_is_already_there() {
    let (_stack, bootstrap) = stack_with_topics().await;
    const OLD: usize = 30;
    produce(&bootstrap, TOPIC, &numbered(0, OLD)).await.unwrap();
    let calls: Calls = Default::default();
    let target = recording_function(calls.clone(), bootstrap.clone(), |_, _| ok());
    let mut c = config("esm-latest");
    c.starting_position = logpipe_esm::StartingPosition::Latest;
    let mapping = start(c, &bootstrap, target);
    // New records until the group has found its position and delivers.
    let mut produced = OLD;
    let deadline = Instant::now() + WAIT;
    while calls_of(&calls).is_empty() {
        assert!(Instant::now() < deadline, "nothing delivered");
        produce(&bootstrap, TOPIC, &numbered(produced, 3))
            .await
            .unwrap();
        produced += 3;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let old: BTreeSet<Vec<u8>> = (0..OLD)
        .map(|i| format!("record-{i}").into_bytes())
        .collect();
    let seen = accepted(&calls_of(&calls));
    assert!(
        seen.iter()
            .all(|r| !old.contains(r.value.as_ref().unwrap())),
        "records from before the group started are not delivered"
    );
    mapping.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_function_behind_a_mapping_stores_every_record_once() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let valid = every_format();
    let bad = poison();
    let mut input: Vec<Produce> = valid.iter().map(|(p, _)| p.clone()).collect();
    input.extend(bad.iter().map(|(p, _)| p.clone()));
    let rows: i64 = valid.iter().map(|(_, n)| n).sum();
    produce(&bootstrap, "log-ingestion", &input).await.unwrap();

    let ingestor = ingestor(
        &stack,
        ingest::IngestConfig {
            report_batch_item_failures: true,
            message_timeout: Duration::from_secs(5),
            ..ingest::IngestConfig::default()
        },
    )
    .await
    .unwrap();
    let mut c = MappingConfig::new("ingest", &["log-ingestion"], "logpipe-ingest");
    c.report_batch_item_failures = true;
    c.on_failure_topic = Some("log-ingestion.dlq".into());
    let mapping = start_mapping(
        c,
        &KafkaSettings::plaintext(&bootstrap, "esm-test"),
        ingest_target(Arc::new(ingestor)),
    )
    .unwrap();
    let db = sql(&stack.database_url()).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while count(&db, "SELECT count(*) FROM logs").await < rows
        || mapping.stats().records_delivered < input.len() as u64
    {
        assert!(Instant::now() < deadline, "{:?}", mapping.stats());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = mapping.stop().await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM logs").await, rows);
    assert_eq!(stats.records_delivered, input.len() as u64, "{stats:?}");
    assert_eq!(stats.function_errors + stats.records_to_destination, 0);
    // The function dead-letters poison itself; the mapping committed it all.
    let dead = consume(&bootstrap, "log-ingestion.dlq", "esm-ingest-dlq", bad.len())
        .await
        .unwrap();
    assert_eq!(dead.len(), bad.len());
    let committed: i64 = stats.committed.values().sum();
    assert_eq!(committed, input.len() as i64, "{stats:?}");
}
