//! One segment of a partition: `<base_offset>.log` holding RecordBatch v2
//! bytes exactly as received (with the collector's offsets written in), its
//! sparse `.index` and `.timeindex`, and its `.summary` (per-block time
//! bounds and streams, see [`super::summary`]).
//!
//! Why a module of its own: `partition.rs` decides *which* segment to append
//! to, roll or delete; this module owns *how* bytes land in one file and how
//! a torn tail is found after a crash. It never decides when to fsync:
//! that is the writer's call, so that many appends share one fdatasync.
//!
//! Invariant: every byte below `len` belongs to a whole batch whose CRC was
//! checked and whose offsets continue the previous batch's. The indexes may
//! lag the log; past the recovery point they are rebuilt, never trusted.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use logpost_shared::batch::{BatchHeader, check};

use super::faults::Faults;
use super::file_names::{INDEX_SUFFIX, TIMEINDEX_SUFFIX, log_path};
use super::offset_index::OffsetIndex;
use super::scan::{ScanError, SegmentScanner};
use super::summary::file::summary_path;
use super::summary::{BatchStats, SegmentSummary, SharedSummary, build};
use super::time_index::TimeIndex;

/// Why a segment operation failed; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{}: {op} failed", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl SegmentError {
    /// The underlying i/o error.
    pub fn io_error(&self) -> &io::Error {
        match self {
            SegmentError::Io { source, .. } => source,
        }
    }
}

/// What recovery found in a segment's tail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    pub batches: u64,
    pub scanned_bytes: u64,
    pub truncated_bytes: u64,
    /// Why the tail was cut, when it was.
    pub reason: Option<String>,
}

/// Summary of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// Shared, growing index of a segment (readers look up, the writer appends).
pub type SharedIndex = Arc<RwLock<OffsetIndex>>;
/// Shared, growing time index of a segment.
pub type SharedTimeIndex = Arc<RwLock<TimeIndex>>;

/// An open segment.
#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    next_offset: i64,
    max_timestamp: i64,
    index: SharedIndex,
    time_index: SharedTimeIndex,
    summary: SharedSummary,
    /// A background rebuild of the summary failed; do not retry it.
    pub summary_rebuild_failed: bool,
    index_interval: u64,
    bytes_since_index: u64,
    /// When this process created or opened it: segment age for rolling.
    pub opened_at: Instant,
    faults: Option<Arc<Faults>>,
}

fn index_paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base_offset:020}{INDEX_SUFFIX}")),
        dir.join(format!("{base_offset:020}{TIMEINDEX_SUFFIX}")),
    )
}

impl Segment {
    /// Creates a new, empty segment (its files must not exist).
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        faults: Option<Arc<Faults>>,
    ) -> Result<Segment, SegmentError> {
        let path = log_path(dir, base_offset);
        if let Some(e) = faults.as_ref().and_then(|f| f.write_error()) {
            return Err(SegmentError::Io {
                path,
                op: "create",
                source: e,
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| SegmentError::Io {
                path: path.clone(),
                op: "create",
                source,
            })?;
        let (ip, tp) = index_paths(dir, base_offset);
        let _ = std::fs::remove_file(&ip);
        let _ = std::fs::remove_file(&tp);
        let _ = std::fs::remove_file(summary_path(dir, base_offset));
        Ok(Segment {
            base_offset,
            path,
            file: Arc::new(file),
            len: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            index: Arc::new(RwLock::new(OffsetIndex::new(ip))),
            time_index: Arc::new(RwLock::new(TimeIndex::new(tp))),
            summary: Arc::new(RwLock::new(SegmentSummary::new())),
            summary_rebuild_failed: false,
            index_interval,
            bytes_since_index: 0,
            opened_at: Instant::now(),
            faults,
        })
    }

    /// Opens an existing segment whose bytes below `len_hint` (or all, if
    /// `None`) are trusted, with `next_offset` given by the caller. Loads its
    /// indexes; `Ok(false)` in the second value means they were missing or
    /// inconsistent and must be rebuilt with [`rebuild_indexes`](Self::rebuild_indexes).
    ///
    /// # Errors
    /// The file cannot be opened or measured.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        next_offset: i64,
        index_interval: u64,
        faults: Option<Arc<Faults>>,
    ) -> Result<(Segment, bool), SegmentError> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| SegmentError::Io {
                path: path.clone(),
                op: "open",
                source,
            })?;
        let len = file
            .metadata()
            .map_err(|source| SegmentError::Io {
                path: path.clone(),
                op: "stat",
                source,
            })?
            .len();
        let (ip, tp) = index_paths(dir, base_offset);
        let loaded = OffsetIndex::load(ip.clone(), len).zip(TimeIndex::load(tp.clone()));
        let indexes_ok = loaded.is_some() || len == 0;
        let (index, time_index) = loaded.unwrap_or_else(|| (OffsetIndex::new(ip), TimeIndex::new(tp)));
        let max_timestamp = time_index.max_timestamp().unwrap_or(-1);
        // Trusted as far as it goes; recovery cuts it back to what it checks
        // and a sealed segment's summary must cover the whole file.
        let summary =
            super::summary::file::load(&summary_path(dir, base_offset)).unwrap_or_else(SegmentSummary::invalid);
        Ok((
            Segment {
                base_offset,
                path,
                file: Arc::new(file),
                len,
                next_offset,
                max_timestamp,
                index: Arc::new(RwLock::new(index)),
                time_index: Arc::new(RwLock::new(time_index)),
                summary: Arc::new(RwLock::new(summary)),
                summary_rebuild_failed: false,
                index_interval,
                bytes_since_index: 0,
                opened_at: Instant::now(),
                faults,
            },
            indexes_ok,
        ))
    }

    /// Checks the log from byte `from_pos` (where offset `expected_offset`
    /// must start) to its end, batch by batch: length, CRC, offsets
    /// continuing. Truncates the file at the first batch that fails and
    /// rebuilds index entries for the checked range. `on_batch` sees every
    /// good batch (producer state replays from it).
    ///
    /// # Errors
    /// Only i/o errors; bad content is truncated and reported.
    pub fn recover_tail(
        &mut self,
        from_pos: u64,
        expected_offset: i64,
        mut on_batch: impl FnMut(&BatchHeader, &[u8]),
    ) -> Result<RecoveryReport, SegmentError> {
        let file_len = self.len;
        let from_pos = from_pos.min(file_len);
        {
            let rel = u32::try_from(expected_offset - self.base_offset).unwrap_or(u32::MAX);
            self.index
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .truncate_to_position(from_pos);
            self.time_index
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .truncate_to_offset(rel);
        }
        self.max_timestamp = self
            .time_index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .max_timestamp()
            .unwrap_or(-1);
        // The summary continues from where the check starts, or (checking
        // from 0) starts afresh; otherwise it is rebuilt in the background.
        let shared = Arc::clone(&self.summary);
        let mut summary = shared.write().unwrap_or_else(|e| e.into_inner());
        if from_pos == 0 {
            *summary = SegmentSummary::new();
        }
        let summarize = summary.truncate_to(from_pos);
        let mut scanner = SegmentScanner::new(
            Arc::clone(&self.file),
            from_pos,
            file_len,
            super::partition::MAX_FRAME_BYTES,
        );
        let mut report = RecoveryReport::default();
        let mut expected = expected_offset;
        let mut valid_end = from_pos;
        self.bytes_since_index = self.index_interval; // index the first batch scanned
        let reason = loop {
            let (pos, frame) = match scanner.next_frame() {
                Ok(Some(found)) => found,
                Ok(None) => break None,
                Err(ScanError::Io { source, .. }) => {
                    return Err(SegmentError::Io {
                        path: self.path.clone(),
                        op: "read",
                        source,
                    });
                }
                Err(e) => break Some(e.to_string()),
            };
            let header = match check(frame) {
                Ok(h) if h.base_offset != expected => {
                    break Some(format!(
                        "batch at byte {pos} has base offset {}, expected {expected}",
                        h.base_offset
                    ));
                }
                Ok(h) if h.last_offset_delta < 0 => {
                    break Some(format!("batch at byte {pos} has a negative offset delta"));
                }
                Ok(h) => h,
                Err(e) => break Some(format!("batch at byte {pos}: {e}")),
            };
            let len = frame.len() as u64;
            on_batch(&header, frame);
            if summarize {
                let stats = build::stats_of(frame, &header);
                summary.add_batch(pos, len, header.base_offset, header.last_offset(), &stats);
            }
            self.index_batch(pos, len, header.base_offset, header.max_timestamp);
            expected = header.last_offset() + 1;
            report.batches += 1;
            valid_end = pos + len;
        };
        if valid_end < file_len {
            self.file.set_len(valid_end).map_err(|source| SegmentError::Io {
                path: self.path.clone(),
                op: "truncate",
                source,
            })?;
            self.file.sync_all().map_err(|source| SegmentError::Io {
                path: self.path.clone(),
                op: "fsync",
                source,
            })?;
        }
        drop(summary);
        report.scanned_bytes = valid_end - from_pos;
        report.truncated_bytes = file_len - valid_end;
        report.reason = if report.truncated_bytes > 0 { reason } else { None };
        self.len = valid_end;
        self.next_offset = expected;
        Ok(report)
    }

    /// Rebuilds both indexes of a sealed segment from its log.
    ///
    /// # Errors
    /// I/O errors; a bad batch in a sealed segment stops the rebuild there.
    pub fn rebuild_indexes(&mut self) -> Result<(), SegmentError> {
        let next = self.next_offset;
        let base = self.base_offset;
        let len = self.len;
        let report = self.recover_tail(0, base, |_, _| {})?;
        if self.next_offset != next && next != base {
            tracing::warn!(path = %self.path.display(), expected = next, found = self.next_offset, len, truncated = report.truncated_bytes,
                "sealed segment ends at an unexpected offset");
        }
        Ok(())
    }

    fn index_batch(&mut self, pos: u64, len: u64, base_offset: i64, max_timestamp: i64) {
        let rel = u32::try_from(base_offset - self.base_offset).unwrap_or(u32::MAX);
        if self.bytes_since_index >= self.index_interval {
            let pos32 = u32::try_from(pos).unwrap_or(u32::MAX);
            self.index.write().unwrap_or_else(|e| e.into_inner()).push(rel, pos32);
            self.bytes_since_index = 0;
        }
        if max_timestamp > self.max_timestamp {
            self.time_index
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(max_timestamp, rel);
            self.max_timestamp = max_timestamp;
        }
        self.bytes_since_index += len;
    }

    /// Path of the `.log` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, shared with readers.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The offset index, shared with readers.
    pub fn index(&self) -> &SharedIndex {
        &self.index
    }

    /// The time index, shared with readers.
    pub fn time_index(&self) -> &SharedTimeIndex {
        &self.time_index
    }

    /// The summary, shared with readers.
    pub fn summary(&self) -> &SharedSummary {
        &self.summary
    }

    /// Whether the summary describes the whole segment.
    pub fn summary_is_complete(&self) -> bool {
        let s = self.summary.read().unwrap_or_else(|e| e.into_inner());
        s.is_valid() && s.covered() == self.len
    }

    /// Marks the summary for a rebuild unless it covers the whole segment
    /// (used for sealed segments at start-up).
    pub fn check_summary(&self) {
        let mut s = self.summary.write().unwrap_or_else(|e| e.into_inner());
        if s.covered() != self.len {
            s.invalidate();
        }
    }

    /// Replaces the summary with one rebuilt from the log, extending it to
    /// the current end first (appends may have happened meanwhile).
    ///
    /// # Errors
    /// The log from the rebuilt summary's end on cannot be read as batches.
    pub fn install_summary(&mut self, mut rebuilt: SegmentSummary) -> Result<(), ScanError> {
        build::extend(&mut rebuilt, &self.file, self.len)?;
        *self.summary.write().unwrap_or_else(|e| e.into_inner()) = rebuilt;
        Ok(())
    }

    /// Bytes of whole batches in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment holds no batch.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset the next batch appended here gets.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Sets the next offset of a sealed segment (from the next segment's base).
    pub fn set_next_offset(&mut self, next: i64) {
        self.next_offset = next;
    }

    /// Largest batch max timestamp seen, -1 if none.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Appends `bytes` (whole frames, offsets assigned; `batches` describes
    /// them with their lengths) and indexes them. On a failed write the file
    /// is cut back to its previous length, so no partial batch stays behind.
    ///
    /// # Errors
    /// The write failed (ENOSPC, EIO, ...).
    pub fn append(&mut self, bytes: &[u8], batches: &[(BatchSummary, u64, &BatchStats)]) -> Result<(), SegmentError> {
        let injected = self.faults.as_ref().and_then(|f| f.write_error());
        let result = match injected {
            Some(e) => Err(e),
            None => self.file.write_all_at(bytes, self.len),
        };
        if let Err(source) = result {
            // Best effort: if even truncating fails, the bytes past `len` are
            // invisible to readers and cut by recovery at the next start.
            let _ = self.file.set_len(self.len);
            return Err(SegmentError::Io {
                path: self.path.clone(),
                op: "write",
                source,
            });
        }
        let mut pos = self.len;
        let mut summary_of_segment = self.summary.write().unwrap_or_else(|e| e.into_inner());
        for &(summary, len, stats) in batches {
            summary_of_segment.add_batch(pos, len, summary.base_offset, summary.last_offset, stats);
            pos += len;
        }
        drop(summary_of_segment);
        let mut pos = self.len;
        for &(summary, len, _) in batches {
            self.index_batch(pos, len, summary.base_offset, summary.max_timestamp);
            pos += len;
            self.next_offset = summary.last_offset + 1;
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// fdatasync: makes every appended byte durable.
    ///
    /// # Errors
    /// The fsync failed; the caller must treat the partition as poisoned.
    pub fn sync(&self) -> Result<(), SegmentError> {
        if let Some(source) = self.faults.as_ref().and_then(|f| f.sync_error()) {
            return Err(SegmentError::Io {
                path: self.path.clone(),
                op: "fdatasync",
                source,
            });
        }
        let started = std::time::Instant::now();
        let synced = self.file.sync_data().map_err(|source| SegmentError::Io {
            path: self.path.clone(),
            op: "fdatasync",
            source,
        });
        crate::metrics::fsynced(started.elapsed());
        synced
    }

    /// Writes pending index entries; with `sync`, fsyncs the index files.
    ///
    /// # Errors
    /// An index file cannot be written.
    pub fn flush_indexes(&self, sync: bool) -> Result<(), SegmentError> {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.flush(sync).map_err(|source| SegmentError::Io {
            path: index.path().to_owned(),
            op: "write index",
            source,
        })?;
        drop(index);
        let mut time_index = self.time_index.write().unwrap_or_else(|e| e.into_inner());
        time_index.flush(sync).map_err(|source| SegmentError::Io {
            path: time_index.path().to_owned(),
            op: "write time index",
            source,
        })?;
        drop(time_index);
        let mut summary = self.summary.write().unwrap_or_else(|e| e.into_inner());
        if summary.is_valid() && summary.is_dirty() {
            let path = self.summary_path();
            super::summary::file::save(&path, &summary, sync).map_err(|source| SegmentError::Io {
                path,
                op: "write summary",
                source,
            })?;
            summary.mark_saved();
        }
        Ok(())
    }

    /// Cuts the segment back to byte `pos`, which must be where the batch
    /// starting at offset `next_offset` begins (a replica truncating a tail
    /// that its leader does not hold). fsyncs the cut before returning; the
    /// indexes lose their entries past it and the summary is cut or left to
    /// be rebuilt.
    ///
    /// # Errors
    /// The file cannot be truncated or synced.
    pub fn truncate_at(&mut self, pos: u64, next_offset: i64) -> Result<(), SegmentError> {
        let pos = pos.min(self.len);
        self.file.set_len(pos).map_err(|source| SegmentError::Io {
            path: self.path.clone(),
            op: "truncate",
            source,
        })?;
        self.file.sync_all().map_err(|source| SegmentError::Io {
            path: self.path.clone(),
            op: "fsync",
            source,
        })?;
        let rel = u32::try_from(next_offset - self.base_offset).unwrap_or(u32::MAX);
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .truncate_to_position(pos);
        let mut time_index = self.time_index.write().unwrap_or_else(|e| e.into_inner());
        time_index.truncate_to_offset(rel);
        self.max_timestamp = time_index.max_timestamp().unwrap_or(-1);
        drop(time_index);
        self.summary.write().unwrap_or_else(|e| e.into_inner()).truncate_to(pos);
        self.len = pos;
        self.next_offset = next_offset;
        self.bytes_since_index = self.index_interval;
        Ok(())
    }

    /// Path of the `.summary` file.
    pub fn summary_path(&self) -> PathBuf {
        self.path.with_extension("summary")
    }

    /// Deletes the segment's files (readers holding the file keep reading it).
    pub fn delete_files(&self) {
        let index_path = self.index.read().unwrap_or_else(|e| e.into_inner()).path().to_owned();
        let time_path = self
            .time_index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .path()
            .to_owned();
        let summary_path = self.summary_path();
        for p in [&self.path, &index_path, &time_path, &summary_path] {
            if let Err(e) = std::fs::remove_file(p)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %p.display(), error = %e, "cannot delete segment file");
            }
        }
    }
}
