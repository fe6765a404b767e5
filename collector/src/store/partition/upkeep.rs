//! A partition's upkeep, called by the maintenance thread: retention,
//! summaries rebuilt from the log, producers forgotten once idle.

use std::sync::Arc;

use super::{Partition, RetentionPolicy};
use crate::store::segment::Segment;
use crate::store::summary::{SegmentSummary, build};

impl Partition {
    /// Deletes the oldest segments that `policy` no longer keeps; never the
    /// active one. Returns how many were deleted. Costs one pass over the
    /// in-memory segment list, however many segments there are.
    pub fn enforce_retention(&self, policy: RetentionPolicy, now_ms: i64) -> usize {
        let mut log = self.lock();
        let mut total: u64 = log.segments.values().map(Segment::len).sum();
        let mut doomed = Vec::new();
        let sealed = log.segments.len().saturating_sub(1);
        for seg in log.segments.values().take(sealed) {
            let too_big = policy.bytes.is_some_and(|max| total > max);
            let too_old = policy.age.is_some_and(|age| {
                let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                seg.max_timestamp() >= 0 && seg.max_timestamp() < now_ms.saturating_sub(age_ms)
            });
            if !(too_big || too_old) {
                break; // segments are deleted oldest first, without holes
            }
            total -= seg.len();
            doomed.push(seg.base_offset);
        }
        if doomed.is_empty() {
            return 0;
        }
        let removed: Vec<Segment> = doomed.iter().filter_map(|b| log.segments.remove(b)).collect();
        self.publish(&log);
        drop(log);
        for seg in &removed {
            tracing::info!(topic = %self.topic, partition = self.id, base_offset = seg.base_offset, bytes = seg.len(),
                "retention deleted segment");
            seg.delete_files();
        }
        removed.len()
    }

    /// Rebuilds, from their logs, the summaries that are missing or stale
    /// (see [`super::summary`]), one segment at a time, decoding without the
    /// partition lock; `stop` is asked between segments. Returns how many
    /// were rebuilt.
    pub fn rebuild_summaries(&self, stop: &dyn Fn() -> bool) -> usize {
        let mut rebuilt = 0;
        loop {
            let target = {
                let log = self.lock();
                log.segments
                    .values()
                    .find(|s| {
                        !s.summary_rebuild_failed && !s.summary().read().unwrap_or_else(|e| e.into_inner()).is_valid()
                    })
                    .map(|s| (s.base_offset, Arc::clone(s.file()), s.len()))
            };
            let Some((base, file, len)) = target else {
                return rebuilt;
            };
            if stop() {
                return rebuilt;
            }
            let mut fresh = SegmentSummary::new();
            let built = build::extend(&mut fresh, &file, len);
            let mut log = self.lock();
            let Some(seg) = log.segments.get_mut(&base) else {
                continue; // deleted by retention meanwhile
            };
            match built.and_then(|()| seg.install_summary(fresh)) {
                Ok(()) => {
                    rebuilt += 1;
                    if let Err(e) = seg.flush_indexes(false) {
                        tracing::warn!(topic = %self.topic, partition = self.id, error = %e, "cannot write rebuilt summary");
                    }
                }
                Err(e) => {
                    seg.summary_rebuild_failed = true;
                    tracing::warn!(topic = %self.topic, partition = self.id, base_offset = base, error = %e,
                        "cannot rebuild segment summary; queries read this segment without pruning");
                }
            }
        }
    }

    /// Forgets producers idle since before `cutoff_ms`.
    pub fn expire_producers(&self, cutoff_ms: i64) -> usize {
        self.lock().producers.expire(cutoff_ms)
    }
}
