//! The leader's ISR bookkeeping, driven directly.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use logpost_shared::batch::{BatchBuilder, ProducerInfo};
use logpost_shared::compression::Compression;

use super::{FetchRefusal, Replica};
use crate::cluster::meta::{PartitionState, Versioned};
use crate::cluster::session::Session;
use crate::store::partition::PartitionSettings;
use crate::store::{AppendItem, Partition};

fn partition(dir: &std::path::Path) -> Arc<Partition> {
    let settings = PartitionSettings {
        segment_bytes: 1 << 20,
        segment_age: None,
        index_interval_bytes: 4096,
    };
    Arc::new(Partition::open(Arc::from("t"), 0, dir, settings, None).unwrap().0)
}

fn batch(seq: i32) -> Bytes {
    let mut b = BatchBuilder::new();
    b.set_producer(ProducerInfo {
        producer_id: 7,
        producer_epoch: 0,
        base_sequence: seq,
    });
    b.append(1, None, Some(b"line"), &[]);
    Bytes::from(b.finish(Compression::None).unwrap())
}

fn append(p: &Partition, seq: i32) {
    let item = AppendItem {
        frame: batch(seq),
        ..AppendItem::default()
    };
    p.append(&[&item], true, true).unwrap();
}

fn state(isr: &[i32]) -> Versioned<PartitionState> {
    Versioned {
        value: PartitionState {
            replicas: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 4,
            isr: isr.to_vec(),
        },
        mod_revision: 10,
    }
}

fn session() -> Session {
    let s = Session::new(Duration::from_secs(10));
    s.renew_for_tests();
    s
}

#[tokio::test]
async fn the_high_watermark_is_the_lowest_log_end_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = partition(dir.path());
    let r = Arc::new(Replica::open("t", 0, Arc::clone(&log), 1).unwrap());
    r.become_leader(4, &state(&[1, 2, 3])).await;
    for seq in 0..5 {
        append(&log, seq);
    }
    r.recompute_hw();
    assert_eq!(log.high_watermark(), 0, "followers have not fetched in this epoch");
    assert!(r.on_fetch(2, 4, 3).unwrap().is_none());
    r.recompute_hw();
    assert_eq!(log.high_watermark(), 0, "follower 3 unknown yet");
    assert!(r.on_fetch(3, 4, 2).unwrap().is_none());
    r.recompute_hw();
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(
        r.on_fetch(2, 3, 5),
        Err(FetchRefusal::Fenced { leader_epoch: 4 }),
        "an older epoch is fenced"
    );
    assert!(matches!(
        r.on_fetch(2, 4, 9),
        Err(FetchRefusal::OutOfRange { log_end_offset: 5, .. })
    ));
    assert_eq!(r.on_fetch(4, 4, 1), Err(FetchRefusal::NotAReplica));
    // acks wait for the high watermark.
    let s = session();
    let waiting = r.await_acks(&s, 4, 5, 2, Duration::from_secs(5));
    let (done, ()) = tokio::join!(waiting, async {
        r.on_fetch(2, 4, 5).unwrap();
        r.on_fetch(3, 4, 5).unwrap();
        r.recompute_hw();
    });
    done.unwrap();
    assert_eq!(log.high_watermark(), 5);
}

#[tokio::test]
async fn a_follower_rejoins_once_caught_up_and_laggards_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = partition(dir.path());
    let r = Arc::new(Replica::open("t", 0, Arc::clone(&log), 1).unwrap());
    r.become_leader(4, &state(&[1, 2])).await;
    append(&log, 0);
    append(&log, 1);
    r.on_fetch(2, 4, 2).unwrap();
    r.recompute_hw();
    assert_eq!(log.high_watermark(), 2);
    assert!(r.on_fetch(3, 4, 1).unwrap().is_none(), "behind the high watermark");
    let change = r.on_fetch(3, 4, 2).unwrap().expect("caught up: joins");
    assert_eq!(change.next.isr, vec![1, 2, 3]);
    assert!(r.on_fetch(3, 4, 2).unwrap().is_none(), "one change at a time");
    r.isr_changed(&change, Some(11));
    assert_eq!(r.leader_isr().unwrap(), vec![1, 2, 3]);
    // Nobody fetches for longer than the lag time: both are dropped.
    std::thread::sleep(Duration::from_millis(30));
    let shrink = r.shrink(Duration::from_millis(10)).expect("lagging");
    assert_eq!(shrink.next.isr, vec![1]);
    r.isr_changed(&shrink, None);
    assert_eq!(r.leader_isr().unwrap(), vec![1, 2, 3], "unchanged until written");
    // Too few in sync for acks=all.
    let s = session();
    assert!(r.ticket(&s, true, 2).is_ok());
    let shrink = r.shrink(Duration::from_millis(10)).unwrap();
    r.isr_changed(&shrink, Some(12));
    assert!(r.ticket(&s, false, 2).is_ok(), "acks=1 still taken");
    let err = r.ticket(&s, true, 2).unwrap_err();
    assert!(err.to_string().contains("[1] are in sync"), "{err}");
}

#[tokio::test]
async fn a_lapsed_session_or_a_lost_epoch_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = partition(dir.path());
    let r = Arc::new(Replica::open("t", 0, Arc::clone(&log), 1).unwrap());
    r.become_leader(4, &state(&[1])).await;
    append(&log, 0);
    let lapsed = Session::new(Duration::from_secs(10));
    let err = r
        .await_acks(&lapsed, 4, 1, 1, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err, crate::cluster::ClusterError::SessionLost);
    let s = session();
    r.await_acks(&s, 4, 1, 1, Duration::from_secs(1)).await.unwrap();
    let err = r.await_acks(&s, 3, 1, 1, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, crate::cluster::ClusterError::NotLeader { .. }), "{err}");
    r.become_offline().await;
    let err = r.ticket(&s, true, 1).unwrap_err();
    assert!(matches!(err, crate::cluster::ClusterError::NotLeader { .. }), "{err}");
}
