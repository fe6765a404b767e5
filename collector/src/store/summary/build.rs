//! Building a summary from a segment's log: after a crash (for the bytes
//! recovery checks), when a `.summary` file is missing or stale (a store
//! written before summaries existed, a crash between the summary and the
//! recovery point), and to catch up an active segment whose summary was
//! rebuilt while appends went on.

use std::fs::File;
use std::sync::Arc;

use logpost_shared::batch::BatchHeader;

use super::{BatchStats, SegmentSummary};
use crate::store::partition::MAX_FRAME_BYTES;
use crate::store::scan::{ScanError, SegmentScanner};

/// Largest records section decoded for a summary. Ingest already refused
/// batches inflating past `http.max_uncompressed_bytes` (256 MiB by
/// default); this only bounds memory if that was configured higher, and a
/// batch past it gets "unknown" stats rather than failing the build.
pub const MAX_RECORDS_BYTES: usize = 1 << 30;

/// Stats of a checked frame, or "unknown" if its records cannot be decoded
/// (which validation makes impossible for stored batches, short of a
/// configuration change); never fails.
pub fn stats_of(frame: &[u8], header: &BatchHeader) -> BatchStats {
    BatchStats::from_frame(frame, header, MAX_RECORDS_BYTES).unwrap_or_else(|_| BatchStats::unknown(header))
}

/// Extends `summary` with the batches of `file` from its covered end up to
/// byte `end`.
///
/// # Errors
/// An i/o error, or bytes that are not whole batches (the caller leaves the
/// summary invalid; the segment is then read without pruning).
pub fn extend(summary: &mut SegmentSummary, file: &Arc<File>, end: u64) -> Result<(), ScanError> {
    let mut scanner = SegmentScanner::new(Arc::clone(file), summary.covered(), end, MAX_FRAME_BYTES);
    while let Some((pos, frame)) = scanner.next_frame()? {
        let header = BatchHeader::parse(frame).map_err(|source| ScanError::Batch { pos, source })?;
        let stats = stats_of(frame, &header);
        summary.add_batch(
            pos,
            frame.len() as u64,
            header.base_offset,
            header.last_offset(),
            &stats,
        );
    }
    Ok(())
}
