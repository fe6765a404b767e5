//! Loki 3's categorized labels (`X-Loki-Response-Encoding-Flags:
//! categorize-labels`, which Grafana sends): a log query's streams keep
//! their own labels, and each entry says which of its labels came from its
//! structured metadata and which the pipeline parsed.
//!
//! Why a module of its own: it is a second encoding of the same result,
//! regrouped, and `loki_read` stays the handlers.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde_json::{Value as Json_, json};

use super::loki_json::label_map;
use crate::query::logql::{Direction, Labels, StreamEntry, Streams};

/// Loki's header asking for labels by category (Loki 3, Grafana's
/// "categorize-labels"): streams keep their own labels only, and each
/// entry says which labels came from its structured metadata and which
/// the pipeline parsed.
const ENCODING_FLAGS_HEADER: &str = "x-loki-response-encoding-flags";
pub(super) const CATEGORIZE_LABELS: &str = "categorize-labels";

/// Whether the request asks for [`CATEGORIZE_LABELS`].
pub(super) fn wants_categorized(headers: &HeaderMap) -> bool {
    headers
        .get_all(ENCODING_FLAGS_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|flag| flag.trim() == CATEGORIZE_LABELS)
}

/// Streams as Loki encodes them with [`CATEGORIZE_LABELS`]: grouped by the
/// stream's own labels; each value `[ts, line, {"structuredMetadata": {..},
/// "parsed": {..}}]` (an empty category is left out), in the query's order.
pub(super) fn categorized_streams_json(streams: &Streams, direction: Direction) -> Json_ {
    let mut groups: BTreeMap<Labels, Vec<&StreamEntry>> = BTreeMap::new();
    for s in streams {
        for e in &s.entries {
            let mut own = s.labels.clone();
            for category in [&e.structured_metadata, &e.parsed].into_iter().flatten() {
                own.retain(|name, _| !category.contains(name));
            }
            groups.entry(own).or_default().push(e);
        }
    }
    Json_::Array(
        groups
            .into_iter()
            .map(|(labels, mut entries)| {
                // Stable: entries of one time keep the engine's order.
                match direction {
                    Direction::Backward => entries.sort_by_key(|e| std::cmp::Reverse(e.timestamp_ns)),
                    Direction::Forward => entries.sort_by_key(|e| e.timestamp_ns),
                }
                let values: Vec<Json_> = entries
                    .iter()
                    .map(|e| {
                        let mut categories = serde_json::Map::new();
                        if let Some(m) = &e.structured_metadata {
                            categories.insert("structuredMetadata".into(), Json_::Object(label_map(m)));
                        }
                        if let Some(p) = &e.parsed {
                            categories.insert("parsed".into(), Json_::Object(label_map(p)));
                        }
                        json!([
                            e.timestamp_ns.to_string(),
                            String::from_utf8_lossy(&e.line),
                            Json_::Object(categories)
                        ])
                    })
                    .collect();
                json!({ "stream": label_map(&labels), "values": values })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::logql::Stream;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    #[test]
    fn header_flags_and_regrouping() {
        let mut h = HeaderMap::new();
        assert!(!wants_categorized(&h));
        h.insert(
            "X-Loki-Response-Encoding-Flags",
            "other, categorize-labels".parse().unwrap(),
        );
        assert!(wants_categorized(&h));
        let entry = |ts, meta: Option<Labels>, parsed: Option<Labels>| StreamEntry {
            timestamp_ns: ts,
            line: b"x".to_vec(),
            structured_metadata: meta,
            parsed,
        };
        // Two result streams that differ only in metadata are one stream.
        let streams = vec![
            Stream {
                labels: labels(&[("app", "a"), ("t", "1")]),
                entries: vec![entry(3, Some(labels(&[("t", "1")])), None)],
            },
            Stream {
                labels: labels(&[("app", "a"), ("level", "info")]),
                entries: vec![entry(5, None, Some(labels(&[("level", "info")])))],
            },
        ];
        let got = categorized_streams_json(&streams, Direction::Backward);
        assert_eq!(
            got,
            json!([{"stream": {"app": "a"}, "values": [
                ["5", "x", {"parsed": {"level": "info"}}],
                ["3", "x", {"structuredMetadata": {"t": "1"}}],
            ]}])
        );
        let got = categorized_streams_json(&streams, Direction::Forward);
        assert_eq!(got[0]["values"][0][0], "3");
    }
}
