//! Running a scan over a topic, oldest first: one cursor per partition,
//! starting at the first offset the time index gives for the range's
//! start, merged by timestamp (then partition and offset, so the order is
//! total and stable), stopping at the limit or when the sink says so.
//!
//! Lines of one file share a key and so a partition; within a partition
//! the merge keeps offset order whenever timestamps tie or go backwards,
//! so a file's lines come out in file order. (The newest records first:
//! `source::newest_records`.)

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::cursor::{PartitionCursor, ReadError, RecordFilter, StoredRecord};
use crate::store::Topic;
use crate::store::read::offset_for_time;

/// Scans every partition of `topic` from `from_ms` (or its start), oldest
/// first, calling `sink` with each matching record until `limit` records
/// were delivered or `sink` breaks. Returns how many were delivered.
///
/// # Errors
/// The first read error of any partition.
pub fn scan_topic<F: RecordFilter>(
    topic: &Topic,
    filter: Arc<F>,
    from_ms: Option<i64>,
    limit: usize,
    max_uncompressed: usize,
    mut sink: impl FnMut(StoredRecord) -> ControlFlow<()>,
) -> Result<usize, ReadError> {
    let mut cursors: Vec<PartitionCursor<F>> = Vec::with_capacity(topic.partitions.len());
    for p in &topic.partitions {
        let view = p.view();
        let start = match from_ms {
            None => Some(view.log_start_offset),
            Some(ms) => offset_for_time(&view, ms).map_err(|source| ReadError::Seek {
                partition: p.id,
                source,
            })?,
        };
        // `None`: every record of the partition is older than `from_ms`.
        if let Some(start) = start {
            cursors.push(PartitionCursor::new(
                p.id,
                view,
                start,
                Arc::clone(&filter),
                max_uncompressed,
            ));
        }
    }
    // Heap of (timestamp, partition index); a partition is in the heap at
    // most once, keyed by its head record. Within a partition, records are
    // taken strictly in offset order; the head's timestamp orders partitions.
    let mut heap = BinaryHeap::new();
    for (i, c) in cursors.iter_mut().enumerate() {
        if let Some(r) = c.peek()? {
            heap.push(Reverse((r.timestamp_ms, i)));
        }
    }
    let mut delivered = 0;
    while delivered < limit {
        let Some(Reverse((_, i))) = heap.pop() else { break };
        let Some(cursor) = cursors.get_mut(i) else { break };
        let Some(record) = cursor.next_record()? else { continue };
        delivered += 1;
        if sink(record).is_break() {
            break;
        }
        if let Some(next) = cursor.peek()? {
            heap.push(Reverse((next.timestamp_ms, i)));
        }
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig, TopicSpec};
    use logpost_shared::batch::{BatchBuilder, RecordView};
    use logpost_shared::compression::Compression;

    struct Lines(&'static str);
    impl RecordFilter for Lines {
        fn matches(&self, _: i64, r: &RecordView<'_>) -> bool {
            r.value.is_some_and(|v| v.starts_with(self.0.as_bytes()))
        }
    }

    /// Two partitions of many small segments; batch `b` holds timestamps
    /// `b * 10 ..`, except every seventh batch, pushed late with old times.
    fn store() -> (tempfile::TempDir, Store, Vec<(i64, u32, String)>) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path().to_path_buf());
        cfg.segment_bytes = 8 << 10;
        let store = Store::open(cfg).unwrap();
        let topic = store
            .create_topic(
                "t",
                TopicSpec {
                    partitions: Some(2),
                    ..TopicSpec::default()
                },
            )
            .unwrap();
        let mut all = Vec::new();
        for b in 0..300i64 {
            let p = (b % 2) as u32;
            let ts0 = if b % 7 == 3 { b * 10 - 1000 } else { b * 10 };
            let mut builder = BatchBuilder::new();
            for i in 0..10 {
                let line = format!(
                    "{} {b}-{i} {}",
                    if i % 3 == 0 { "keep" } else { "drop" },
                    "x".repeat(40)
                );
                builder.append(ts0 + i, None, Some(line.as_bytes()), &[]);
                if i % 3 == 0 {
                    all.push((ts0 + i, p, line));
                }
            }
            let frame = builder.finish(Compression::None).unwrap();
            topic.partitions[p as usize].append_frames(&[&frame], false).unwrap();
        }
        (dir, store, all)
    }

    #[test]
    fn forward_from_a_time_starts_there() {
        let (_dir, store, all) = store();
        let topic = store.topic("t").unwrap();
        let mut got = Vec::new();
        scan_topic(&topic, Arc::new(Lines("keep")), Some(2500), usize::MAX, 1 << 20, |r| {
            got.push(r.timestamp_ms);
            ControlFlow::Continue(())
        })
        .unwrap();
        // The time index seeks to the first batch that reaches 2500; late
        // batches with older timestamps after it are still read, as Kafka's
        // offsets-for-times does.
        let mut want: Vec<i64> = all.iter().filter(|r| r.0 >= 2500).map(|r| r.0).collect();
        want.sort();
        for w in &want {
            assert!(got.contains(w), "{w} missing");
        }
        assert!(got.len() < all.len(), "nothing skipped");
    }
}
