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

use chrono::SecondsFormat;
use serde::Serialize;

pub use options::{Command, HELP, InputFormat, Options, SeriesDetectorKind, parse_args};

use crate::csv::{CsvLine, quote};
use crate::records::{RecordCounts, RecordRun, ScoredLine, UntimedClock, parse_record_line};
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
    /// JSON lines: what the engine did (late records, incidents, …).
    pub records: RecordCounts,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backtest: {} rows, {} flagged, {} bad lines",
            self.rows, self.flagged, self.bad_lines
        )?;
        if self.format == Some(InputFormat::JsonLines) {
            let c = &self.records;
            write!(
                f,
                ", {} late records, {} incidents (alerts the function would publish), \
                 {} windows of incidents already open, {} findings merged or suppressed, \
                 {} predictions",
                c.late, c.incidents, c.continuing, c.suppressed, c.predictions
            )?;
            if c.open_at_end > 0 {
                write!(
                    f,
                    ", {} records in windows still open at end of input (not judged as windows)",
                    c.open_at_end
                )?;
            }
            if c.untimed > 0 {
                write!(
                    f,
                    ", {} lines without a time of their own (timed as --rate/--start say)",
                    c.untimed
                )?;
            }
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
    /// `assumed` when the line had no time of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'static str>,
    entity: &'a str,
    source_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<&'a str>,
    message: &'a str,
    score: f64,
    flag: u8,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    late: bool,
    /// The window was still open at end of input (not judged as a window).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    open: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<Reason<'a>>,
}

fn write_scored<W: Write>(output: &mut W, s: &ScoredLine) -> Result<(), BacktestError> {
    let out = ScoredRecord {
        line: s.line,
        event_time: s
            .record
            .event_time
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        time: s.time_assumed.then_some("assumed"),
        entity: &s.entity,
        source_type: s.record.source_type.as_str(),
        level: s.record.level.map(|l| l.as_str()),
        message: &s.record.message,
        score: (s.score * 10_000.0).round() / 10_000.0,
        flag: u8::from(s.flagged),
        late: s.late,
        open: s.open,
        reasons: s
            .reasons
            .iter()
            .map(|a| Reason {
                detector: &a.detector,
                rule: a.rule.as_deref(),
                severity: a.severity,
                message: &a.message,
            })
            .collect(),
    };
    serde_json::to_writer(&mut *output, &out).map_err(std::io::Error::from)?;
    writeln!(output)?;
    Ok(())
}

fn run_records<R: BufRead, W: Write, E: Write>(
    options: &Options,
    input: &mut R,
    output: &mut W,
    bad: &mut BadLines<'_, E>,
) -> Result<Summary, BacktestError> {
    let mut run = RecordRun::from_options(options)?;
    let mut summary = Summary::default();
    let mut clock = UntimedClock::new(options.untimed_rate, options.untimed_start);
    let mut buf = Vec::new();
    let mut line_no = 0;
    let mut emit = |lines: Vec<ScoredLine>, summary: &mut Summary| {
        for s in &lines {
            summary.rows += 1;
            summary.flagged += u64::from(s.flagged);
            write_scored(output, s)?;
        }
        Ok::<(), BacktestError>(())
    };
    while let Some(line) = next_line(input, &mut buf)? {
        line_no += 1;
        let assumed = clock.assumed();
        let text = match line {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => text,
            Err(reason) => {
                bad.handle(line_no, reason)?;
                continue;
            }
        };
        let format = options.log_format.as_deref();
        let records = match parse_record_line(&text, format, assumed) {
            Ok(r) => r,
            Err(reason) => {
                bad.handle(line_no, reason)?;
                continue;
            }
        };
        // A record at exactly the assumed time may have that time of its
        // own (lines of the same second): parsing again with another
        // fallback tells.
        let probe = if records.iter().any(|r| r.event_time == assumed) {
            parse_record_line(&text, format, assumed + chrono::Duration::seconds(1)).ok()
        } else {
            None
        };
        for (i, record) in records.into_iter().enumerate() {
            let untimed = record.event_time == assumed
                && probe
                    .as_ref()
                    .and_then(|p| p.get(i))
                    .is_none_or(|other| other.event_time != assumed);
            clock.saw(record.event_time, untimed);
            run.push(line_no, record, untimed);
        }
        emit(run.ready(), &mut summary)?;
    }
    run.finish();
    emit(run.ready(), &mut summary)?;
    summary.records = run.counts.clone();
    Ok(summary)
}

#[cfg(test)]
mod tests;
