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
        Box::new(Logpipe(Default::default())),
        Box::new(EwmaZScore::default()),
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
            logpipe_eval::report_kinds(
                &scored,
                &PROFILES[0],
                &format!("{} {}", d.name(), split.name()),
            );
        }
    }
}
