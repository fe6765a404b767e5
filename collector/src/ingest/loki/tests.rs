//! Push bodies through every path: protobuf + snappy, JSON plain and
//! gzip, bombs, garbage; and what the records carry.

use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use super::records::{DECIMAL_SUB_MS_HEADER, LEGACY_TS_NS_HEADER, SUB_MS_HEADER, exact_ns, sub_ms_bytes, to_batches};
use super::*;
use crate::config::loki::{LokiSettings, RouteBy};
use logpost_shared::batch::records_to_owned;
use logpost_shared::compression::{Compression, compress_into};

const LIMIT: usize = 1 << 20;

fn proto_body() -> Vec<u8> {
    let req = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{app="web", env="prod"}"#.into(),
            entries: vec![
                EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 123_456_789,
                    }),
                    line: b"first line".to_vec(),
                    structured_metadata: vec![LabelPairAdapter {
                        name: "trace_id".into(),
                        value: "abc".into(),
                    }],
                },
                EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1_700_000_001,
                        nanos: 0,
                    }),
                    line: b"second \xff line".to_vec(),
                    structured_metadata: vec![],
                },
            ],
            hash: 0,
        }],
    };
    let raw = prost::Message::encode_to_vec(&req);
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

const JSON: &str = r#"{"streams":[{"stream":{"job":"fluent-bit","host":"h1"},
  "values":[["1700000000123456789","json line",{"k":"v"}],["1700000000999000000","two"]]}]}"#;

fn settings(route_by: RouteBy) -> LokiSettings {
    LokiSettings {
        enabled: true,
        default_topic: "loki".into(),
        route_by,
        topic_label: "app".into(),
        topic_prefix: "l-".into(),
        max_decompressed_bytes: LIMIT,
        compression: logpost_shared::compression::Compression::Gzip { level: 1 },
    }
}

#[test]
fn protobuf_snappy_push_decodes() {
    let push = decode(Some("application/x-protobuf"), None, &proto_body(), LIMIT).unwrap();
    assert_eq!(push.streams.len(), 1);
    let s = &push.streams[0];
    assert_eq!(
        s.labels,
        vec![("app".into(), "web".into()), ("env".into(), "prod".into())]
    );
    assert_eq!(s.entries[0].timestamp_ns, 1_700_000_000_123_456_789);
    assert_eq!(s.entries[0].metadata, vec![("trace_id".into(), "abc".into())]);
    assert_eq!(s.entries[1].line, b"second \xff line");
    // No content type means protobuf, as in Loki.
    assert_eq!(decode(None, None, &proto_body(), LIMIT).unwrap(), push);
}

#[test]
fn json_push_plain_and_gzip() {
    let plain = decode(Some("application/json"), None, JSON.as_bytes(), LIMIT).unwrap();
    let mut gz = Vec::new();
    compress_into(Compression::Gzip { level: 6 }, JSON.as_bytes(), &mut gz).unwrap();
    let zipped = decode(Some("application/json; charset=utf-8"), Some("gzip"), &gz, LIMIT).unwrap();
    assert_eq!(plain, zipped);
    let e = &plain.streams[0].entries;
    assert_eq!(e[0].timestamp_ns, 1_700_000_000_123_456_789);
    assert_eq!(e[0].metadata, vec![("k".into(), "v".into())]);
    assert!(e[1].metadata.is_empty());
}

#[test]
fn bombs_are_refused_before_inflating() {
    let big = vec![b'a'; 4 * LIMIT];
    let snappy = snap::raw::Encoder::new().compress_vec(&big).unwrap();
    assert!(snappy.len() < LIMIT);
    assert!(matches!(
        decode(None, None, &snappy, LIMIT),
        Err(PushError::TooLarge { limit: LIMIT })
    ));
    let mut gz = Vec::new();
    compress_into(Compression::Gzip { level: 9 }, &big, &mut gz).unwrap();
    assert!(matches!(
        decode(Some("application/json"), Some("gzip"), &gz, LIMIT),
        Err(PushError::TooLarge { limit: LIMIT })
    ));
}

#[test]
fn bad_bodies_name_the_problem() {
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        (None, None, b"\xff\xff\xff\xff\xff\xff".to_vec(), "snappy"),
        (
            None,
            None,
            snap::raw::Encoder::new().compress_vec(b"\x0a\xff\xff\xff\x0f").unwrap(),
            "protobuf",
        ),
        (
            Some("application/json"),
            None,
            b"{\"streams\": [}".to_vec(),
            "line 1 column 14",
        ),
        (
            Some("application/json"),
            None,
            br#"{"streams":[{"stream":{},"values":[["soon","x"]]}]}"#.to_vec(),
            "not a valid count of nanoseconds",
        ),
        (
            Some("application/json"),
            None,
            br#"{"streams":[{"stream":{},"values":[["1"]]}]}"#.to_vec(),
            "JSON document",
        ),
        (Some("text/plain"), None, b"x".to_vec(), "content type"),
        (Some("application/json"), Some("br"), b"x".to_vec(), "content encoding"),
        (Some("application/json"), Some("gzip"), b"not gzip".to_vec(), "gzip"),
    ];
    for (ct, ce, body, expected) in cases {
        let err = decode(ct, ce, &body, LIMIT).unwrap_err();
        let text = crate::http::error::chain(&err);
        assert!(text.contains(expected), "{ct:?} {ce:?}: {text}");
    }
    let req = PushRequest {
        streams: vec![StreamAdapter {
            labels: "{app=web}".into(),
            entries: vec![],
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&prost::Message::encode_to_vec(&req))
        .unwrap();
    let text = crate::http::error::chain(&decode(None, None, &body, LIMIT).unwrap_err());
    assert!(
        text.contains("stream 0: labels \"{app=web}\"") && text.contains("byte 5"),
        "{text}"
    );
}

#[test]
fn random_bodies_never_panic() {
    let valid = proto_body();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000 {
        let body: Vec<u8> = if i % 2 == 0 {
            (0..(next() % 200) as usize).map(|_| next() as u8).collect()
        } else {
            let mut b = valid.clone();
            let at = (next() as usize) % b.len();
            b[at] ^= 1 << (next() % 8);
            b
        };
        let _ = decode(None, None, &body, LIMIT);
        let _ = decode(Some("application/json"), None, &body, LIMIT);
    }
}

#[test]
fn records_carry_labels_metadata_and_exact_nanoseconds() {
    let push = decode(None, None, &proto_body(), LIMIT).unwrap();
    let batches = to_batches(&push, &settings(RouteBy::Default), None).unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].topic, "loki");
    assert_eq!(batches[0].key, br#"{app="web",env="prod"}"#.to_vec());
    let records = records_to_owned(&batches[0].frame, LIMIT).unwrap();
    assert_eq!(records[0].timestamp_ms, 1_700_000_000_123);
    assert_eq!(
        records[0].key, None,
        "the stream key routes; records carry labels as headers"
    );
    assert_eq!(records[0].value.as_deref(), Some(&b"first line"[..]));
    assert_eq!(records[0].header("app"), Some(&b"web"[..]));
    // Issue 32: structured metadata is the entry's, under logpost's own
    // prefix, never a plain header (which would read as a stream label).
    assert_eq!(records[0].header("logpost.sm.trace_id"), Some(&b"abc"[..]));
    assert_eq!(records[0].header("trace_id"), None);
    // 456789 = 0x06f855, big-endian.
    assert_eq!(records[0].header(SUB_MS_HEADER), Some(&[0x06, 0xf8, 0x55][..]));
    assert_eq!(records[1].timestamp_ms, 1_700_000_001_000);
    assert_eq!(
        records[1].header(SUB_MS_HEADER),
        None,
        "whole milliseconds need no header"
    );
}

#[test]
fn exact_nanoseconds_from_each_header() {
    let ms = 1_700_000_000_123;
    assert_eq!(
        exact_ns(ms, SUB_MS_HEADER.as_bytes(), &[0x06, 0xf8, 0x55]),
        Some(1_700_000_000_123_456_789)
    );
    for sub_ms in [1, 7, 255, 256, 65_536, 999_999] {
        assert_eq!(
            exact_ns(ms, SUB_MS_HEADER.as_bytes(), &sub_ms_bytes(sub_ms)),
            Some(1_700_000_000_123_000_000 + i64::from(sub_ms)),
            "{sub_ms}"
        );
    }
    // Stores written before the binary header: decimal digits, and the
    // whole time in the oldest.
    assert_eq!(
        exact_ns(ms, DECIMAL_SUB_MS_HEADER.as_bytes(), b"456789"),
        Some(1_700_000_000_123_456_789)
    );
    assert_eq!(
        exact_ns(ms, DECIMAL_SUB_MS_HEADER.as_bytes(), b"7"),
        Some(1_700_000_000_123_000_007)
    );
    assert_eq!(
        exact_ns(ms, LEGACY_TS_NS_HEADER.as_bytes(), b"1700000000123456789"),
        Some(1_700_000_000_123_456_789)
    );
    for bad in [&b"1000000"[..], b"-1", b"x", b""] {
        assert_eq!(exact_ns(ms, DECIMAL_SUB_MS_HEADER.as_bytes(), bad), None, "{bad:?}");
    }
    // 1,000,000 and more is not a sub-millisecond part; nor is any other length.
    for bad in [&[0x0f, 0x42, 0x40][..], &[0xff; 3], &[0x01], &[0, 0, 0, 1], b""] {
        assert_eq!(exact_ns(ms, SUB_MS_HEADER.as_bytes(), bad), None, "{bad:?}");
    }
    assert_eq!(exact_ns(ms, b"app", b"1"), None);
}

#[test]
fn routing_by_tenant_and_label() {
    let push = decode(None, None, &proto_body(), LIMIT).unwrap();
    let by_tenant = to_batches(&push, &settings(RouteBy::Tenant), Some("team-a")).unwrap();
    assert_eq!(by_tenant[0].topic, "l-team-a");
    let no_tenant = to_batches(&push, &settings(RouteBy::Tenant), None).unwrap();
    assert_eq!(no_tenant[0].topic, "loki");
    let by_label = to_batches(&push, &settings(RouteBy::Label), None).unwrap();
    assert_eq!(by_label[0].topic, "l-web");
    let err = to_batches(&push, &settings(RouteBy::Tenant), Some("a/b")).unwrap_err();
    assert!(
        matches!(err, PushError::Topic { ref topic, .. } if topic == "l-a/b"),
        "{err}"
    );
}

#[test]
fn metadata_named_like_logposts_own_headers_is_refused() {
    for name in [
        SUB_MS_HEADER,
        DECIMAL_SUB_MS_HEADER,
        LEGACY_TS_NS_HEADER,
        "logpost.anything",
    ] {
        let json = format!(
            r#"{{"streams":[{{"stream":{{"app":"web"}},"values":[["1700000000000000000","ok"],["1700000000000000001","spoof",{{"{name}":"1"}}]]}}]}}"#
        );
        let push = decode(Some("application/json"), None, json.as_bytes(), LIMIT).unwrap();
        let err = to_batches(&push, &settings(RouteBy::Default), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "stream 0 entry 1: structured metadata name {name:?} is reserved (names starting with \"logpost.\" are logpost's own headers)"
            )
        );
    }
    // Other names are kept.
    let json = r#"{"streams":[{"stream":{"app":"web"},"values":[["1","x",{"logpost":"1","trace.id":"2"}]]}]}"#;
    let push = decode(Some("application/json"), None, json.as_bytes(), LIMIT).unwrap();
    let records = records_to_owned(
        &to_batches(&push, &settings(RouteBy::Default), None).unwrap()[0].frame,
        LIMIT,
    )
    .unwrap();
    assert_eq!(records[0].header("logpost.sm.trace.id"), Some(&b"2"[..]));
}

/// Issue 28: JSON pushes took label names the protobuf syntax refuses,
/// and streams without labels; neither could be selected by a query.
#[test]
fn issue_28_label_names_and_empty_streams_are_refused() {
    for (stream, name) in [
        (r#"{"1abc":"x"}"#, Some("1abc")),
        (r#"{"a-b":"x"}"#, Some("a-b")),
        (r#"{"":"x"}"#, Some("")),
        (r#"{"a.b":"x"}"#, Some("a.b")),
        (r#"{"ok":"x","ü":"y"}"#, Some("ü")),
        ("{}", None),
    ] {
        let json = format!(
            r#"{{"streams":[{{"stream":{{"job":"a"}},"values":[["1","x"]]}},{{"stream":{stream},"values":[["1","x"]]}}]}}"#
        );
        let err = decode(Some("application/json"), None, json.as_bytes(), LIMIT).unwrap_err();
        match name {
            Some(name) => assert!(
                matches!(&err, PushError::LabelName { stream: 1, name: n } if n == name),
                "{stream}: {err}"
            ),
            None => assert!(matches!(err, PushError::NoLabels { stream: 1 }), "{stream}: {err}"),
        }
    }
    let req = PushRequest {
        streams: vec![StreamAdapter {
            labels: "{}".into(),
            entries: vec![],
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&prost::Message::encode_to_vec(&req))
        .unwrap();
    let err = decode(None, None, &body, LIMIT).unwrap_err();
    assert!(matches!(err, PushError::NoLabels { stream: 0 }), "{err}");
    assert!(labels::is_label_name("_a1") && labels::is_label_name("A"));
}

/// Issue 28: times outside i64 nanoseconds (1677 to 2262) were stored by
/// protobuf pushes and never seen by a query.
#[test]
fn issue_28_protobuf_times_past_2262_are_refused() {
    for (seconds, ok) in [(9_223_372_036, true), (9_223_372_037, false), (-9_223_372_037, false)] {
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{app="far"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp { seconds, nanos: 0 }),
                    line: b"x".to_vec(),
                    structured_metadata: vec![],
                }],
                hash: 0,
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(&req))
            .unwrap();
        let push = decode(None, None, &body, LIMIT).unwrap();
        match to_batches(&push, &settings(RouteBy::Default), None) {
            Ok(_) => assert!(ok, "{seconds} s was accepted"),
            Err(e) => {
                assert!(!ok, "{seconds}: {e}");
                assert!(
                    matches!(
                        e,
                        PushError::TimestampOutOfRange {
                            stream: 0,
                            entry: 0,
                            ..
                        }
                    ),
                    "{e}"
                );
                assert!(e.to_string().contains("2262-04-11"), "{e}");
            }
        }
    }
}
