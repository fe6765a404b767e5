//! Loki push bodies (`POST /loki/api/v1/push`) through the collector's own
//! decoder (`ingest::loki::decode`), then what the handler does next:
//! `to_batches`. Checks beyond "no panic":
//! - a decoded push encoded again in the same format decodes to the same
//!   push (labels, entries, timestamps, structured metadata);
//! - every batch built from it passes the collector's ingest checks, and
//!   its records give back each entry's line and exact nanosecond.

use bytes::Bytes;
use logpost_collector::config::loki::{LokiSettings, RouteBy};
use logpost_collector::ingest::loki::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use logpost_collector::ingest::loki::records::{exact_ns, to_batches};
use logpost_collector::ingest::loki::{Format, Push, decode};
use logpost_collector::ingest::validate::split_and_check;
use logpost_shared::batch::records_to_owned;
use logpost_shared::compression::{Codec, Compression, compress_into};

use crate::batch::MAX_RECORDS_BYTES;

/// Bodies may inflate to this much: small, so that libFuzzer's malloc
/// limit catches a decoder that allocates past what it was allowed.
const LIMIT: usize = 4 << 20;
const NS_PER_S: i128 = 1_000_000_000;

/// A snappy-compressed protobuf body, as Promtail and Alloy send it.
pub fn proto_body(data: &[u8]) {
    run(Some("application/x-protobuf"), None, data);
}

/// A JSON body, uncompressed.
pub fn json_body(data: &[u8]) {
    run(Some("application/json"), None, data);
}

/// A `Content-Encoding: gzip` body; the first byte picks JSON or protobuf
/// inside (Fluent Bit gzips JSON, Alloy can gzip either).
pub fn gzip_body(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = if pick & 1 == 0 {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    run(Some(content_type), Some("gzip"), body);
}

fn run(content_type: Option<&str>, encoding: Option<&str>, body: &[u8]) {
    let Ok(push) = decode(content_type, encoding, body, LIMIT) else {
        return;
    };
    let format = Format::from_content_type(content_type).unwrap_or(Format::Protobuf);
    if let Some(again) = encode(&push, format) {
        match decode(content_type, None, &again, usize::MAX) {
            Ok(back) => assert_eq!(push, back, "push changed when encoded again"),
            Err(e) => panic!("push encoded again does not decode: {e}"),
        }
    }
    assert_stored_as_pushed(&push);
}

/// `push` as a body of `format` (uncompressed content encoding), or
/// `None` where that format cannot carry it (a line that is not UTF-8 in
/// JSON).
fn encode(push: &Push, format: Format) -> Option<Vec<u8>> {
    match format {
        Format::Protobuf => {
            let req = PushRequest {
                streams: push
                    .streams
                    .iter()
                    .map(|s| StreamAdapter {
                        labels: label_string(&s.labels),
                        entries: s
                            .entries
                            .iter()
                            .map(|e| EntryAdapter {
                                timestamp: Some(Timestamp {
                                    seconds: i64::try_from(e.timestamp_ns.div_euclid(NS_PER_S)).unwrap_or(0),
                                    nanos: i32::try_from(e.timestamp_ns.rem_euclid(NS_PER_S)).unwrap_or(0),
                                }),
                                line: e.line.clone(),
                                structured_metadata: e
                                    .metadata
                                    .iter()
                                    .map(|(name, value)| LabelPairAdapter {
                                        name: name.clone(),
                                        value: value.clone(),
                                    })
                                    .collect(),
                            })
                            .collect(),
                        hash: 0,
                    })
                    .collect(),
            };
            let raw = prost::Message::encode_to_vec(&req);
            let mut body = Vec::new();
            compress_into(Compression::Snappy, &raw, &mut body).ok()?;
            Some(body)
        }
        Format::Json => {
            let mut streams = Vec::new();
            for s in &push.streams {
                let labels: serde_json::Map<String, serde_json::Value> =
                    s.labels.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
                let mut values = Vec::new();
                for e in &s.entries {
                    let line = std::str::from_utf8(&e.line).ok()?;
                    let metadata: serde_json::Map<String, serde_json::Value> =
                        e.metadata.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
                    values.push(serde_json::json!([e.timestamp_ns.to_string(), line, metadata]));
                }
                streams.push(serde_json::json!({"stream": labels, "values": values}));
            }
            serde_json::to_vec(&serde_json::json!({ "streams": streams })).ok()
        }
    }
}

/// `{name="value", ...}` with the escapes `labels::parse_labels` reads.
fn label_string(labels: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// The batches the handler would store hold what was pushed.
fn assert_stored_as_pushed(push: &Push) {
    let settings = LokiSettings {
        enabled: true,
        default_topic: "loki".to_owned(),
        route_by: RouteBy::Label,
        topic_label: "topic".to_owned(),
        topic_prefix: String::new(),
        max_decompressed_bytes: LIMIT,
        compression: Codec::Gzip.fastest(),
    };
    let Ok(batches) = to_batches(push, &settings, None) else {
        return;
    };
    let mut streams = push.streams.iter().filter(|s| !s.entries.is_empty());
    for batch in batches {
        let Some(stream) = streams.next() else {
            panic!("more batches than streams with entries")
        };
        if let Err(e) = split_and_check(
            &Bytes::clone(&batch.frame),
            MAX_RECORDS_BYTES.max(batch.frame.len() * 64),
        ) {
            // A stream too large for the fuzz limit is not a finding.
            if !matches!(e, logpost_collector::ingest::validate::IngestError::TooLarge { .. }) {
                panic!("the collector refuses the batch it built from a push: {e}");
            }
            continue;
        }
        let records = match records_to_owned(&batch.frame, usize::MAX) {
            Ok(r) => r,
            Err(e) => panic!("a batch built from a push does not decode: {e}"),
        };
        assert_eq!(records.len(), stream.entries.len(), "records per stream");
        for (record, entry) in records.iter().zip(&stream.entries) {
            assert_eq!(record.value.as_deref(), Some(entry.line.as_slice()), "stored line");
            // Past 2262 nanoseconds leave i64, where Loki's own timestamps
            // end too; the record keeps the millisecond.
            if i64::try_from(entry.timestamp_ns.div_euclid(1_000_000) * 1_000_000).is_err() {
                continue;
            }
            let ns = record
                .headers
                .iter()
                .rev()
                .find_map(|h| {
                    exact_ns(
                        record.timestamp_ms,
                        h.key.as_bytes(),
                        h.value.as_deref().unwrap_or_default(),
                    )
                })
                .map_or(i128::from(record.timestamp_ms) * 1_000_000, i128::from);
            assert_eq!(ns, entry.timestamp_ns, "stored timestamp");
        }
    }
}
