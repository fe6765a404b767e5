//! One partition's records in offset order, filtered, decoded one batch at
//! a time: the unit that `exec` merges across partitions.
//!
//! Records that match are copied out of the batch (so the batch buffer can
//! be reused); those that don't are never copied.

use std::collections::VecDeque;
use std::sync::Arc;

use logpost_shared::batch::{BatchError, RecordView, check, stored_records_section};

use super::prefilter::Prefilter;
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
}

/// Matching records of one partition, from an offset, in offset order.
pub struct PartitionCursor<F> {
    partition: u32,
    view: Arc<PartitionView>,
    filter: Arc<F>,
    next_offset: i64,
    segment: usize,
    scanner: Option<SegmentScanner>,
    pending: VecDeque<StoredRecord>,
    scratch: Vec<u8>,
    max_uncompressed: usize,
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
            view,
            filter,
            next_offset: from_offset,
            segment,
            scanner: None,
            pending: VecDeque::new(),
            scratch: Vec::new(),
            max_uncompressed,
        }
    }

    /// The next matching record, or `None` at the end of the view.
    ///
    /// # Errors
    /// An i/o error or a corrupt batch.
    pub fn next_record(&mut self) -> Result<Option<StoredRecord>, ReadError> {
        loop {
            if let Some(r) = self.pending.pop_front() {
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
        while self.pending.is_empty() {
            if !self.fill()? {
                return Ok(None);
            }
        }
        Ok(self.pending.front())
    }

    /// Decodes the next batch into `pending`; false at the end.
    fn fill(&mut self) -> Result<bool, ReadError> {
        let no_prefilter = Prefilter::default();
        loop {
            let Some(seg) = self.view.segments.get(self.segment) else {
                return Ok(false);
            };
            let from = self.next_offset;
            let scanner = self.scanner.get_or_insert_with(|| {
                let start = if seg.base_offset <= from {
                    seek_position(seg, from)
                } else {
                    0
                };
                SegmentScanner::new(Arc::clone(&seg.file), start, seg.len, MAX_FRAME_BYTES)
            });
            let frame = match scanner.next_frame() {
                Ok(Some((_, frame))) => frame,
                Ok(None) => {
                    self.segment += 1;
                    self.scanner = None;
                    continue;
                }
                Err(source) => {
                    return Err(ReadError::Scan {
                        partition: self.partition,
                        base_offset: seg.base_offset,
                        source,
                    });
                }
            };
            let partition = self.partition;
            let header = check(frame).map_err(|source| ReadError::Batch {
                partition,
                offset: self.next_offset,
                source,
            })?;
            if header.last_offset() < self.next_offset {
                continue;
            }
            if !self.filter.may_match_batch(header.base_timestamp, header.max_timestamp) {
                self.next_offset = header.last_offset() + 1;
                continue;
            }
            let corrupt = |source| ReadError::Batch {
                partition,
                offset: header.base_offset,
                source,
            };
            let records =
                stored_records_section(frame, &header, self.max_uncompressed, &mut self.scratch).map_err(corrupt)?;
            let prefilter = self.filter.prefilter().unwrap_or(&no_prefilter);
            let (filter, next_offset, pending) = (&self.filter, self.next_offset, &mut self.pending);
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
                .map_err(corrupt)?;
            self.next_offset = header.last_offset() + 1;
            if !self.pending.is_empty() {
                return Ok(true);
            }
        }
    }
}
