//! Routing, sniffing and robustness tests, plus helpers for the per-format
//! test modules.

use chrono::{DateTime, Utc};

use super::{Format, ParseError, parse};
use crate::record::{LogRecord, SourceType};

pub(crate) fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The Kafka timestamp used by every test.
pub(crate) fn fallback() -> DateTime<Utc> {
    utc("2024-05-01T00:00:00Z")
}

/// Parses a value that must give exactly one record.
#[track_caller]
pub(crate) fn parse1(value: &str, header: Option<&str>) -> LogRecord {
    match parse(value, header, fallback()) {
        Ok(mut v) if v.len() == 1 => v.remove(0),
        other => panic!("expected one record for {value:?} ({header:?}), got {other:?}"),
    }
}

/// The error class of a value that must fail.
#[track_caller]
pub(crate) fn err_class(value: &str, header: Option<&str>) -> &'static str {
    match parse(value, header, fallback()) {
        Err(e) => e.class(),
        Ok(v) => panic!("expected an error for {value:?} ({header:?}), got {v:?}"),
    }
}

#[allow(dead_code)]
const ALL_FORMATS_OLD: [Format; 12] = [
    Format::AppJson,
    Format::WebAccess,
    Format::SplunkHec,
    Format::SplunkKv,
    Format::Splunk,
    Format::Sap,
    Format::Sensor,
    Format::Batch,
    Format::Syslog,
    Format::Syslog5424,
    Format::Syslog3164,
    Format::Text,
];

/// A valid example per format: (value, header that names it, expected type).
const EXAMPLES: &[(&str, &str, SourceType)] = &[
    (
        r#"{"timestamp":"2024-05-01T12:00:00Z","level":"error","message":"payment failed","service":"billing","method":"GET","path":"/x","status":500,"duration_ms":87}"#,
        "json",
        SourceType::AppJson,
    ),
    (
        r#"203.0.113.9 - bob [10/Oct/2000:13:55:36 -0700] "GET /a?b=\"c\" HTTP/1.1" 404 12 "https://r/" "UA \"x\" é" 0.250"#,
        "access",
        SourceType::WebAccess,
    ),
    (
        r#"{"time":1700000000.5,"host":"h","source":"s","sourcetype":"st","event":{"msg":"m","status":200},"fields":{"f":1}}"#,
        "splunk-hec",
        SourceType::SplunkHec,
    ),
    (
        r#"2024-05-01T12:00:00.000Z host=web-1 source=app level=ERROR msg="pay \"x\" failed" status=500 duration_ms=87"#,
        "splunk-kv",
        SourceType::SplunkKv,
    ),
    (
        "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed (reason=1, type=A) ü",
        "sap",
        SourceType::SapSyslog,
    ),
    (
        r#"{"sensor_id":"st-042","timestamp":"2024-05-01T12:00:00Z","temperature":21.5,"humidity":55,"station":"x"}"#,
        "sensor",
        SourceType::Sensor,
    ),
    (
        "<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 [ex@1 iut=\"3\" a=\"\\\"]\"] \u{feff}'su root' failed",
        "syslog5424",
        SourceType::Syslog5424,
    ),
    (
        "<34>Oct 11 22:14:15 mymachine su[12]: 'su root' failed for lonvick",
        "syslog3164",
        SourceType::Syslog3164,
    ),
    (
        "Something WARN happened with ünïcødé 🚀 at [x]",
        "text",
        SourceType::Generic,
    ),
];

const BATCH_EXAMPLE: &str = r#"{"source":"agent","timestamp":1714564800,"batch_size":2,"data":[{"message":"a","level":"info"},"<13>Apr  5 01:02:03 h t: b"]}"#;

#[test]
fn header_names_round_trip() {
    for f in Format::ALL {
        assert_eq!(Format::from_header(f.as_str()), Some(f), "{f:?}");
        assert_eq!(
            Format::from_header(&f.as_str().to_uppercase()),
            Some(f),
            "{f:?}"
        );
    }
    for (name, f) in [
        ("json", Format::AppJson),
        ("Application/JSON", Format::AppJson),
        ("clf", Format::WebAccess),
        ("combined", Format::WebAccess),
        ("access", Format::WebAccess),
        ("nginx", Format::WebAccess),
        ("Apache", Format::WebAccess),
        ("splunk-raw", Format::SplunkKv),
        ("sap-syslog", Format::Sap),
        ("sap-audit", Format::Sap),
        ("rfc5424", Format::Syslog5424),
        ("rfc3164", Format::Syslog3164),
        ("generic", Format::Text),
        ("plain", Format::Text),
        (" text ", Format::Text),
    ] {
        assert_eq!(Format::from_header(name), Some(f), "{name}");
    }
    for name in [
        "",
        "xml",
        "jsonl",
        "syslog-ng",
        "text/plain",
        "a-very-long-header-value-that-is-not-a-format",
    ] {
        assert_eq!(Format::from_header(name), None, "{name}");
    }
}

#[test]
fn unknown_header_is_an_error() {
    for h in ["xml", "", "csv"] {
        let e = parse("hello", Some(h), fallback()).unwrap_err();
        assert_eq!(e.class(), "unknown_format");
        assert!(matches!(e, ParseError::UnknownFormat(_)));
    }
}

#[test]
fn every_example_is_sniffed_and_honours_its_header() {
    for (value, header, ty) in EXAMPLES {
        let sniffed = parse1(value, None);
        assert_eq!(sniffed.source_type, *ty, "sniffing {value}");
        assert_eq!(sniffed.raw, *value);
        assert!(sniffed.kafka.is_none());
        let declared = parse1(value, Some(header));
        assert_eq!(declared, sniffed, "{header}");
    }
    assert_eq!(parse(BATCH_EXAMPLE, None, fallback()).unwrap().len(), 2);
    assert_eq!(
        parse(BATCH_EXAMPLE, Some("batch"), fallback())
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn generic_headers_split_by_content() {
    let hec = r#"{"host":"h","event":"x"}"#;
    assert_eq!(
        parse1(hec, Some("splunk")).source_type,
        SourceType::SplunkHec
    );
    assert_eq!(
        parse1("a=1 b=2", Some("splunk")).source_type,
        SourceType::SplunkKv
    );
    assert_eq!(
        parse1("<34>1 - - - - - -", Some("syslog")).source_type,
        SourceType::Syslog5424
    );
    assert_eq!(
        parse1("<34>Oct 11 22:14:15 h t: m", Some("syslog")).source_type,
        SourceType::Syslog3164
    );
}

#[test]
fn header_is_strict() {
    // Each example under every other text-format header fails as invalid_line,
    // under JSON headers as invalid_json / schema_violation; never silently generic.
    let app = EXAMPLES[0].0;
    let clf = EXAMPLES[1].0;
    assert_eq!(err_class(clf, Some("json")), "invalid_json");
    assert_eq!(err_class(clf, Some("sap")), "invalid_line");
    assert_eq!(err_class(clf, Some("syslog")), "invalid_line");
    assert_eq!(err_class(app, Some("web-access")), "invalid_line");
    assert_eq!(err_class(app, Some("sensor")), "schema_violation");
    assert_eq!(err_class(app, Some("splunk-hec")), "schema_violation");
    assert_eq!(err_class(app, Some("batch")), "schema_violation");
    assert_eq!(err_class(EXAMPLES[5].0, Some("json")), "schema_violation");
}

#[test]
fn json_sniffing_rules() {
    // Invalid JSON starting with `{` is never generic text.
    assert_eq!(err_class(r#"{"message": "truncat"#, None), "invalid_json");
    assert_eq!(err_class("{not json}", None), "invalid_json");
    // Valid JSON that is not an object.
    for v in ["[1,2,3]", "42", "\"just a string\"", "null", "true", "-1.5"] {
        assert_eq!(err_class(v, None), "schema_violation", "{v}");
    }
    // Text that merely starts like JSON stays text.
    assert_eq!(
        parse1("[INFO] started", None).source_type,
        SourceType::Generic
    );
    assert_eq!(parse1("42 bottles", None).source_type, SourceType::Generic);
    // Classification of objects.
    assert_eq!(
        parse1(r#"{"data":[{"msg":"x"}]}"#, None).source_type,
        SourceType::AppJson
    );
    assert_eq!(
        parse1(r#"{"data":"not a batch","msg":"x"}"#, None).source_type,
        SourceType::AppJson
    );
    assert_eq!(
        parse1(r#"{"event":"x","sourcetype":"s"}"#, None).source_type,
        SourceType::SplunkHec
    );
    assert_eq!(
        parse1(r#"{"event":"x","message":"app event field"}"#, None).source_type,
        SourceType::AppJson
    );
    assert_eq!(
        parse1(r#"{"sensor_id":"a","temperature":1}"#, None).source_type,
        SourceType::Sensor
    );
    // Leading BOM and surrounding whitespace are ignored; raw is untouched.
    let v = "\u{feff} {\"msg\":\"x\"}\r\n";
    let r = parse1(v, None);
    assert_eq!(r.source_type, SourceType::AppJson);
    assert_eq!(r.raw, v);
}

/// Characters likely to confuse the hand-written parsers.
const NASTY: [&str; 12] = [
    "\"", "\\", "[", "]", " ", "=", "{", "<", ">", "é", "\u{feff}", "🚀",
];

fn all_inputs() -> Vec<String> {
    let mut v: Vec<String> = EXAMPLES.iter().map(|(s, _, _)| (*s).to_owned()).collect();
    v.push(BATCH_EXAMPLE.to_owned());
    v
}

fn check_no_panic(value: &str) {
    let _ = parse(value, None, fallback());
    for f in Format::ALL {
        let _ = parse(value, Some(f.as_str()), fallback());
    }
}

#[test]
fn truncations_never_panic() {
    for input in all_inputs() {
        for (i, _) in input.char_indices().chain([(input.len(), ' ')]) {
            check_no_panic(&input[..i]);
            check_no_panic(&input[i..]);
        }
    }
}

#[test]
fn mutations_never_panic() {
    for input in all_inputs() {
        let positions: Vec<usize> = input.char_indices().map(|(i, _)| i).collect();
        for &i in &positions {
            let rest = &input[i..];
            let after = rest.char_indices().nth(1).map_or("", |(j, _)| &rest[j..]);
            for nasty in NASTY {
                // Replace the char at i, and insert before it.
                check_no_panic(&format!("{}{nasty}{after}", &input[..i]));
                check_no_panic(&format!("{}{nasty}{rest}", &input[..i]));
            }
        }
    }
}

#[test]
fn extreme_values_never_panic() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    for v in [
        deep.as_str(),
        deep_obj.as_str(),
        r#"{"message":"x","timestamp":1e308}"#,
        r#"{"message":"x","timestamp":-1e308}"#,
        r#"{"message":"x","timestamp":18446744073709551615}"#,
        r#"{"message":"x","timestamp":"9999999999999999999999"}"#,
        r#"{"message":"x","status":1e400}"#,
        r#"{"sensor_id":18446744073709551615,"temperature":1}"#,
        "<191>Feb 29 00:00:00 h t: leap day in a non-leap year",
        "<7>1 9999-12-31T23:59:59Z - - - - -",
        "1.1.1.1 - - [31/Dec/9999:23:59:59 -2359] \"GET / HTTP/1.1\" 200 99999999999999999999999",
        "\u{0}\u{1}\u{7f}",
    ] {
        check_no_panic(v);
    }
    let far = DateTime::<Utc>::MAX_UTC;
    let _ = parse("<34>Dec 31 23:59:59 h t: m", None, far);
    let _ = parse("<34>Jan  1 00:00:00 h t: m", None, DateTime::<Utc>::MIN_UTC);
}

/// Found by tests/storable.rs: a `:60` second was stored as the next minute.
#[test]
fn a_leap_second_is_the_last_microsecond_of_its_minute() {
    let fallback = DateTime::from_timestamp(1_600_000_000, 0).unwrap();
    let rows = parse("<0>Jan  1 00:00:60 - 0: x", None, fallback).unwrap();
    let t = rows[0].event_time;
    assert_eq!(t.format("%M:%S%.6f").to_string(), "00:59.999999");
}

/// Found by fuzz/fuzz_targets/parse.rs: a time-only line read with a
/// fallback time at either end of chrono's range panicked on overflow.
#[test]
fn time_only_lines_at_the_ends_of_time_do_not_panic() {
    let crash = "21:29:10 host CEF:0|Security|threatmfatalMar 16 Mar 16 08:41:51 combo";
    for fallback in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
        for line in [crash, "23:59:59.999999999 worker started", "00:00:00,5 x"] {
            let rows = parse(line, None, fallback).unwrap();
            assert_eq!(rows.len(), 1);
        }
    }
}
