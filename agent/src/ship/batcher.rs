//! Records accumulate here, per topic and within a topic per stream (one
//! tailed file), until the topic's request is sealed by size, record count
//! or age. One request carries one RecordBatch per stream, so every batch
//! has a single producer id and consecutive sequence numbers.
//!
//! Sequence numbers are 64-bit per stream; on the wire they are Kafka's
//! 32-bit base sequence plus the producer epoch, `seq = epoch << 31 |
//! base_sequence`, so a batch never crosses a multiple of 2^31.
//!
//! Sync core: time is an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use logpost_shared::batch::{BatchBuilder, HeaderSet, ProducerInfo};

use crate::tail::fingerprint::FileKey;

/// Sequence numbers per producer epoch: Kafka's base sequence is an i32.
pub const SEQ_PER_EPOCH: i64 = 1 << 31;

/// The records of one stream in one request.
#[derive(Debug)]
pub struct StreamBatch {
    pub file: FileKey,
    pub generation: u32,
    pub builder: BatchBuilder,
    /// File position after the batch's last line.
    pub end_pos: u64,
    /// Sequence of the record after the batch's last.
    pub next_seq: i64,
}

/// A sealed request: everything pending for one topic.
#[derive(Debug)]
pub struct ShipRequest {
    pub topic: String,
    pub batches: Vec<StreamBatch>,
    pub records: u64,
    /// Uncompressed record bytes.
    pub raw_bytes: usize,
}

/// Where one line comes from, for the batcher.
#[derive(Debug, Clone, Copy)]
pub struct StreamPos {
    pub file: FileKey,
    pub generation: u32,
    pub producer_id: i64,
    /// Sequence number of this record.
    pub seq: i64,
    /// File position after this line.
    pub end_pos: u64,
}

#[derive(Debug, Default)]
struct TopicBatch {
    batches: Vec<StreamBatch>,
    /// Index in `batches` of each stream's open batch.
    open: HashMap<FileKey, usize>,
    records: u64,
    raw_bytes: usize,
    opened_at: Option<Instant>,
}

/// Limits that seal a topic's request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_records: u32,
    pub max_wait: Duration,
}

/// Pending records of every topic.
#[derive(Debug)]
pub struct Batcher {
    limits: Limits,
    topics: HashMap<String, TopicBatch>,
    pending_bytes: usize,
}

impl Batcher {
    /// An empty batcher.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            topics: HashMap::new(),
            pending_bytes: 0,
        }
    }

    /// Uncompressed bytes pending across topics.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Appends one record; returns the topic's sealed request if this record
    /// filled it.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        topic: &str,
        at: StreamPos,
        timestamp_ms: i64,
        key: &[u8],
        line: &[u8],
        headers: &[&HeaderSet],
        now: Instant,
    ) -> Option<ShipRequest> {
        let t = match self.topics.get_mut(topic) {
            Some(t) => t,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        t.opened_at.get_or_insert(now);
        let starts_epoch = at.seq % SEQ_PER_EPOCH == 0;
        let idx = match t.open.get(&at.file) {
            Some(&i) if !starts_epoch && t.batches.get(i).is_some_and(|b| b.generation == at.generation) => i,
            _ => {
                let mut builder = BatchBuilder::new();
                builder.set_producer(ProducerInfo {
                    producer_id: at.producer_id,
                    producer_epoch: (at.seq / SEQ_PER_EPOCH) as i16,
                    base_sequence: (at.seq % SEQ_PER_EPOCH) as i32,
                });
                t.batches.push(StreamBatch {
                    file: at.file,
                    generation: at.generation,
                    builder,
                    end_pos: at.end_pos,
                    next_seq: at.seq,
                });
                t.open.insert(at.file, t.batches.len() - 1);
                t.batches.len() - 1
            }
        };
        let batch = t.batches.get_mut(idx).expect("index from `open` is valid");
        let before = batch.builder.records_bytes();
        batch.builder.append(timestamp_ms, Some(key), Some(line), headers);
        batch.end_pos = at.end_pos;
        batch.next_seq = at.seq + 1;
        let added = batch.builder.records_bytes() - before;
        t.raw_bytes += added;
        t.records += 1;
        self.pending_bytes += added;
        if t.raw_bytes >= self.limits.max_bytes || t.records >= u64::from(self.limits.max_records) {
            return self.seal(topic);
        }
        None
    }

    /// Seals and returns every topic whose oldest record has waited `max_wait`.
    pub fn due(&mut self, now: Instant) -> Vec<ShipRequest> {
        let due: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, t)| {
                t.opened_at
                    .is_some_and(|at| now.duration_since(at) >= self.limits.max_wait)
            })
            .map(|(name, _)| name.clone())
            .collect();
        due.iter().filter_map(|name| self.seal(name)).collect()
    }

    /// When the next topic falls due, if any is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.topics
            .values()
            .filter_map(|t| t.opened_at)
            .min()
            .map(|at| at + self.limits.max_wait)
    }

    /// Seals every pending topic (shutdown).
    pub fn drain_all(&mut self) -> Vec<ShipRequest> {
        let names: Vec<String> = self.topics.keys().cloned().collect();
        names.iter().filter_map(|name| self.seal(name)).collect()
    }

    fn seal(&mut self, topic: &str) -> Option<ShipRequest> {
        let t = self.topics.remove(topic)?;
        if t.batches.is_empty() {
            return None;
        }
        self.pending_bytes -= t.raw_bytes;
        Some(ShipRequest {
            topic: topic.to_owned(),
            batches: t.batches,
            records: t.records,
            raw_bytes: t.raw_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(ino: u64, seq: i64, end_pos: u64) -> StreamPos {
        StreamPos {
            file: FileKey { dev: 1, ino },
            generation: 0,
            producer_id: ino as i64,
            seq,
            end_pos,
        }
    }

    fn limits() -> Limits {
        Limits {
            max_bytes: 1 << 20,
            max_records: 3,
            max_wait: Duration::from_secs(1),
        }
    }

    #[test]
    fn seals_by_record_count_with_one_batch_per_stream() {
        let mut b = Batcher::new(limits());
        let now = Instant::now();
        assert!(b.append("t", pos(1, 0, 10), 0, b"k1", b"a", &[], now).is_none());
        assert!(b.append("t", pos(2, 7, 5), 0, b"k2", b"b", &[], now).is_none());
        let req = b
            .append("t", pos(1, 1, 20), 0, b"k1", b"c", &[], now)
            .expect("third record seals");
        assert_eq!(req.records, 3);
        assert_eq!(req.batches.len(), 2);
        assert_eq!(req.batches[0].builder.record_count(), 2);
        assert_eq!(req.batches[0].end_pos, 20);
        assert_eq!(req.batches[0].next_seq, 2);
        assert_eq!(req.batches[1].next_seq, 8);
        assert_eq!(b.pending_bytes(), 0);
    }

    #[test]
    fn seals_by_age() {
        let mut b = Batcher::new(limits());
        let t0 = Instant::now();
        b.append("t", pos(1, 0, 1), 0, b"k", b"a", &[], t0);
        assert!(b.due(t0 + Duration::from_millis(999)).is_empty());
        assert_eq!(b.next_due(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(b.due(t0 + Duration::from_secs(1)).len(), 1);
        assert!(b.next_due().is_none());
    }

    #[test]
    fn a_batch_never_crosses_an_epoch() {
        let mut b = Batcher::new(Limits {
            max_records: 100,
            ..limits()
        });
        let now = Instant::now();
        b.append("t", pos(1, SEQ_PER_EPOCH - 1, 1), 0, b"k", b"a", &[], now);
        b.append("t", pos(1, SEQ_PER_EPOCH, 2), 0, b"k", b"b", &[], now);
        let req = b.drain_all().pop().unwrap();
        assert_eq!(req.batches.len(), 2);
        let frame = req.batches[1]
            .builder
            .finish(logpost_shared::compression::Compression::None)
            .unwrap();
        let h = logpost_shared::batch::check(&frame).unwrap();
        assert_eq!((h.producer.producer_epoch, h.producer.base_sequence), (1, 0));
    }
}
