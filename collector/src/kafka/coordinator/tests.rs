//! Tests of the async [`GroupCoordinator`] facade: futures, the driver task
//! and offset persistence.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn coordinator(store: Arc<dyn OffsetStore>) -> Arc<GroupCoordinator> {
    let config = CoordinatorConfig {
        initial_rebalance_delay: Duration::ZERO,
        ..CoordinatorConfig::default()
    };
    GroupCoordinator::new(config, store, Arc::new(|_: &str| Some(2))).unwrap()
}

fn join_req(member: &str, session_ms: i32) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: None,
        client_id: "t".into(),
        session_timeout_ms: session_ms,
        rebalance_timeout_ms: 60_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::new())],
        require_known_member_id: false,
    }
}

fn commit_req(generation: i32, member: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member.into(),
        offsets: vec![
            ("t".into(), 0, offset, -1, Some("md".into())),
            ("t".into(), 1, offset + 1, 3, None),
        ],
    }
}

#[tokio::test]
async fn commits_are_durable_before_acknowledged_and_readable_after() {
    let store = Arc::new(MemoryOffsetStore::new());
    let c = coordinator(store.clone());
    tokio::spawn(Arc::clone(&c).run(CancellationToken::new()));
    let results = c.commit(commit_req(-1, "", 41)).await;
    assert_eq!(results, vec![Ok(()), Ok(())]);
    assert_eq!(store.load().unwrap().len(), 2, "saved before the commit resolved");
    let got = c.committed("g", Some(&[("t".into(), vec![0, 1, 7])])).unwrap();
    let offsets: Vec<(i32, i64, i32)> = got[0].1.iter().map(|(p, i)| (*p, i.offset, i.leader_epoch)).collect();
    assert_eq!(offsets, vec![(0, 41, -1), (1, 42, 3), (7, -1, -1)]);
    assert_eq!(got[0].1[0].1.metadata.as_deref(), Some("md"));
    let all = c.committed("g", None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.len(), 2);
    assert!(c.committed("nobody", None).unwrap().is_empty());
}

#[tokio::test]
async fn rejected_commit_is_not_stored() {
    let store = Arc::new(MemoryOffsetStore::new());
    let c = coordinator(store.clone());
    tokio::spawn(Arc::clone(&c).run(CancellationToken::new()));
    let results = c.commit(commit_req(5, "ghost", 1)).await;
    assert_eq!(results, vec![Err(KafkaError::ILLEGAL_GENERATION); 2]);
    assert!(store.load().unwrap().is_empty());
    let mut big = commit_req(-1, "", 1);
    big.offsets[0].4 = Some("x".repeat(5000));
    let results = c.commit(big).await;
    assert_eq!(results, vec![Err(KafkaError::OFFSET_METADATA_TOO_LARGE), Ok(())]);
}

struct FailingStore(AtomicUsize);

impl OffsetStore for FailingStore {
    fn load(&self) -> io::Result<Vec<CommittedOffset>> {
        Ok(vec![CommittedOffset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset: 9,
            leader_epoch: -1,
            metadata: None,
        }])
    }
    fn save(&self, _: &[CommittedOffset]) -> io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(io::Error::other("disk full"))
    }
}

#[tokio::test]
async fn failed_save_is_reported_and_memory_keeps_the_old_offset() {
    let store = Arc::new(FailingStore(AtomicUsize::new(0)));
    let c = coordinator(store.clone());
    tokio::spawn(Arc::clone(&c).run(CancellationToken::new()));
    assert_eq!(
        c.committed("g", Some(&[("t".into(), vec![0])])).unwrap()[0].1[0]
            .1
            .offset,
        9,
        "loaded at start"
    );
    let results = c.commit(commit_req(-1, "", 100)).await;
    assert_eq!(results, vec![Err(KafkaError::COORDINATOR_NOT_AVAILABLE); 2]);
    assert_eq!(store.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        c.committed("g", Some(&[("t".into(), vec![0])])).unwrap()[0].1[0]
            .1
            .offset,
        9
    );
}

#[tokio::test]
async fn driver_expires_silent_member_without_polling_from_outside() {
    let c = coordinator(Arc::new(MemoryOffsetStore::new()));
    tokio::spawn(Arc::clone(&c).run(CancellationToken::new()));
    let a = c.join(join_req("", 6000)).await;
    assert_eq!(a.generation_id, 1);
    let s = c.sync(SyncRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: a.member_id.clone(),
        group_instance_id: None,
        assignments: vec![],
    });
    assert_eq!(s.await.error, None);
    assert_eq!(c.heartbeat("g", 1, &a.member_id), Ok(()));
    // Nobody heartbeats: the driver alone must expire the member (6 s session).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.describe("g").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "member never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.heartbeat("g", 1, &a.member_id), Err(KafkaError::UNKNOWN_MEMBER_ID));
}

#[tokio::test]
async fn join_future_resolves_when_second_member_arrives() {
    let c = coordinator(Arc::new(MemoryOffsetStore::new()));
    tokio::spawn(Arc::clone(&c).run(CancellationToken::new()));
    let a = c.join(join_req("", 6000)).await;
    let b = tokio::spawn(c.join(join_req("", 6000)));
    // a learns of the rebalance from its heartbeat and rejoins.
    assert_eq!(
        c.heartbeat("g", 1, &a.member_id),
        Err(KafkaError::REBALANCE_IN_PROGRESS)
    );
    let a2 = c.join(join_req(&a.member_id, 6000)).await;
    let b = b.await.unwrap();
    assert_eq!((a2.generation_id, b.generation_id), (2, 2));
    let left = c.leave("g", &[(b.member_id.clone(), None), ("nobody".into(), None)]);
    assert_eq!(left, vec![Ok(()), Err(KafkaError::UNKNOWN_MEMBER_ID)]);
}

/// A cluster's placement, scripted: whether this node coordinates, what
/// a reload brings, and what was saved through it.
struct ScriptedPlacement {
    coordinates: std::sync::atomic::AtomicBool,
    reload: Mutex<Option<Vec<CommittedOffset>>>,
    saved: Mutex<Vec<CommittedOffset>>,
}

impl GroupPlacement for ScriptedPlacement {
    fn locate(&self, _group: &str) -> Result<i32, KafkaError> {
        Ok(7)
    }

    fn claim(&self, _group: &str) -> Result<Option<Reload>, KafkaError> {
        if !self.coordinates.load(Ordering::SeqCst) {
            return Err(KafkaError::NOT_COORDINATOR);
        }
        Ok(self.reload.lock().unwrap().take().map(|offsets| Reload {
            owns: Box::new(|g| g == "g"),
            offsets,
        }))
    }

    fn save(&self, commits: &[CommittedOffset]) -> Result<(), KafkaError> {
        self.saved.lock().unwrap().extend_from_slice(commits);
        Ok(())
    }
}

fn committed_at(c: &GroupCoordinator, partition: i32) -> i64 {
    c.committed("g", Some(&[("t".into(), vec![partition])])).unwrap()[0].1[0]
        .1
        .offset
}

#[tokio::test]
async fn in_a_cluster_groups_are_served_where_placed_and_reloaded_from_the_log() {
    let file = Arc::new(MemoryOffsetStore::new());
    let c = coordinator(file.clone());
    tokio::spawn(Arc::clone(&c).run(CancellationToken::new()));
    let stale = CommittedOffset {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
        offset: 5,
        leader_epoch: -1,
        metadata: None,
    };
    let placement = Arc::new(ScriptedPlacement {
        coordinates: std::sync::atomic::AtomicBool::new(false),
        reload: Mutex::new(Some(vec![
            stale.clone(),
            CommittedOffset {
                offset: 9,
                ..stale.clone()
            },
        ])),
        saved: Mutex::new(Vec::new()),
    });
    c.set_placement(placement.clone());
    assert_eq!(c.locate("g"), Some(Ok(7)));

    // Another node coordinates: every group call says so.
    assert_eq!(c.committed("g", None).unwrap_err(), KafkaError::NOT_COORDINATOR);
    assert_eq!(c.heartbeat("g", 1, "m"), Err(KafkaError::NOT_COORDINATOR));
    let joined = c.join(join_req("", 10_000)).await;
    assert_eq!(joined.error, Some(KafkaError::NOT_COORDINATOR));
    assert_eq!(
        c.commit(commit_req(-1, "", 1)).await,
        vec![Err(KafkaError::NOT_COORDINATOR); 2]
    );

    // This node takes over: the log's commits replace what it held (later
    // entries win), and commits go through the placement, not the file.
    placement.coordinates.store(true, Ordering::SeqCst);
    assert_eq!(committed_at(&c, 0), 9);
    assert_eq!(c.commit(commit_req(-1, "", 20)).await, vec![Ok(()), Ok(())]);
    assert_eq!(committed_at(&c, 0), 20);
    assert_eq!(placement.saved.lock().unwrap().len(), 2);
    assert!(
        file.load().unwrap().is_empty(),
        "a cluster's commits bypass the local file"
    );
}
