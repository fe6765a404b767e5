//! RecordBatch v2 helpers: frames that pass the CRC-32C, so that what a
//! fuzzer mutates reaches the decoders behind it, and the round trips the
//! batch targets assert.

use bytes::Bytes;
use logpost_collector::ingest::validate::{MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, split_and_check};
use logpost_shared::batch::{
    BatchBuilder, HEADER_LEN, LOG_OVERHEAD, check, frame_len, records_section, records_to_owned,
    stored_records_section_into,
};
use logpost_shared::compression::{Codec, Compression};
use logpost_shared::record::Record;

/// Where the CRC-32C field starts, and where the bytes it covers start
/// (shared/src/batch/mod.rs gives the layout).
const CRC_POS: usize = 17;
const CRC_COVERS_FROM: usize = 21;
/// Where the attributes (codec in bits 0-2) are.
const ATTRIBUTES_POS: usize = 21;

/// Decompressed records a target lets a batch inflate to: the collector's
/// own limits are larger, but a fuzzer must stay within libFuzzer's
/// `-malloc_limit_mb`, and a smaller limit reaches the same code.
pub const MAX_RECORDS_BYTES: usize = 4 << 20;

/// Rewrites the CRC of every whole frame at the front of `buf`, one after
/// another. Stops at the first position that is not a whole frame.
pub fn fix_crcs(buf: &mut [u8]) {
    let mut pos = 0;
    while let Some(rest) = buf.get_mut(pos..) {
        let Ok(Some(len)) = frame_len(rest, usize::MAX) else {
            return;
        };
        let Some(frame) = rest.get_mut(..len) else { return };
        let (head, covered) = frame.split_at_mut(CRC_COVERS_FROM);
        let crc = crc32c::crc32c(covered);
        if let Some(field) = head.get_mut(CRC_POS..CRC_POS + 4) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
        pos += len;
    }
}

/// A frame of `count` records whose records section is `section` as
/// stored (compressed with `codec`), with a valid CRC: how a fuzzer's
/// bytes reach one decompressor directly.
pub fn frame_around(codec: Codec, count: i32, section: &[u8]) -> Vec<u8> {
    let batch_length = i32::try_from(HEADER_LEN - LOG_OVERHEAD + section.len()).unwrap_or(i32::MAX);
    let mut frame = Vec::with_capacity(HEADER_LEN + section.len());
    frame.extend_from_slice(&0i64.to_be_bytes()); // base offset
    frame.extend_from_slice(&batch_length.to_be_bytes());
    frame.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    frame.push(2); // magic
    frame.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    frame.extend_from_slice(&i16::from(codec.id()).to_be_bytes());
    frame.extend_from_slice(&count.saturating_sub(1).to_be_bytes()); // last offset delta
    frame.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // base timestamp
    frame.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // max timestamp
    frame.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    frame.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    frame.extend_from_slice(&count.to_be_bytes());
    frame.extend_from_slice(section);
    fix_crcs(&mut frame);
    frame
}

/// The codec a frame's attributes name, if any.
pub fn codec_of(frame: &[u8]) -> Option<Codec> {
    let attributes = frame.get(ATTRIBUTES_POS + 1)?;
    Codec::from_id(attributes & 0x07)
}

/// Everything a reader of one frame can do with it, each path checked
/// against the others:
/// - the plain and the "verified" (stored) decompression give the same
///   section whenever the plain one succeeds;
/// - records decoded from a frame, encoded again (in the frame's codec
///   and uncompressed) and decoded, are the same records.
///
/// # Panics
/// When one of those properties fails: that is a finding.
pub fn check_frame(frame: &[u8]) {
    let Ok(header) = check(frame) else { return };
    let mut plain = Vec::new();
    let plain = records_section(frame, &header, MAX_RECORDS_BYTES, &mut plain).map(<[u8]>::to_vec);
    let mut stored = Vec::new();
    let stored_ok = stored_records_section_into(frame, &header, MAX_RECORDS_BYTES, &mut stored).is_ok();
    if let Ok(plain) = &plain {
        assert!(stored_ok, "stored read fails where the plain read succeeds");
        assert!(plain == &stored, "stored and plain reads differ");
    }
    let Ok(records) = records_to_owned(frame, MAX_RECORDS_BYTES) else {
        return;
    };
    assert!(plain.is_ok(), "records decoded without a records section");
    let mut codecs = vec![Compression::None];
    if let Some(codec) = header.codec() {
        codecs.push(codec.fastest());
    }
    for compression in codecs {
        assert_round_trip(&records, compression);
    }
}

/// Encodes `records` with `compression`, decodes them and compares.
///
/// # Panics
/// When what comes back differs from what went in, or the encoder's
/// frame does not pass the collector's ingest checks.
pub fn assert_round_trip(records: &[Record], compression: Compression) {
    let mut builder = BatchBuilder::new();
    for r in records {
        builder.append_record(r);
    }
    let Ok(frame) = builder.finish(compression) else {
        // Only a compressor's own error; none of ours fail on a Vec.
        panic!("{compression:?}: encoding decoded records failed");
    };
    let back = match records_to_owned(&frame, usize::MAX) {
        Ok(back) => back,
        Err(e) => panic!("{compression:?}: our own frame does not decode: {e}"),
    };
    assert_eq!(records.len(), back.len(), "{compression:?}: record count changed");
    for (a, b) in records.iter().zip(&back) {
        assert_eq!(a, b, "{compression:?}: a record changed in a round trip");
    }
    // The collector refuses timestamps queries cannot read (issue 28:
    // outside 1677-2262, nanoseconds in a signed 64-bit integer); a frame
    // holding one is checked for that refusal, not for acceptance.
    let readable = MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS;
    let unreadable = records.iter().any(|r| !readable.contains(&r.timestamp_ms));
    if unreadable {
        let body = Bytes::from(frame);
        assert!(
            split_and_check(&body, usize::MAX).is_err(),
            "{compression:?}: a timestamp outside 1677-2262 was accepted"
        );
        return;
    }
    if !records.is_empty() {
        let body = Bytes::from(frame);
        if let Err(e) = split_and_check(&body, usize::MAX) {
            panic!("{compression:?}: the collector refuses our own frame: {e}");
        }
    }
}

/// A frame exactly as a client sends it. Flag bit 0 of the first byte
/// rewrites the CRCs. Goes through the collector's ingest checks
/// (`split_and_check`), then [`check_frame`] for each frame they pass.
pub fn frames(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut body = rest.to_vec();
    if flags & 1 != 0 {
        fix_crcs(&mut body);
    }
    let body = Bytes::from(body);
    if let Ok(checked) = split_and_check(&body, MAX_RECORDS_BYTES) {
        for batch in checked {
            assert!(batch.header.records_count > 0, "ingest passed an empty batch");
            check_frame(&batch.frame);
        }
    } else {
        check_frame(&body);
    }
}

/// One codec's records section: the first two bytes are the record
/// count, the rest the section as stored, framed with a good CRC.
pub fn codec_section(codec: Codec, data: &[u8]) {
    let Some((count, section)) = data.split_first_chunk::<2>() else {
        return;
    };
    let frame = frame_around(codec, i32::from(u16::from_be_bytes(*count)), section);
    let _ = split_and_check(&Bytes::from(frame.clone()), MAX_RECORDS_BYTES);
    check_frame(&frame);
}

/// Records read from `data` (timestamp, key, value, headers, each
/// length-prefixed), encoded with every codec and decoded.
pub fn round_trip(data: &[u8]) {
    let records = records_from(data);
    for compression in [
        Compression::None,
        Compression::Gzip { level: 1 },
        Compression::Gzip { level: 6 },
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        assert_round_trip(&records, compression);
    }
}

fn records_from(data: &[u8]) -> Vec<Record> {
    let mut r = data;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = r.split_at_checked(n)?;
        r = rest;
        Some(head)
    };
    let mut out = Vec::new();
    while let Some(ts) = take(8) {
        let timestamp_ms = i64::from_be_bytes(ts.try_into().unwrap_or_default());
        let Some(&[klen, vlen, hcount]) = take(3).and_then(|b| <&[u8; 3]>::try_from(b).ok()) else {
            break;
        };
        let key = if klen == 0xff {
            None
        } else {
            take(usize::from(klen)).map(<[u8]>::to_vec)
        };
        let value = if vlen == 0xff {
            None
        } else {
            take(usize::from(vlen) * 4).map(<[u8]>::to_vec)
        };
        let mut headers = Vec::new();
        for _ in 0..hcount % 8 {
            let Some(&[hk, hv]) = take(2).and_then(|b| <&[u8; 2]>::try_from(b).ok()) else {
                break;
            };
            let Some(k) = take(usize::from(hk % 32)) else { break };
            let v = if hv == 0xff {
                None
            } else {
                take(usize::from(hv)).map(<[u8]>::to_vec)
            };
            headers.push(logpost_shared::record::Header {
                key: String::from_utf8_lossy(k).into_owned(),
                value: v,
            });
        }
        out.push(Record {
            timestamp_ms,
            key,
            value,
            headers,
        });
    }
    out
}
