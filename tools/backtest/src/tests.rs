//! Behaviour of whole runs on synthetic inputs.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

use super::*;
use logpipe_detect::calibrate::DEFAULT_ALERT_SCORE;

/// xorshift64* with Box–Muller: deterministic noise without a crate.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

struct Run {
    summary: Summary,
    output: String,
    diagnostics: String,
}

fn run_str(options: &Options, input: &str) -> Result<Run, BacktestError> {
    let mut output = Vec::new();
    let mut diagnostics = Vec::new();
    let summary = run(options, input.as_bytes(), &mut output, &mut diagnostics)?;
    Ok(Run {
        summary,
        output: String::from_utf8(output).unwrap(),
        diagnostics: String::from_utf8(diagnostics).unwrap(),
    })
}

fn csv_options(detector: SeriesDetectorKind) -> Options {
    Options {
        format: Some(InputFormat::Csv),
        detector: Some(detector),
        ..Options::default()
    }
}

/// (score, flag) per data row of a CSV output.
fn csv_verdicts(output: &str) -> Vec<(f64, bool)> {
    output
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].parse().unwrap(), f[3] == "1")
        })
        .collect()
}

/// `timestamp,value` lines, one a minute.
fn series_csv(values: &[f64]) -> String {
    let mut s = String::from("timestamp,value\n");
    for (i, v) in values.iter().enumerate() {
        let at = t0() + Duration::minutes(i as i64);
        writeln!(s, "{},{v:.3}", at.to_rfc3339()).unwrap();
    }
    s
}

/// N(100, 5²) noise with a spike at 1500 and a level shift (+40) from 1800.
fn noisy_series_with_spike_and_shift() -> Vec<f64> {
    let mut rng = Rng(11);
    (0..2000)
        .map(|i| {
            let base = if i >= 1800 { 140.0 } else { 100.0 };
            let spike = if i == 1500 { 60.0 } else { 0.0 };
            base + spike + 5.0 * rng.normal()
        })
        .collect()
}

#[test]
fn zscore_flags_spike_and_level_shift_and_stays_quiet_when_clean() {
    let values = noisy_series_with_spike_and_shift();
    let run = run_str(
        &csv_options(SeriesDetectorKind::ZScore),
        &series_csv(&values),
    )
    .unwrap();
    let v = csv_verdicts(&run.output);
    assert_eq!(v.len(), 2000);
    assert!(v[1500].0 > 0.5 && v[1500].1, "spike: {:?}", v[1500]);
    assert!(v[1800].1, "level shift: {:?}", v[1800]);
    // no alert during the 24-row warm-up (the scorer's window)
    assert!(v[..24].iter().all(|(s, f)| !f && *s == 0.0));
    // false positives on the clean stretch (rows 50..1500, 1501..1800):
    // bound 0.5 % of 1749 rows, i.e. at most 8 (z ≥ 4 two-sided on Gaussian
    // noise is ~0.006 % in theory; the EWMA variance estimate is noisy).
    let clean: Vec<_> = (50..1800).filter(|&i| i != 1500).map(|i| v[i]).collect();
    let fp = clean.iter().filter(|(_, f)| *f).count();
    assert!(fp * 200 <= clean.len(), "{fp} false positives");
    // flagged ⇒ the calibrated score reached the default alert score
    assert!(v.iter().all(|(s, f)| !f || *s >= DEFAULT_ALERT_SCORE));
    assert!(v.iter().all(|(s, _)| (0.0..=1.0).contains(s)));
    assert_eq!(
        run.summary.flagged as usize,
        v.iter().filter(|x| x.1).count()
    );
}

#[test]
fn zscore_drop_is_flagged_two_sided_but_not_with_log() {
    let mut rng = Rng(5);
    let mut values: Vec<f64> = (0..300).map(|_| 100.0 + 5.0 * rng.normal()).collect();
    // a three-row dip of 12 σ
    values[250..253].fill(40.0);
    let input = series_csv(&values);
    let v = csv_verdicts(
        &run_str(&csv_options(SeriesDetectorKind::ZScore), &input)
            .unwrap()
            .output,
    );
    assert!(v[250..253].iter().any(|x| x.1), "drop: {:?}", &v[250..253]);
    let log = Options {
        log_transform: true,
        ..csv_options(SeriesDetectorKind::ZScore)
    };
    let v = csv_verdicts(&run_str(&log, &input).unwrap().output);
    assert!(
        v[250..253].iter().all(|x| !x.1 && x.0 == 0.0),
        "--log is upper side only: {:?}",
        &v[250..253]
    );
}

/// Poisson-like counts per 5-minute window with a daily cycle.
fn counts_with_spike(weeks: i64, spike_at: usize) -> (String, usize) {
    let mut rng = Rng(3);
    let per_week = 7 * 24 * 12;
    let mut s = String::new();
    let n = (weeks * per_week) as usize;
    for i in 0..n {
        let at = t0() + Duration::minutes(5 * i as i64);
        let hour = (i % 288) as f64 / 12.0;
        let mu = 200.0 + 150.0 * ((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos();
        let mut c = (mu + rng.normal() * mu.sqrt()).round().max(0.0);
        if i == spike_at {
            c = mu * 3.0;
        }
        // epoch seconds, no header
        writeln!(s, "{},{c}", at.timestamp()).unwrap();
    }
    (s, per_week as usize)
}

#[test]
fn volume_flags_spike_with_band_and_clean_weeks_stay_quiet() {
    let spike_at = 3 * 2016 - 100;
    let (input, per_week) = counts_with_spike(3, spike_at);
    let run = run_str(&csv_options(SeriesDetectorKind::Volume), &input).unwrap();
    let v = csv_verdicts(&run.output);
    assert!(v[spike_at].1 && v[spike_at].0 > 0.5);
    // the expected band is written for every row
    let row: Vec<&str> = run
        .output
        .lines()
        .nth(spike_at + 1)
        .unwrap()
        .split(',')
        .collect();
    let (value, upper): (f64, f64) = (row[1].parse().unwrap(), row[6].parse().unwrap());
    assert!(value > upper, "{row:?}");
    // ≤ 1 % false positives over two clean weeks after a one-week warm-up
    // (the volume detector's own bound).
    let clean: Vec<_> = (per_week..v.len())
        .filter(|&i| i != spike_at)
        .map(|i| v[i])
        .collect();
    let fp = clean.iter().filter(|(_, f)| *f).count();
    assert!(
        fp * 100 <= clean.len(),
        "{fp} false positives of {}",
        clean.len()
    );
}

/// A gauge between 0.03 and 0.2 (or the same shifted below zero), one row a
/// minute, with a spike of 0.4 at row 1500.
fn small_series(offset: f64) -> String {
    let mut rng = Rng(17);
    let values: Vec<f64> = (0..2000)
        .map(|i| {
            let x = (0.1 + 0.02 * rng.normal()).clamp(0.03, 0.2);
            offset + if i == 1500 { 0.5 } else { x }
        })
        .collect();
    series_csv(&values)
}

#[test]
fn volume_and_zscore_score_small_and_negative_values_unrounded() {
    for detector in [SeriesDetectorKind::Volume, SeriesDetectorKind::ZScore] {
        for offset in [0.0, -1.0] {
            let run = run_str(&csv_options(detector), &small_series(offset)).unwrap();
            let v = csv_verdicts(&run.output);
            assert_eq!(v.len(), 2000, "{detector:?} {offset}");
            assert!(v[1500].1, "{detector:?} {offset}: spike {:?}", v[1500]);
            // the same bound as the N(100, 5²) series: ≤ 0.5 % of clean rows
            let fp = (50..2000).filter(|&i| i != 1500 && v[i].1).count();
            assert!(
                fp * 200 <= 1949,
                "{detector:?} {offset}: {fp} false positives"
            );
            // not rounded to whole numbers: the expected value is near 0.1
            let row: Vec<&str> = run.output.lines().nth(1501).unwrap().split(',').collect();
            let expected: f64 = row[4].parse().unwrap();
            assert!(
                (expected - (offset + 0.1)).abs() < 0.03,
                "{detector:?} {row:?}"
            );
        }
    }
}

#[test]
fn threshold_above_and_below() {
    let options = Options {
        format: Some(InputFormat::Csv),
        above: Some(40.0),
        below: Some(0.0),
        ..Options::default()
    };
    let run = run_str(&options, &series_csv(&[20.0, 41.0, 40.0, -1.0, 0.0])).unwrap();
    let flags: Vec<bool> = csv_verdicts(&run.output).iter().map(|v| v.1).collect();
    assert_eq!(flags, [false, true, false, true, false]);
    let first = run.output.lines().nth(1).unwrap();
    assert!(first.ends_with(",0.0000,0,,0.0000,40.0000"), "{first}");
}

/// Causality: the scores of the first k rows do not depend on what follows.
#[test]
fn scores_of_a_prefix_do_not_depend_on_later_rows() {
    let values = noisy_series_with_spike_and_shift();
    let full = series_csv(&values);
    let k = 1600;
    let prefix: String = full.lines().take(k + 1).map(|l| format!("{l}\n")).collect();
    for detector in [
        SeriesDetectorKind::ZScore,
        SeriesDetectorKind::Volume,
        SeriesDetectorKind::Threshold,
    ] {
        let options = Options {
            above: (detector == SeriesDetectorKind::Threshold).then_some(120.0),
            ..csv_options(detector)
        };
        let whole = run_str(&options, &full).unwrap().output;
        let part = run_str(&options, &prefix).unwrap().output;
        let whole_head: Vec<&str> = whole.lines().take(k + 1).collect();
        let part_lines: Vec<&str> = part.lines().collect();
        assert_eq!(part_lines.len(), k + 1);
        assert_eq!(whole_head, part_lines, "{detector:?}");
    }

    // The same for records: a verdict is final once the record's window is
    // closed; records of windows still open when the input ends are
    // written as `open` and only those may differ.
    let (lines, _) = app_lines_with_error_burst();
    let k = lines.len() - 150;
    let options = jsonl_options();
    let whole = run_str(&options, &lines.join("\n")).unwrap().output;
    let part = run_str(&options, &lines[..k].join("\n")).unwrap();
    assert_eq!(part.output.lines().count(), k);
    let judged: Vec<&str> = part
        .output
        .lines()
        .filter(|l| !l.contains(r#""open":true"#))
        .collect();
    let open = k - judged.len();
    // the cut falls in minute 38: its 50 lines, and minute 37 (the
    // watermark waits 30 s of lateness past its end), are still open
    assert_eq!(open as u64, part.summary.records.open_at_end);
    assert_eq!(open, 100 + 50);
    let whole_head: Vec<&str> = whole.lines().take(judged.len()).collect();
    assert_eq!(whole_head, judged);
    // and the burst is inside the prefix, so this compares flagged rows too
    assert!(judged.iter().any(|l| l.contains(r#""flag":1"#)));
}

#[test]
fn csv_header_epoch_millis_blank_lines_and_bad_line_numbers() {
    let options = csv_options(SeriesDetectorKind::ZScore);
    let input = "\n\ntimestamp,value\n1763805600000,1.5\n\n1763805660000,\"2\"\r\n";
    let run = run_str(&options, input).unwrap();
    assert_eq!(run.summary.rows, 2);
    let rows: Vec<&str> = run.output.lines().collect();
    assert_eq!(rows[0], "timestamp,value,score,flag,expected,lower,upper");
    assert!(
        rows[1].starts_with("1763805600000,1.5,0.0000,0,"),
        "{}",
        rows[1]
    );
    assert!(rows[2].starts_with("1763805660000,2,"), "{}", rows[2]);

    // a bad value on line 5 stops the run and names the line
    let bad = "timestamp,value\n1763805600,1\n1763805660,2\n\n1763805720,oops\n1763805780,4\n";
    let err = run_str(&options, bad).err().expect("bad line");
    assert!(
        matches!(err, BacktestError::BadLine { line: 5, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("line 5: value \"oops\" is not a number")
    );

    // --skip-bad counts and reports it, and keeps the other rows
    let skipping = Options {
        skip_bad: true,
        ..options.clone()
    };
    let run = run_str(&skipping, bad).unwrap();
    assert_eq!((run.summary.rows, run.summary.bad_lines), (3, 1));
    assert!(
        run.diagnostics
            .starts_with("skipped line 5: value \"oops\"")
    );
    assert!(
        run.summary
            .to_string()
            .contains("3 rows, 0 flagged, 1 bad lines")
    );

    // a header is only a header on the first line with content
    let err = run_str(&options, "1763805600,1\ntimestamp,value\n")
        .err()
        .unwrap();
    assert!(matches!(err, BacktestError::BadLine { line: 2, .. }));
}

fn jsonl_options() -> Options {
    Options {
        format: Some(InputFormat::JsonLines),
        ..Options::default()
    }
}

/// App JSON lines for `checkout`: 100 a minute for 40 minutes, one error a
/// minute, except minute 35 where every 3rd record is an error. Returns the
/// lines and the index of the first line of minute 35.
fn app_lines_with_error_burst() -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut burst_start = 0;
    for minute in 0..40 {
        if minute == 35 {
            burst_start = lines.len();
        }
        for i in 0..100 {
            let at = t0() + Duration::minutes(minute) + Duration::milliseconds(i * 600);
            let error = if minute == 35 { i % 3 == 0 } else { i == 50 };
            let (level, msg) = if error {
                ("ERROR", format!("payment failed order={i}"))
            } else {
                ("INFO", format!("request served in {i} ms"))
            };
            lines.push(format!(
                r#"{{"timestamp":"{}","level":"{level}","message":"{msg}","service":"checkout"}}"#,
                at.to_rfc3339()
            ));
        }
    }
    (lines, burst_start)
}

#[test]
fn error_burst_in_app_json_lines_is_flagged() {
    let (lines, burst_start) = app_lines_with_error_burst();
    let run = run_str(&jsonl_options(), &lines.join("\n")).unwrap();
    let out: Vec<serde_json::Value> = run
        .output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 4000);
    let flagged = |r: &serde_json::Value| r["flag"] == 1;
    // No row outside the burst minute is flagged (0 false positives over
    // 3,900 clean rows with a steady 1 % error rate).
    let outside = out
        .iter()
        .enumerate()
        .filter(|(i, r)| !(burst_start..burst_start + 100).contains(i) && flagged(r))
        .count();
    assert_eq!(outside, 0);
    // In the burst minute, exactly the error lines are flagged (the lines
    // of the incident), with the error-rate reason; the window's score
    // is the same for every line of it.
    let burst = &out[burst_start..burst_start + 100];
    for (i, r) in burst.iter().enumerate() {
        assert_eq!(flagged(r), i % 3 == 0, "burst line {i}");
    }
    assert_eq!(burst[51]["reasons"][0]["detector"], "error_rate");
    assert_eq!(burst[51]["entity"], "checkout");
    assert_eq!(run.summary.rows, 4000);
    assert_eq!(run.summary.flagged, 34);
    // one incident, as the function would publish it
    assert_eq!(run.summary.records.incidents, 1);
    // rows come out in input order
    let lines_out: Vec<u64> = out.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert!(lines_out.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn normalized_records_sensor_rules_and_raw_lines() {
    let sensor = logpipe_schema::LogRecord {
        event_time: t0(),
        source_type: logpipe_schema::SourceType::Sensor,
        service: Some("weather".into()),
        host: Some("st-042".into()),
        level: None,
        message: "reading".into(),
        http: None,
        metrics: [("temperature".to_string(), 41.5)].into_iter().collect(),
        attributes: serde_json::Map::new(),
        raw: String::new(),
        kafka: None,
    };
    let normalized = serde_json::to_string(&sensor).unwrap();
    let syslog = "<34>1 2026-11-02T00:00:05Z web-1 nginx - - - upstream timed out";
    let input = format!("{normalized}\n\n{syslog}\n");
    let run = run_str(&jsonl_options(), &input).unwrap();
    let out: Vec<serde_json::Value> = run
        .output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["reasons"][0]["rule"], "temperature_high");
    assert_eq!(out[0]["entity"], "st-042");
    assert_eq!(out[0]["flag"].as_u64(), Some(1));
    assert_eq!(
        (out[1]["line"].as_u64(), out[1]["flag"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(out[1]["source_type"], "syslog5424");

    // a normalized-looking record of the wrong shape is a bad line, by number
    let err = run_str(
        &jsonl_options(),
        &format!("{normalized}\n{{\"event_time\":\"x\",\"source_type\":\"sensor\"}}\n"),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, BacktestError::BadLine { line: 2, .. }),
        "{err}"
    );
}

#[test]
fn format_is_sniffed_when_not_given() {
    let run = run_str(
        &Options::default(),
        "{\"message\":\"hi\",\"timestamp\":1763805600}\n",
    )
    .unwrap();
    assert_eq!(run.summary.format, Some(InputFormat::JsonLines));
    let run = run_str(&Options::default(), "1763805600,1\n").unwrap();
    assert_eq!(run.summary.format, Some(InputFormat::Csv));
}

#[test]
fn late_records_are_marked_and_skip_window_detectors() {
    let line = |at: DateTime<Utc>, msg: &str| {
        format!(
            r#"{{"timestamp":"{}","level":"INFO","message":"{msg}","service":"api"}}"#,
            at.to_rfc3339()
        )
    };
    let input = [
        line(t0(), "a"),
        line(t0() + Duration::minutes(2), "b"),
        // the 00:00 window closed when the watermark passed 00:01:00
        line(t0() + Duration::seconds(10), "c"),
    ]
    .join("\n");
    let run = run_str(&jsonl_options(), &input).unwrap();
    let late: Vec<bool> = run
        .output
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["late"] == true)
        .collect();
    assert_eq!(late, [false, false, true]);
    assert_eq!(run.summary.records.late, 1);
    assert!(run.summary.to_string().contains("1 late records"));
}

/// Each entity runs on its own clock (the engine's, as in the function): a
/// service whose lines run two hours behind another's is not late by the
/// other's time, only by its own.
#[test]
fn each_entity_is_late_only_by_its_own_clock() {
    let line = |at: DateTime<Utc>, service: &str| {
        format!(
            r#"{{"timestamp":"{}","level":"INFO","message":"m","service":"{service}"}}"#,
            at.to_rfc3339()
        )
    };
    let behind = t0() - Duration::hours(2);
    let input = [
        line(t0(), "api"),
        line(t0() + Duration::minutes(2), "api"),
        line(behind, "web"),
        line(behind + Duration::minutes(2), "web"),
        // web's 00:00 window closed by web's own watermark, not api's
        line(behind + Duration::seconds(10), "web"),
    ]
    .join("\n");
    let run = run_str(&jsonl_options(), &input).unwrap();
    let late: Vec<bool> = run
        .output
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["late"] == true)
        .collect();
    assert_eq!(late, [false, false, false, false, true]);
    assert_eq!(run.summary.records.late, 1);
}

#[test]
fn lines_without_a_time_are_timed_visibly() {
    let input = "first untimed line\nsecond untimed line\n\
                 <34>1 2026-11-02T00:00:05Z web-1 nginx - - - upstream timed out\n\
                 \tat continuation of the line above\n";
    let times = |options: &Options| {
        let run = run_str(options, input).unwrap();
        let out: Vec<(String, bool)> = run
            .output
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["event_time"].as_str().unwrap().to_string(),
                    v["time"] == "assumed",
                )
            })
            .collect();
        (out, run.summary)
    };
    let (out, summary) = times(&jsonl_options());
    assert_eq!(
        out,
        [
            ("1970-01-01T00:00:00Z".to_string(), true),
            ("1970-01-01T00:00:01Z".to_string(), true),
            ("2026-11-02T00:00:05Z".to_string(), false),
            // a continuation line takes the previous record's time
            ("2026-11-02T00:00:05Z".to_string(), true),
        ]
    );
    assert_eq!(summary.records.untimed, 3);
    assert!(
        summary
            .to_string()
            .contains("3 lines without a time of their own")
    );

    // --start and --rate: untimed lines advance 1/rate s from the start,
    // and from the previous record once one had a time
    let options = Options {
        untimed_rate: Some(4.0),
        untimed_start: Some(t0()),
        ..jsonl_options()
    };
    let (out, _) = times(&options);
    let got: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        got,
        [
            "2026-11-02T00:00:00Z",
            "2026-11-02T00:00:00.250Z",
            "2026-11-02T00:00:05Z",
            "2026-11-02T00:00:05.250Z"
        ]
    );
}

/// Lines of the same second keep their own time (not marked assumed),
/// and records naming no service or host share the backtest's entity.
#[test]
fn same_second_lines_are_not_mistaken_for_untimed() {
    let line = "<34>1 2026-11-02T00:00:05Z web-1 nginx - - - upstream timed out";
    let run = run_str(&jsonl_options(), &format!("{line}\n{line}\n")).unwrap();
    assert!(!run.output.contains("assumed"));
    assert_eq!(run.summary.records.untimed, 0);
    let run = run_str(&jsonl_options(), "no time, no service\n").unwrap();
    let v: serde_json::Value = serde_json::from_str(run.output.trim()).unwrap();
    assert_eq!(v["entity"], crate::records::BACKTEST_TOPIC);
}
