//! One partition: an ordered run of segments, the last one active, plus
//! the producer state and the recovery point.
//!
//! Why a module of its own: this is where offsets are assigned, where the
//! active segment is rolled, checkpoints are taken, old segments are
//! deleted for retention, and the view that readers see is published.
//! Writers are the writer threads (`writer.rs`), one at a time through
//! `log`'s mutex; readers never take that mutex, they clone the published
//! [`PartitionView`] and read the files with positioned reads.
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
use std::time::Duration;

use logpost_shared::batch::{BatchHeader, set_base_offset, set_partition_leader_epoch};
use tokio::sync::watch;

use bytes::Bytes;

mod recent_stats;
mod replica;
mod upkeep;

pub use recent_stats::{BatchKey, KnownCursor, MAX_RING_BATCHES, RecentBatch};
pub use replica::{Boundary, TruncateReport, WriteRole};

use super::StoreError;
use super::dedup::{BatchOutcome, Overlay, Plan};
use super::faults::Faults;
use super::producer_state::{ProducerEntry, ProducerState};
use super::recovery::{LoadReport, RecoveryPoint, load_partition, write_checkpoint};
use super::segment::{BatchSummary, Segment, SegmentError, SharedIndex, SharedTimeIndex};
use super::summary::{BatchStats, SharedSummary, build};

/// Largest batch frame recovery and readers accept (RecordBatch lengths are i32).
pub const MAX_FRAME_BYTES: usize = 1 << 30;

/// Per-partition settings.
#[derive(Debug, Clone, Copy)]
pub struct PartitionSettings {
    pub segment_bytes: u64,
    /// Roll a non-empty active segment older than this.
    pub segment_age: Option<Duration>,
    /// Bytes of log between offset index entries.
    pub index_interval_bytes: u64,
}

/// What readers see of one segment.
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub base_offset: i64,
    pub file: Arc<File>,
    /// Bytes of whole, published batches.
    pub len: u64,
    /// Offset after the segment's last batch.
    pub next_offset: i64,
    /// Largest batch timestamp, -1 if unknown.
    pub max_timestamp: i64,
    pub index: SharedIndex,
    pub time_index: SharedTimeIndex,
    /// Per-block bounds and streams; may describe bytes past `len` (the
    /// writer updates it before publishing), which readers ignore.
    pub summary: SharedSummary,
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

/// One batch to append: the frame, the cursor its producer sent with it,
/// and its stats for the segment summary when the caller decoded it
/// already (ingest validation does); otherwise the append decodes it.
#[derive(Debug, Clone, Default)]
pub struct AppendItem {
    pub frame: Bytes,
    /// With `stats`: the last record's `logpost.cursor` header if the
    /// batch has a producer id (a leader ships it to followers as such).
    pub cursor: Option<String>,
    pub stats: Option<Arc<BatchStats>>,
    /// Sent while its producer's previous request was unanswered: stored
    /// only if it follows what is stored (see `dedup::Overlay::plan`).
    pub ahead: bool,
    /// Copied from the partition's leader (a cluster follower): stored at
    /// the offsets and with the leader epoch it carries, without
    /// deduplication, and only while the partition is a follower.
    pub replicated: bool,
}

/// Which segments retention may delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep at most this many bytes per partition (whole segments are deleted).
    pub bytes: Option<u64>,
    /// Delete segments whose newest record is older than this.
    pub age: Option<Duration>,
}

struct PartitionLog {
    segments: BTreeMap<i64, Segment>,
    producers: ProducerState,
    /// Assembled group of frames, reused between appends.
    scratch: Vec<u8>,
    /// Appended since the last fsync (interval mode).
    dirty: bool,
    /// The last recovery point written.
    checkpointed: Option<RecoveryPoint>,
    /// Who may append (always `Standalone` outside a cluster).
    role: WriteRole,
}

/// One partition of a topic.
pub struct Partition {
    pub topic: Arc<str>,
    pub id: u32,
    dir: PathBuf,
    settings: PartitionSettings,
    log: Mutex<PartitionLog>,
    /// A leader's newest batches' stats, for its followers' fetches; its
    /// own lock (taken after `log`), so a fetch never waits for an fsync.
    recent: Mutex<recent_stats::RecentStats>,
    view: RwLock<Arc<PartitionView>>,
    /// Everything appended, past the high watermark too: what a cluster
    /// leader serves its followers. The same as `view` outside a cluster.
    end_view: RwLock<Arc<PartitionView>>,
    /// In a cluster: the high watermark bounding what readers see. Its
    /// own lock, so that moving the high watermark never waits for an
    /// fsync; taken after `log` when both are held, and held while the
    /// views are replaced, so that they always agree.
    replication: Mutex<Option<replica::Replication>>,
    poisoned: AtomicBool,
    high_watermark: watch::Sender<i64>,
    /// The log end offset, which moves with every append (the high
    /// watermark may lag it in a cluster).
    log_end: watch::Sender<i64>,
    faults: Option<Arc<Faults>>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partition({}/{})", self.topic, self.id)
    }
}

impl Partition {
    /// Opens the partition in `dir` (creating it if new), recovering from
    /// its last checkpoint.
    ///
    /// # Errors
    /// I/O errors opening or recovering segments.
    pub fn open(
        topic: Arc<str>,
        id: u32,
        dir: &Path,
        settings: PartitionSettings,
        faults: Option<Arc<Faults>>,
    ) -> Result<(Partition, LoadReport), StoreError> {
        let seg_err = |source: SegmentError| StoreError::Io {
            topic: topic.to_string(),
            partition: Some(id),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| {
            seg_err(SegmentError::Io {
                path: dir.to_owned(),
                op: "create directory",
                source,
            })
        })?;
        let loaded = load_partition(dir, settings.index_interval_bytes, faults.clone()).map_err(seg_err)?;
        let log = PartitionLog {
            segments: loaded.segments,
            producers: loaded.producers,
            scratch: Vec::new(),
            dirty: false,
            checkpointed: loaded.recovery_point,
            role: WriteRole::Standalone,
        };
        let view = Arc::new(build_view(&log));
        let (high_watermark, _) = watch::channel(view.high_watermark);
        let (log_end, _) = watch::channel(view.high_watermark);
        let partition = Partition {
            topic,
            id,
            dir: dir.to_owned(),
            settings,
            log: Mutex::new(log),
            recent: Mutex::default(),
            end_view: RwLock::new(Arc::clone(&view)),
            view: RwLock::new(view),
            replication: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            high_watermark,
            log_end,
            faults,
        };
        Ok((partition, loaded.report))
    }

    /// The current view for readers.
    pub fn view(&self) -> Arc<PartitionView> {
        Arc::clone(&self.view.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Subscribes to the high watermark, for long-polls and live tail.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Everything appended, past the high watermark too (a cluster
    /// leader's reads for its followers); [`view`](Self::view) otherwise.
    pub fn end_view(&self) -> Arc<PartitionView> {
        Arc::clone(&self.end_view.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Subscribes to the log end offset, which moves with every append.
    pub fn watch_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// Whether a failed fsync has poisoned the partition.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the producer state holds for `producer_id`.
    pub fn producer(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.lock().producers.get(producer_id).cloned()
    }

    /// The producers with a cursor (the last, or an earlier content's
    /// last) whose content head (its second and third words: length and
    /// CRC) is one of `heads`.
    pub fn producers_with_head(&self, heads: &std::collections::HashSet<(u32, u32)>) -> Vec<ProducerEntry> {
        self.lock()
            .producers
            .iter()
            .filter(|e| e.cursors().filter_map(cursor_head).any(|h| heads.contains(&h)))
            .cloned()
            .collect()
    }

    /// Whether a batch with `header` sent ahead of its predecessor can be
    /// decided now ([`decidable_ahead`](super::producer_state::decidable_ahead)),
    /// without copying the producer's entry.
    pub fn decidable_ahead(&self, header: &BatchHeader) -> bool {
        let p = header.producer;
        super::producer_state::decidable_ahead(
            self.lock().producers.get(p.producer_id),
            p.producer_epoch,
            p.base_sequence,
            header.records_count,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends whole, checked frames in order, assigning offsets; with
    /// `sync`, fdatasyncs before returning. Returns each batch's offsets.
    /// Frames are appended as they are, without deduplication (see
    /// [`append`](Self::append)).
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn append_frames(&self, frames: &[&[u8]], sync: bool) -> Result<Vec<BatchSummary>, StoreError> {
        let items: Vec<AppendItem> = frames
            .iter()
            .map(|f| AppendItem {
                frame: Bytes::copy_from_slice(f),
                ..AppendItem::default()
            })
            .collect();
        let refs: Vec<&AppendItem> = items.iter().collect();
        Ok(self
            .append(&refs, sync, false)?
            .into_iter()
            .filter_map(|o| match o {
                BatchOutcome::Appended(s) | BatchOutcome::Trimmed { summary: s, .. } => Some(s),
                _ => None,
            })
            .collect())
    }

    /// Appends whole, checked batches in order, assigning offsets; with
    /// `sync`, fdatasyncs before returning. With `dedup`, batches of
    /// producers with an id are checked against the producer state first:
    /// what is stored already is answered as a duplicate (or trimmed off),
    /// gaps and fenced epochs are refused; see [`BatchOutcome`].
    ///
    /// # Errors
    /// [`StoreError::Poisoned`] after an earlier failed fsync,
    /// [`StoreError::DiskFull`] on ENOSPC (nothing partial is left behind),
    /// [`StoreError::Io`] otherwise; a failed fsync also poisons.
    pub fn append(&self, items: &[&AppendItem], sync: bool, dedup: bool) -> Result<Vec<BatchOutcome>, StoreError> {
        let mut guard = self.lock();
        // Checked after taking the lock: a writer that failed an fsync while
        // we waited has poisoned the partition by now.
        if self.is_poisoned() {
            return Err(StoreError::Poisoned {
                topic: self.topic.to_string(),
                partition: self.id,
            });
        }
        let log = &mut *guard;
        // Checked under the lock too: a role change (a cluster leader
        // stepping down) takes the lock, so no append slips past it.
        replica::check_role(log.role, items, &self.topic, self.id)?;
        let stamp = match log.role {
            WriteRole::Leader { epoch } => Some(epoch),
            _ => None,
        };
        let mut next = log.segments.last_key_value().map_or(0, |(_, s)| s.next_offset());
        let now_ms = super::topic::now_ms();
        let mut overlay = Overlay::default();
        let mut outcomes = Vec::with_capacity(items.len());
        let mut placed = Vec::with_capacity(items.len());
        let mut recent = Vec::new();
        log.scratch.clear();
        for item in items {
            let header = BatchHeader::parse(&item.frame)
                .map_err(|e| StoreError::Internal(format!("unchecked batch reached the store: {e}")))?;
            if item.replicated && header.base_offset != next {
                return Err(StoreError::ReplicaOutOfOrder {
                    topic: self.topic.to_string(),
                    partition: self.id,
                    expected: next,
                    got: header.base_offset,
                });
            }
            let plan = if dedup && !item.replicated && header.producer.producer_id >= 0 {
                overlay
                    .plan(&log.producers, &item.frame, header, item.ahead)
                    .map_err(|e| StoreError::Internal(format!("cannot trim an overlapping batch: {e}")))?
            } else {
                Plan::Write {
                    bytes: std::borrow::Cow::Borrowed(&item.frame[..]),
                    header,
                    skipped: 0,
                }
            };
            let (bytes, header, skipped) = match plan {
                Plan::Done(outcome) => {
                    outcomes.push(outcome);
                    continue;
                }
                Plan::Write { bytes, header, skipped } => (bytes, header, skipped),
            };
            let start = log.scratch.len();
            log.scratch.extend_from_slice(&bytes);
            if let Some(written) = log.scratch.get_mut(start..) {
                set_base_offset(written, next);
                if let Some(epoch) = stamp {
                    set_partition_leader_epoch(written, epoch);
                }
            }
            let last = next + i64::from(header.last_offset_delta.max(0));
            let summary = BatchSummary {
                base_offset: next,
                last_offset: last,
                max_timestamp: header.max_timestamp,
            };
            overlay.record(&log.producers, &header, next, now_ms, item.cursor.clone());
            outcomes.push(if skipped > 0 {
                BatchOutcome::Trimmed { skipped, summary }
            } else {
                BatchOutcome::Appended(summary)
            });
            // A trimmed batch's stats are rebuilt: the caller's describe the
            // untrimmed one, and the summary (and what a leader ships to its
            // followers) must be what a rebuild from the log would give.
            let stats = match &item.stats {
                Some(stats) if skipped == 0 => Arc::clone(stats),
                _ => Arc::new(build::stats_of(&bytes, &header)),
            };
            if stamp.is_some() {
                recent.push(RecentBatch::stored(next, &header, Arc::clone(&stats), item));
            }
            placed.push((summary, bytes.len() as u64, stats));
            next = last + 1;
        }
        if placed.is_empty() {
            return Ok(outcomes);
        }
        self.maybe_roll(log, log.scratch.len() as u64, sync)?;
        let active = log
            .segments
            .values_mut()
            .next_back()
            .expect("a partition always has an active segment");
        let placed: Vec<(BatchSummary, u64, &BatchStats)> = placed.iter().map(|(b, l, s)| (*b, *l, &**s)).collect();
        let (segment_base, start_pos) = (active.base_offset, active.len());
        if let Err(e) = active.append(&log.scratch, &placed) {
            return Err(self.classify_write_error(e));
        }
        self.note_appended(
            segment_base,
            start_pos,
            placed.iter().map(|(b, l, _)| (b.last_offset + 1, *l)),
        );
        if sync {
            if let Err(e) = active.sync() {
                return Err(self.poison(e));
            }
        } else {
            log.dirty = true;
        }
        overlay.commit(&mut log.producers);
        self.remember(recent);
        self.publish(log);
        Ok(outcomes)
    }

    /// fdatasyncs the active segment if anything was appended since the
    /// last sync (interval mode).
    ///
    /// # Errors
    /// The fsync failed; the partition is poisoned.
    pub fn sync_if_dirty(&self) -> Result<(), StoreError> {
        let mut log = self.lock();
        if !log.dirty || self.is_poisoned() {
            return Ok(());
        }
        log.dirty = false;
        if let Some(active) = log.segments.values().next_back() {
            active.sync().map_err(|e| self.poison(e))?;
        }
        Ok(())
    }

    /// Writes a recovery point if anything was appended since the last one:
    /// syncs the log (interval mode), flushes and syncs the indexes, writes
    /// the producer snapshot, then the recovery point. Also rolls an active
    /// segment that has exceeded `segment_age`. A failure leaves the old
    /// recovery point in force (recovery then scans a little more).
    ///
    /// # Errors
    /// The log fsync failed (poisons) or a checkpoint file could not be written.
    pub fn checkpoint(&self) -> Result<bool, StoreError> {
        let mut guard = self.lock();
        if self.is_poisoned() {
            return Ok(false);
        }
        let log = &mut *guard;
        if let (Some(age), Some(active)) = (self.settings.segment_age, log.segments.values().next_back())
            && !active.is_empty()
            && active.opened_at.elapsed() >= age
        {
            self.roll(log)?;
        }
        self.checkpoint_locked(log)
    }

    fn checkpoint_locked(&self, log: &mut PartitionLog) -> Result<bool, StoreError> {
        let Some(active) = log.segments.values().next_back() else {
            return Ok(false);
        };
        let rp = RecoveryPoint {
            offset: active.next_offset(),
            segment: active.base_offset,
            position: active.len(),
        };
        if log.checkpointed == Some(rp) {
            return Ok(false);
        }
        if log.dirty {
            active.sync().map_err(|e| self.poison(e))?;
            log.dirty = false;
        }
        let io_err = |source: io::Error| StoreError::Io {
            topic: self.topic.to_string(),
            partition: Some(self.id),
            source: SegmentError::Io {
                path: self.dir.clone(),
                op: "write checkpoint",
                source,
            },
        };
        for seg in log.segments.values() {
            seg.flush_indexes(true).map_err(|source| StoreError::Io {
                topic: self.topic.to_string(),
                partition: Some(self.id),
                source,
            })?;
        }
        write_checkpoint(&self.dir, rp, &log.producers).map_err(io_err)?;
        log.checkpointed = Some(rp);
        Ok(true)
    }

    /// Clean shutdown: a final checkpoint, so that the next start scans nothing.
    pub fn close(&self) {
        let mut log = self.lock();
        if !self.is_poisoned()
            && let Err(e) = self.checkpoint_locked(&mut log)
        {
            tracing::warn!(topic = %self.topic, partition = self.id, error = %e, "final checkpoint failed");
        }
    }

    fn maybe_roll(&self, log: &mut PartitionLog, incoming: u64, sync: bool) -> Result<(), StoreError> {
        let Some(active) = log.segments.values().next_back() else {
            return Ok(());
        };
        if active.is_empty() || active.len() + incoming <= self.settings.segment_bytes {
            return Ok(());
        }
        if !sync || log.dirty {
            // Seal durably: nothing below a sealed segment's end may be lost.
            active.sync().map_err(|e| self.poison(e))?;
            log.dirty = false;
        }
        self.roll(log)
    }

    fn roll(&self, log: &mut PartitionLog) -> Result<(), StoreError> {
        let Some(active) = log.segments.values().next_back() else {
            return Ok(());
        };
        let base = active.next_offset();
        if log.dirty {
            active.sync().map_err(|e| self.poison(e))?;
            log.dirty = false;
        }
        let seg = Segment::create(&self.dir, base, self.settings.index_interval_bytes, self.faults.clone())
            .map_err(|e| self.classify_write_error(e))?;
        super::sync_dir(&self.dir).map_err(|source| {
            self.poison(SegmentError::Io {
                path: self.dir.clone(),
                op: "fsync directory",
                source,
            })
        })?;
        tracing::debug!(topic = %self.topic, partition = self.id, base_offset = base, "rolled segment");
        log.segments.insert(base, seg);
        // A checkpoint at every roll keeps recovery to the active segment.
        if let Err(e) = self.checkpoint_locked(log) {
            tracing::warn!(topic = %self.topic, partition = self.id, error = %e, "checkpoint after roll failed");
        }
        Ok(())
    }

    fn publish(&self, log: &PartitionLog) {
        let end = Arc::new(build_view(log));
        let log_end = end.high_watermark;
        let replication = self.replication.lock().unwrap_or_else(|e| e.into_inner());
        let view = match replication.as_ref().and_then(|r| r.bound(log_end)) {
            Some(bound) => Arc::new(replica::bounded_view(&end, bound)),
            None => Arc::clone(&end),
        };
        let hw = view.high_watermark;
        *self.end_view.write().unwrap_or_else(|e| e.into_inner()) = end;
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = view;
        self.log_end.send_replace(log_end);
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
        let e = source.io_error();
        if e.raw_os_error() == Some(ENOSPC) || e.kind() == io::ErrorKind::StorageFull {
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

/// ENOSPC on every Linux architecture.
pub const ENOSPC: i32 = 28;

fn build_view(log: &PartitionLog) -> PartitionView {
    let segments: Vec<SegmentView> = log
        .segments
        .values()
        .map(|s| SegmentView {
            base_offset: s.base_offset,
            file: Arc::clone(s.file()),
            len: s.len(),
            next_offset: s.next_offset(),
            max_timestamp: s.max_timestamp(),
            index: Arc::clone(s.index()),
            time_index: Arc::clone(s.time_index()),
            summary: Arc::clone(s.summary()),
        })
        .collect();
    PartitionView {
        log_start_offset: segments.first().map_or(0, |s| s.base_offset),
        high_watermark: segments.last().map_or(0, |s| s.next_offset),
        segments,
    }
}

/// The content head of a cursor `<position> <head length> <head CRC>`.
pub fn cursor_head(cursor: &str) -> Option<(u32, u32)> {
    let mut it = cursor.split_ascii_whitespace();
    let _pos = it.next()?;
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}
