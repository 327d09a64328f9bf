//! Scoring a `timestamp,value` series with one detector of logpipe-detect.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use logpipe_detect::calibrate::{BAND_Z, DEFAULT_ALERT_SCORE, SeriesScorer, SeriesScorerConfig};
use logpipe_detect::outlier::DETECTOR as OUTLIER;
use logpipe_detect::threshold::{Op, ThresholdEngine, ThresholdRule, parse_rules};
use logpipe_detect::volume::{VolumeConfig, VolumeDetector};
use logpipe_detect::{Alert, Severity};
use logpipe_schema::{LogRecord, SourceType};

use crate::BacktestError;
use crate::csv::SeriesRow;
use crate::options::{Options, SeriesDetectorKind};

/// The entity every series row is attributed to.
pub const ENTITY: &str = "series";
/// The field name threshold rules use for the series value.
pub const FIELD: &str = "value";

/// The verdict on one row.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesScore {
    /// In `[0, 1]`; 0.5 at the band edge (zscore, volume); 0 or 1 (threshold).
    pub score: f64,
    pub flagged: bool,
    pub expected: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The alert(s) behind the flag.
    pub alerts: Vec<Alert>,
}

/// One detector of logpipe-detect, configured for a series.
#[derive(Debug, Clone)]
pub enum SeriesDetector {
    /// The calibrated numeric scorer (the one behind the function's
    /// outlier and volume detectors), two-sided unless `--log`.
    ZScore {
        scorer: Box<SeriesScorer>,
        /// `--log`: score `ln(1 + max(x, 0))`, upper side only.
        log: bool,
        /// `--threshold`: smallest robust |z| that may alert (none by default).
        min_z: f64,
        min_deviation: f64,
        /// Rows of history before a row may alert.
        warmup: u64,
    },
    Volume {
        detector: VolumeDetector,
        previous: Option<DateTime<Utc>>,
    },
    Threshold(ThresholdEngine),
}

/// Whether `v` could be a count (the volume scorer's count floor applies
/// only while every value so far is one).
fn is_count(v: f64) -> bool {
    v >= 0.0 && v.fract() == 0.0
}

impl SeriesDetector {
    pub fn from_options(options: &Options) -> Result<SeriesDetector, BacktestError> {
        Ok(match options.series_detector() {
            SeriesDetectorKind::ZScore => {
                let mut config = SeriesScorerConfig {
                    seasonality: options.seasonality,
                    upper_only: options.log_transform,
                    ..SeriesScorerConfig::default()
                };
                if let Some(w) = options.window {
                    config.window = usize::try_from(w).unwrap_or(usize::MAX).max(3);
                }
                SeriesDetector::ZScore {
                    scorer: Box::new(SeriesScorer::new(config)),
                    log: options.log_transform,
                    min_z: options.threshold.unwrap_or(0.0),
                    min_deviation: options.min_deviation.unwrap_or(0.0),
                    warmup: config.window as u64,
                }
            }
            SeriesDetectorKind::Volume => {
                let mut config = VolumeConfig {
                    // a series' scale is unknown: no absolute floor by default
                    min_abs_deviation: options.min_deviation.unwrap_or(0.0),
                    seasonality: options.seasonality,
                    ..VolumeConfig::default()
                };
                if let Some(z) = options.threshold {
                    config.z = z;
                    config.critical_z = config.critical_z.max(2.0 * z);
                }
                if let Some(w) = options.window {
                    config.warmup_windows = w;
                }
                SeriesDetector::Volume {
                    detector: VolumeDetector::new(config),
                    previous: None,
                }
            }
            SeriesDetectorKind::Threshold => {
                let rules = match &options.rules {
                    Some((path, text)) => parse_rules(text).map_err(|e| BacktestError::Rules {
                        path: path.display().to_string(),
                        source: e,
                    })?,
                    None => bound_rules(options.above, options.below),
                };
                SeriesDetector::Threshold(ThresholdEngine::new(rules, 60))
            }
        })
    }

    /// Scores `row` with what was learned from earlier rows, then learns
    /// from it. Errors are about the row (e.g. a negative count).
    pub fn score_then_learn(&mut self, row: &SeriesRow) -> Result<SeriesScore, String> {
        let t = row.timestamp;
        match self {
            SeriesDetector::ZScore {
                scorer,
                log,
                min_z,
                min_deviation,
                warmup,
            } => {
                let x = if *log {
                    row.value.max(0.0).ln_1p()
                } else {
                    row.value
                };
                let v = scorer.score_then_learn(t, x);
                let score = if v.samples >= *warmup { v.score } else { 0.0 };
                // bands in the series' own units
                let back = |y: f64| if *log { y.exp_m1() } else { y };
                let expected = back(v.expected);
                let flagged = score >= DEFAULT_ALERT_SCORE
                    && v.z.abs() >= *min_z
                    && (row.value - expected).abs() >= *min_deviation;
                let alerts = flagged
                    .then(|| {
                        let severity = if v.z.abs() >= 2.0 * BAND_Z {
                            Severity::Critical
                        } else {
                            Severity::Warning
                        };
                        let mut a = Alert::new(
                            OUTLIER,
                            None,
                            severity,
                            ENTITY,
                            t,
                            t,
                            row.value,
                            format!(
                                "{FIELD} {} is outside the expected band (expected {expected:.4}, z = {:.1}, score {score:.4})",
                                row.value_text, v.z
                            ),
                        );
                        a.expected = Some(expected);
                        a
                    })
                    .into_iter()
                    .collect();
                Ok(SeriesScore {
                    score,
                    flagged,
                    expected: Some(expected),
                    lower: Some(back(v.lower)),
                    upper: Some(back(v.upper)),
                    alerts,
                })
            }
            SeriesDetector::Volume { detector, previous } => {
                if !is_count(row.value) {
                    // negative and fractional values are ordinary values,
                    // just not counts: drop the count floors from now on
                    detector.config.counts = false;
                }
                // The window end only names the alert: the gap to the
                // previous row, or a minute for the first.
                let width = previous
                    .map(|p| t - p)
                    .filter(|d| *d > Duration::zero())
                    .unwrap_or(Duration::minutes(1));
                *previous = Some(t);
                let (prediction, alert) = detector.observe_value(ENTITY, t, t + width, row.value);
                Ok(SeriesScore {
                    score: prediction.anomaly_score,
                    flagged: alert.is_some(),
                    expected: Some(prediction.predicted),
                    lower: Some(prediction.lower),
                    upper: Some(prediction.upper),
                    alerts: alert.into_iter().collect(),
                })
            }
            SeriesDetector::Threshold(engine) => {
                let alerts = engine.evaluate(&series_record(t, row.value));
                let bound = |op: Op| {
                    engine
                        .rules
                        .iter()
                        .find(|r| r.field == FIELD && r.op == op)
                        .map(|r| r.value)
                };
                Ok(SeriesScore {
                    score: if alerts.is_empty() { 0.0 } else { 1.0 },
                    flagged: !alerts.is_empty(),
                    expected: None,
                    lower: bound(Op::Lt).or_else(|| bound(Op::Lte)),
                    upper: bound(Op::Gt).or_else(|| bound(Op::Gte)),
                    alerts,
                })
            }
        }
    }
}

/// `--above X` (critical) and `--below Y` (warning) as threshold rules.
fn bound_rules(above: Option<f64>, below: Option<f64>) -> Vec<ThresholdRule> {
    let rule = |name: &str, op, value, severity| ThresholdRule {
        name: name.to_string(),
        field: FIELD.to_string(),
        op,
        value,
        severity,
        source_type: None,
    };
    let mut rules = Vec::new();
    if let Some(v) = above {
        rules.push(rule("above", Op::Gt, v, Severity::Critical));
    }
    if let Some(v) = below {
        rules.push(rule("below", Op::Lt, v, Severity::Warning));
    }
    rules
}

/// A record carrying the series value as metric `value`, so threshold rules
/// run unchanged.
fn series_record(t: DateTime<Utc>, value: f64) -> LogRecord {
    LogRecord {
        event_time: t,
        source_type: SourceType::Generic,
        service: Some(ENTITY.to_string()),
        host: None,
        level: None,
        message: String::new(),
        http: None,
        metrics: BTreeMap::from([(FIELD.to_string(), value)]),
        attributes: serde_json::Map::new(),
        raw: String::new(),
        kafka: None,
    }
}
