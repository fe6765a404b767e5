//! Running a scan over a topic, oldest first: one cursor per partition,
//! starting at the first offset the time index gives for the range's
//! start, merged by timestamp (then partition and offset, so the order is
//! total and stable), stopping at the limit or when the sink says so.
//!
//! Lines of one file share a key and so a partition; within a partition
//! the merge keeps offset order whenever timestamps tie or go backwards,
//! so a file's lines come out in file order. (The newest records first:
//! `source::newest_records`.)
//!
//! With helper threads, every cursor's next batches are inflated on them
//! (one pool shared by the partitions), while the merge and the filter
//! stay on the calling thread: the records delivered are the same.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::cursor::{PartitionCursor, ReadError, RecordFilter, StoredRecord};
use super::source::ahead::Ahead;
use crate::store::Topic;
use crate::store::read::offset_for_time;

/// Stored bytes below which a scan inflates on its own thread: starting
/// helpers costs more than a few batches take. (Tests' stores are small.)
#[cfg(not(test))]
const MIN_PARALLEL_BYTES: u64 = 4 << 20;
#[cfg(test)]
const MIN_PARALLEL_BYTES: u64 = 1;

/// Scans every partition of `topic` from `from_ms` (or its start), oldest
/// first, calling `sink` with each matching record until `limit` records
/// were delivered or `sink` breaks. Returns how many were delivered.
/// `threads` (the collector's `[http] query_threads`; 0 or 1: none):
/// helpers inflating batches ahead of the scan.
///
/// # Errors
/// The first read error of any partition.
pub fn scan_topic<F: RecordFilter>(
    topic: &Topic,
    filter: Arc<F>,
    from_ms: Option<i64>,
    limit: usize,
    max_uncompressed: usize,
    threads: usize,
    sink: impl FnMut(StoredRecord) -> ControlFlow<()>,
) -> Result<usize, ReadError> {
    let mut cursors: Vec<PartitionCursor<F>> = Vec::with_capacity(topic.partitions.len());
    for p in &topic.partitions {
        if !filter.wants_partition(&topic.name, p.id) {
            continue;
        }
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
    let to_read: u64 = cursors.iter().map(PartitionCursor::bytes_left).sum();
    if threads > 1 && to_read >= MIN_PARALLEL_BYTES && !cursors.is_empty() {
        return std::thread::scope(|scope| {
            if let Some(pool) = Ahead::start(scope, threads, max_uncompressed) {
                // The pool's frames in flight, shared among the partitions;
                // the queues (and so the helpers) end with the cursors, here.
                let share = pool.depth() / cursors.len();
                cursors = cursors
                    .into_iter()
                    .map(|c| c.with_ahead(Some(pool.sibling(share))))
                    .collect();
                drop(pool);
            }
            merge(cursors, limit, sink)
        });
    }
    merge(cursors, limit, sink)
}

/// Delivers the cursors' records merged by timestamp.
fn merge<F: RecordFilter>(
    mut cursors: Vec<PartitionCursor<F>>,
    limit: usize,
    mut sink: impl FnMut(StoredRecord) -> ControlFlow<()>,
) -> Result<usize, ReadError> {
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
        scan_topic(
            &topic,
            Arc::new(Lines("keep")),
            Some(2500),
            usize::MAX,
            1 << 20,
            1,
            |r| {
                got.push(r.timestamp_ms);
                ControlFlow::Continue(())
            },
        )
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

    /// A record's partition, offset and timestamp.
    type Delivered = (u32, i64, i64);

    /// What a scan delivers, in order, and its error.
    fn delivered(
        topic: &Topic,
        prefix: &'static str,
        from_ms: Option<i64>,
        limit: usize,
        threads: usize,
    ) -> (Vec<Delivered>, Result<usize, String>) {
        let mut got = Vec::new();
        let result = scan_topic(topic, Arc::new(Lines(prefix)), from_ms, limit, 1 << 20, threads, |r| {
            got.push((r.partition, r.offset, r.timestamp_ms));
            ControlFlow::Continue(())
        });
        (got, result.map_err(|e| e.to_string()))
    }

    #[test]
    fn helper_threads_deliver_what_one_thread_does() {
        let (_dir, store, all) = store();
        let topic = store.topic("t").unwrap();
        // "keep": 4 records of 10 match, so the cursors keep to their own
        // thread; "keep 1" and "keep 2" are selective, and take helpers.
        for prefix in ["keep", "keep 1", "keep 2"] {
            for from_ms in [None, Some(1500)] {
                for limit in [usize::MAX, 1, 7, 333] {
                    let (alone, ra) = delivered(&topic, prefix, from_ms, limit, 1);
                    assert_eq!(ra, Ok(alone.len()));
                    assert!(!alone.is_empty());
                    if prefix == "keep" && from_ms.is_none() && limit == usize::MAX {
                        assert_eq!(alone.len(), all.len(), "every kept line");
                    }
                    for threads in [2, 3] {
                        let (helped, rh) = delivered(&topic, prefix, from_ms, limit, threads);
                        assert_eq!(rh, ra);
                        assert_eq!(
                            helped, alone,
                            "{prefix}, from {from_ms:?}, limit {limit}, {threads} threads"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_selective_cursor_takes_the_helpers_and_an_unselective_one_does_not() {
        let (_dir, store, _) = store();
        let topic = store.topic("t").unwrap();
        for (prefix, helped) in [("keep 2", true), ("keep", false)] {
            std::thread::scope(|scope| {
                let pool = Ahead::start(scope, 2, 1 << 20).expect("helper threads");
                let p = &topic.partitions[0];
                let mut cursor = PartitionCursor::new(p.id, p.view(), 0, Arc::new(Lines(prefix)), 1 << 20)
                    .with_ahead(Some(pool.sibling(2)));
                drop(pool);
                let mut n = 0;
                while cursor.next_record().unwrap().is_some() {
                    n += 1;
                }
                assert!(n > 0, "{prefix}");
                assert_eq!(cursor.is_helped(), helped, "{prefix}");
            });
        }
    }

    #[test]
    fn a_corrupt_batch_stops_a_helped_scan_where_it_stops_a_plain_one() {
        let (dir, store, _) = store();
        let mut logs: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "log") && std::fs::metadata(p).unwrap().len() > 4 << 10)
            .collect();
        logs.sort();
        // The newest of a partition, so that matches come before it.
        let victim = logs.last().expect("segments with several batches");
        let mut bytes = std::fs::read(victim).unwrap();
        // In the last batch's records: under its CRC.
        let at = bytes.len() - 5;
        bytes[at] ^= 0x55;
        std::fs::write(victim, &bytes).unwrap();
        let topic = store.topic("t").unwrap();
        let (alone, ra) = delivered(&topic, "keep 2", None, usize::MAX, 1);
        let err = ra.expect_err("the corrupt batch is an error");
        assert!(!alone.is_empty(), "records before the corrupt batch");
        for threads in [2, 3] {
            let (helped, rh) = delivered(&topic, "keep 2", None, usize::MAX, threads);
            assert_eq!(rh.expect_err("and with helpers too"), err);
            assert_eq!(helped, alone, "the same records before it");
        }
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}
