//! The ingest classifier: one Kafka record → rows or a poison verdict.
//!
//! Input layout (so seeds stay readable and mutations hit each part):
//! `log-format header\nservice header\ntimestamp ms\nvalue`, where a header
//! line of `-` means no such header, and an input without a fourth line is
//! a tombstone (null value). Header bytes need not be UTF-8.
#![no_main]

use chrono::Datelike;
use ingest::classify::{Limits, Verdict, classify_all};
use libfuzzer_sys::fuzz_target;
use logpipe_fuzz::{check_json_round_trip, has_nul};
use logpipe_kafka::InputRecord;

fn record(data: &[u8]) -> InputRecord {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let mut headers = Vec::new();
    for name in ["log-format", "service"] {
        match parts.next() {
            Some(b"-") | None => {}
            Some(v) => headers.push((name.to_string(), v.to_vec())),
        }
    }
    let timestamp_ms = parts
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    InputRecord {
        topic: "log-ingestion".into(),
        partition: 3,
        offset: 42,
        timestamp_ms,
        key: None,
        value: parts.next().map(<[u8]>::to_vec),
        headers,
        error: None,
        key_error: None,
        key_schema: None,
        value_schema: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = record(data);
    let verdicts = classify_all(std::slice::from_ref(&input), &Limits::default());
    assert_eq!(verdicts.len(), 1);
    match &verdicts[0] {
        Verdict::Rows(rows) => {
            assert!(!rows.is_empty());
            for (seq, row) in rows.iter().enumerate() {
                // What ingest stores must fit PostgreSQL: no NUL, and a time
                // within timestamptz (4713 BC to 294276 AD).
                assert!(!has_nul(row), "a stored row holds a NUL: {row:?}");
                assert!(row.event_time.year() >= -4712, "{}", row.event_time);
                let k = row.kafka.as_ref().expect("classify sets the coordinates");
                assert_eq!((k.offset, k.seq), (42, seq as i32));
                check_json_round_trip(row);
            }
        }
        Verdict::Poison(p) => {
            assert!(!p.class.is_empty());
        }
        Verdict::Control => {}
    }
});
