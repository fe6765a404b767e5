//! Reading a partition back by offset and by time, through its published
//! view (no lock on the writer), using the sparse indexes to seek.

use std::sync::Arc;

use logpost_shared::batch::{check, decode_records};

use super::partition::{MAX_FRAME_BYTES, PartitionView, SegmentView};
use super::scan::{ScanError, SegmentScanner};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "offset {requested} is out of range: the partition holds offsets {log_start_offset} to {high_watermark} (exclusive)"
    )]
    OutOfRange {
        requested: i64,
        log_start_offset: i64,
        high_watermark: i64,
    },
    #[error("segment {base_offset}: {source}")]
    Scan {
        base_offset: i64,
        #[source]
        source: ScanError,
    },
    #[error("segment {base_offset}: corrupt batch at byte {pos}: {source}")]
    Corrupt {
        base_offset: i64,
        pos: u64,
        #[source]
        source: logpost_shared::batch::BatchError,
    },
}

/// Batches read from one partition.
#[derive(Debug, Clone, Default)]
pub struct FetchResult {
    /// Whole batch frames, as stored (the first may start before the
    /// requested offset, as Kafka's fetch does).
    pub frames: Vec<u8>,
    /// Offset after the last batch returned (where the next read starts).
    pub next_offset: i64,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// The segment that holds `offset`: the last whose base is at or below it.
fn segment_for(view: &PartitionView, offset: i64) -> Option<usize> {
    let i = view.segments.partition_point(|s| s.base_offset <= offset);
    i.checked_sub(1)
}

/// Byte position in `seg` from which to scan for `offset`.
pub fn seek_position(seg: &SegmentView, offset: i64) -> u64 {
    let rel = u32::try_from(offset.saturating_sub(seg.base_offset)).unwrap_or(u32::MAX);
    u64::from(seg.index.read().unwrap_or_else(|e| e.into_inner()).lookup(rel)).min(seg.len)
}

/// Reads whole batches starting with the one holding `offset`, up to about
/// `max_bytes` (always at least one batch, so a large batch is never stuck).
/// `offset == high_watermark` is a valid, empty read.
///
/// # Errors
/// [`ReadError::OutOfRange`] before the log start or past the high
/// watermark; i/o errors and corrupt batches.
pub fn read_from(view: &PartitionView, offset: i64, max_bytes: usize) -> Result<FetchResult, ReadError> {
    let mut result = FetchResult {
        frames: Vec::new(),
        next_offset: offset,
        high_watermark: view.high_watermark,
        log_start_offset: view.log_start_offset,
    };
    if offset < view.log_start_offset || offset > view.high_watermark {
        return Err(ReadError::OutOfRange {
            requested: offset,
            log_start_offset: view.log_start_offset,
            high_watermark: view.high_watermark,
        });
    }
    let Some(mut i) = segment_for(view, offset) else {
        return Ok(result);
    };
    while let Some(seg) = view.segments.get(i) {
        let start = if seg.base_offset <= offset {
            seek_position(seg, offset)
        } else {
            0
        };
        let mut scanner = SegmentScanner::new(Arc::clone(&seg.file), start, seg.len, MAX_FRAME_BYTES);
        loop {
            let (pos, frame) = match scanner.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(source) => {
                    return Err(ReadError::Scan {
                        base_offset: seg.base_offset,
                        source,
                    });
                }
            };
            let header = logpost_shared::batch::BatchHeader::parse(frame).map_err(|source| ReadError::Corrupt {
                base_offset: seg.base_offset,
                pos,
                source,
            })?;
            if header.last_offset() < offset {
                continue;
            }
            if !result.frames.is_empty() && result.frames.len() + frame.len() > max_bytes {
                return Ok(result);
            }
            result.frames.extend_from_slice(frame);
            result.next_offset = header.last_offset() + 1;
        }
        i += 1;
    }
    Ok(result)
}

/// The first offset whose record timestamp is at or after `timestamp_ms`,
/// or `None` if every record is older (Kafka's ListOffsets by time).
///
/// # Errors
/// I/O errors and corrupt batches.
pub fn offset_for_time(view: &PartitionView, timestamp_ms: i64) -> Result<Option<i64>, ReadError> {
    Ok(record_for_time(view, timestamp_ms)?.map(|(offset, _)| offset))
}

/// As [`offset_for_time`], with the found record's own timestamp (what a
/// Kafka ListOffsets answer carries).
///
/// # Errors
/// I/O errors and corrupt batches.
pub fn record_for_time(view: &PartitionView, timestamp_ms: i64) -> Result<Option<(i64, i64)>, ReadError> {
    let mut scratch = Vec::new();
    for seg in &view.segments {
        if seg.max_timestamp >= 0 && seg.max_timestamp < timestamp_ms {
            continue; // every batch here ended earlier
        }
        let rel = seg
            .time_index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .lookup(timestamp_ms);
        let start = seek_position(seg, seg.base_offset + i64::from(rel));
        let mut scanner = SegmentScanner::new(Arc::clone(&seg.file), start, seg.len, MAX_FRAME_BYTES);
        loop {
            let (pos, frame) = match scanner.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(source) => {
                    return Err(ReadError::Scan {
                        base_offset: seg.base_offset,
                        source,
                    });
                }
            };
            let corrupt = |source| ReadError::Corrupt {
                base_offset: seg.base_offset,
                pos,
                source,
            };
            let header = check(frame).map_err(corrupt)?;
            if header.max_timestamp < timestamp_ms {
                continue;
            }
            // The batch holds a record at or after the time: find which.
            for record in decode_records(frame, &header, MAX_FRAME_BYTES, &mut scratch).map_err(corrupt)? {
                let record = record.map_err(corrupt)?;
                let timestamp = header.base_timestamp.wrapping_add(record.timestamp_delta);
                if timestamp >= timestamp_ms {
                    return Ok(Some((header.base_offset + i64::from(record.offset_delta), timestamp)));
                }
            }
        }
    }
    Ok(None)
}
