//! Every line of the format corpus (`events/formats/*.log`: public examples
//! of each format logpipe parses) through a real broker and the ingest
//! function into PostgreSQL, sniffed (no `log-format` header, as most
//! producers send them): each file's rows get their own source type and,
//! where the line has a time, the line's time. CloudWatch envelopes expand
//! into one row per log event and their control messages are counted, not
//! stored. A user pattern from `LOG_PATTERNS` reads a format no parser knows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ingest::IngestConfig;
use logpipe_kafka::event::EventSource;
use logpipe_schema::{Patterns, SourceType, parse_counted};
use logpipe_tests::*;

const TOPIC: &str = "log-ingestion";

/// (file stem, the source type its rows must get; `None` = CloudWatch, whose
/// rows take the inner events' types). The generic file is left out: its
/// lines are generic by definition (the corpus test in shared/schema checks
/// their times).
const FILES: &[(&str, Option<SourceType>)] = &[
    ("syslog-file", Some(SourceType::SyslogFile)),
    ("log4j", Some(SourceType::Log4j)),
    ("python", Some(SourceType::PythonLogging)),
    ("go-log", Some(SourceType::GoLog)),
    ("slog", Some(SourceType::GoSlog)),
    ("logfmt", Some(SourceType::Logfmt)),
    ("logcat", Some(SourceType::Logcat)),
    ("nginx-error", Some(SourceType::NginxError)),
    ("apache-error", Some(SourceType::ApacheError)),
    ("cef", Some(SourceType::Cef)),
    ("klog", Some(SourceType::Klog)),
    ("aws-alb", Some(SourceType::AwsAlb)),
    ("aws-elb", Some(SourceType::AwsElb)),
    ("vpc-flow", Some(SourceType::VpcFlow)),
    ("cloudwatch", None),
];

/// Python's default `logging` layout (`LEVEL:logger:message`) has no time.
const UNTIMED: &[&str] = &["python"];

const PATTERN: &str = r#"[{"name":"door","regex":"^(?P<time>\\d{8}T\\d{6}) DOOR (?P<host>\\S+) (?P<level>\\w+) (?P<message>.*)$","time_format":"%Y%m%dT%H%M%S"}]"#;
const DOOR_LINES: &[&str] = &[
    "20240501T120000 DOOR gate-3 ERROR badge refused",
    "20240501T120005 DOOR gate-3 INFO badge accepted",
];

fn lines(stem: &str) -> Vec<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../events/formats/{stem}.log"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_format_is_stored_with_its_type_and_time() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();

    let mut input = Vec::new();
    // What the library says a CloudWatch line holds (unit-tested there):
    // the rows and control messages the pipeline must account for.
    let (mut cloudwatch_rows, mut control) = (0i64, 0usize);
    for (stem, _) in FILES {
        for line in lines(stem) {
            if *stem == "cloudwatch" {
                let parsed = parse_counted(&line, None, chrono::Utc::now()).unwrap();
                cloudwatch_rows += parsed.records.len() as i64;
                control += parsed.control_messages;
            }
            input.push(Produce::text(stem, &line));
        }
    }
    assert!(control > 0, "the corpus holds a CloudWatch control message");
    for line in DOOR_LINES {
        input.push(Produce::text("door", line));
    }
    produce(&bootstrap, TOPIC, &input).await.unwrap();
    let records = consume(&bootstrap, TOPIC, "formats-consumer", input.len())
        .await
        .unwrap();
    let event = event(&records, EventSource::Msk, &bootstrap);
    let config = IngestConfig {
        message_timeout: Duration::from_secs(5),
        report_batch_item_failures: true,
        ..IngestConfig::from_lookup(|k| (k == "LOG_PATTERNS").then(|| PATTERN.into())).unwrap()
    };
    assert_eq!(
        config.limits.patterns.as_ref(),
        &Patterns::from_json(PATTERN).unwrap()
    );
    let handler = ingestor(&stack, config).await.unwrap();
    let out = invoke(&handler, &event).await.expect("the batch succeeds");
    let s = &out.summary;
    assert_eq!(s.records_in, input.len());
    assert_eq!(s.records_stored, input.len(), "every line stored: {s:?}");
    assert_eq!(s.records_dead_lettered + s.records_retry, 0, "{s:?}");
    assert_eq!(s.control_messages, control, "{s:?}");

    let db = sql(&stack.database_url()).await.unwrap();
    let mut failures = Vec::new();
    for (stem, want) in FILES {
        let Some(want) = want else { continue };
        let n = lines(stem).len() as i64;
        // (CloudWatch events of the same format are counted below.)
        let q = "SELECT count(*), count(*) FILTER (WHERE event_time <> kafka_timestamp) \
                 FROM logs WHERE source_type = $1 AND NOT attributes ? 'log_group'";
        let row = db.query_one(q, &[&want.as_str()]).await.unwrap();
        let (typed, timed): (i64, i64) = (row.get(0), row.get(1));
        if typed != n {
            failures.push(format!("{stem}: {typed} of {n} rows are {}", want.as_str()));
        }
        if !UNTIMED.contains(stem) && timed != n {
            failures.push(format!(
                "{stem}: {timed} of {n} rows have the line's own time"
            ));
        }
    }
    // CloudWatch: one row per log event (they carry the log group).
    let grouped = count(
        &db,
        "SELECT count(*) FROM logs WHERE attributes ? 'log_group'",
    )
    .await;
    if grouped != cloudwatch_rows {
        failures.push(format!(
            "cloudwatch: {grouped} rows, expected {cloudwatch_rows}"
        ));
    }
    // The user pattern: host, level and the line's own time.
    let door = db
        .query(
            "SELECT host, level, event_time::text FROM logs WHERE raw LIKE '% DOOR %' ORDER BY event_time",
            &[],
        )
        .await
        .unwrap();
    let door: Vec<(Option<String>, Option<String>, String)> = door
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(door.len(), 2, "{door:?}");
    assert_eq!(door[0].0.as_deref(), Some("gate-3"));
    assert!(door[0].2.starts_with("2024-05-01 12:00:00"), "{door:?}");
    assert!(failures.is_empty(), "{failures:#?}");

    // Nothing stored twice on a replay; control messages are not rows.
    let types: BTreeMap<String, i64> = db
        .query("SELECT source_type, count(*) FROM logs GROUP BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let total: i64 = types.values().sum();
    let again = invoke(&handler, &event).await.expect("replay succeeds");
    assert_eq!(again.summary.records_duplicate, input.len());
    assert_eq!(
        count(&db, "SELECT count(*) FROM logs").await,
        total,
        "{types:?}"
    );
}
