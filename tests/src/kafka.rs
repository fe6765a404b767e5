//! A raw Kafka client for tests that need exact control of the bytes:
//! hand-built request frames (with the collector's own wire codec),
//! responses read back in order, and record batches built with
//! `logpost-shared`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use logpost_collector::kafka::protocol::wire::{Reader, Writer};
use logpost_shared::batch::{BatchBuilder, ProducerInfo};
use logpost_shared::compression::Compression;

/// A request frame: size prefix, header (v1, or v2 when `flexible`), body.
pub fn request(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    flexible: bool,
    body: impl FnOnce(&mut Writer),
) -> Vec<u8> {
    let mut w = Writer::new();
    w.i16(api_key);
    w.i16(version);
    w.i32(correlation_id);
    w.string("raw-test");
    if flexible {
        w.empty_tagged_fields();
    }
    body(&mut w);
    let payload = w.into_chunks().concat();
    let mut frame = i32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

/// A connection with a generous read timeout.
pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Reads one response: (correlation id, body reader).
pub fn response(s: &mut TcpStream) -> (i32, Reader) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("response length");
    let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(len)).unwrap()];
    s.read_exact(&mut body).expect("response body");
    let mut r = Reader::new(Bytes::from(body));
    (r.i32().unwrap(), r)
}

/// Metadata v1 for all topics.
pub fn metadata_v1(corr: i32) -> Vec<u8> {
    request(3, 1, corr, false, |w| w.i32(-1))
}

/// The connection still answers, with the right correlation id.
pub fn assert_works(s: &mut TcpStream, corr: i32) {
    s.write_all(&metadata_v1(corr)).unwrap();
    let (got, mut r) = response(s);
    assert_eq!(got, corr);
    assert_eq!(r.i32().unwrap(), 1, "one broker");
}

/// The server closes `s` (EOF or reset) within the deadline.
pub fn assert_closed(mut s: TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        other => panic!("{what}: connection not closed: {other:?}"),
    }
}

/// Produce v3 of `records` to one partition.
pub fn produce_v3(corr: i32, acks: i16, topic: &str, partition: i32, records: &[u8]) -> Vec<u8> {
    request(0, 3, corr, false, |w| {
        w.nullable_string(None);
        w.i16(acks);
        w.i32(10_000);
        w.array_len(1);
        w.string(topic);
        w.array_len(1);
        w.i32(partition);
        w.bytes(records);
    })
}

/// (error code, base offset) of the single partition of a Produce v3 response.
pub fn produce_result(r: &mut Reader) -> (i16, i64) {
    assert_eq!(r.i32().unwrap(), 1);
    r.string().unwrap();
    assert_eq!(r.i32().unwrap(), 1);
    r.i32().unwrap();
    (r.i16().unwrap(), r.i64().unwrap())
}

/// Fetch v4 of partition 0 from `offset`.
pub fn fetch_v4(corr: i32, topic: &str, offset: i64, max_wait_ms: i32) -> Vec<u8> {
    request(1, 4, corr, false, |w| {
        w.i32(-1);
        w.i32(max_wait_ms);
        w.i32(1);
        w.i32(1 << 20);
        w.i8(0);
        w.array_len(1);
        w.string(topic);
        w.array_len(1);
        w.i32(0);
        w.i64(offset);
        w.i32(1 << 20);
    })
}

/// (error code, high watermark, records) of a single-partition Fetch v4 response.
pub fn fetch_result(r: &mut Reader) -> (i16, i64, Bytes) {
    r.i32().unwrap(); // throttle
    assert_eq!(r.i32().unwrap(), 1);
    r.string().unwrap();
    assert_eq!(r.i32().unwrap(), 1);
    r.i32().unwrap();
    let error = r.i16().unwrap();
    let hw = r.i64().unwrap();
    r.i64().unwrap(); // last stable offset
    r.nullable_array(16, |r| Ok((r.i64()?, r.i64()?))).unwrap();
    (error, hw, r.nullable_bytes().unwrap().unwrap_or_default())
}

/// An uncompressed batch of `count` records `"{prefix}-{i}"` with
/// timestamps from `timestamp_ms` and the given producer (`-1` for none).
pub fn batch(prefix: &str, count: i32, timestamp_ms: i64, producer_id: i64, epoch: i16, base_sequence: i32) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.set_producer(ProducerInfo {
        producer_id,
        producer_epoch: epoch,
        base_sequence,
    });
    for i in 0..count {
        b.append(
            timestamp_ms + i64::from(i),
            None,
            Some(format!("{prefix}-{i}").as_bytes()),
            &[],
        );
    }
    b.finish(Compression::None).unwrap()
}

/// InitProducerId v1 on `s`: (producer id, epoch).
pub fn init_producer_id(s: &mut TcpStream, corr: i32) -> (i64, i16) {
    s.write_all(&request(22, 1, corr, false, |w| {
        w.nullable_string(None);
        w.i32(60_000);
    }))
    .unwrap();
    let (_, mut r) = response(s);
    r.i32().unwrap();
    assert_eq!(r.i16().unwrap(), 0, "InitProducerId error");
    (r.i64().unwrap(), r.i16().unwrap())
}
