//! A replica's memory of leader epochs (Kafka's leader-epoch-checkpoint)
//! and of its high watermark, in `<partition dir>/replica-state.json`.
//!
//! The epoch cache lists, for each leader epoch this replica's log holds
//! batches of, the offset where that epoch starts. A leader answers "where
//! does epoch E end in your log?" from it (KIP-101's OffsetsForLeaderEpoch);
//! a follower cuts its log there before fetching, which removes exactly
//! the tail that no leader acknowledged.
//!
//! Written atomically (temp file, fsync, rename) whenever an epoch is
//! added or cut; the high watermark rides along and is also written now
//! and then, so that a restarted replica shows readers what was committed.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name in a partition's directory.
pub const REPLICA_STATE: &str = "replica-state.json";

/// Epoch start offsets, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    /// The newest epoch and where it starts.
    pub fn latest(&self) -> Option<(i32, i64)> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start`; false if it adds nothing
    /// (an epoch not newer than the latest).
    pub fn assign(&mut self, epoch: i32, start: i64) -> bool {
        if self.latest().is_some_and(|(e, _)| e >= epoch) {
            return false;
        }
        // Entries starting past `start` describe a tail that is gone.
        self.entries.retain(|&(_, s)| s <= start);
        self.entries.push((epoch, start));
        true
    }

    /// Where `requested` ends in a log ending at `log_end`: the largest
    /// epoch at or below it and the start of the next epoch (or the log
    /// end for the latest); `None` when no epoch that old is known.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|&(e, _)| e <= requested).checked_sub(1)?;
        let (epoch, _) = *self.entries.get(i)?;
        let end = self.entries.get(i + 1).map_or(log_end, |&(_, s)| s);
        Some((epoch, end))
    }

    /// Drops epochs starting at or past `end` (after the log was cut there).
    pub fn truncate_from_end(&mut self, end: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end);
        self.entries.len() != before
    }
}

/// What `replica-state.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub high_watermark: i64,
    pub leader_epochs: EpochCache,
}

/// The file of one partition.
#[derive(Debug, Clone)]
pub struct ReplicaFile {
    dir: PathBuf,
}

impl ReplicaFile {
    /// The file in partition directory `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    /// The saved state; `None` when there is none (a partition that was
    /// never a replica: new, or a single node's data joining a cluster).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(&self) -> std::io::Result<Option<ReplicaState>> {
        match std::fs::read(self.dir.join(REPLICA_STATE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves `state` durably (temp file, fsync, rename, fsync directory).
    ///
    /// # Errors
    /// Any file operation failed; the previous state stays.
    pub fn save(&self, state: &ReplicaState) -> std::io::Result<()> {
        let path = self.dir.join(REPLICA_STATE);
        let tmp = self
            .dir
            .join(format!("{REPLICA_STATE}{}", crate::store::file_names::TMP_SUFFIX));
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        crate::store::sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kip_101() {
        let mut c = EpochCache::default();
        assert!(c.assign(0, 0));
        assert!(c.assign(2, 100));
        assert!(!c.assign(2, 150), "not newer");
        assert!(c.assign(5, 180));
        assert_eq!(c.end_offset_for(0, 200), Some((0, 100)));
        assert_eq!(c.end_offset_for(1, 200), Some((0, 100)), "largest epoch at or below");
        assert_eq!(c.end_offset_for(3, 200), Some((2, 180)));
        assert_eq!(
            c.end_offset_for(5, 200),
            Some((5, 200)),
            "the latest ends at the log end"
        );
        assert_eq!(c.end_offset_for(9, 200), Some((5, 200)));
        assert_eq!(c.end_offset_for(-1, 200), None);
        assert!(c.truncate_from_end(180));
        assert_eq!(c.latest(), Some((2, 100)));
        // A newer epoch starting below a stale entry replaces it.
        assert!(c.assign(7, 90));
        assert_eq!(c.entries, vec![(0, 0), (7, 90)]);
    }

    #[test]
    fn the_file_round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = ReplicaFile::new(dir.path());
        assert_eq!(f.load().unwrap(), None);
        let mut state = ReplicaState {
            high_watermark: 42,
            ..ReplicaState::default()
        };
        state.leader_epochs.assign(3, 10);
        f.save(&state).unwrap();
        assert_eq!(f.load().unwrap(), Some(state));
        std::fs::write(dir.path().join(REPLICA_STATE), b"{").unwrap();
        assert!(f.load().is_err());
    }
}
