//! Model-based and fault-injection tests of the store: random sequences of
//! appends, checkpoints, clean closes and crashes with torn tails, checked
//! against a plain list of acknowledged batches.

use std::sync::Arc;

use logpost_shared::batch::{BatchBuilder, ProducerInfo, check, records_to_owned};
use logpost_shared::compression::Compression;
use proptest::prelude::*;

use super::faults::Faults;
use super::partition::{ENOSPC, Partition, PartitionSettings, RetentionPolicy};
use super::read::{offset_for_time, read_from};
use super::{StoreError, partition::MAX_FRAME_BYTES};

fn settings(segment_bytes: u64) -> PartitionSettings {
    PartitionSettings {
        segment_bytes,
        segment_age: None,
        index_interval_bytes: 256,
    }
}

fn batch(tag: u32, records: u32, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.set_producer(ProducerInfo {
        producer_id: i64::from(tag % 3),
        producer_epoch: 0,
        base_sequence: 0,
    });
    for i in 0..records {
        b.append(
            ts + i64::from(i),
            None,
            Some(format!("batch {tag} record {i} {}", "x".repeat((tag % 40) as usize)).as_bytes()),
            &[],
        );
    }
    b.finish(if tag.is_multiple_of(2) {
        Compression::Gzip { level: 1 }
    } else {
        Compression::None
    })
    .unwrap()
}

fn open(dir: &std::path::Path, segment_bytes: u64, faults: Option<Arc<Faults>>) -> Partition {
    Partition::open(Arc::from("t"), 0, dir, settings(segment_bytes), faults)
        .unwrap()
        .0
}

/// Every batch from the log start, with its base offset and record values.
fn read_all(p: &Partition) -> Vec<(i64, Vec<Vec<u8>>)> {
    let view = p.view();
    let fetched = read_from(&view, view.log_start_offset, usize::MAX).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < fetched.frames.len() {
        let h = logpost_shared::batch::BatchHeader::parse(&fetched.frames[pos..]).unwrap();
        let frame = &fetched.frames[pos..pos + h.frame_len()];
        check(frame).unwrap();
        let values = records_to_owned(frame, MAX_FRAME_BYTES)
            .unwrap()
            .into_iter()
            .map(|r| r.value.unwrap())
            .collect();
        out.push((h.base_offset, values));
        pos += h.frame_len();
    }
    assert_eq!(fetched.next_offset, view.high_watermark);
    out
}

fn values_of(frame: &[u8]) -> Vec<Vec<u8>> {
    records_to_owned(frame, MAX_FRAME_BYTES)
        .unwrap()
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        batches: u8,
        records: u8,
    },
    Checkpoint,
    CleanReopen,
    /// A crash during an unacknowledged write: part of a batch, or garbage,
    /// reached the end of the active segment.
    CrashTorn {
        keep_bytes: u16,
        garbage: bool,
    },
    CrashClean,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..4, 1u8..20).prop_map(|(batches, records)| Op::Append { batches, records }),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::CleanReopen),
        2 => (0u16..400, any::<bool>()).prop_map(|(keep_bytes, garbage)| Op::CrashTorn { keep_bytes, garbage }),
        1 => Just(Op::CrashClean),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of appends, rolls, checkpoints, crashes with torn tails
    /// and reopens: every acknowledged batch is readable, in order, at the
    /// offsets it was given, and nothing else is.
    #[test]
    fn acknowledged_batches_survive_any_crash(ops in proptest::collection::vec(op(), 1..40), segment_bytes in 600u64..4000) {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path(), segment_bytes, None);
        let mut model: Vec<(i64, Vec<Vec<u8>>)> = Vec::new();
        let mut tag = 0u32;
        for op in ops {
            match op {
                Op::Append { batches, records } => {
                    let frames: Vec<Vec<u8>> = (0..batches).map(|_| { tag += 1; batch(tag, u32::from(records), 1000 + i64::from(tag)) }).collect();
                    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                    let summaries = p.append_frames(&refs, true).unwrap();
                    for (s, f) in summaries.iter().zip(&frames) {
                        model.push((s.base_offset, values_of(f)));
                    }
                }
                Op::Checkpoint => { p.checkpoint().unwrap(); }
                Op::CleanReopen => { p.close(); drop(p); p = open(dir.path(), segment_bytes, None); }
                Op::CrashTorn { keep_bytes, garbage } => {
                    let view = p.view();
                    let active = view.segments.last().unwrap();
                    let path = dir.path().join(format!("{:020}.log", active.base_offset));
                    drop(view);
                    drop(p);
                    let mut tail = if garbage { vec![0xAB; usize::from(keep_bytes) + 1] } else { batch(9999, 30, 5) };
                    tail.truncate(usize::from(keep_bytes).min(tail.len().saturating_sub(1)));
                    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
                    std::io::Write::write_all(&mut f, &tail).unwrap();
                    p = open(dir.path(), segment_bytes, None);
                }
                Op::CrashClean => { drop(p); p = open(dir.path(), segment_bytes, None); }
            }
            let got = read_all(&p);
            prop_assert_eq!(&got, &model);
            let expected_hw = model.last().map_or(0, |(base, v)| base + v.len() as i64);
            prop_assert_eq!(p.view().high_watermark, expected_hw);
        }
    }
}

#[test]
fn reads_seek_by_offset_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), 2000, None);
    let mut bases = Vec::new();
    for i in 0..50u32 {
        let f = batch(i, 5, 10_000 + i64::from(i) * 100);
        bases.push(p.append_frames(&[&f], true).unwrap()[0].base_offset);
    }
    let view = p.view();
    assert!(view.segments.len() > 3, "small segments roll");
    // Every offset reads from the batch holding it.
    for offset in 0..view.high_watermark {
        let r = read_from(&view, offset, 1).unwrap();
        let h = logpost_shared::batch::BatchHeader::parse(&r.frames).unwrap();
        assert!(
            h.base_offset <= offset && offset <= h.last_offset(),
            "offset {offset} read batch {}",
            h.base_offset
        );
        assert_eq!(r.next_offset, h.last_offset() + 1);
    }
    // The end is a valid empty read; beyond it and before the start are errors.
    assert!(read_from(&view, view.high_watermark, 100).unwrap().frames.is_empty());
    assert!(read_from(&view, view.high_watermark + 1, 100).is_err());
    // By time: batch i holds timestamps 10_000 + 100 i + 0..5.
    assert_eq!(offset_for_time(&view, 0).unwrap(), Some(0));
    assert_eq!(
        offset_for_time(&view, 10_000 + 100 * 7 + 2).unwrap(),
        Some(bases[7] + 2)
    );
    assert_eq!(offset_for_time(&view, 10_000 + 100 * 7 + 50).unwrap(), Some(bases[8]));
    assert_eq!(offset_for_time(&view, 99_999_999).unwrap(), None);
}

#[test]
fn recovery_scans_only_since_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let p = open(dir.path(), 1 << 30, None);
        for i in 0..200u32 {
            p.append_frames(&[&batch(i, 10, 1)], true).unwrap();
        }
        p.checkpoint().unwrap();
        p.append_frames(&[&batch(1000, 10, 1)], true).unwrap();
        // crash: no close
    }
    let (p, report) = Partition::open(Arc::from("t"), 0, dir.path(), settings(1 << 30), None).unwrap();
    assert!(report.snapshot_used);
    let last = batch(1000, 10, 1).len() as u64;
    assert_eq!(
        report.scanned_bytes, last,
        "only the batch after the checkpoint is scanned"
    );
    assert_eq!(p.view().high_watermark, 2010);
    // Producer state survived: from the snapshot plus the replayed batch.
    assert_eq!(
        p.producer(1).unwrap().last_offset,
        2009,
        "batch 1000 of producer 1 holds offsets 2000..=2009"
    );
}

#[test]
fn missing_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let p = open(dir.path(), 1500, None);
        for i in 0..40u32 {
            p.append_frames(&[&batch(i, 5, 1)], true).unwrap();
        }
        p.close();
    }
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "index") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let p = open(dir.path(), 1500, None);
    let view = p.view();
    for offset in (0..view.high_watermark).step_by(7) {
        let r = read_from(&view, offset, 1).unwrap();
        let h = logpost_shared::batch::BatchHeader::parse(&r.frames).unwrap();
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
    assert!(
        view.segments
            .iter()
            .all(|s| s.len == 0 || !s.index.read().unwrap().is_empty())
    );
}

#[test]
fn disk_full_fails_cleanly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::new());
    let p = open(dir.path(), 1 << 20, Some(Arc::clone(&faults)));
    p.append_frames(&[&batch(1, 3, 1)], true).unwrap();
    let before = read_all(&p);
    faults.fail_writes(Some(ENOSPC));
    let err = p.append_frames(&[&batch(2, 3, 1)], true).unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
    assert_eq!(read_all(&p), before, "nothing partial is visible");
    faults.fail_writes(None);
    let s = p.append_frames(&[&batch(3, 3, 1)], true).unwrap();
    assert_eq!(s[0].base_offset, 3, "offsets continue without a hole");
    drop(p);
    let p = open(dir.path(), 1 << 20, None);
    assert_eq!(read_all(&p).len(), 2);
}

#[test]
fn failed_fsync_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::new());
    let p = open(dir.path(), 1 << 20, Some(Arc::clone(&faults)));
    faults.fail_syncs(Some(5)); // EIO
    assert!(p.append_frames(&[&batch(1, 3, 1)], true).is_err());
    faults.fail_syncs(None);
    let err = p.append_frames(&[&batch(2, 3, 1)], true).unwrap_err();
    assert!(
        matches!(err, StoreError::Poisoned { .. }),
        "a later append must be refused: {err}"
    );
    drop(p);
    // Reopening runs recovery and accepts appends again.
    let p = open(dir.path(), 1 << 20, None);
    assert!(p.append_frames(&[&batch(3, 3, 1)], true).is_ok());
}

#[test]
fn retention_deletes_oldest_sealed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), 1000, None);
    for i in 0..60u32 {
        p.append_frames(&[&batch(i, 4, 1_000 + i64::from(i))], true).unwrap();
    }
    let segments = p.view().segments.len();
    assert!(segments > 5);
    let total = p.view().size_bytes();
    let deleted = p.enforce_retention(
        RetentionPolicy {
            bytes: Some(total / 2),
            age: None,
        },
        0,
    );
    assert!(deleted > 0);
    let view = p.view();
    assert!(view.size_bytes() <= total / 2 + 1000);
    assert!(view.log_start_offset > 0);
    assert_eq!(
        read_from(&view, view.log_start_offset, usize::MAX).unwrap().next_offset,
        view.high_watermark
    );
    assert!(read_from(&view, 0, 10).is_err(), "deleted offsets are out of range");
    // Age: everything sealed is older than "now - 1 ms" at a far future now.
    p.enforce_retention(
        RetentionPolicy {
            bytes: None,
            age: Some(std::time::Duration::from_millis(1)),
        },
        i64::MAX / 2,
    );
    assert_eq!(p.view().segments.len(), 1, "the active segment always stays");
    // Producer state outlives the deleted segments.
    assert!(p.producer(0).is_some());
    drop(p);
    let p = open(dir.path(), 1000, None);
    assert_eq!(p.view().segments.len(), 1);
}

fn producer_batch(pid: i64, epoch: i16, base_seq: i32, records: u32, cursor: Option<&str>) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.set_producer(ProducerInfo {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: base_seq,
    });
    for i in 0..records {
        let seq = base_seq as u32 + i;
        b.append(1, None, Some(format!("p{pid} s{seq}").as_bytes()), &[]);
    }
    if let Some(c) = cursor {
        b.add_header_to_last(logpost_shared::record::CURSOR_HEADER, c.as_bytes());
    }
    b.finish(Compression::Gzip { level: 1 }).unwrap()
}

fn item(frame: Vec<u8>, cursor: Option<&str>) -> super::AppendItem {
    super::AppendItem {
        frame: bytes::Bytes::from(frame),
        cursor: cursor.map(str::to_owned),
        stats: None,
        ahead: false,
        replicated: false,
    }
}

#[test]
fn dedup_answers_duplicates_trims_overlaps_refuses_gaps() {
    use super::{BatchOutcome, Refusal};
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), 1 << 20, None);
    let first = item(producer_batch(7, 0, 0, 10, Some("100 5 1")), Some("100 5 1"));
    let out = p.append(&[&first], true, true).unwrap();
    assert!(matches!(out[0], BatchOutcome::Appended(s) if s.base_offset == 0 && s.last_offset == 9));
    // The same batch again (a retry): a duplicate with its original offsets.
    let out = p.append(&[&first], true, true).unwrap();
    assert_eq!(
        out[0],
        BatchOutcome::Duplicate {
            offsets: Some((0, 9)),
            next_seq: 10
        }
    );
    // Records 5..15, half stored: the first five are trimmed off.
    let overlap = item(producer_batch(7, 0, 5, 10, Some("300 5 1")), Some("300 5 1"));
    let out = p.append(&[&overlap], true, true).unwrap();
    assert!(
        matches!(out[0], BatchOutcome::Trimmed { skipped: 5, summary } if summary.base_offset == 10 && summary.last_offset == 14)
    );
    // A gap is refused; a batch of another producer in the same group is not held back.
    let gap = item(producer_batch(7, 0, 20, 1, None), None);
    let other = item(producer_batch(8, 0, 0, 2, None), None);
    let out = p.append(&[&gap, &other], true, true).unwrap();
    assert!(matches!(
        out[0],
        BatchOutcome::Refused(Refusal::Gap { expected_seq: 15, .. })
    ));
    assert!(matches!(out[1], BatchOutcome::Appended(_)));
    // Two consecutive batches in one group see each other.
    let a = item(producer_batch(7, 0, 15, 2, None), None);
    let b = item(producer_batch(7, 0, 17, 2, Some("400 5 1")), Some("400 5 1"));
    let out = p.append(&[&a, &b, &a], true, true).unwrap();
    assert!(matches!(out[0], BatchOutcome::Appended(_)));
    assert!(matches!(out[1], BatchOutcome::Appended(_)));
    assert!(matches!(out[2], BatchOutcome::Duplicate { .. }), "{:?}", out[2]);
    // What is stored: each record once.
    let values: Vec<Vec<u8>> = read_all(&p).into_iter().flat_map(|(_, v)| v).collect();
    let p7: Vec<String> = values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .filter(|v| v.starts_with("p7 "))
        .collect();
    let want: Vec<String> = (0..19).map(|s| format!("p7 s{s}")).collect();
    assert_eq!(p7, want);
    assert_eq!(p.producer(7).unwrap().cursor.as_deref(), Some("400 5 1"));
}

#[test]
fn earlier_contents_cursors_survive_crashes_through_snapshot_and_log() {
    // A stream copytruncated twice: its copies must resume where each old
    // content was stored to, after the stream went on in new content.
    let dir = tempfile::tempdir().unwrap();
    {
        let p = open(dir.path(), 1 << 20, None);
        p.append(
            &[&item(
                producer_batch(5, 0, 0, 3, Some("3000 1024 11")),
                Some("3000 1024 11"),
            )],
            true,
            true,
        )
        .unwrap();
        p.append(
            &[&item(
                producer_batch(5, 0, 3, 3, Some("6000 1024 11")),
                Some("6000 1024 11"),
            )],
            true,
            true,
        )
        .unwrap();
        p.append(
            &[&item(
                producer_batch(5, 0, 6, 3, Some("2000 1024 22")),
                Some("2000 1024 22"),
            )],
            true,
            true,
        )
        .unwrap();
        p.checkpoint().unwrap();
        // Only in the log: the second content's end and the third content.
        p.append(
            &[&item(
                producer_batch(5, 0, 9, 3, Some("4000 1024 22")),
                Some("4000 1024 22"),
            )],
            true,
            true,
        )
        .unwrap();
        p.append(
            &[&item(
                producer_batch(5, 0, 12, 3, Some("900 1024 33")),
                Some("900 1024 33"),
            )],
            true,
            true,
        )
        .unwrap();
    }
    let p = open(dir.path(), 1 << 20, None);
    let e = p.producer(5).unwrap();
    assert_eq!(e.cursor.as_deref(), Some("900 1024 33"));
    let all: Vec<&str> = e.cursors().collect();
    assert_eq!(all, ["900 1024 33", "4000 1024 22", "6000 1024 11"]);
    let heads: std::collections::HashSet<(u32, u32)> = [(1024, 22)].into();
    assert_eq!(
        p.producers_with_head(&heads).len(),
        1,
        "found by an earlier content's head"
    );
}

#[test]
fn cursors_survive_crashes_through_snapshot_and_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let p = open(dir.path(), 1 << 20, None);
        p.append(
            &[&item(producer_batch(5, 0, 0, 3, Some("30 1 2")), Some("30 1 2"))],
            true,
            true,
        )
        .unwrap();
        p.checkpoint().unwrap();
        p.append(
            &[&item(producer_batch(5, 0, 3, 3, Some("60 1 2")), Some("60 1 2"))],
            true,
            true,
        )
        .unwrap();
        // crash: the second cursor is only in the log
    }
    let p = open(dir.path(), 1 << 20, None);
    let e = p.producer(5).unwrap();
    assert_eq!(
        e.cursor.as_deref(),
        Some("60 1 2"),
        "replayed from the log after the snapshot"
    );
    assert_eq!(e.logical_last_seq(), 5);
    // And a retry of the last batch after the restart is still a duplicate.
    let out = p
        .append(
            &[&item(producer_batch(5, 0, 3, 3, Some("60 1 2")), Some("60 1 2"))],
            true,
            true,
        )
        .unwrap();
    assert!(matches!(out[0], super::BatchOutcome::Duplicate { .. }));
}

fn ahead(frame: Vec<u8>) -> super::AppendItem {
    super::AppendItem {
        ahead: true,
        replicated: false,
        ..item(frame, None)
    }
}

#[test]
fn a_batch_sent_ahead_is_stored_only_after_its_predecessor() {
    use super::{BatchOutcome, Refusal};
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), 1 << 20, None);
    let refused_ahead = |o: &BatchOutcome| matches!(o, BatchOutcome::Refused(Refusal::AheadOfPredecessor { .. }));
    // Unknown producer: sequence 10 may have 0..10 still on the way. Sent
    // in order, the same batch would start the producer.
    let out = p
        .append(&[&ahead(producer_batch(3, 0, 10, 5, None))], true, true)
        .unwrap();
    assert!(refused_ahead(&out[0]), "{out:?}");
    assert_eq!(p.view().high_watermark, 0, "nothing stored");
    // The stream's very first batch has no predecessor.
    let out = p
        .append(&[&ahead(producer_batch(3, 0, 0, 10, None))], true, true)
        .unwrap();
    assert!(matches!(out[0], BatchOutcome::Appended(_)), "{out:?}");
    // Continuing what is stored, and a batch behind it in the same group.
    let out = p
        .append(
            &[
                &ahead(producer_batch(3, 0, 10, 5, None)),
                &ahead(producer_batch(3, 0, 15, 5, None)),
            ],
            true,
            true,
        )
        .unwrap();
    assert!(out.iter().all(|o| matches!(o, BatchOutcome::Appended(_))), "{out:?}");
    // A gap sent ahead is "wait for the predecessor", not a gap to resync.
    let out = p
        .append(&[&ahead(producer_batch(3, 0, 30, 5, None))], true, true)
        .unwrap();
    assert!(refused_ahead(&out[0]), "{out:?}");
    // Stored already: answered as a duplicate either way.
    let out = p
        .append(&[&ahead(producer_batch(3, 0, 10, 5, None))], true, true)
        .unwrap();
    assert!(matches!(out[0], BatchOutcome::Duplicate { .. }), "{out:?}");
    // A new epoch starts at 0, but the old epoch's last batch may be on the
    // way: ahead, it waits; in order, it is appended.
    let out = p
        .append(&[&ahead(producer_batch(3, 1, 0, 5, None))], true, true)
        .unwrap();
    assert!(refused_ahead(&out[0]), "{out:?}");
    let out = p
        .append(&[&item(producer_batch(3, 1, 0, 5, None), None)], true, true)
        .unwrap();
    assert!(matches!(out[0], BatchOutcome::Appended(_)), "{out:?}");
    let values: Vec<String> = read_all(&p)
        .into_iter()
        .flat_map(|(_, v)| v)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect();
    let want: Vec<String> = (0..20).chain(0..5).map(|s| format!("p3 s{s}")).collect();
    assert_eq!(values, want, "each record once, in sequence order");
}
