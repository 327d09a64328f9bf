//! Scoring a `timestamp,value` series with one detector of logpipe-detect.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use logpipe_detect::outlier::{OutlierConfig, OutlierDetector};
use logpipe_detect::stats::score;
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
    ZScore {
        upper: OutlierDetector,
        /// The same detector on `-value`, so drops alert too (`None` with
        /// `--log`: the transform is only meaningful on the upper side).
        lower: Option<OutlierDetector>,
    },
    Volume {
        detector: VolumeDetector,
        previous: Option<DateTime<Utc>>,
    },
    Threshold(ThresholdEngine),
}

/// EWMA weight for a span of `window` rows.
fn alpha_for(window: u64) -> f64 {
    2.0 / (window as f64 + 1.0)
}

impl SeriesDetector {
    pub fn from_options(options: &Options) -> Result<SeriesDetector, BacktestError> {
        Ok(match options.series_detector() {
            SeriesDetectorKind::ZScore => {
                let mut config = OutlierConfig {
                    field: FIELD.to_string(),
                    log_transform: options.log_transform,
                    min_abs_deviation: 0.0,
                    ..OutlierConfig::default()
                };
                if let Some(z) = options.threshold {
                    config.z_threshold = z;
                    config.critical_z = config.critical_z.max(2.0 * z);
                }
                if let Some(w) = options.window {
                    config.alpha = alpha_for(w);
                    config.warmup = w;
                }
                if let Some(d) = options.min_deviation {
                    config.min_abs_deviation = d;
                }
                let lower = (!config.log_transform).then(|| OutlierDetector::new(config.clone()));
                SeriesDetector::ZScore {
                    upper: OutlierDetector::new(config),
                    lower,
                }
            }
            SeriesDetectorKind::Volume => {
                let mut config = VolumeConfig::default();
                if let Some(z) = options.threshold {
                    config.z = z;
                    config.critical_z = config.critical_z.max(2.0 * z);
                }
                if let Some(w) = options.window {
                    config.alpha = alpha_for(w);
                    config.warmup_windows = w;
                }
                if let Some(d) = options.min_deviation {
                    config.min_abs_deviation = d;
                }
                if !options.seasonality {
                    // A slot never reaches this many samples: the global
                    // estimate is always used.
                    config.min_slot_samples = u64::MAX;
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
            SeriesDetector::ZScore { upper, lower } => {
                let seen = upper.assess(ENTITY, row.value);
                let warm = seen.samples >= upper.config.warmup;
                let z_threshold = upper.config.z_threshold;
                // Two-sided: the estimate on -value mirrors this one exactly,
                // so |z| is the score of whichever side is out.
                let z = if lower.is_some() {
                    seen.z.abs()
                } else {
                    seen.z.max(0.0)
                };
                let mut alerts: Vec<Alert> = upper
                    .observe(ENTITY, row.value, t, t, None)
                    .into_iter()
                    .collect();
                if let Some(lower) = lower {
                    alerts.extend(lower.observe(ENTITY, -row.value, t, t, None));
                }
                Ok(SeriesScore {
                    score: if warm { score(z, z_threshold) } else { 0.0 },
                    flagged: !alerts.is_empty(),
                    expected: Some(seen.expected),
                    lower: Some(seen.lower),
                    upper: Some(seen.upper),
                    alerts,
                })
            }
            SeriesDetector::Volume { detector, previous } => {
                if row.value < 0.0 {
                    return Err(format!(
                        "the volume detector needs counts, got {}",
                        row.value_text
                    ));
                }
                // The window end only names the alert: the gap to the
                // previous row, or a minute for the first.
                let width = previous
                    .map(|p| t - p)
                    .filter(|d| *d > Duration::zero())
                    .unwrap_or(Duration::minutes(1));
                *previous = Some(t);
                let count = row.value.round() as u64;
                let (prediction, alert) = detector.observe(ENTITY, t, t + width, count);
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
