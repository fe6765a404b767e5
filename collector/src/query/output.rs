//! The JSON shape of a record, as the query API streams it (one object per
//! line) and as `logpost --output json` prints it:
//!
//! ```json
//! {"topic":"app","partition":0,"offset":41,"timestamp_ms":1700000000000,
//!  "headers":{"host":"web-03","source":"app"},"line":"GET / 200"}
//! ```
//!
//! Records that keep a time finer than the millisecond (Loki pushes) also
//! have `"timestamp_ns"`, and those pushed with structured metadata have
//! it as `"metadata"` (stored as `logpost.sm.<name>` headers, not shown
//! among `"headers"`).
//!
//! A line that is not valid UTF-8 comes as `"line_base64"` instead of
//! `"line"`, so that `--output raw` can restore it byte-exactly. A null
//! value (possible from Kafka producers) has neither. Header values that are
//! not UTF-8 are shown lossily, except `logpost.ns_be`, whose three bytes
//! are shown as the decimal number they hold; the first of repeated header
//! names wins.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::cursor::StoredRecord;
use crate::ingest::loki::records::{METADATA_HEADER_PREFIX, SUB_MS_HEADER, exact_ns, sub_ms_of_bytes};

/// A record as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordJson {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// The exact time, for records that keep one finer than the
    /// millisecond (Loki pushes: the `logpost.ns_be` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ns: Option<i64>,
    /// The stream (producer id) the record came from, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// The entry's structured metadata (a Loki push's), when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Labels after a LogQL pipeline, when it added or changed any
    /// (`| json`, `| logfmt`, ...); `topic` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_base64: Option<String>,
}

/// A header's value as text: binary sub-millisecond nanoseconds in
/// decimal, anything else as (lossy) UTF-8.
fn header_text(key: &str, value: &[u8]) -> String {
    match sub_ms_of_bytes(value).filter(|_| key == SUB_MS_HEADER) {
        Some(ns) => ns.to_string(),
        None => String::from_utf8_lossy(value).into_owned(),
    }
}

impl RecordJson {
    /// Renders a stored record of `topic`.
    pub fn new(topic: &str, r: &StoredRecord) -> Self {
        let mut headers = Map::new();
        let mut metadata = Map::new();
        let mut timestamp_ns = None;
        for (k, v) in &r.headers {
            if timestamp_ns.is_none() {
                timestamp_ns = exact_ns(r.timestamp_ms, k.as_bytes(), v.as_deref().unwrap_or_default());
            }
            if let Some(name) = k.strip_prefix(METADATA_HEADER_PREFIX) {
                let v = String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned();
                metadata.insert(name.to_owned(), Value::String(v));
            } else if !headers.contains_key(k) {
                let v = v.as_deref().map_or(Value::Null, |v| Value::String(header_text(k, v)));
                headers.insert(k.clone(), v);
            }
        }
        let (line, line_base64) = match r.value.as_deref() {
            None => (None, None),
            Some(v) => match std::str::from_utf8(v) {
                Ok(s) => (Some(s.to_owned()), None),
                Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(v))),
            },
        };
        RecordJson {
            topic: topic.to_owned(),
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            timestamp_ns,
            stream: (r.producer_id >= 0).then_some(r.producer_id),
            key: r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            metadata: (!metadata.is_empty()).then_some(metadata),
            labels: None,
            line,
            line_base64,
        }
    }

    /// The line's exact bytes (empty for a null value).
    ///
    /// # Errors
    /// `line_base64` is not valid base64.
    pub fn line_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match (&self.line, &self.line_base64) {
            (Some(s), _) => Ok(s.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b),
            (None, None) => Ok(Vec::new()),
        }
    }
}
