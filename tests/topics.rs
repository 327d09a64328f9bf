//! The topic catalog applied to a real broker.

use logpipe_kafka::admin::apply_catalog;
use logpipe_kafka::rdkafka::ClientConfig;
use logpipe_schema::catalog::TopicStatus;
use logpipe_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_twice_changes_nothing_and_fewer_partitions_are_drift() {
    // The stack applies the catalog at start: everything exists now.
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let catalog = logpipe_devstack::load_catalog().unwrap();
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", stack.bootstrap_servers());

    let again = apply_catalog(&config, &catalog, Some(1)).await.unwrap();
    assert!(
        again
            .iter()
            .all(|s| matches!(s, TopicStatus::Unchanged { .. })),
        "{again:?}"
    );
    assert!(logpipe_devstack::describe(&again).ends_with("no changes"));

    // A catalog that wants more partitions than the broker has: drift,
    // reported, nothing changed; a new topic in it is created.
    let mut wants_more = catalog.clone();
    wants_more
        .topics
        .iter_mut()
        .find(|t| t.name == "alerts")
        .unwrap()
        .partitions = 12;
    let mut extra = wants_more.topics[0].clone();
    extra.name = "extra-topic".into();
    wants_more.topics.push(extra);
    let report = apply_catalog(&config, &wants_more, Some(1)).await.unwrap();
    let alerts = report
        .iter()
        .find(|s| matches!(s, TopicStatus::Drift { name, .. } if name == "alerts"));
    let Some(TopicStatus::Drift { differences, .. }) = alerts else {
        panic!("alerts not reported as drift: {report:?}")
    };
    assert!(
        differences.iter().any(|d| d.contains("fewer")),
        "{differences:?}"
    );
    assert!(report.contains(&TopicStatus::Created {
        name: "extra-topic".into()
    }));
    assert!(!logpipe_devstack::describe(&report).contains("no changes"));
    // Drift is reported, never "fixed": the broker still has its partitions.
    let third = apply_catalog(&config, &wants_more, Some(1)).await.unwrap();
    assert!(
        third.contains(&TopicStatus::Unchanged {
            name: "extra-topic".into()
        }),
        "{third:?}"
    );
    assert!(
        third
            .iter()
            .any(|s| matches!(s, TopicStatus::Drift { name, .. } if name == "alerts"))
    );
}
