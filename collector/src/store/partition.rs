//! One partition: an ordered run of segments, the last one active.
//!
//! Why a module of its own: this is where offsets are assigned, where the
//! active segment is rolled, and where the view that readers see is
//! published. Writers are the writer threads (`writer.rs`), one at a time
//! through `log`'s mutex; readers never take that mutex, they clone the
//! published [`PartitionView`] and read the files with positioned reads.
//!
//! Invariants: offsets are contiguous across segments; a reader's view never
//! includes bytes beyond what the writer has finished writing (and, with
//! `fsync = "always"`, synced); after a failed fsync the partition is
//! poisoned and refuses appends (the kernel may have dropped the dirty pages,
//! so retrying the fsync could report success for lost data).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use logpost_shared::batch::{BatchHeader, set_base_offset};
use tokio::sync::watch;

use super::StoreError;
use super::file_names::{TMP_SUFFIX, parse_log_name};
use super::segment::{BatchSummary, Segment, SegmentError};

/// Largest batch frame recovery and readers accept (RecordBatch lengths are i32).
pub const MAX_FRAME_BYTES: usize = 1 << 30;

/// What readers see of one segment.
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub base_offset: i64,
    pub file: Arc<File>,
    /// Bytes of whole, published batches.
    pub len: u64,
    /// Offset after the segment's last batch.
    pub next_offset: i64,
}

/// What readers see of a partition: immutable, replaced on every append.
#[derive(Debug, Clone)]
pub struct PartitionView {
    pub segments: Vec<SegmentView>,
    /// First offset still stored.
    pub log_start_offset: i64,
    /// Offset the next record will get: everything below is readable.
    pub high_watermark: i64,
}

impl PartitionView {
    /// Bytes stored in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }
}

struct PartitionLog {
    segments: BTreeMap<i64, Segment>,
    /// Assembled group of frames, reused between appends.
    scratch: Vec<u8>,
    /// Appended since the last fsync (interval mode).
    dirty: bool,
}

/// One partition of a topic.
pub struct Partition {
    pub topic: Arc<str>,
    pub id: u32,
    dir: PathBuf,
    segment_bytes: u64,
    log: Mutex<PartitionLog>,
    view: RwLock<Arc<PartitionView>>,
    poisoned: AtomicBool,
    high_watermark: watch::Sender<i64>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partition({}/{})", self.topic, self.id)
    }
}

impl Partition {
    /// Opens the partition in `dir` (creating it if new): deletes temp
    /// files, opens sealed segments as they are and recovers the active one.
    ///
    /// # Errors
    /// I/O errors opening or recovering segments.
    pub fn open(topic: Arc<str>, id: u32, dir: &Path, segment_bytes: u64) -> Result<Partition, StoreError> {
        let io_err = |source: io::Error| StoreError::Io {
            topic: topic.to_string(),
            partition: Some(id),
            source: SegmentError::Io {
                path: dir.to_owned(),
                op: "list",
                source,
            },
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TMP_SUFFIX) {
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(base) = parse_log_name(name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let seg_err = |source: SegmentError| StoreError::Io {
            topic: topic.to_string(),
            partition: Some(id),
            source,
        };
        let mut segments = BTreeMap::new();
        if bases.is_empty() {
            let seg = Segment::create(dir, 0).map_err(seg_err)?;
            super::sync_dir(dir).map_err(io_err)?;
            segments.insert(0, seg);
        } else {
            for (i, &base) in bases.iter().enumerate() {
                let seg = if let Some(&next_base) = bases.get(i + 1) {
                    Segment::open_trusted(dir, base, next_base).map_err(seg_err)?
                } else {
                    let (seg, report) = Segment::open_and_recover(dir, base, MAX_FRAME_BYTES).map_err(seg_err)?;
                    if report.truncated_bytes > 0 {
                        tracing::warn!(
                            topic = %topic, partition = id, path = %seg.path().display(),
                            valid_bytes = report.valid_bytes, dropped_bytes = report.truncated_bytes,
                            reason = report.reason.as_deref().unwrap_or(""),
                            "truncated torn tail of segment"
                        );
                    }
                    seg
                };
                segments.insert(base, seg);
            }
        }
        let log = PartitionLog {
            segments,
            scratch: Vec::new(),
            dirty: false,
        };
        let view = Arc::new(build_view(&log));
        let (high_watermark, _) = watch::channel(view.high_watermark);
        Ok(Partition {
            topic,
            id,
            dir: dir.to_owned(),
            segment_bytes,
            log: Mutex::new(log),
            view: RwLock::new(view),
            poisoned: AtomicBool::new(false),
            high_watermark,
        })
    }

    /// The current view for readers.
    pub fn view(&self) -> Arc<PartitionView> {
        Arc::clone(&self.view.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Subscribes to the high watermark, for long-polls and live tail.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Whether a failed fsync has poisoned the partition.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Appends whole, checked frames in order, assigning offsets; with
    /// `sync`, fdatasyncs before returning. Returns each batch's offsets.
    ///
    /// # Errors
    /// [`StoreError::Poisoned`] after an earlier failed fsync,
    /// [`StoreError::DiskFull`] on ENOSPC (nothing partial is left behind),
    /// [`StoreError::Io`] otherwise; a failed fsync also poisons.
    pub fn append_frames(&self, frames: &[&[u8]], sync: bool) -> Result<Vec<BatchSummary>, StoreError> {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        // Checked after taking the lock: a writer that failed an fsync while
        // we waited has poisoned the partition by now.
        if self.is_poisoned() {
            return Err(StoreError::Poisoned {
                topic: self.topic.to_string(),
                partition: self.id,
            });
        }
        let log = &mut *log;
        let mut next = log.segments.last_key_value().map_or(0, |(_, s)| s.next_offset());
        let mut summaries = Vec::with_capacity(frames.len());
        let mut max_timestamp = -1;
        log.scratch.clear();
        for frame in frames {
            let header = BatchHeader::parse(frame)
                .map_err(|e| StoreError::Internal(format!("unchecked batch reached the store: {e}")))?;
            let start = log.scratch.len();
            log.scratch.extend_from_slice(frame);
            if let Some(written) = log.scratch.get_mut(start..) {
                set_base_offset(written, next);
            }
            let last = next + i64::from(header.last_offset_delta.max(0));
            summaries.push(BatchSummary {
                base_offset: next,
                last_offset: last,
                max_timestamp: header.max_timestamp,
            });
            max_timestamp = max_timestamp.max(header.max_timestamp);
            next = last + 1;
        }
        self.maybe_roll(log, log.scratch.len() as u64, sync)?;
        let active = log
            .segments
            .values_mut()
            .next_back()
            .expect("a partition always has an active segment");
        if let Err(e) = active.append(&log.scratch, next, max_timestamp) {
            return Err(self.classify_write_error(e));
        }
        if sync {
            if let Err(e) = active.sync() {
                return Err(self.poison(e));
            }
        } else {
            log.dirty = true;
        }
        self.publish(log);
        Ok(summaries)
    }

    /// fdatasyncs the active segment if anything was appended since the
    /// last sync (interval mode).
    ///
    /// # Errors
    /// The fsync failed; the partition is poisoned.
    pub fn sync_if_dirty(&self) -> Result<(), StoreError> {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if !log.dirty || self.is_poisoned() {
            return Ok(());
        }
        log.dirty = false;
        if let Some(active) = log.segments.values().next_back() {
            active.sync().map_err(|e| self.poison(e))?;
        }
        Ok(())
    }

    fn maybe_roll(&self, log: &mut PartitionLog, incoming: u64, sync: bool) -> Result<(), StoreError> {
        let Some(active) = log.segments.values().next_back() else {
            return Ok(());
        };
        if active.is_empty() || active.len() + incoming <= self.segment_bytes {
            return Ok(());
        }
        if !sync || log.dirty {
            // Seal durably: nothing below a sealed segment's end may be lost.
            active.sync().map_err(|e| self.poison(e))?;
            log.dirty = false;
        }
        let base = active.next_offset();
        let seg = Segment::create(&self.dir, base).map_err(|e| self.classify_write_error(e))?;
        super::sync_dir(&self.dir).map_err(|source| {
            self.poison(SegmentError::Io {
                path: self.dir.clone(),
                op: "fsync directory",
                source,
            })
        })?;
        tracing::debug!(topic = %self.topic, partition = self.id, base_offset = base, "rolled segment");
        log.segments.insert(base, seg);
        Ok(())
    }

    fn publish(&self, log: &PartitionLog) {
        let view = Arc::new(build_view(log));
        let hw = view.high_watermark;
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = view;
        self.high_watermark.send_replace(hw);
    }

    fn poison(&self, source: SegmentError) -> StoreError {
        self.poisoned.store(true, Ordering::Release);
        tracing::error!(topic = %self.topic, partition = self.id, error = %source, cause = %source.io_error(),
            "fsync failed; partition refuses writes until the collector restarts");
        StoreError::Io {
            topic: self.topic.to_string(),
            partition: Some(self.id),
            source,
        }
    }

    fn classify_write_error(&self, source: SegmentError) -> StoreError {
        if source.io_error().raw_os_error() == Some(libc_enospc())
            || source.io_error().kind() == io::ErrorKind::StorageFull
        {
            StoreError::DiskFull {
                topic: self.topic.to_string(),
                partition: self.id,
                source,
            }
        } else {
            StoreError::Io {
                topic: self.topic.to_string(),
                partition: Some(self.id),
                source,
            }
        }
    }
}

/// ENOSPC without a libc dependency: 28 on every Linux architecture.
fn libc_enospc() -> i32 {
    28
}

fn build_view(log: &PartitionLog) -> PartitionView {
    let segments: Vec<SegmentView> = log
        .segments
        .values()
        .map(|s| SegmentView {
            base_offset: s.base_offset,
            file: Arc::clone(s.file()),
            len: s.len(),
            next_offset: s.next_offset(),
        })
        .collect();
    PartitionView {
        log_start_offset: segments.first().map_or(0, |s| s.base_offset),
        high_watermark: segments.last().map_or(0, |s| s.next_offset),
        segments,
    }
}
