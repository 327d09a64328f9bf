//! Volume per entity per window against a seasonal (hour-of-week) baseline.
//!
//! Each entity has 168 hour-of-week slots and a global estimate, all
//! [`EwmaVar`]s. A slot is used once it has `min_slot_samples`; before that
//! the global estimate is. The band is `mean ± z·σ` where σ is at least the
//! Poisson floor `√mean` (and 1). Alerting windows update the baseline with
//! the value clamped to the band edge, so a lasting level shift is learned
//! slowly instead of never.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Alert, Prediction, SCHEMA_VERSION, Severity, alert_id};
use crate::stats::{EwmaVar, score};

pub const DETECTOR: &str = "volume";
pub const MODEL: &str = "seasonal_ewma";
pub const MODEL_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VolumeConfig {
    pub z: f64,
    pub alpha: f64,
    pub slot_alpha: f64,
    pub min_slot_samples: u64,
    /// No alerts before the global estimate has this many windows.
    pub warmup_windows: u64,
    pub min_abs_deviation: f64,
    /// |z| at or above which the alert is critical.
    pub critical_z: f64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            z: 3.0,
            alpha: 0.05,
            slot_alpha: 0.2,
            min_slot_samples: 4,
            warmup_windows: 30,
            min_abs_deviation: 10.0,
            critical_z: 6.0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityBaseline {
    pub global: EwmaVar,
    /// Hour of week (0 = Monday 00h … 167) → estimate.
    pub slots: BTreeMap<u16, EwmaVar>,
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
        let cfg = self.config;
        let base = self.entities.entry(entity.to_string()).or_default();
        let slot_key = hour_of_week(window_start);
        let est = match base.slots.get(&slot_key) {
            Some(s) if s.n >= cfg.min_slot_samples => s.clone(),
            _ => base.global.clone(),
        };
        let actual = count as f64;
        let warm = base.global.n >= cfg.warmup_windows;
        let mean = est.mean.max(0.0);
        let sigma = est.std().max(mean.sqrt()).max(1.0);
        let lower = (mean - cfg.z * sigma).max(0.0);
        let upper = mean + cfg.z * sigma;
        let z_abs = if est.n == 0 {
            0.0
        } else {
            (actual - mean).abs() / sigma
        };
        let outside = actual < lower || actual > upper;
        let alerting =
            warm && est.n > 0 && outside && (actual - mean).abs() >= cfg.min_abs_deviation;

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
            anomaly_score: if warm { score(z_abs, cfg.z) } else { 0.0 },
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
                    "record volume of {entity} is {count}, {dir} the expected band {lower:.0}–{upper:.0} (expected {mean:.0}, z = {z_abs:.1})"
                ),
            );
            a.expected = Some(mean);
            a.threshold = Some(if actual > upper { upper } else { lower });
            a
        });

        let learn = if alerting {
            actual.clamp(lower, upper)
        } else {
            actual
        };
        base.global.update(learn, cfg.alpha);
        base.slots
            .entry(slot_key)
            .or_default()
            .update(learn, cfg.slot_alpha);
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
        let (g1, g2) = (&back.entities["api"].global, &det.entities["api"].global);
        assert_eq!((g1.n, back.entities["api"].slots.len()), (g2.n, 168));
        assert!((g1.mean - g2.mean).abs() < 1e-9);
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
