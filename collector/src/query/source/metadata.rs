//! An entry's structured metadata (a Loki push's), read back from the
//! `logpost.sm.<name>` headers it is stored in
//! (`ingest::loki::records::METADATA_HEADER_PREFIX`).
//!
//! Why a module of its own: every scan asks for it once per hit, so the
//! common answer ("none") must cost no header reads; the live tail and
//! `/v1/query` read it from copied-out records.

use logpost_shared::batch::RecordView;

use crate::ingest::loki::records::{METADATA_HEADER_PREFIX, SUB_MS_HEADER};
use crate::query::logql::Labels;

/// The structured metadata of a copied-out record (the live tail's and
/// `/v1/query`'s), `None` without any.
pub fn stored_metadata(headers: &[(String, Option<Vec<u8>>)]) -> Option<Labels> {
    let pairs: Vec<(&str, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(METADATA_HEADER_PREFIX)?;
            Some((
                name,
                String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned(),
            ))
        })
        .collect();
    (!pairs.is_empty()).then(|| pairs.into_iter().collect())
}

/// The structured metadata of `record`, whose stream has `label_headers`
/// label headers: `None` without any. A record with no header beyond its
/// labels, or only a last `logpost.ns_be`, has none: that is decided
/// without reading a header, so scans of agents' records (which never
/// carry metadata) and of pushes without it pay nothing per record.
pub fn metadata_of(record: &RecordView<'_>, label_headers: usize) -> Option<Labels> {
    let headers = &record.headers;
    let extra = headers.len().checked_sub(label_headers)?;
    if extra == 0 || (extra == 1 && headers.last().is_some_and(|h| h.key == SUB_MS_HEADER.as_bytes())) {
        return None;
    }
    let prefix = METADATA_HEADER_PREFIX.as_bytes();
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|h| {
            let name = h.key.strip_prefix(prefix)?;
            Some((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            ))
        })
        .collect();
    (!pairs.is_empty()).then(|| pairs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use logpost_shared::batch::{BatchBuilder, HeaderSet, check, decode_records};
    use logpost_shared::compression::Compression;

    use super::*;

    #[test]
    fn metadata_headers_and_none_without_reading_them() {
        let mut builder = BatchBuilder::new();
        let records: [&[(&str, &[u8])]; 4] = [
            &[("app", b"web")],
            &[("app", b"web"), ("logpost.ns_be", &[0, 0, 7])],
            &[
                ("app", b"web"),
                ("logpost.sm.trace_id", b"t1"),
                ("logpost.ns_be", &[0, 0, 7]),
            ],
            &[("app", b"web"), ("logpost.sm.a", b"1"), ("logpost.sm.b", b"2")],
        ];
        for headers in records {
            let mut set = HeaderSet::new();
            for (k, v) in headers {
                set.push(k, Some(v));
            }
            builder.append(1, None, Some(b"line"), &[&set]);
        }
        let frame = builder.finish(Compression::None).unwrap();
        let header = check(&frame).unwrap();
        let mut scratch = Vec::new();
        let got: Vec<Option<String>> = decode_records(&frame, &header, 1 << 20, &mut scratch)
            .unwrap()
            .map(|r| metadata_of(&r.unwrap(), 1).map(|m| m.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                None,
                None,
                Some(r#"{trace_id="t1"}"#.to_string()),
                Some(r#"{a="1", b="2"}"#.to_string())
            ]
        );
        let stored = [
            ("app".to_string(), Some(b"web".to_vec())),
            ("logpost.sm.k".to_string(), Some(b"v".to_vec())),
        ];
        assert_eq!(
            stored_metadata(&stored).map(|m| m.to_string()).as_deref(),
            Some(r#"{k="v"}"#)
        );
        assert_eq!(stored_metadata(&stored[..1]), None);
    }
}
