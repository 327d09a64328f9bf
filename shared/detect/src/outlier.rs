//! Numeric outliers per entity (e.g. `latency_ms`).
//!
//! Robust online estimate: EWMA mean/variance of the (optionally log1p-
//! transformed) value, where each update is winsorized to `mean ± z·σ` so
//! outliers barely move the estimate. After `warmup` samples, a value with
//! `z ≥ z_threshold` (upper side) and `|value − expected| ≥
//! min_abs_deviation` (original units) alerts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Alert, Severity};
use crate::stats::EwmaVar;

pub const DETECTOR: &str = "outlier";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierConfig {
    pub field: String,
    pub z_threshold: f64,
    pub alpha: f64,
    pub warmup: u64,
    /// Work on `ln(1 + max(x, 0))` (right-skewed data such as latencies).
    pub log_transform: bool,
    pub min_abs_deviation: f64,
    pub critical_z: f64,
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
        }
    }
}

/// What the current estimate says about one value, before learning from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierAssessment {
    /// z of the value in the (possibly log-transformed) space; > 0 above the mean.
    pub z: f64,
    /// The estimated mean, in original units.
    pub expected: f64,
    /// `mean ∓ z_threshold·σ`, in original units.
    pub lower: f64,
    pub upper: f64,
    /// Samples behind the estimate (no alert before `warmup`).
    pub samples: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutlierDetector {
    pub config: OutlierConfig,
    pub stats: BTreeMap<String, EwmaVar>,
}

impl OutlierDetector {
    pub fn new(config: OutlierConfig) -> OutlierDetector {
        OutlierDetector {
            config,
            stats: BTreeMap::new(),
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

    /// The numbers [`OutlierDetector::observe`] decides on for `value`,
    /// without learning (callers that need a score for every value, e.g.
    /// the backtesting CLI, call this before `observe`).
    pub fn assess(&self, entity: &str, value: f64) -> OutlierAssessment {
        let est = self.stats.get(entity).cloned().unwrap_or_default();
        let sigma = est.std().max(1e-9);
        let band = self.config.z_threshold * sigma;
        OutlierAssessment {
            z: (self.fwd(value) - est.mean) / sigma,
            expected: self.inv(est.mean),
            lower: self.inv(est.mean - band),
            upper: self.inv(est.mean + band),
            samples: est.n,
        }
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
        if !value.is_finite() {
            return None;
        }
        let y = self.fwd(value);
        let cfg = self.config.clone();
        let est = self.stats.get(entity).cloned().unwrap_or_default();
        let sigma = est.std().max(1e-9);
        let z = (y - est.mean) / sigma;
        let expected = self.inv(est.mean);
        let alert = (est.n >= cfg.warmup
            && z >= cfg.z_threshold
            && (value - expected).abs() >= cfg.min_abs_deviation)
            .then(|| {
                let severity = if z >= cfg.critical_z { Severity::Critical } else { Severity::Warning };
                let threshold = self.inv(est.mean + cfg.z_threshold * sigma);
                let mut a = Alert::new(
                    DETECTOR,
                    Some(&cfg.field),
                    severity,
                    entity,
                    window_start,
                    window_end,
                    value,
                    format!(
                        "{} of {entity} is {value:.1}, expected about {expected:.1} (z = {z:.1}, threshold {threshold:.1})",
                        cfg.field
                    ),
                );
                a.expected = Some(expected);
                a.threshold = Some(threshold);
                a.sample_record_ids.extend(record_id);
                a
            });
        let learn = if est.n >= cfg.warmup {
            let band = cfg.z_threshold * sigma;
            y.clamp(est.mean - band, est.mean + band)
        } else {
            y
        };
        self.stats
            .entry(entity.to_string())
            .or_default()
            .update(learn, cfg.alpha);
        alert
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
        // the outlier did not inflate the estimate
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
}
