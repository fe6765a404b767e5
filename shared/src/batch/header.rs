//! Finding and checking batch frames without decompressing them: what the
//! collector does to every batch on the way in and what recovery does to
//! every batch in a segment tail.
//!
//! Nothing here allocates. `frame_len` answers "is a whole batch here yet?"
//! and `check` answers "is this whole batch intact?" (magic, CRC, codec).
#![allow(clippy::indexing_slicing)] // only fixed ranges inside a length checked first

use super::{BatchError, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, MIN_BATCH_LEN};
use crate::compression::Codec;

/// Position of each header field in the frame.
mod pos {
    pub const BASE_OFFSET: usize = 0;
    pub const LENGTH: usize = 8;
    pub const LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORDS_COUNT: usize = 57;
}

/// Attribute bits beyond the codec.
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const CODEC_MASK: i16 = 0x07;

/// Who produced a batch, for deduplication: Kafka's idempotent-producer
/// fields. logpost's agent uses one producer id per tailed file (a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record; the others follow by one.
    pub base_sequence: i32,
}

impl ProducerInfo {
    /// The fields of a batch sent without a producer identity.
    pub const NONE: ProducerInfo = ProducerInfo {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// The fixed 61-byte header of a batch, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The length field: bytes after it, so the frame is `LOG_OVERHEAD + batch_length`.
    pub batch_length: usize,
    pub partition_leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer: ProducerInfo,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the front of `buf` without checking the CRC.
    ///
    /// # Errors
    /// [`BatchError::Truncated`] if fewer than 61 bytes are present, and the
    /// length and magic errors of [`frame_len`].
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let Some(head) = buf.get(..HEADER_LEN) else {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        };
        let raw_len = be_i32(head, pos::LENGTH);
        let batch_length = usize::try_from(raw_len).map_err(|_| BatchError::NegativeLength(raw_len))?;
        if batch_length < MIN_BATCH_LEN {
            return Err(BatchError::BadLength {
                len: batch_length,
                max: usize::MAX,
            });
        }
        let magic = head[pos::MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: be_i64(head, pos::BASE_OFFSET),
            batch_length,
            partition_leader_epoch: be_i32(head, pos::LEADER_EPOCH),
            crc: u32::from_be_bytes(fixed(head, pos::CRC)),
            attributes: i16::from_be_bytes(fixed(head, pos::ATTRIBUTES)),
            last_offset_delta: be_i32(head, pos::LAST_OFFSET_DELTA),
            base_timestamp: be_i64(head, pos::BASE_TIMESTAMP),
            max_timestamp: be_i64(head, pos::MAX_TIMESTAMP),
            producer: ProducerInfo {
                producer_id: be_i64(head, pos::PRODUCER_ID),
                producer_epoch: i16::from_be_bytes(fixed(head, pos::PRODUCER_EPOCH)),
                base_sequence: be_i32(head, pos::BASE_SEQUENCE),
            },
            records_count: be_i32(head, pos::RECORDS_COUNT),
        })
    }

    /// Total bytes of the frame, length prefix included.
    pub fn frame_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The compression codec bits, not yet checked to be one we support.
    pub fn codec_id(&self) -> u8 {
        (self.attributes & CODEC_MASK) as u8
    }

    /// The codec, if logpost supports it.
    pub fn codec(&self) -> Option<Codec> {
        Codec::from_id(self.codec_id())
    }

    /// Whether timestamps are the broker's append time rather than create time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Part of a Kafka transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// A Kafka control batch (transaction markers), not data.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Length of the batch at the front of `buf`, found without decoding it.
///
/// `Ok(None)` means "not all here yet". That is the normal state of a socket
/// or of a segment tail after a crash, so it is not an error and allocates
/// nothing. CRC and records are `check`'s and `decode`'s job, on a whole frame.
///
/// # Errors
/// A negative length, a length below the v2 header or above `max_batch_bytes`,
/// or (once the magic byte is present) a magic other than 2.
pub fn frame_len(buf: &[u8], max_batch_bytes: usize) -> Result<Option<usize>, BatchError> {
    let Some(raw) = buf.get(pos::LENGTH..LOG_OVERHEAD) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(raw.try_into().expect("range is 4 bytes long"));
    let len = usize::try_from(len).map_err(|_| BatchError::NegativeLength(len))?;
    if len < MIN_BATCH_LEN || LOG_OVERHEAD + len > max_batch_bytes {
        return Err(BatchError::BadLength {
            len,
            max: max_batch_bytes,
        });
    }
    if let Some(&magic) = buf.get(pos::MAGIC)
        && magic as i8 != MAGIC_V2
    {
        return Err(BatchError::BadMagic(magic as i8));
    }
    Ok((buf.len() >= LOG_OVERHEAD + len).then_some(LOG_OVERHEAD + len))
}

/// Checks one whole frame: length matches, magic 2, CRC-32C, a supported
/// codec and a non-negative count. Does not decompress.
///
/// # Errors
/// The first problem found, as a [`BatchError`].
pub fn check(frame: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(frame)?;
    let needed = header.frame_len();
    if frame.len() < needed {
        return Err(BatchError::Truncated {
            needed,
            available: frame.len(),
        });
    }
    if frame.len() > needed {
        return Err(BatchError::TrailingBytes {
            extra: frame.len() - needed,
        });
    }
    let computed = crc32c::crc32c(&frame[pos::ATTRIBUTES..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    if header.codec().is_none() {
        return Err(BatchError::UnsupportedCompression(header.codec_id()));
    }
    if header.records_count < 0 {
        return Err(BatchError::NegativeCount(header.records_count));
    }
    Ok(header)
}

/// Rewrites a frame's base offset in place. The CRC does not cover it, so the
/// batch stays valid: this is how the collector assigns offsets.
///
/// # Panics
/// If `frame` is shorter than 8 bytes; callers pass checked frames.
pub fn set_base_offset(frame: &mut [u8], base_offset: i64) {
    frame[pos::BASE_OFFSET..pos::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch in place (outside the CRC, like the base offset).
///
/// # Panics
/// If `frame` is shorter than 16 bytes; callers pass checked frames.
pub fn set_partition_leader_epoch(frame: &mut [u8], epoch: i32) {
    frame[pos::LEADER_EPOCH..pos::LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Writes the fixed header into `frame[..61]` and the CRC over `frame[21..]`.
/// `frame` must already hold the records section after byte 61.
pub(super) fn write_header(frame: &mut [u8], h: &BatchHeader) {
    let len = i32::try_from(frame.len() - LOG_OVERHEAD).expect("batch size is bounded well below 2 GiB");
    frame[pos::BASE_OFFSET..pos::BASE_OFFSET + 8].copy_from_slice(&h.base_offset.to_be_bytes());
    frame[pos::LENGTH..pos::LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    frame[pos::LEADER_EPOCH..pos::LEADER_EPOCH + 4].copy_from_slice(&h.partition_leader_epoch.to_be_bytes());
    frame[pos::MAGIC] = MAGIC_V2 as u8;
    frame[pos::ATTRIBUTES..pos::ATTRIBUTES + 2].copy_from_slice(&h.attributes.to_be_bytes());
    frame[pos::LAST_OFFSET_DELTA..pos::LAST_OFFSET_DELTA + 4].copy_from_slice(&h.last_offset_delta.to_be_bytes());
    frame[pos::BASE_TIMESTAMP..pos::BASE_TIMESTAMP + 8].copy_from_slice(&h.base_timestamp.to_be_bytes());
    frame[pos::MAX_TIMESTAMP..pos::MAX_TIMESTAMP + 8].copy_from_slice(&h.max_timestamp.to_be_bytes());
    frame[pos::PRODUCER_ID..pos::PRODUCER_ID + 8].copy_from_slice(&h.producer.producer_id.to_be_bytes());
    frame[pos::PRODUCER_EPOCH..pos::PRODUCER_EPOCH + 2].copy_from_slice(&h.producer.producer_epoch.to_be_bytes());
    frame[pos::BASE_SEQUENCE..pos::BASE_SEQUENCE + 4].copy_from_slice(&h.producer.base_sequence.to_be_bytes());
    frame[pos::RECORDS_COUNT..pos::RECORDS_COUNT + 4].copy_from_slice(&h.records_count.to_be_bytes());
    let crc = crc32c::crc32c(&frame[pos::ATTRIBUTES..]);
    frame[pos::CRC..pos::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

fn fixed<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf[at..at + N].try_into().expect("slice has length N")
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(fixed(buf, at))
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(fixed(buf, at))
}
