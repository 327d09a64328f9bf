//! Command line: a small hand-rolled parser (a dozen options do not need clap).

use std::path::PathBuf;

use crate::BacktestError;

pub const HELP: &str = "\
logpipe-backtest — run logpipe's detectors offline over a history and score every row

USAGE:
    logpipe-backtest [--format csv|jsonl] [--detector zscore|volume|threshold] [OPTIONS] INPUT [-o OUTPUT]

INPUT is a file or `-` for stdin; OUTPUT defaults to stdout. A summary line
(rows, flagged, bad lines) goes to stderr.

Scores are causal: row t is scored with detector state learned from rows
before it only, then the detectors learn from row t.

FORMATS (default: from the extension .csv / .jsonl .ndjson .json .log,
otherwise `jsonl` when the first line starts with `{`, else `csv`):
  csv    `timestamp,value` per line, header optional, blank lines ignored;
         timestamps RFC 3339 (zone-less = UTC) or epoch seconds / milliseconds.
         Output: timestamp,value,score,flag,expected,lower,upper
  jsonl  one record per line: a normalized LogRecord (JSON with event_time and
         source_type) or a raw log line in any format logpipe parses (app JSON,
         web access, syslog, Splunk, SAP, sensor, batch envelopes, text).
         Output: one JSON object per record with score, flag and, when
         flagged, the reasons (detector, rule, severity, message).

CSV DETECTORS (--detector; default zscore, or threshold when --above/--below/--rules given):
  zscore     the calibrated scorer behind the outlier and volume detectors
             (median/MAD level, spread change, hour-of-day/week profile),
             two-sided; with --log, upper side on ln(1+x) (right-skewed values)
  volume     the volume detector (same scorer, plus its z band); values that
             are not whole non-negative numbers switch off the count floors
  threshold  static rules: --above X, --below Y, or --rules FILE on field `value`

OPTIONS:
  --format csv|jsonl      input format (see above)
  --detector NAME         CSV detector (see above)
  --threshold Z           zscore: smallest robust |z| that may alert (default:
                          none, the calibrated score alone decides); volume:
                          the band's half-width in robust sigma (default 3);
                          JSON lines: the outlier z (default 4)
  --window N              CSV: zscore: rows behind the median/MAD level and the
                          warm-up (default 24); volume: warm-up rows (default 30)
                          JSON lines: window width in seconds (default 60)
  --min-deviation X       smallest |value - expected| that may alert
                          (default 0)
  --log                   zscore on ln(1+x), upper side only
  --no-seasonality        zscore/volume: no hour-of-day/week profile
  --above X, --below Y    threshold detector bounds (value > X critical, < Y warning)
  --rules FILE            threshold rules, the DETECT_RULES JSON format
                          (JSON lines default: the sensor rules)
  --lateness SECS         JSON lines: allowed lateness of event time (default 30)
  --log-format NAME       JSON lines: parse raw lines as this format (the
                          log-format header values), instead of sniffing
  --field NAME            JSON lines: numeric field for outliers (default latency_ms)
  --drain-warmup N        JSON lines: messages before new templates alert (default 1000)
  --rate N                JSON lines: a line without a time of its own is placed
                          1/N s after the previous record (default: at the
                          previous record's time, as continuation lines are)
  --start TIME            JSON lines: where lines without a time start when no
                          earlier line had one (RFC 3339; default
                          1970-01-01T00:00:00Z, at --rate or 1 line/s)
  --skip-bad              skip unparseable lines (each reported on stderr and
                          counted) instead of stopping at the first one
  -o, --output FILE       write here instead of stdout
  -h, --help              this text

JSON LINES: the detect function's engine, offline. The same composition of
  every detector (threshold rules, outliers, new templates, error / 5xx rate,
  volume), the same defaults, cooldown and per-window merge into one alert per
  incident, the same entities; windows close when the entity's watermark
  (its newest event time - lateness) passes their end. A line is written once
  its window is closed (input order is kept): `score` is its window's
  calibrated anomaly score, `flag` marks lines of an incident (the alert's
  sample records; the error lines of an error-rate incident, the 5xx lines of
  a 5xx one, every line of a volume one) with the incident in `reasons`.
  Windows still open at end of input are not judged as windows (`open`: true;
  only per-record findings flag them), so a file that ends mid-window does
  not read as a volume drop. Lines without a time of their own are marked
  `time: assumed` and timed as --rate / --start say.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Csv,
    JsonLines,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesDetectorKind {
    ZScore,
    Volume,
    Threshold,
}

/// Everything a run needs except the streams.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `None`: sniff from the first line.
    pub format: Option<InputFormat>,
    /// `None`: zscore, or threshold when `above`/`below` is set.
    pub detector: Option<SeriesDetectorKind>,
    pub threshold: Option<f64>,
    pub window: Option<u64>,
    pub min_deviation: Option<f64>,
    pub log_transform: bool,
    pub seasonality: bool,
    pub above: Option<f64>,
    pub below: Option<f64>,
    /// Contents of `--rules FILE`, read at parse time so errors name the file.
    pub rules: Option<(PathBuf, String)>,
    pub lateness_secs: Option<i64>,
    pub log_format: Option<String>,
    pub field: Option<String>,
    pub drain_warmup: Option<u64>,
    /// Lines per second for lines without a time of their own.
    pub untimed_rate: Option<f64>,
    /// Where untimed lines start when no earlier line had a time.
    pub untimed_start: Option<chrono::DateTime<chrono::Utc>>,
    pub skip_bad: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: None,
            detector: None,
            threshold: None,
            window: None,
            min_deviation: None,
            log_transform: false,
            seasonality: true,
            above: None,
            below: None,
            rules: None,
            lateness_secs: None,
            log_format: None,
            field: None,
            drain_warmup: None,
            untimed_rate: None,
            untimed_start: None,
            skip_bad: false,
        }
    }
}

impl Options {
    pub fn series_detector(&self) -> SeriesDetectorKind {
        match self.detector {
            Some(d) => d,
            None if self.above.is_some() || self.below.is_some() || self.rules.is_some() => {
                SeriesDetectorKind::Threshold
            }
            None => SeriesDetectorKind::ZScore,
        }
    }

    /// Rejects options that would be silently ignored for `format` (the
    /// format may only be known once the input is sniffed).
    pub fn check_applicable(&self, format: InputFormat) -> Result<(), BacktestError> {
        let given = |set: bool, name: &'static str| set.then_some(name);
        let (misplaced, applies_to) = match format {
            InputFormat::JsonLines => (
                [
                    given(self.detector.is_some(), "--detector"),
                    given(self.above.is_some(), "--above"),
                    given(self.below.is_some(), "--below"),
                    given(self.min_deviation.is_some(), "--min-deviation"),
                    given(self.log_transform, "--log"),
                    given(!self.seasonality, "--no-seasonality"),
                ],
                "CSV",
            ),
            InputFormat::Csv => (
                [
                    given(self.lateness_secs.is_some(), "--lateness"),
                    given(self.log_format.is_some(), "--log-format"),
                    given(self.field.is_some(), "--field"),
                    given(self.drain_warmup.is_some(), "--drain-warmup"),
                    given(self.untimed_rate.is_some(), "--rate"),
                    given(self.untimed_start.is_some(), "--start"),
                ],
                "JSON-lines",
            ),
        };
        if format == InputFormat::Csv {
            use SeriesDetectorKind::*;
            let detector = self.series_detector();
            let bounds = self.above.is_some() || self.below.is_some() || self.rules.is_some();
            let wrong = [
                (
                    bounds && detector != Threshold,
                    "--above/--below/--rules",
                    "threshold",
                ),
                (self.log_transform && detector != ZScore, "--log", "zscore"),
                (
                    !self.seasonality && detector == Threshold,
                    "--no-seasonality",
                    "zscore or volume",
                ),
            ];
            if let Some((_, name, wants)) = wrong.into_iter().find(|w| w.0) {
                return Err(usage(format!("{name} only applies to --detector {wants}")));
            }
        }
        match misplaced.into_iter().flatten().next() {
            Some(name) => Err(usage(format!("{name} only applies to {applies_to} input"))),
            None => Ok(()),
        }
    }
}

/// What the command line asks for.
// Built once per process: the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    Run {
        options: Options,
        /// `None`: stdin.
        input: Option<PathBuf>,
        /// `None`: stdout.
        output: Option<PathBuf>,
    },
}

fn usage(msg: impl Into<String>) -> BacktestError {
    BacktestError::Usage(msg.into())
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, BacktestError> {
    v.trim()
        .parse()
        .map_err(|_| usage(format!("{flag} expects a number, got {v:?}")))
}

fn finite(flag: &str, v: &str) -> Result<f64, BacktestError> {
    let x: f64 = number(flag, v)?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(usage(format!("{flag} expects a finite number, got {v:?}")))
    }
}

fn format_from_extension(path: &std::path::Path) -> Option<InputFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Some(InputFormat::Csv),
        "jsonl" | "ndjson" | "json" | "log" => Some(InputFormat::JsonLines),
        _ => None,
    }
}

/// Parses the arguments after the program name. `--rules FILE` is read here.
pub fn parse_args(args: &[String]) -> Result<Command, BacktestError> {
    let mut options = Options::default();
    let mut input: Option<String> = None;
    let mut output: Option<PathBuf> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        // `--flag=value` and `--flag value` are both accepted.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<String, BacktestError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args
                .get(i)
                .cloned()
                .ok_or_else(|| usage(format!("{name} needs a value")))?;
            i += 1;
            Ok(v)
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--format" => {
                options.format = Some(match value(flag)?.as_str() {
                    "csv" => InputFormat::Csv,
                    "jsonl" | "json" | "ndjson" => InputFormat::JsonLines,
                    other => return Err(usage(format!("unknown --format {other:?} (csv, jsonl)"))),
                })
            }
            "--detector" => {
                options.detector = Some(match value(flag)?.as_str() {
                    "zscore" | "outlier" => SeriesDetectorKind::ZScore,
                    "volume" => SeriesDetectorKind::Volume,
                    "threshold" => SeriesDetectorKind::Threshold,
                    other => {
                        return Err(usage(format!(
                            "unknown --detector {other:?} (zscore, volume, threshold)"
                        )));
                    }
                })
            }
            "--threshold" => options.threshold = Some(finite(flag, &value(flag)?)?),
            "--window" => {
                let w: u64 = number(flag, &value(flag)?)?;
                if w == 0 {
                    return Err(usage("--window must be at least 1"));
                }
                options.window = Some(w);
            }
            "--min-deviation" => options.min_deviation = Some(finite(flag, &value(flag)?)?),
            "--log" => options.log_transform = true,
            "--no-seasonality" => options.seasonality = false,
            "--above" => options.above = Some(finite(flag, &value(flag)?)?),
            "--below" => options.below = Some(finite(flag, &value(flag)?)?),
            "--rules" => {
                let path = PathBuf::from(value(flag)?);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    usage(format!("cannot read rules file {}: {e}", path.display()))
                })?;
                options.rules = Some((path, text));
            }
            "--lateness" => {
                let l: i64 = number(flag, &value(flag)?)?;
                if l < 0 {
                    return Err(usage("--lateness must not be negative"));
                }
                options.lateness_secs = Some(l);
            }
            "--log-format" => options.log_format = Some(value(flag)?),
            "--field" => options.field = Some(value(flag)?),
            "--drain-warmup" => options.drain_warmup = Some(number(flag, &value(flag)?)?),
            "--rate" => {
                let r = finite(flag, &value(flag)?)?;
                if r <= 0.0 {
                    return Err(usage("--rate must be above 0"));
                }
                options.untimed_rate = Some(r);
            }
            "--start" => {
                let v = value(flag)?;
                let at = chrono::DateTime::parse_from_rfc3339(&v)
                    .map_err(|e| usage(format!("--start {v:?} is not an RFC 3339 time: {e}")))?;
                options.untimed_start = Some(at.with_timezone(&chrono::Utc));
            }
            "--skip-bad" => options.skip_bad = true,
            "-o" | "--output" => output = Some(PathBuf::from(value(flag)?)),
            "-" => set_input(&mut input, "-")?,
            other if other.starts_with('-') => {
                return Err(usage(format!("unknown option {other} (see --help)")));
            }
            other => set_input(&mut input, other)?,
        }
    }
    let input = input.ok_or_else(|| usage("missing INPUT (a file, or - for stdin)"))?;
    let input = (input != "-").then(|| PathBuf::from(input));
    if options.format.is_none() {
        options.format = input.as_deref().and_then(format_from_extension);
    }
    if options.detector == Some(SeriesDetectorKind::Threshold)
        && options.above.is_none()
        && options.below.is_none()
        && options.rules.is_none()
    {
        return Err(usage(
            "--detector threshold needs --above, --below or --rules",
        ));
    }
    Ok(Command::Run {
        options,
        input,
        output,
    })
}

fn set_input(input: &mut Option<String>, value: &str) -> Result<(), BacktestError> {
    if let Some(first) = input {
        return Err(usage(format!(
            "one INPUT expected, got {first:?} and {value:?}"
        )));
    }
    *input = Some(value.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_values_and_format_from_extension() {
        let Command::Run {
            options,
            input,
            output,
        } = parse_args(&args(
            "--above 40 --below=0 --window 20 data.csv -o out.csv",
        ))
        .unwrap()
        else {
            panic!("expected run");
        };
        assert_eq!(options.format, Some(InputFormat::Csv));
        assert_eq!(options.series_detector(), SeriesDetectorKind::Threshold);
        assert_eq!((options.above, options.below), (Some(40.0), Some(0.0)));
        assert_eq!(options.window, Some(20));
        assert_eq!(input, Some(PathBuf::from("data.csv")));
        assert_eq!(output, Some(PathBuf::from("out.csv")));
        assert_eq!(parse_args(&args("x.csv --help")).unwrap(), Command::Help);
    }

    #[test]
    fn usage_errors_are_specific() {
        let err = |s: &str| parse_args(&args(s)).unwrap_err().to_string();
        assert!(err("").contains("missing INPUT"));
        assert!(err("a.csv b.csv").contains("one INPUT expected"));
        assert!(err("--detector magic a.csv").contains("unknown --detector"));
        assert!(err("--window").contains("--window needs a value"));
        assert!(err("--threshold abc a.csv").contains("expects a number"));
        assert!(err("--detector threshold a.csv").contains("needs --above"));
        assert!(err("--bogus a.csv").contains("unknown option --bogus"));
    }

    #[test]
    fn options_of_the_other_format_are_rejected() {
        let options = |s: &str| match parse_args(&args(s)).unwrap() {
            Command::Run { options, .. } => options,
            Command::Help => panic!("expected run"),
        };
        let jsonl = options("--detector volume a.jsonl");
        let e = jsonl.check_applicable(InputFormat::JsonLines).unwrap_err();
        assert_eq!(e.to_string(), "--detector only applies to CSV input");
        assert!(jsonl.check_applicable(InputFormat::Csv).is_ok());
        let csv = options("--lateness 5 a.csv");
        assert!(csv.check_applicable(InputFormat::Csv).is_err());
        assert!(csv.check_applicable(InputFormat::JsonLines).is_ok());
        let e = options("--detector zscore --above 3 a.csv")
            .check_applicable(InputFormat::Csv)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--above/--below/--rules only applies to --detector threshold"
        );
    }
}
