//! Loki's JSON push body, as Fluent Bit's `loki` output and curl users
//! send it:
//!
//! ```json
//! {"streams": [{"stream": {"app": "web"},
//!               "values": [["1700000000123456789", "a line"],
//!                          ["1700000000123456790", "another", {"trace_id": "abc"}]]}]}
//! ```
//!
//! Timestamps are nanoseconds since the epoch as decimal strings; the
//! optional third element is the entry's structured metadata.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, SeqAccess, Visitor};

use super::{Entry, Push, PushError, Stream};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonStream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    values: Vec<JsonEntry>,
}

/// `[timestamp, line]` or `[timestamp, line, {metadata}]`.
struct JsonEntry {
    timestamp: String,
    line: String,
    metadata: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for JsonEntry {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array [\"<unix ns>\", \"<line>\"] or [\"<unix ns>\", \"<line>\", {metadata}]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonEntry, A::Error> {
                let timestamp: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let line: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let metadata: BTreeMap<String, String> = seq.next_element()?.unwrap_or_default();
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(JsonEntry {
                    timestamp,
                    line,
                    metadata,
                })
            }
        }
        d.deserialize_seq(V)
    }
}

/// Decodes an (already decompressed) JSON push.
///
/// # Errors
/// Malformed JSON (with line and column), or a timestamp that is not a
/// count of nanoseconds, naming the stream and entry.
pub fn decode(bytes: &[u8]) -> Result<Push, PushError> {
    let body: Body = serde_json::from_slice(bytes).map_err(PushError::Json)?;
    let streams = body
        .streams
        .into_iter()
        .enumerate()
        .map(|(stream, s)| {
            let entries = s
                .values
                .into_iter()
                .enumerate()
                .map(|(entry, e)| {
                    let timestamp_ns = e.timestamp.parse::<i64>().map_err(|_| PushError::BadTimestamp {
                        stream,
                        entry,
                        value: e.timestamp.clone(),
                    })?;
                    Ok(Entry {
                        timestamp_ns: i128::from(timestamp_ns),
                        line: e.line.into_bytes(),
                        metadata: e.metadata.into_iter().collect(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Stream {
                labels: s.stream.into_iter().collect(),
                entries,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Push { streams })
}
