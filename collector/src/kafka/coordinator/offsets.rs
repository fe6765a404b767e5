//! Durable committed offsets: the [`OffsetStore`] trait through which the
//! coordinator persists them, a simple file-backed store, and an in-memory
//! store for tests.
//!
//! The coordinator hands the store batches of commits from a single writer
//! task, in commit order, and answers OffsetCommit only after `save`
//! returned: an acknowledged commit survives a restart of the process.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One committed position of a group in a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// Group id.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch the client sent with the commit, -1 if none.
    #[serde(default = "minus_one")]
    pub leader_epoch: i32,
    /// Client metadata string.
    #[serde(default)]
    pub metadata: Option<String>,
}

fn minus_one() -> i32 {
    -1
}

/// Where committed offsets are kept across restarts.
pub trait OffsetStore: Send + Sync + 'static {
    /// Every stored offset, read once at start-up.
    fn load(&self) -> io::Result<Vec<CommittedOffset>>;
    /// Stores `commits` (later entries win for the same key) durably before
    /// returning. Called from a blocking thread, one call at a time.
    fn save(&self, commits: &[CommittedOffset]) -> io::Result<()>;
}

type Key = (String, String, i32);

fn key(c: &CommittedOffset) -> Key {
    (c.group.clone(), c.topic.clone(), c.partition)
}

/// Keeps offsets in memory only: they are lost with the process (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryOffsetStore {
    offsets: Mutex<BTreeMap<Key, CommittedOffset>>,
}

#[cfg(test)]
impl MemoryOffsetStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(test)]
impl OffsetStore for MemoryOffsetStore {
    fn load(&self) -> io::Result<Vec<CommittedOffset>> {
        let map = self
            .offsets
            .lock()
            .map_err(|_| io::Error::other("offset store lock poisoned"))?;
        Ok(map.values().cloned().collect())
    }

    fn save(&self, commits: &[CommittedOffset]) -> io::Result<()> {
        let mut map = self
            .offsets
            .lock()
            .map_err(|_| io::Error::other("offset store lock poisoned"))?;
        for c in commits {
            map.insert(key(c), c.clone());
        }
        Ok(())
    }
}

/// Keeps all offsets in one JSON file, rewritten whole on every save
/// (temp file, fsync, rename, directory fsync), so the file is always either
/// the old or the new state. Rewriting everything makes a save cost
/// O(offsets stored): fine for thousands of partitions, not for millions.
#[derive(Debug)]
pub struct FileOffsetStore {
    path: PathBuf,
    offsets: Mutex<BTreeMap<Key, CommittedOffset>>,
}

impl FileOffsetStore {
    /// Opens (or, if missing, starts) the store at `path`.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let offsets = match fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<CommittedOffset> = serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?;
                list.into_iter().map(|c| (key(&c), c)).collect()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            offsets: Mutex::new(offsets),
        })
    }

    fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    }
}

impl OffsetStore for FileOffsetStore {
    fn load(&self) -> io::Result<Vec<CommittedOffset>> {
        let map = self
            .offsets
            .lock()
            .map_err(|_| io::Error::other("offset store lock poisoned"))?;
        Ok(map.values().cloned().collect())
    }

    fn save(&self, commits: &[CommittedOffset]) -> io::Result<()> {
        let mut map = self
            .offsets
            .lock()
            .map_err(|_| io::Error::other("offset store lock poisoned"))?;
        let mut next = map.clone();
        for c in commits {
            next.insert(key(c), c.clone());
        }
        let list: Vec<&CommittedOffset> = next.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).map_err(io::Error::other)?;
        Self::write_atomically(&self.path, &bytes)?;
        // Memory follows the file only once the file has it.
        *map = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(group: &str, partition: i32, offset: i64) -> CommittedOffset {
        CommittedOffset {
            group: group.into(),
            topic: "t".into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: Some("m".into()),
        }
    }

    #[test]
    fn memory_store_keeps_latest() {
        let s = MemoryOffsetStore::new();
        s.save(&[commit("g", 0, 1), commit("g", 0, 5), commit("g", 1, 2)])
            .unwrap();
        let mut all = s.load().unwrap();
        all.sort_by_key(|c| c.partition);
        assert_eq!(all, vec![commit("g", 0, 5), commit("g", 1, 2)]);
    }

    #[test]
    fn file_store_survives_reopen_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.json");
        let s = FileOffsetStore::open(&path).unwrap();
        assert!(s.load().unwrap().is_empty());
        s.save(&[commit("g", 0, 10)]).unwrap();
        s.save(&[commit("g", 0, 11), commit("h", 3, 7)]).unwrap();
        drop(s);
        let reopened = FileOffsetStore::open(&path).unwrap();
        let mut all = reopened.load().unwrap();
        all.sort_by(|a, b| a.group.cmp(&b.group));
        assert_eq!(all, vec![commit("g", 0, 11), commit("h", 3, 7)]);
        assert!(!dir.path().join("offsets.json.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.json");
        fs::write(&path, b"{not json").unwrap();
        assert_eq!(
            FileOffsetStore::open(&path).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn failed_write_keeps_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-subdir").join("offsets.json");
        let s = FileOffsetStore::open(&path).unwrap();
        assert!(s.save(&[commit("g", 0, 1)]).is_err(), "the directory does not exist");
        assert!(s.load().unwrap().is_empty(), "memory must not run ahead of the file");
    }
}
