//! The log store: topics of partitions of segments, in Kafka's layout and
//! words, with batches stored exactly as they arrived.
//!
//! # Layout
//! - [`file_names`]: names on disk.
//! - [`segment`]: one `.log` file; append, fsync, recovery of a torn tail.
//! - [`scan`]: sequential frame reads shared by recovery, queries, consumers.
//! - [`partition`]: segments in order, offset assignment, rolling, the
//!   published read view, poisoning after a failed fsync.
//! - [`topic`]: a topic's metadata and partitions, created atomically.
//! - [`offset_index`], [`time_index`]: sparse per-segment indexes.
//! - [`summary`]: per-block time bounds, counts and streams of each
//!   segment, for queries to skip what cannot match.
//! - [`producer_state`]: per-stream sequences for deduplication.
//! - [`recovery`]: opening a partition from its recovery point.
//! - [`read`]: reads by offset and by time through the published view.
//! - [`writer`]: the writer threads and group commit; the only place that
//!   calls `append_frames`.
//! - [`maintenance`]: periodic checkpoints, retention, producer expiry.
//! - [`faults`]: injected i/o failures for tests.
//!
//! Durability: with `fsync = "always"` an append is acknowledged only after
//! fdatasync; the writer threads gather concurrent appends so that one
//! fdatasync covers many (group commit).

// Decoders and file offsets come from disk: no unchecked indexing here.
#![deny(clippy::indexing_slicing)]

pub mod dedup;
pub mod faults;
pub mod file_names;
pub mod maintenance;
pub mod offset_index;
pub mod partition;
pub mod producer_state;
pub mod read;
pub mod recovery;
pub mod scan;
pub mod segment;
pub mod summary;
pub mod time_index;
pub mod topic;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use logpost_shared::topic::{TopicNameError, validate_topic_name};

pub use dedup::{BatchOutcome, Refusal};
pub use partition::{
    AppendItem, Partition, PartitionSettings, PartitionView, RetentionPolicy, SegmentView, TruncateReport, WriteRole,
};
pub use segment::{BatchSummary, SegmentError};
pub use topic::{Topic, TopicMeta};

use faults::Faults;

/// When appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before every acknowledgement (shared by group commit).
    Always,
    /// Acknowledge after the write; fdatasync on this interval. A machine
    /// crash loses up to one interval of acknowledged appends.
    Interval(Duration),
}

/// Settings of one topic from `[topics.<name>]`; unset fields fall back to
/// what the topic was created with, then to `[storage]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicOverrides {
    pub partitions: Option<u32>,
    pub retention: RetentionOverride,
}

/// Retention settings that may each be unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOverride {
    pub bytes: Option<Option<u64>>,
    pub age: Option<Option<Duration>>,
}

/// Store settings, from `[storage]` and `[topics.*]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub default_partitions: u32,
    pub segment_bytes: u64,
    pub segment_age: Option<Duration>,
    pub index_interval_bytes: u64,
    pub fsync: FsyncPolicy,
    pub auto_create_topics: bool,
    pub writer_threads: usize,
    pub checkpoint_interval: Duration,
    pub retention: RetentionPolicy,
    pub retention_check_interval: Duration,
    pub producer_expiry: Duration,
    /// Topics beyond which ingest creates no more (the admin API still can).
    pub max_topics: usize,
    /// Partitions of all topics together beyond which ingest creates no more topics.
    pub max_total_partitions: u64,
    pub topics: HashMap<String, TopicOverrides>,
}

impl StoreConfig {
    /// Defaults for a store in `data_dir` (what an empty `[storage]` gives).
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            default_partitions: 1,
            segment_bytes: 1 << 30,
            segment_age: Some(Duration::from_secs(7 * 86_400)),
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Always,
            auto_create_topics: true,
            writer_threads: 2,
            checkpoint_interval: Duration::from_secs(10),
            retention: RetentionPolicy {
                bytes: None,
                age: Some(Duration::from_secs(7 * 86_400)),
            },
            retention_check_interval: Duration::from_secs(60),
            producer_expiry: Duration::from_secs(7 * 86_400),
            max_topics: 1000,
            max_total_partitions: 10_000,
            topics: HashMap::new(),
        }
    }

    fn partition_settings(&self) -> PartitionSettings {
        PartitionSettings {
            segment_bytes: self.segment_bytes,
            segment_age: self.segment_age,
            index_interval_bytes: self.index_interval_bytes,
        }
    }
}

/// What to create a topic with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicSpec {
    pub partitions: Option<u32>,
    pub retention_bytes: Option<u64>,
    pub retention_age: Option<Duration>,
    /// Copies of each partition in a cluster (`[cluster]
    /// replication_factor` when unset); ignored by a single node.
    pub replication_factor: Option<u32>,
}

/// Where topics are created and deleted when this store is one of many:
/// a cluster's etcd (`cluster::topics`). The store then creates and
/// deletes its own copies only when told to (`create_local_topic`).
/// Calls block (they wait for etcd and for the local copy).
pub trait TopicAuthority: Send + Sync + std::fmt::Debug {
    /// Creates `name` cluster-wide and returns the local copy.
    ///
    /// # Errors
    /// As [`Store::create_topic`], and [`StoreError::Unavailable`].
    fn create_topic(&self, name: &str, spec: TopicSpec) -> Result<Arc<Topic>, StoreError>;
    /// Deletes `name` cluster-wide.
    ///
    /// # Errors
    /// As [`Store::delete_topic`], and [`StoreError::Unavailable`].
    fn delete_topic(&self, name: &str) -> Result<(), StoreError>;
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    TopicName(#[from] TopicNameError),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("topic {0:?} does not exist and auto_create_topics is off")]
    AutoCreateDisabled(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error(
        "topic {topic:?} not created: {what} (storage.{key} = {limit}); create it through the admin API or raise the limit"
    )]
    TopicLimit {
        topic: String,
        what: &'static str,
        key: &'static str,
        limit: u64,
    },
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    NoSuchPartition { topic: String, partition: u32, count: u32 },
    #[error("{topic}/{partition}: partition refuses writes after a failed fsync; restart the collector to recover it")]
    Poisoned { topic: String, partition: u32 },
    #[error("{topic}/{partition}: disk full")]
    DiskFull {
        topic: String,
        partition: u32,
        #[source]
        source: SegmentError,
    },
    #[error("{topic}{}: storage i/o error", partition.map(|p| format!("/{p}")).unwrap_or_default())]
    Io {
        topic: String,
        partition: Option<u32>,
        #[source]
        source: SegmentError,
    },
    #[error("{}: cannot read or write topic metadata", path.display())]
    Meta {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: corrupt topic metadata", path.display())]
    MetaCorrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("partition count {0} is out of range (1 to 1024)")]
    BadPartitionCount(u32),
    #[error("the collector is shutting down")]
    ShuttingDown,
    #[error("{topic}/{partition}: this node is not the partition's leader ({role})")]
    NotLeader {
        topic: String,
        partition: u32,
        role: &'static str,
    },
    #[error("{topic}/{partition}: a replicated batch starts at offset {got}, but the log ends at {expected}")]
    ReplicaOutOfOrder {
        topic: String,
        partition: u32,
        expected: i64,
        got: i64,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("{topic}/{partition}: cannot read the log")]
    Read {
        topic: String,
        partition: u32,
        #[source]
        source: read::ReadError,
    },
    #[error("{topic}/{partition}: the writer queue is full; retry later")]
    Busy { topic: String, partition: u32 },
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Locked(#[from] logpost_shared::dir_lock::DirLockError),
}

/// All topics under one data directory.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion; appends never take it.
    admin: Mutex<()>,
    faults: Option<Arc<Faults>>,
    /// Set in a cluster: topics are created and deleted through it.
    authority: std::sync::OnceLock<Arc<dyn TopicAuthority>>,
    /// Held while the store is open: a second collector on the same data
    /// directory is refused instead of corrupting it.
    _lock: logpost_shared::dir_lock::DirLock,
}

impl Store {
    /// Opens (or initialises) the store, recovering every partition.
    ///
    /// # Errors
    /// The data directory cannot be created or read, or a topic cannot be opened.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        Self::open_with_faults(config, None)
    }

    /// As [`open`](Self::open), with injected i/o failures (tests).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_faults(config: StoreConfig, faults: Option<Arc<Faults>>) -> Result<Store, StoreError> {
        let dir = file_names::topics_dir(&config.data_dir);
        let meta_err = |source| StoreError::Meta {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(meta_err)?;
        let lock = logpost_shared::dir_lock::DirLock::acquire(&config.data_dir, "logpost-collector")?;
        let mut topics = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(meta_err)? {
            let entry = entry.map_err(meta_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.ends_with(file_names::TMP_SUFFIX) {
                // A topic creation or deletion interrupted by a crash.
                let _ = std::fs::remove_dir_all(entry.path());
                continue;
            }
            if validate_topic_name(name).is_err() || !entry.path().is_dir() {
                tracing::warn!(path = %entry.path().display(), "ignoring unexpected entry in topics directory");
                continue;
            }
            let (topic, reports) = Topic::open(&config.data_dir, name, config.partition_settings(), faults.clone())?;
            for (p, r) in reports.iter().enumerate() {
                if r.scanned_bytes > 0 || r.truncated_bytes > 0 || r.removed_segments > 0 || r.rebuilt_indexes > 0 {
                    tracing::info!(
                        topic = name,
                        partition = p,
                        segments = r.segments,
                        scanned_bytes = r.scanned_bytes,
                        truncated_bytes = r.truncated_bytes,
                        removed_segments = r.removed_segments,
                        rebuilt_indexes = r.rebuilt_indexes,
                        from_snapshot = r.snapshot_used,
                        "recovered partition"
                    );
                }
            }
            topics.insert(name.to_owned(), Arc::new(topic));
        }
        let store = Store {
            config,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            faults,
            authority: std::sync::OnceLock::new(),
            _lock: lock,
        };
        store.create_configured_topics()?;
        Ok(store)
    }

    /// Creates topics named in `[topics.*]` that do not exist yet.
    fn create_configured_topics(&self) -> Result<(), StoreError> {
        let mut names: Vec<&String> = self.config.topics.keys().collect();
        names.sort();
        for name in names {
            if self.topic(name).is_none() {
                self.create_local_topic(name, TopicSpec::default())?;
            }
        }
        Ok(())
    }

    /// From now on, topics are created and deleted through `authority`
    /// (a cluster); the first call wins.
    pub fn set_authority(&self, authority: Arc<dyn TopicAuthority>) {
        let _ = self.authority.set(authority);
    }

    /// Settings in force.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Topic `name`, if it exists.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Every topic but the internal ones (`__consumer_offsets`): what a
    /// query over all topics reads.
    pub fn user_topics(&self) -> Vec<Arc<Topic>> {
        let mut topics = self.topics();
        topics.retain(|t| !logpost_shared::topic::is_internal(&t.name));
        topics
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Topic `name`, created with its configured or the default partition
    /// count if missing and auto-creation is on.
    ///
    /// # Errors
    /// A bad name, auto-creation off, or an i/o error creating it.
    pub fn topic_for_ingest(&self, name: &str) -> Result<Arc<Topic>, StoreError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        validate_topic_name(name)?;
        if !self.config.auto_create_topics {
            return Err(StoreError::AutoCreateDisabled(name.to_owned()));
        }
        self.check_ingest_caps(name)?;
        match self.create_topic(name, TopicSpec::default()) {
            Ok(t) => Ok(t),
            // Another request created it meanwhile.
            Err(StoreError::TopicExists(_)) => self
                .topic(name)
                .ok_or_else(|| StoreError::UnknownTopic(name.to_owned())),
            Err(e) => Err(e),
        }
    }

    /// Refuses a topic that ingest would create beyond `max_topics` or
    /// `max_total_partitions`: a client sending to random topic names must
    /// not be able to fill the disk with directories and file handles.
    /// Checked without the admin lock, so concurrent creations may overshoot
    /// by a few; the cap is about runaway clients, not exact accounting.
    fn check_ingest_caps(&self, name: &str) -> Result<(), StoreError> {
        let topics = self.topics();
        let limit_err = |what, key, limit| StoreError::TopicLimit {
            topic: name.to_owned(),
            what,
            key,
            limit,
        };
        if topics.len() >= self.config.max_topics {
            return Err(limit_err(
                "too many topics",
                "max_topics",
                self.config.max_topics as u64,
            ));
        }
        let partitions: u64 = topics.iter().map(|t| u64::from(t.meta.partitions)).sum();
        let new = u64::from(
            self.config
                .topics
                .get(name)
                .and_then(|o| o.partitions)
                .unwrap_or(self.config.default_partitions),
        );
        if partitions + new > self.config.max_total_partitions {
            return Err(limit_err(
                "too many partitions",
                "max_partitions",
                self.config.max_total_partitions,
            ));
        }
        Ok(())
    }

    /// Creates topic `name` (in a cluster: cluster-wide, through the
    /// authority).
    ///
    /// # Errors
    /// A bad name or partition count, an existing topic, or an i/o error.
    pub fn create_topic(&self, name: &str, spec: TopicSpec) -> Result<Arc<Topic>, StoreError> {
        validate_topic_name(name)?;
        if let Some(authority) = self.authority.get() {
            let partitions = self.partitions_for(name, spec);
            if partitions == 0 || partitions > MAX_PARTITIONS {
                return Err(StoreError::BadPartitionCount(partitions));
            }
            return authority.create_topic(
                name,
                TopicSpec {
                    partitions: Some(partitions),
                    ..spec
                },
            );
        }
        self.create_local_topic(name, spec)
    }

    /// The partition count `name` gets with `spec`: the spec's, the
    /// topic's `[topics.<name>]`, or the default.
    pub fn partitions_for(&self, name: &str, spec: TopicSpec) -> u32 {
        spec.partitions
            .or(self.config.topics.get(name).and_then(|o| o.partitions))
            .unwrap_or(self.config.default_partitions)
    }

    /// Creates this store's own copy of topic `name` (what [`create_topic`](Self::create_topic)
    /// does alone; in a cluster, what the cluster asks for).
    ///
    /// # Errors
    /// A bad name or partition count, an existing topic, or an i/o error.
    pub fn create_local_topic(&self, name: &str, spec: TopicSpec) -> Result<Arc<Topic>, StoreError> {
        validate_topic_name(name)?;
        let overrides = self.config.topics.get(name);
        let partitions = spec
            .partitions
            .or(overrides.and_then(|o| o.partitions))
            .unwrap_or(self.config.default_partitions);
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(StoreError::BadPartitionCount(partitions));
        }
        let _guard = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        if self.topic(name).is_some() {
            return Err(StoreError::TopicExists(name.to_owned()));
        }
        let meta = TopicMeta {
            partitions,
            created_ms: topic::now_ms(),
            retention_bytes: spec.retention_bytes,
            retention_age_ms: spec
                .retention_age
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let topic = Arc::new(Topic::create(
            &self.config.data_dir,
            name,
            meta,
            self.config.partition_settings(),
            self.faults.clone(),
        )?);
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), Arc::clone(&topic));
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes topic `name` and its data (in a cluster: cluster-wide).
    /// Readers holding its files finish what they read; new requests see
    /// it gone at once.
    ///
    /// # Errors
    /// An unknown topic, or an i/o error moving its directory aside.
    pub fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        if let Some(authority) = self.authority.get() {
            return authority.delete_topic(name);
        }
        self.delete_local_topic(name)
    }

    /// Deletes this store's own copy of topic `name`.
    ///
    /// # Errors
    /// As [`delete_topic`](Self::delete_topic).
    pub fn delete_local_topic(&self, name: &str) -> Result<(), StoreError> {
        let _guard = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| StoreError::UnknownTopic(name.to_owned()))?;
        // Move aside first (atomic), then delete: a crash in between leaves a
        // `.tmp` directory that the next start removes.
        let parent = file_names::topics_dir(&self.config.data_dir);
        let aside = parent.join(format!(".{name}.{}.deleted{}", topic::now_ms(), file_names::TMP_SUFFIX));
        std::fs::rename(&topic.dir, &aside).map_err(|source| StoreError::Meta {
            path: topic.dir.clone(),
            source,
        })?;
        let _ = sync_dir(&parent);
        if let Err(e) = std::fs::remove_dir_all(&aside) {
            tracing::warn!(path = %aside.display(), error = %e, "cannot remove deleted topic's files; they go at the next start");
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// The retention policy in force for `topic`.
    pub fn retention_for(&self, topic: &Topic) -> RetentionPolicy {
        let o = self
            .config
            .topics
            .get(&*topic.name)
            .map(|o| o.retention)
            .unwrap_or_default();
        let meta_age = topic.meta.retention_age_ms.map(Duration::from_millis);
        RetentionPolicy {
            bytes: o
                .bytes
                .unwrap_or(topic.meta.retention_bytes.or(self.config.retention.bytes)),
            age: o.age.unwrap_or(meta_age.or(self.config.retention.age)),
        }
    }

    /// Writes a recovery point for every partition with new data.
    pub fn checkpoint_all(&self) {
        for t in self.topics() {
            for p in &t.partitions {
                if let Err(e) = p.checkpoint() {
                    tracing::warn!(topic = %t.name, partition = p.id, error = %e, "checkpoint failed; will retry");
                }
            }
        }
    }

    /// Applies retention to every partition; returns segments deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> usize {
        let mut deleted = 0;
        for t in self.topics() {
            let policy = self.retention_for(&t);
            for p in &t.partitions {
                deleted += p.enforce_retention(policy, now_ms);
            }
        }
        deleted
    }

    /// Rebuilds missing or stale segment summaries (see
    /// [`Partition::rebuild_summaries`]); returns how many.
    pub fn rebuild_summaries(&self, stop: &dyn Fn() -> bool) -> usize {
        let mut rebuilt = 0;
        for t in self.topics() {
            for p in &t.partitions {
                if stop() {
                    return rebuilt;
                }
                rebuilt += p.rebuild_summaries(stop);
            }
        }
        rebuilt
    }

    /// Forgets producers idle since before `cutoff_ms`; returns how many.
    pub fn expire_producers(&self, cutoff_ms: i64) -> usize {
        self.topics()
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.expire_producers(cutoff_ms))
            .sum()
    }

    /// Clean shutdown: a final checkpoint of every partition.
    pub fn close(&self) {
        for t in self.topics() {
            for p in &t.partitions {
                p.close();
            }
        }
    }
}

/// Largest partition count of one topic; a guard against typos such as 10000.
pub const MAX_PARTITIONS: u32 = 1024;

/// fsyncs a directory, so that a file created or renamed in it survives a crash.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
