use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;

fn ledger(records: &[(&str, i32, i64)], previous: &[((&str, i32), i64)]) -> Ledger {
    let mut l = Ledger::new(records.iter().copied());
    let previous: HashMap<PartitionKey, i64> = previous
        .iter()
        .map(|((t, p), o)| ((t.to_string(), *p), *o))
        .collect();
    l.skip_handled(&previous);
    l
}

#[test]
fn all_done_advances_every_partition_to_its_last_offset() {
    let mut l = ledger(&[("t", 0, 5), ("t", 0, 6), ("t", 1, 9)], &[]);
    for i in 0..3 {
        l.done(i);
    }
    let s = l.settle();
    assert_eq!(s.counts.done, 3);
    assert_eq!(
        s.progress,
        vec![
            Progress {
                topic: "t".into(),
                partition: 0,
                last_offset: 6
            },
            Progress {
                topic: "t".into(),
                partition: 1,
                last_offset: 9
            },
        ]
    );
    assert!(s.resume.is_empty());
    assert_eq!(s.next_offsets[&("t".to_string(), 0)], 7);
    assert!(s.respond((), ReportMode::WholeBatch).is_ok());
}

#[test]
fn records_at_or_below_progress_are_duplicates_and_progress_never_moves_back() {
    let mut l = ledger(&[("t", 0, 4), ("t", 0, 5), ("t", 0, 6)], &[(("t", 0), 5)]);
    assert!(!l.is_open(0) && !l.is_open(1) && l.is_open(2));
    l.done(0); // ignored: a duplicate stays a duplicate
    l.done(2);
    let s = l.settle();
    assert_eq!((s.counts.duplicate, s.counts.done), (2, 1));
    assert_eq!(s.progress[0].last_offset, 6);

    let l = ledger(&[("t", 0, 4)], &[(("t", 0), 5)]);
    assert!(l.settle().progress.is_empty());
}

#[test]
fn a_retry_stops_its_partition_and_hands_back_the_rest() {
    let mut l = ledger(&[("t", 0, 1), ("t", 0, 2), ("t", 0, 3), ("t", 1, 7)], &[]);
    l.done(0);
    l.retry(1, "broker unreachable", true);
    assert!(!l.is_open(2), "behind a retry");
    l.done(2);
    l.dead_letter(3, "invalid_json", "eof");
    let s = l.settle();
    assert_eq!(s.counts.done, 1);
    assert_eq!(s.counts.retry, 2);
    assert_eq!(s.counts.dead_lettered, 1);
    assert_eq!(s.counts.dead_letter_classes["invalid_json"], 1);
    assert_eq!(s.resume[&("t".to_string(), 0)], 2);
    assert_eq!(s.progress.len(), 2);
    assert_eq!(s.progress[0].last_offset, 1);
    assert_eq!(s.progress[1].last_offset, 7);
    assert_eq!(s.cause.as_deref(), Some("broker unreachable"));

    let r = s.respond("summary", ReportMode::ItemFailures).unwrap();
    assert_eq!(
        r.batch.batch_item_failures,
        vec![BatchItemFailure::new("t", 0, 2)]
    );
    let e = s.respond("summary", ReportMode::WholeBatch).unwrap_err();
    assert_eq!(e.retry, 2);
    assert!(e.to_string().contains("broker unreachable"));
}

#[test]
fn a_retry_at_the_first_offset_stores_no_progress_for_that_partition() {
    let mut l = ledger(&[("t", 0, 3), ("t", 0, 4)], &[(("t", 0), 2)]);
    l.retry(0, "db down", true);
    l.done(1);
    let s = l.settle();
    assert!(s.progress.is_empty());
    assert_eq!(s.next_offsets[&("t".to_string(), 0)], 3);
}

#[test]
fn an_undecided_record_is_a_retry() {
    let mut l = ledger(&[("t", 0, 1), ("t", 0, 2)], &[]);
    l.done(0);
    let s = l.settle();
    assert_eq!(s.counts.retry, 1);
    assert_eq!(s.resume[&("t".to_string(), 0)], 2);
}

#[test]
fn a_retried_record_without_coordinates_retries_the_whole_batch() {
    let mut l = ledger(&[("t", -1, -1), ("t", 0, 1)], &[]);
    l.retry(0, "dead letter not delivered", true);
    assert!(l.is_stopped(1));
    let s = l.settle();
    assert!(s.whole_batch);
    assert!(s.respond((), ReportMode::ItemFailures).is_err());

    // Dead-lettered, it costs nothing.
    let mut l = ledger(&[("t", -1, -1), ("t", 0, 1)], &[]);
    l.dead_letter(0, "malformed_record", "no partition");
    l.done(1);
    let s = l.settle();
    assert!(!s.whole_batch);
    assert_eq!(s.progress[0].last_offset, 1);
    assert!(s.respond((), ReportMode::WholeBatch).is_ok());
}

#[test]
fn retries_are_final_and_retry_all_spares_duplicates() {
    let mut l = ledger(&[("t", 0, 1), ("t", 0, 2), ("t", 0, 3)], &[(("t", 0), 1)]);
    l.retry(1, "x", false);
    l.done(1);
    assert_eq!(
        l.disposition(1),
        Some(&Disposition::Retry {
            cause: "x".into(),
            transient: false
        })
    );
    l.retry_all("commit failed", true);
    let s = l.settle();
    assert_eq!((s.counts.duplicate, s.counts.retry), (1, 2));
    assert_eq!(s.counts.retry_permanent, 1);
}

#[test]
fn partitions_are_distinct_and_sorted() {
    let l = ledger(&[("b", 1, 1), ("a", 2, 1), ("b", 1, 2), ("a", -1, -1)], &[]);
    assert_eq!(
        l.partitions(),
        vec![("a".to_string(), 2), ("b".to_string(), 1)]
    );
}

/// What a phase says about a record in the property tests.
#[derive(Debug, Clone)]
enum Said {
    Nothing,
    Done,
    DeadLetter,
    Retry,
    DoneThenRetry,
}

fn said() -> impl Strategy<Value = Said> {
    prop_oneof![
        1 => Just(Said::Nothing),
        6 => Just(Said::Done),
        2 => Just(Said::DeadLetter),
        2 => Just(Said::Retry),
        1 => Just(Said::DoneThenRetry),
    ]
}

/// A batch: records over up to 3 partitions with distinct offsets, in any
/// order, some without coordinates, a stored progress per partition.
/// Records `(partition, offset, what is said)` and a stored progress per partition.
type Batch = (Vec<(i32, i64, Said)>, Vec<Option<i64>>);

fn batch() -> impl Strategy<Value = Batch> {
    let records = proptest::collection::vec((-1i32..3, 0i64..40, said()), 0..60)
        .prop_map(|mut records| {
            let mut seen = std::collections::HashSet::new();
            records.retain(|(p, o, _)| *p < 0 || seen.insert((*p, *o)));
            records
        })
        .prop_shuffle();
    (
        records,
        proptest::collection::vec(proptest::option::of(0i64..40), 3),
    )
}

proptest! {
    #[test]
    fn counts_add_up_and_progress_never_passes_an_unprocessed_offset(
        (records, previous) in batch()
    ) {
        let coords: Vec<(&str, i32, i64)> = records
            .iter()
            .map(|(p, o, _)| ("t", *p, if *p < 0 { -1 } else { *o }))
            .collect();
        let previous: HashMap<PartitionKey, i64> = previous
            .iter()
            .enumerate()
            .filter_map(|(p, o)| o.map(|o| (("t".to_string(), p as i32), o)))
            .collect();
        let mut l = Ledger::new(coords.iter().copied());
        l.skip_handled(&previous);
        for (i, (_, _, s)) in records.iter().enumerate() {
            match s {
                Said::Nothing => {}
                Said::Done => l.done(i),
                Said::DeadLetter => l.dead_letter(i, "c", "m"),
                Said::Retry => l.retry(i, "r", true),
                Said::DoneThenRetry => {
                    l.done(i);
                    l.retry(i, "later phase failed", false);
                }
            }
        }
        let s = l.settle();
        let c = &s.counts;
        prop_assert_eq!(c.records_in, records.len());
        prop_assert_eq!(c.done + c.duplicate + c.dead_lettered + c.retry, c.records_in);
        prop_assert_eq!(c.dead_letter_classes.values().sum::<usize>(), c.dead_lettered);
        prop_assert_eq!(s.dispositions.len(), records.len());

        // Per partition: the first unhandled offset is the resume point,
        // progress is below it and above the stored progress, and every
        // record up to progress is handled.
        let mut first_unhandled: BTreeMap<i32, i64> = BTreeMap::new();
        for ((p, o, _), d) in records.iter().zip(&s.dispositions) {
            if *p >= 0 && matches!(d, Disposition::Retry { .. }) {
                let f = first_unhandled.entry(*p).or_insert(*o);
                *f = (*f).min(*o);
            }
        }
        for ((p, o, _), d) in records.iter().zip(&s.dispositions) {
            if *p >= 0 && first_unhandled.get(p).is_some_and(|f| o > f) {
                let retried = matches!(d, Disposition::Retry { .. });
                prop_assert!(retried, "behind a retry: {:?}", d);
            }
        }
        for pr in &s.progress {
            if let Some(f) = first_unhandled.get(&pr.partition) {
                prop_assert!(pr.last_offset < *f);
            }
            if let Some(prev) = previous.get(&(pr.topic.clone(), pr.partition)) {
                prop_assert!(pr.last_offset > *prev);
            }
            for ((p, o, _), d) in records.iter().zip(&s.dispositions) {
                if *p == pr.partition && *o <= pr.last_offset {
                    let handled = !matches!(d, Disposition::Retry { .. });
                    prop_assert!(handled);
                }
            }
        }
        for (p, f) in &first_unhandled {
            prop_assert_eq!(s.resume.get(&("t".to_string(), *p)), Some(f));
            prop_assert_eq!(s.next_offsets.get(&("t".to_string(), *p)), Some(f));
        }
        prop_assert_eq!(s.resume.len(), first_unhandled.len());

        // The response: an error whenever something is retried and the
        // mapping cannot be told which; a list otherwise.
        let retry_without_coords = records
            .iter()
            .zip(&s.dispositions)
            .any(|((p, _, _), d)| *p < 0 && matches!(d, Disposition::Retry { .. }));
        prop_assert_eq!(s.whole_batch, retry_without_coords);
        match s.respond((), ReportMode::ItemFailures) {
            Ok(r) => {
                prop_assert!(!s.whole_batch);
                prop_assert_eq!(r.batch.batch_item_failures.len(), first_unhandled.len());
            }
            Err(e) => {
                prop_assert!(s.whole_batch);
                prop_assert_eq!(e.retry, c.retry);
            }
        }
        prop_assert_eq!(s.respond((), ReportMode::WholeBatch).is_err(), c.retry > 0);
    }
}
