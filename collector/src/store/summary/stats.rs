//! What one batch holds, for the segment summary: its exact time bounds
//! (records may be out of order, so the header's base timestamp is not the
//! minimum), record and line-byte counts, and the distinct label sets of its
//! records.
//!
//! Why a module of its own: the numbers are gathered where records are
//! decoded anyway (ingest's validation, recovery, a summary rebuild), by one
//! [`StatsBuilder`], so every path computes them the same way. It is the hot
//! part of validation, so consecutive records with the same headers (an
//! agent's batch is one file: one label set) cost one slice comparison.

use std::sync::Arc;

use logpost_shared::batch::{BatchError, BatchHeader, RecordView, decode_records};

/// Header names starting with this are logpost's own bookkeeping (cursor,
/// split marker, exact Loki timestamp), never labels.
pub const INTERNAL_HEADER_PREFIX: &str = "logpost.";

/// Most distinct label sets one batch may list. Agents' batches hold one
/// (a batch is one file), Loki pushes one per stream; past this the batch's
/// streams are "unknown", which costs pruning, never correctness.
pub const MAX_BATCH_STREAMS: usize = 16;

/// A stream's labels: a record's headers minus logpost's own, sorted by
/// name, the first of repeated names kept, values read as UTF-8 lossily.
pub type StreamLabels = Arc<[(String, String)]>;

/// What one batch holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStats {
    /// Smallest record timestamp (ms).
    pub min_timestamp: i64,
    /// Largest record timestamp (ms).
    pub max_timestamp: i64,
    /// Number of records.
    pub records: u64,
    /// Bytes of record values (the lines).
    pub line_bytes: u64,
    /// Distinct label sets; `None` when there were more than
    /// [`MAX_BATCH_STREAMS`] or the batch could not be decoded.
    pub streams: Option<Vec<StreamLabels>>,
}

impl BatchStats {
    /// Stats that claim nothing beyond what the header says: used when a
    /// batch cannot be decoded. The time bounds cover everything, so no
    /// query skips the batch by time.
    pub fn unknown(header: &BatchHeader) -> Self {
        BatchStats {
            min_timestamp: i64::MIN,
            max_timestamp: i64::MAX,
            records: u64::try_from(header.records_count).unwrap_or(0),
            line_bytes: 0,
            streams: None,
        }
    }

    /// Decodes a checked frame and gathers its stats.
    ///
    /// # Errors
    /// The records do not decompress within `max_records_bytes` or are corrupt.
    pub fn from_frame(frame: &[u8], header: &BatchHeader, max_records_bytes: usize) -> Result<Self, BatchError> {
        let mut scratch = Vec::new();
        let mut builder = StatsBuilder::new();
        for record in decode_records(frame, header, max_records_bytes, &mut scratch)? {
            let record = record?;
            builder.push(header.base_timestamp.wrapping_add(record.timestamp_delta), &record);
        }
        Ok(builder.finish())
    }
}

/// The label headers of one record (all but logpost's own), kept to tell
/// whether a later record has the same ones without allocating: a batch is
/// usually one stream, so this runs once per record on every hot path
/// (ingest's validation, query scans).
#[derive(Debug, Default)]
pub struct LabelBytes {
    /// The record's headers exactly as encoded.
    encoded: Vec<u8>,
    /// Its label headers as `[key len][key][value len][value]...`.
    labels: Vec<u8>,
    /// Its header count.
    count: usize,
    /// How many bytes of `encoded` precede its last header when that one
    /// is logpost's own (a Loki push's nanoseconds, different in every
    /// record); `None` otherwise.
    before_internal_last: Option<usize>,
    set: bool,
}

/// Whether a header is logpost's own rather than a label.
pub fn is_internal(key: &[u8]) -> bool {
    key.starts_with(INTERNAL_HEADER_PREFIX.as_bytes())
}

/// Takes `[len][bytes]` equal to `bytes` off the front of `rest`.
fn take_field(rest: &mut &[u8], bytes: &[u8]) -> bool {
    let len = (bytes.len() as u32).to_le_bytes();
    let Some(tail) = rest.strip_prefix(&len[..]).and_then(|t| t.strip_prefix(bytes)) else {
        return false;
    };
    *rest = tail;
    true
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl LabelBytes {
    /// Whether `record`'s label headers are the ones kept: one comparison
    /// when its headers are byte-identical, else a walk over them.
    pub fn same(&self, record: &RecordView<'_>) -> bool {
        if !self.set {
            return false;
        }
        let headers = &record.headers;
        if headers.encoded() == self.encoded.as_slice() {
            return true;
        }
        // The same headers but for a last one of logpost's own.
        if let Some(len) = self.before_internal_last
            && headers.len() == self.count
            && self.encoded.get(..len) == Some(headers.before_last())
            && headers.last().is_some_and(|h| is_internal(h.key))
        {
            return true;
        }
        let mut rest = self.labels.as_slice();
        for h in headers.iter() {
            if is_internal(h.key) {
                continue;
            }
            if !(take_field(&mut rest, h.key) && take_field(&mut rest, h.value.unwrap_or_default())) {
                return false;
            }
        }
        rest.is_empty()
    }

    /// Keeps `record`'s label headers.
    pub fn keep(&mut self, record: &RecordView<'_>) {
        self.encoded.clear();
        self.encoded.extend_from_slice(record.headers.encoded());
        self.count = record.headers.len();
        self.before_internal_last = record
            .headers
            .last()
            .filter(|h| is_internal(h.key))
            .map(|_| record.headers.before_last().len());
        self.labels.clear();
        for h in record.headers.iter() {
            if !is_internal(h.key) {
                put_field(&mut self.labels, h.key);
                put_field(&mut self.labels, h.value.unwrap_or_default());
            }
        }
        self.set = true;
    }
}

/// Gathers [`BatchStats`] record by record.
#[derive(Debug)]
pub struct StatsBuilder {
    min_timestamp: i64,
    max_timestamp: i64,
    records: u64,
    line_bytes: u64,
    streams: Option<Vec<StreamLabels>>,
    /// The previous record's label headers, to skip rebuilding an
    /// identical label set.
    last: LabelBytes,
}

impl Default for StatsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StatsBuilder {
            min_timestamp: i64::MAX,
            max_timestamp: i64::MIN,
            records: 0,
            line_bytes: 0,
            streams: Some(Vec::new()),
            last: LabelBytes::default(),
        }
    }

    /// Adds one record with its absolute timestamp.
    pub fn push(&mut self, timestamp_ms: i64, record: &RecordView<'_>) {
        self.min_timestamp = self.min_timestamp.min(timestamp_ms);
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        self.records += 1;
        self.line_bytes += record.value.map_or(0, |v| v.len() as u64);
        let Some(streams) = self.streams.as_mut() else {
            return;
        };
        if self.last.same(record) {
            return;
        }
        self.last.keep(record);
        let labels = stream_labels(record);
        if streams.contains(&labels) {
            return;
        }
        if streams.len() >= MAX_BATCH_STREAMS {
            self.streams = None;
        } else {
            streams.push(labels);
        }
    }

    /// The stats of the records pushed so far.
    pub fn finish(self) -> BatchStats {
        BatchStats {
            min_timestamp: self.min_timestamp,
            max_timestamp: self.max_timestamp,
            records: self.records,
            line_bytes: self.line_bytes,
            streams: self.streams,
        }
    }
}

/// The label set of one record (see [`StreamLabels`]).
pub fn stream_labels(record: &RecordView<'_>) -> StreamLabels {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(record.headers.len());
    for h in record.headers.iter() {
        if h.key.starts_with(INTERNAL_HEADER_PREFIX.as_bytes()) {
            continue;
        }
        let key = String::from_utf8_lossy(h.key);
        if pairs.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
        pairs.push((key.into_owned(), value));
    }
    pairs.sort();
    pairs.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpost_shared::batch::{BatchBuilder, HeaderSet, check};
    use logpost_shared::compression::Compression;

    type TestRecord<'a> = (i64, &'a [(&'a str, &'a str)], &'a str);

    fn frame(records: &[TestRecord<'_>]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for (ts, headers, line) in records {
            let mut hs = HeaderSet::new();
            for (k, v) in *headers {
                hs.push(k, Some(v.as_bytes()));
            }
            b.append(*ts, None, Some(line.as_bytes()), &[&hs]);
        }
        b.finish(Compression::Gzip { level: 1 }).unwrap()
    }

    #[test]
    fn exact_bounds_and_distinct_streams() {
        let f = frame(&[
            (100, &[("source", "a"), ("host", "h")], "one"),
            (50, &[("host", "h"), ("source", "a"), ("logpost.cursor", "x")], "two"),
            (70, &[("source", "b")], "three"),
            (80, &[("source", "a"), ("host", "h")], "four!"),
        ]);
        let header = check(&f).unwrap();
        let s = BatchStats::from_frame(&f, &header, 1 << 20).unwrap();
        assert_eq!(
            (s.min_timestamp, s.max_timestamp, s.records, s.line_bytes),
            (50, 100, 4, 16)
        );
        let streams = s.streams.unwrap();
        assert_eq!(streams.len(), 2, "{streams:?}");
        assert_eq!(
            &*streams[0],
            &[("host".to_string(), "h".to_string()), ("source".into(), "a".into())][..]
        );
        assert_eq!(&*streams[1], &[("source".to_string(), "b".to_string())][..]);
    }

    #[test]
    fn too_many_streams_is_unknown() {
        let names: Vec<String> = (0..=MAX_BATCH_STREAMS).map(|i| format!("s{i}")).collect();
        let headers: Vec<[(&str, &str); 1]> = names.iter().map(|n| [("source", n.as_str())]).collect();
        let records: Vec<TestRecord<'_>> = headers.iter().map(|h| (1, &h[..], "x")).collect();
        let f = frame(&records);
        let s = BatchStats::from_frame(&f, &check(&f).unwrap(), 1 << 20).unwrap();
        assert_eq!(s.streams, None);
        assert_eq!(s.records, MAX_BATCH_STREAMS as u64 + 1);
    }

    #[test]
    fn labels_are_the_same_whatever_a_last_internal_header_holds() {
        let f = frame(&[
            (1, &[("host", "h"), ("logpost.ns_be", "a")], "kept"),
            (1, &[("host", "h"), ("logpost.ns_be", "b")], "same labels"),
            (1, &[("host", "h"), ("logpost.ns", "b")], "same labels"),
            (1, &[("host", "h"), ("job", "b")], "a label last"),
            (1, &[("host", "g"), ("logpost.ns_be", "a")], "another host"),
            (1, &[("host", "h")], "no internal header"),
            (1, &[("logpost.ns_be", "a"), ("host", "h")], "internal first"),
            (
                1,
                &[("host", "h"), ("logpost.x", "1"), ("logpost.ns_be", "c")],
                "two internal",
            ),
        ]);
        let header = check(&f).unwrap();
        let mut scratch = Vec::new();
        let records: Vec<_> = decode_records(&f, &header, 1 << 20, &mut scratch)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut kept = LabelBytes::default();
        kept.keep(&records[0]);
        let same: Vec<bool> = records.iter().map(|r| kept.same(r)).collect();
        assert_eq!(same, [true, true, true, false, false, true, true, true]);
        // Kept from a record whose last header is a label: the walk decides.
        kept.keep(&records[3]);
        let same: Vec<bool> = records.iter().map(|r| kept.same(r)).collect();
        assert_eq!(same, [false, false, false, true, false, false, false, false]);
    }
}
