//! What a partition needs to be one replica of many (collector/src/cluster):
//! who may append ([`WriteRole`]), the high watermark that bounds what
//! readers see, and truncation of a tail the leader does not hold.
//!
//! Why here and not in `cluster/`: these are changes to the log itself,
//! made under the partition's lock, in the same terms as appends and
//! recovery. The cluster code decides *when* (Kafka's ISR protocol); this
//! module only makes each step safe and durable.
//!
//! Invariants: the high watermark only moves forward, except when a
//! truncation cuts the log below it; it always sits at a batch boundary
//! (followers copy whole batches), so the readers' view ends on one too.

use std::collections::VecDeque;
use std::sync::Arc;

use logpost_shared::batch::{BatchHeader, last_record_header};
use logpost_shared::record::CURSOR_HEADER;

use super::{AppendItem, MAX_FRAME_BYTES, Partition, PartitionLog, PartitionView, SegmentView};
use crate::store::StoreError;
use crate::store::file_names::{RECOVERY_POINT, SNAPSHOT_SUFFIX, parse_offset_name, snapshot_path};
use crate::store::producer_state::ProducerState;
use crate::store::read::ReadError;
use crate::store::scan::SegmentScanner;
use crate::store::segment::{Segment, SegmentError};

/// Who may append to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRole {
    /// A collector outside a cluster: clients append.
    Standalone,
    /// The partition's leader at `epoch`: clients append, and every batch
    /// is stamped with the epoch (Kafka's partition leader epoch).
    Leader { epoch: i32 },
    /// A follower: only batches copied from the leader.
    Follower,
    /// Neither (no leader known, or not a replica): nothing.
    Offline,
}

impl WriteRole {
    fn name(self) -> &'static str {
        match self {
            WriteRole::Standalone => "standalone",
            WriteRole::Leader { .. } => "leader",
            WriteRole::Follower => "a follower",
            WriteRole::Offline => "no leader known here",
        }
    }
}

/// Refuses a group of items that `role` does not take.
pub(super) fn check_role(
    role: WriteRole,
    items: &[&AppendItem],
    topic: &str,
    partition: u32,
) -> Result<(), StoreError> {
    let ok = items.iter().all(|item| match role {
        WriteRole::Standalone | WriteRole::Leader { .. } => !item.replicated,
        WriteRole::Follower => item.replicated,
        WriteRole::Offline => false,
    });
    if ok {
        Ok(())
    } else {
        Err(StoreError::NotLeader {
            topic: topic.to_owned(),
            partition,
            role: role.name(),
        })
    }
}

/// The end of one batch: the offset after it and where its bytes end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    pub end_offset: i64,
    pub segment_base: i64,
    pub end_pos: u64,
}

/// The high watermark and the batch ends past it, so that it can move to
/// any of them without reading the log.
#[derive(Debug)]
pub(super) struct Replication {
    hw: Boundary,
    /// Ends of the batches past `hw`, oldest first. Bounded in practice by
    /// what the slowest in-sync follower lags (`replica_lag_time_max`).
    pending: VecDeque<Boundary>,
}

impl Replication {
    /// Where readers stop, unless that is the log end.
    pub(super) fn bound(&self, log_end: i64) -> Option<Boundary> {
        (self.hw.end_offset < log_end).then_some(self.hw)
    }
}

/// What a truncation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncateReport {
    /// The log end offset after it.
    pub log_end_offset: i64,
    /// Records cut off.
    pub truncated_records: i64,
}

impl Partition {
    /// Who may append now.
    pub fn role(&self) -> WriteRole {
        self.lock().role
    }

    /// Changes who may append. Takes the partition's lock, so it waits for
    /// an append in progress (an fsync): call it off the async runtime.
    /// Once it returns, no append of the old role can happen.
    pub fn set_role(&self, role: WriteRole) {
        let mut log = self.lock();
        if log.role != role {
            self.forget_recent();
        }
        log.role = role;
    }

    /// Bounds readers by a high watermark from now on, starting at `hw`
    /// (clamped to the log, rounded down to a batch boundary). Reads the
    /// log from there to its end to learn the batch boundaries: call it
    /// off the async runtime.
    ///
    /// # Errors
    /// The log cannot be read.
    pub fn enable_replication(&self, hw: i64) -> Result<i64, StoreError> {
        let log = self.lock();
        let (start, end) = offsets(&log);
        let hw = hw.clamp(start, end);
        let mut hw_bound = end_boundary(&log);
        let mut pending = VecDeque::new();
        if hw < end {
            let mut found: Option<Boundary> = None;
            for_each_frame(&log, hw, |seg, pos, header, frame| {
                if found.is_none() {
                    // The first batch at or past `hw`: it starts the pending run.
                    found = Some(Boundary {
                        end_offset: header.base_offset,
                        segment_base: seg,
                        end_pos: pos,
                    });
                }
                pending.push_back(Boundary {
                    end_offset: header.last_offset() + 1,
                    segment_base: seg,
                    end_pos: pos + frame.len() as u64,
                });
                true
            })
            .map_err(|e| self.read_error(e))?;
            hw_bound = found.unwrap_or(hw_bound);
        }
        let hw = hw_bound.end_offset;
        *self.replication.lock().unwrap_or_else(|e| e.into_inner()) = Some(Replication { hw: hw_bound, pending });
        self.publish(&log);
        Ok(hw)
    }

    /// The high watermark: what readers see ends here.
    pub fn high_watermark(&self) -> i64 {
        self.view().high_watermark
    }

    /// The log end offset: the offset the next batch gets.
    pub fn log_end_offset(&self) -> i64 {
        self.end_view().high_watermark
    }

    /// Moves the high watermark forward to `hw` (or the last batch end
    /// below it); returns where it is. Never waits for the log's lock.
    pub fn advance_high_watermark(&self, hw: i64) -> i64 {
        let mut replication = self.replication.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = replication.as_mut() else {
            return self.view().high_watermark;
        };
        let mut moved = false;
        while let Some(front) = r.pending.front().copied() {
            if front.end_offset > hw {
                break;
            }
            r.hw = front;
            r.pending.pop_front();
            moved = true;
        }
        let current = r.hw.end_offset;
        if moved {
            let end = self.end_view();
            let view = match r.bound(end.high_watermark) {
                Some(bound) => Arc::new(bounded_view(&end, bound)),
                None => end,
            };
            let hw = view.high_watermark;
            *self.view.write().unwrap_or_else(|e| e.into_inner()) = view;
            self.high_watermark.send_replace(hw);
        }
        current
    }

    /// Records batch ends appended at `start_pos` of segment `segment_base`.
    pub(super) fn note_appended(&self, segment_base: i64, start_pos: u64, batches: impl Iterator<Item = (i64, u64)>) {
        let mut replication = self.replication.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = replication.as_mut() else { return };
        let mut pos = start_pos;
        for (end_offset, len) in batches {
            pos += len;
            r.pending.push_back(Boundary {
                end_offset,
                segment_base,
                end_pos: pos,
            });
        }
    }

    /// Cuts the log back to `offset` (or the start of the batch holding
    /// it): the tail a replica holds beyond what its leader holds (Kafka's
    /// truncation to the leader epoch's end offset, KIP-101). The producer
    /// state is rebuilt for the shorter log, a recovery point is written
    /// for it, and the high watermark comes down if it was past the cut.
    /// Only for a partition that is not taking appends from clients.
    ///
    /// # Errors
    /// I/O errors; the partition may then hold more than intended, which
    /// the next attempt (or recovery) cuts.
    pub fn truncate_to(&self, offset: i64) -> Result<TruncateReport, StoreError> {
        let mut guard = self.lock();
        let log = &mut *guard;
        let (start, end) = offsets(log);
        if offset >= end {
            return Ok(TruncateReport {
                log_end_offset: end,
                truncated_records: 0,
            });
        }
        if offset <= start {
            return self.restart_locked(log, offset, end);
        }
        // Without a recovery point, a crash in what follows replays the
        // log from its start: slow, but never trusts a point past the cut.
        self.forget_recovery_point().map_err(|e| self.io_error(e))?;
        let mut cut: Option<(i64, u64, i64)> = None;
        for_each_frame(log, offset, |seg, pos, header, _| {
            if header.last_offset() >= offset {
                cut = Some((seg, pos, header.base_offset));
                return false;
            }
            true
        })
        .map_err(|e| self.read_error(e))?;
        let Some((seg_base, pos, new_end)) = cut else {
            return Ok(TruncateReport {
                log_end_offset: end,
                truncated_records: 0,
            });
        };
        let later: Vec<i64> = log.segments.range(seg_base + 1..).map(|(b, _)| *b).collect();
        for base in later {
            if let Some(seg) = log.segments.remove(&base) {
                seg.delete_files();
            }
        }
        if let Some(seg) = log.segments.get_mut(&seg_base) {
            seg.truncate_at(pos, new_end).map_err(|e| self.io_error(e))?;
        }
        log.producers = self.replay_producers(log, new_end);
        self.after_cut(log, new_end)?;
        tracing::warn!(topic = %self.topic, partition = self.id, from = end, to = new_end, "truncated replica log");
        Ok(TruncateReport {
            log_end_offset: new_end,
            truncated_records: end - new_end,
        })
    }

    /// Empties the partition and starts it again at `offset`: a follower
    /// whose log ends below its leader's log start (retention deleted what
    /// it lacks) or holds nothing the leader holds.
    ///
    /// # Errors
    /// I/O errors creating the new segment.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<TruncateReport, StoreError> {
        let mut guard = self.lock();
        let (_, end) = offsets(&guard);
        self.restart_locked(&mut guard, offset, end)
    }

    fn restart_locked(&self, log: &mut PartitionLog, offset: i64, end: i64) -> Result<TruncateReport, StoreError> {
        self.forget_recovery_point().map_err(|e| self.io_error(e))?;
        for seg in std::mem::take(&mut log.segments).into_values() {
            seg.delete_files();
        }
        let fresh = Segment::create(
            &self.dir,
            offset,
            self.settings.index_interval_bytes,
            self.faults.clone(),
        )
        .map_err(|e| self.io_error(e))?;
        log.segments.insert(offset, fresh);
        crate::store::sync_dir(&self.dir).map_err(|source| {
            self.io_error(SegmentError::Io {
                path: self.dir.clone(),
                op: "fsync directory",
                source,
            })
        })?;
        log.producers = ProducerState::new();
        self.after_cut(log, offset)?;
        tracing::warn!(topic = %self.topic, partition = self.id, from = end, start = offset, "replica log emptied and restarted");
        Ok(TruncateReport {
            log_end_offset: offset,
            truncated_records: (end - offset).max(0),
        })
    }

    /// After a cut to `new_end`: drop snapshots past it, bring the high
    /// watermark down, write a recovery point for the new end, publish.
    fn after_cut(&self, log: &mut PartitionLog, new_end: i64) -> Result<(), StoreError> {
        self.forget_recent();
        for (offset, path) in snapshots(&self.dir) {
            if offset > new_end {
                let _ = std::fs::remove_file(path);
            }
        }
        {
            let mut replication = self.replication.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = replication.as_mut() {
                r.pending.retain(|b| b.end_offset <= new_end);
                if r.hw.end_offset > new_end {
                    // Only what a replica that was never acknowledged holds
                    // can be cut; the boundary is the new end itself.
                    r.hw = end_boundary(log);
                    r.pending.clear();
                }
            }
        }
        log.checkpointed = None;
        log.dirty = false;
        self.checkpoint_locked(log)?;
        self.publish(log);
        Ok(())
    }

    /// The producer state of the log cut at `new_end`: the newest snapshot
    /// at or below it, then the batches from there to the cut replayed, as
    /// recovery does.
    fn replay_producers(&self, log: &PartitionLog, new_end: i64) -> ProducerState {
        let (start, _) = offsets(log);
        let snapshot = snapshots(&self.dir)
            .into_iter()
            .filter(|(o, _)| *o <= new_end)
            .max_by_key(|(o, _)| *o)
            .and_then(|(o, path)| {
                let bytes = std::fs::read(path).ok()?;
                ProducerState::from_snapshot(&bytes).ok().map(|s| (o, s))
            });
        let (from, mut producers) = snapshot.unwrap_or((start, ProducerState::new()));
        let now_ms = crate::store::topic::now_ms();
        let replayed = for_each_frame(log, from.max(start), |_, _, h, frame| {
            if h.base_offset >= new_end {
                return false;
            }
            if h.base_offset >= from && h.producer.producer_id >= 0 {
                let cursor = last_record_header(frame, h, CURSOR_HEADER, MAX_FRAME_BYTES)
                    .ok()
                    .flatten()
                    .and_then(|v| String::from_utf8(v).ok());
                producers.update_with_cursor(
                    h.producer.producer_id,
                    h.producer.producer_epoch,
                    h.producer.base_sequence,
                    h.records_count,
                    h.base_offset,
                    now_ms,
                    cursor,
                );
            }
            true
        });
        if let Err(e) = replayed {
            tracing::error!(topic = %self.topic, partition = self.id, error = %e,
                "cannot replay the log for the producer state after a truncation; deduplication may miss retries");
        }
        producers
    }

    fn forget_recovery_point(&self) -> Result<(), SegmentError> {
        let path = self.dir.join(RECOVERY_POINT);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(SegmentError::Io {
                    path,
                    op: "remove",
                    source,
                });
            }
        }
        crate::store::sync_dir(&self.dir).map_err(|source| SegmentError::Io {
            path: self.dir.clone(),
            op: "fsync directory",
            source,
        })
    }

    fn read_error(&self, source: ReadError) -> StoreError {
        StoreError::Read {
            topic: self.topic.to_string(),
            partition: self.id,
            source,
        }
    }

    fn io_error(&self, source: SegmentError) -> StoreError {
        StoreError::Io {
            topic: self.topic.to_string(),
            partition: Some(self.id),
            source,
        }
    }
}

/// `(log start, log end)` offsets.
/// `full` cut at the high watermark `bound`: the segments up to the one
/// holding it, that one ending at its position.
pub(super) fn bounded_view(full: &PartitionView, bound: Boundary) -> PartitionView {
    let mut segments: Vec<SegmentView> = full
        .segments
        .iter()
        .filter(|s| s.base_offset <= bound.segment_base)
        .cloned()
        .collect();
    if let Some(last) = segments.last_mut()
        && last.base_offset == bound.segment_base
    {
        last.len = bound.end_pos.min(last.len);
        last.next_offset = bound.end_offset;
    }
    PartitionView {
        log_start_offset: full.log_start_offset,
        high_watermark: bound.end_offset.max(full.log_start_offset),
        segments,
    }
}

fn offsets(log: &PartitionLog) -> (i64, i64) {
    let start = log.segments.first_key_value().map_or(0, |(b, _)| *b);
    let end = log.segments.last_key_value().map_or(0, |(_, s)| s.next_offset());
    (start, end)
}

/// The boundary at the log end.
fn end_boundary(log: &PartitionLog) -> Boundary {
    log.segments.last_key_value().map_or(
        Boundary {
            end_offset: 0,
            segment_base: 0,
            end_pos: 0,
        },
        |(b, s)| Boundary {
            end_offset: s.next_offset(),
            segment_base: *b,
            end_pos: s.len(),
        },
    )
}

/// `(offset, path)` of every producer snapshot in `dir`.
fn snapshots(dir: &std::path::Path) -> Vec<(i64, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let offset = e
                .file_name()
                .to_str()
                .and_then(|n| parse_offset_name(n, SNAPSHOT_SUFFIX))?;
            Some((offset, snapshot_path(dir, offset)))
        })
        .collect()
}

/// Calls `each(segment base, position, header, frame)` for every batch
/// from the one holding `offset` to the log end, until it returns false.
fn for_each_frame(
    log: &PartitionLog,
    offset: i64,
    mut each: impl FnMut(i64, u64, &BatchHeader, &[u8]) -> bool,
) -> Result<(), ReadError> {
    let first = log
        .segments
        .range(..=offset)
        .next_back()
        .map(|(b, _)| *b)
        .or_else(|| log.segments.first_key_value().map(|(b, _)| *b));
    let Some(first) = first else { return Ok(()) };
    for (&base, seg) in log.segments.range(first..) {
        let start = if base <= offset {
            let rel = u32::try_from(offset - base).unwrap_or(u32::MAX);
            u64::from(seg.index().read().unwrap_or_else(|e| e.into_inner()).lookup(rel)).min(seg.len())
        } else {
            0
        };
        let mut scanner = SegmentScanner::new(Arc::clone(seg.file()), start, seg.len(), MAX_FRAME_BYTES);
        loop {
            let (pos, frame) = match scanner.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(source) => {
                    return Err(ReadError::Scan {
                        base_offset: base,
                        source,
                    });
                }
            };
            let header = BatchHeader::parse(frame).map_err(|source| ReadError::Corrupt {
                base_offset: base,
                pos,
                source,
            })?;
            if header.last_offset() < offset {
                continue;
            }
            if !each(base, pos, &header, frame) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
