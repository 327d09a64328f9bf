//! Error-rate and HTTP 5xx-rate spikes per service per window.
//!
//! Alert when the window has at least `min_count` records (HTTP records for
//! the 5xx rate), its rate reaches the threshold `min(max(min_rate, k ×
//! baseline), baseline + (1 − baseline) / 2)` (so a stream that is always
//! 60 % errors alerts from 80 %, not never), its bad count is unlikely under
//! the baseline (binomial tail ≤ `max_p_value`), and the entity's baseline
//! has seen `warmup_windows` judged windows: a level seen for the first time
//! is that stream's level, not an incident. The baseline is an EWMA of the
//! rate: every window teaches it during warm-up, non-alerting windows with
//! weight `alpha` afterwards, alerting ones with `alpha / 4` (so a lasting
//! change becomes the new normal in a few dozen windows, while a short burst
//! barely moves it).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Alert, Severity};
use crate::stats::binomial_tail;
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
    /// (binomial tail probability): a handful of errors in a small window is
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
    /// Judged windows (≥ `min_count` records) an entity's baseline needs
    /// before its rates may alert.
    #[serde(default = "default_warmup_windows")]
    pub warmup_windows: u64,
}

/// Default of [`RateConfig::warmup_windows`]: five windows (five minutes
/// at the default width) learn a stream's own steady level.
pub const DEFAULT_RATE_WARMUP_WINDOWS: u64 = 5;

fn default_warmup_windows() -> u64 {
    DEFAULT_RATE_WARMUP_WINDOWS
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
            warmup_windows: DEFAULT_RATE_WARMUP_WINDOWS,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateDetector {
    pub config: RateConfig,
    /// EWMA baseline rate per service.
    pub error_baseline: BTreeMap<String, f64>,
    pub http_5xx_baseline: BTreeMap<String, f64>,
    /// Judged windows behind each baseline, per kind (`error` / `http_5xx`
    /// then `:` and the entity). Baselines saved without it are warm.
    #[serde(default)]
    pub windows_seen: BTreeMap<String, u64>,
}

fn seen_key(kind: RateKind, entity: &str) -> String {
    match kind {
        RateKind::Error => format!("error:{entity}"),
        RateKind::Http5xx => format!("http_5xx:{entity}"),
    }
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
        let key = seen_key(kind, entity);
        // a baseline stored before warm-up was counted is an old one: warm
        let seen = match (self.windows_seen.get(&key), baseline) {
            (Some(&n), _) => n,
            (None, Some(_)) => cfg.warmup_windows,
            (None, None) => 0,
        };
        let warm = baseline.is_some() && seen >= cfg.warmup_windows;
        let b = baseline.unwrap_or(0.0);
        let threshold = cfg.min_rate.max(cfg.k * b).min(b + (1.0 - b) / 2.0);
        let p0 = baseline
            .unwrap_or(cfg.prior_rate)
            .max(cfg.prior_rate)
            .min(0.99);
        let unlikely = binomial_tail(bad, total, p0) <= cfg.max_p_value;
        let alerting = warm && rate >= threshold && unlikely;
        let weight = if !warm {
            1.0 / (seen + 1) as f64
        } else if alerting {
            cfg.alpha / 4.0
        } else {
            cfg.alpha
        }
        .clamp(0.0, 1.0);
        baselines.insert(entity.to_string(), b + weight * (rate - b));
        self.windows_seen.insert(key, seen.saturating_add(1));
        if !alerting {
            return None;
        }
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
                b * 100.0,
                threshold * 100.0
            ),
        );
        a.expected = baseline;
        a.threshold = Some(threshold);
        a.sample_record_ids = samples.to_vec();
        Some(a)
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
        // the spike barely moved the baseline (alerting windows weigh α/4)
        let b = det.error_baseline["checkout"];
        assert!(b < 0.025, "baseline {b}");
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

    /// Six hours of one-minute windows of a stream that is always 60 %
    /// `error` lines (80–120 records a window): no alert at all, from its
    /// very first window on; a burst to 95 % is still found in its first
    /// window.
    #[test]
    fn steady_high_error_share_is_normal_and_a_burst_is_still_found() {
        let mut det = RateDetector::new(RateConfig::default());
        let mut rng = Rng::new(17);
        for i in 0..360 {
            let n = 80 + rng.below(41);
            assert!(run(&mut det, &mut rng, i, 0.6, n).is_none(), "window {i}");
        }
        let b = det.error_baseline["checkout"];
        assert!((0.55..0.65).contains(&b), "baseline {b}");
        let a = run(&mut det, &mut rng, 360, 0.95, 100).expect("burst alert");
        assert!(a.threshold.is_some_and(|t| t <= 0.81), "{a:?}");
    }

    /// A lasting change becomes the new normal: 1 % → 30 % errors alerts
    /// at once, then stops within 40 windows (checked: the last alert).
    #[test]
    fn lasting_rate_change_becomes_the_new_normal() {
        let mut det = RateDetector::new(RateConfig::default());
        let mut rng = Rng::new(23);
        for i in 0..100 {
            run(&mut det, &mut rng, i, 0.01, 200);
        }
        let alerting: Vec<i64> = (100..300)
            .filter(|&i| run(&mut det, &mut rng, i, 0.30, 200).is_some())
            .collect();
        assert_eq!(alerting.first(), Some(&100));
        assert!(alerting.last().is_some_and(|&l| l < 140), "{alerting:?}");
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
        // a never-seen entity does not alert on its first windows ...
        assert!(
            RateDetector::new(RateConfig::default())
                .observe_window(&closed[0])
                .is_empty()
        );
        // ... and once warm on clean windows, the 25 % window does
        let mut rng = Rng::new(1);
        for i in 0..DEFAULT_RATE_WARMUP_WINDOWS as i64 {
            let ws = t0 + Duration::minutes(i + 1);
            for kind in [RateKind::Error, RateKind::Http5xx] {
                let bad = (0..40).filter(|_| rng.uniform() < 0.01).count() as u64;
                det.observe(kind, "web", ws, ws + Duration::minutes(1), bad, 40, &[]);
            }
        }
        let alerts = det.observe_window(&closed[0]);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].detector, "http_5xx_rate");
        assert_eq!(alerts[0].sample_record_ids.len(), 5);
    }
}
