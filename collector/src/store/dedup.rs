//! Deciding, under the partition's lock, what to do with each batch of a
//! producer that has an id: append it, answer it as a duplicate, trim the
//! records already stored from its front, or refuse it (a gap in the
//! sequence, or a fenced epoch). Decisions within one group see the
//! effect of earlier batches of the same group through an overlay, which
//! is committed to the producer state only once the group is durable.

use std::borrow::Cow;
use std::collections::HashMap;

use logpost_shared::batch::{BatchBuilder, BatchError, BatchHeader, ProducerInfo, check, records_to_owned};
use logpost_shared::compression::{Codec, Compression};

use super::partition::MAX_FRAME_BYTES;
use super::producer_state::{ProducerEntry, ProducerState, SequenceCheck, classify, decidable_ahead};
use super::segment::BatchSummary;

/// What happened to one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Stored at these offsets.
    Appended(BatchSummary),
    /// Its first `skipped` records were stored already; the rest are
    /// stored at these offsets.
    Trimmed { skipped: i32, summary: BatchSummary },
    /// Every record was stored already; `offsets` when it was one of the
    /// producer's recent batches exactly. `next_seq` is the stream's next
    /// logical sequence.
    Duplicate { offsets: Option<(i64, i64)>, next_seq: i64 },
    /// Not stored.
    Refused(Refusal),
}

impl BatchOutcome {
    /// The offset after this batch's records in the log, which an
    /// `acks=all` answer waits for on the in-sync replicas: `None` for a
    /// duplicate whose first copy is not located (it is somewhere below
    /// the log end), 0 for a refused batch (nothing to wait for).
    pub fn stored_end(&self) -> Option<i64> {
        match self {
            BatchOutcome::Appended(s) | BatchOutcome::Trimmed { summary: s, .. } => Some(s.last_offset + 1),
            BatchOutcome::Duplicate { offsets, .. } => offsets.map(|(_, last)| last + 1),
            BatchOutcome::Refused(_) => Some(0),
        }
    }

    /// What an `acks=all` answer for `outcomes` waits for: the end of
    /// their records, or the whole log end `log_end` when a duplicate's
    /// first copy is not located. Waiting for the log end instead would
    /// make each request wait for the requests appended after it too.
    pub fn ack_target(outcomes: &[BatchOutcome], log_end: impl FnOnce() -> i64) -> i64 {
        outcomes
            .iter()
            .map(BatchOutcome::stored_end)
            .try_fold(0, |acc, end| end.map(|e| acc.max(e)))
            .unwrap_or_else(log_end)
    }
}

/// Why a batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "sequence gap: producer {producer_id} epoch {epoch} expected sequence {expected_seq}, batch starts at {base_seq}"
    )]
    Gap {
        producer_id: i64,
        epoch: i16,
        expected_seq: i32,
        base_seq: i32,
    },
    #[error(
        "producer {producer_id} epoch {epoch}: batch at sequence {base_seq} was sent before its predecessor was answered and arrived first; send it again after the predecessor"
    )]
    AheadOfPredecessor {
        producer_id: i64,
        epoch: i16,
        base_seq: i32,
    },
    #[error("producer {producer_id} is fenced: batch epoch {epoch} is older than the current {current_epoch}")]
    Fenced {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
}

/// The decision for one batch before offsets are assigned.
pub enum Plan<'a> {
    /// Write these bytes (the frame, or a trimmed copy) and record the
    /// producer state change.
    Write {
        bytes: Cow<'a, [u8]>,
        header: BatchHeader,
        skipped: i32,
    },
    Done(BatchOutcome),
}

/// Producer entries changed by the group being assembled.
#[derive(Default)]
pub struct Overlay {
    entries: HashMap<i64, ProducerEntry>,
}

impl Overlay {
    /// Decides for one frame of producer `header.producer`. A frame sent
    /// `ahead` (its predecessor unanswered when it left) is refused unless
    /// it can be decided without that predecessor ([`decidable_ahead`]).
    ///
    /// # Errors
    /// A frame that must be trimmed but cannot be decoded.
    pub fn plan<'a>(
        &self,
        state: &ProducerState,
        frame: &'a [u8],
        header: BatchHeader,
        ahead: bool,
    ) -> Result<Plan<'a>, BatchError> {
        let p = header.producer;
        let entry = self.entries.get(&p.producer_id).or_else(|| state.get(p.producer_id));
        if ahead && !decidable_ahead(entry, p.producer_epoch, p.base_sequence, header.records_count) {
            return Ok(Plan::Done(BatchOutcome::Refused(Refusal::AheadOfPredecessor {
                producer_id: p.producer_id,
                epoch: p.producer_epoch,
                base_seq: p.base_sequence,
            })));
        }
        Ok(
            match classify(entry, p.producer_epoch, p.base_sequence, header.records_count) {
                SequenceCheck::Append => Plan::Write {
                    bytes: Cow::Borrowed(frame),
                    header,
                    skipped: 0,
                },
                SequenceCheck::Overlap { stored, .. } => {
                    let trimmed = trim_batch(frame, stored)?;
                    let header = BatchHeader::parse(&trimmed)?;
                    Plan::Write {
                        bytes: Cow::Owned(trimmed),
                        header,
                        skipped: stored,
                    }
                }
                SequenceCheck::Duplicate { known, last_seq, epoch } => Plan::Done(BatchOutcome::Duplicate {
                    offsets: known.map(|b| (b.base_offset, b.last_offset)),
                    next_seq: ((i64::from(epoch.max(0))) << 31) + i64::from(last_seq) + 1,
                }),
                SequenceCheck::Gap { expected_seq, epoch } => Plan::Done(BatchOutcome::Refused(Refusal::Gap {
                    producer_id: p.producer_id,
                    epoch,
                    expected_seq,
                    base_seq: p.base_sequence,
                })),
                SequenceCheck::Fenced { current_epoch } => Plan::Done(BatchOutcome::Refused(Refusal::Fenced {
                    producer_id: p.producer_id,
                    epoch: p.producer_epoch,
                    current_epoch,
                })),
            },
        )
    }

    /// Records a planned write at `base_offset` in the overlay.
    pub fn record(
        &mut self,
        state: &ProducerState,
        header: &BatchHeader,
        base_offset: i64,
        now_ms: i64,
        cursor: Option<String>,
    ) {
        let p = header.producer;
        if p.producer_id < 0 {
            return;
        }
        let entry = self.entries.entry(p.producer_id).or_insert_with(|| {
            state
                .get(p.producer_id)
                .cloned()
                .unwrap_or_else(|| ProducerEntry::new(p.producer_id, p.producer_epoch))
        });
        entry.apply(
            p.producer_epoch,
            p.base_sequence,
            header.records_count,
            base_offset,
            now_ms,
            cursor,
        );
    }

    /// Makes the group's changes part of the producer state.
    pub fn commit(self, state: &mut ProducerState) {
        for (_, e) in self.entries {
            state.put(e);
        }
    }
}

/// A copy of `frame` without its first `skip` records (same producer,
/// sequence advanced, same codec). Only for the rare overlapping retry.
///
/// # Errors
/// The frame cannot be decoded or re-encoded.
pub fn trim_batch(frame: &[u8], skip: i32) -> Result<Vec<u8>, BatchError> {
    let header = check(frame)?;
    let records = records_to_owned(frame, MAX_FRAME_BYTES)?;
    let mut b = BatchBuilder::new();
    b.set_producer(ProducerInfo {
        producer_id: header.producer.producer_id,
        producer_epoch: header.producer.producer_epoch,
        base_sequence: super::producer_state::sequence_after(header.producer.base_sequence, i64::from(skip)),
    });
    for r in records.iter().skip(usize::try_from(skip).unwrap_or(usize::MAX)) {
        b.append_record(r);
    }
    b.finish(header.codec().map_or(Compression::None, Codec::fastest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retried batch that overlaps what is stored is re-encoded without
    /// its first records, in the codec its producer chose.
    #[test]
    fn trimmed_batches_keep_their_codec_and_the_records_after_the_skip() {
        for compression in [
            Compression::None,
            Compression::Gzip { level: 6 },
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut b = BatchBuilder::new();
            b.set_producer(ProducerInfo {
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: 100,
            });
            for i in 0..5 {
                b.append(1_700_000_000_000 + i, None, Some(format!("line {i}").as_bytes()), &[]);
            }
            let frame = b.finish(compression).unwrap();
            let trimmed = trim_batch(&frame, 2).unwrap();
            let header = check(&trimmed).unwrap();
            assert_eq!(header.codec(), Some(compression.codec()), "{compression:?}");
            assert_eq!(header.producer.base_sequence, 102);
            assert_eq!(header.producer.producer_epoch, 3);
            let values: Vec<Vec<u8>> = records_to_owned(&trimmed, 1 << 20)
                .unwrap()
                .into_iter()
                .map(|r| r.value.unwrap())
                .collect();
            assert_eq!(values, [b"line 2".to_vec(), b"line 3".to_vec(), b"line 4".to_vec()]);
        }
    }

    /// Issue 28: trimming a batch that wraps past 2^31 - 1 continues at 0.
    #[test]
    fn issue_28_trimmed_sequences_wrap() {
        let mut b = BatchBuilder::new();
        b.set_producer(ProducerInfo {
            producer_id: 42,
            producer_epoch: 0,
            base_sequence: i32::MAX - 1,
        });
        for i in 0..5 {
            b.append(1_700_000_000_000 + i, None, Some(b"x"), &[]);
        }
        let frame = b.finish(Compression::None).unwrap();
        let trimmed = trim_batch(&frame, 3).unwrap();
        assert_eq!(
            check(&trimmed).unwrap().producer.base_sequence,
            1,
            "MAX-1, MAX, 0 skipped"
        );
    }

    #[test]
    fn acks_wait_for_the_requests_own_records_unless_a_duplicate_is_not_located() {
        let appended = |base, last| {
            BatchOutcome::Appended(super::super::BatchSummary {
                base_offset: base,
                last_offset: last,
                max_timestamp: 0,
            })
        };
        let log_end = || 1_000;
        assert_eq!(
            BatchOutcome::ack_target(&[appended(10, 19), appended(20, 24)], log_end),
            25
        );
        let located = BatchOutcome::Duplicate {
            offsets: Some((3, 4)),
            next_seq: 0,
        };
        assert_eq!(BatchOutcome::ack_target(&[located, appended(10, 19)], log_end), 20);
        let unknown = BatchOutcome::Duplicate {
            offsets: None,
            next_seq: 0,
        };
        assert_eq!(BatchOutcome::ack_target(&[appended(10, 19), unknown], log_end), 1_000);
        assert_eq!(BatchOutcome::ack_target(&[], log_end), 0);
    }
}
