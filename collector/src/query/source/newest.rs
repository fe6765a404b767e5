//! The newest-first scan with helpers: summary blocks newest first, as in
//! the one-thread scan, but their frames are fed to [`Ahead`] across block
//! boundaries (a block is about 1 MiB, too little to be worth helpers on
//! its own). Each block is announced (`NoneNewerThan`) just before its
//! first frame is consumed, so the caller sees the same calls in the same
//! order as without helpers.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::ahead::Ahead;
use super::batches::{Next, Place};
use super::plan::Range;
use super::{Found, LabelCache, ScanRequest, ScanState, ScanStats, SourceError};
use crate::store::Topic;
use crate::store::partition::{MAX_FRAME_BYTES, PartitionView};
use crate::store::scan::SegmentScanner;

/// One summary block (or unsummarised range) to read.
pub(super) struct Part {
    /// No record of the block is newer than this (ns; `i64::MAX`: unknown).
    pub newest_ns: i64,
    /// Index into the scan's topics.
    pub topic: usize,
    pub partition: u32,
    pub view: Arc<PartitionView>,
    pub segment: usize,
    pub range: Range,
}

impl Part {
    fn place<'t>(&self, topics: &'t [Arc<Topic>]) -> Option<Place<'t>> {
        Some(Place {
            topic: topics.get(self.topic)?,
            partition: self.partition,
            base_offset: self.view.segments.get(self.segment)?.base_offset,
        })
    }
}

impl ScanRequest<'_> {
    /// Reads `parts` (already in order) with helpers inflating ahead;
    /// `None`, having read nothing, when no helper could be started.
    pub(super) fn newest_first_ahead(
        &self,
        topics: &[Arc<Topic>],
        parts: &[Part],
        stats: &mut ScanStats,
        f: &mut dyn FnMut(Found<'_>) -> ControlFlow<()>,
    ) -> Option<Result<(), SourceError>> {
        std::thread::scope(|scope| {
            let mut ahead = Ahead::start(scope, self.helpers.threads, self.max_uncompressed)?;
            Some(self.newest_with(&mut ahead, topics, parts, stats, f))
        })
    }

    /// The body of [`newest_first_ahead`](Self::newest_first_ahead).
    fn newest_with(
        &self,
        ahead: &mut Ahead,
        topics: &[Arc<Topic>],
        parts: &[Part],
        stats: &mut ScanStats,
        f: &mut dyn FnMut(Found<'_>) -> ControlFlow<()>,
    ) -> Result<(), SourceError> {
        // The part of each frame in flight, oldest first.
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        let mut feeding: Option<(usize, SegmentScanner)> = None;
        let mut next_part = 0;
        let mut read_error: Option<(usize, SourceError)> = None;
        let mut announced = 0;
        let mut state = ScanState::default();
        let mut state_topic = usize::MAX;
        loop {
            while read_error.is_none() && !ahead.is_full() {
                if feeding.is_none() {
                    let Some(part) = parts.get(next_part) else { break };
                    let file = part.view.segments.get(part.segment).map(|s| Arc::clone(&s.file));
                    if let Some(file) = file {
                        feeding = Some((
                            next_part,
                            SegmentScanner::new(file, part.range.pos, part.range.end, MAX_FRAME_BYTES),
                        ));
                    }
                    next_part += 1;
                    continue;
                }
                let Some((k, scanner)) = feeding.as_mut() else { break };
                let Some(at) = parts.get(*k).and_then(|p| p.place(topics)) else {
                    feeding = None;
                    continue;
                };
                match self.next_frame(&at, scanner, stats) {
                    Ok(Next::Frame(pos, frame, header)) => {
                        ahead.submit(pos, header, frame);
                        in_flight.push_back(*k);
                    }
                    Ok(Next::OutOfRange) => {}
                    Ok(Next::End) => feeding = None,
                    Err(e) => read_error = Some((*k, e)),
                }
            }
            let Some(k) = in_flight.pop_front() else { break };
            if announce(parts, k + 1, &mut announced, f).is_break() {
                return Ok(());
            }
            let Some((pos, header, records)) = ahead.next() else {
                break;
            };
            let Some((part, at)) = parts.get(k).and_then(|p| Some((p, p.place(topics)?))) else {
                continue;
            };
            if state_topic != part.topic {
                // Cached labels carry the topic.
                state.cache = LabelCache::default();
                state_topic = part.topic;
            }
            let records = records.map_err(|source| at.corrupt(pos, source))?;
            let hits = self.batch(&at, pos, &header, records, &mut state.cache, stats, &mut |h| {
                f(Found::Hit(h))
            })?;
            if hits.is_break() {
                return Ok(());
            }
        }
        match read_error {
            Some((k, e)) => {
                if announce(parts, k + 1, &mut announced, f).is_break() {
                    return Ok(());
                }
                Err(e)
            }
            None => {
                // Blocks with no frame left to read are announced too.
                let _ = announce(parts, parts.len(), &mut announced, f);
                Ok(())
            }
        }
    }
}

/// Announces `parts[*announced..until]`, as the one-thread scan does before
/// reading each; stops when `f` says so.
fn announce(
    parts: &[Part],
    until: usize,
    announced: &mut usize,
    f: &mut dyn FnMut(Found<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    while *announced < until {
        let Some(part) = parts.get(*announced) else { break };
        f(Found::NoneNewerThan(part.newest_ns))?;
        *announced += 1;
    }
    ControlFlow::Continue(())
}
