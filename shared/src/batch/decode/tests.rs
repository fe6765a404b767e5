use proptest::prelude::*;

use crate::batch::{
    BatchBuilder, BatchError, HEADER_LEN, HeaderSet, LOG_OVERHEAD, ProducerInfo, RecordIter, check, decode_records,
    frame_len, records_section, records_to_owned, set_base_offset,
};
use crate::compression::Compression;
use crate::record::{Header, Record};

const LIMIT: usize = 64 << 20;

fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in records {
        b.append_record(r);
    }
    b.finish(compression).unwrap()
}

fn sample() -> Vec<Record> {
    vec![
        Record {
            timestamp_ms: 1_700_000_000_000,
            key: Some(b"stream-1".to_vec()),
            value: Some(b"first line".to_vec()),
            headers: vec![Header::new("host", "web-03"), Header::new("source", "nginx")],
        },
        Record {
            timestamp_ms: 1_699_999_999_000, // earlier than the base: negative delta
            key: None,
            value: Some(vec![0, 0xff, b'\r', 0xc3]),
            headers: vec![Header {
                key: "null".into(),
                value: None,
            }],
        },
        Record {
            timestamp_ms: 1_700_000_000_500,
            key: None,
            value: None,
            headers: vec![],
        },
    ]
}

#[test]
fn round_trip_both_codecs() {
    for compression in [Compression::None, Compression::Gzip { level: 1 }] {
        let frame = encode(&sample(), compression);
        let header = check(&frame).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
        assert_eq!(header.max_timestamp, 1_700_000_000_500);
        assert_eq!(header.codec().unwrap(), compression.codec());
        assert_eq!(records_to_owned(&frame, LIMIT).unwrap(), sample());
    }
}

#[test]
fn producer_fields_and_offsets_survive() {
    let mut b = BatchBuilder::new();
    b.set_producer(ProducerInfo {
        producer_id: 42,
        producer_epoch: 3,
        base_sequence: 1000,
    });
    b.append(5, None, Some(b"x"), &[]);
    let mut frame = b.finish(Compression::None).unwrap();
    set_base_offset(&mut frame, 77);
    let header = check(&frame).expect("base offset is outside the CRC");
    assert_eq!(header.base_offset, 77);
    assert_eq!(header.last_offset(), 77);
    assert_eq!(
        header.producer,
        ProducerInfo {
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 1000
        }
    );
}

#[test]
fn header_sets_concatenate() {
    let mut shared = HeaderSet::new();
    shared.push("host", Some(b"h1"));
    let mut extra = HeaderSet::new();
    extra.push("level", Some(b"error"));
    let mut b = BatchBuilder::new();
    b.append(1, None, Some(b"line"), &[&shared, &extra]);
    let frame = b.finish(Compression::Gzip { level: 1 }).unwrap();
    let recs = records_to_owned(&frame, LIMIT).unwrap();
    assert_eq!(
        recs[0].headers,
        vec![Header::new("host", "h1"), Header::new("level", "error")]
    );
    assert_eq!(recs[0].header("level"), Some(&b"error"[..]));
}

#[test]
fn every_strict_prefix_is_incomplete() {
    let frame = encode(&sample(), Compression::Gzip { level: 1 });
    for cut in 0..frame.len() {
        assert!(
            matches!(frame_len(&frame[..cut], LIMIT), Ok(None)),
            "prefix of {cut} bytes"
        );
        assert!(check(&frame[..cut]).is_err(), "prefix of {cut} bytes passed check");
    }
    assert_eq!(frame_len(&frame, LIMIT).unwrap(), Some(frame.len()));
}

#[test]
fn every_single_byte_corruption_is_caught() {
    let frame = encode(&sample(), Compression::Gzip { level: 1 });
    // Bytes 0..8 (base offset) and 12..16 (leader epoch) are not covered by
    // the CRC by design; every other byte is.
    for pos in (8..12).chain(16..frame.len()) {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = frame.clone();
            bad[pos] ^= flip;
            assert!(
                check(&bad).is_err(),
                "corruption at byte {pos} (xor {flip:#x}) not caught"
            );
        }
    }
}

#[test]
fn crc_catches_bad_content() {
    let mut frame = encode(&sample(), Compression::None);
    let last = frame.len() - 1;
    frame[last] ^= 1;
    assert!(matches!(check(&frame), Err(BatchError::CrcMismatch { .. })));
}

#[test]
fn oversized_length_is_refused_early() {
    let frame = encode(&sample(), Compression::None);
    assert!(matches!(
        frame_len(&frame, 100),
        Err(BatchError::BadLength { max: 100, .. })
    ));
}

#[test]
fn decompression_limit_applies() {
    let big = Record::line(1, vec![b'a'; 1 << 20]);
    let frame = encode(&[big], Compression::Gzip { level: 1 });
    let err = records_to_owned(&frame, 1 << 16).unwrap_err();
    assert!(matches!(err, BatchError::Decompress(_)), "{err}");
}

#[test]
fn trailing_record_bytes_are_an_error() {
    // Claim two records but hold three: the iterator reports the extra bytes.
    let frame = encode(&sample(), Compression::None);
    let header = check(&frame).unwrap();
    let mut header2 = header;
    header2.records_count = 2;
    let mut scratch = Vec::new();
    let results: Vec<_> = decode_records(&frame, &header2, LIMIT, &mut scratch).unwrap().collect();
    assert!(matches!(
        results.last(),
        Some(Err(BatchError::TrailingRecordBytes { count: 2, .. }))
    ));
}

fn arb_record() -> impl Strategy<Value = Record> {
    let header = (
        "[a-z]{0,8}",
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
    )
        .prop_map(|(key, value)| Header { key, value });
    (
        any::<i64>().prop_map(|t| t / 4), // keep deltas from overflowing i64
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        proptest::collection::vec(header, 0..4),
    )
        .prop_map(|(timestamp_ms, key, value, headers)| Record {
            timestamp_ms,
            key,
            value,
            headers,
        })
}

proptest! {
    #[test]
    fn decode_inverts_encode(records in proptest::collection::vec(arb_record(), 1..20), gzip: bool) {
        let compression = if gzip { Compression::Gzip { level: 1 } } else { Compression::None };
        let frame = encode(&records, compression);
        prop_assert_eq!(frame_len(&frame, LIMIT).unwrap(), Some(frame.len()));
        prop_assert_eq!(records_to_owned(&frame, LIMIT).unwrap(), records);
    }

    /// Skipping to any byte lands on the record holding it, with the same
    /// records after it as plain iteration.
    #[test]
    fn skip_before_lands_on_the_record_holding_the_byte(
        records in proptest::collection::vec(arb_record(), 1..20),
        at in any::<prop::sample::Index>(),
    ) {
        let frame = encode(&records, Compression::None);
        let header = check(&frame).unwrap();
        let mut scratch = Vec::new();
        let section = records_section(&frame, &header, LIMIT, &mut scratch).unwrap();
        // Each record's end, by plain iteration.
        let mut ends = Vec::new();
        let mut it = RecordIter::new(section, header.records_count);
        while let Some(r) = it.next() {
            r.unwrap();
            ends.push(it.position());
        }
        let pos = at.index(section.len());
        let first = ends.iter().position(|&e| e > pos).unwrap();
        let mut it = RecordIter::new(section, header.records_count);
        it.skip_before(pos).unwrap();
        let rest: Vec<Record> = it
            .enumerate()
            .map(|(i, r)| r.unwrap().to_owned(header.base_timestamp, i as i32).unwrap())
            .collect();
        prop_assert_eq!(&rest[..], &records[first..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = frame_len(&bytes, LIMIT);
        let _ = check(&bytes);
        let _ = records_to_owned(&bytes, LIMIT);
    }

    #[test]
    fn corrupt_records_section_never_panics(
        records in proptest::collection::vec(arb_record(), 1..5),
        pos in any::<prop::sample::Index>(),
        byte: u8,
    ) {
        // Corrupt the uncompressed records section but fix up the CRC, so the
        // record parser itself (not the CRC) meets the garbage.
        let mut frame = encode(&records, Compression::None);
        if frame.len() > HEADER_LEN {
            let at = HEADER_LEN + pos.index(frame.len() - HEADER_LEN);
            frame[at] = byte;
            let crc = crc32c::crc32c(&frame[21..]);
            frame[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        let header = check(&frame).unwrap();
        let mut scratch = Vec::new();
        for r in decode_records(&frame, &header, LIMIT, &mut scratch).unwrap() {
            if r.is_err() { break; }
        }
        let _ = LOG_OVERHEAD;
    }
}

#[test]
fn header_added_to_last_record() {
    let mut b = BatchBuilder::new();
    let mut shared = HeaderSet::new();
    shared.push("host", Some(b"h"));
    b.append(100, None, Some(b"one"), &[&shared]);
    b.append(90, Some(b"k"), Some(b"two"), &[&shared]);
    b.add_header_to_last("logpost.cursor", b"42");
    let frame = b.finish(Compression::Gzip { level: 1 }).unwrap();
    let recs = records_to_owned(&frame, LIMIT).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].headers.len(), 1);
    assert_eq!(recs[1].timestamp_ms, 90);
    assert_eq!(recs[1].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(
        recs[1].headers,
        vec![Header::new("host", "h"), Header::new("logpost.cursor", "42")]
    );
    let h = check(&frame).unwrap();
    assert_eq!(h.max_timestamp, 100);
    assert_eq!(
        crate::batch::last_record_header(&frame, &h, "logpost.cursor", LIMIT).unwrap(),
        Some(b"42".to_vec())
    );
    assert_eq!(
        crate::batch::last_record_header(&frame, &h, "nope", LIMIT).unwrap(),
        None
    );
}

/// One record encoded by hand: no key, `value`, `header_count` and raw header bytes.
fn raw_record(offset_delta: u8, value: &[u8], header_count: u8, headers: &[u8]) -> Vec<u8> {
    let zigzag = |n: u8| n * 2; // small non-negative varints
    let mut body = vec![0, 0, zigzag(offset_delta), 1, zigzag(value.len() as u8)];
    body.extend_from_slice(value);
    body.push(zigzag(header_count));
    body.extend_from_slice(headers);
    let mut out = vec![zigzag(body.len() as u8)];
    out.extend_from_slice(&body);
    out
}

#[test]
fn repeated_headers_are_trusted_only_when_count_and_bytes_match() {
    // `host=h` as one header: [len 4]"host"[len 1]"h".
    let host = [8, b'h', b'o', b's', b't', 2, b'h'];
    let mut section = raw_record(0, b"one", 1, &host);
    section.extend(raw_record(1, b"two", 1, &host));
    let views: Vec<_> = RecordIter::new(&section, 2).map(Result::unwrap).collect();
    for view in &views {
        let headers: Vec<_> = view.headers.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(headers, vec![(&b"host"[..], Some(&b"h"[..]))]);
    }
    // Same header bytes, but the count claims two headers: walked and refused.
    let mut section = raw_record(0, b"one", 1, &host);
    section.extend(raw_record(1, b"two", 2, &host));
    let results: Vec<_> = RecordIter::new(&section, 2).collect();
    assert!(results[0].is_ok());
    assert!(
        matches!(results[1], Err(BatchError::BadRecord { index: 1, .. })),
        "{:?}",
        results[1]
    );
    // A null key after a valid record with other headers is still caught.
    let null_key = [1, 2, b'h'];
    let mut section = raw_record(0, b"one", 1, &host);
    section.extend(raw_record(1, b"two", 1, &null_key));
    let results: Vec<_> = RecordIter::new(&section, 2).collect();
    assert!(
        matches!(
            results[1],
            Err(BatchError::BadRecord {
                what: "null header key",
                ..
            })
        ),
        "{:?}",
        results[1]
    );
}

#[test]
fn headers_that_differ_only_in_the_last_are_validated_there() {
    let host = [8, b'h', b'o', b's', b't', 2, b'h'];
    let ns = |v: u8| [4, b'n', b's', 2, v];
    let both = |v: u8| [&host[..], &ns(v)[..]].concat();
    let mut section = raw_record(0, b"one", 2, &both(b'1'));
    section.extend(raw_record(1, b"two", 2, &both(b'2')));
    section.extend(raw_record(2, b"three", 2, &both(b'2')));
    let views: Vec<_> = RecordIter::new(&section, 3).map(Result::unwrap).collect();
    for (view, v) in views.iter().zip([b'1', b'2', b'2']) {
        let headers: Vec<_> = view.headers.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(
            headers,
            vec![(&b"host"[..], Some(&b"h"[..])), (&b"ns"[..], Some(&[v][..]))]
        );
        assert_eq!(view.headers.before_last(), &host[..]);
        let last = view.headers.last().unwrap();
        assert_eq!((last.key, last.value), (&b"ns"[..], Some(&[v][..])));
    }
    // The same first header, then a last one with a null key: refused.
    let mut section = raw_record(0, b"one", 2, &both(b'1'));
    section.extend(raw_record(1, b"two", 2, &[&host[..], &[1, 2, b'h'][..]].concat()));
    let results: Vec<_> = RecordIter::new(&section, 2).collect();
    assert!(
        matches!(
            results[1],
            Err(BatchError::BadRecord {
                what: "null header key",
                ..
            })
        ),
        "{:?}",
        results[1]
    );
    // The same first header, then a last one running past the record.
    let mut section = raw_record(0, b"one", 2, &both(b'1'));
    section.extend(raw_record(
        1,
        b"two",
        2,
        &[&host[..], &[4, b'n', b's', 20, b'x'][..]].concat(),
    ));
    let results: Vec<_> = RecordIter::new(&section, 2).collect();
    assert!(
        matches!(results[1], Err(BatchError::BadRecord { index: 1, .. })),
        "{:?}",
        results[1]
    );
    // No headers: nothing before the last, no last.
    let section = raw_record(0, b"one", 0, &[]);
    let view = RecordIter::new(&section, 1).next().unwrap().unwrap();
    assert_eq!((view.headers.before_last(), view.headers.last()), (&[][..], None));
}
