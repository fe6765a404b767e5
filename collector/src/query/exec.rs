//! Running a scan over a topic: one cursor per partition, merged by
//! timestamp (then partition and offset, so the order is total and stable),
//! stopping at the limit or when the sink says so.
//!
//! Lines of one file share a key and so a partition; within a partition the
//! merge keeps offset order whenever timestamps tie or go backwards, so a
//! file's lines come out in file order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::cursor::{PartitionCursor, ReadError, RecordFilter, StoredRecord};
use crate::store::Topic;

/// Scans every partition of `topic` from its start, oldest first, calling
/// `sink` with each matching record until `limit` records were delivered or
/// `sink` breaks. Returns how many were delivered.
///
/// # Errors
/// The first read error of any partition.
pub fn scan_topic<F: RecordFilter>(
    topic: &Topic,
    filter: Arc<F>,
    limit: usize,
    max_uncompressed: usize,
    mut sink: impl FnMut(StoredRecord) -> ControlFlow<()>,
) -> Result<usize, ReadError> {
    let mut cursors: Vec<PartitionCursor<F>> = topic
        .partitions
        .iter()
        .map(|p| {
            let view = p.view();
            let start = view.log_start_offset;
            PartitionCursor::new(p.id, view, start, Arc::clone(&filter), max_uncompressed)
        })
        .collect();
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
