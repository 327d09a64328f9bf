//! Runs every line of `events/formats/<format>.log` through `parse`, sniffed
//! (no header) and with the format's `log-format` header, and reports per
//! format the share that got its specific source_type and the share whose
//! event_time came from the line. Both must be at least 95 %.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use logpipe_schema::{SourceType, parse_counted};

/// (file stem, header, expected type; `None` = CloudWatch: the inner types vary).
const FORMATS: &[(&str, &str, Option<SourceType>)] = &[
    ("syslog-file", "syslog-file", Some(SourceType::SyslogFile)),
    ("log4j", "log4j", Some(SourceType::Log4j)),
    ("python", "python", Some(SourceType::PythonLogging)),
    ("go-log", "go-log", Some(SourceType::GoLog)),
    ("slog", "slog", Some(SourceType::GoSlog)),
    ("logfmt", "logfmt", Some(SourceType::Logfmt)),
    ("logcat", "logcat", Some(SourceType::Logcat)),
    ("nginx-error", "nginx-error", Some(SourceType::NginxError)),
    (
        "apache-error",
        "apache-error",
        Some(SourceType::ApacheError),
    ),
    ("cef", "cef", Some(SourceType::Cef)),
    ("klog", "klog", Some(SourceType::Klog)),
    ("aws-alb", "aws-alb", Some(SourceType::AwsAlb)),
    ("aws-elb", "aws-elb", Some(SourceType::AwsElb)),
    ("vpc-flow", "vpc-flow", Some(SourceType::VpcFlow)),
    ("generic", "text", Some(SourceType::Generic)),
    ("cloudwatch", "cloudwatch", None),
];

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/formats")
}

/// A Kafka timestamp no corpus line carries, so "time from the line" is
/// "event_time differs from it".
fn kafka_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-02T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[derive(Default)]
struct Tally {
    lines: usize,
    records: usize,
    typed: usize,
    timed: usize,
    /// Records whose line carries a time at all (Python's default layout does not).
    with_time: usize,
    timed_with_time: usize,
    control: usize,
    errors: usize,
}

fn run(stem: &str, header: Option<&str>, want: Option<SourceType>) -> Tally {
    let text = std::fs::read_to_string(corpus_dir().join(format!("{stem}.log"))).unwrap();
    let mut t = Tally::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        t.lines += 1;
        match parse_counted(line, header, kafka_time()) {
            Ok(p) => {
                t.control += p.control_messages;
                for r in p.records {
                    t.records += 1;
                    let typed = match want {
                        Some(ty) => r.source_type == ty,
                        None => r.attributes.contains_key("log_group"),
                    };
                    t.typed += usize::from(typed);
                    let from_line = r.event_time != kafka_time();
                    t.timed += usize::from(from_line);
                    if carries_time(&r.raw) {
                        t.with_time += 1;
                        t.timed_with_time += usize::from(from_line);
                    }
                }
            }
            Err(e) => {
                eprintln!("{stem} ({header:?}): {e}: {line}");
                t.errors += 1;
            }
        }
    }
    t
}

/// Whether a line holds something that reads as a time: `hh:mm:ss` or a
/// run of at least ten digits (epoch seconds or milliseconds).
fn carries_time(line: &str) -> bool {
    let b = line.as_bytes();
    let hms = b.windows(8).any(|w| {
        w.iter().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        })
    });
    let mut run = 0;
    let epoch = b.iter().any(|c| {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        run >= 10
    });
    hms || epoch
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

#[test]
fn corpus_gets_specific_types_and_line_times() {
    let mut failures = Vec::new();
    eprintln!(
        "{:<14} {:>6} {:>6} {:>8} {:>7} {:>7} {:>10} {:>8} {:>6}",
        "format",
        "mode",
        "lines",
        "records",
        "type %",
        "time %",
        "timed-line %",
        "control",
        "errors"
    );
    for (stem, header, want) in FORMATS {
        for (mode, h) in [("sniff", None), ("header", Some(*header))] {
            let t = run(stem, h, *want);
            let (typed, all_timed) = (pct(t.typed, t.records), pct(t.timed, t.records));
            let timed = pct(t.timed_with_time, t.with_time);
            eprintln!(
                "{stem:<14} {mode:>6} {:>6} {:>8} {typed:>7.1} {all_timed:>7.1} {timed:>10.1} {:>8} {:>6}",
                t.lines, t.records, t.control, t.errors
            );
            assert!(t.lines >= 50, "{stem}: only {} lines", t.lines);
            if typed < 95.0 || timed < 95.0 || t.errors > 0 {
                failures.push(format!(
                    "{stem} {mode}: type {typed:.1} %, time {timed:.1} %, {} errors",
                    t.errors
                ));
            }
            // Every line is accounted for: records, control messages, or errors.
            assert!(t.records + t.control + t.errors >= t.lines, "{stem}");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
