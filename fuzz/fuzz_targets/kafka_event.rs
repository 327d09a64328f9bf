//! The Lambda Kafka event: arbitrary bytes as the JSON payload, decoded
//! record by record; then the decoded records rebuilt into an event (as the
//! local event source mapping does) must decode to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logpipe_kafka::event::{EventRecord, KafkaEventPayload, build_event};
use logpipe_kafka::{EventSource, InputRecord};

fn decode(json: &[u8]) -> Option<Vec<InputRecord>> {
    let payload: KafkaEventPayload = serde_json::from_slice(json).ok()?;
    let listed: usize = payload.records.values().map(Vec::len).sum();
    let event = payload.decode();
    assert_eq!(event.records.len(), listed, "a record was lost or invented");
    Some(event.records)
}

fuzz_target!(|data: &[u8]| {
    let Some(records) = decode(data) else {
        return;
    };
    let key = |r: &InputRecord| (r.topic.clone(), r.partition, r.offset);
    assert!(
        records.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
        "records are not sorted"
    );
    for r in &records {
        if r.error.is_none() {
            assert!(
                r.offset >= 0 && r.partition >= 0,
                "clean record without coordinates"
            );
        }
    }
    let clean: Vec<EventRecord> = records
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| EventRecord {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            timestamp_type: "CREATE_TIME",
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        })
        .collect();
    let rebuilt = build_event(EventSource::SelfManaged, "localhost:9092", None, &clean);
    let bytes = serde_json::to_vec(&rebuilt).expect("a built event serializes");
    let again = decode(&bytes).expect("a built event decodes");
    // An undecodable key was dropped (key None, key_error set): rebuilt,
    // it is simply absent.
    let expected: Vec<InputRecord> = records
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| InputRecord {
            key_error: None,
            key_schema: None,
            value_schema: None,
            ..r.clone()
        })
        .collect();
    // Records sharing coordinates keep no defined order (the partitions come
    // out of a map), so compare as multisets.
    let sorted = |rs: Vec<&InputRecord>| {
        let mut v: Vec<String> = rs.iter().map(|r| format!("{r:?}")).collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(again.iter().collect()),
        sorted(expected.iter().collect()),
        "a record changed through build_event"
    );
});
