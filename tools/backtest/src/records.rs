//! Scoring log records (JSON lines) with every detector of logpipe-detect.
//!
//! Per record: threshold rules, the numeric outlier field, Drain new
//! templates. Per entity and event-time window: error / 5xx rate and volume.
//! To stay causal, a window is scored as it fills: the record's window so far
//! (up to and including this record) against baselines learned from closed
//! windows only, on a throw-away copy of the entity's baseline. Closed windows
//! (watermark passed, or flushed at end of input) then teach the real
//! detectors, exactly as the streaming function would.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use logpipe_detect::cooldown::Cooldown;
use logpipe_detect::drain::{DrainConfig, TemplateMiner};
use logpipe_detect::model::alert_key;
use logpipe_detect::outlier::{OutlierConfig, OutlierDetector};
use logpipe_detect::rate::{RateConfig, RateDetector};
use logpipe_detect::stats::score;
use logpipe_detect::threshold::{ThresholdEngine, default_sensor_rules, field_value, parse_rules};
use logpipe_detect::volume::{VolumeConfig, VolumeDetector};
use logpipe_detect::window::{AddOutcome, ClosedWindow, WindowConfig, Windows, window_bounds};
use logpipe_detect::{Alert, entity_of, record_id_of};
use logpipe_schema::LogRecord;
use serde_json::Value;

use crate::BacktestError;
use crate::options::Options;

/// Windows an incident stays open without firing (summary only).
const COOLDOWN_WINDOWS: i64 = 3;

/// The verdict on one record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordScore {
    pub entity: String,
    /// In `[0, 1]`: the highest detector score; ≥ 0.5 when flagged.
    pub score: f64,
    pub alerts: Vec<Alert>,
    /// The record's window had already closed: only per-record detectors ran.
    pub late: bool,
}

/// Every detector, with its state, for one offline run.
#[derive(Debug, Clone)]
pub struct RecordDetectors {
    windows: Windows,
    rate: RateDetector,
    volume: VolumeDetector,
    thresholds: ThresholdEngine,
    outliers: OutlierDetector,
    templates: TemplateMiner,
    cooldown: Cooldown,
    /// Alerts raised when windows closed (they never change written rows).
    pub window_alerts: u64,
    /// Alerts that opened a new incident after cooldown/dedup.
    pub incidents: u64,
}

impl RecordDetectors {
    pub fn from_options(options: &Options) -> Result<RecordDetectors, BacktestError> {
        let mut window = WindowConfig::default();
        if let Some(w) = options.window {
            window.width_secs = i64::try_from(w)
                .map_err(|_| BacktestError::Usage("--window is too large".into()))?;
        }
        if let Some(l) = options.lateness_secs {
            window.allowed_lateness_secs = l;
        }
        let rules = match &options.rules {
            Some((path, text)) => parse_rules(text).map_err(|e| BacktestError::Rules {
                path: path.display().to_string(),
                source: e,
            })?,
            None => default_sensor_rules(),
        };
        let mut outlier = OutlierConfig::default();
        if let Some(f) = &options.field {
            outlier.field = f.clone();
        }
        if let Some(z) = options.threshold {
            outlier.z_threshold = z;
        }
        let mut drain = DrainConfig::default();
        if let Some(n) = options.drain_warmup {
            drain.warmup_messages = n;
        }
        Ok(RecordDetectors {
            windows: Windows::new(window),
            rate: RateDetector::new(RateConfig::default()),
            volume: VolumeDetector::new(VolumeConfig::default()),
            thresholds: ThresholdEngine::new(rules, window.width_secs),
            outliers: OutlierDetector::new(outlier),
            templates: TemplateMiner::new(drain),
            cooldown: Cooldown::new(window.width_secs, COOLDOWN_WINDOWS),
            window_alerts: 0,
            incidents: 0,
        })
    }

    /// Scores `record` with state learned from earlier records (and the
    /// windows they closed), then learns from it.
    pub fn score_then_learn(&mut self, record: &LogRecord) -> RecordScore {
        let entity = entity_of(record);
        let width = self.windows.config.width_secs;
        let (ws, we) = window_bounds(record.event_time, width);
        let mut scores: Vec<f64> = Vec::new();
        let mut alerts: Vec<Alert> = Vec::new();

        // Windows this record's event time closes hold only earlier records.
        let outcome = self.windows.add(&entity, record);
        let closed = self.windows.close_ready();
        self.learn_closed(&closed);

        let late = outcome == AddOutcome::DroppedLate;
        if let AddOutcome::Accepted { window_start } = outcome
            && let Some(so_far) = self.windows.open_window(&entity, window_start)
        {
            let (s, a) = self.score_open_window(so_far);
            scores.push(s);
            alerts.extend(a);
        }

        let threshold_alerts = self.thresholds.evaluate(record);
        scores.extend(threshold_alerts.iter().map(|_| 1.0));
        alerts.extend(threshold_alerts);

        let field = self.outliers.config.field.clone();
        if let Some(value) = field_value(record, &field) {
            let seen = self.outliers.assess(&entity, value);
            if seen.samples >= self.outliers.config.warmup {
                scores.push(score(seen.z.max(0.0), self.outliers.config.z_threshold));
            }
            alerts.extend(
                self.outliers
                    .observe(&entity, value, ws, we, record_id_of(record)),
            );
        }

        let matched = self.templates.add(&record.message);
        if let Some(a) =
            self.templates
                .new_template_alert(&matched, &entity, ws, we, record_id_of(record))
        {
            scores.push(1.0);
            alerts.push(a);
        }

        self.count_incidents(&alerts);
        RecordScore {
            entity,
            score: scores.into_iter().fold(0.0, f64::max).clamp(0.0, 1.0),
            alerts,
            late,
        }
    }

    /// Closes every open window (end of input) and lets the detectors learn.
    pub fn flush(&mut self) {
        let closed = self.windows.close_until(DateTime::<Utc>::MAX_UTC);
        self.learn_closed(&closed);
    }

    pub fn dropped_late(&self) -> u64 {
        self.windows.dropped_late
    }

    fn learn_closed(&mut self, closed: &[ClosedWindow]) {
        for w in closed {
            let mut alerts = self.rate.observe_window(w);
            let (_, volume) =
                self.volume
                    .observe(&w.entity, w.window_start, w.window_end, w.agg.count);
            alerts.extend(volume);
            self.window_alerts += alerts.len() as u64;
            self.count_incidents(&alerts);
        }
    }

    /// The window so far against copies of the entity's baselines (the
    /// copies learn and are dropped; only closed windows teach the real ones).
    fn score_open_window(&self, so_far: &ClosedWindow) -> (f64, Vec<Alert>) {
        let entity = &so_far.entity;
        let only = |m: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
            m.get(entity)
                .map(|b| (entity.clone(), *b))
                .into_iter()
                .collect()
        };
        let mut rate = RateDetector {
            config: self.rate.config,
            error_baseline: only(&self.rate.error_baseline),
            http_5xx_baseline: only(&self.rate.http_5xx_baseline),
            windows_seen: self.rate.windows_seen.clone(),
        };
        let mut volume = VolumeDetector {
            config: self.volume.config,
            entities: self
                .volume
                .entities
                .get(entity)
                .map(|b| (entity.clone(), b.clone()))
                .into_iter()
                .collect(),
        };
        let mut alerts = rate.observe_window(so_far);
        let mut best = alerts
            .iter()
            .filter_map(|a| Some(score(a.observed, a.threshold?)))
            .fold(0.0, f64::max);
        let (prediction, volume_alert) = volume.observe(
            entity,
            so_far.window_start,
            so_far.window_end,
            so_far.agg.count,
        );
        // A window that is still filling can only prove a spike: being below
        // the band is expected until it closes.
        if prediction.actual > prediction.predicted {
            best = best.max(prediction.anomaly_score);
            alerts.extend(volume_alert.filter(|_| prediction.actual > prediction.upper));
        }
        (best, alerts)
    }

    fn count_incidents(&mut self, alerts: &[Alert]) {
        for a in alerts {
            let key = alert_key(&a.detector, a.rule.as_deref());
            if self.cooldown.fire(&key, &a.entity, a.window_start) {
                self.incidents += 1;
            }
        }
    }
}

/// Turns one input line into records: a normalized [`LogRecord`] (JSON with
/// `event_time` and `source_type`), else a raw log line for
/// [`logpipe_schema::parse`]. `fallback_time` is used by lines without a time.
pub fn parse_record_line(
    text: &str,
    log_format: Option<&str>,
    fallback_time: DateTime<Utc>,
) -> Result<Vec<LogRecord>, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('{')
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(trimmed)
        && map.contains_key("event_time")
        && map.contains_key("source_type")
    {
        return serde_json::from_value::<LogRecord>(Value::Object(map))
            .map(|r| vec![r])
            .map_err(|e| format!("not a valid normalized LogRecord: {e}"));
    }
    logpipe_schema::parse(text, log_format, fallback_time).map_err(|e| e.to_string())
}
