//! Splitting a request body into batch frames and checking each one before
//! anything is stored: framing, magic, CRC, codec, a record count that
//! matches the offset delta, and (by decompressing with a size limit) every
//! record's structure. A body is accepted whole or refused whole, with an
//! error naming the batch and byte position.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use logpost_shared::batch::{BatchError, BatchHeader, check, decode_records, frame_len};
use logpost_shared::record::CURSOR_HEADER;

use crate::store::summary::{BatchStats, StatsBuilder};

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("request body is empty; expected one or more RecordBatch v2 frames")]
    Empty,
    #[error("batch {index} at byte {pos}: {source}")]
    Batch {
        index: usize,
        pos: usize,
        #[source]
        source: BatchError,
    },
    #[error("body ends inside batch {index} at byte {pos}: {available} of its bytes present (truncated body?)")]
    Truncated { index: usize, pos: usize, available: usize },
    #[error("batch {index} at byte {pos} holds no records")]
    EmptyBatch { index: usize, pos: usize },
    #[error("batch {index} at byte {pos}: last offset delta {last_offset_delta} does not match {count} records")]
    OffsetDeltaMismatch {
        index: usize,
        pos: usize,
        count: i32,
        last_offset_delta: i32,
    },
    #[error("batch {index} at byte {pos} is a control batch; only data batches can be appended")]
    ControlBatch { index: usize, pos: usize },
    #[error("batch {index} at byte {pos}: records inflate past the limit of {limit} bytes")]
    TooLarge { index: usize, pos: usize, limit: usize },
    #[error(
        "batch {index} at byte {pos}: record {record} has timestamp {timestamp_ms} ms, outside what queries can read ({})",
        TIMESTAMP_RANGE
    )]
    TimestampOutOfRange {
        index: usize,
        pos: usize,
        record: usize,
        /// `None`: the base timestamp plus the record's delta overflows.
        timestamp_ms: TimestampMs,
    },
}

/// A record's timestamp as the error shows it: the sum, or that it overflowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampMs(pub Option<i64>);

impl std::fmt::Display for TimestampMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ms) => write!(f, "{ms}"),
            None => f.write_str("(overflowing i64)"),
        }
    }
}

/// Milliseconds whose nanoseconds fit a signed 64-bit integer: what LogQL,
/// Loki's API and every query here count in. Records outside are refused
/// at ingest, where the sender can still be told, rather than stored and
/// never seen again.
pub const MIN_TIMESTAMP_MS: i64 = i64::MIN / 1_000_000 + 1;
/// See [`MIN_TIMESTAMP_MS`].
pub const MAX_TIMESTAMP_MS: i64 = i64::MAX / 1_000_000;
/// The range of [`MIN_TIMESTAMP_MS`]..=[`MAX_TIMESTAMP_MS`] as dates.
pub const TIMESTAMP_RANGE: &str = "1677-09-21 to 2262-04-11, nanoseconds since the epoch in a signed 64-bit integer";

/// One checked frame, sliced from the body without copying.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    pub frame: Bytes,
    pub header: BatchHeader,
    /// The first record's key: what routing hashes.
    pub key: Option<Bytes>,
    /// The last record's `logpost.cursor` header (agents' batches).
    pub cursor: Option<String>,
    /// Time bounds, counts and label sets, for the segment summary:
    /// gathered here because the records are decoded here anyway.
    pub stats: Arc<BatchStats>,
}

/// Inflate buffers kept between requests: a fresh one is zeroed as it
/// grows (5% of ingest's CPU at 2 MiB batches), a reused one only by what
/// it grows. At most this many are kept (validations run at most two per
/// CPU at once), none past [`MAX_POOLED_BYTES`].
const POOLED_BUFFERS: usize = 8;
const MAX_POOLED_BYTES: usize = 16 << 20;
static SCRATCH: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A pooled buffer, returned to the pool on drop.
struct Scratch(Vec<u8>);

impl Scratch {
    fn take() -> Self {
        Scratch(
            SCRATCH
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .unwrap_or_default(),
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.0.capacity() <= MAX_POOLED_BYTES {
            let mut pool = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOLED_BUFFERS {
                pool.push(std::mem::take(&mut self.0));
            }
        }
    }
}

/// Splits `body` into frames and checks each.
///
/// # Errors
/// The first problem, naming the batch index and byte position.
pub fn split_and_check(body: &Bytes, max_uncompressed_bytes: usize) -> Result<Vec<CheckedBatch>, IngestError> {
    if body.is_empty() {
        return Err(IngestError::Empty);
    }
    let mut batches = Vec::new();
    let mut pos = 0;
    let mut scratch = Scratch::take();
    let scratch = &mut scratch.0;
    while pos < body.len() {
        let index = batches.len();
        let rest = body.get(pos..).unwrap_or_default();
        let len = match frame_len(rest, body.len()) {
            Ok(Some(len)) => len,
            Ok(None) => {
                return Err(IngestError::Truncated {
                    index,
                    pos,
                    available: rest.len(),
                });
            }
            Err(BatchError::BadLength { len, .. }) if pos + 12 + len > body.len() => {
                return Err(IngestError::Truncated {
                    index,
                    pos,
                    available: rest.len(),
                });
            }
            Err(source) => return Err(IngestError::Batch { index, pos, source }),
        };
        let frame = body.slice(pos..pos + len);
        let header = check(&frame).map_err(|source| IngestError::Batch { index, pos, source })?;
        if header.records_count == 0 {
            return Err(IngestError::EmptyBatch { index, pos });
        }
        if header.last_offset_delta != header.records_count - 1 {
            return Err(IngestError::OffsetDeltaMismatch {
                index,
                pos,
                count: header.records_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        if header.is_control() {
            return Err(IngestError::ControlBatch { index, pos });
        }
        let (key, cursor, stats) = verify_records(&frame, &header, max_uncompressed_bytes, scratch, index, pos)?;
        batches.push(CheckedBatch {
            frame,
            header,
            key,
            cursor,
            stats: Arc::new(stats),
        });
        pos += len;
    }
    Ok(batches)
}

/// Decodes every record (so that consumers never meet a corrupt one) and
/// returns the first record's key, the last record's cursor header and the
/// batch's stats.
fn verify_records(
    frame: &Bytes,
    header: &BatchHeader,
    limit: usize,
    scratch: &mut Vec<u8>,
    index: usize,
    pos: usize,
) -> Result<(Option<Bytes>, Option<String>, BatchStats), IngestError> {
    let records = decode_records(frame, header, limit, scratch).map_err(|source| match source {
        BatchError::Decompress(logpost_shared::compression::CompressionError::TooLarge { limit }) => {
            IngestError::TooLarge { index, pos, limit }
        }
        source => IngestError::Batch { index, pos, source },
    })?;
    let mut key = None;
    let mut cursor = None;
    let mut count = 0;
    let mut stats = StatsBuilder::new();
    let last = header.records_count - 1;
    for (i, record) in records.enumerate() {
        let record = record.map_err(|source| IngestError::Batch { index, pos, source })?;
        if i == 0 {
            key = record.key.map(Bytes::copy_from_slice);
        }
        if i as i32 == last && header.producer.producer_id >= 0 {
            cursor = record
                .header(CURSOR_HEADER)
                .flatten()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned);
        }
        if record.offset_delta != i as i32 {
            return Err(IngestError::Batch {
                index,
                pos,
                source: BatchError::BadRecord {
                    index: i as i32,
                    pos: 0,
                    what: "offset delta out of sequence",
                },
            });
        }
        let timestamp_ms = header
            .base_timestamp
            .checked_add(record.timestamp_delta)
            .filter(|ms| (MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(ms));
        let Some(timestamp_ms) = timestamp_ms else {
            return Err(IngestError::TimestampOutOfRange {
                index,
                pos,
                record: i,
                timestamp_ms: TimestampMs(header.base_timestamp.checked_add(record.timestamp_delta)),
            });
        };
        stats.push(timestamp_ms, &record);
        count += 1;
    }
    if count != header.records_count {
        return Err(IngestError::Batch {
            index,
            pos,
            source: BatchError::BadRecord {
                index: count,
                pos: 0,
                what: "fewer records than the count says",
            },
        });
    }
    Ok((key, cursor, stats.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpost_shared::batch::BatchBuilder;
    use logpost_shared::compression::Compression;

    fn batch(lines: &[&str]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for l in lines {
            b.append(1, Some(b"k"), Some(l.as_bytes()), &[]);
        }
        b.finish(Compression::Gzip { level: 1 }).unwrap()
    }

    #[test]
    fn accepts_concatenated_batches() {
        let mut body = batch(&["a", "b"]);
        body.extend(batch(&["c"]));
        let got = split_and_check(&Bytes::from(body), 1 << 20).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].header.records_count, 2);
        assert_eq!(got[1].key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn names_the_bad_batch() {
        let first = batch(&["a"]);
        let mut second = batch(&["b"]);
        let last = second.len() - 1;
        second[last] ^= 0xff;
        let mut body = first.clone();
        body.extend(&second);
        let err = split_and_check(&Bytes::from(body), 1 << 20).unwrap_err();
        assert!(
            matches!(err, IngestError::Batch { index: 1, pos, source: BatchError::CrcMismatch { .. } } if pos == first.len()),
            "{err}"
        );
    }

    #[test]
    fn truncated_body() {
        let b = batch(&["abc"]);
        let err = split_and_check(&Bytes::from(b[..b.len() - 3].to_vec()), 1 << 20).unwrap_err();
        assert!(matches!(err, IngestError::Truncated { index: 0, pos: 0, .. }), "{err}");
        let err = split_and_check(&Bytes::from_static(b"hello"), 1 << 20).unwrap_err();
        assert!(matches!(err, IngestError::Truncated { .. }), "{err}");
    }

    #[test]
    fn not_a_batch() {
        let err = split_and_check(
            &Bytes::from_static(b"this is certainly not a record batch, just text"),
            1 << 20,
        )
        .unwrap_err();
        assert!(
            matches!(err, IngestError::Batch { index: 0, .. } | IngestError::Truncated { .. }),
            "{err}"
        );
        assert!(matches!(
            split_and_check(&Bytes::new(), 1).unwrap_err(),
            IngestError::Empty
        ));
    }

    #[test]
    fn inflation_limit() {
        let big = "x".repeat(100_000);
        let err = split_and_check(&Bytes::from(batch(&[&big])), 1000).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { limit: 1000, .. }), "{err}");
    }

    /// Issue 28: a timestamp whose nanoseconds do not fit an i64 (before
    /// 1677-09-21 or after 2262-04-11) could be stored but never queried.
    #[test]
    fn issue_28_timestamps_queries_cannot_read_are_refused() {
        for (ms, ok) in [
            (0, true),
            (MAX_TIMESTAMP_MS, true),
            (MIN_TIMESTAMP_MS, true),
            (MAX_TIMESTAMP_MS + 1, false),
            (MIN_TIMESTAMP_MS - 1, false),
            (i64::MAX, false),
        ] {
            let mut b = BatchBuilder::new();
            b.append(1, None, Some(b"fine"), &[]);
            b.append(ms, None, Some(b"far"), &[]);
            let body = Bytes::from(b.finish(Compression::None).unwrap());
            match split_and_check(&body, 1 << 20) {
                Ok(_) => assert!(ok, "{ms} was accepted"),
                Err(e) => {
                    assert!(!ok, "{ms}: {e}");
                    assert!(matches!(e, IngestError::TimestampOutOfRange { record: 1, .. }), "{e}");
                    assert!(e.to_string().contains("2262-04-11"), "{e}");
                }
            }
        }
        // i64 nanoseconds of the limits are representable.
        assert!(MAX_TIMESTAMP_MS.checked_mul(1_000_000).is_some());
        assert!(MIN_TIMESTAMP_MS.checked_mul(1_000_000).is_some());
    }
}
