//! Building batches: records are encoded into an uncompressed records
//! section as they arrive; `finish` compresses that section once and writes
//! the header and CRC.
//!
//! The agent's hot path appends millions of lines that share the same labels,
//! so headers come as pre-encoded [`HeaderSet`]s (built once per file) rather
//! than as per-record values.

use super::header::{BatchHeader, ProducerInfo, write_header};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{BatchError, HEADER_LEN};
use crate::compression::{Compression, compress_into};
use crate::record::Record;

/// Headers encoded once in record-header wire form, to be appended to many records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSet {
    bytes: Vec<u8>,
    count: i32,
}

impl HeaderSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one header. `None` is Kafka's null header value.
    pub fn push(&mut self, key: &str, value: Option<&[u8]>) {
        put_len_prefixed(&mut self.bytes, Some(key.as_bytes()));
        put_len_prefixed(&mut self.bytes, value);
        self.count += 1;
    }

    /// Number of headers in the set.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the set holds no header.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes every header, keeping the allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Accumulates records and produces one RecordBatch v2 frame.
#[derive(Debug)]
pub struct BatchBuilder {
    records: Vec<u8>,
    /// Where the last record starts in `records`.
    last_start: usize,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer: ProducerInfo,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty builder without a producer identity.
    pub fn new() -> Self {
        Self {
            records: Vec::new(),
            last_start: 0,
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer: ProducerInfo::NONE,
        }
    }

    /// Sets the producer id, epoch and base sequence written into the header.
    pub fn set_producer(&mut self, producer: ProducerInfo) {
        self.producer = producer;
    }

    /// Records appended so far.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Whether no record was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Uncompressed size of the records section so far.
    pub fn records_bytes(&self) -> usize {
        self.records.len()
    }

    /// Forgets every record (and the producer), keeping the allocation.
    pub fn clear(&mut self) {
        self.records.clear();
        self.count = 0;
        self.producer = ProducerInfo::NONE;
    }

    /// Appends one record whose headers are the concatenation of `header_sets`.
    ///
    /// # Panics
    /// If more than `i32::MAX` records are appended: batches are bounded by
    /// configuration far below that.
    pub fn append(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>, header_sets: &[&HeaderSet]) {
        if self.count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        let offset_delta = self.count;
        let header_count: i32 = header_sets.iter().map(|s| s.count).sum();
        let header_bytes: usize = header_sets.iter().map(|s| s.bytes.len()).sum();

        let body_len = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + len_prefixed_size(key)
            + len_prefixed_size(value)
            + varint_len(header_count)
            + header_bytes;
        let body_len_i32 = i32::try_from(body_len).expect("a record is bounded by max_line_bytes");
        self.records.reserve(varint_len(body_len_i32) + body_len);
        self.last_start = self.records.len();
        put_varint(&mut self.records, body_len_i32);
        self.records.push(0); // record attributes: unused in v2
        put_varlong(&mut self.records, timestamp_delta);
        put_varint(&mut self.records, offset_delta);
        put_len_prefixed(&mut self.records, key);
        put_len_prefixed(&mut self.records, value);
        put_varint(&mut self.records, header_count);
        for set in header_sets {
            self.records.extend_from_slice(&set.bytes);
        }
        self.count = self.count.checked_add(1).expect("record count fits in i32");
    }

    /// Adds one header to the last record appended (rewriting it in place).
    /// logpost's agent marks each batch's last record with the file
    /// position it reached, which the collector keeps per stream.
    /// Does nothing on an empty builder.
    pub fn add_header_to_last(&mut self, key: &str, value: &[u8]) {
        if self.count == 0 {
            return;
        }
        let Ok((view, _)) = super::decode::parse_record(&self.records, self.last_start, self.count - 1, None) else {
            return; // cannot happen: we encoded it
        };
        let timestamp_ms = self.base_timestamp.wrapping_add(view.timestamp_delta);
        let record_key = view.key.map(<[u8]>::to_vec);
        let value_bytes = view.value.map(<[u8]>::to_vec);
        let mut headers = HeaderSet::new();
        for h in view.headers.iter() {
            headers.push(&String::from_utf8_lossy(h.key), h.value);
        }
        headers.push(key, Some(value));
        self.records.truncate(self.last_start);
        self.count -= 1;
        let max_timestamp = self.max_timestamp;
        self.append(timestamp_ms, record_key.as_deref(), value_bytes.as_deref(), &[&headers]);
        self.max_timestamp = max_timestamp;
    }

    /// Appends an owned record.
    pub fn append_record(&mut self, record: &Record) {
        let mut headers = HeaderSet::new();
        for h in &record.headers {
            headers.push(&h.key, h.value.as_deref());
        }
        self.append(
            record.timestamp_ms,
            record.key.as_deref(),
            record.value.as_deref(),
            &[&headers],
        );
    }

    /// Encodes the batch: header, then the records section compressed with
    /// `compression`, then the CRC. Base offset 0; the collector assigns the real one.
    ///
    /// # Errors
    /// [`BatchError::Compress`] if the encoder fails.
    pub fn finish(&self, compression: Compression) -> Result<Vec<u8>, BatchError> {
        let mut frame = Vec::with_capacity(HEADER_LEN + self.records.len() / 4 + 64);
        self.finish_into(compression, &mut frame)?;
        Ok(frame)
    }

    /// As [`finish`](Self::finish), into `frame` (cleared first), reusing its allocation.
    ///
    /// # Errors
    /// [`BatchError::Compress`] if the encoder fails.
    pub fn finish_into(&self, compression: Compression, frame: &mut Vec<u8>) -> Result<(), BatchError> {
        frame.clear();
        self.finish_append(compression, frame)
    }

    /// Encodes the batch at the end of `out` (which may already hold other
    /// frames), so that a request body is built without copying frames.
    ///
    /// # Errors
    /// [`BatchError::Compress`] if the encoder fails.
    pub fn finish_append(&self, compression: Compression, out: &mut Vec<u8>) -> Result<(), BatchError> {
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        compress_into(compression, &self.records, out).map_err(BatchError::Compress)?;
        let frame = out.get_mut(start..).expect("start is within out");
        let header = BatchHeader {
            base_offset: 0,
            batch_length: 0, // computed from the frame by write_header
            partition_leader_epoch: -1,
            crc: 0,
            attributes: i16::from(compression.codec().id()),
            last_offset_delta: (self.count - 1).max(0),
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer: self.producer,
            records_count: self.count,
        };
        write_header(frame, &header);
        Ok(())
    }

    /// Reserves room for `bytes` more bytes of records (a size hint from
    /// the stream's previous batch, so that a busy file's batch does not
    /// grow by repeated copying).
    pub fn reserve(&mut self, bytes: usize) {
        self.records.reserve(bytes);
    }
}

fn len_prefixed_size(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint_len(-1),
        Some(b) => varint_len(len_i32(b)) + b.len(),
    }
}

fn put_len_prefixed(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, len_i32(b));
            out.extend_from_slice(b);
        }
    }
}

fn len_i32(bytes: &[u8]) -> i32 {
    i32::try_from(bytes.len()).expect("field is bounded by max_line_bytes, far below 2 GiB")
}
