//! The sparse offset index of one segment (`.index`): entries mapping an
//! offset (relative to the segment's base) to the byte position of the
//! batch holding it, one entry every `index_interval_bytes` of log.
//!
//! As in Kafka, the index has no checksum: it is flushed at checkpoints,
//! and after a crash everything past the recovery point is rebuilt from the
//! log, never trusted. Lookups find the greatest entry at or below the
//! target; the caller scans forward from there.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes per entry: relative offset (u32) and position (u32), big-endian.
pub const ENTRY_BYTES: usize = 8;

/// One segment's offset index, held in memory and appended to its file.
#[derive(Debug)]
pub struct OffsetIndex {
    path: PathBuf,
    entries: Vec<(u32, u32)>,
    /// Entries already in the file.
    written: usize,
}

impl OffsetIndex {
    /// An empty index for a new segment (the file is created on first flush).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            entries: Vec::new(),
            written: 0,
        }
    }

    /// Loads the index file, keeping only entries that are plausible for a
    /// log of `log_len` bytes: increasing offsets and positions below the
    /// end. Returns `None` if the file is missing or inconsistent (rebuild).
    pub fn load(path: PathBuf, log_len: u64) -> Option<Self> {
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() % ENTRY_BYTES != 0 {
            return None;
        }
        let mut entries = Vec::with_capacity(bytes.len() / ENTRY_BYTES);
        for chunk in bytes.chunks_exact(ENTRY_BYTES) {
            let rel = u32::from_be_bytes(chunk.get(..4)?.try_into().ok()?);
            let pos = u32::from_be_bytes(chunk.get(4..)?.try_into().ok()?);
            if let Some(&(last_rel, last_pos)) = entries.last()
                && (rel <= last_rel || pos <= last_pos)
            {
                return None;
            }
            if u64::from(pos) >= log_len.max(1) {
                return None;
            }
            entries.push((rel, pos));
        }
        let written = entries.len();
        Some(Self { path, entries, written })
    }

    /// Path of the `.index` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry; ignored unless it follows the last one.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(r, p)| relative_offset > r && position > p)
        {
            self.entries.push((relative_offset, position));
        }
    }

    /// Byte position from which to scan for `relative_offset`: the entry at
    /// or below it, or the segment start.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(r, _)| r <= relative_offset);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map_or(0, |&(_, p)| p)
    }

    /// Drops entries at or past byte `position` (before rebuilding a tail).
    pub fn truncate_to_position(&mut self, position: u64) {
        let keep = self.entries.partition_point(|&(_, p)| u64::from(p) < position);
        self.entries.truncate(keep);
        if self.written > keep {
            self.written = usize::MAX; // the file must be rewritten
        }
    }

    /// Writes entries not yet in the file and, with `sync`, fsyncs it.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn flush(&mut self, sync: bool) -> io::Result<()> {
        if self.written == self.entries.len() && !sync {
            return Ok(());
        }
        let rewrite = self.written > self.entries.len();
        let mut file = if rewrite {
            File::create(&self.path)?
        } else {
            OpenOptions::new().create(true).append(true).open(&self.path)?
        };
        let from = if rewrite { 0 } else { self.written };
        let mut buf = Vec::with_capacity((self.entries.len() - from) * ENTRY_BYTES);
        for &(r, p) in self.entries.get(from..).unwrap_or_default() {
            buf.extend_from_slice(&r.to_be_bytes());
            buf.extend_from_slice(&p.to_be_bytes());
        }
        file.write_all(&buf)?;
        if sync {
            file.sync_data()?;
        }
        self.written = self.entries.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_greatest_entry_at_or_below() {
        let mut idx = OffsetIndex::new(PathBuf::from("/nonexistent"));
        idx.push(0, 0);
        idx.push(10, 4096);
        idx.push(25, 9000);
        idx.push(20, 10_000); // out of order: ignored
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(9), 0);
        assert_eq!(idx.lookup(10), 4096);
        assert_eq!(idx.lookup(24), 4096);
        assert_eq!(idx.lookup(1000), 9000);
    }

    #[test]
    fn flush_load_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = OffsetIndex::new(path.clone());
        idx.push(0, 0);
        idx.push(5, 100);
        idx.flush(true).unwrap();
        idx.push(9, 200);
        idx.flush(false).unwrap();
        let loaded = OffsetIndex::load(path.clone(), 1000).unwrap();
        assert_eq!(loaded.entries, vec![(0, 0), (5, 100), (9, 200)]);
        // Positions past the log's end make the file untrustworthy.
        assert!(OffsetIndex::load(path.clone(), 150).is_none());
        let mut idx = loaded;
        idx.truncate_to_position(150);
        idx.flush(false).unwrap();
        assert_eq!(
            OffsetIndex::load(path.clone(), 1000).unwrap().entries,
            vec![(0, 0), (5, 100)]
        );
        std::fs::write(&path, b"123").unwrap();
        assert!(OffsetIndex::load(path, 1000).is_none(), "torn entry");
    }
}
