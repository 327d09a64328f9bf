//! Backtesting: runs logpipe's detection code (logpipe-detect, unchanged)
//! offline over a history and scores every row.
//!
//! Causality: rows are read, scored and written one at a time; a row is
//! scored with detector state learned from earlier rows only, and the
//! detectors learn from it afterwards. Nothing is read ahead.
//!
//! - CSV `timestamp,value` → one detector ([`series`]) → CSV
//!   `timestamp,value,score,flag,expected,lower,upper`.
//! - JSON lines of records → every detector ([`records`]) → JSON lines with
//!   the score, the flag and the reasons.

pub mod csv;
pub mod options;
pub mod records;
pub mod series;

use std::fmt;
use std::io::{BufRead, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

pub use options::{Command, HELP, InputFormat, Options, SeriesDetectorKind, parse_args};

use crate::csv::{CsvLine, quote};
use crate::records::{RecordDetectors, parse_record_line};
use crate::series::SeriesDetector;

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The command line is wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error("invalid rules in {path}: {source}")]
    Rules {
        path: String,
        source: logpipe_detect::DetectError,
    },
    /// An input line that cannot be used (without `--skip-bad`).
    #[error("line {line}: {reason} (use --skip-bad to skip such lines)")]
    BadLine { line: usize, reason: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// What a run did (printed as one line on stderr).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub format: Option<InputFormat>,
    pub rows: u64,
    pub flagged: u64,
    pub bad_lines: u64,
    /// JSON lines: records dropped from windowing as late.
    pub late: u64,
    /// JSON lines: alerts raised when windows closed.
    pub window_alerts: u64,
    /// JSON lines: alerts left after cooldown/dedup (one per incident).
    pub incidents: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backtest: {} rows, {} flagged, {} bad lines",
            self.rows, self.flagged, self.bad_lines
        )?;
        if self.format == Some(InputFormat::JsonLines) {
            write!(
                f,
                ", {} late records, {} window alerts at close, {} incidents after cooldown",
                self.late, self.window_alerts, self.incidents
            )?;
        }
        Ok(())
    }
}

/// Bad-line policy: stop at the first, or (`--skip-bad`) report and count.
struct BadLines<'a, E: Write> {
    skip: bool,
    count: u64,
    diagnostics: &'a mut E,
}

impl<E: Write> BadLines<'_, E> {
    fn handle(&mut self, line: usize, reason: String) -> Result<(), BacktestError> {
        if !self.skip {
            return Err(BacktestError::BadLine { line, reason });
        }
        self.count += 1;
        writeln!(self.diagnostics, "skipped line {line}: {reason}")?;
        Ok(())
    }
}

/// Reads lines (without the line ending) with their 1-based numbers; a line
/// that is not UTF-8 comes back as an error string for the bad-line policy.
fn next_line<R: BufRead>(
    input: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<Result<String, String>>, BacktestError> {
    buf.clear();
    if input.read_until(b'\n', buf)? == 0 {
        return Ok(None);
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(
        String::from_utf8(std::mem::take(buf)).map_err(|_| "line is not valid UTF-8".to_string()),
    ))
}

/// The format: as given, else `jsonl` when the first non-blank byte is `{`.
fn sniff_format<R: BufRead>(input: &mut R) -> Result<InputFormat, BacktestError> {
    let head = input.fill_buf()?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    Ok(if first == Some(&b'{') {
        InputFormat::JsonLines
    } else {
        InputFormat::Csv
    })
}

/// Runs a backtest: reads `input`, writes scored rows to `output`, reports
/// skipped lines to `diagnostics`.
pub fn run<R: BufRead, W: Write, E: Write>(
    options: &Options,
    mut input: R,
    mut output: W,
    diagnostics: &mut E,
) -> Result<Summary, BacktestError> {
    let format = match options.format {
        Some(f) => f,
        None => sniff_format(&mut input)?,
    };
    options.check_applicable(format)?;
    let mut bad = BadLines {
        skip: options.skip_bad,
        count: 0,
        diagnostics,
    };
    let mut summary = match format {
        InputFormat::Csv => run_series(options, &mut input, &mut output, &mut bad)?,
        InputFormat::JsonLines => run_records(options, &mut input, &mut output, &mut bad)?,
    };
    output.flush()?;
    summary.format = Some(format);
    summary.bad_lines = bad.count;
    Ok(summary)
}

fn fmt_number(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_default()
}

fn run_series<R: BufRead, W: Write, E: Write>(
    options: &Options,
    input: &mut R,
    output: &mut W,
    bad: &mut BadLines<'_, E>,
) -> Result<Summary, BacktestError> {
    let mut detector = SeriesDetector::from_options(options)?;
    let mut summary = Summary::default();
    writeln!(output, "timestamp,value,score,flag,expected,lower,upper")?;
    let mut buf = Vec::new();
    let mut line_no = 0;
    let mut seen_content = false;
    while let Some(line) = next_line(input, &mut buf)? {
        line_no += 1;
        let parsed = line.and_then(|text| csv::parse_line(line_no, &text, !seen_content));
        let row = match parsed {
            Ok(CsvLine::Blank) => continue,
            Ok(CsvLine::Header) => {
                seen_content = true;
                continue;
            }
            Ok(CsvLine::Row(row)) => row,
            Err(reason) => {
                seen_content = true;
                bad.handle(line_no, reason)?;
                continue;
            }
        };
        seen_content = true;
        let verdict = match detector.score_then_learn(&row) {
            Ok(v) => v,
            Err(reason) => {
                bad.handle(line_no, reason)?;
                continue;
            }
        };
        summary.rows += 1;
        summary.flagged += u64::from(verdict.flagged);
        writeln!(
            output,
            "{},{},{:.4},{},{},{},{}",
            quote(&row.timestamp_text),
            quote(&row.value_text),
            verdict.score,
            u8::from(verdict.flagged),
            fmt_number(verdict.expected),
            fmt_number(verdict.lower),
            fmt_number(verdict.upper),
        )?;
    }
    Ok(summary)
}

/// Why a record was flagged.
#[derive(Debug, Serialize)]
struct Reason<'a> {
    detector: &'a str,
    rule: Option<&'a str>,
    severity: &'a str,
    message: &'a str,
}

/// One output line for one record.
#[derive(Debug, Serialize)]
struct ScoredRecord<'a> {
    line: usize,
    event_time: String,
    entity: &'a str,
    source_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<&'a str>,
    message: &'a str,
    score: f64,
    flag: u8,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    late: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<Reason<'a>>,
}

fn run_records<R: BufRead, W: Write, E: Write>(
    options: &Options,
    input: &mut R,
    output: &mut W,
    bad: &mut BadLines<'_, E>,
) -> Result<Summary, BacktestError> {
    let mut detectors = RecordDetectors::from_options(options)?;
    let mut summary = Summary::default();
    // Lines without a time of their own take the previous record's time.
    let mut last_time: DateTime<Utc> = DateTime::UNIX_EPOCH;
    let mut buf = Vec::new();
    let mut line_no = 0;
    while let Some(line) = next_line(input, &mut buf)? {
        line_no += 1;
        let records = match line {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => parse_record_line(&text, options.log_format.as_deref(), last_time),
            Err(reason) => Err(reason),
        };
        let records = match records {
            Ok(r) => r,
            Err(reason) => {
                bad.handle(line_no, reason)?;
                continue;
            }
        };
        for record in &records {
            last_time = record.event_time;
            let verdict = detectors.score_then_learn(record);
            let flagged = !verdict.alerts.is_empty();
            summary.rows += 1;
            summary.flagged += u64::from(flagged);
            let out = ScoredRecord {
                line: line_no,
                event_time: record
                    .event_time
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                entity: &verdict.entity,
                source_type: record.source_type.as_str(),
                level: record.level.map(|l| l.as_str()),
                message: &record.message,
                score: (verdict.score * 10_000.0).round() / 10_000.0,
                flag: u8::from(flagged),
                late: verdict.late,
                reasons: verdict
                    .alerts
                    .iter()
                    .map(|a| Reason {
                        detector: &a.detector,
                        rule: a.rule.as_deref(),
                        severity: a.severity.as_str(),
                        message: &a.message,
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut *output, &out).map_err(std::io::Error::from)?;
            writeln!(output)?;
        }
    }
    detectors.flush();
    summary.late = detectors.dropped_late();
    summary.window_alerts = detectors.window_alerts;
    summary.incidents = detectors.incidents;
    Ok(summary)
}

#[cfg(test)]
mod tests;
