//! The stats of a leader's most recent batches, kept in memory so that its
//! answers to followers' fetches can carry them (`cluster::fetch_stats`):
//! a follower then stores a copied batch without inflating and decoding it
//! again, which was about three quarters of a follower's CPU (issue 29).
//!
//! Why a module of its own: `partition.rs` decides what is stored; this
//! only remembers, for a bounded number of batches, what the append
//! computed for the summary anyway, and answers "what do you know of these
//! stored batches?". Nothing here is durable: after a restart, a role
//! change or a truncation the ring starts empty and followers rebuild the
//! stats of older batches themselves.
//!
//! Invariant: an entry describes the batch exactly as stored (after a
//! dedup trim too), and is identified by its [`BatchKey`], which a
//! follower checks against the frame it received before trusting it.

use std::collections::VecDeque;
use std::sync::Arc;

use logpost_shared::batch::BatchHeader;

use super::{AppendItem, Partition};
use crate::store::summary::BatchStats;

/// Most batches remembered per partition. Together with
/// [`MAX_RING_BYTES`] this covers a whole fetch answer (8 MiB of frames)
/// for batches of 3 KiB and more, and what a follower lags by in normal
/// operation (a fetch or two) many times over.
pub const MAX_RING_BATCHES: usize = 4096;
/// Most bytes (estimated, see [`RecentBatch::weight`]) remembered per
/// partition: bounds memory per led partition whatever the label sets
/// look like; about 3,000 batches of one small label set.
pub const MAX_RING_BYTES: usize = 512 << 10;

/// What identifies a stored batch's content well enough to trust stats
/// computed from it: its offsets, its length and its CRC-32C (which covers
/// everything after the CRC field, so all records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchKey {
    pub base_offset: i64,
    pub batch_length: usize,
    pub crc: u32,
    pub last_offset_delta: i32,
    pub records_count: i32,
}

impl BatchKey {
    /// The key of a batch with `header`, stored at `header.base_offset`.
    pub fn of(header: &BatchHeader) -> Self {
        BatchKey {
            base_offset: header.base_offset,
            batch_length: header.batch_length,
            crc: header.crc,
            last_offset_delta: header.last_offset_delta,
            records_count: header.records_count,
        }
    }
}

/// The producer cursor of a stored batch, as its append used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownCursor {
    /// Known: the last record's `logpost.cursor` header when the batch has
    /// a producer id, `None` otherwise (what a follower would decode).
    Known(Option<String>),
    /// The append did not decode the batch (a Loki push, say): a follower
    /// must decode it for the cursor.
    Unknown,
}

/// One remembered batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentBatch {
    pub key: BatchKey,
    pub stats: Arc<BatchStats>,
    pub cursor: KnownCursor,
}

impl RecentBatch {
    /// The entry for `item`, stored at `base_offset` as the bytes `header`
    /// describes (trimmed, perhaps), with the `stats` its append used.
    pub fn stored(base_offset: i64, header: &BatchHeader, stats: Arc<BatchStats>, item: &AppendItem) -> Self {
        let cursor = if header.producer.producer_id < 0 {
            KnownCursor::Known(None)
        } else if item.stats.is_some() {
            // Whoever decoded the batch for its stats took the cursor too
            // (`AppendItem::cursor`); a trim keeps the last record.
            KnownCursor::Known(item.cursor.clone())
        } else {
            KnownCursor::Unknown
        };
        RecentBatch {
            key: BatchKey {
                base_offset,
                ..BatchKey::of(header)
            },
            stats,
            cursor,
        }
    }

    /// Bytes this entry is counted as: the struct, plus its label and
    /// cursor strings (each label set counted once per batch, though
    /// batches of one producer often share them: an overestimate).
    pub fn weight(&self) -> usize {
        let labels: usize = self.stats.streams.as_ref().map_or(0, |streams| {
            streams
                .iter()
                .flat_map(|s| s.iter())
                .map(|(k, v)| k.len() + v.len() + 2 * std::mem::size_of::<String>())
                .sum()
        });
        let cursor = match &self.cursor {
            KnownCursor::Known(Some(c)) => c.len(),
            _ => 0,
        };
        std::mem::size_of::<RecentBatch>() + std::mem::size_of::<BatchStats>() + labels + cursor
    }
}

/// The ring: entries in increasing base offset order.
#[derive(Debug, Default)]
pub struct RecentStats {
    entries: VecDeque<RecentBatch>,
    bytes: usize,
}

impl RecentStats {
    /// Remembers a batch just stored, forgetting the oldest past the
    /// bounds. A batch not after the newest one (which only a truncation
    /// allows, and that clears the ring) empties the ring first, so that
    /// offsets stay in order.
    pub fn push(&mut self, batch: RecentBatch) {
        if self
            .entries
            .back()
            .is_some_and(|last| last.key.base_offset >= batch.key.base_offset)
        {
            self.clear();
        }
        self.bytes += batch.weight();
        self.entries.push_back(batch);
        while self.entries.len() > MAX_RING_BATCHES || (self.bytes > MAX_RING_BYTES && self.entries.len() > 1) {
            match self.entries.pop_front() {
                Some(old) => self.bytes = self.bytes.saturating_sub(old.weight()),
                None => break,
            }
        }
    }

    /// Forgets everything (a truncation, a role change).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The entry for the batch `key` names, if remembered with that exact key.
    pub fn get(&self, key: &BatchKey) -> Option<&RecentBatch> {
        let i = self
            .entries
            .binary_search_by_key(&key.base_offset, |e| e.key.base_offset)
            .ok()?;
        self.entries.get(i).filter(|e| e.key == *key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

impl Partition {
    /// Remembers batches just stored (before they are published, so that a
    /// fetch that reads them can find them).
    pub(super) fn remember(&self, batches: Vec<RecentBatch>) {
        if batches.is_empty() {
            return;
        }
        let mut ring = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        for batch in batches {
            ring.push(batch);
        }
    }

    /// Forgets every remembered batch: the log was cut or its role changed.
    pub(super) fn forget_recent(&self) {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// What is remembered of the stored batches `keys` name, in their
    /// order: `None` for those not remembered with exactly that key.
    pub fn recent_batches(&self, keys: &[BatchKey]) -> Vec<Option<RecentBatch>> {
        let ring = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter().map(|k| ring.get(k).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base_offset: i64, labels: usize) -> RecentBatch {
        let streams = (labels > 0).then(|| {
            vec![
                (0..labels)
                    .map(|i| (format!("k{i}"), "v".repeat(100)))
                    .collect::<Vec<_>>()
                    .into(),
            ]
        });
        RecentBatch {
            key: BatchKey {
                base_offset,
                batch_length: 100,
                crc: 7,
                last_offset_delta: 9,
                records_count: 10,
            },
            stats: Arc::new(BatchStats {
                min_timestamp: 1,
                max_timestamp: 2,
                records: 10,
                line_bytes: 50,
                streams,
            }),
            cursor: KnownCursor::Known(None),
        }
    }

    #[test]
    fn finds_only_the_exact_key() {
        let mut ring = RecentStats::default();
        for i in 0..10 {
            ring.push(batch(i * 10, 1));
        }
        let mut key = batch(30, 1).key;
        assert_eq!(ring.get(&key).map(|e| e.key.base_offset), Some(30));
        key.crc = 8;
        assert!(ring.get(&key).is_none(), "another CRC is another batch");
        key = batch(35, 1).key;
        assert!(ring.get(&key).is_none(), "no batch starts there");
    }

    #[test]
    fn bounded_in_batches_and_bytes() {
        let mut ring = RecentStats::default();
        for i in 0..(MAX_RING_BATCHES as i64 + 100) {
            ring.push(batch(i, 0));
        }
        assert_eq!(ring.len(), MAX_RING_BATCHES);
        assert!(ring.get(&batch(99, 0).key).is_none(), "the oldest went first");
        assert!(ring.get(&batch(MAX_RING_BATCHES as i64 + 99, 0).key).is_some());

        let mut ring = RecentStats::default();
        for i in 0..2000 {
            ring.push(batch(i, 16));
        }
        assert!(ring.bytes <= MAX_RING_BYTES, "{} bytes", ring.bytes);
        assert!(ring.len() < 2000 && ring.len() > 1, "{}", ring.len());
    }

    #[test]
    fn an_offset_going_back_starts_over() {
        let mut ring = RecentStats::default();
        for i in 0..5 {
            ring.push(batch(i * 10, 1));
        }
        ring.push(batch(20, 1));
        assert_eq!(ring.len(), 1);
        assert!(ring.get(&batch(0, 1).key).is_none());
        assert!(ring.get(&batch(20, 1).key).is_some());
    }
}
