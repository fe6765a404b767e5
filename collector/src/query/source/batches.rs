//! Reading one range of a segment batch by batch: frames, their time
//! bounds, inflating (here or on [`Ahead`]'s helpers) and the hits of each
//! batch's records.

use std::ops::ControlFlow;
use std::sync::Arc;

use logpost_shared::batch::{BatchHeader, check, stored_records_section};

use super::ahead::Ahead;
use super::plan::Range;
use super::{Hit, LabelCache, ScanRequest, ScanState, ScanStats, SourceError, metadata_of, record_ns};
use crate::store::Topic;
use crate::store::partition::{MAX_FRAME_BYTES, SegmentView};
use crate::store::scan::SegmentScanner;

impl ScanRequest<'_> {
    /// One range of a segment, batch by batch: inflated on this thread,
    /// or by helpers when there are any and the range is large.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn range(
        &self,
        topic: &Topic,
        partition: u32,
        seg: &SegmentView,
        range: Range,
        state: &mut ScanState,
        stats: &mut ScanStats,
        f: &mut dyn FnMut(Hit<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, SourceError> {
        let mut scanner = SegmentScanner::new(Arc::clone(&seg.file), range.pos, range.end, MAX_FRAME_BYTES);
        let at = Place {
            topic,
            partition,
            base_offset: seg.base_offset,
        };
        if self.helpers.threads > 0 && range.end.saturating_sub(range.pos) >= self.helpers.min_range_bytes {
            return std::thread::scope(|scope| {
                match Ahead::start(scope, self.helpers.threads, self.max_uncompressed) {
                    Some(mut ahead) => self.range_ahead(&at, &mut scanner, &mut ahead, state, stats, f),
                    None => self.range_alone(&at, &mut scanner, state, stats, f),
                }
            });
        }
        self.range_alone(&at, &mut scanner, state, stats, f)
    }

    /// As [`range`](Self::range), inflating on this thread.
    fn range_alone(
        &self,
        at: &Place<'_>,
        scanner: &mut SegmentScanner,
        state: &mut ScanState,
        stats: &mut ScanStats,
        f: &mut dyn FnMut(Hit<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, SourceError> {
        let ScanState { scratch, cache } = state;
        loop {
            let (pos, frame, header) = match self.next_frame(at, scanner, stats)? {
                Next::Frame(pos, frame, header) => (pos, frame, header),
                Next::OutOfRange => continue,
                Next::End => return Ok(ControlFlow::Continue(())),
            };
            let records = stored_records_section(frame, &header, self.max_uncompressed, scratch)
                .map_err(|source| at.corrupt(pos, source))?;
            if self.batch(at, pos, &header, records, cache, stats, f)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
    }

    /// As [`range`](Self::range), with `ahead` inflating: frames are read
    /// until it is full, then taken back oldest first. A read error waits
    /// until the frames before it are consumed, so hits come in the same
    /// order and up to the same point as without helpers.
    fn range_ahead(
        &self,
        at: &Place<'_>,
        scanner: &mut SegmentScanner,
        ahead: &mut Ahead,
        state: &mut ScanState,
        stats: &mut ScanStats,
        f: &mut dyn FnMut(Hit<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, SourceError> {
        let mut read_error = None;
        let mut exhausted = false;
        loop {
            while !exhausted && !ahead.is_full() {
                match self.next_frame(at, scanner, stats) {
                    Ok(Next::Frame(pos, frame, header)) => ahead.submit(pos, header, frame),
                    Ok(Next::OutOfRange) => {}
                    Ok(Next::End) => exhausted = true,
                    Err(e) => {
                        read_error = Some(e);
                        exhausted = true;
                    }
                }
            }
            if ahead.is_empty() {
                return read_error.map_or(Ok(ControlFlow::Continue(())), Err);
            }
            let Some((pos, header, records)) = ahead.next() else {
                continue;
            };
            let records = records.map_err(|source| at.corrupt(pos, source))?;
            if self
                .batch(at, pos, &header, records, &mut state.cache, stats, f)?
                .is_break()
            {
                return Ok(ControlFlow::Break(()));
            }
        }
    }

    /// The range's next frame, checked, with its position, unless the
    /// time range cannot use it.
    pub(super) fn next_frame<'s>(
        &self,
        at: &Place<'_>,
        scanner: &'s mut SegmentScanner,
        stats: &mut ScanStats,
    ) -> Result<Next<'s>, SourceError> {
        let (start_ms, end_ms) = self.bounds_ms();
        let (pos, frame) = match scanner.next_frame() {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(Next::End),
            Err(source) => {
                return Err(SourceError::Scan {
                    topic: at.topic.name.to_string(),
                    partition: at.partition,
                    base_offset: at.base_offset,
                    source,
                });
            }
        };
        stats.stored_bytes_read += frame.len() as u64;
        let header = check(frame).map_err(|source| at.corrupt(pos, source))?;
        if header.max_timestamp < start_ms || header.base_timestamp > end_ms {
            return Ok(Next::OutOfRange);
        }
        Ok(Next::Frame(pos, frame, header))
    }

    /// The hits of one batch's inflated `records`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch(
        &self,
        at: &Place<'_>,
        pos: u64,
        header: &BatchHeader,
        records: &[u8],
        cache: &mut LabelCache,
        stats: &mut ScanStats,
        f: &mut dyn FnMut(Hit<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, SourceError> {
        let (start_ms, end_ms) = self.bounds_ms();
        let topic = at.topic;
        stats.batches_read += 1;
        stats.raw_bytes_scanned += records.len() as u64;
        let mut candidates = 0u64;
        let flow = self
            .prefilter
            .for_each_candidate(records, header.records_count, |record| {
                candidates += 1;
                let timestamp_ms = header.base_timestamp.wrapping_add(record.timestamp_delta);
                if timestamp_ms < start_ms || timestamp_ms > end_ms {
                    return ControlFlow::Continue(());
                }
                if !self.prefilter.may_match(record.value.unwrap_or_default()) {
                    return ControlFlow::Continue(());
                }
                let timestamp_ns = record_ns(&record, timestamp_ms);
                if timestamp_ns < self.start_ns || timestamp_ns >= self.end_ns {
                    return ControlFlow::Continue(());
                }
                let (labels, selected, label_headers) = cache.get(&topic.name, &record, self.selector);
                if !selected {
                    return ControlFlow::Continue(());
                }
                stats.records_matched_selector += 1;
                // The leading line filters last, as the dearest check.
                if !self.prefilter.passes_leading_filters(record.value.unwrap_or_default()) {
                    return ControlFlow::Continue(());
                }
                f(Hit {
                    topic: &topic.name,
                    partition: at.partition,
                    offset: header.base_offset + i64::from(record.offset_delta),
                    producer_id: header.producer.producer_id,
                    timestamp_ms,
                    timestamp_ns,
                    labels,
                    metadata: metadata_of(&record, label_headers),
                    record: &record,
                })
            })
            .map_err(|source| at.corrupt(pos, source))?;
        if candidates == 0 {
            stats.batches_prefiltered += 1;
        }
        Ok(flow)
    }
}

/// What the next frame of a range is.
pub(super) enum Next<'s> {
    Frame(u64, &'s [u8], BatchHeader),
    /// Its records are all outside the time range.
    OutOfRange,
    End,
}

/// Where a batch is, for errors.
pub(super) struct Place<'t> {
    pub topic: &'t Topic,
    pub partition: u32,
    pub base_offset: i64,
}

impl Place<'_> {
    pub(super) fn corrupt(&self, pos: u64, source: logpost_shared::batch::BatchError) -> SourceError {
        SourceError::Batch {
            topic: self.topic.name.to_string(),
            partition: self.partition,
            base_offset: self.base_offset,
            pos,
            source,
        }
    }
}
