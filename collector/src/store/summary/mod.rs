//! Per-segment summaries: for every block of about [`BLOCK_BYTES`] of a
//! segment's log, its byte range, offsets, exact min/max record timestamp,
//! record and line-byte counts, and which streams (label sets) it holds.
//!
//! Why a module of its own: this is what lets a query skip data without
//! reading it. The time index knows only a running *maximum*, so it can
//! find where a time range starts but never where it ends, and it knows
//! nothing of labels (they live inside compressed records). The summary
//! knows both, per block, so a narrow time range or a selector for one
//! source reads only the blocks that can hold a match; the label browser
//! and `index/stats` are answered from it without decompressing anything.
//!
//! Invariants: blocks are contiguous from byte 0 to `covered` and each
//! holds whole batches; numbers are exact except where a block says
//! "unknown" (streams `None`, or time bounds widened to the whole range),
//! which only costs pruning. A summary that cannot be continued (it does
//! not end where the next append starts) is marked invalid and rebuilt
//! from the log in the background; readers then scan that segment whole.
//!
//! Durability is that of the indexes: written at checkpoints (`file`),
//! trusted only up to the recovery point, extended during recovery by
//! decoding the batches recovery checks, rebuilt when missing.

pub mod build;
pub mod file;
pub mod stats;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use stats::{
    BatchStats, INTERNAL_HEADER_PREFIX, LabelBytes, StatsBuilder, StreamLabels, is_internal, stream_labels,
};

/// Bytes of log per block: a query that needs one record in a block
/// inflates the whole block, so this bounds a narrow query's work (about
/// 1 MiB compressed, 5 MiB of lines); smaller blocks would make the summary
/// of a 1 GiB segment (1,024 blocks, ~150 KB) proportionally larger.
pub const BLOCK_BYTES: u64 = 1 << 20;
/// Most distinct streams one segment's table holds. Past it, blocks with
/// new streams say "unknown streams" (no label pruning for them).
pub const MAX_SEGMENT_STREAMS: usize = 4096;
/// Most streams one block lists; past it the block's streams are unknown.
pub const MAX_BLOCK_STREAMS: usize = 64;

/// One block: whole batches between two byte positions of the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Position of the first batch.
    pub pos: u64,
    /// Position after the last batch.
    pub end: u64,
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset after the last record.
    pub next_offset: i64,
    /// Smallest record timestamp (ms); `i64::MIN` if unknown.
    pub min_timestamp: i64,
    /// Largest record timestamp (ms); `i64::MAX` if unknown.
    pub max_timestamp: i64,
    /// Records in the block.
    pub records: u64,
    /// Bytes of lines in the block.
    pub line_bytes: u64,
    /// Indexes into the segment's stream table; `None` if unknown.
    pub streams: Option<Vec<u32>>,
}

/// A segment's summary, shared between the writer (which extends it) and
/// readers (which copy out what they need under a short read lock).
pub type SharedSummary = Arc<RwLock<SegmentSummary>>;

/// The summary of one segment.
#[derive(Debug, Clone)]
pub struct SegmentSummary {
    streams: Vec<StreamLabels>,
    ids: HashMap<StreamLabels, u32>,
    blocks: Vec<Block>,
    covered: u64,
    valid: bool,
    /// Changed since it was last written.
    dirty: bool,
}

impl Default for SegmentSummary {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentSummary {
    /// The summary of an empty segment.
    pub fn new() -> Self {
        SegmentSummary {
            streams: Vec::new(),
            ids: HashMap::new(),
            blocks: Vec::new(),
            covered: 0,
            valid: true,
            dirty: true,
        }
    }

    /// A summary that must be rebuilt before it can be used.
    pub fn invalid() -> Self {
        SegmentSummary {
            valid: false,
            ..Self::new()
        }
    }

    /// Rebuilds the lookup table after loading.
    fn from_parts(streams: Vec<StreamLabels>, blocks: Vec<Block>, covered: u64) -> Self {
        let ids = streams
            .iter()
            .enumerate()
            .map(|(i, s)| (Arc::clone(s), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        SegmentSummary {
            streams,
            ids,
            blocks,
            covered,
            valid: true,
            dirty: false,
        }
    }

    /// Whether the summary describes the segment from byte 0 to
    /// [`covered`](Self::covered); readers must not prune with an invalid one.
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// Bytes of the segment described.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// The blocks, in log order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The stream table that blocks refer to.
    pub fn streams(&self) -> &[StreamLabels] {
        &self.streams
    }

    /// Whether it changed since [`mark_saved`](Self::mark_saved).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Records that the current state is on disk.
    pub fn mark_saved(&mut self) {
        self.dirty = false;
    }

    /// Gives up on this summary until it is rebuilt.
    pub fn invalidate(&mut self) {
        if self.valid {
            *self = Self::invalid();
        }
    }

    /// Keeps only the blocks that end at or before byte `pos`; returns
    /// whether the summary then ends exactly there (and can be continued
    /// from `pos`). Otherwise it is invalidated.
    pub fn truncate_to(&mut self, pos: u64) -> bool {
        if !self.valid {
            return false;
        }
        if self.covered > pos {
            let keep = self.blocks.partition_point(|b| b.end <= pos);
            self.blocks.truncate(keep);
            self.covered = self.blocks.last().map_or(0, |b| b.end);
            self.dirty = true;
        }
        if self.covered != pos {
            self.invalidate();
        }
        self.valid
    }

    /// Smallest and largest record timestamp of the segment, when known.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        let min = self.blocks.iter().map(|b| b.min_timestamp).min()?;
        let max = self.blocks.iter().map(|b| b.max_timestamp).max()?;
        Some((min, max))
    }

    /// Adds a batch appended at `pos` (`len` bytes, offsets `base..=last`).
    /// A batch that does not start where the summary ends invalidates it
    /// (the gap cannot be described).
    pub fn add_batch(&mut self, pos: u64, len: u64, base_offset: i64, last_offset: i64, stats: &BatchStats) {
        if !self.valid {
            return;
        }
        if pos != self.covered {
            self.invalidate();
            return;
        }
        let ids = self.stream_ids(stats);
        let extend = self.blocks.last().is_some_and(|b| b.end - b.pos < BLOCK_BYTES);
        if !extend {
            self.blocks.push(Block {
                pos,
                end: pos,
                base_offset,
                next_offset: base_offset,
                min_timestamp: i64::MAX,
                max_timestamp: i64::MIN,
                records: 0,
                line_bytes: 0,
                streams: Some(Vec::new()),
            });
        }
        let Some(block) = self.blocks.last_mut() else {
            return;
        };
        block.end = pos + len;
        block.next_offset = last_offset + 1;
        block.min_timestamp = block.min_timestamp.min(stats.min_timestamp);
        block.max_timestamp = block.max_timestamp.max(stats.max_timestamp);
        block.records += stats.records;
        block.line_bytes += stats.line_bytes;
        block.streams = match (block.streams.take(), ids) {
            (Some(mut have), Some(new)) => {
                for id in new {
                    if !have.contains(&id) {
                        have.push(id);
                    }
                }
                (have.len() <= MAX_BLOCK_STREAMS).then_some(have)
            }
            _ => None,
        };
        self.covered = pos + len;
        self.dirty = true;
    }

    /// Table ids of the batch's streams; `None` if unknown or the table is full.
    fn stream_ids(&mut self, stats: &BatchStats) -> Option<Vec<u32>> {
        let streams = stats.streams.as_ref()?;
        let mut out = Vec::with_capacity(streams.len());
        for s in streams {
            let id = match self.ids.get(s) {
                Some(&id) => id,
                None => {
                    if self.streams.len() >= MAX_SEGMENT_STREAMS {
                        return None;
                    }
                    let id = u32::try_from(self.streams.len()).ok()?;
                    self.streams.push(Arc::clone(s));
                    self.ids.insert(Arc::clone(s), id);
                    id
                }
            };
            out.push(id);
        }
        Some(out)
    }
}

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;
