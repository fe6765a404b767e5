//! The sparse time index of one segment (`.timeindex`): entries mapping a
//! timestamp to the relative offset of the first batch whose max timestamp
//! reached it, added when the segment's max timestamp grows. Used to find
//! "the first offset at or after time T" without scanning whole segments.
//!
//! Like the offset index it is rebuilt after a crash, never trusted past
//! the recovery point.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes per entry: timestamp (i64) and relative offset (u32), big-endian.
pub const ENTRY_BYTES: usize = 12;

/// One segment's time index.
#[derive(Debug)]
pub struct TimeIndex {
    path: PathBuf,
    entries: Vec<(i64, u32)>,
    written: usize,
}

impl TimeIndex {
    /// An empty index for a new segment.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            entries: Vec::new(),
            written: 0,
        }
    }

    /// Loads the file; `None` if missing or inconsistent.
    pub fn load(path: PathBuf) -> Option<Self> {
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() % ENTRY_BYTES != 0 {
            return None;
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / ENTRY_BYTES);
        for chunk in bytes.chunks_exact(ENTRY_BYTES) {
            let ts = i64::from_be_bytes(chunk.get(..8)?.try_into().ok()?);
            let rel = u32::from_be_bytes(chunk.get(8..)?.try_into().ok()?);
            if let Some(&(last_ts, last_rel)) = entries.last()
                && (ts <= last_ts || rel < last_rel)
            {
                return None;
            }
            entries.push((ts, rel));
        }
        let written = entries.len();
        Some(Self { path, entries, written })
    }

    /// Path of the `.timeindex` file.
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

    /// Largest timestamp indexed.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|&(t, _)| t)
    }

    /// Adds an entry if `timestamp` is greater than the last one's.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(t, r)| timestamp > t && relative_offset >= r)
        {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// Relative offset from which to scan for the first record at or after
    /// `timestamp`: the offset of the last entry whose timestamp is below
    /// it (batches before that one all ended earlier), or 0.
    pub fn lookup(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map_or(0, |&(_, r)| r)
    }

    /// Drops entries at or past relative offset `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(_, r)| r < relative_offset);
        self.entries.truncate(keep);
        if self.written > keep {
            self.written = usize::MAX;
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
        for &(t, r) in self.entries.get(from..).unwrap_or_default() {
            buf.extend_from_slice(&t.to_be_bytes());
            buf.extend_from_slice(&r.to_be_bytes());
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
    fn lookup_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut idx = TimeIndex::new(path.clone());
        idx.push(100, 0);
        idx.push(100, 5); // not greater: ignored
        idx.push(200, 10);
        idx.push(300, 20);
        assert_eq!(idx.lookup(50), 0);
        assert_eq!(idx.lookup(100), 0);
        assert_eq!(idx.lookup(150), 0);
        assert_eq!(idx.lookup(250), 10);
        assert_eq!(idx.lookup(10_000), 20);
        idx.flush(true).unwrap();
        let loaded = TimeIndex::load(path.clone()).unwrap();
        assert_eq!(loaded.entries, idx.entries);
        let mut loaded = loaded;
        loaded.truncate_to_offset(10);
        loaded.flush(false).unwrap();
        assert_eq!(TimeIndex::load(path).unwrap().entries, vec![(100, 0)]);
    }
}
