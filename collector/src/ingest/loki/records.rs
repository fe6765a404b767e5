//! From decoded Loki streams to what the store appends: each stream's
//! topic (by `[loki] route_by`), and one RecordBatch v2 per stream whose
//! records carry the stream's labels and the entry's structured metadata
//! as headers.
//!
//! Structured metadata belongs to one entry, not to its stream (Loki keeps
//! it beside the line: filterable after the selector, never part of the
//! stream's identity, not listed by `/labels` or `series`). Each pair is
//! stored as a header named `logpost.sm.<name>`: logpost's own prefix keeps
//! it out of the stream's labels and the segment summaries, and queries
//! read it back per record (`query::source::metadata_of`).
//!
//! Timestamps: a record's timestamp is milliseconds, Loki's are
//! nanoseconds. The record gets the millisecond (rounded down), and when
//! that loses precision the nanoseconds past it go in a `logpost.ns_be`
//! header, so that nothing a shipper sent is lost and entries of the same
//! millisecond keep their order and identity. The header holds them as
//! three bytes, big-endian: every query inflates every record's headers,
//! and three bytes there are three literals to decode where the six
//! decimal digits stored before were six (queries over a Loki-push store
//! ran 8% faster per core for it).
//!
//! Records have no key: a stream's sorted label string picks its
//! partition (so its entries stay in order there), and its labels are
//! every record's headers already. Repeating both in every record made a
//! stored entry about 50 bytes longer to inflate and search.

use bytes::Bytes;
use logpost_shared::batch::{BatchBuilder, HeaderSet};
use logpost_shared::topic::validate_topic_name;

use super::{Push, PushError, Stream};
use crate::config::loki::{LokiSettings, RouteBy};
use crate::store::summary::INTERNAL_HEADER_PREFIX;

/// Header holding the nanoseconds (1 to 999999) past a record's
/// millisecond timestamp, for entries whose time the millisecond cannot
/// carry exactly: three bytes, big-endian.
pub const SUB_MS_HEADER: &str = "logpost.ns_be";
/// The same nanoseconds in decimal digits, as records stored before
/// `logpost.ns_be` carry them; still read.
pub const DECIMAL_SUB_MS_HEADER: &str = "logpost.ns";
/// The exact timestamp in nanoseconds, as the oldest records carry it;
/// still read.
pub const LEGACY_TS_NS_HEADER: &str = "logpost.ts_ns";
/// Prefix of the headers holding an entry's structured metadata: the pair
/// `trace_id="abc"` is the header `logpost.sm.trace_id` = `abc`. (Records
/// stored before it carry metadata as plain headers, which read as stream
/// labels.)
pub const METADATA_HEADER_PREFIX: &str = "logpost.sm.";

/// Nanoseconds in a millisecond.
const NS_PER_MS: i64 = 1_000_000;

/// The exact time in nanoseconds of a record of millisecond `ts_ms` when
/// `key` and `value` are one of its timestamp headers.
pub fn exact_ns(ts_ms: i64, key: &[u8], value: &[u8]) -> Option<i64> {
    let sub_ms = if key == SUB_MS_HEADER.as_bytes() {
        sub_ms_of_bytes(value)?
    } else if key == DECIMAL_SUB_MS_HEADER.as_bytes() {
        ascii_i64(value).filter(|n| (0..NS_PER_MS).contains(n))?
    } else if key == LEGACY_TS_NS_HEADER.as_bytes() {
        return ascii_i64(value);
    } else {
        return None;
    };
    ts_ms.checked_mul(NS_PER_MS)?.checked_add(sub_ms)
}

/// The `logpost.ns_be` value of `sub_ms` nanoseconds (below a millisecond).
pub fn sub_ms_bytes(sub_ms: u32) -> [u8; 3] {
    let [_, a, b, c] = sub_ms.to_be_bytes();
    [a, b, c]
}

/// The nanoseconds a `logpost.ns_be` value holds, if it is one.
pub fn sub_ms_of_bytes(value: &[u8]) -> Option<i64> {
    let &[a, b, c] = value else { return None };
    Some(i64::from(u32::from_be_bytes([0, a, b, c]))).filter(|&n| n < NS_PER_MS)
}

/// A decimal integer as `i64::from_str` reads one, without a UTF-8 check:
/// read from every record a query scans.
fn ascii_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if negative { n.checked_sub(d)? } else { n.checked_add(d)? };
    }
    Some(n)
}

/// One stream's records, ready for a partition of `topic`.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    pub topic: String,
    /// The routing key: the stream's sorted label string.
    pub key: Vec<u8>,
    pub frame: Bytes,
    pub records: usize,
}

/// Builds one batch per non-empty stream. `tenant` is the
/// `X-Scope-OrgID` header, if any.
///
/// # Errors
/// A topic name that routing makes invalid, or a timestamp out of range.
pub fn to_batches(push: &Push, settings: &LokiSettings, tenant: Option<&str>) -> Result<Vec<StreamBatch>, PushError> {
    let mut out = Vec::with_capacity(push.streams.len());
    for (index, stream) in push.streams.iter().enumerate() {
        if stream.entries.is_empty() {
            continue;
        }
        let topic = topic_for(stream, index, settings, tenant)?;
        let key = stream_key(&stream.labels);
        let mut labels = HeaderSet::new();
        for (name, value) in &stream.labels {
            labels.push(name, Some(value.as_bytes()));
        }
        let mut builder = BatchBuilder::new();
        let mut extra = HeaderSet::new();
        let mut metadata_key = String::new();
        for (entry_index, entry) in stream.entries.iter().enumerate() {
            // Queries count in i64 nanoseconds: a time outside them would
            // be stored and never seen again.
            let ns = i64::try_from(entry.timestamp_ns).map_err(|_| PushError::TimestampOutOfRange {
                stream: index,
                entry: entry_index,
                value: entry.timestamp_ns.to_string(),
            })?;
            let ms = ns.div_euclid(1_000_000);
            extra.clear();
            for (name, value) in &entry.metadata {
                // A client's `logpost.ns_be` would be read as the entry's time.
                if name.starts_with(INTERNAL_HEADER_PREFIX) {
                    return Err(PushError::ReservedMetadata {
                        stream: index,
                        entry: entry_index,
                        name: name.clone(),
                    });
                }
                metadata_key.clear();
                metadata_key.push_str(METADATA_HEADER_PREFIX);
                metadata_key.push_str(name);
                extra.push(&metadata_key, Some(value.as_bytes()));
            }
            // Below a million: fits the three bytes.
            let sub_ms = u32::try_from(ns.rem_euclid(1_000_000)).unwrap_or(0);
            if sub_ms != 0 {
                extra.push(SUB_MS_HEADER, Some(&sub_ms_bytes(sub_ms)));
            }
            builder.append(ms, None, Some(&entry.line), &[&labels, &extra]);
        }
        let frame = builder
            .finish(settings.compression)
            .map_err(|source| PushError::Encode { stream: index, source })?;
        out.push(StreamBatch {
            topic,
            key,
            frame: Bytes::from(frame),
            records: stream.entries.len(),
        });
    }
    Ok(out)
}

/// The topic of stream number `index`.
fn topic_for(
    stream: &Stream,
    index: usize,
    settings: &LokiSettings,
    tenant: Option<&str>,
) -> Result<String, PushError> {
    let (value, from) = match settings.route_by {
        RouteBy::Default => (None, "default_topic"),
        RouteBy::Tenant => (tenant.filter(|t| !t.is_empty()), "the X-Scope-OrgID header"),
        RouteBy::Label => (
            stream
                .labels
                .iter()
                .find(|(name, _)| *name == settings.topic_label)
                .map(|(_, v)| v.as_str()),
            "the topic label",
        ),
    };
    let Some(value) = value else {
        return Ok(settings.default_topic.clone());
    };
    let topic = format!("{}{value}", settings.topic_prefix);
    validate_topic_name(&topic).map_err(|source| PushError::Topic {
        stream: index,
        topic: topic.clone(),
        from,
        source,
    })?;
    Ok(topic)
}

/// `{a="1",b="2"}` with labels sorted by name: the same stream gives the
/// same key however a shipper orders its labels.
fn stream_key(labels: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = labels.iter().collect();
    sorted.sort();
    let mut key = String::from("{");
    for (i, (name, value)) in sorted.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(name);
        key.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => key.push_str("\\\\"),
                '"' => key.push_str("\\\""),
                '\n' => key.push_str("\\n"),
                c => key.push(c),
            }
        }
        key.push('"');
    }
    key.push('}');
    key.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::ascii_i64;

    #[test]
    fn ascii_i64_reads_as_from_str() {
        for text in [
            "0",
            "7",
            "-7",
            "+7",
            "999999",
            "1700000000123456789",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "",
            "-",
            "+",
            "1x",
            " 1",
            "1 ",
            "--1",
            "١",
        ] {
            assert_eq!(ascii_i64(text.as_bytes()), text.parse::<i64>().ok(), "{text:?}");
        }
        assert_eq!(ascii_i64(b"\xff1"), None);
    }
}
