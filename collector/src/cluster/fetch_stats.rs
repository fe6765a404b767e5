//! The stats of the batches in a replica fetch answer, shipped in its
//! `x-logpost-batch-stats` header so that a follower stores the copies
//! without inflating and decoding every batch again for its summary (that
//! rebuild was about three quarters of a follower's CPU; issue 29).
//!
//! Why a module of its own: this is a wire format between nodes of
//! possibly different versions. The leader ships what its ring
//! (`store::partition::recent_stats`) remembers of the answer's batches;
//! the follower uses an entry only for a frame whose [`BatchKey`] (base
//! offset, length, CRC, counts) it matches exactly, and rebuilds the
//! stats of every other frame itself, as it did before. A missing,
//! truncated or garbled header therefore costs CPU, never correctness:
//! decoding fails with a [`FetchStatsError`] and the follower rebuilds.
//!
//! Format: base64 (standard alphabet, padded) of
//! `version:u8 = 1`, then a table of label sets (`count`, then per set
//! `pairs`, then per pair `key`, `value` as `len` + UTF-8 bytes), then
//! `count` batches, each `base_offset`, `batch_length`, `crc`,
//! `last_offset_delta`, `records_count`, `min_timestamp`,
//! `max_timestamp`, `records`, `line_bytes`, `streams` (0 = unknown, else
//! n + 1 followed by n table indexes) and the cursor (0 = none, 1 = not
//! known to the leader, 2 = `len` + UTF-8 bytes). Every number is a
//! zigzag varlong (Kafka's). Label sets are listed once per answer since
//! consecutive batches mostly share them.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use logpost_shared::batch::varint::{get_varlong, put_varlong};
use logpost_shared::batch::{BatchHeader, frame_len};

use crate::store::Partition;
use crate::store::partition::{BatchKey, KnownCursor, MAX_FRAME_BYTES, RecentBatch};
use crate::store::summary::stats::MAX_BATCH_STREAMS;
use crate::store::summary::{BatchStats, StreamLabels};

/// Response header of a replica fetch: the stats of its batches.
pub const BATCH_STATS_HEADER: &str = "x-logpost-batch-stats";
/// The format's version; a follower ignores a header of another.
const VERSION: u8 = 1;
/// Largest header value a leader sends: a third of hyper's default limit
/// on a whole response head (about 408 KiB), so that a follower of any
/// version reads the answer. One-stream batches take about 40 bytes each,
/// so this covers 2,000 or more; the rest of a larger answer is rebuilt.
pub const MAX_HEADER_BYTES: usize = 128 << 10;
/// Raw bytes that fit [`MAX_HEADER_BYTES`] once base64-encoded.
const MAX_RAW_BYTES: usize = MAX_HEADER_BYTES / 4 * 3;

/// Why a header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchStatsError {
    #[error("batch stats header is not base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("batch stats header byte 0: version {0}, expected 1")]
    Version(u8),
    #[error("batch stats header byte {pos}: ends inside {what}")]
    Truncated { pos: usize, what: &'static str },
    #[error("batch stats header byte {pos}: {what} out of range")]
    OutOfRange { pos: usize, what: &'static str },
    #[error("batch stats header byte {pos}: {what} is not UTF-8")]
    NotUtf8 { pos: usize, what: &'static str },
    #[error("batch stats header byte {pos}: bytes after the last batch")]
    Trailing { pos: usize },
}

/// The header value for the fetch answer `frames` read from `partition`:
/// what its ring remembers of them, `None` if nothing. Reads only the
/// frames' headers.
pub fn for_frames(partition: &Partition, frames: &[u8]) -> Option<String> {
    let mut keys = Vec::new();
    let mut pos = 0;
    while let Some(rest) = frames.get(pos..).filter(|r| !r.is_empty()) {
        let Ok(Some(len)) = frame_len(rest, MAX_FRAME_BYTES) else {
            break;
        };
        let Ok(header) = BatchHeader::parse(rest) else { break };
        keys.push(BatchKey::of(&header));
        pos += len;
    }
    let known: Vec<RecentBatch> = partition.recent_batches(&keys).into_iter().flatten().collect();
    encode(&known)
}

/// Encodes `batches` (in offset order), as many as fit
/// [`MAX_HEADER_BYTES`]; `None` if not even one does or there are none.
pub fn encode(batches: &[RecentBatch]) -> Option<String> {
    let mut table: Vec<&StreamLabels> = Vec::new();
    let mut ids: HashMap<&StreamLabels, usize> = HashMap::new();
    let mut table_bytes = Vec::new();
    let mut entries = Vec::new();
    let mut count = 0usize;
    for batch in batches {
        let (table_mark, entries_mark, table_len) = (table_bytes.len(), entries.len(), table.len());
        let streams = batch.stats.streams.as_ref();
        let mut indexes = Vec::new();
        for labels in streams.into_iter().flatten() {
            let id = *ids.entry(labels).or_insert_with(|| {
                table.push(labels);
                put_len(&mut table_bytes, labels.len());
                for (k, v) in labels.iter() {
                    put_str(&mut table_bytes, k);
                    put_str(&mut table_bytes, v);
                }
                table.len() - 1
            });
            indexes.push(id);
        }
        put_batch(&mut entries, batch, streams.map(|_| indexes.as_slice()));
        // 1 (version) + up to 10 each for the two counts.
        if 21 + table_bytes.len() + entries.len() > MAX_RAW_BYTES {
            table_bytes.truncate(table_mark);
            entries.truncate(entries_mark);
            for labels in table.drain(table_len..) {
                ids.remove(labels);
            }
            break;
        }
        count += 1;
    }
    if count == 0 {
        return None;
    }
    let mut raw = Vec::with_capacity(21 + table_bytes.len() + entries.len());
    raw.push(VERSION);
    put_len(&mut raw, table.len());
    raw.extend_from_slice(&table_bytes);
    put_len(&mut raw, count);
    raw.extend_from_slice(&entries);
    Some(STANDARD.encode(raw))
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_varlong(out, i64::try_from(n).unwrap_or(i64::MAX));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_batch(out: &mut Vec<u8>, batch: &RecentBatch, streams: Option<&[usize]>) {
    let (k, s) = (&batch.key, &batch.stats);
    put_varlong(out, k.base_offset);
    put_len(out, k.batch_length);
    put_varlong(out, i64::from(k.crc));
    put_varlong(out, i64::from(k.last_offset_delta));
    put_varlong(out, i64::from(k.records_count));
    put_varlong(out, s.min_timestamp);
    put_varlong(out, s.max_timestamp);
    // Bit-for-bit: u64 -> i64 -> u64 gives the value back.
    put_varlong(out, s.records as i64);
    put_varlong(out, s.line_bytes as i64);
    match streams {
        None => put_len(out, 0),
        Some(ids) => {
            put_len(out, ids.len() + 1);
            for &id in ids {
                put_len(out, id);
            }
        }
    }
    match &batch.cursor {
        KnownCursor::Known(None) => put_len(out, 0),
        KnownCursor::Unknown => put_len(out, 1),
        KnownCursor::Known(Some(c)) => {
            put_len(out, 2);
            put_str(out, c);
        }
    }
}

/// Decodes a header value into the batches it describes.
///
/// # Errors
/// Anything but what [`encode`] writes: a clear error, never a panic, and
/// no allocation larger than the value itself.
pub fn decode(value: &[u8]) -> Result<Vec<RecentBatch>, FetchStatsError> {
    let raw = STANDARD.decode(value).map_err(FetchStatsError::Base64)?;
    let mut r = Reader { buf: &raw, pos: 0 };
    let version = r.byte("version")?;
    if version != VERSION {
        return Err(FetchStatsError::Version(version));
    }
    let sets = r.count("label set count")?;
    let mut table: Vec<StreamLabels> = Vec::with_capacity(sets);
    for _ in 0..sets {
        let pairs = r.count("label count")?;
        let mut labels = Vec::with_capacity(pairs);
        for _ in 0..pairs {
            labels.push((r.string("label name")?, r.string("label value")?));
        }
        table.push(labels.into());
    }
    let batches = r.count("batch count")?;
    let mut out = Vec::with_capacity(batches);
    for _ in 0..batches {
        out.push(r.batch(&table)?);
    }
    if r.pos != raw.len() {
        return Err(FetchStatsError::Trailing { pos: r.pos });
    }
    Ok(out)
}

/// A cursor over a decoded header; every read is checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self, what: &'static str) -> Result<u8, FetchStatsError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(FetchStatsError::Truncated { pos: self.pos, what })?;
        self.pos += 1;
        Ok(b)
    }

    fn number(&mut self, what: &'static str) -> Result<i64, FetchStatsError> {
        let (value, next) = get_varlong(self.buf, self.pos).map_err(|e| match e {
            logpost_shared::batch::varint::VarintError::Truncated => FetchStatsError::Truncated { pos: self.pos, what },
            logpost_shared::batch::varint::VarintError::TooLong => FetchStatsError::OutOfRange { pos: self.pos, what },
        })?;
        self.pos = next;
        Ok(value)
    }

    fn int<T: TryFrom<i64>>(&mut self, what: &'static str) -> Result<T, FetchStatsError> {
        let pos = self.pos;
        T::try_from(self.number(what)?).map_err(|_| FetchStatsError::OutOfRange { pos, what })
    }

    /// A count of things that take at least a byte each: never more than
    /// the bytes left, so a hostile count cannot make us allocate.
    fn count(&mut self, what: &'static str) -> Result<usize, FetchStatsError> {
        let pos = self.pos;
        let n: usize = self.int(what)?;
        if n > self.buf.len().saturating_sub(self.pos) {
            return Err(FetchStatsError::OutOfRange { pos, what });
        }
        Ok(n)
    }

    fn string(&mut self, what: &'static str) -> Result<String, FetchStatsError> {
        let len: usize = self.int(what)?;
        let start = self.pos;
        let bytes = start
            .checked_add(len)
            .and_then(|end| self.buf.get(start..end))
            .ok_or(FetchStatsError::Truncated { pos: start, what })?;
        self.pos += len;
        String::from_utf8(bytes.to_vec()).map_err(|_| FetchStatsError::NotUtf8 { pos: start, what })
    }

    fn batch(&mut self, table: &[StreamLabels]) -> Result<RecentBatch, FetchStatsError> {
        let key = BatchKey {
            base_offset: self.number("base offset")?,
            batch_length: self.int("batch length")?,
            crc: self.int("crc")?,
            last_offset_delta: self.int("last offset delta")?,
            records_count: self.int("records count")?,
        };
        let min_timestamp = self.number("min timestamp")?;
        let max_timestamp = self.number("max timestamp")?;
        let records = self.number("records")? as u64;
        let line_bytes = self.number("line bytes")? as u64;
        let pos = self.pos;
        let streams = match self.int::<usize>("stream count")? {
            0 => None,
            n if n - 1 > MAX_BATCH_STREAMS => {
                return Err(FetchStatsError::OutOfRange {
                    pos,
                    what: "stream count",
                });
            }
            n => {
                let mut streams = Vec::with_capacity(n - 1);
                for _ in 1..n {
                    let pos = self.pos;
                    let id: usize = self.int("stream index")?;
                    let labels = table.get(id).ok_or(FetchStatsError::OutOfRange {
                        pos,
                        what: "stream index",
                    })?;
                    streams.push(Arc::clone(labels));
                }
                Some(streams)
            }
        };
        let pos = self.pos;
        let cursor = match self.int::<u8>("cursor tag")? {
            0 => KnownCursor::Known(None),
            1 => KnownCursor::Unknown,
            2 => KnownCursor::Known(Some(self.string("cursor")?)),
            _ => {
                return Err(FetchStatsError::OutOfRange {
                    pos,
                    what: "cursor tag",
                });
            }
        };
        Ok(RecentBatch {
            key,
            stats: Arc::new(BatchStats {
                min_timestamp,
                max_timestamp,
                records,
                line_bytes,
                streams,
            }),
            cursor,
        })
    }
}

#[cfg(test)]
mod tests;
