//! Volume per entity per window, scored by a calibrated seasonal
//! [`SeriesScorer`] (see [`crate::calibrate`]).
//!
//! Each entity's window counts go through one scorer with its hour-of-day
//! / hour-of-week profile and a Poisson floor on the spread (`√expected /
//! 2`): the prediction's `anomaly_score` is the calibrated score (0 during
//! warm-up). A window alerts when the entity has `warmup_windows` windows
//! of history, the score reaches `alert_score`, the count lies outside
//! `expected ± z` robust σ and differs from the expected count by at
//! least `min_abs_deviation`. Nothing is winsorized: a lasting level shift
//! becomes the new normal within the scorer's window (24 windows).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::calibrate::{BAND_Z, DEFAULT_ALERT_SCORE, SeriesScorer, SeriesScorerConfig};
use crate::model::{Alert, Prediction, SCHEMA_VERSION, Severity, alert_id};

pub const DETECTOR: &str = "volume";
pub const MODEL: &str = "calibrated_seasonal";
pub const MODEL_VERSION: &str = "3";

fn default_alert_score() -> f64 {
    DEFAULT_ALERT_SCORE
}

fn default_counts() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VolumeConfig {
    /// Band half-width in robust σ: the count must lie outside it to alert.
    pub z: f64,
    // (configurations stored with the former `alpha`, `slot_alpha` and
    // `min_slot_samples` still load: unknown fields are ignored)
    /// No alerts before the entity has this many windows of history.
    pub warmup_windows: u64,
    pub min_abs_deviation: f64,
    /// |z| at or above which the alert is critical.
    pub critical_z: f64,
    /// Calibrated score (in `[0, 1]`) at or above which a window alerts.
    #[serde(default = "default_alert_score")]
    pub alert_score: f64,
    /// Learn the hour-of-day / hour-of-week profile.
    #[serde(default = "default_counts")]
    pub seasonality: bool,
    /// Values are counts (Poisson floor on the spread); off for arbitrary
    /// numeric series (negative and fractional values are fine either way).
    #[serde(default = "default_counts")]
    pub counts: bool,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            z: 3.0,
            warmup_windows: 30,
            min_abs_deviation: 10.0,
            critical_z: 6.0,
            alert_score: DEFAULT_ALERT_SCORE,
            seasonality: true,
            counts: true,
        }
    }
}

impl VolumeConfig {
    fn scorer(&self) -> SeriesScorerConfig {
        SeriesScorerConfig {
            seasonality: self.seasonality,
            counts: self.counts,
            ..SeriesScorerConfig::default()
        }
    }
}

/// One entity's baseline. (States saved before calibration carried
/// `global` and `slots` instead; they are ignored and learning restarts.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityBaseline {
    #[serde(default)]
    pub scorer: SeriesScorer,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeDetector {
    pub config: VolumeConfig,
    pub entities: BTreeMap<String, EntityBaseline>,
}

pub fn hour_of_week(t: DateTime<Utc>) -> u16 {
    (t.weekday().num_days_from_monday() * 24 + t.hour()) as u16
}

impl VolumeDetector {
    pub fn new(config: VolumeConfig) -> VolumeDetector {
        VolumeDetector {
            config,
            entities: BTreeMap::new(),
        }
    }

    /// Scores `count` for the window and learns from it.
    pub fn observe(
        &mut self,
        entity: &str,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        count: u64,
    ) -> (Prediction, Option<Alert>) {
        self.observe_value(entity, window_start, window_end, count as f64)
    }

    /// [`VolumeDetector::observe`] for any finite value (the backtest CLI's
    /// numeric series: negative and fractional values are ordinary).
    pub fn observe_value(
        &mut self,
        entity: &str,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        actual: f64,
    ) -> (Prediction, Option<Alert>) {
        let cfg = self.config;
        let base = self.entities.entry(entity.to_string()).or_default();
        base.scorer.config = cfg.scorer();
        let v = base.scorer.score_then_learn(window_start, actual);
        let warm = v.samples >= cfg.warmup_windows;
        let sigma = (v.upper - v.expected) / BAND_Z;
        let mean = if cfg.counts {
            v.expected.max(0.0)
        } else {
            v.expected
        };
        let (mut lower, upper) = (mean - cfg.z * sigma, mean + cfg.z * sigma);
        if cfg.counts {
            lower = lower.max(0.0);
        }
        let z_abs = v.z.abs();
        let score = if warm { v.score } else { 0.0 };
        let outside = actual < lower || actual > upper;
        let alerting = warm
            && score >= cfg.alert_score
            && outside
            && (actual - mean).abs() >= cfg.min_abs_deviation;

        let prediction = Prediction {
            schema_version: SCHEMA_VERSION,
            id: alert_id(DETECTOR, entity, window_start),
            entity: entity.to_string(),
            metric: "record_count".to_string(),
            window_start,
            window_end,
            predicted: mean,
            lower,
            upper,
            actual,
            anomaly_score: score,
            model: MODEL.to_string(),
            model_version: MODEL_VERSION.to_string(),
        };

        let alert = alerting.then(|| {
            let severity = if z_abs >= cfg.critical_z {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let dir = if actual > upper { "above" } else { "below" };
            let mut a = Alert::new(
                DETECTOR,
                None,
                severity,
                entity,
                window_start,
                window_end,
                actual,
                format!(
                    "record volume of {entity} is {actual}, {dir} the expected band {lower:.0}–{upper:.0} (expected {mean:.0}, z = {z_abs:.1}, score {score:.4})"
                ),
            );
            a.expected = Some(mean);
            a.threshold = Some(if actual > upper { upper } else { lower });
            a
        });
        (prediction, alert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Rng, t};
    use chrono::Duration;

    /// Daily + weekly pattern: quiet nights, busier weekdays.
    fn expected_count(at: DateTime<Utc>) -> f64 {
        let h = at.hour() as f64 + at.minute() as f64 / 60.0;
        let daily = 200.0 + 150.0 * ((h - 14.0) / 24.0 * std::f64::consts::TAU).cos();
        let weekend = at.weekday().num_days_from_monday() >= 5;
        if weekend { daily * 0.5 } else { daily }
    }

    #[test]
    fn seasonal_clean_stays_quiet_and_anomalies_are_found() {
        let mut det = VolumeDetector::new(VolumeConfig::default());
        let mut rng = Rng::new(3);
        let t0 = t("2026-11-02T00:00:00Z"); // a Monday
        let step = Duration::minutes(5);
        let per_week = 7 * 24 * 12;
        let mut alerts_after_warmup = 0;
        let mut scored = 0;
        for i in 0..3 * per_week {
            let ws = t0 + step * i;
            let mu = expected_count(ws);
            let c = (mu + rng.normal() * mu.sqrt()).round().max(0.0) as u64;
            let (p, a) = det.observe("api", ws, ws + step, c);
            assert!((0.0..=1.0).contains(&p.anomaly_score));
            if i >= per_week {
                scored += 1;
                alerts_after_warmup += usize::from(a.is_some());
            }
        }
        // ≤ 1 % false positives over two clean weeks after a one-week warm-up.
        assert!(
            alerts_after_warmup * 100 <= scored,
            "{alerts_after_warmup} alerts over {scored} clean windows"
        );

        // Injected spike (×3) and drop (to 0) are found.
        let ws = t0 + step * (3 * per_week);
        let mu = expected_count(ws);
        let (p, a) = det.observe("api", ws, ws + step, (mu * 3.0) as u64);
        let a = a.expect("spike alert");
        assert!(p.anomaly_score > 0.5 && p.actual > p.upper);
        assert_eq!(a.detector, "volume");
        let ws2 = ws + step;
        let (_, a2) = det.observe("api", ws2, ws2 + step, 0);
        assert!(a2.is_some(), "drop alert");

        let json = serde_json::to_string(&det).unwrap();
        let back: VolumeDetector = serde_json::from_str(&json).unwrap();
        let (g1, g2) = (&back.entities["api"].scorer, &det.entities["api"].scorer);
        assert_eq!((g1.n, g1.seasonal.weekly.len()), (g2.n, 168));
        assert!((g1.long_spread - g2.long_spread).abs() < 1e-9);
    }

    #[test]
    fn no_alert_during_warmup() {
        let mut det = VolumeDetector::new(VolumeConfig::default());
        let t0 = t("2026-11-02T00:00:00Z");
        for i in 0..10 {
            let ws = t0 + Duration::minutes(i);
            let (p, a) = det.observe(
                "x",
                ws,
                ws + Duration::minutes(1),
                if i == 9 { 10_000 } else { 10 },
            );
            assert!(a.is_none());
            assert_eq!(p.anomaly_score, 0.0);
        }
    }
}
