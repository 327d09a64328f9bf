//! The streaming engine: every detector combined per entity, fed records one
//! at a time and closed by a watermark. Pure: the caller loads and saves
//! [`EntityState`] (the detect function keeps it in PostgreSQL, one row per
//! entity, locked while a batch updates it).
//!
//! Per record: threshold rules, template mining (new templates) and numeric
//! outliers, and the record joins its event-time window. Per closed window:
//! error / 5xx rates and the seasonal volume baseline (a [`Prediction`] for
//! every window, silent ones included). Every alert passes the entity's
//! cooldown, so one incident is one alert.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use logpipe_schema::LogRecord;
use serde::{Deserialize, Serialize};

use crate::cooldown::Cooldown;
use crate::drain::{DrainConfig, TemplateMiner};
use crate::model::{Alert, Prediction, alert_key};
use crate::outlier::{OutlierConfig, OutlierDetector};
use crate::rate::{RateConfig, RateDetector};
use crate::record_id_of;
use crate::threshold::{ThresholdEngine, ThresholdRule, default_sensor_rules, field_value};
use crate::volume::{VolumeConfig, VolumeDetector};
use crate::window::{ClosedWindow, WindowAgg, WindowConfig, window_bounds};

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub window: WindowConfig,
    pub rate: RateConfig,
    pub volume: VolumeConfig,
    pub drain: DrainConfig,
    pub outliers: Vec<OutlierConfig>,
    pub rules: Vec<ThresholdRule>,
    /// Clear windows after which a detector may fire again for an entity.
    pub cooldown_windows: i64,
    /// At most this many silent (zero-count) windows are scored in a row;
    /// a longer silence skips ahead (a day-long gap is one jump, not 1,440
    /// predictions in one invocation).
    pub max_fill_windows: i64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            window: WindowConfig::default(),
            rate: RateConfig::default(),
            volume: VolumeConfig::default(),
            drain: DrainConfig::default(),
            outliers: vec![OutlierConfig::default()],
            rules: default_sensor_rules(),
            cooldown_windows: 5,
            max_fill_windows: 60,
        }
    }
}

/// Everything the engine remembers about one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    /// Open windows by start (Unix seconds).
    pub open: BTreeMap<i64, WindowAgg>,
    /// End of the last closed window; records for windows ending at or
    /// before it are late.
    pub closed_until: Option<DateTime<Utc>>,
    pub rate: RateDetector,
    pub volume: VolumeDetector,
    /// By field name.
    pub outliers: BTreeMap<String, OutlierDetector>,
    pub templates: TemplateMiner,
    pub cooldown: Cooldown,
    pub records_seen: u64,
    pub records_late: u64,
    /// Per-record alerts (thresholds, outliers, new templates) waiting for
    /// their window to close, so that everything one window showed about
    /// the entity becomes one alert. By window start (Unix seconds).
    #[serde(default)]
    pub pending: BTreeMap<i64, Vec<Alert>>,
}

/// What one call produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Emitted {
    pub alerts: Vec<Alert>,
    pub predictions: Vec<Prediction>,
    /// Alerts suppressed because their incident was already open.
    pub suppressed: u64,
}

impl Emitted {
    pub fn extend(&mut self, other: Emitted) {
        self.alerts.extend(other.alerts);
        self.predictions.extend(other.predictions);
        self.suppressed += other.suppressed;
    }
}

pub struct Engine {
    config: EngineConfig,
    thresholds: ThresholdEngine,
}

/// Cooldown key: one open incident per entity, whatever detectors see it.
const INCIDENT: &str = "incident";

/// Which finding leads an incident's alert (at equal severity).
fn priority(detector: &str) -> u8 {
    match detector {
        "error_rate" | "http_5xx_rate" => 5,
        "threshold" => 4,
        "volume" => 3,
        "outlier" => 2,
        _ => 1,
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let thresholds = ThresholdEngine::new(config.rules.clone(), config.window.width_secs);
        Engine { config, thresholds }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn width(&self) -> i64 {
        self.config.window.width_secs.max(1)
    }

    /// A fresh state for an entity never seen before.
    pub fn new_state(&self) -> EntityState {
        EntityState {
            open: BTreeMap::new(),
            closed_until: None,
            rate: RateDetector::new(self.config.rate),
            volume: VolumeDetector::new(self.config.volume),
            outliers: BTreeMap::new(),
            templates: TemplateMiner::new(self.config.drain),
            cooldown: Cooldown::new(self.width(), self.config.cooldown_windows),
            records_seen: 0,
            records_late: 0,
            pending: BTreeMap::new(),
        }
    }

    /// Applies the current configuration to a loaded state (settings may
    /// have changed since it was saved; what was learned is kept).
    pub fn refresh(&self, state: &mut EntityState) {
        state.rate.config = self.config.rate;
        state.volume.config = self.config.volume;
        state.templates.config = self.config.drain;
        state.cooldown.window_secs = self.width();
        state.cooldown.cooldown_windows = self.config.cooldown_windows.max(0);
        for cfg in &self.config.outliers {
            if let Some(d) = state.outliers.get_mut(&cfg.field) {
                d.config = cfg.clone();
            }
        }
    }

    /// Everything one window showed about an entity is one candidate
    /// alert: the most telling finding, with the others listed in its
    /// message. It is emitted only if it opens a new incident for the
    /// entity (see [`Cooldown`]): a burst that raises the error rate, the
    /// latency and a new error template is one alert, not three.
    fn admit(&self, state: &mut EntityState, mut alerts: Vec<Alert>, out: &mut Emitted) {
        if alerts.is_empty() {
            return;
        }
        alerts.sort_by(|a, b| {
            (b.severity, priority(&b.detector)).cmp(&(a.severity, priority(&a.detector)))
        });
        let count = alerts.len() as u64;
        let rest = alerts.split_off(1);
        let Some(mut lead) = alerts.pop() else {
            return;
        };
        if !rest.is_empty() {
            let also: Vec<String> = rest
                .iter()
                .take(5)
                .map(|a| {
                    format!(
                        "{}: {}",
                        alert_key(&a.detector, a.rule.as_deref()),
                        a.message
                    )
                })
                .collect();
            lead.message = format!("{}; also {}", lead.message, also.join("; "));
            for id in rest.into_iter().flat_map(|a| a.sample_record_ids) {
                if lead.sample_record_ids.len() < 10 && !lead.sample_record_ids.contains(&id) {
                    lead.sample_record_ids.push(id);
                }
            }
        }
        if state
            .cooldown
            .fire(INCIDENT, &lead.entity, lead.window_start)
        {
            out.alerts.push(lead);
            out.suppressed += count - 1;
        } else {
            out.suppressed += count;
        }
    }

    /// Feeds one record of `entity`. Returns false when it was late for its
    /// window (the per-record detectors still saw it).
    pub fn observe(
        &self,
        state: &mut EntityState,
        entity: &str,
        record: &LogRecord,
        out: &mut Emitted,
    ) -> bool {
        state.records_seen += 1;
        let (start, end) = window_bounds(record.event_time, self.width());
        let mut alerts = self.thresholds.evaluate(record);
        let on_time = state.closed_until.is_none_or(|c| end > c);
        if on_time {
            state.open.entry(start.timestamp()).or_default().add(record);
        } else {
            state.records_late += 1;
        }
        let id = record_id_of(record);
        if !record.message.trim().is_empty() {
            let m = state.templates.add(&record.message);
            alerts.extend(
                state
                    .templates
                    .new_template_alert(&m, entity, start, end, id.clone()),
            );
        }
        for cfg in &self.config.outliers {
            if let Some(v) = field_value(record, &cfg.field) {
                let detector = state
                    .outliers
                    .entry(cfg.field.clone())
                    .or_insert_with(|| OutlierDetector::new(cfg.clone()));
                alerts.extend(detector.observe(entity, v, start, end, id.clone()));
            }
        }
        if on_time {
            if !alerts.is_empty() {
                state
                    .pending
                    .entry(start.timestamp())
                    .or_default()
                    .extend(alerts);
            }
        } else {
            // Its window is closed: nothing else will join this finding.
            self.admit(state, alerts, out);
        }
        on_time
    }

    /// Closes every window of `entity` that ends at or before `watermark`,
    /// scoring silent windows as zero counts, and emits their predictions
    /// and alerts.
    pub fn close(
        &self,
        state: &mut EntityState,
        entity: &str,
        watermark: DateTime<Utc>,
        out: &mut Emitted,
    ) {
        let width = Duration::seconds(self.width());
        let max_fill = self.config.max_fill_windows.max(1);
        let first_open = |s: &EntityState| {
            s.open
                .keys()
                .next()
                .and_then(|k| DateTime::from_timestamp(*k, 0))
        };
        let mut next = match (state.closed_until, first_open(state)) {
            (Some(c), _) => c,
            (None, Some(o)) => o,
            (None, None) => return,
        };
        let mut silent_run = 0i64;
        while next + width <= watermark {
            let agg = state.open.remove(&next.timestamp());
            if agg.is_none() {
                // A long silence: skip to the last `max_fill` windows before
                // the next activity (or the watermark).
                let until = first_open(state).unwrap_or(watermark);
                let silent_windows = (until - next).num_seconds() / width.num_seconds();
                if silent_run == 0 && silent_windows > max_fill {
                    next += width * (silent_windows - max_fill) as i32;
                    continue;
                }
                silent_run += 1;
            } else {
                silent_run = 0;
            }
            let window = ClosedWindow {
                entity: entity.to_string(),
                window_start: next,
                window_end: next + width,
                agg: agg.unwrap_or_default(),
            };
            let mut alerts = state.rate.observe_window(&window);
            let (prediction, volume_alert) = state.volume.observe(
                entity,
                window.window_start,
                window.window_end,
                window.agg.count,
            );
            out.predictions.push(prediction);
            alerts.extend(volume_alert);
            alerts.extend(state.pending.remove(&next.timestamp()).unwrap_or_default());
            self.admit(state, alerts, out);
            next += width;
            state.closed_until = Some(next);
        }
        state.cooldown.prune(watermark);
    }

    /// The watermark at which [`Engine::close`] will next have work for
    /// this state (its next window end), if any.
    pub fn next_close(&self, state: &EntityState) -> Option<DateTime<Utc>> {
        let width = Duration::seconds(self.width());
        let after_closed = state.closed_until.map(|c| c + width);
        let first_open = state
            .open
            .keys()
            .next()
            .and_then(|k| DateTime::from_timestamp(*k, 0))
            .map(|s| s + width);
        match (after_closed, first_open) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Watermark for a newest event time: `max − allowed lateness`.
    pub fn watermark(&self, max_event_time: DateTime<Utc>) -> DateTime<Utc> {
        max_event_time - Duration::seconds(self.config.window.allowed_lateness_secs.max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Rng, http, record, t};
    use logpipe_schema::Level;

    fn engine() -> Engine {
        Engine::new(EngineConfig {
            window: WindowConfig {
                width_secs: 60,
                allowed_lateness_secs: 30,
            },
            ..EngineConfig::default()
        })
    }

    /// 30 minutes of a healthy service, then 3 minutes with 60 % errors,
    /// then healthy again, streamed in small batches with state saved and
    /// restored (JSON) between batches: exactly one error alert, one
    /// prediction per window, no other alert.
    #[test]
    fn one_incident_is_one_alert_across_batches() {
        let e = engine();
        let t0 = t("2026-11-22T08:00:00Z");
        let mut rng = Rng::new(7);
        let mut records = Vec::new();
        for minute in 0..45i64 {
            let burst = (30..33).contains(&minute);
            for i in 0..40i64 {
                let at = t0 + Duration::seconds(minute * 60 + i + (rng.below(20) as i64));
                let mut r = if i % 2 == 0 {
                    http(
                        at,
                        "checkout",
                        if burst && rng.uniform() < 0.6 {
                            503
                        } else {
                            200
                        },
                        40.0 + rng.uniform() * 10.0,
                    )
                } else {
                    record(at, "checkout")
                };
                if burst && i % 2 == 1 && rng.uniform() < 0.6 {
                    r.level = Some(Level::Error);
                }
                records.push(r);
            }
        }
        let mut saved = serde_json::to_string(&e.new_state()).unwrap();
        let mut out = Emitted::default();
        let mut max_t = t0;
        for chunk in records.chunks(37) {
            let mut state: EntityState = serde_json::from_str(&saved).unwrap();
            e.refresh(&mut state);
            for r in chunk {
                e.observe(&mut state, "checkout", r, &mut out);
                max_t = max_t.max(r.event_time);
            }
            e.close(&mut state, "checkout", e.watermark(max_t), &mut out);
            saved = serde_json::to_string(&state).unwrap();
        }
        let ids: Vec<&str> = out.alerts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(out.alerts.len(), 1, "{ids:?}");
        let a = &out.alerts[0];
        assert!(a.detector == "error_rate" || a.detector == "http_5xx_rate");
        assert_eq!(a.window_start, t0 + Duration::minutes(30));
        assert!(out.suppressed >= 2, "the rest of the burst was suppressed");
        // Every closed window has exactly one prediction, in order.
        let starts: Vec<_> = out.predictions.iter().map(|p| p.window_start).collect();
        assert_eq!(starts.len() as i64, (e.watermark(max_t) - t0).num_minutes());
        assert!(
            starts
                .windows(2)
                .all(|w| w[1] - w[0] == Duration::minutes(1))
        );
    }

    #[test]
    fn silence_is_scored_as_zero_and_long_gaps_are_bounded() {
        let e = Engine::new(EngineConfig {
            max_fill_windows: 5,
            ..EngineConfig::default()
        });
        let t0 = t("2026-11-22T08:00:00Z");
        let mut s = e.new_state();
        let mut out = Emitted::default();
        e.observe(&mut s, "a", &record(t0, "a"), &mut out);
        // three silent minutes follow
        e.close(&mut s, "a", t0 + Duration::minutes(4), &mut out);
        let counts: Vec<f64> = out.predictions.iter().map(|p| p.actual).collect();
        assert_eq!(counts, vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(e.next_close(&s), Some(t0 + Duration::minutes(5)));
        // a record late for a closed window is counted, not windowed
        assert!(!e.observe(
            &mut s,
            "a",
            &record(t0 + Duration::seconds(90), "a"),
            &mut out
        ));
        assert_eq!(s.records_late, 1);
        // a day of silence: only the last 5 windows are scored
        out.predictions.clear();
        e.close(&mut s, "a", t0 + Duration::days(1), &mut out);
        assert_eq!(out.predictions.len(), 5);
        assert_eq!(
            out.predictions.last().map(|p| p.window_end),
            Some(t0 + Duration::days(1))
        );
    }

    #[test]
    fn threshold_alerts_pass_the_cooldown() {
        let e = engine();
        let t0 = t("2026-11-22T08:00:00Z");
        let mut s = e.new_state();
        let mut out = Emitted::default();
        for i in 0..5 {
            let r = crate::testutil::sensor(
                t0 + Duration::seconds(i * 70),
                "st-001",
                &[("temperature", 45.0)],
            );
            e.observe(&mut s, "st-001", &r, &mut out);
        }
        assert!(out.alerts.is_empty(), "held until the window closes");
        e.close(&mut s, "st-001", t0 + Duration::minutes(10), &mut out);
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].rule.as_deref(), Some("temperature_high"));
        assert_eq!(out.suppressed, 4);
    }
}
