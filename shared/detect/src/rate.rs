//! Error-rate and HTTP 5xx-rate spikes per service per window.
//!
//! Alert when `rate ≥ max(min_rate, k × baseline)` and the window has at
//! least `min_count` records (HTTP records for the 5xx rate). The baseline is
//! an EWMA of the rate, updated only from non-alerting windows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Alert, Severity};
use crate::stats::poisson_tail;
use crate::window::ClosedWindow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKind {
    Error,
    Http5xx,
}

impl RateKind {
    pub fn detector(self) -> &'static str {
        match self {
            RateKind::Error => "error_rate",
            RateKind::Http5xx => "http_5xx_rate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateConfig {
    pub k: f64,
    pub min_rate: f64,
    pub min_count: u64,
    /// The window's bad count must also be this unlikely under the baseline
    /// (Poisson tail probability): a handful of errors in a small window is
    /// noise, not an incident. Bounds false alerts per clean window.
    #[serde(default = "default_max_p_value")]
    pub max_p_value: f64,
    /// Rate assumed before a baseline exists, and the floor of the rate the
    /// significance test assumes (a learned 0 % would make any error "significant").
    #[serde(default = "default_prior_rate")]
    pub prior_rate: f64,
    pub alpha: f64,
    /// Rate at or above which the alert is critical (else warning).
    pub critical_rate: f64,
}

fn default_max_p_value() -> f64 {
    1e-5
}

fn default_prior_rate() -> f64 {
    0.02
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            k: 3.0,
            min_rate: 0.10,
            min_count: 20,
            max_p_value: default_max_p_value(),
            prior_rate: default_prior_rate(),
            alpha: 0.1,
            critical_rate: 0.25,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateDetector {
    pub config: RateConfig,
    /// EWMA baseline rate per service.
    pub error_baseline: BTreeMap<String, f64>,
    pub http_5xx_baseline: BTreeMap<String, f64>,
}

impl RateDetector {
    pub fn new(config: RateConfig) -> RateDetector {
        RateDetector {
            config,
            ..RateDetector::default()
        }
    }

    /// Both rate checks for one closed window.
    pub fn observe_window(&mut self, w: &ClosedWindow) -> Vec<Alert> {
        let a = &w.agg;
        let samples = &a.error_sample_ids;
        [
            (RateKind::Error, a.errors, a.count),
            (RateKind::Http5xx, a.http_5xx, a.http_total),
        ]
        .into_iter()
        .filter_map(|(kind, bad, total)| {
            self.observe(
                kind,
                &w.entity,
                w.window_start,
                w.window_end,
                bad,
                total,
                samples,
            )
        })
        .collect()
    }

    /// One rate check; `bad` of `total` records were errors / 5xx.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        kind: RateKind,
        entity: &str,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        bad: u64,
        total: u64,
        samples: &[String],
    ) -> Option<Alert> {
        if total < self.config.min_count.max(1) {
            return None;
        }
        let rate = bad as f64 / total as f64;
        let cfg = self.config;
        let baselines = match kind {
            RateKind::Error => &mut self.error_baseline,
            RateKind::Http5xx => &mut self.http_5xx_baseline,
        };
        let baseline = baselines.get(entity).copied();
        let threshold = cfg.min_rate.max(cfg.k * baseline.unwrap_or(0.0));
        let p0 = baseline
            .unwrap_or(cfg.prior_rate)
            .max(cfg.prior_rate)
            .min(0.99);
        let unlikely = poisson_tail(bad, total as f64 * p0) <= cfg.max_p_value;
        if rate >= threshold && unlikely {
            let severity = if rate >= cfg.critical_rate {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let what = match kind {
                RateKind::Error => "error rate",
                RateKind::Http5xx => "HTTP 5xx rate",
            };
            let mut a = Alert::new(
                kind.detector(),
                None,
                severity,
                entity,
                window_start,
                window_end,
                rate,
                format!(
                    "{what} of {entity} is {:.1} % ({bad}/{total}), baseline {:.1} %, threshold {:.1} %",
                    rate * 100.0,
                    baseline.unwrap_or(0.0) * 100.0,
                    threshold * 100.0
                ),
            );
            a.expected = baseline;
            a.threshold = Some(threshold);
            a.sample_record_ids = samples.to_vec();
            return Some(a);
        }
        let next = match baseline {
            Some(b) => b + cfg.alpha.clamp(0.0, 1.0) * (rate - b),
            None => rate,
        };
        baselines.insert(entity.to_string(), next);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Rng, t};
    use chrono::Duration;

    fn run(det: &mut RateDetector, rng: &mut Rng, i: i64, p: f64, n: u64) -> Option<Alert> {
        let ws = t("2026-11-22T00:00:00Z") + Duration::minutes(i);
        let bad = (0..n).filter(|_| rng.uniform() < p).count() as u64;
        det.observe(
            RateKind::Error,
            "checkout",
            ws,
            ws + Duration::minutes(1),
            bad,
            n,
            &[],
        )
    }

    #[test]
    fn clean_windows_stay_quiet_and_spike_is_found() {
        let mut det = RateDetector::new(RateConfig::default());
        let mut rng = Rng::new(42);
        // 0 alerts over 1,000 clean windows (1 % errors, 200 records each).
        let fp = (0..1000)
            .filter(|&i| run(&mut det, &mut rng, i, 0.01, 200).is_some())
            .count();
        assert_eq!(fp, 0);
        let a = run(&mut det, &mut rng, 1000, 0.30, 200).expect("spike alert");
        assert_eq!(a.id, "error_rate:checkout:2026-11-22T16:40:00Z");
        assert_eq!(a.severity, Severity::Critical);
        // the spike did not move the baseline
        let b = det.error_baseline["checkout"];
        assert!(b < 0.02, "baseline {b}");
        // too few records: no alert even at 100 %
        assert!(run(&mut det, &mut rng, 1001, 1.0, 5).is_none());
    }

    #[test]
    fn small_noisy_windows_stay_quiet() {
        // 0 alerts over 2,000 windows of 25–60 records at 3 % errors: a few
        // errors in a small window are not significant.
        let mut det = RateDetector::new(RateConfig::default());
        let mut rng = Rng::new(9);
        let fp = (0..2000)
            .filter(|&i| {
                let n = 25 + rng.below(36);
                run(&mut det, &mut rng, i, 0.03, n).is_some()
            })
            .count();
        assert_eq!(fp, 0);
        // while a burst to 40 % in a 40-record window is found
        assert!(run(&mut det, &mut rng, 2000, 0.40, 40).is_some());
    }

    #[test]
    fn http_5xx_from_closed_window() {
        use crate::testutil::http;
        use crate::window::{WindowConfig, Windows};
        let mut w = Windows::new(WindowConfig::default());
        let t0 = t("2026-11-22T10:00:00Z");
        for i in 0..40 {
            let status = if i % 4 == 0 { 502 } else { 200 };
            w.add("web", &http(t0 + Duration::seconds(i), "web", status, 5.0));
        }
        let closed = w.close_until(t0 + Duration::minutes(1));
        let mut det = RateDetector::new(RateConfig::default());
        let alerts = det.observe_window(&closed[0]);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].detector, "http_5xx_rate");
        assert_eq!(alerts[0].sample_record_ids.len(), 5);
    }
}
