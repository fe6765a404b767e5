//! One segment of a partition: `<base_offset>.log` holding RecordBatch v2
//! bytes exactly as received, with the collector's offsets written in.
//!
//! Why a module of its own: `partition.rs` decides *which* segment to append
//! to, roll or delete; this module owns *how* bytes land in one file and how
//! a torn tail is found after a crash. It never decides when to fsync:
//! that is the writer's call, so that many appends share one fdatasync.
//!
//! Invariant: every byte below `len` belongs to a whole batch whose CRC was
//! checked and whose offsets continue the previous batch's.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use logpost_shared::batch::{BatchError, check};

use super::file_names::log_path;
use super::scan::{ScanError, SegmentScanner};

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

/// What recovery found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub batches: u64,
    pub valid_bytes: u64,
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

/// An open segment.
#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    next_offset: i64,
    max_timestamp: i64,
}

impl Segment {
    /// Creates a new, empty segment file (it must not exist).
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(dir: &Path, base_offset: i64) -> Result<Segment, SegmentError> {
        let path = log_path(dir, base_offset);
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
        Ok(Segment {
            base_offset,
            path,
            file: Arc::new(file),
            len: 0,
            next_offset: base_offset,
            max_timestamp: -1,
        })
    }

    /// Opens an existing segment, trusting its length and the given next
    /// offset (a sealed segment below the recovery point).
    ///
    /// # Errors
    /// The file cannot be opened or measured.
    pub fn open_trusted(dir: &Path, base_offset: i64, next_offset: i64) -> Result<Segment, SegmentError> {
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
        Ok(Segment {
            base_offset,
            path,
            file: Arc::new(file),
            len,
            next_offset,
            max_timestamp: -1,
        })
    }

    /// Opens an existing segment and checks it batch by batch (length, CRC,
    /// offsets continuing from `base_offset`), truncating the file at the
    /// first batch that fails.
    ///
    /// # Errors
    /// Only i/o errors; bad content is truncated and reported.
    pub fn open_and_recover(
        dir: &Path,
        base_offset: i64,
        max_batch_bytes: usize,
    ) -> Result<(Segment, RecoveryReport), SegmentError> {
        let mut seg = Segment::open_trusted(dir, base_offset, base_offset)?;
        let file_len = seg.len;
        let mut scanner = SegmentScanner::new(Arc::clone(&seg.file), 0, file_len, max_batch_bytes);
        let mut expected = base_offset;
        let mut max_timestamp = -1;
        let mut batches = 0;
        let mut valid_bytes = 0;
        let reason = loop {
            let (pos, frame) = match scanner.next_frame() {
                Ok(Some(found)) => found,
                Ok(None) => break None,
                Err(ScanError::Io { source, .. }) => {
                    return Err(SegmentError::Io {
                        path: seg.path.clone(),
                        op: "read",
                        source,
                    });
                }
                Err(e) => break Some(format!("{e}: {}", error_cause(&e))),
            };
            match check(frame) {
                Ok(h) if h.base_offset != expected => {
                    break Some(format!(
                        "batch at byte {pos} has base offset {}, expected {expected}",
                        h.base_offset
                    ));
                }
                Ok(h) if h.last_offset_delta < 0 => {
                    break Some(format!("batch at byte {pos} has a negative last offset delta"));
                }
                Ok(h) => {
                    expected = h.last_offset() + 1;
                    max_timestamp = max_timestamp.max(h.max_timestamp);
                    batches += 1;
                    valid_bytes = pos + frame.len() as u64;
                }
                Err(e) => break Some(format!("batch at byte {pos}: {e}")),
            }
        };
        if valid_bytes < file_len {
            seg.file.set_len(valid_bytes).map_err(|source| SegmentError::Io {
                path: seg.path.clone(),
                op: "truncate",
                source,
            })?;
            seg.file.sync_all().map_err(|source| SegmentError::Io {
                path: seg.path.clone(),
                op: "fsync",
                source,
            })?;
        }
        seg.len = valid_bytes;
        seg.next_offset = expected;
        seg.max_timestamp = max_timestamp;
        let report = RecoveryReport {
            batches,
            valid_bytes,
            truncated_bytes: file_len - valid_bytes,
            reason,
        };
        Ok((seg, report))
    }

    /// Path of the `.log` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, shared with readers.
    pub fn file(&self) -> &Arc<File> {
        &self.file
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

    /// Largest batch max timestamp seen, -1 if none.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Appends `bytes` (whole frames, offsets already assigned) and advances
    /// the segment's bookkeeping. On a failed write the file is cut back to
    /// its previous length, so no partial batch stays behind.
    ///
    /// # Errors
    /// The write failed (ENOSPC, EIO, ...).
    pub fn append(&mut self, bytes: &[u8], next_offset: i64, max_timestamp: i64) -> Result<(), SegmentError> {
        if let Err(source) = self.file.write_all_at(bytes, self.len) {
            // Best effort: if even truncating fails, the bytes past `len` are
            // invisible to readers and cut by recovery at the next start.
            let _ = self.file.set_len(self.len);
            return Err(SegmentError::Io {
                path: self.path.clone(),
                op: "write",
                source,
            });
        }
        self.len += bytes.len() as u64;
        self.next_offset = next_offset;
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
        Ok(())
    }

    /// fdatasync: makes every appended byte durable.
    ///
    /// # Errors
    /// The fsync failed; the caller must treat the partition as poisoned.
    pub fn sync(&self) -> Result<(), SegmentError> {
        self.file.sync_data().map_err(|source| SegmentError::Io {
            path: self.path.clone(),
            op: "fdatasync",
            source,
        })
    }
}

fn error_cause(e: &ScanError) -> String {
    match e {
        ScanError::Batch {
            source: BatchError::BadLength { len, .. },
            ..
        } => format!("length field {len}"),
        ScanError::Batch { source, .. } => source.to_string(),
        ScanError::Torn { end, .. } => format!("file ends at byte {end}"),
        ScanError::Io { source, .. } => source.to_string(),
    }
}
