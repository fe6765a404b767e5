//! Kafka's RecordBatch v2 (magic 2): the one format records travel and rest
//! in, from the agent's encoder through the collector's segments to Kafka
//! clients.
//!
//! ```text
//! offset  size  field                 CRC-32C covers
//!      0     8  base_offset
//!      8     4  batch_length          (bytes after this field)
//!     12     4  partition_leader_epoch
//!     16     1  magic = 2
//!     17     4  crc                   over bytes 21..end
//!     21     2  attributes            yes (compression in bits 0-2)
//!     23     4  last_offset_delta     yes
//!     27     8  base_timestamp        yes
//!     35     8  max_timestamp         yes
//!     43     8  producer_id           yes
//!     51     2  producer_epoch        yes
//!     53     4  base_sequence         yes
//!     57     4  records_count         yes
//!     61     …  records (compressed as one block when a codec is set)
//! ```
//!
//! Base offset and leader epoch lie outside the CRC, so the collector assigns
//! offsets by rewriting the first 8 bytes without touching the rest.
//!
//! Parts: [`header`] finds and checks frames without decompressing;
//! [`encode`] builds batches; [`decode`] reads records back; [`varint`] is
//! Kafka's zigzag varint.

pub mod decode;
pub mod encode;
pub mod header;
pub mod varint;

pub use decode::{
    HeaderView, Headers, RecordIter, RecordView, decode_records, last_record_header, records_section, records_to_owned,
    stored_records_section, stored_records_section_into,
};
pub use encode::{BatchBuilder, HeaderSet};
pub use header::{BatchHeader, ProducerInfo, check, frame_len, set_base_offset, set_partition_leader_epoch};

use crate::compression::CompressionError;

/// Bytes before a batch's own length field: base offset (8) + length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Smallest legal length field: the rest of the v2 header.
pub const MIN_BATCH_LEN: usize = HEADER_LEN - LOG_OVERHEAD;
/// The only record format logpost reads and writes.
pub const MAGIC_V2: i8 = 2;
/// `producer_id` of a batch sent without a producer identity.
pub const NO_PRODUCER_ID: i64 = -1;

/// Why bytes are not a valid batch. Positions are byte offsets within the
/// batch frame, or within its decompressed records section where it says so.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch length field is negative ({0})")]
    NegativeLength(i32),
    #[error("batch length {len} is out of range (minimum {min}, maximum {max} bytes)", min = MIN_BATCH_LEN)]
    BadLength { len: usize, max: usize },
    #[error("batch is truncated: {available} of {needed} bytes present")]
    Truncated { needed: usize, available: usize },
    #[error("{extra} bytes follow the batch")]
    TrailingBytes { extra: usize },
    #[error("unsupported magic byte {0} (only record batch v2, magic 2, is supported)")]
    BadMagic(i8),
    #[error("CRC mismatch: batch says {stored:#010x}, content has {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unsupported compression codec {0} (supported: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)")]
    UnsupportedCompression(u8),
    #[error("negative record count {0}")]
    NegativeCount(i32),
    #[error("records section could not be decompressed: {0}")]
    Decompress(#[source] CompressionError),
    #[error("record {index} at byte {pos} of the records section: {what}")]
    BadRecord { index: i32, pos: usize, what: &'static str },
    #[error("records section has {extra} bytes after the last of its {count} records")]
    TrailingRecordBytes { extra: usize, count: i32 },
    #[error("header key of record {index} is not UTF-8")]
    HeaderKeyNotUtf8 { index: i32 },
    #[error("batch holds {count} records, more than the {max} allowed")]
    TooManyRecords { count: i32, max: i32 },
    #[error("compression failed: {0}")]
    Compress(#[source] std::io::Error),
}
