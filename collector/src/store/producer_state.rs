//! Per-stream state for deduplication, after Kafka's producer state: for
//! each producer id (one tailed file, or one idempotent Kafka producer) its
//! epoch, the sequence number of its last stored record, and the offsets of
//! its last few batches, so that a retried batch can be answered with the
//! offsets it got the first time.
//!
//! The state changes only with appends, under the partition's lock, so it
//! is always consistent with the log. It is snapshotted at checkpoints
//! (`<offset>.snapshot`: the state after every batch below that offset) and
//! rebuilt after a crash by replaying the log from the snapshot. It is kept
//! apart from segments, so deleting segments for retention does not forget
//! a stream; a producer idle for longer than the expiry is forgotten.
//!
//! Sequences: within an epoch, a batch must start right after the last
//! stored record. A higher epoch starts again at sequence 0 (Kafka's rule,
//! and how logpost's agent extends sequences past 2^31). Logical sequence
//! numbers across epochs are `epoch << 31 | sequence`.
//!
//! Within an epoch, sequences wrap as Kafka's do: the record after
//! 2^31 - 1 has sequence 0 (`DefaultRecordBatch.incrementSequence`), so a
//! long-lived idempotent producer goes on from 0 in the same epoch, and a
//! batch may itself wrap. Sequences are therefore compared modulo 2^31
//! (serial-number arithmetic, RFC 1982): a batch starting up to
//! [`SEQUENCE_WINDOW`] records before the next expected one is a retry (a
//! duplicate or an overlap), anything else that is not the next one a gap.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Batches remembered per producer for answering retries (as Kafka's 5).
pub const RECENT_BATCHES: usize = 5;
/// Earlier contents' last cursors remembered per producer: enough for a
/// file copytruncated several times while its copies wait to be read.
pub const EARLIER_CONTENTS: usize = 16;

/// A cursor `<position> <head length> <head CRC-32C>`: the position and
/// the content head.
pub fn parse_cursor(cursor: &str) -> Option<(u64, (u32, u32))> {
    let mut it = cursor.split_ascii_whitespace();
    let pos = it.next()?.parse().ok()?;
    let len = it.next()?.parse().ok()?;
    let crc = it.next()?.parse().ok()?;
    Some((pos, (len, crc)))
}
/// Sequences live modulo 2^31: the record after `i32::MAX` is 0.
const SEQUENCE_MODULUS: i64 = 1 << 31;
/// How far before the next expected sequence a batch may start and still be
/// read as a retry of stored records rather than a gap: half the sequence
/// space, so that "behind" and "ahead" can never be confused (RFC 1982).
pub const SEQUENCE_WINDOW: i64 = SEQUENCE_MODULUS / 2;

/// The sequence `n` records after `seq`, wrapping past `i32::MAX` to 0.
pub fn sequence_after(seq: i32, n: i64) -> i32 {
    let next = (i64::from(seq) + n).rem_euclid(SEQUENCE_MODULUS);
    i32::try_from(next).unwrap_or(0)
}

/// How many records `to` lies after `from`, modulo 2^31 (0 to 2^31 - 1).
fn sequence_distance(from: i32, to: i32) -> i64 {
    (i64::from(to) - i64::from(from)).rem_euclid(SEQUENCE_MODULUS)
}
const SNAPSHOT_VERSION: u32 = 1;

/// Offsets and sequences of one stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// What the store knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    /// Sequence of the last stored record in `epoch`.
    pub last_seq: i32,
    pub last_offset: i64,
    /// Wall-clock ms of the last append, for expiry.
    pub last_append_ms: i64,
    pub recent: VecDeque<BatchMeta>,
    /// What the producer said it had reached with its last batch (logpost's
    /// agent: the file position and content fingerprint), handed back when
    /// it asks where to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// The last cursors of the contents this producer sent before the
    /// current one (newest last, at most [`EARLIER_CONTENTS`]): after a
    /// copytruncate the stream goes on in new content, and a copy of the
    /// old content found later must resume where the old one was stored
    /// to, which the last cursor alone no longer says.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub earlier_cursors: VecDeque<String>,
}

impl ProducerEntry {
    /// The logical sequence of the last stored record.
    pub fn logical_last_seq(&self) -> i64 {
        (i64::from(self.epoch.max(0)) << 31) | i64::from(self.last_seq.max(0))
    }

    /// A producer's first entry.
    pub fn new(producer_id: i64, epoch: i16) -> Self {
        ProducerEntry {
            producer_id,
            epoch,
            last_seq: -1,
            last_offset: -1,
            last_append_ms: 0,
            recent: VecDeque::new(),
            cursor: None,
            earlier_cursors: VecDeque::new(),
        }
    }

    /// Every cursor known of this producer: the current one, then the
    /// earlier contents' last ones, newest first.
    pub fn cursors(&self) -> impl Iterator<Item = &str> {
        self.cursor
            .as_deref()
            .into_iter()
            .chain(self.earlier_cursors.iter().rev().map(String::as_str))
    }

    /// Takes `cursor` as the newest; the one it replaces is remembered if
    /// it was the end of another content (not the same content, nor a
    /// short content's head merely lengthening as the file grew).
    fn advance_cursor(&mut self, cursor: String) {
        if let Some(previous) = self.cursor.take() {
            let old = parse_cursor(&previous);
            let new = parse_cursor(&cursor);
            let another_content = match (old, new) {
                (Some((old_pos, old_head)), Some((_, new_head))) => {
                    old_head != new_head && !(new_head.0 > old_head.0 && old_pos <= u64::from(old_head.0))
                }
                _ => false,
            };
            if another_content {
                self.earlier_cursors
                    .retain(|c| parse_cursor(c).is_none_or(|(_, h)| Some(h) != old.map(|o| o.1)));
                if self.earlier_cursors.len() == EARLIER_CONTENTS {
                    self.earlier_cursors.pop_front();
                }
                self.earlier_cursors.push_back(previous);
            }
        }
        self.cursor = Some(cursor);
    }

    /// Records an appended batch of `count` records starting at `base_seq`.
    pub fn apply(
        &mut self,
        epoch: i16,
        base_seq: i32,
        count: i32,
        base_offset: i64,
        now_ms: i64,
        cursor: Option<String>,
    ) {
        if count <= 0 {
            return;
        }
        let last_seq = sequence_after(base_seq, i64::from(count) - 1);
        let meta = BatchMeta {
            first_seq: base_seq,
            last_seq,
            base_offset,
            last_offset: base_offset + i64::from(count) - 1,
        };
        if epoch != self.epoch {
            self.recent.clear();
        }
        self.epoch = epoch;
        self.last_seq = last_seq;
        self.last_offset = meta.last_offset;
        self.last_append_ms = now_ms;
        if self.recent.len() == RECENT_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back(meta);
        if let Some(cursor) = cursor {
            self.advance_cursor(cursor);
        }
    }
}

/// How a batch relates to what is stored for its producer (`entry`).
pub fn classify(entry: Option<&ProducerEntry>, epoch: i16, base_seq: i32, count: i32) -> SequenceCheck {
    let Some(p) = entry else { return SequenceCheck::Append };
    if epoch < p.epoch {
        return SequenceCheck::Fenced { current_epoch: p.epoch };
    }
    if epoch > p.epoch {
        return if base_seq == 0 {
            SequenceCheck::Append
        } else {
            SequenceCheck::Gap { expected_seq: 0, epoch }
        };
    }
    // `last_seq` is -1 only for an entry with nothing stored yet: then 0 is next.
    let expected = if p.last_seq < 0 {
        0
    } else {
        sequence_after(p.last_seq, 1)
    };
    if base_seq == expected {
        return SequenceCheck::Append;
    }
    // Records between the batch's first and the next expected one: those
    // of the batch that are stored already, if it starts behind.
    let behind = sequence_distance(base_seq, expected);
    if base_seq < 0 || behind > SEQUENCE_WINDOW {
        return SequenceCheck::Gap {
            expected_seq: expected,
            epoch: p.epoch,
        };
    }
    if behind >= i64::from(count) {
        let last_in_batch = sequence_after(base_seq, i64::from(count) - 1);
        let known = p
            .recent
            .iter()
            .find(|b| b.first_seq == base_seq && b.last_seq == last_in_batch)
            .copied();
        SequenceCheck::Duplicate {
            known,
            last_seq: p.last_seq,
            epoch: p.epoch,
        }
    } else {
        SequenceCheck::Overlap {
            stored: i32::try_from(behind).unwrap_or(i32::MAX),
            last_seq: p.last_seq,
            epoch: p.epoch,
        }
    }
}

/// Whether a batch sent while its producer's previous request was still
/// unanswered (an agent with several requests in flight) can be decided
/// now. It can when it continues what is stored, is stored already, or is
/// refused either way (fenced). A gap, or a batch that would start an
/// unknown producer or a new epoch anywhere but at the stream's very first
/// record, may have its predecessor still on the way: appending it first
/// would make the predecessor look like a duplicate.
pub fn decidable_ahead(entry: Option<&ProducerEntry>, epoch: i16, base_seq: i32, count: i32) -> bool {
    match classify(entry, epoch, base_seq, count) {
        SequenceCheck::Append => match entry {
            Some(p) => p.epoch == epoch,
            None => epoch == 0 && base_seq == 0,
        },
        SequenceCheck::Duplicate { .. } | SequenceCheck::Overlap { .. } | SequenceCheck::Fenced { .. } => true,
        SequenceCheck::Gap { .. } => false,
    }
}

/// How a new batch relates to what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The next batch in sequence, a new epoch starting at 0, or an
    /// unknown producer: append it.
    Append,
    /// Every record is stored already; `known` holds the offsets if it is
    /// one of the recent batches exactly.
    Duplicate {
        known: Option<BatchMeta>,
        last_seq: i32,
        epoch: i16,
    },
    /// The first `stored` records are stored already, the rest are new.
    Overlap { stored: i32, last_seq: i32, epoch: i16 },
    /// Records are missing between what is stored and this batch.
    Gap { expected_seq: i32, epoch: i16 },
    /// The batch's epoch is older than the producer's.
    Fenced { current_epoch: i16 },
}

/// Producer state of one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    producers: Vec<ProducerEntry>,
}

impl ProducerState {
    /// No producers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The entry of `producer_id`.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer's entry.
    pub fn iter(&self) -> impl Iterator<Item = &ProducerEntry> {
        self.producers.values()
    }

    /// Classifies a batch of `count` records from `producer_id` at `epoch`
    /// starting at `base_seq`.
    pub fn check(&self, producer_id: i64, epoch: i16, base_seq: i32, count: i32) -> SequenceCheck {
        classify(self.producers.get(&producer_id), epoch, base_seq, count)
    }

    /// Records an appended batch.
    pub fn update(&mut self, producer_id: i64, epoch: i16, base_seq: i32, count: i32, base_offset: i64, now_ms: i64) {
        self.update_with_cursor(producer_id, epoch, base_seq, count, base_offset, now_ms, None);
    }

    /// Records an appended batch and the cursor its producer sent with it.
    #[allow(clippy::too_many_arguments)]
    pub fn update_with_cursor(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_seq: i32,
        count: i32,
        base_offset: i64,
        now_ms: i64,
        cursor: Option<String>,
    ) {
        if producer_id < 0 || count <= 0 {
            return;
        }
        self.producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(producer_id, epoch))
            .apply(epoch, base_seq, count, base_offset, now_ms, cursor);
    }

    /// Replaces (or adds) a producer's entry.
    pub fn put(&mut self, entry: ProducerEntry) {
        self.producers.insert(entry.producer_id, entry);
    }

    /// Forgets producers idle since before `cutoff_ms`; returns how many.
    pub fn expire(&mut self, cutoff_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, p| p.last_append_ms >= cutoff_ms);
        before - self.producers.len()
    }

    /// Serializes the state for a snapshot file.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut producers: Vec<ProducerEntry> = self.producers.values().cloned().collect();
        producers.sort_by_key(|p| p.producer_id);
        serde_json::to_vec(&Snapshot {
            version: SNAPSHOT_VERSION,
            producers,
        })
        .unwrap_or_default()
    }

    /// Reads a snapshot file's contents.
    ///
    /// # Errors
    /// The bytes are not a snapshot of a supported version.
    pub fn from_snapshot(bytes: &[u8]) -> Result<ProducerState, String> {
        let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(format!("unsupported snapshot version {}", snap.version));
        }
        Ok(ProducerState {
            producers: snap.producers.into_iter().map(|p| (p.producer_id, p)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_contents_keep_their_last_cursor() {
        let mut e = ProducerEntry::new(1, 0);
        let mut seq = 0;
        let mut send = |e: &mut ProducerEntry, cursor: &str| {
            e.apply(0, seq, 1, i64::from(seq), 0, Some(cursor.to_owned()));
            seq += 1;
        };
        // A short content's head lengthens as the file grows: one content.
        send(&mut e, "40 40 1");
        send(&mut e, "90 90 2");
        send(&mut e, "1500 1024 3");
        send(&mut e, "3000 1024 3");
        assert!(e.earlier_cursors.is_empty(), "{:?}", e.earlier_cursors);
        // Truncated, new content: the old one's end is remembered.
        send(&mut e, "500 1024 4");
        send(&mut e, "800 1024 4");
        assert_eq!(e.cursors().collect::<Vec<_>>(), ["800 1024 4", "3000 1024 3"]);
        // Back to a content already remembered (a copy continuing it):
        // one entry per content, the newest position.
        send(&mut e, "3500 1024 3");
        send(&mut e, "100 1024 5");
        assert_eq!(
            e.cursors().collect::<Vec<_>>(),
            ["100 1024 5", "3500 1024 3", "800 1024 4"]
        );
        // Bounded.
        for i in 0..20u32 {
            send(&mut e, &format!("10 1024 {}", 100 + i));
        }
        assert_eq!(e.earlier_cursors.len(), EARLIER_CONTENTS);
        assert_eq!(e.cursor.as_deref(), Some("10 1024 119"));
    }

    #[test]
    fn sequences_classify() {
        let mut s = ProducerState::new();
        assert_eq!(s.check(7, 0, 0, 10), SequenceCheck::Append);
        s.update(7, 0, 0, 10, 100, 1);
        assert_eq!(s.check(7, 0, 10, 5), SequenceCheck::Append);
        let dup = s.check(7, 0, 0, 10);
        assert!(matches!(
            dup,
            SequenceCheck::Duplicate {
                known: Some(BatchMeta { base_offset: 100, .. }),
                last_seq: 9,
                ..
            }
        ));
        assert!(matches!(
            s.check(7, 0, 3, 4),
            SequenceCheck::Duplicate { known: None, .. }
        ));
        assert_eq!(
            s.check(7, 0, 5, 10),
            SequenceCheck::Overlap {
                stored: 5,
                last_seq: 9,
                epoch: 0
            }
        );
        assert_eq!(
            s.check(7, 0, 12, 1),
            SequenceCheck::Gap {
                expected_seq: 10,
                epoch: 0
            }
        );
        assert_eq!(s.check(7, 1, 0, 1), SequenceCheck::Append, "a new epoch starts at 0");
        assert!(matches!(
            s.check(7, 1, 4, 1),
            SequenceCheck::Gap { expected_seq: 0, .. }
        ));
        s.update(7, 1, 0, 1, 200, 2);
        assert_eq!(s.check(7, 0, 10, 1), SequenceCheck::Fenced { current_epoch: 1 });
        assert_eq!(s.get(7).unwrap().logical_last_seq(), 1 << 31);
    }

    /// Issue 28: Kafka wraps a producer's sequence from 2^31 - 1 to 0 in
    /// the same epoch; the batch after the wrap is the next one, not a
    /// duplicate of the first batch ever sent.
    #[test]
    fn issue_28_sequences_wrap_past_i32_max() {
        let mut s = ProducerState::new();
        s.update(7, 0, i32::MAX - 2, 3, 100, 1);
        assert_eq!(s.get(7).unwrap().last_seq, i32::MAX);
        assert_eq!(
            s.check(7, 0, 0, 4),
            SequenceCheck::Append,
            "the sequence after 2^31-1 is 0"
        );
        assert!(matches!(
            s.check(7, 0, i32::MAX - 2, 3),
            SequenceCheck::Duplicate {
                known: Some(BatchMeta { base_offset: 100, .. }),
                ..
            }
        ));
        assert!(matches!(
            s.check(7, 0, 1, 1),
            SequenceCheck::Gap { expected_seq: 0, .. }
        ));
        // A batch that itself wraps: 2^31-1, 0, 1.
        let mut w = ProducerState::new();
        w.update(8, 0, i32::MAX - 5, 5, 0, 1);
        assert_eq!(w.check(8, 0, i32::MAX, 3), SequenceCheck::Append);
        w.update(8, 0, i32::MAX, 3, 5, 2);
        let e = w.get(8).unwrap();
        assert_eq!(e.last_seq, 1, "2^31-1, 0, 1");
        assert_eq!(e.last_offset, 7);
        assert_eq!(w.check(8, 0, 2, 1), SequenceCheck::Append);
        assert!(matches!(
            w.check(8, 0, i32::MAX, 3),
            SequenceCheck::Duplicate {
                known: Some(BatchMeta { base_offset: 5, .. }),
                ..
            }
        ));
        // A retry that overlaps the wrap: 2^31-2, 2^31-1, 0, 1 are stored, 2 is new.
        assert_eq!(
            w.check(8, 0, i32::MAX - 1, 5),
            SequenceCheck::Overlap {
                stored: 4,
                last_seq: 1,
                epoch: 0
            }
        );
        // Far behind (more than half the sequence space) is a gap, not a retry.
        assert!(matches!(
            w.check(8, 0, 1 << 30, 1),
            SequenceCheck::Gap { expected_seq: 2, .. }
        ));
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn snapshot_round_trip_and_expiry() {
        let mut s = ProducerState::new();
        for pid in 0..10 {
            s.update(pid, 0, 0, 3, pid * 10, pid);
        }
        let back = ProducerState::from_snapshot(&s.to_snapshot()).unwrap();
        assert_eq!(back, s);
        assert!(ProducerState::from_snapshot(b"{\"version\":9,\"producers\":[]}").is_err());
        assert_eq!(s.expire(5), 5);
        assert_eq!(s.len(), 5);
    }
}
