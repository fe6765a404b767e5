//! Loki's push API bodies (`POST /loki/api/v1/push`), as Promtail, Alloy
//! and Fluent Bit send them: decompressed within a limit, decoded into
//! streams of entries, and turned into record batches for the store.
//!
//! # Layout
//! - [`labels`]: the `{name="value"}` label strings of protobuf pushes.
//! - [`proto`]: the protobuf body (snappy block format).
//! - [`json`]: the JSON body (plain or gzip).
//! - [`records`]: streams → topics → RecordBatch v2, one batch per stream.
//!
//! Nothing here touches the store or the runtime: the HTTP handler runs
//! this on the blocking pool and hands the batches to the writer threads.

pub mod json;
pub mod labels;
pub mod proto;
pub mod records;

use logpost_shared::compression::{Codec, CompressionError, decompress_into};

/// A decoded push: streams in body order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub streams: Vec<Stream>,
}

/// One stream: its labels and entries, in body order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub labels: Vec<(String, String)>,
    pub entries: Vec<Entry>,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Nanoseconds since the epoch, as the shipper sent them.
    pub timestamp_ns: i128,
    pub line: Vec<u8>,
    /// Structured metadata pairs.
    pub metadata: Vec<(String, String)>,
}

/// Why a push was refused. Every variant but `TooLarge` and the media-type
/// ones is a 400 naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("content type {0:?} is not supported; send application/x-protobuf (snappy-compressed) or application/json")]
    ContentType(String),
    #[error("content encoding {0:?} is not supported; send gzip or none")]
    ContentEncoding(String),
    #[error("body inflates past the limit of {limit} bytes (loki.max_decompressed_bytes)")]
    TooLarge { limit: usize },
    #[error("gzip body cannot be decompressed")]
    Gzip(#[source] CompressionError),
    #[error("snappy body cannot be decompressed (protobuf pushes are snappy block format)")]
    Snappy(#[source] snap::Error),
    #[error("body is not a Loki PushRequest protobuf")]
    Protobuf(#[source] prost::DecodeError),
    #[error("body is not a Loki push JSON document")]
    Json(#[source] serde_json::Error),
    #[error("stream {stream}: labels {labels:?}")]
    Labels {
        stream: usize,
        labels: String,
        #[source]
        source: labels::LabelError,
    },
    #[error(
        "stream {stream} entry {entry}: structured metadata name {name:?} is reserved (names starting with \"logpost.\" are logpost's own headers)"
    )]
    ReservedMetadata { stream: usize, entry: usize, name: String },
    #[error("stream {stream} entry {entry}: no timestamp")]
    MissingTimestamp { stream: usize, entry: usize },
    #[error("stream {stream} entry {entry}: timestamp {value:?} is not a valid count of nanoseconds since the epoch")]
    BadTimestamp { stream: usize, entry: usize, value: String },
    #[error(
        "stream {stream} entry {entry}: timestamp {value} ns is outside what queries can read ({})",
        crate::ingest::validate::TIMESTAMP_RANGE
    )]
    TimestampOutOfRange { stream: usize, entry: usize, value: String },
    #[error("stream {stream}: error at least one label pair is required per stream")]
    NoLabels { stream: usize },
    #[error(
        "stream {stream}: label name {name:?} is not valid: names are [a-zA-Z_][a-zA-Z0-9_]*, as in Prometheus and Loki"
    )]
    LabelName { stream: usize, name: String },
    #[error("the {header} header is not ASCII: {detail}; a tenant names a topic, which must be ASCII")]
    Tenant { header: &'static str, detail: String },
    #[error("stream {stream}: topic {topic:?} (from {from}) is not a valid topic name")]
    Topic {
        stream: usize,
        topic: String,
        from: &'static str,
        #[source]
        source: logpost_shared::topic::TopicNameError,
    },
    #[error("stream {stream}: cannot encode its records")]
    Encode {
        stream: usize,
        #[source]
        source: logpost_shared::batch::BatchError,
    },
}

/// The body's format, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// As Loki decides: JSON for `application/json`, protobuf for
    /// `application/x-protobuf` or no content type.
    ///
    /// # Errors
    /// Any other content type.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Format, PushError> {
        let essence = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if essence.is_empty() || essence.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Format::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Ok(Format::Json)
        } else {
            Err(PushError::ContentType(content_type.unwrap_or_default().to_owned()))
        }
    }
}

/// Decodes a push body: `Content-Encoding` (gzip or none) undone, then a
/// protobuf body's snappy block decompressed, each within `limit` bytes,
/// then the body decoded.
///
/// # Errors
/// Unsupported media types, bodies past `limit` once inflated, and
/// malformed bodies, each naming the problem.
pub fn decode(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<Push, PushError> {
    let format = Format::from_content_type(content_type)?;
    let mut inflated = Vec::new();
    let body = match content_encoding.map(str::trim).unwrap_or("") {
        "" | "identity" => body,
        e if e.eq_ignore_ascii_case("gzip") => {
            decompress_into(Codec::Gzip, body, &mut inflated, limit).map_err(|e| match e {
                CompressionError::TooLarge { limit } => PushError::TooLarge { limit },
                e => PushError::Gzip(e),
            })?;
            &inflated
        }
        other => return Err(PushError::ContentEncoding(other.to_owned())),
    };
    let push = match format {
        Format::Json => {
            if body.len() > limit {
                return Err(PushError::TooLarge { limit });
            }
            json::decode(body)?
        }
        Format::Protobuf => {
            // The block format states its length first: check it before
            // allocating, so a bomb costs nothing.
            let len = snap::raw::decompress_len(body).map_err(PushError::Snappy)?;
            if len > limit {
                return Err(PushError::TooLarge { limit });
            }
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(PushError::Snappy)?;
            proto::decode(&raw)?
        }
    };
    check_labels(&push)?;
    Ok(push)
}

/// Every stream has labels, with valid names, whatever the format: what
/// the protobuf label syntax enforces, a JSON object does not (`"1abc"`,
/// `"a-b"`, `""` as names, or `{}`), and such a stream could not be
/// selected by any query.
///
/// # Errors
/// The first stream without labels or with a bad name.
pub fn check_labels(push: &Push) -> Result<(), PushError> {
    for (stream, s) in push.streams.iter().enumerate() {
        if s.labels.is_empty() {
            return Err(PushError::NoLabels { stream });
        }
        if let Some((name, _)) = s.labels.iter().find(|(name, _)| !labels::is_label_name(name)) {
            return Err(PushError::LabelName {
                stream,
                name: name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
