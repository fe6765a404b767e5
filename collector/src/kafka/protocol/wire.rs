//! Kafka's primitive wire types: a bounds-checked [`Reader`] over one request
//! frame and a chunked [`Writer`] for responses.
//!
//! Everything read here comes from the network, so every length is checked
//! against the bytes actually left before anything is allocated: an array
//! that claims two billion elements in a 20-byte frame is an error, not an
//! allocation. The writer keeps large payloads (record batches) as separate
//! [`Bytes`] chunks so that fetch responses are written without copying them.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Why a frame could not be decoded. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame ended before the field did.
    Truncated,
    /// A length or count that cannot be right (negative, or larger than what is left).
    BadLength(&'static str),
    /// A string that is not UTF-8.
    BadUtf8,
    /// A varint longer than its type allows.
    BadVarint,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "frame truncated"),
            DecodeError::BadLength(what) => write!(f, "invalid length for {what}"),
            DecodeError::BadUtf8 => write!(f, "string is not UTF-8"),
            DecodeError::BadVarint => write!(f, "malformed varint"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Result of decoding.
pub type DecodeResult<T> = Result<T, DecodeError>;

/// Reads Kafka primitives from one frame. Slices of the frame (record
/// batches) are handed out as [`Bytes`] sharing the frame's allocation.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Reads from `buf`.
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let head = self.buf.get(..N).ok_or(DecodeError::Truncated)?;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        let _ = self.buf.split_to(N);
        Ok(out)
    }

    fn take_bytes(&mut self, len: usize) -> DecodeResult<Bytes> {
        if len > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.split_to(len))
    }

    /// INT8.
    pub fn i8(&mut self) -> DecodeResult<i8> {
        Ok(i8::from_be_bytes(self.take()?))
    }

    /// BOOLEAN (any non-zero byte is true, as in Kafka).
    pub fn bool(&mut self) -> DecodeResult<bool> {
        Ok(self.i8()? != 0)
    }

    /// INT16.
    pub fn i16(&mut self) -> DecodeResult<i16> {
        Ok(i16::from_be_bytes(self.take()?))
    }

    /// INT32.
    pub fn i32(&mut self) -> DecodeResult<i32> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    /// INT64.
    pub fn i64(&mut self) -> DecodeResult<i64> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    /// UNSIGNED_VARINT (at most 5 bytes).
    pub fn uvarint(&mut self) -> DecodeResult<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.take::<1>()?;
            if i == 4 && b > 0x0f {
                return Err(DecodeError::BadVarint);
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint)
    }

    fn utf8(bytes: Bytes) -> DecodeResult<String> {
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadUtf8)
    }

    /// NULLABLE_STRING (INT16 length, -1 is null).
    pub fn nullable_string(&mut self) -> DecodeResult<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return if len == -1 {
                Ok(None)
            } else {
                Err(DecodeError::BadLength("string"))
            };
        }
        let bytes = self.take_bytes(len as usize)?;
        Self::utf8(bytes).map(Some)
    }

    /// STRING (INT16 length, never null).
    pub fn string(&mut self) -> DecodeResult<String> {
        self.nullable_string()?
            .ok_or(DecodeError::BadLength("non-nullable string"))
    }

    /// COMPACT_NULLABLE_STRING (UNSIGNED_VARINT length + 1, 0 is null).
    pub fn compact_nullable_string(&mut self) -> DecodeResult<Option<String>> {
        match self.uvarint()? {
            0 => Ok(None),
            n => {
                let bytes = self.take_bytes((n - 1) as usize)?;
                Self::utf8(bytes).map(Some)
            }
        }
    }

    /// COMPACT_STRING.
    pub fn compact_string(&mut self) -> DecodeResult<String> {
        self.compact_nullable_string()?
            .ok_or(DecodeError::BadLength("non-nullable compact string"))
    }

    /// NULLABLE_BYTES / RECORDS (INT32 length, -1 is null). Shares the frame's memory.
    pub fn nullable_bytes(&mut self) -> DecodeResult<Option<Bytes>> {
        let len = self.i32()?;
        if len < 0 {
            return if len == -1 {
                Ok(None)
            } else {
                Err(DecodeError::BadLength("bytes"))
            };
        }
        self.take_bytes(len as usize).map(Some)
    }

    /// BYTES (never null).
    pub fn bytes(&mut self) -> DecodeResult<Bytes> {
        self.nullable_bytes()?
            .ok_or(DecodeError::BadLength("non-nullable bytes"))
    }

    /// ARRAY with an INT32 count, -1 is null. `min_elem` is the smallest
    /// encoding of one element: it bounds the count by what is left in the
    /// frame before anything is allocated.
    pub fn nullable_array<T>(
        &mut self,
        min_elem: usize,
        mut elem: impl FnMut(&mut Reader) -> DecodeResult<T>,
    ) -> DecodeResult<Option<Vec<T>>> {
        let count = self.i32()?;
        if count < 0 {
            return if count == -1 {
                Ok(None)
            } else {
                Err(DecodeError::BadLength("array"))
            };
        }
        let count = count as usize;
        if count.saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(DecodeError::BadLength("array"));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(elem(self)?);
        }
        Ok(Some(out))
    }

    /// ARRAY that must not be null.
    pub fn array<T>(
        &mut self,
        min_elem: usize,
        elem: impl FnMut(&mut Reader) -> DecodeResult<T>,
    ) -> DecodeResult<Vec<T>> {
        self.nullable_array(min_elem, elem)?
            .ok_or(DecodeError::BadLength("non-nullable array"))
    }

    /// Skips a TAGGED_FIELDS section (flexible versions): nothing we support
    /// needs a tagged field, and unknown ones must be ignored by design.
    pub fn skip_tagged_fields(&mut self) -> DecodeResult<()> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            self.take_bytes(size as usize)?;
        }
        Ok(())
    }
}

/// Builds a response body. Small fields accumulate in one buffer; large
/// payloads added with [`Writer::put_shared`] become chunks of their own.
#[derive(Debug, Default)]
pub struct Writer {
    buf: BytesMut,
    chunks: Vec<Bytes>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len() + self.chunks.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// INT8.
    pub fn i8(&mut self, v: i8) {
        self.buf.put_i8(v);
    }

    /// BOOLEAN.
    pub fn bool(&mut self, v: bool) {
        self.buf.put_u8(u8::from(v));
    }

    /// INT16.
    pub fn i16(&mut self, v: i16) {
        self.buf.put_i16(v);
    }

    /// INT32.
    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    /// INT64.
    pub fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    /// UNSIGNED_VARINT.
    pub fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }

    /// STRING. Strings we write came off the wire or from our own config, so
    /// they fit an INT16 length; a longer one is cut rather than mis-framed.
    pub fn string(&mut self, s: &str) {
        let bytes = clamp(s.as_bytes(), i16::MAX as usize);
        self.buf.put_i16(bytes.len() as i16);
        self.buf.put_slice(bytes);
    }

    /// NULLABLE_STRING.
    pub fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.buf.put_i16(-1),
        }
    }

    /// COMPACT_STRING.
    pub fn compact_string(&mut self, s: &str) {
        let bytes = clamp(s.as_bytes(), (u32::MAX - 1) as usize);
        self.uvarint(bytes.len() as u32 + 1);
        self.buf.put_slice(bytes);
    }

    /// BYTES, copied into the body (small payloads such as group metadata).
    pub fn bytes(&mut self, b: &[u8]) {
        let b = clamp(b, i32::MAX as usize);
        self.buf.put_i32(b.len() as i32);
        self.buf.put_slice(b);
    }

    /// NULLABLE_BYTES.
    pub fn nullable_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bytes(b),
            None => self.buf.put_i32(-1),
        }
    }

    /// Appends `b` without copying it; the caller writes any length prefix.
    pub fn put_shared(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.split().freeze());
        }
        self.chunks.push(b);
    }

    /// An ARRAY count. Counts we write describe vectors we built, so they fit.
    pub fn array_len(&mut self, n: usize) {
        self.buf.put_i32(i32::try_from(n).unwrap_or(i32::MAX));
    }

    /// A COMPACT_ARRAY count (length + 1).
    pub fn compact_array_len(&mut self, n: usize) {
        self.uvarint(u32::try_from(n).unwrap_or(u32::MAX - 1).saturating_add(1));
    }

    /// An empty TAGGED_FIELDS section.
    pub fn empty_tagged_fields(&mut self) {
        self.buf.put_u8(0);
    }

    /// The written bytes, as chunks in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.split().freeze());
        }
        self.chunks
    }
}

fn clamp(b: &[u8], max: usize) -> &[u8] {
    b.get(..max).unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat(chunks: Vec<Bytes>) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn primitives_round_trip() {
        let mut w = Writer::new();
        w.i8(-3);
        w.bool(true);
        w.i16(-2);
        w.i32(123_456);
        w.i64(-9_876_543_210);
        w.string("topic");
        w.nullable_string(None);
        w.bytes(b"abc");
        w.nullable_bytes(None);
        w.uvarint(300);
        w.compact_string("héllo");
        w.array_len(2);
        w.i32(7);
        w.i32(8);
        let bytes = Bytes::from(concat(w.into_chunks()));
        let mut r = Reader::new(bytes);
        assert_eq!(r.i8().unwrap(), -3);
        assert!(r.bool().unwrap());
        assert_eq!(r.i16().unwrap(), -2);
        assert_eq!(r.i32().unwrap(), 123_456);
        assert_eq!(r.i64().unwrap(), -9_876_543_210);
        assert_eq!(r.string().unwrap(), "topic");
        assert_eq!(r.nullable_string().unwrap(), None);
        assert_eq!(&r.bytes().unwrap()[..], b"abc");
        assert_eq!(r.nullable_bytes().unwrap(), None);
        assert_eq!(r.uvarint().unwrap(), 300);
        assert_eq!(r.compact_string().unwrap(), "héllo");
        assert_eq!(r.array(4, |r| r.i32()).unwrap(), vec![7, 8]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn huge_array_count_is_rejected_before_allocating() {
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]));
        assert_eq!(r.array(4, |r| r.i32()), Err(DecodeError::BadLength("array")));
    }

    #[test]
    fn negative_lengths_other_than_null_are_errors() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xfe]));
        assert_eq!(r.nullable_string(), Err(DecodeError::BadLength("string")));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]));
        assert_eq!(r.nullable_bytes(), Err(DecodeError::BadLength("bytes")));
    }

    #[test]
    fn truncation_and_bad_input_are_errors_not_panics() {
        let mut r = Reader::new(Bytes::from_static(&[0, 10, b'a']));
        assert_eq!(r.string(), Err(DecodeError::Truncated));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff]));
        assert_eq!(r.uvarint(), Err(DecodeError::BadVarint));
        let mut r = Reader::new(Bytes::from_static(&[0, 2, 0xc3, 0x28]));
        assert_eq!(r.string(), Err(DecodeError::BadUtf8));
        let mut r = Reader::new(Bytes::from_static(&[1, 5, 10, 1]));
        assert_eq!(r.skip_tagged_fields(), Err(DecodeError::Truncated));
        let mut r = Reader::new(Bytes::new());
        assert_eq!(r.i64(), Err(DecodeError::Truncated));
    }

    #[test]
    fn shared_chunks_are_not_copied() {
        let payload = Bytes::from(vec![9u8; 1000]);
        let mut w = Writer::new();
        w.i32(1000);
        w.put_shared(payload.clone());
        w.i16(5);
        let chunks = w.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), payload.as_ptr());
        assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), 4 + 1000 + 2);
    }

    #[test]
    fn tagged_fields_are_skipped() {
        // two tagged fields: tag 0 size 2, tag 5 size 0
        let mut r = Reader::new(Bytes::from_static(&[2, 0, 2, 0xaa, 0xbb, 5, 0, 42]));
        r.skip_tagged_fields().unwrap();
        assert_eq!(r.i8().unwrap(), 42);
    }
}
