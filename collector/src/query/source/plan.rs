//! Which byte ranges of a segment a scan reads: its summary blocks whose
//! time bounds and streams can match, plus what the summary does not cover.

use super::{ScanStats, labels_of};
use crate::query::logql::Selector;
use crate::store::partition::SegmentView;
use crate::store::summary::StreamLabels;

/// A byte range of a segment to scan, and the newest record time (ms) it
/// can hold (`i64::MAX`: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Range {
    pub pos: u64,
    pub end: u64,
    pub newest_ms: i64,
}

/// The ranges of `seg` that may hold entries of `topic` matching
/// `selector` in `[start_ms, end_ms]`, one per summary block (adjacent
/// ones merged when `merge`); counts skipped blocks.
pub(super) fn plan_segment(
    seg: &SegmentView,
    topic: &str,
    selector: &Selector,
    (start_ms, end_ms): (i64, i64),
    merge: bool,
    stats: &mut ScanStats,
) -> Vec<Range> {
    let summary = seg.summary.read().unwrap_or_else(|e| e.into_inner());
    let seg_newest = if seg.max_timestamp < 0 {
        i64::MAX
    } else {
        seg.max_timestamp
    };
    if !summary.is_valid() {
        return vec![Range {
            pos: 0,
            end: seg.len,
            newest_ms: seg_newest,
        }];
    }
    let stream_ok: Vec<bool> = summary
        .streams()
        .iter()
        .map(|s: &StreamLabels| selector.matches(&labels_of(topic, s)))
        .collect();
    let mut out: Vec<Range> = Vec::new();
    for b in summary.blocks() {
        if b.pos >= seg.len {
            break;
        }
        let time_ok = b.max_timestamp >= start_ms && b.min_timestamp <= end_ms;
        let streams_ok = b.streams.as_ref().is_none_or(|ids| {
            ids.iter()
                .any(|&id| stream_ok.get(id as usize).copied().unwrap_or(true))
        });
        if !(time_ok && streams_ok) {
            stats.blocks_skipped += 1;
            continue;
        }
        let range = Range {
            pos: b.pos,
            end: b.end.min(seg.len),
            newest_ms: b.max_timestamp,
        };
        push_range(&mut out, range, merge);
    }
    if summary.covered() < seg.len {
        let tail = Range {
            pos: summary.covered(),
            end: seg.len,
            newest_ms: seg_newest,
        };
        push_range(&mut out, tail, merge);
    }
    out
}

fn push_range(out: &mut Vec<Range>, range: Range, merge: bool) {
    match out.last_mut() {
        Some(last) if merge && last.end == range.pos => {
            last.end = range.end;
            last.newest_ms = last.newest_ms.max(range.newest_ms);
        }
        _ => out.push(range),
    }
}
