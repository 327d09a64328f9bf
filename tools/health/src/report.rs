//! The health report: per-group verdicts, freshness, DLQ counts, as a table
//! or JSON, and the exit code a script can act on.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::evaluate::{Sample, Status, evaluate, worst};
use crate::kafka::{DlqCount, PartitionKey};
use crate::postgres::IngestFreshness;

/// Every group is OK.
pub const EXIT_OK: i32 = 0;
/// The worst group is WARN (consuming, but falling behind).
pub const EXIT_WARN: i32 = 3;
/// A group is STOP, STALL, REWIND or NOTFOUND.
pub const EXIT_ERROR: i32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The last sample's time.
    pub checked_at: DateTime<Utc>,
    pub samples: usize,
    /// From the first sample to the last.
    pub window_seconds: f64,
    pub groups: Vec<GroupHealth>,
    /// `None` when no database was given or it could not be read.
    pub ingest_freshness: Option<Vec<IngestFreshness>>,
    pub dlq: Vec<DlqCount>,
    /// What could not be looked at, in words.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupHealth {
    pub group: String,
    /// The worst partition's status.
    pub status: Status,
    pub total_lag: i64,
    pub partitions: Vec<PartitionHealth>,
    /// Topics the group should read that the broker does not have.
    pub missing_topics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionHealth {
    pub topic: String,
    pub partition: i32,
    /// `None`: the group never committed here.
    pub committed: Option<i64>,
    pub log_end: i64,
    pub lag: i64,
    /// `None`: no commit seen in the window (longer ago than the window).
    pub seconds_since_last_commit: Option<f64>,
    pub status: Status,
}

pub(crate) fn group_health(
    group: &str,
    series: Option<&BTreeMap<PartitionKey, Vec<Sample>>>,
    missing: Option<&Vec<String>>,
) -> GroupHealth {
    let partitions: Vec<PartitionHealth> = series
        .into_iter()
        .flatten()
        .filter_map(|((topic, partition), samples)| {
            let v = evaluate(samples)?;
            Some(PartitionHealth {
                topic: topic.clone(),
                partition: *partition,
                committed: v.committed,
                log_end: v.log_end,
                lag: v.lag,
                seconds_since_last_commit: v.seconds_since_last_commit,
                status: v.status,
            })
        })
        .collect();
    let missing_topics = missing.cloned().unwrap_or_default();
    let status = if partitions.is_empty() || !missing_topics.is_empty() {
        Status::NotFound.max(worst(partitions.iter().map(|p| p.status)))
    } else {
        worst(partitions.iter().map(|p| p.status))
    };
    GroupHealth {
        group: group.to_string(),
        status,
        total_lag: partitions.iter().map(|p| p.lag).sum(),
        partitions,
        missing_topics,
    }
}

impl HealthReport {
    pub fn group(&self, name: &str) -> Option<&GroupHealth> {
        self.groups.iter().find(|g| g.group == name)
    }

    pub fn all_ok(&self) -> bool {
        self.groups.iter().all(|g| g.status == Status::Ok)
    }

    /// [`EXIT_OK`], [`EXIT_WARN`] or [`EXIT_ERROR`], by the worst group.
    pub fn exit_code(&self) -> i32 {
        match worst(self.groups.iter().map(|g| g.status)) {
            Status::Ok => EXIT_OK,
            Status::Warn => EXIT_WARN,
            _ => EXIT_ERROR,
        }
    }

    /// A plain-text table for people.
    pub fn render_table(&self) -> String {
        let window = format!("{:.1}s", self.window_seconds);
        let mut rows = vec![[
            "GROUP".to_string(),
            "TOPIC".into(),
            "PART".into(),
            "COMMITTED".into(),
            "LOG END".into(),
            "LAG".into(),
            "LAST COMMIT".into(),
            "STATUS".into(),
        ]];
        for g in &self.groups {
            for p in &g.partitions {
                rows.push([
                    g.group.clone(),
                    p.topic.clone(),
                    p.partition.to_string(),
                    p.committed.map_or("-".into(), |c| c.to_string()),
                    p.log_end.to_string(),
                    p.lag.to_string(),
                    p.seconds_since_last_commit
                        .map_or(format!(">{window} ago"), |s| format!("{s:.1}s ago")),
                    p.status.to_string(),
                ]);
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "consumer groups ({} samples over {window}, Burrow's rules)",
            self.samples
        );
        if rows.len() > 1 {
            out.push_str(&table(&rows));
        }
        for g in &self.groups {
            let _ = write!(
                out,
                "group {}: {} (lag {}, {} partitions)",
                g.group,
                g.status,
                g.total_lag,
                g.partitions.len()
            );
            if !g.missing_topics.is_empty() {
                let _ = write!(out, "; missing topics: {}", g.missing_topics.join(", "));
            } else if g.partitions.is_empty() {
                out.push_str("; no committed offsets found");
            }
            out.push('\n');
        }
        match &self.ingest_freshness {
            Some(rows) if !rows.is_empty() => {
                out.push_str("\ningest freshness (ingest_progress)\n");
                let mut t = vec![[
                    "GROUP".to_string(),
                    "TOPIC".into(),
                    "PART".into(),
                    "LAST OFFSET".into(),
                    "AGE".into(),
                ]];
                for r in rows {
                    t.push([
                        r.group.clone(),
                        r.topic.clone(),
                        r.partition.to_string(),
                        r.last_offset.to_string(),
                        format!("{:.1}s", r.age_seconds),
                    ]);
                }
                out.push_str(&table(&t));
            }
            Some(_) => out.push_str("\ningest freshness: no progress recorded yet\n"),
            None => {}
        }
        if !self.dlq.is_empty() {
            out.push_str("\ndead-letter topics\n");
            let mut t = vec![["TOPIC".to_string(), "RECORDS".into(), "COUNTED BY".into()]];
            for d in &self.dlq {
                t.push([
                    d.topic.clone(),
                    d.records.to_string(),
                    if d.counted_by_reading {
                        "reading".into()
                    } else {
                        "offsets (read timed out)".into()
                    },
                ]);
            }
            out.push_str(&table(&t));
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: i64, committed: i64, end: i64) -> Sample {
        Sample {
            at: DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
            committed: Some(committed),
            log_start: 0,
            log_end: end,
            commit_seen_at: None,
            recorded_offset: None,
        }
    }

    fn report(groups: Vec<GroupHealth>) -> HealthReport {
        HealthReport {
            checked_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            samples: 2,
            window_seconds: 1.0,
            groups,
            ingest_freshness: None,
            dlq: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn group_is_its_worst_partition_and_exit_code_follows() {
        let mut series = BTreeMap::new();
        series.insert(("t".into(), 0), vec![sample(0, 5, 5), sample(1, 5, 5)]);
        series.insert(("t".into(), 1), vec![sample(0, 2, 9), sample(1, 2, 9)]);
        let g = group_health("g", Some(&series), None);
        assert_eq!(g.status, Status::Stop);
        assert_eq!(g.total_lag, 7);
        let r = report(vec![g]);
        assert_eq!(r.exit_code(), EXIT_ERROR);
        let table = r.render_table();
        assert!(
            table.contains("group g: STOP (lag 7, 2 partitions)"),
            "{table}"
        );
        assert!(table.contains(">1.0s ago"), "{table}");

        let mut ok = BTreeMap::new();
        ok.insert(("t".into(), 0), vec![sample(0, 5, 5), sample(1, 5, 5)]);
        assert_eq!(
            report(vec![group_health("g", Some(&ok), None)]).exit_code(),
            EXIT_OK
        );
    }

    #[test]
    fn a_group_with_nothing_to_judge_is_not_found() {
        let g = group_health("g", None, None);
        assert_eq!(g.status, Status::NotFound);
        let missing = vec!["gone".to_string()];
        assert_eq!(
            group_health("g", None, Some(&missing)).status,
            Status::NotFound
        );
        assert_eq!(report(vec![g]).exit_code(), EXIT_ERROR);
    }

    #[test]
    fn json_names_statuses_like_burrow() {
        let json = serde_json::to_value(Status::NotFound).unwrap();
        assert_eq!(json, "NOTFOUND");
        assert_eq!(serde_json::to_value(Status::Ok).unwrap(), "OK");
    }
}
