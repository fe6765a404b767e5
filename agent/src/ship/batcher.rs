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

use super::acks::Unsettled;
use crate::tail::fingerprint::{FileKey, Head};

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
    /// Fingerprint of the file content `end_pos` is in.
    pub head: Head,
    /// Its first record's key: with the producer id, it decides the
    /// batch's partition (how a cluster's agent finds the leader).
    pub key: Option<Box<[u8]>>,
    pub producer_id: i64,
}

impl StreamBatch {
    /// The cursor the batch's last record carries: `<end_pos> <head length>
    /// <head CRC-32C>`; the collector keeps it per stream and hands it back
    /// when the agent asks where to resume.
    pub fn cursor(&self) -> String {
        format!("{} {} {}", self.end_pos, self.head.len, self.head.crc)
    }
}

/// A sealed request: everything pending for one topic.
#[derive(Debug)]
pub struct ShipRequest {
    pub topic: String,
    pub batches: Vec<StreamBatch>,
    pub records: u64,
    /// Uncompressed record bytes.
    pub raw_bytes: usize,
    /// Counts the request as unsettled from its hand-over to the shipper
    /// until it is dropped.
    pub unsettled: Option<Unsettled>,
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
    /// Fingerprint of the content the position is in.
    pub head: Head,
}

#[derive(Debug, Default)]
struct TopicBatch {
    name: String,
    batches: Vec<StreamBatch>,
    /// Index in `batches` of each stream's open batch.
    open: HashMap<FileKey, usize>,
    records: u64,
    raw_bytes: usize,
    opened_at: Option<Instant>,
    /// Bumped at every seal, so that cached slots notice.
    epoch: u64,
}

/// Limits that seal a topic's request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_records: u32,
    pub max_wait: Duration,
    /// The wait instead of `max_wait` once the pipeline is caught up.
    pub linger: Duration,
}

/// A cached position of one stream's open batch, so that a run of lines
/// from one file costs no hash lookups per line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slot {
    cached: Option<(usize, u64)>,
}

/// Pending records of every topic.
#[derive(Debug)]
pub struct Batcher {
    limits: Limits,
    topics: Vec<TopicBatch>,
    by_name: HashMap<String, usize>,
    pending_bytes: usize,
    /// Records bytes of each stream's last sealed batch: the next batch
    /// reserves that much, so a busy file's batch never regrows.
    size_hints: HashMap<FileKey, usize>,
}

impl Batcher {
    /// An empty batcher.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            topics: Vec::new(),
            by_name: HashMap::new(),
            pending_bytes: 0,
            size_hints: HashMap::new(),
        }
    }

    /// New limits (a reloaded config); pending batches keep accumulating.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Uncompressed bytes pending across topics.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The index of `topic`, for [`append`](Self::append).
    pub fn topic_index(&mut self, topic: &str) -> usize {
        if let Some(&i) = self.by_name.get(topic) {
            return i;
        }
        self.topics.push(TopicBatch {
            name: topic.to_owned(),
            ..TopicBatch::default()
        });
        self.by_name.insert(topic.to_owned(), self.topics.len() - 1);
        self.topics.len() - 1
    }

    /// Appends one record to topic `topic` (from [`topic_index`](Self::topic_index));
    /// returns the topic's sealed request if this record filled it. `slot`
    /// caches where the stream's batch is between calls.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        topic: usize,
        slot: &mut Slot,
        at: StreamPos,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        line: &[u8],
        headers: &[&HeaderSet],
        now: Instant,
    ) -> Option<ShipRequest> {
        let t = self.topics.get_mut(topic)?;
        t.opened_at.get_or_insert(now);
        let starts_epoch = at.seq % SEQ_PER_EPOCH == 0;
        let cached = slot.cached.filter(|&(i, epoch)| {
            epoch == t.epoch
                && !starts_epoch
                && t.batches
                    .get(i)
                    .is_some_and(|b| b.file == at.file && b.generation == at.generation)
        });
        let idx = match cached.map(|(i, _)| i) {
            Some(i) => i,
            None => {
                let reuse = t
                    .open
                    .get(&at.file)
                    .copied()
                    .filter(|&i| !starts_epoch && t.batches.get(i).is_some_and(|b| b.generation == at.generation));
                match reuse {
                    Some(i) => i,
                    None => {
                        let mut builder = BatchBuilder::new();
                        if let Some(&hint) = self.size_hints.get(&at.file) {
                            builder.reserve(hint + hint / 8);
                        }
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
                            head: at.head,
                            key: key.map(Box::from),
                            producer_id: at.producer_id,
                        });
                        t.open.insert(at.file, t.batches.len() - 1);
                        t.batches.len() - 1
                    }
                }
            }
        };
        slot.cached = Some((idx, t.epoch));
        let batch = t.batches.get_mut(idx)?;
        let before = batch.builder.records_bytes();
        batch.builder.append(timestamp_ms, key, Some(line), headers);
        batch.end_pos = at.end_pos;
        batch.next_seq = at.seq + 1;
        batch.head = at.head;
        let added = batch.builder.records_bytes() - before;
        t.raw_bytes += added;
        t.records += 1;
        self.pending_bytes += added;
        if t.raw_bytes >= self.limits.max_bytes || t.records >= u64::from(self.limits.max_records) {
            return self.seal(topic);
        }
        None
    }

    /// Seals and returns every topic whose oldest record has waited
    /// `max_wait`, or `linger` when `caught_up` (every file read to its
    /// end and every request settled: sending now delays nothing else).
    pub fn due(&mut self, now: Instant, caught_up: bool) -> Vec<ShipRequest> {
        let wait = self.wait(caught_up);
        let due: Vec<usize> = (0..self.topics.len())
            .filter(|&i| {
                self.topics
                    .get(i)
                    .and_then(|t| t.opened_at)
                    .is_some_and(|at| now.duration_since(at) >= wait)
            })
            .collect();
        due.into_iter().filter_map(|i| self.seal(i)).collect()
    }

    /// When the next topic falls due, if any is pending (see [`due`](Self::due)).
    pub fn next_due(&self, caught_up: bool) -> Option<Instant> {
        self.topics
            .iter()
            .filter_map(|t| t.opened_at)
            .min()
            .map(|at| at + self.wait(caught_up))
    }

    fn wait(&self, caught_up: bool) -> Duration {
        if caught_up {
            self.limits.linger.min(self.limits.max_wait)
        } else {
            self.limits.max_wait
        }
    }

    /// Seals every pending topic (shutdown).
    pub fn drain_all(&mut self) -> Vec<ShipRequest> {
        (0..self.topics.len()).filter_map(|i| self.seal(i)).collect()
    }

    fn seal(&mut self, topic: usize) -> Option<ShipRequest> {
        let t = self.topics.get_mut(topic)?;
        t.opened_at = None;
        t.epoch += 1;
        t.open.clear();
        if t.batches.is_empty() {
            return None;
        }
        let batches = std::mem::take(&mut t.batches);
        for b in &batches {
            // Only worth remembering for busy streams; bounded by the files tracked.
            if b.builder.records_bytes() >= 64 << 10 {
                self.size_hints
                    .insert(b.file, b.builder.records_bytes().min(self.limits.max_bytes));
            } else {
                self.size_hints.remove(&b.file);
            }
        }
        let (records, raw_bytes) = (std::mem::take(&mut t.records), std::mem::take(&mut t.raw_bytes));
        self.pending_bytes -= raw_bytes;
        Some(ShipRequest {
            topic: t.name.clone(),
            batches,
            records,
            raw_bytes,
            unsettled: None,
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
            head: Head::EMPTY,
        }
    }

    fn limits() -> Limits {
        Limits {
            max_bytes: 1 << 20,
            max_records: 3,
            max_wait: Duration::from_secs(1),
            linger: Duration::from_millis(100),
        }
    }

    fn add(b: &mut Batcher, at: StreamPos, line: &[u8], now: Instant) -> Option<ShipRequest> {
        let t = b.topic_index("t");
        b.append(t, &mut Slot::default(), at, 0, None, line, &[], now)
    }

    #[test]
    fn seals_by_record_count_with_one_batch_per_stream() {
        let mut b = Batcher::new(limits());
        let now = Instant::now();
        let t = b.topic_index("t");
        let (mut s1, mut s2) = (Slot::default(), Slot::default());
        assert!(b.append(t, &mut s1, pos(1, 0, 10), 0, None, b"a", &[], now).is_none());
        assert!(b.append(t, &mut s2, pos(2, 7, 5), 0, None, b"b", &[], now).is_none());
        let req = b
            .append(t, &mut s1, pos(1, 1, 20), 0, None, b"c", &[], now)
            .expect("third record seals");
        assert_eq!(req.records, 3);
        assert_eq!(req.batches.len(), 2);
        assert_eq!(req.batches[0].builder.record_count(), 2);
        assert_eq!(req.batches[0].end_pos, 20);
        assert_eq!(req.batches[0].next_seq, 2);
        assert_eq!(req.batches[1].next_seq, 8);
        assert_eq!(b.pending_bytes(), 0);
        // A slot cached before the seal is not reused after it.
        assert!(add(&mut b, pos(1, 2, 30), b"d", now).is_none());
        assert!(b.append(t, &mut s1, pos(1, 3, 40), 0, None, b"e", &[], now).is_none());
        let req = b.drain_all().pop().unwrap();
        assert_eq!(req.batches.len(), 1, "both records in the stream's one batch");
        assert_eq!(req.batches[0].builder.record_count(), 2);
    }

    #[test]
    fn seals_by_age() {
        let mut b = Batcher::new(limits());
        let t0 = Instant::now();
        add(&mut b, pos(1, 0, 1), b"a", t0);
        assert!(b.due(t0 + Duration::from_millis(999), false).is_empty());
        assert_eq!(b.next_due(false), Some(t0 + Duration::from_secs(1)));
        assert_eq!(b.due(t0 + Duration::from_secs(1), false).len(), 1);
        assert!(b.next_due(false).is_none());
    }

    #[test]
    fn a_caught_up_pipeline_waits_only_the_linger() {
        let mut b = Batcher::new(limits());
        let t0 = Instant::now();
        add(&mut b, pos(1, 0, 1), b"a", t0);
        assert_eq!(b.next_due(true), Some(t0 + Duration::from_millis(100)));
        assert!(b.due(t0 + Duration::from_millis(99), true).is_empty());
        // Still busy: the linger does not apply, the batch keeps filling.
        assert!(b.due(t0 + Duration::from_millis(500), false).is_empty());
        add(&mut b, pos(1, 1, 2), b"b", t0 + Duration::from_millis(500));
        let sealed = b.due(t0 + Duration::from_millis(500), true);
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].records, 2, "aged from its oldest record");
        // A linger above max_wait never delays a batch past max_wait.
        let mut b = Batcher::new(Limits {
            linger: Duration::from_secs(5),
            ..limits()
        });
        add(&mut b, pos(1, 2, 3), b"c", t0);
        assert_eq!(b.next_due(true), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_batch_never_crosses_an_epoch() {
        let mut b = Batcher::new(Limits {
            max_records: 100,
            ..limits()
        });
        let now = Instant::now();
        let t = b.topic_index("t");
        let mut slot = Slot::default();
        b.append(t, &mut slot, pos(1, SEQ_PER_EPOCH - 1, 1), 0, None, b"a", &[], now);
        b.append(t, &mut slot, pos(1, SEQ_PER_EPOCH, 2), 0, None, b"b", &[], now);
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
