//! A partition as a cluster replica: roles, the high watermark bounding
//! readers, copies of the leader's batches, and truncation.

use std::sync::Arc;

use bytes::Bytes;
use logpost_shared::batch::{BatchBuilder, BatchHeader, ProducerInfo};
use logpost_shared::compression::Compression;

use super::super::{AppendItem, Partition, PartitionSettings};
use super::WriteRole;
use crate::store::StoreError;
use crate::store::read::read_from;

fn settings() -> PartitionSettings {
    PartitionSettings {
        segment_bytes: 600,
        segment_age: None,
        index_interval_bytes: 128,
    }
}

fn open(dir: &std::path::Path) -> Partition {
    Partition::open(Arc::from("t"), 0, dir, settings(), None).unwrap().0
}

/// A batch of `n` records of producer `pid` starting at sequence `seq`.
fn batch(pid: i64, seq: i32, n: i32) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.set_producer(ProducerInfo {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
    });
    for i in 0..n {
        b.append(
            1_000 + i64::from(seq + i),
            None,
            Some(format!("p{pid} s{}", seq + i).as_bytes()),
            &[],
        );
    }
    b.finish(Compression::None).unwrap()
}

fn item(frame: Vec<u8>, replicated: bool) -> AppendItem {
    AppendItem {
        frame: Bytes::from(frame),
        replicated,
        ..AppendItem::default()
    }
}

fn append(p: &Partition, frames: Vec<Vec<u8>>, replicated: bool) -> Result<(), StoreError> {
    let items: Vec<AppendItem> = frames.into_iter().map(|f| item(f, replicated)).collect();
    let refs: Vec<&AppendItem> = items.iter().collect();
    p.append(&refs, true, true).map(|_| ())
}

/// Every batch frame readers see.
fn frames(view: &crate::store::PartitionView) -> Vec<Vec<u8>> {
    let read = read_from(view, view.log_start_offset, usize::MAX).unwrap();
    let mut out = Vec::new();
    let mut rest = &read.frames[..];
    while !rest.is_empty() {
        let h = BatchHeader::parse(rest).unwrap();
        let (frame, tail) = rest.split_at(h.frame_len());
        out.push(frame.to_vec());
        rest = tail;
    }
    out
}

#[test]
fn roles_decide_who_appends_and_leaders_stamp_their_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    p.set_role(WriteRole::Follower);
    let err = append(&p, vec![batch(1, 0, 2)], false).unwrap_err();
    assert!(matches!(err, StoreError::NotLeader { .. }), "{err}");
    p.set_role(WriteRole::Offline);
    assert!(matches!(
        append(&p, vec![batch(1, 0, 2)], true),
        Err(StoreError::NotLeader { .. })
    ));
    p.set_role(WriteRole::Leader { epoch: 7 });
    let err = append(&p, vec![batch(1, 0, 2)], true).unwrap_err();
    assert!(
        matches!(err, StoreError::NotLeader { .. }),
        "a leader takes no copies: {err}"
    );
    append(&p, vec![batch(1, 0, 2)], false).unwrap();
    let stored = frames(&p.view());
    assert_eq!(BatchHeader::parse(&stored[0]).unwrap().partition_leader_epoch, 7);
}

#[test]
fn the_high_watermark_bounds_readers_at_batch_ends() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    assert_eq!(p.enable_replication(0).unwrap(), 0);
    p.set_role(WriteRole::Leader { epoch: 0 });
    // Enough batches to roll segments (600 bytes each).
    for seq in 0..12 {
        append(&p, vec![batch(1, seq * 3, 3)], false).unwrap();
    }
    assert_eq!(p.log_end_offset(), 36);
    assert_eq!(p.high_watermark(), 0);
    assert!(frames(&p.view()).is_empty(), "nothing is committed yet");
    assert!(p.end_view().segments.len() > 1, "the test needs several segments");
    assert_eq!(p.advance_high_watermark(7), 6, "rounded down to a batch end");
    let seen = frames(&p.view());
    assert_eq!(seen.len(), 2);
    assert_eq!(read_from(&p.view(), 6, 1000).unwrap().frames.len(), 0);
    assert!(read_from(&p.view(), 7, 1000).is_err(), "past the high watermark");
    assert_eq!(p.advance_high_watermark(30), 30);
    assert_eq!(frames(&p.view()).len(), 10);
    assert_eq!(p.advance_high_watermark(3), 30, "never backwards");
    assert_eq!(p.advance_high_watermark(99), 36);
    assert_eq!(frames(&p.view()), frames(&p.end_view()));
}

#[test]
fn a_follower_stores_the_leaders_batches_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let leader = open(&dir.path().join("leader"));
    let follower = open(&dir.path().join("follower"));
    leader.set_role(WriteRole::Leader { epoch: 3 });
    follower.set_role(WriteRole::Follower);
    follower.enable_replication(0).unwrap();
    for seq in 0..5 {
        append(&leader, vec![batch(9, seq * 2, 2), batch(4, seq, 1)], false).unwrap();
    }
    let copied = frames(&leader.view());
    append(&follower, copied[..4].to_vec(), true).unwrap();
    // A batch that does not continue the log is refused.
    let err = append(&follower, vec![copied[5].clone()], true).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::ReplicaOutOfOrder {
                expected: 6,
                got: 8,
                ..
            }
        ),
        "{err}"
    );
    append(&follower, copied[4..].to_vec(), true).unwrap();
    follower.advance_high_watermark(leader.log_end_offset());
    assert_eq!(frames(&follower.view()), copied);
    // The producer state was rebuilt from the copies: a retry is a duplicate.
    assert_eq!(follower.producer(9).unwrap().last_seq, 9);
    assert_eq!(follower.producer(4).unwrap().last_seq, 4);
}

#[test]
fn truncation_cuts_the_tail_rebuilds_producers_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let p = open(&path);
    for seq in 0..6 {
        append(&p, vec![batch(5, seq * 4, 4)], false).unwrap();
        if seq == 2 {
            p.checkpoint().unwrap();
        }
    }
    p.checkpoint().unwrap();
    p.enable_replication(24).unwrap();
    let before = frames(&p.view());
    p.set_role(WriteRole::Follower);
    // Offset 14 lies inside the batch 12..=15: the cut is at its start.
    let report = p.truncate_to(14).unwrap();
    assert_eq!((report.log_end_offset, report.truncated_records), (12, 12));
    assert_eq!(p.log_end_offset(), 12);
    assert_eq!(p.high_watermark(), 12);
    assert_eq!(frames(&p.view()), before[..3].to_vec());
    assert_eq!(p.producer(5).unwrap().last_seq, 11, "state as of the cut");
    // The leader's copy of the rest continues the cut log.
    p.set_role(WriteRole::Leader { epoch: 1 });
    append(&p, vec![batch(5, 12, 2)], false).unwrap();
    assert_eq!(p.log_end_offset(), 14);
    drop(p);
    let p = open(&path);
    assert_eq!(p.log_end_offset(), 14, "recovery keeps the cut and what followed");
    assert_eq!(p.producer(5).unwrap().last_seq, 13);
    let dup = p.append(&[&item(batch(5, 12, 2), false)], true, true).unwrap();
    assert!(
        matches!(dup[0], crate::store::BatchOutcome::Duplicate { .. }),
        "{dup:?}"
    );
}

#[test]
fn truncation_across_segments_and_a_full_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    for seq in 0..24 {
        append(&p, vec![batch(2, seq * 3, 3)], false).unwrap();
    }
    let segments = p.end_view().segments.len();
    assert!(segments > 2, "{segments}");
    let keep = frames(&p.view())[..2].to_vec();
    p.truncate_to(6).unwrap();
    assert_eq!(p.log_end_offset(), 6);
    assert_eq!(frames(&p.view()), keep);
    assert_eq!(p.producer(2).unwrap().last_seq, 5);
    let report = p.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(report.log_end_offset, 100);
    assert!(frames(&p.view()).is_empty());
    assert!(p.producer(2).is_none());
    append(&p, vec![batch(2, 0, 3)], false).unwrap();
    assert_eq!(p.view().log_start_offset, 100);
    assert_eq!(p.log_end_offset(), 103);
}

#[test]
fn replication_resumes_from_a_high_watermark_inside_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    for seq in 0..8 {
        append(&p, vec![batch(3, seq * 2, 2)], false).unwrap();
    }
    // As after a restart: the persisted high watermark lies below the end.
    assert_eq!(p.enable_replication(9).unwrap(), 8, "rounded down to a batch start");
    assert_eq!(frames(&p.view()).len(), 4);
    assert_eq!(p.advance_high_watermark(12), 12);
    assert_eq!(frames(&p.view()).len(), 6);
    assert_eq!(p.advance_high_watermark(16), 16);
    assert_eq!(frames(&p.view()), frames(&p.end_view()));
}
