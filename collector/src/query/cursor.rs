//! One partition's records in offset order, filtered, decoded one batch at
//! a time: the unit that `exec` merges across partitions.
//!
//! Records that match are copied out of the batch (so the batch buffer can
//! be reused); those that don't are never copied.

use std::collections::VecDeque;
use std::sync::Arc;

use logpost_shared::batch::{BatchError, BatchHeader, RecordView, check, stored_records_section};

use super::prefilter::Prefilter;
use super::source::ahead::Ahead;
use crate::store::PartitionView;
use crate::store::partition::MAX_FRAME_BYTES;
use crate::store::read::seek_position;
use crate::store::scan::{ScanError, SegmentScanner};

/// A record copied out of storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub partition: u32,
    pub offset: i64,
    /// The batch's producer id: the stream (tailed file) it came from; -1 if none.
    pub producer_id: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl StoredRecord {
    /// Copies a record out of its batch.
    pub fn from_view(partition: u32, offset: i64, producer_id: i64, timestamp_ms: i64, r: &RecordView<'_>) -> Self {
        StoredRecord {
            partition,
            offset,
            producer_id,
            timestamp_ms,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r
                .headers
                .iter()
                .map(|h| (String::from_utf8_lossy(h.key).into_owned(), h.value.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}

/// Why reading a partition failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("partition {partition}: segment {base_offset}: {source}")]
    Scan {
        partition: u32,
        base_offset: i64,
        #[source]
        source: ScanError,
    },
    #[error("partition {partition}: batch at offset {offset}: {source}")]
    Batch {
        partition: u32,
        offset: i64,
        #[source]
        source: BatchError,
    },
    #[error("partition {partition}: looking up where the time range starts: {source}")]
    Seek {
        partition: u32,
        #[source]
        source: crate::store::read::ReadError,
    },
}

/// Decides which records a cursor yields.
pub trait RecordFilter {
    /// Whether a batch whose records lie within these bounds can hold a match.
    fn may_match_batch(&self, _base_timestamp: i64, _max_timestamp: i64) -> bool {
        true
    }
    /// Whether one record matches.
    fn matches(&self, timestamp_ms: i64, record: &RecordView<'_>) -> bool;
    /// What finds the records that may match in a batch without decoding
    /// the others; `None`: every record is looked at.
    fn prefilter(&self) -> Option<&Prefilter> {
        None
    }
    /// Whether a partition is read at all (a cluster node reads only the
    /// partitions it was asked for).
    fn wants_partition(&self, _topic: &str, _partition: u32) -> bool {
        true
    }
}

/// Matching records of one partition, from an offset, in offset order.
pub struct PartitionCursor<F> {
    partition: u32,
    filter: Arc<F>,
    frames: FrameReader,
    out: Gathered,
    /// Helpers the scan offers for inflating the next frames.
    ahead: Option<Ahead>,
    /// Whether they are used: decided once [`DECIDE_AFTER_BYTES`] were
    /// read, by how many of the records read matched.
    helped: bool,
    /// A read error met ahead of the frames in `ahead`: returned once
    /// they are consumed, so that records come up to the same point as
    /// without helpers.
    read_error: Option<ReadError>,
    scratch: Vec<u8>,
    max_uncompressed: usize,
}

/// What a cursor's batches yielded so far.
struct Gathered {
    /// Matches not yet taken, in offset order.
    pending: VecDeque<StoredRecord>,
    /// Records below this are not yielded (the first batch read may
    /// start before the cursor's offset).
    next_offset: i64,
    records_read: u64,
    records_matched: u64,
}

/// A partition's frames in offset order, from an offset, with their
/// headers checked, skipping batches the filter rules out.
struct FrameReader {
    partition: u32,
    view: Arc<PartitionView>,
    segment: usize,
    scanner: Option<SegmentScanner>,
    /// Offset after the last frame read (or where reading starts).
    offset: i64,
    /// Bytes of the frames returned.
    bytes_read: u64,
    exhausted: bool,
}

/// Stored bytes a cursor reads on its own thread before it decides
/// whether the scan's helpers pay. (Tests decide after one batch.)
#[cfg(not(test))]
const DECIDE_AFTER_BYTES: u64 = 4 << 20;
#[cfg(test)]
const DECIDE_AFTER_BYTES: u64 = 1;

/// Helpers pay when at most one record in this many matches: else
/// rendering and sending the matches bounds the scan, on its own thread,
/// and handing batches to helpers only adds to the CPU it competes for.
const HELPED_MAX_MATCH_RATIO: u64 = 4;

impl FrameReader {
    /// Moves to the next frame whose batch may match and returns its
    /// header ([`frame`](Self::frame) has its bytes); `None` at the end of
    /// the view.
    fn next<F: RecordFilter>(&mut self, filter: &F) -> Result<Option<BatchHeader>, ReadError> {
        if self.exhausted {
            return Ok(None);
        }
        loop {
            let Some(seg) = self.view.segments.get(self.segment) else {
                self.exhausted = true;
                return Ok(None);
            };
            let from = self.offset;
            let scanner = self.scanner.get_or_insert_with(|| {
                let start = if seg.base_offset <= from {
                    seek_position(seg, from)
                } else {
                    0
                };
                SegmentScanner::new(Arc::clone(&seg.file), start, seg.len, MAX_FRAME_BYTES)
            });
            // Checked here, returned below: the borrow of the scanner
            // must end before the next segment is taken.
            let header = match scanner.next_frame() {
                Ok(Some((_, frame))) => check(frame).map_err(|source| ReadError::Batch {
                    partition: self.partition,
                    offset: from,
                    source,
                })?,
                Ok(None) => {
                    self.segment += 1;
                    self.scanner = None;
                    continue;
                }
                Err(source) => {
                    self.exhausted = true;
                    return Err(ReadError::Scan {
                        partition: self.partition,
                        base_offset: seg.base_offset,
                        source,
                    });
                }
            };
            if header.last_offset() < self.offset {
                continue;
            }
            self.offset = header.last_offset() + 1;
            if !filter.may_match_batch(header.base_timestamp, header.max_timestamp) {
                continue;
            }
            self.bytes_read += header.frame_len() as u64;
            return Ok(Some(header));
        }
    }

    /// The position and bytes of the frame [`next`](Self::next) moved to.
    fn frame(&self) -> (u64, &[u8]) {
        self.scanner
            .as_ref()
            .and_then(SegmentScanner::last_frame)
            .unwrap_or_default()
    }
}

impl<F: RecordFilter> PartitionCursor<F> {
    /// A cursor over `view` starting at `from_offset`.
    pub fn new(
        partition: u32,
        view: Arc<PartitionView>,
        from_offset: i64,
        filter: Arc<F>,
        max_uncompressed: usize,
    ) -> Self {
        // The segment holding `from_offset`: the last whose base is at or below it.
        let segment = view
            .segments
            .iter()
            .rposition(|s| s.base_offset <= from_offset)
            .unwrap_or(0);
        Self {
            partition,
            filter,
            frames: FrameReader {
                partition,
                view,
                segment,
                scanner: None,
                offset: from_offset,
                bytes_read: 0,
                exhausted: false,
            },
            out: Gathered {
                pending: VecDeque::new(),
                next_offset: from_offset,
                records_read: 0,
                records_matched: 0,
            },
            ahead: None,
            helped: false,
            read_error: None,
            scratch: Vec::new(),
            max_uncompressed,
        }
    }

    /// Offers `ahead`'s helpers: after its first [`DECIDE_AFTER_BYTES`],
    /// a selective cursor inflates its next batches on them instead of on
    /// the calling thread. The records yielded are the same.
    #[must_use]
    pub(crate) fn with_ahead(mut self, ahead: Option<Ahead>) -> Self {
        self.ahead = ahead;
        self
    }

    /// Whether the helpers offered are in use.
    pub fn is_helped(&self) -> bool {
        self.helped
    }

    /// Stored bytes from the cursor's first segment to the end of the
    /// view: about what reading it all costs.
    pub fn bytes_left(&self) -> u64 {
        self.frames
            .view
            .segments
            .get(self.frames.segment..)
            .map_or(0, |segs| segs.iter().map(|s| s.len).sum())
    }

    /// The next matching record, or `None` at the end of the view.
    ///
    /// # Errors
    /// An i/o error or a corrupt batch.
    pub fn next_record(&mut self) -> Result<Option<StoredRecord>, ReadError> {
        loop {
            if let Some(r) = self.out.pending.pop_front() {
                return Ok(Some(r));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Peeks at the next matching record.
    ///
    /// # Errors
    /// An i/o error or a corrupt batch.
    pub fn peek(&mut self) -> Result<Option<&StoredRecord>, ReadError> {
        while self.out.pending.is_empty() {
            if !self.fill()? {
                return Ok(None);
            }
        }
        Ok(self.out.pending.front())
    }

    /// Decodes batches into `pending` until one yields a record; false at the end.
    fn fill(&mut self) -> Result<bool, ReadError> {
        loop {
            if self.helped {
                return self.fill_ahead();
            }
            let Some(header) = self.frames.next(&*self.filter)? else {
                return Ok(false);
            };
            let (_, frame) = self.frames.frame();
            let records = stored_records_section(frame, &header, self.max_uncompressed, &mut self.scratch)
                .map_err(|source| corrupt(self.partition, &header, source))?;
            self.out.take(&*self.filter, self.partition, &header, records)?;
            if self.ahead.is_some() && self.frames.bytes_read >= DECIDE_AFTER_BYTES {
                self.helped = self.out.records_matched * HELPED_MAX_MATCH_RATIO <= self.out.records_read;
                if !self.helped {
                    self.ahead = None;
                }
            }
            if !self.out.pending.is_empty() {
                return Ok(true);
            }
        }
    }

    /// As [`fill`](Self::fill), with the helpers inflating: frames are read
    /// until the queue is full, then taken back oldest first.
    fn fill_ahead(&mut self) -> Result<bool, ReadError> {
        let Some(mut ahead) = self.ahead.take() else {
            return Ok(false);
        };
        let result = loop {
            while self.read_error.is_none() && !ahead.is_full() {
                match self.frames.next(&*self.filter) {
                    Ok(Some(header)) => {
                        let (pos, frame) = self.frames.frame();
                        ahead.submit(pos, header, frame);
                    }
                    Ok(None) => break,
                    Err(e) => self.read_error = Some(e),
                }
            }
            let Some((_, header, records)) = ahead.next() else {
                break self.read_error.take().map_or(Ok(false), Err);
            };
            let taken = records
                .map_err(|source| corrupt(self.partition, &header, source))
                .and_then(|records| self.out.take(&*self.filter, self.partition, &header, records));
            match taken {
                Ok(()) if !self.out.pending.is_empty() => break Ok(true),
                Ok(()) => {}
                Err(e) => break Err(e),
            }
        };
        self.ahead = Some(ahead);
        result
    }
}

impl Gathered {
    /// Gathers the matches of one batch's inflated `records`.
    fn take<F: RecordFilter>(
        &mut self,
        filter: &F,
        partition: u32,
        header: &BatchHeader,
        records: &[u8],
    ) -> Result<(), ReadError> {
        let no_prefilter = Prefilter::default();
        let prefilter = filter.prefilter().unwrap_or(&no_prefilter);
        let (next_offset, pending) = (self.next_offset, &mut self.pending);
        let before = pending.len();
        // The closure never breaks: the whole batch is gathered.
        let _ = prefilter
            .for_each_candidate(records, header.records_count, |record| {
                let offset = header.base_offset + i64::from(record.offset_delta);
                let timestamp_ms = header.base_timestamp.wrapping_add(record.timestamp_delta);
                if offset >= next_offset && filter.matches(timestamp_ms, &record) {
                    pending.push_back(StoredRecord::from_view(
                        partition,
                        offset,
                        header.producer.producer_id,
                        timestamp_ms,
                        &record,
                    ));
                }
                std::ops::ControlFlow::Continue(())
            })
            .map_err(|source| corrupt(partition, header, source))?;
        self.records_matched += (self.pending.len() - before) as u64;
        self.records_read += u64::try_from(header.records_count).unwrap_or(0);
        self.next_offset = header.last_offset() + 1;
        Ok(())
    }
}

fn corrupt(partition: u32, header: &BatchHeader, source: BatchError) -> ReadError {
    ReadError::Batch {
        partition,
        offset: header.base_offset,
        source,
    }
}
