//! `make eval`: a labelled benchmark of synthetic series ([`generate`]),
//! scored the way the Numenta Anomaly Benchmark scores detectors ([`nab`]),
//! for logpipe's calibrated series scorer and a plain EWMA z-score
//! ([`baseline`]) in the same run.

pub mod baseline;
pub mod generate;
pub mod nab;

use chrono::DateTime;
use logpipe_detect::calibrate::{SeriesScorer, SeriesScorerConfig};

use crate::generate::Series;

/// A detector under evaluation: a fresh state per series, fed each point
/// once, returning its score before learning from it.
pub trait Detector {
    fn name(&self) -> &'static str;
    fn score_series(&self, series: &Series) -> Vec<f64>;
}

/// logpipe's numeric-series scorer with the given settings (the defaults
/// are what the CLI and the detect function use).
pub struct Logpipe(pub SeriesScorerConfig);

impl Detector for Logpipe {
    fn name(&self) -> &'static str {
        "logpipe"
    }
    fn score_series(&self, series: &Series) -> Vec<f64> {
        let mut scorer = SeriesScorer::new(self.0);
        series
            .times
            .iter()
            .zip(&series.values)
            .map(|(&t, &x)| {
                let at = DateTime::from_timestamp(t, 0).unwrap_or_default();
                scorer.score_then_learn(at, x).score
            })
            .collect()
    }
}

/// Prints, at the profile's best threshold, how many anomalies of each
/// kind were found (first detection inside the window), their median delay
/// in points after the onset, and the detections outside every window.
pub fn report_kinds(scored: &[nab::Scored<'_>], profile: &nab::Profile, label: &str) {
    use std::collections::BTreeMap;
    let (threshold, _) = nab::sweep(scored, profile);
    let mut kinds: BTreeMap<&str, (usize, usize, Vec<usize>)> = BTreeMap::new();
    let mut false_positives = 0usize;
    let mut by_family: BTreeMap<String, usize> = BTreeMap::new();
    for s in scored {
        let series = s.series;
        for (&(onset, kind), &(start, end)) in series.anomalies.iter().zip(&series.windows) {
            let e = kinds.entry(kind.name()).or_default();
            e.1 += 1;
            if let Some(i) = (start..end).find(|&i| s.scores[i] >= threshold) {
                e.0 += 1;
                e.2.push(i.saturating_sub(onset));
            }
        }
        let fp = (series.probation..s.scores.len())
            .filter(|&i| s.scores[i] >= threshold)
            .filter(|&i| !series.windows.iter().any(|&(a, b)| (a..b).contains(&i)))
            .count();
        false_positives += fp;
        let family = series.name.split('-').next().unwrap_or("");
        *by_family.entry(family.to_string()).or_default() += fp;
    }
    let parts: Vec<String> = kinds
        .into_iter()
        .map(|(k, (found, total, mut delays))| {
            delays.sort_unstable();
            let median = delays.get(delays.len() / 2).copied().unwrap_or(0);
            format!("{k} {found}/{total} (delay {median})")
        })
        .collect();
    println!(
        "# {label}: {}; {false_positives} points flagged outside windows",
        parts.join(", ")
    );
    if std::env::var_os("EVAL_VERBOSE").is_some() {
        println!("#   false positives by family: {by_family:?}");
    }
}
