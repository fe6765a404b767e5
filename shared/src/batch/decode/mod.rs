//! Reading records back out of a checked batch frame, without copying them:
//! [`decode_records`] decompresses the records section (with an output
//! limit) and returns an iterator of [`RecordView`]s borrowing from it.
//!
//! Every length and varint is checked against the buffer; corrupt input is a
//! [`BatchError`] naming the record and byte position, never a panic.

use super::header::BatchHeader;
use super::varint::{VarintError, get_varint, get_varlong};
use super::{BatchError, HEADER_LEN};
use crate::compression::{Codec, decompress_into, decompress_verified_into};
use crate::record::{Header, Record};

/// One record, borrowed from a decoded records section.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Headers<'a>,
}

impl<'a> RecordView<'a> {
    /// The first header named `key`, if any; `Some(None)` for a null value.
    pub fn header(&self, key: &str) -> Option<Option<&'a [u8]>> {
        self.headers.iter().find(|h| h.key == key.as_bytes()).map(|h| h.value)
    }

    /// Converts to an owned [`Record`], given the batch's base timestamp.
    ///
    /// # Errors
    /// [`BatchError::HeaderKeyNotUtf8`] if a header key is not UTF-8.
    pub fn to_owned(&self, base_timestamp: i64, index: i32) -> Result<Record, BatchError> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for h in self.headers.iter() {
            let key = std::str::from_utf8(h.key).map_err(|_| BatchError::HeaderKeyNotUtf8 { index })?;
            headers.push(Header {
                key: key.to_owned(),
                value: h.value.map(<[u8]>::to_vec),
            });
        }
        Ok(Record {
            timestamp_ms: base_timestamp.wrapping_add(self.timestamp_delta),
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers,
        })
    }
}

/// The headers of one record, already validated, iterated lazily.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    raw: &'a [u8],
    count: usize,
    /// Where the last header starts in `raw` (0 without headers).
    last_start: usize,
}

/// One header, borrowed. Keys are bytes here; Kafka says they are UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> Headers<'a> {
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The headers as encoded: equal bytes, equal headers (a cheap test
    /// for "the same headers as the previous record").
    pub fn encoded(&self) -> &'a [u8] {
        self.raw
    }

    /// The encoded bytes of every header but the last: records of one
    /// stream that differ only in a last per-record header (a Loki push's
    /// nanoseconds) share them.
    pub fn before_last(&self) -> &'a [u8] {
        self.raw.get(..self.last_start).unwrap_or_default()
    }

    /// The last header.
    pub fn last(&self) -> Option<HeaderView<'a>> {
        if self.count == 0 {
            return None;
        }
        let (key, next) = get_bytes(self.raw, self.last_start).ok()?;
        let (value, _) = get_bytes(self.raw, next).ok()?;
        Some(HeaderView { key: key?, value })
    }

    /// The headers in order.
    pub fn iter(&self) -> impl Iterator<Item = HeaderView<'a>> + 'a {
        let raw = self.raw;
        let mut pos = 0;
        (0..self.count).map_while(move |_| {
            // Validated when the record was parsed, so these cannot fail; a
            // failure ends the iteration rather than panicking.
            let (key, next) = get_bytes(raw, pos).ok()?;
            let (value, next) = get_bytes(raw, next).ok()?;
            pos = next;
            Some(HeaderView { key: key?, value })
        })
    }
}

/// Iterator over the records of one batch.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    index: i32,
    count: i32,
    failed: bool,
    /// The previous record's headers: records of one stream repeat them
    /// byte for byte, and equal bytes need no second validation.
    previous_headers: Option<Headers<'a>>,
}

impl<'a> RecordIter<'a> {
    /// Iterates `count` records in an uncompressed records section.
    pub fn new(records: &'a [u8], count: i32) -> Self {
        Self {
            buf: records,
            pos: 0,
            index: 0,
            count,
            failed: false,
            previous_headers: None,
        }
    }
}

impl RecordIter<'_> {
    /// Byte position, in the records section, of the next record.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Skips the records that end at or before byte `pos` of the section,
    /// reading only their length prefixes: what a scan does with the
    /// records between two hits of a search over the whole section.
    ///
    /// # Errors
    /// A length prefix that is malformed or runs past the section; the
    /// iterator then yields nothing more.
    pub fn skip_before(&mut self, pos: usize) -> Result<(), BatchError> {
        while self.index < self.count && !self.failed {
            let start = self.pos;
            let bad = |what| BatchError::BadRecord {
                index: self.index,
                pos: start,
                what,
            };
            let end = match get_varint(self.buf, start) {
                Ok((len, body)) => usize::try_from(len)
                    .ok()
                    .and_then(|len| body.checked_add(len))
                    .filter(|&end| end <= self.buf.len())
                    .ok_or_else(|| bad("record length runs past the records section")),
                Err(_) => Err(bad("truncated varint")),
            };
            let end = match end {
                Ok(end) => end,
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            };
            if end > pos {
                break;
            }
            self.pos = end;
            self.index += 1;
        }
        Ok(())
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.index >= self.count {
            if self.pos < self.buf.len() {
                self.failed = true;
                return Some(Err(BatchError::TrailingRecordBytes {
                    extra: self.buf.len() - self.pos,
                    count: self.count,
                }));
            }
            return None;
        }
        let result = parse_record(self.buf, self.pos, self.index, self.previous_headers);
        match result {
            Ok((view, next)) => {
                self.pos = next;
                self.index += 1;
                self.previous_headers = Some(view.headers);
                Some(Ok(view))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Decompresses the records section of a checked `frame` into `scratch`
/// (when compressed) and iterates its records.
///
/// # Errors
/// [`BatchError::UnsupportedCompression`], or [`BatchError::Decompress`] for
/// corrupt data or a section inflating past `max_records_bytes`.
pub fn decode_records<'a>(
    frame: &'a [u8],
    header: &BatchHeader,
    max_records_bytes: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<RecordIter<'a>, BatchError> {
    let records = records_section(frame, header, max_records_bytes, scratch)?;
    Ok(RecordIter::new(records, header.records_count))
}

/// The uncompressed records section of a checked `frame`: the frame's own
/// bytes when uncompressed, else `scratch` after decompressing into it.
/// Lets a reader look at all the records' bytes at once (a query's literal
/// prefilter) before iterating them with [`RecordIter::new`].
///
/// # Errors
/// As [`decode_records`].
pub fn records_section<'a>(
    frame: &'a [u8],
    header: &BatchHeader,
    max_records_bytes: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], BatchError> {
    let section = section_of(frame, header)?;
    let records: &'a [u8] = match header.codec() {
        Some(Codec::None) => section,
        Some(codec) => {
            decompress_into(codec, section, scratch, max_records_bytes).map_err(BatchError::Decompress)?;
            scratch.as_slice()
        }
        None => return Err(BatchError::UnsupportedCompression(header.codec_id())),
    };
    Ok(records)
}

/// As [`records_section`], for a frame read back from storage: it was
/// fully verified when stored and [`check`](super::check) has just matched
/// its CRC-32C, so gzip's CRC-32 of the output is not computed again
/// (see [`crate::compression::decompress_verified_into`]).
///
/// # Errors
/// As [`records_section`].
pub fn stored_records_section<'a>(
    frame: &'a [u8],
    header: &BatchHeader,
    max_records_bytes: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], BatchError> {
    if header.codec() == Some(Codec::None) {
        return section_of(frame, header);
    }
    stored_records_section_into(frame, header, max_records_bytes, scratch)?;
    Ok(scratch.as_slice())
}

/// As [`stored_records_section`], always into `out` (an uncompressed
/// section is copied): for a section that must outlive the frame's buffer,
/// such as one inflated on another thread.
///
/// # Errors
/// As [`records_section`].
pub fn stored_records_section_into(
    frame: &[u8],
    header: &BatchHeader,
    max_records_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    let section = section_of(frame, header)?;
    match header.codec() {
        // As stored_records_section hands it out: no limit on stored bytes.
        Some(Codec::None) => {
            out.clear();
            out.extend_from_slice(section);
            Ok(())
        }
        Some(codec) => decompress_verified_into(codec, section, out, max_records_bytes).map_err(BatchError::Decompress),
        None => Err(BatchError::UnsupportedCompression(header.codec_id())),
    }
}

/// The records section of a frame, as stored (compressed or not).
fn section_of<'a>(frame: &'a [u8], header: &BatchHeader) -> Result<&'a [u8], BatchError> {
    frame.get(HEADER_LEN..header.frame_len()).ok_or(BatchError::Truncated {
        needed: header.frame_len(),
        available: frame.len(),
    })
}

/// The value of header `key` on the last record of a checked `frame`, if
/// any. Decompresses the records section (with a limit) to reach it.
///
/// # Errors
/// As [`decode_records`], and any record-level corruption.
pub fn last_record_header(
    frame: &[u8],
    header: &BatchHeader,
    key: &str,
    max_records_bytes: usize,
) -> Result<Option<Vec<u8>>, BatchError> {
    let mut scratch = Vec::new();
    let mut last = None;
    for record in decode_records(frame, header, max_records_bytes, &mut scratch)? {
        last = Some(record?);
    }
    Ok(last.and_then(|r| r.header(key).flatten().map(<[u8]>::to_vec)))
}

/// Decodes every record of a checked frame into owned [`Record`]s.
///
/// # Errors
/// As [`decode_records`], and any record-level corruption.
pub fn records_to_owned(frame: &[u8], max_records_bytes: usize) -> Result<Vec<Record>, BatchError> {
    let header = super::check(frame)?;
    let mut scratch = Vec::new();
    let mut out = Vec::with_capacity(usize::try_from(header.records_count).unwrap_or(0).min(1 << 16));
    for (index, view) in decode_records(frame, &header, max_records_bytes, &mut scratch)?.enumerate() {
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        out.push(view?.to_owned(header.base_timestamp, index)?);
    }
    Ok(out)
}

/// Parses the record starting at `start`; returns it and the position
/// after it. `known` is headers already validated (the
/// previous record's): when this record's header count and bytes are the
/// same, they are not walked again, which is most of a record's fields in
/// an agent's batch (`source`, `host`, `path` on every line).
pub(crate) fn parse_record<'a>(
    buf: &'a [u8],
    start: usize,
    index: i32,
    known: Option<Headers<'_>>,
) -> Result<(RecordView<'a>, usize), BatchError> {
    let bad = |pos: usize, what: &'static str| BatchError::BadRecord { index, pos, what };
    let varint_err = |pos: usize, e: VarintError| match e {
        VarintError::Truncated => bad(pos, "truncated varint"),
        VarintError::TooLong => bad(pos, "varint too long"),
    };

    let (len, body_start) = get_varint(buf, start).map_err(|e| varint_err(start, e))?;
    let len = usize::try_from(len).map_err(|_| bad(start, "negative record length"))?;
    let end = body_start
        .checked_add(len)
        .filter(|&end| end <= buf.len())
        .ok_or_else(|| bad(start, "record length runs past the records section"))?;
    // Parse within the record's own bytes, so a field can't reach the next record.
    let body = buf
        .get(..end)
        .ok_or_else(|| bad(start, "record length runs past the records section"))?;

    let attributes = *body
        .get(body_start)
        .ok_or_else(|| bad(body_start, "record ends before its attributes"))? as i8;
    let pos = body_start + 1;
    let (timestamp_delta, pos) = get_varlong(body, pos).map_err(|e| varint_err(pos, e))?;
    let (offset_delta, pos) = get_varint(body, pos).map_err(|e| varint_err(pos, e))?;
    let (key, pos) = get_bytes(body, pos).map_err(|(p, what)| bad(p, what))?;
    let (value, pos) = get_bytes(body, pos).map_err(|(p, what)| bad(p, what))?;
    let (header_count, pos) = get_varint(body, pos).map_err(|e| varint_err(pos, e))?;
    let header_count = usize::try_from(header_count).map_err(|_| bad(pos, "negative header count"))?;
    let headers_start = pos;
    let mut pos = pos;
    let mut last_start = 0;
    // Headers equal to the previous record's need no second validation,
    // nor do all but the last when only the last differs.
    let mut to_validate = header_count;
    if let Some(k) = known.filter(|k| k.count == header_count && k.count > 0) {
        if body.get(pos..end) == Some(k.raw) {
            pos = end;
            last_start = k.last_start;
            to_validate = 0;
        } else if body.get(pos..pos + k.last_start) == Some(k.before_last()) {
            pos += k.last_start;
            to_validate = 1;
        }
    }
    for _ in 0..to_validate {
        let (key, next) = get_bytes(body, pos).map_err(|(p, what)| bad(p, what))?;
        if key.is_none() {
            return Err(bad(pos, "null header key"));
        }
        let (_, next) = get_bytes(body, next).map_err(|(p, what)| bad(p, what))?;
        last_start = pos - headers_start;
        pos = next;
    }
    if pos != end {
        return Err(bad(pos, "record length does not match its fields"));
    }
    let headers = Headers {
        raw: body.get(headers_start..end).unwrap_or_default(),
        count: header_count,
        last_start,
    };
    Ok((
        RecordView {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        },
        end,
    ))
}

/// A field's bytes (`None` for null) and the position after it.
type Field<'a> = (Option<&'a [u8]>, usize);
/// Where a field went wrong, and how.
type FieldError = (usize, &'static str);

/// Reads a varint length and that many bytes; length -1 is null.
fn get_bytes(buf: &[u8], pos: usize) -> Result<Field<'_>, FieldError> {
    let (len, start) = get_varint(buf, pos).map_err(|e| match e {
        VarintError::Truncated => (pos, "truncated length"),
        VarintError::TooLong => (pos, "length varint too long"),
    })?;
    if len == -1 {
        return Ok((None, start));
    }
    let len = usize::try_from(len).map_err(|_| (pos, "negative length"))?;
    let end = start.checked_add(len).ok_or((pos, "length overflows"))?;
    let bytes = buf.get(start..end).ok_or((pos, "field runs past the record"))?;
    Ok((Some(bytes), end))
}

#[cfg(test)]
mod tests;
