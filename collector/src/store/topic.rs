//! A topic: its metadata file and its partitions.
//!
//! A topic is created whole or not at all: its directory is assembled under
//! a temporary name and renamed into place, so a crash mid-creation leaves
//! only a `.tmp` directory that the next start deletes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::faults::Faults;
use super::file_names::{TMP_SUFFIX, TOPIC_META, partition_dir, topic_dir, topics_dir};
use super::partition::{Partition, PartitionSettings};
use super::recovery::LoadReport;
use super::{StoreError, sync_dir};

/// `topic.json`: what a topic is, beyond its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicMeta {
    pub partitions: u32,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Retention set when the topic was created (the config file's
    /// `[topics.<name>]` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_age_ms: Option<u64>,
}

/// An open topic.
#[derive(Debug)]
pub struct Topic {
    pub name: Arc<str>,
    pub dir: PathBuf,
    pub meta: TopicMeta,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// Creates topic `name` as `meta` says under `data_dir`.
    ///
    /// # Errors
    /// [`StoreError::TopicExists`], or an i/o error (nothing is left behind).
    pub fn create(
        data_dir: &Path,
        name: &str,
        meta: TopicMeta,
        settings: PartitionSettings,
        faults: Option<Arc<Faults>>,
    ) -> Result<Topic, StoreError> {
        let final_dir = topic_dir(data_dir, name);
        if final_dir.exists() {
            return Err(StoreError::TopicExists(name.to_owned()));
        }
        let parent = topics_dir(data_dir);
        let tmp_dir = parent.join(format!(".{name}{TMP_SUFFIX}"));
        let meta_err = |path: &Path, source: std::io::Error| StoreError::Meta {
            path: path.to_owned(),
            source,
        };
        let _ = std::fs::remove_dir_all(&tmp_dir);
        std::fs::create_dir_all(&tmp_dir).map_err(|e| meta_err(&tmp_dir, e))?;
        let meta_path = tmp_dir.join(TOPIC_META);
        let json = serde_json::to_vec_pretty(&meta).expect("TopicMeta serializes");
        write_synced(&meta_path, &json).map_err(|e| meta_err(&meta_path, e))?;
        for p in 0..meta.partitions {
            let dir = partition_dir(&tmp_dir, p);
            std::fs::create_dir(&dir).map_err(|e| meta_err(&dir, e))?;
        }
        sync_dir(&tmp_dir).map_err(|e| meta_err(&tmp_dir, e))?;
        std::fs::rename(&tmp_dir, &final_dir).map_err(|e| meta_err(&final_dir, e))?;
        sync_dir(&parent).map_err(|e| meta_err(&parent, e))?;
        Topic::open(data_dir, name, settings, faults).map(|(t, _)| t)
    }

    /// Opens an existing topic, recovering each partition.
    ///
    /// # Errors
    /// A missing or corrupt `topic.json`, or a partition that cannot be opened.
    pub fn open(
        data_dir: &Path,
        name: &str,
        settings: PartitionSettings,
        faults: Option<Arc<Faults>>,
    ) -> Result<(Topic, Vec<LoadReport>), StoreError> {
        let dir = topic_dir(data_dir, name);
        let meta_path = dir.join(TOPIC_META);
        let bytes = std::fs::read(&meta_path).map_err(|source| StoreError::Meta {
            path: meta_path.clone(),
            source,
        })?;
        let meta: TopicMeta = serde_json::from_slice(&bytes).map_err(|source| StoreError::MetaCorrupt {
            path: meta_path.clone(),
            source,
        })?;
        let name: Arc<str> = Arc::from(name);
        let mut partitions = Vec::with_capacity(meta.partitions as usize);
        let mut reports = Vec::with_capacity(meta.partitions as usize);
        for p in 0..meta.partitions {
            let (part, report) =
                Partition::open(Arc::clone(&name), p, &partition_dir(&dir, p), settings, faults.clone())?;
            partitions.push(Arc::new(part));
            reports.push(report);
        }
        Ok((
            Topic {
                name,
                dir,
                meta,
                partitions,
            },
            reports,
        ))
    }

    /// Partition `id`, if it exists.
    pub fn partition(&self, id: u32) -> Option<&Arc<Partition>> {
        self.partitions.get(id as usize)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
