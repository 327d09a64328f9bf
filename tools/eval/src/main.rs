//! `logpipe-eval` (`make eval`): prints `RESULT eval_<profile>_<split>=…`
//! for logpipe and `RESULT eval_baseline_<profile>_<split>=…` for the
//! EWMA z-score, plus the chosen thresholds and what was found per kind.

use logpipe_eval::baseline::EwmaZScore;
use logpipe_eval::generate::{Split, generate};
use logpipe_eval::nab::{PROFILES, Scored, sweep};
use logpipe_eval::{Detector, Logpipe};

/// Series per family and split.
const PER_FAMILY: usize = 10;

fn main() {
    let detectors: Vec<Box<dyn Detector>> = vec![
        Box::new(Logpipe(tuned())),
        Box::new(EwmaZScore::default()),
        Box::new(Old),
    ];
    for split in [Split::Tuning, Split::HeldBack] {
        let series = generate(split, PER_FAMILY);
        let windows: usize = series.iter().map(|s| s.windows.len()).sum();
        println!(
            "# {} split: {} series, {} labelled anomalies",
            split.name(),
            series.len(),
            windows
        );
        for d in &detectors {
            let scored: Vec<Scored<'_>> = series
                .iter()
                .map(|s| Scored {
                    series: s,
                    scores: d.score_series(s),
                })
                .collect();
            for p in &PROFILES {
                let (threshold, score) = sweep(&scored, p);
                let key = match d.name() {
                    "logpipe" => format!("eval_{}_{}", p.name, split.name()),
                    other => format!("eval_{other}_{}_{}", p.name, split.name()),
                };
                println!("RESULT {key}={score:.1}");
                println!("# {key}: threshold {threshold:.6}");
            }
            logpipe_eval::report_kinds(&scored, &PROFILES[0], &format!("{} {}", d.name(), split.name()));
        }
    }
}

/// TEMPORARY: the scorer before calibration (the CLI's zscore default).
struct Old;
impl Detector for Old {
    fn name(&self) -> &'static str {
        "old"
    }
    fn score_series(&self, series: &logpipe_eval::generate::Series) -> Vec<f64> {
        use logpipe_detect::outlier::{OutlierConfig, OutlierDetector};
        let cfg = OutlierConfig {
            field: "value".into(),
            log_transform: false,
            min_abs_deviation: 0.0,
            ..OutlierConfig::default()
        };
        let mut up = OutlierDetector::new(cfg.clone());
        let mut lo = OutlierDetector::new(cfg);
        let t = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        series
            .values
            .iter()
            .map(|&x| {
                let seen = up.assess("s", x);
                let s = if seen.samples >= 50 { logpipe_detect::stats::score(seen.z.abs(), 4.0) } else { 0.0 };
                up.observe("s", x, t, t, None);
                lo.observe("s", -x, t, t, None);
                s
            })
            .collect()
    }
}

/// TEMPORARY: settings from the environment while tuning.
fn tuned() -> logpipe_detect::calibrate::SeriesScorerConfig {
    let mut c = logpipe_detect::calibrate::SeriesScorerConfig::default();
    let get = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = get("W") { c.window = v as usize; }
    if let Some(v) = get("SA") { c.short_alpha = v; }
    if let Some(v) = get("LA") { c.long_alpha = v; }
    if let Some(v) = get("LF") { c.long_floor = v; }
    if let Some(v) = get("SEAS") { c.seasonality = v > 0.0; }
    if let Some(v) = get("SM") { c.calibrator.smoothing = v; }
    if let Some(v) = get("HA") { c.calibrator.history_alpha = v; }
    if let Some(v) = get("WU") { c.calibrator.warmup = v as u64; }
    c
}
