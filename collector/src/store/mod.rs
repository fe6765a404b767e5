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
//! - [`writer`]: the writer threads and group commit; the only place that
//!   calls `append_frames`.
//!
//! Durability: with `fsync = "always"` an append is acknowledged only after
//! fdatasync; the writer threads gather concurrent appends so that one
//! fdatasync covers many (group commit).

// Decoders and file offsets come from disk: no unchecked indexing here.
#![deny(clippy::indexing_slicing)]

pub mod file_names;
pub mod partition;
pub mod scan;
pub mod segment;
pub mod topic;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use logpost_shared::topic::{TopicNameError, validate_topic_name};

pub use partition::{Partition, PartitionView, SegmentView};
pub use segment::{BatchSummary, SegmentError};
pub use topic::{Topic, TopicMeta};

/// When appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before every acknowledgement (shared by group commit).
    Always,
    /// Acknowledge after the write; fdatasync on this interval. A machine
    /// crash loses up to one interval of acknowledged appends.
    Interval(Duration),
}

/// Store settings, from `[storage]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub default_partitions: u32,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub auto_create_topics: bool,
    pub writer_threads: usize,
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
    #[error("the collector is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

/// All topics under one data directory.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion; appends never take it.
    admin: Mutex<()>,
}

impl Store {
    /// Opens (or initialises) the store, recovering every partition.
    ///
    /// # Errors
    /// The data directory cannot be created or read, or a topic cannot be opened.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let dir = file_names::topics_dir(&config.data_dir);
        let meta_err = |source| StoreError::Meta {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(meta_err)?;
        let mut topics = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(meta_err)? {
            let entry = entry.map_err(meta_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.ends_with(file_names::TMP_SUFFIX) {
                // A topic creation interrupted by a crash.
                let _ = std::fs::remove_dir_all(entry.path());
                continue;
            }
            if validate_topic_name(name).is_err() || !entry.path().is_dir() {
                tracing::warn!(path = %entry.path().display(), "ignoring unexpected entry in topics directory");
                continue;
            }
            let topic = Topic::open(&config.data_dir, name, config.segment_bytes)?;
            topics.insert(name.to_owned(), Arc::new(topic));
        }
        Ok(Store {
            config,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
        })
    }

    /// Settings in force.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Topic `name`, if it exists.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
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

    /// Topic `name`, created with the default partition count if missing and
    /// auto-creation is on.
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
        match self.create_topic(name, self.config.default_partitions) {
            Ok(t) => Ok(t),
            // Another request created it meanwhile.
            Err(StoreError::TopicExists(_)) => self
                .topic(name)
                .ok_or_else(|| StoreError::UnknownTopic(name.to_owned())),
            Err(e) => Err(e),
        }
    }

    /// Creates topic `name` with `partitions` partitions.
    ///
    /// # Errors
    /// A bad name, an existing topic, or an i/o error.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<Arc<Topic>, StoreError> {
        validate_topic_name(name)?;
        let _guard = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        if self.topic(name).is_some() {
            return Err(StoreError::TopicExists(name.to_owned()));
        }
        let topic = Arc::new(Topic::create(
            &self.config.data_dir,
            name,
            partitions,
            self.config.segment_bytes,
        )?);
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), Arc::clone(&topic));
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }
}

/// fsyncs a directory, so that a file created or renamed in it survives a crash.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
