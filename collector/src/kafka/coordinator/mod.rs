//! The group coordinator: consumer-group membership, rebalancing and
//! committed offsets, independent of storage and of the wire protocol.
//!
//! [`GroupCoordinator`] wraps the pure state machine in [`state`] with a
//! mutex (never held across an await), a driver task that expires sessions
//! at the next deadline, and a single offset-writer task that persists
//! commits in order through an [`OffsetStore`]. Its methods start their
//! effect synchronously, in call order, and return futures for the parts
//! that wait, so the Kafka TCP layer (which must apply pipelined requests in
//! order) and the HTTP layer can share it: it lives in the collector's
//! `AppState`, so groups and committed offsets are the same whichever
//! protocol a consumer speaks.

pub mod assign;
mod group;
pub mod in_cluster;
pub mod offsets;
mod placement;
pub mod state;

use crate::kafka::error::KafkaError;
use bytes::Bytes;
#[cfg(test)]
pub use offsets::MemoryOffsetStore;
pub use offsets::{CommittedOffset, FileOffsetStore, OffsetStore};
pub use placement::{GroupPlacement, Reload};
pub use state::{GroupDescription, GroupState, Groups, PartitionCount};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Members with this protocol type get their partitions assigned by the
/// coordinator (range over their subscriptions) instead of by a leader.
pub const LOGPOST_PROTOCOL_TYPE: &str = "logpost";

/// Coordinator limits, Kafka's broker defaults unless noted.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `group.min.session.timeout.ms` (6 s).
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms` (30 min).
    pub max_session_timeout: Duration,
    /// `group.initial.rebalance.delay.ms` (3 s): how long a new group waits
    /// for more members before its first generation.
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`.
    pub max_group_size: usize,
    /// Longest accepted commit metadata (`offset.metadata.max.bytes`, 4096).
    pub max_metadata_len: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(1800),
            initial_rebalance_delay: Duration::from_secs(3),
            max_group_size: 1000,
            max_metadata_len: 4096,
        }
    }
}

/// A JoinGroup, from either the Kafka or the HTTP front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Empty on first join.
    pub member_id: String,
    /// Static membership id (KIP-345); a rejoin with it replaces the old member.
    pub group_instance_id: Option<String>,
    /// Prefix for generated member ids.
    pub client_id: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Longest a rebalance waits for this member to rejoin.
    pub rebalance_timeout_ms: i32,
    /// "consumer" (Kafka clients) or [`LOGPOST_PROTOCOL_TYPE`].
    pub protocol_type: String,
    /// `(assignor name, metadata)` in preference order. For "logpost",
    /// metadata is [`assign::encode_subscription`].
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a new member first gets MEMBER_ID_REQUIRED
    /// with its id and must join again with it.
    pub require_known_member_id: bool,
}

/// One member as the leader sees it in a JoinGroup result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// `None` on success.
    pub error: Option<KafkaError>,
    /// The new generation (-1 on error).
    pub generation_id: i32,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader_id: String,
    /// The member's id (also set with MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// All members, for the leader only.
    pub members: Vec<JoinMember>,
}

impl JoinResult {
    /// A failed join.
    pub fn failed(error: KafkaError, member_id: &str) -> Self {
        JoinResult {
            error: Some(error),
            generation_id: -1,
            protocol_name: None,
            leader_id: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }

    /// The wire error code.
    pub fn error_code(&self) -> i16 {
        self.error.map_or(0, KafkaError::code)
    }
}

/// A SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// Group id.
    pub group_id: String,
    /// The generation the member joined.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// From the leader: `(member id, assignment)`. Ignored for "logpost".
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// `None` on success.
    pub error: Option<KafkaError>,
    /// The member's assignment ([`assign::decode_assignment`] reads it).
    pub assignment: Bytes,
}

impl SyncResult {
    /// A failed sync.
    pub fn failed(error: KafkaError) -> Self {
        SyncResult {
            error: Some(error),
            assignment: Bytes::new(),
        }
    }
}

/// An OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// Group id.
    pub group_id: String,
    /// Generation, -1 outside group management.
    pub generation_id: i32,
    /// Member id, empty outside group management.
    pub member_id: String,
    /// `(topic, partition, offset, leader epoch, metadata)`.
    pub offsets: Vec<(String, i32, i64, i32, Option<String>)>,
}

/// A committed offset as OffsetFetch reports it (-1 when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetInfo {
    /// Next offset to consume, -1 if never committed.
    pub offset: i64,
    /// Leader epoch sent with the commit, -1 if none.
    pub leader_epoch: i32,
    /// Commit metadata.
    pub metadata: Option<String>,
}

type OffsetMap = HashMap<String, HashMap<(String, i32), OffsetInfo>>;

/// OffsetFetch's answer: per topic, `(partition, committed offset)`.
pub type Committed = Vec<(String, Vec<(i32, OffsetInfo)>)>;

struct Inner {
    groups: Groups,
    offsets: OffsetMap,
}

struct CommitJob {
    records: Vec<CommittedOffset>,
    done: oneshot::Sender<Result<(), KafkaError>>,
}

/// The coordinator shared by all front ends. Create it with
/// [`GroupCoordinator::new`] and spawn [`GroupCoordinator::run`].
pub struct GroupCoordinator {
    inner: Mutex<Inner>,
    wake: Notify,
    commits: mpsc::Sender<CommitJob>,
    commit_rx: Mutex<Option<mpsc::Receiver<CommitJob>>>,
    store: Arc<dyn OffsetStore>,
    placement: OnceLock<Arc<dyn GroupPlacement>>,
    config: CoordinatorConfig,
}

impl GroupCoordinator {
    /// Loads committed offsets from `store`. `partition_count` answers the
    /// partition count of a topic, for "logpost" assignment.
    pub fn new(
        config: CoordinatorConfig,
        store: Arc<dyn OffsetStore>,
        partition_count: Arc<PartitionCount>,
    ) -> io::Result<Arc<Self>> {
        let mut offsets = OffsetMap::new();
        for c in store.load()? {
            let info = OffsetInfo {
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata,
            };
            offsets.entry(c.group).or_default().insert((c.topic, c.partition), info);
        }
        let (tx, rx) = mpsc::channel(1024);
        Ok(Arc::new(GroupCoordinator {
            inner: Mutex::new(Inner {
                groups: Groups::new(config.clone(), partition_count),
                offsets,
            }),
            wake: Notify::new(),
            commits: tx,
            commit_rx: Mutex::new(Some(rx)),
            store,
            placement: OnceLock::new(),
            config,
        }))
    }

    // A poisoned lock means a panic elsewhere already broke an invariant
    // check; the state itself is plain data, so carry on with it.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes this the coordinator of a cluster node: groups are served
    /// only where `placement` says, and commits go where it keeps them.
    /// Set once, before the first request.
    pub fn set_placement(&self, placement: Arc<dyn GroupPlacement>) {
        let _ = self.placement.set(placement);
    }

    /// In a cluster, the node that coordinates `group` now; `None` for a
    /// single node, which coordinates every group.
    pub fn locate(&self, group: &str) -> Option<Result<i32, KafkaError>> {
        self.placement.get().map(|p| p.locate(group))
    }

    /// Whether this node serves `group` now (always, outside a cluster).
    /// A node that has just become the group's coordinator first replaces
    /// what it held of the group's partition with the log's state, and
    /// forgets those groups' members (they join again, as with Kafka's
    /// coordinator moves).
    fn claim(&self, group: &str) -> Result<(), KafkaError> {
        let Some(placement) = self.placement.get() else {
            return Ok(());
        };
        let mut inner = self.lock();
        let Some(reload) = placement.claim(group)? else {
            return Ok(());
        };
        inner.offsets.retain(|g, _| !(reload.owns)(g));
        inner.groups.forget(|g| (reload.owns)(g));
        for c in reload.offsets {
            let info = OffsetInfo {
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata,
            };
            inner
                .offsets
                .entry(c.group)
                .or_default()
                .insert((c.topic, c.partition), info);
        }
        Ok(())
    }

    /// Drives session expiry and persists commits until `shutdown`. Spawn
    /// it once; a second call returns at once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(rx) = self.commit_rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let writer = tokio::spawn(Self::write_commits(Arc::clone(&self.store), rx, Arc::downgrade(&self)));
        loop {
            let deadline = self.lock().groups.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = sleep => {}
            }
            // Requests wake us only so the deadline is recomputed; the
            // (whole-map) tick runs only when a deadline has really passed.
            let now = Instant::now();
            let mut inner = self.lock();
            if inner.groups.next_deadline().is_some_and(|d| d <= now) {
                inner.groups.tick(now);
            }
        }
        writer.abort();
    }

    /// Persists queued commits in order, batching whatever queued up during
    /// the previous save into one `save` call, and applies them to memory
    /// only once durable.
    async fn write_commits(
        store: Arc<dyn OffsetStore>,
        mut rx: mpsc::Receiver<CommitJob>,
        coordinator: std::sync::Weak<GroupCoordinator>,
    ) {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while let Ok(job) = rx.try_recv() {
                jobs.push(job);
            }
            let records: Vec<CommittedOffset> = jobs.iter().flat_map(|j| j.records.iter().cloned()).collect();
            let store = Arc::clone(&store);
            let placement = coordinator.upgrade().and_then(|c| c.placement.get().cloned());
            let saved = tokio::task::spawn_blocking(move || {
                match placement {
                    Some(p) => p.save(&records),
                    None => store.save(&records).map_err(|e| {
                        tracing::error!(error = %e, "saving committed offsets failed");
                        KafkaError::COORDINATOR_NOT_AVAILABLE
                    }),
                }
                .map(|()| records)
            })
            .await;
            let outcome = match saved {
                Ok(Ok(records)) => {
                    if let Some(c) = coordinator.upgrade() {
                        let mut inner = c.lock();
                        for r in records {
                            let info = OffsetInfo {
                                offset: r.offset,
                                leader_epoch: r.leader_epoch,
                                metadata: r.metadata,
                            };
                            inner
                                .offsets
                                .entry(r.group)
                                .or_default()
                                .insert((r.topic, r.partition), info);
                        }
                    }
                    Ok(())
                }
                Ok(Err(e)) => Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "offset save task failed");
                    Err(KafkaError::COORDINATOR_NOT_AVAILABLE)
                }
            };
            for job in jobs {
                let _ = job.done.send(outcome);
            }
        }
    }

    /// JoinGroup. The member is registered when this is called; the future
    /// resolves when the join phase completes (or at once on error).
    pub fn join(&self, req: JoinRequest) -> impl Future<Output = JoinResult> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let member_id = req.member_id.clone();
        if let Err(e) = self.claim(&req.group_id) {
            let _ = tx.send(JoinResult::failed(e, &member_id));
        } else {
            self.lock().groups.join(req, tx, Instant::now());
        }
        self.wake.notify_one();
        async move {
            rx.await
                .unwrap_or_else(|_| JoinResult::failed(KafkaError::COORDINATOR_NOT_AVAILABLE, &member_id))
        }
    }

    /// SyncGroup. Resolves with the member's assignment.
    pub fn sync(&self, req: SyncRequest) -> impl Future<Output = SyncResult> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.claim(&req.group_id) {
            let _ = tx.send(SyncResult::failed(e));
        } else {
            self.lock().groups.sync(req, tx, Instant::now());
        }
        self.wake.notify_one();
        async move {
            rx.await
                .unwrap_or_else(|_| SyncResult::failed(KafkaError::COORDINATOR_NOT_AVAILABLE))
        }
    }

    /// Heartbeat.
    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> Result<(), KafkaError> {
        self.claim(group_id)?;
        let r = self
            .lock()
            .groups
            .heartbeat(group_id, generation, member_id, Instant::now());
        self.wake.notify_one();
        r
    }

    /// LeaveGroup for each `(member id, instance id)`.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<Result<(), KafkaError>> {
        if let Err(e) = self.claim(group_id) {
            return vec![Err(e); members.len()];
        }
        let now = Instant::now();
        let mut inner = self.lock();
        let out = members
            .iter()
            .map(|(m, i)| inner.groups.leave(group_id, m, i.as_deref(), now))
            .collect();
        drop(inner);
        self.wake.notify_one();
        out
    }

    /// OffsetCommit. Validated now; resolves once durable, with one result
    /// per entry of `req.offsets`.
    pub fn commit(&self, req: CommitRequest) -> impl Future<Output = Vec<Result<(), KafkaError>>> + Send + 'static {
        let n = req.offsets.len();
        let checked = self.claim(&req.group_id).and_then(|()| {
            self.lock()
                .groups
                .check_commit(&req.group_id, req.generation_id, &req.member_id, Instant::now())
        });
        let mut results: Vec<Result<(), KafkaError>> = vec![checked; n];
        let mut records = Vec::new();
        if checked.is_ok() {
            for ((topic, partition, offset, leader_epoch, metadata), result) in
                req.offsets.into_iter().zip(&mut results)
            {
                if metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > self.config.max_metadata_len)
                {
                    *result = Err(KafkaError::OFFSET_METADATA_TOO_LARGE);
                    continue;
                }
                records.push(CommittedOffset {
                    group: req.group_id.clone(),
                    topic,
                    partition,
                    offset,
                    leader_epoch,
                    metadata,
                });
            }
        }
        let (tx, rx) = oneshot::channel();
        let queued = !records.is_empty() && self.commits.try_send(CommitJob { records, done: tx }).is_ok();
        async move {
            if queued {
                let outcome = rx.await.unwrap_or(Err(KafkaError::COORDINATOR_NOT_AVAILABLE));
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = outcome;
                }
            } else {
                // Entries still Ok were valid but could not be queued: the
                // writer is gone or a thousand commits behind. Retriable.
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(KafkaError::COORDINATOR_NOT_AVAILABLE);
                }
            }
            results
        }
    }

    /// OffsetFetch: the given partitions (or, with `None`, every partition
    /// the group committed), each with -1 when never committed.
    ///
    /// # Errors
    /// In a cluster, another node coordinates the group (or none can now).
    pub fn committed(&self, group_id: &str, topics: Option<&[(String, Vec<i32>)]>) -> Result<Committed, KafkaError> {
        self.claim(group_id)?;
        let inner = self.lock();
        let group = inner.offsets.get(group_id);
        let none = OffsetInfo {
            offset: -1,
            leader_epoch: -1,
            metadata: None,
        };
        Ok(match topics {
            Some(topics) => topics
                .iter()
                .map(|(t, parts)| {
                    let found = parts
                        .iter()
                        .map(|&p| {
                            (
                                p,
                                group
                                    .and_then(|g| g.get(&(t.clone(), p)))
                                    .cloned()
                                    .unwrap_or(none.clone()),
                            )
                        })
                        .collect();
                    (t.clone(), found)
                })
                .collect(),
            None => {
                let mut by_topic: std::collections::BTreeMap<String, Vec<(i32, OffsetInfo)>> = Default::default();
                for ((t, p), info) in group.into_iter().flatten() {
                    by_topic.entry(t.clone()).or_default().push((*p, info.clone()));
                }
                by_topic
                    .into_iter()
                    .map(|(t, mut v)| {
                        v.sort_by_key(|(p, _)| *p);
                        (t, v)
                    })
                    .collect()
            }
        })
    }

    /// Every committed offset: (group, topic, partition, offset), for the
    /// consumer-lag metric.
    pub fn all_committed(&self) -> Vec<(String, String, i32, i64)> {
        let inner = self.lock();
        inner
            .offsets
            .iter()
            .flat_map(|(g, offsets)| {
                offsets
                    .iter()
                    .filter(|(_, info)| info.offset >= 0)
                    .map(move |((t, p), info)| (g.clone(), t.clone(), *p, info.offset))
            })
            .collect()
    }

    /// A snapshot of one group's membership.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        self.lock().groups.describe(group_id)
    }
}

#[cfg(test)]
mod tests;
