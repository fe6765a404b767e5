//! Consumer groups in a cluster, as Kafka keeps them: a group is
//! coordinated by the leader of its partition of the internal topic
//! `__consumer_offsets`, and its committed offsets are records of that
//! partition, written with `acks=all`. They replicate with the data, and
//! a node that becomes the partition's leader (after a failover) rebuilds
//! its groups' offsets from its copy of the log, so a failover keeps
//! every acknowledged commit.
//!
//! Group membership is not replicated (Kafka's is not either): when the
//! coordinator moves, members get NOT_COORDINATOR, find the new one and
//! join again, resuming from the committed offsets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use logpost_shared::batch::{BatchBuilder, BatchHeader, records_to_owned};
use logpost_shared::compression::Compression;

use super::{CommittedOffset, GroupPlacement, Reload};
use crate::cluster::error::ClusterError;
use crate::http::AppState;
use crate::kafka::backend;
use crate::kafka::error::KafkaError;
use crate::store::{Partition, TopicSpec, read};

/// The internal topic of committed offsets (Kafka's name).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Its partitions: groups spread over this many coordinators. Kafka's
/// default is 50; a few are plenty for the clusters logpost runs.
pub const OFFSETS_PARTITIONS: u32 = 6;
/// How long committed offsets are kept after their last commit (Kafka's
/// `offsets.retention.minutes`, 7 days).
const OFFSETS_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// Read size while rebuilding a partition's offsets.
const LOAD_CHUNK_BYTES: usize = 1 << 20;
/// Largest commit batch decoded while rebuilding (commits are small).
const MAX_COMMIT_BATCH_BYTES: usize = 64 << 20;

/// The partition of `__consumer_offsets` that holds `group`.
pub fn partition_of(group: &str) -> u32 {
    logpost_shared::partition::by_key(Some(group.as_bytes()), 0, OFFSETS_PARTITIONS).unwrap_or(0)
}

/// Groups placed on the cluster's `__consumer_offsets` leaders.
pub struct ClusterGroups {
    app: Weak<AppState>,
    runtime: tokio::runtime::Handle,
    /// The leader epoch at which each led partition's offsets were loaded.
    loaded: Mutex<HashMap<u32, i32>>,
    /// A creation of the topic is under way.
    creating: Arc<AtomicBool>,
}

impl ClusterGroups {
    /// Placement for the node serving `app` (a cluster node).
    pub fn new(app: &Arc<AppState>, runtime: tokio::runtime::Handle) -> Self {
        ClusterGroups {
            app: Arc::downgrade(app),
            runtime,
            loaded: Mutex::new(HashMap::new()),
            creating: Arc::new(AtomicBool::new(false)),
        }
    }

    fn app(&self) -> Result<Arc<AppState>, KafkaError> {
        self.app.upgrade().ok_or(KafkaError::COORDINATOR_NOT_AVAILABLE)
    }

    /// Creates `__consumer_offsets` in the background the first time a
    /// group needs it (Kafka does the same on the first FindCoordinator).
    fn create_topic(&self, app: &Arc<AppState>) {
        if self.creating.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = Arc::clone(&app.store);
        let creating = Arc::clone(&self.creating);
        self.runtime.spawn_blocking(move || {
            let spec = TopicSpec {
                partitions: Some(OFFSETS_PARTITIONS),
                retention_bytes: None,
                retention_age: Some(OFFSETS_RETENTION),
                replication_factor: None,
            };
            match store.create_topic(OFFSETS_TOPIC, spec) {
                Ok(_) | Err(crate::store::StoreError::TopicExists(_)) => {}
                Err(e) => tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC} yet; consumer groups wait for it"),
            }
            // The next request tries again if it failed.
            creating.store(false, Ordering::Release);
        });
    }

    fn find(&self, group: &str) -> Result<i32, KafkaError> {
        let app = self.app()?;
        let cluster = app.cluster.as_ref().ok_or(KafkaError::COORDINATOR_NOT_AVAILABLE)?;
        let view = cluster.view();
        if !view.topics.contains_key(OFFSETS_TOPIC) {
            self.create_topic(&app);
            return Err(KafkaError::COORDINATOR_NOT_AVAILABLE);
        }
        match view.partition(OFFSETS_TOPIC, partition_of(group)) {
            Some(s) if s.value.leader >= 0 && view.is_live(s.value.leader) => Ok(s.value.leader),
            _ => Err(KafkaError::COORDINATOR_NOT_AVAILABLE),
        }
    }

    fn local_partition(app: &AppState, p: u32) -> Result<Arc<Partition>, KafkaError> {
        app.store
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.partitions.get(p as usize).cloned())
            .ok_or(KafkaError::COORDINATOR_NOT_AVAILABLE)
    }

    /// Every commit in this node's copy of partition `p`, oldest first.
    fn read_commits(partition: &Partition) -> Result<Vec<CommittedOffset>, KafkaError> {
        let view = partition.end_view();
        let mut next = view.log_start_offset;
        let mut commits = Vec::new();
        loop {
            let chunk = read::read_from(&view, next, LOAD_CHUNK_BYTES).map_err(|e| {
                tracing::error!(topic = OFFSETS_TOPIC, partition = partition.id, error = %e, "cannot read committed offsets");
                KafkaError::COORDINATOR_NOT_AVAILABLE
            })?;
            if chunk.frames.is_empty() || chunk.next_offset <= next {
                return Ok(commits);
            }
            let mut rest = chunk.frames.as_slice();
            while !rest.is_empty() {
                let Ok(header) = BatchHeader::parse(rest) else { break };
                let Some((frame, tail)) = rest.split_at_checked(header.frame_len()) else {
                    break;
                };
                rest = tail;
                let records = match records_to_owned(frame, MAX_COMMIT_BATCH_BYTES) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(topic = OFFSETS_TOPIC, partition = partition.id, error = %e, "skipping an unreadable batch of commits");
                        continue;
                    }
                };
                for r in records {
                    match r.value.as_deref().map(serde_json::from_slice::<CommittedOffset>) {
                        Some(Ok(c)) => commits.push(c),
                        _ => tracing::warn!(
                            topic = OFFSETS_TOPIC,
                            partition = partition.id,
                            "skipping a record that is not a commit"
                        ),
                    }
                }
            }
            next = chunk.next_offset;
        }
    }

    /// The epoch at which this node leads `p` with a live session.
    fn leading_epoch(app: &AppState, partition: &Partition) -> Result<i32, KafkaError> {
        let cluster = app.cluster.as_ref().ok_or(KafkaError::COORDINATOR_NOT_AVAILABLE)?;
        cluster.ticket(partition, false).map_err(|e| coordinator_error(&e))
    }

    /// Appends one batch of `commits` (all of partition `p`) and waits
    /// until every in-sync replica holds it.
    async fn append(app: &AppState, p: u32, commits: &[&CommittedOffset], loaded: i32) -> Result<(), KafkaError> {
        let cluster = app.cluster.as_ref().ok_or(KafkaError::COORDINATOR_NOT_AVAILABLE)?;
        let partition = Self::local_partition(app, p)?;
        let epoch = cluster.ticket(&partition, true).map_err(|e| coordinator_error(&e))?;
        if epoch != loaded {
            // Led again at a new epoch since this node's state was loaded:
            // the client finds the coordinator again, which reloads.
            return Err(KafkaError::NOT_COORDINATOR);
        }
        let mut batch = BatchBuilder::new();
        let now = crate::store::topic::now_ms();
        for c in commits {
            let value = serde_json::to_vec(c).map_err(|_| KafkaError::UNKNOWN_SERVER_ERROR)?;
            batch.append(now, Some(c.group.as_bytes()), Some(&value), &[]);
        }
        let frame = batch
            .finish(Compression::None)
            .map_err(|_| KafkaError::UNKNOWN_SERVER_ERROR)?;
        let checked = backend::check_produce(
            &app.store,
            OFFSETS_TOPIC,
            i32::try_from(p).unwrap_or(0),
            Some(Bytes::from(frame)),
            usize::MAX,
            false,
        )
        .map_err(|f| f.error)?;
        let (partition, rx) = backend::submit(&app.writer, checked).await.map_err(|f| f.error)?;
        let stored = backend::outcome(&partition, rx).await.map_err(|f| f.error)?;
        cluster
            .acknowledge(&partition, epoch, stored.stored_end)
            .await
            .map_err(|e| coordinator_error(&e))
    }
}

/// A cluster refusal as the coordinator's error: the client looks for
/// the coordinator again (NOT_COORDINATOR) or retries later.
fn coordinator_error(e: &ClusterError) -> KafkaError {
    match e {
        ClusterError::NotLeader { .. } | ClusterError::SessionLost => KafkaError::NOT_COORDINATOR,
        _ => KafkaError::COORDINATOR_NOT_AVAILABLE,
    }
}

impl GroupPlacement for ClusterGroups {
    fn locate(&self, group: &str) -> Result<i32, KafkaError> {
        self.find(group)
    }

    fn claim(&self, group: &str) -> Result<Option<Reload>, KafkaError> {
        let app = self.app()?;
        let p = partition_of(group);
        let Ok(partition) = Self::local_partition(&app, p) else {
            // Not created yet (or no copy here yet): find the coordinator.
            let _ = self.find(group);
            return Err(KafkaError::NOT_COORDINATOR);
        };
        let epoch = Self::leading_epoch(&app, &partition)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.get(&p) == Some(&epoch) {
            return Ok(None);
        }
        let offsets = Self::read_commits(&partition)?;
        tracing::info!(
            topic = OFFSETS_TOPIC,
            partition = p,
            epoch,
            commits = offsets.len(),
            "coordinating this partition's consumer groups: committed offsets loaded from the log"
        );
        loaded.insert(p, epoch);
        Ok(Some(Reload {
            owns: Box::new(move |g| partition_of(g) == p),
            offsets,
        }))
    }

    fn save(&self, commits: &[CommittedOffset]) -> Result<(), KafkaError> {
        let app = self.app()?;
        let mut by_partition: HashMap<u32, Vec<&CommittedOffset>> = HashMap::new();
        for c in commits {
            by_partition.entry(partition_of(&c.group)).or_default().push(c);
        }
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.runtime.block_on(async {
            for (p, commits) in &by_partition {
                let epoch = *loaded.get(p).ok_or(KafkaError::NOT_COORDINATOR)?;
                Self::append(&app, *p, commits, epoch).await?;
            }
            Ok(())
        })
    }
}
