//! `BENCH_ONLY=classify`: what the format sniffer costs on the common path.
//!
//! The bench's usual records (JSON app logs, web access lines, sensor JSON,
//! Splunk key=value; no `log-format` header, so every one is sniffed) are
//! parsed twice in the same run: sniffed (`parse(value, None, …)`), and
//! with the header naming their format, which goes straight to that parser.
//! `sniffer_overhead` = direct rate / sniffed rate: 1.00 means sniffing is
//! free. The lines of `events/formats/` (every other format, sniffed) give
//! the rate on a mixed stream.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use logpipe_kafka::event::EventRecord;

/// Passes over the records per measurement; the median of `RUNS` is kept.
const PASSES: usize = 5;
const RUNS: usize = 5;

pub fn classify_bench(records: &[EventRecord], formats_dir: &Path) -> Result<()> {
    let common: Vec<(String, &'static str)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let text = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            // The order `sample_records` cycles through.
            let header = ["json", "web-access", "sensor", "splunk-kv"][i % 4];
            (text, header)
        })
        .collect();
    // The direct parser must agree with the sniffer on every record, or the
    // comparison would time different work.
    let now = Utc::now();
    for (text, header) in &common {
        let sniffed = logpipe_schema::parse(text, None, now)
            .with_context(|| format!("sniffed parse failed: {text}"))?;
        let direct = logpipe_schema::parse(text, Some(header), now)
            .with_context(|| format!("{header} parse failed: {text}"))?;
        if sniffed.first().map(|r| &r.source_type) != direct.first().map(|r| &r.source_type) {
            bail!("the sniffer and the {header} parser disagree on: {text}");
        }
    }
    let sniffed = rate(&common, |(text, _)| {
        logpipe_schema::parse(text, None, now).map(|r| r.len())
    });
    let direct = rate(&common, |(text, header)| {
        logpipe_schema::parse(text, Some(header), now).map(|r| r.len())
    });
    println!("RESULT classify_common_records_per_s={sniffed:.0}");
    println!("RESULT classify_direct_records_per_s={direct:.0}");
    println!("RESULT sniffer_overhead={:.2}", direct / sniffed);

    let mut mixed = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(formats_dir)
        .with_context(|| format!("reading {}", formats_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        mixed.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(|l| (l.to_string(), "")),
        );
    }
    let mixed_rate = rate(&mixed, |(text, _)| {
        logpipe_schema::parse(text, None, now).map(|r| r.len())
    });
    eprintln!(
        "classify: {} common records, {} lines of {} other formats",
        common.len(),
        mixed.len(),
        files.len()
    );
    println!("RESULT classify_mixed_records_per_s={mixed_rate:.0}");
    Ok(())
}

/// Records per second through `parse`, the median of several runs.
fn rate<T, E>(items: &[T], mut parse: impl FnMut(&T) -> Result<usize, E>) -> f64 {
    let mut rates = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut rows = 0usize;
        for _ in 0..PASSES {
            for item in items {
                rows += parse(item).unwrap_or(0);
            }
        }
        std::hint::black_box(rows);
        rates.push((items.len() * PASSES) as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}
