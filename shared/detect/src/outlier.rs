//! Numeric outliers per entity (e.g. `latency_ms`).
//!
//! Each entity's values (optionally `ln(1 + x)`-transformed) go through a
//! [`SeriesScorer`] (upper side only, no seasonality): the deviation from
//! the median of the recent values in robust σ, calibrated against the
//! entity's own history of deviations (see [`crate::calibrate`]). After
//! `warmup` values, a value whose calibrated score reaches `alert_score`,
//! that lies above the expected value by `z_threshold` robust σ or more and
//! by at least `min_abs_deviation` (original units), alerts. Nothing is
//! winsorized: a lasting level shift becomes the new normal within the
//! scorer's window.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::calibrate::{DEFAULT_ALERT_SCORE, SeriesScorer, SeriesScorerConfig};
use crate::engine::Finding;
use crate::model::{Alert, Severity};

pub const DETECTOR: &str = "outlier";

fn default_alert_score() -> f64 {
    DEFAULT_ALERT_SCORE
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierConfig {
    pub field: String,
    /// Smallest robust z (above the expected value) that may alert.
    pub z_threshold: f64,
    /// Kept for stored configurations; the scorer's window sets the memory.
    #[serde(default)]
    pub alpha: f64,
    pub warmup: u64,
    /// Work on `ln(1 + max(x, 0))` (right-skewed data such as latencies).
    pub log_transform: bool,
    pub min_abs_deviation: f64,
    pub critical_z: f64,
    /// Calibrated score (in `[0, 1]`) at or above which a value alerts.
    #[serde(default = "default_alert_score")]
    pub alert_score: f64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            field: "latency_ms".to_string(),
            z_threshold: 4.0,
            alpha: 0.02,
            warmup: 50,
            log_transform: true,
            min_abs_deviation: 50.0,
            critical_z: 8.0,
            alert_score: DEFAULT_ALERT_SCORE,
        }
    }
}

impl OutlierConfig {
    fn scorer(&self) -> SeriesScorerConfig {
        SeriesScorerConfig {
            seasonality: false,
            upper_only: true,
            ..SeriesScorerConfig::default()
        }
    }
}

/// What the current estimate says about one value, before learning from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierAssessment {
    /// Calibrated score in `[0, 1]` (0 before `warmup`).
    pub score: f64,
    /// Robust z of the value in the (possibly log-transformed) space; > 0 above.
    pub z: f64,
    /// The expected value, in original units.
    pub expected: f64,
    /// `expected ∓ z_threshold` robust σ, in original units.
    pub lower: f64,
    pub upper: f64,
    /// Samples behind the estimate (no alert before `warmup`).
    pub samples: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutlierDetector {
    pub config: OutlierConfig,
    /// Per entity. (States saved before calibration carried `stats`
    /// instead; they are ignored and learning starts afresh.)
    #[serde(default)]
    pub scorers: BTreeMap<String, SeriesScorer>,
}

impl OutlierDetector {
    pub fn new(config: OutlierConfig) -> OutlierDetector {
        OutlierDetector {
            config,
            scorers: BTreeMap::new(),
        }
    }

    fn fwd(&self, x: f64) -> f64 {
        if self.config.log_transform {
            x.max(0.0).ln_1p()
        } else {
            x
        }
    }

    fn inv(&self, y: f64) -> f64 {
        if self.config.log_transform {
            y.exp_m1()
        } else {
            y
        }
    }

    /// Scores `value` and learns from it (the scorer is not seasonal, so
    /// the time does not matter).
    fn score_then_learn(&mut self, entity: &str, value: f64) -> OutlierAssessment {
        let y = self.fwd(value);
        let scorer_config = self.config.scorer();
        let scorer = self
            .scorers
            .entry(entity.to_string())
            .or_insert_with(|| SeriesScorer::new(scorer_config));
        scorer.config = scorer_config;
        let v = scorer.score_then_learn(DateTime::UNIX_EPOCH, y);
        self.assessment(v)
    }

    fn assessment(&self, v: crate::calibrate::SeriesVerdict) -> OutlierAssessment {
        let sigma = (v.upper - v.expected) / crate::calibrate::BAND_Z;
        let band = self.config.z_threshold * sigma;
        OutlierAssessment {
            score: if v.samples >= self.config.warmup {
                v.score
            } else {
                0.0
            },
            z: v.z,
            expected: self.inv(v.expected),
            lower: self.inv(v.expected - band),
            upper: self.inv(v.expected + band),
            samples: v.samples,
        }
    }

    /// The numbers [`OutlierDetector::observe`] decides on for `value`,
    /// without learning (callers that need a score for every value, e.g.
    /// the backtesting CLI, call this before `observe`).
    pub fn assess(&self, entity: &str, value: f64) -> OutlierAssessment {
        let mut scorer = self
            .scorers
            .get(entity)
            .cloned()
            .unwrap_or_else(|| SeriesScorer::new(self.config.scorer()));
        scorer.config = self.config.scorer();
        let v = scorer.score_then_learn(DateTime::UNIX_EPOCH, self.fwd(value));
        self.assessment(v)
    }

    /// Whether an assessment alerts under this configuration.
    pub fn alerts(&self, a: &OutlierAssessment, value: f64) -> bool {
        a.samples >= self.config.warmup
            && a.score >= self.config.alert_score
            && a.z >= self.config.z_threshold
            && (value - a.expected).abs() >= self.config.min_abs_deviation
    }

    /// Scores one value (the window only names the alert) and learns from it.
    pub fn observe(
        &mut self,
        entity: &str,
        value: f64,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        record_id: Option<String>,
    ) -> Option<Alert> {
        self.observe_finding(entity, value, window_start, window_end, record_id)
            .map(|f| f.alert)
    }

    /// [`OutlierDetector::observe`], as a finding for the engine to hold
    /// until its window closes: a warning carries its tail probability and
    /// budget, so it stands only if it is rare for the whole window (see
    /// [`Finding::significant`]); a critical one (`z ≥ critical_z`) stands
    /// by itself.
    pub fn observe_finding(
        &mut self,
        entity: &str,
        value: f64,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        record_id: Option<String>,
    ) -> Option<Finding> {
        if !value.is_finite() {
            return None;
        }
        let seen = self.score_then_learn(entity, value);
        if !self.alerts(&seen, value) {
            return None;
        }
        let cfg = &self.config;
        let (z, expected, threshold) = (seen.z, seen.expected, seen.upper);
        let severity = if z >= cfg.critical_z {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut a = Alert::new(
            DETECTOR,
            Some(&cfg.field),
            severity,
            entity,
            window_start,
            window_end,
            value,
            format!(
                "{} of {entity} is {value:.1}, expected about {expected:.1} (z = {z:.1}, score {:.4}, threshold {threshold:.1})",
                cfg.field, seen.score
            ),
        );
        a.expected = Some(expected);
        a.threshold = Some(threshold);
        a.sample_record_ids.extend(record_id);
        let tail = (severity != Severity::Critical).then(|| {
            (
                (1.0 - seen.score).max(0.0),
                (1.0 - cfg.alert_score).max(0.0),
            )
        });
        Some(Finding { alert: a, tail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Rng, t};

    #[test]
    fn lognormal_latency_quiet_and_spike_found() {
        let mut d = OutlierDetector::new(OutlierConfig::default());
        let mut rng = Rng::new(5);
        let (ws, we) = (t("2026-11-22T10:00:00Z"), t("2026-11-22T10:01:00Z"));
        for _ in 0..200 {
            d.observe("api", (4.0 + 0.5 * rng.normal()).exp(), ws, we, None);
        }
        // ≤ 0.1 % alerts over 10,000 clean lognormal latencies (median ≈ 55 ms).
        let fp = (0..10_000)
            .filter(|_| {
                d.observe("api", (4.0 + 0.5 * rng.normal()).exp(), ws, we, None)
                    .is_some()
            })
            .count();
        assert!(fp <= 10, "{fp} false positives");
        let a = d
            .observe("api", 5000.0, ws, we, Some("r1".into()))
            .expect("outlier");
        assert_eq!(a.id, "outlier.latency_ms:api:2026-11-22T10:00:00Z");
        assert_eq!(a.sample_record_ids, ["r1"]);
        // the outlier did not move the median: the next one is found too
        assert!(d.observe("api", 4000.0, ws, we, None).is_some());
        assert!(d.observe("api", f64::NAN, ws, we, None).is_none());
    }

    #[test]
    fn assess_agrees_with_observe() {
        let mut d = OutlierDetector::new(OutlierConfig::default());
        let mut rng = Rng::new(9);
        let (ws, we) = (t("2026-11-22T10:00:00Z"), t("2026-11-22T10:01:00Z"));
        for _ in 0..100 {
            d.observe("api", (4.0 + 0.5 * rng.normal()).exp(), ws, we, None);
        }
        let a = d.assess("api", 5000.0);
        assert_eq!(a.samples, 100);
        assert!(a.score >= d.config.alert_score && a.score <= 1.0);
        assert!(a.z >= d.config.z_threshold && a.lower < a.expected && a.expected < a.upper);
        let alert = d.observe("api", 5000.0, ws, we, None).expect("outlier");
        assert_eq!(alert.expected, Some(a.expected));
        assert_eq!(alert.threshold, Some(a.upper));
        assert!(d.assess("api", a.expected).z.abs() < 0.5);
    }

    #[test]
    fn quiet_during_warmup() {
        let mut d = OutlierDetector::new(OutlierConfig::default());
        let (ws, we) = (t("2026-11-22T10:00:00Z"), t("2026-11-22T10:01:00Z"));
        for i in 0..50 {
            assert!(
                d.observe("api", if i == 49 { 1e6 } else { 50.0 }, ws, we, None)
                    .is_none()
            );
        }
    }

    #[test]
    fn state_saved_before_calibration_still_loads() {
        let old = r#"{"config":{"field":"latency_ms","z_threshold":4.0,"alpha":0.02,"warmup":50,
            "log_transform":true,"min_abs_deviation":50.0,"critical_z":8.0},
            "stats":{"api":{"n":3,"mean":1.0,"var":0.5}}}"#;
        let d: OutlierDetector = serde_json::from_str(old).unwrap();
        assert!(d.scorers.is_empty());
        assert_eq!(d.config.alert_score, DEFAULT_ALERT_SCORE);
    }
}
