//! Burrow's consumer-lag evaluation rules over a window of samples — pure,
//! no IO.
//!
//! Burrow (<https://github.com/linkedin/Burrow/wiki/Consumer-Lag-Evaluation-Rules>)
//! keeps, per partition, the last few *commits* a group made. Kafka does not
//! tell us when a commit happened, so we sample the committed offset and the
//! log end a few times and treat "the committed offset changed since the
//! previous sample" as a commit seen at that sample. An outside record of
//! commits (ingest's `ingest_progress.updated_at`) may add commit times that
//! did not move the offset — that is what tells STALL apart from STOP.
//!
//! Rules, in this order, for one partition:
//! 1. the latest lag is 0, or the lag touched 0 anywhere in the window → OK;
//! 2. the committed offset went back between two samples → REWIND;
//! 3. no commit seen for longer than the window (now − last commit > window)
//!    → STOP;
//! 4. commits were seen but the offset never moved (neither the Kafka
//!    commit nor the outside record's offset) → STALL;
//! 5. the offset moved but the lag never decreased between samples → WARN;
//! 6. otherwise (the lag is shrinking) → OK.
//!
//! A group's status is its worst partition's.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One observation of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    /// The group's committed offset (the next offset it will read); `None`
    /// when the group has never committed on this partition.
    pub committed: Option<i64>,
    /// First offset still in the log (where a group without a commit would
    /// start reading).
    pub log_start: i64,
    /// Best-known end of the log (high watermark). May be too low on brokers
    /// with a ListOffsets defect; lag clamps at 0 then.
    pub log_end: i64,
    /// When an outside record says the group last committed on this
    /// partition, if there is one (may be before the window).
    pub commit_seen_at: Option<DateTime<Utc>>,
    /// The next offset that outside record says the group will read. When
    /// it moves, the group is progressing even if its Kafka commit lags.
    pub recorded_offset: Option<i64>,
}

impl Sample {
    /// Where the group stands: its commit, or the log start without one.
    pub fn position(&self) -> i64 {
        self.committed.unwrap_or(self.log_start)
    }

    /// Records the group still has to read, never negative.
    pub fn lag(&self) -> i64 {
        (self.log_end - self.position()).max(0)
    }
}

/// Partition and group statuses, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Rewind,
    Stall,
    Stop,
    /// The group consumes nothing we could find (no topic, no commits).
    NotFound,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Rewind => "REWIND",
            Self::Stall => "STALL",
            Self::Stop => "STOP",
            Self::NotFound => "NOTFOUND",
        }
    }

    /// Burrow's three levels: OK, warning, error.
    pub fn is_error(self) -> bool {
        self > Self::Warn
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the window says about one partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub status: Status,
    /// At the last sample.
    pub committed: Option<i64>,
    /// At the last sample, never below the committed offset.
    pub log_end: i64,
    /// At the last sample, clamped at 0.
    pub lag: i64,
    /// Seconds from the last seen commit to the last sample; `None` when no
    /// commit was seen at all (then it is longer than the window).
    pub seconds_since_last_commit: Option<f64>,
}

/// Evaluates one partition's samples (oldest first). `None` for an empty
/// window.
pub fn evaluate(samples: &[Sample]) -> Option<Verdict> {
    let last = samples.last()?;
    let first = samples.first()?;
    let now = last.at;
    let window = now - first.at;
    let last_commit = last_commit_seen(samples);
    let status = status(samples, now, window, last_commit);
    Some(Verdict {
        status,
        committed: last.committed,
        log_end: last.log_end.max(last.position()),
        lag: last.lag(),
        seconds_since_last_commit: last_commit.map(|t| seconds(now - t)),
    })
}

fn status(
    samples: &[Sample],
    now: DateTime<Utc>,
    window: chrono::TimeDelta,
    last_commit: Option<DateTime<Utc>>,
) -> Status {
    if samples.iter().any(|s| s.lag() == 0) {
        return Status::Ok;
    }
    let pairs = || samples.windows(2).map(|w| (&w[0], &w[1]));
    let rewound = pairs().any(|(a, b)| match (a.committed, b.committed) {
        (Some(before), Some(after)) => after < before,
        // A commit that disappeared (offsets expired or deleted) starts over.
        (Some(_), None) => true,
        _ => false,
    });
    if rewound {
        return Status::Rewind;
    }
    if last_commit.is_none_or(|t| now - t > window) {
        return Status::Stop;
    }
    let moved = pairs().any(|(a, b)| {
        a.position() != b.position()
            || matches!((a.recorded_offset, b.recorded_offset), (Some(x), Some(y)) if x != y)
    });
    if !moved {
        return Status::Stall;
    }
    let lag_never_fell = pairs().all(|(a, b)| b.lag() >= a.lag());
    if lag_never_fell {
        return Status::Warn;
    }
    Status::Ok
}

/// The latest commit time evidence: a sample at which the offset changed,
/// or an outside record's commit time.
fn last_commit_seen(samples: &[Sample]) -> Option<DateTime<Utc>> {
    let moved = samples
        .windows(2)
        .filter(|w| w[0].committed != w[1].committed && w[1].committed.is_some())
        .map(|w| w[1].at);
    let recorded = samples.iter().filter_map(|s| s.commit_seen_at);
    // An outside clock may run ahead of ours: never later than the sample.
    moved
        .chain(recorded)
        .max()
        .map(|t| t.min(samples.last().map_or(t, |s| s.at)))
}

/// The group's status: the worst of its partitions (OK for none).
pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses.into_iter().max().unwrap_or(Status::Ok)
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds().max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    /// Samples one second apart from (committed, log_end) pairs.
    fn series(points: &[(Option<i64>, i64)]) -> Vec<Sample> {
        points
            .iter()
            .enumerate()
            .map(|(i, &(committed, log_end))| Sample {
                at: t(i as i64),
                committed,
                log_start: 0,
                log_end,
                commit_seen_at: None,
                recorded_offset: None,
            })
            .collect()
    }

    fn status_of(points: &[(Option<i64>, i64)]) -> Status {
        evaluate(&series(points)).unwrap().status
    }

    #[test]
    fn empty_window_has_no_verdict() {
        assert_eq!(evaluate(&[]), None);
    }

    #[test]
    fn lag_zero_now_is_ok() {
        let v = evaluate(&series(&[(Some(10), 10), (Some(10), 10), (Some(10), 10)])).unwrap();
        assert_eq!(v.status, Status::Ok);
        assert_eq!(v.lag, 0);
        // Nothing moved and nothing recorded: no commit seen.
        assert_eq!(v.seconds_since_last_commit, None);
    }

    #[test]
    fn lag_touching_zero_in_the_window_is_ok() {
        // Caught up, then new records arrived and nobody committed yet.
        assert_eq!(
            status_of(&[(Some(10), 10), (Some(10), 15), (Some(10), 20)]),
            Status::Ok
        );
    }

    #[test]
    fn committed_offset_going_back_is_rewind() {
        assert_eq!(
            status_of(&[(Some(50), 100), (Some(60), 100), (Some(20), 100)]),
            Status::Rewind
        );
        // A commit that vanished is a rewind too.
        assert_eq!(
            status_of(&[(Some(50), 100), (None, 100), (None, 100)]),
            Status::Rewind
        );
    }

    #[test]
    fn no_commit_during_the_window_with_lag_is_stop() {
        let v = evaluate(&series(&[(Some(8), 20), (Some(8), 20), (Some(8), 20)])).unwrap();
        assert_eq!(v.status, Status::Stop);
        assert_eq!((v.committed, v.log_end, v.lag), (Some(8), 20, 12));
        assert_eq!(v.seconds_since_last_commit, None);
    }

    #[test]
    fn a_group_that_never_committed_with_records_waiting_is_stop() {
        let v = evaluate(&series(&[(None, 5), (None, 5)])).unwrap();
        assert_eq!(v.status, Status::Stop);
        assert_eq!(v.lag, 5);
    }

    #[test]
    fn an_old_outside_commit_time_is_still_stop() {
        let mut s = series(&[(Some(8), 20), (Some(8), 20), (Some(8), 20)]);
        for x in &mut s {
            x.commit_seen_at = Some(t(-60));
        }
        let v = evaluate(&s).unwrap();
        assert_eq!(v.status, Status::Stop);
        assert_eq!(v.seconds_since_last_commit, Some(62.0));
    }

    #[test]
    fn commits_without_progress_are_stall() {
        // ingest_progress says the group keeps committing; the offset sits.
        let mut s = series(&[(Some(8), 20), (Some(8), 20), (Some(8), 20)]);
        s[1].commit_seen_at = Some(t(1));
        s[2].commit_seen_at = Some(t(2));
        let v = evaluate(&s).unwrap();
        assert_eq!(v.status, Status::Stall);
        assert_eq!(v.seconds_since_last_commit, Some(0.0));
    }

    #[test]
    fn recorded_progress_while_the_kafka_commit_sits_is_not_stall() {
        // ingest_progress advances (ingest handles batches) but the Kafka
        // commit has not moved yet: progressing, lag not falling, WARN.
        let mut s = series(&[(Some(8), 20), (Some(8), 20), (Some(8), 20)]);
        for (i, x) in s.iter_mut().enumerate() {
            x.commit_seen_at = Some(t(i as i64));
            x.recorded_offset = Some(9 + i as i64);
        }
        assert_eq!(evaluate(&s).unwrap().status, Status::Warn);
    }

    #[test]
    fn progress_with_growing_lag_is_warn() {
        // Consuming, but the producer is faster.
        let v = evaluate(&series(&[(Some(0), 10), (Some(5), 20), (Some(10), 30)])).unwrap();
        assert_eq!(v.status, Status::Warn);
        assert_eq!(v.lag, 20);
        assert_eq!(v.seconds_since_last_commit, Some(0.0));
        // Constant lag counts as "not decreasing" too (Burrow's rule 5).
        assert_eq!(
            status_of(&[(Some(0), 10), (Some(5), 15), (Some(10), 20)]),
            Status::Warn
        );
    }

    #[test]
    fn progress_with_shrinking_lag_is_ok() {
        assert_eq!(
            status_of(&[(Some(0), 30), (Some(10), 30), (Some(20), 30)]),
            Status::Ok
        );
        // One decrease anywhere is enough.
        assert_eq!(
            status_of(&[(Some(0), 10), (Some(5), 20), (Some(15), 22)]),
            Status::Ok
        );
    }

    #[test]
    fn a_commit_early_in_the_window_then_silence_is_not_yet_stop() {
        // Moved at t=1, last sample at t=3: silent for 2 s of a 3 s window.
        let v = evaluate(&series(&[
            (Some(0), 30),
            (Some(10), 30),
            (Some(10), 30),
            (Some(10), 30),
        ]))
        .unwrap();
        assert_eq!(v.status, Status::Ok);
        assert_eq!(v.seconds_since_last_commit, Some(2.0));
    }

    #[test]
    fn silence_longer_than_the_window_after_an_outside_commit_is_stop() {
        let mut s = series(&[(Some(10), 30), (Some(10), 30), (Some(10), 30)]);
        s[0].commit_seen_at = Some(t(0) - TimeDelta::milliseconds(1));
        assert_eq!(evaluate(&s).unwrap().status, Status::Stop);
    }

    #[test]
    fn a_too_low_log_end_clamps_lag_at_zero() {
        // Tansu's ListOffsets may answer below the committed offset.
        let v = evaluate(&series(&[(Some(2571), 1715), (Some(2571), 1715)])).unwrap();
        assert_eq!(v.lag, 0);
        assert_eq!(v.log_end, 2571);
        assert_eq!(v.status, Status::Ok);
    }

    #[test]
    fn an_outside_clock_ahead_of_ours_is_capped_at_the_sample() {
        let mut s = series(&[(Some(8), 20), (Some(8), 20)]);
        s[1].commit_seen_at = Some(t(5));
        let v = evaluate(&s).unwrap();
        assert_eq!(v.seconds_since_last_commit, Some(0.0));
        assert_eq!(v.status, Status::Stall);
    }

    #[test]
    fn group_status_is_the_worst_partition() {
        assert_eq!(worst([]), Status::Ok);
        assert_eq!(worst([Status::Ok, Status::Warn, Status::Ok]), Status::Warn);
        assert_eq!(
            worst([Status::Warn, Status::Stop, Status::Stall]),
            Status::Stop
        );
        assert_eq!(worst([Status::Rewind, Status::Warn]), Status::Rewind);
        assert!(Status::Stall.is_error() && !Status::Warn.is_error());
    }
}
