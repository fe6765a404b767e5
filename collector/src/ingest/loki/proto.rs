//! Loki's push protobuf (`logproto.PushRequest`, as in Loki's
//! `pkg/push/push.proto`), declared with prost's derives so that no
//! protoc runs at build time. Field numbers and types are Loki's; the
//! line is read as bytes (wire-compatible with Loki's `string`) so that a
//! line is kept byte for byte even if a shipper sends invalid UTF-8.

use super::{Entry, Push, PushError, Stream, labels::parse_labels};

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`: one stream's labels and entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// `{name="value", ...}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Loki's own hash of the labels; unused.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "vec", tag = "2")]
    pub line: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`: one structured-metadata pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Decodes an (already decompressed) protobuf push.
///
/// # Errors
/// Malformed protobuf, a malformed label string, or a missing or
/// out-of-range timestamp, naming the stream and entry.
pub fn decode(bytes: &[u8]) -> Result<Push, PushError> {
    let req = <PushRequest as prost::Message>::decode(bytes).map_err(PushError::Protobuf)?;
    let streams = req
        .streams
        .into_iter()
        .enumerate()
        .map(|(stream, s)| {
            let labels = parse_labels(&s.labels).map_err(|source| PushError::Labels {
                stream,
                labels: s.labels.clone(),
                source,
            })?;
            let entries = s
                .entries
                .into_iter()
                .enumerate()
                .map(|(entry, e)| {
                    let ts = e.timestamp.ok_or(PushError::MissingTimestamp { stream, entry })?;
                    if !(0..1_000_000_000).contains(&ts.nanos) {
                        return Err(PushError::BadTimestamp {
                            stream,
                            entry,
                            value: format!("{}s + {}ns", ts.seconds, ts.nanos),
                        });
                    }
                    Ok(Entry {
                        timestamp_ns: i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos),
                        line: e.line,
                        metadata: e.structured_metadata.into_iter().map(|p| (p.name, p.value)).collect(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Stream { labels, entries })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Push { streams })
}
