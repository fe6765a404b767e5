//! What a leader ships equals what a follower would rebuild (every codec,
//! label shapes, a dedup trim, a batch the append decoded itself); what
//! does not name a frame exactly is rebuilt; hostile headers are refused
//! with an error, never a panic.

use std::sync::Arc;

use bytes::Bytes;
use logpost_shared::batch::{BatchBuilder, BatchHeader, HeaderSet, ProducerInfo, frame_len};
use logpost_shared::compression::Compression;
use logpost_shared::record::CURSOR_HEADER;
use proptest::prelude::*;

use super::*;
use crate::cluster::replica::copied::{copied, cursor_of, shipped_stats};
use crate::ingest::validate::split_and_check;
use crate::store::partition::{PartitionSettings, WriteRole};
use crate::store::read::read_from;
use crate::store::summary::{BatchStats, Block, build};
use crate::store::{AppendItem, BatchOutcome};

fn open(dir: &std::path::Path, role: WriteRole) -> Partition {
    let settings = PartitionSettings {
        segment_bytes: 64 << 20,
        segment_age: None,
        index_interval_bytes: 4096,
    };
    let p = Partition::open(Arc::from("t"), 0, dir, settings, None).unwrap().0;
    p.set_role(role);
    p
}

const LEADER: WriteRole = WriteRole::Leader { epoch: 3 };

/// A batch of `records` lines from producer `pid` (none if negative, a
/// cursor on the last record otherwise), spread over `streams` label sets
/// (no labels if 0), with out-of-order timestamps and logpost's own
/// headers mixed in.
fn frame(codec: Compression, pid: i64, base_seq: i32, records: u32, streams: usize) -> Bytes {
    let mut b = BatchBuilder::new();
    if pid >= 0 {
        b.set_producer(ProducerInfo {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: base_seq,
        });
    }
    for i in 0..records {
        let mut hs = HeaderSet::new();
        if streams > 0 {
            hs.push("source", Some(format!("s{}", i as usize % streams).as_bytes()));
            hs.push("host", Some(b"h"));
        }
        hs.push("logpost.ns_be", Some(format!("{i}").as_bytes()));
        let ts = 1_700_000_000_000 + i64::from((i * 7919) % 1000);
        b.append(ts, None, Some(format!("line {i} of {base_seq}").as_bytes()), &[&hs]);
    }
    if pid >= 0 {
        let cursor = format!("{} 12 {}", base_seq + records as i32, pid);
        b.add_header_to_last(CURSOR_HEADER, cursor.as_bytes());
    }
    Bytes::from(b.finish(codec).unwrap())
}

/// An item as HTTP ingest makes it: validated, with stats and cursor.
fn ingested(frame: Bytes) -> AppendItem {
    let mut checked = split_and_check(&frame, 1 << 26).unwrap();
    let b = checked.remove(0);
    AppendItem {
        frame: b.frame,
        cursor: b.cursor,
        stats: Some(b.stats),
        ..AppendItem::default()
    }
}

const CODECS: [Compression; 4] = [
    Compression::None,
    Compression::Gzip { level: 1 },
    Compression::Snappy,
    Compression::Lz4,
];

/// Appends, one request each, batches of every codec and label shape,
/// a retry that dedup trims, and a batch without stats (as a Loki push).
fn fill(p: &Partition) {
    let mut seq = 0;
    for (c, codec) in CODECS.into_iter().enumerate() {
        for streams in [0, 1, 3, crate::store::summary::stats::MAX_BATCH_STREAMS + 2] {
            let pid = if c % 2 == 0 { -1 } else { 40 };
            let records = 5 + streams as u32;
            let item = ingested(frame(codec, pid, seq, records, streams));
            p.append(&[&item], false, true).unwrap();
            if pid >= 0 {
                seq += records as i32;
            }
        }
    }
    // Producer 41 stores sequences 0-9, then a retry of 5-14 comes with
    // the stats of all ten records: only 10-14 are stored.
    let first = ingested(frame(Compression::Gzip { level: 1 }, 41, 0, 10, 1));
    p.append(&[&first], false, true).unwrap();
    let retry = ingested(frame(Compression::Gzip { level: 1 }, 41, 5, 10, 2));
    let out = p.append(&[&retry], false, true).unwrap();
    assert!(matches!(out[0], BatchOutcome::Trimmed { skipped: 5, .. }), "{out:?}");
    let loki = AppendItem {
        frame: frame(Compression::None, 42, 0, 3, 1),
        ..AppendItem::default()
    };
    p.append(&[&loki], false, true).unwrap();
}

/// The whole log as a fetch answer's body.
fn log_body(p: &Partition) -> Bytes {
    Bytes::from(read_from(&p.end_view(), 0, 64 << 20).unwrap().frames)
}

fn frames(body: &[u8]) -> Vec<(&[u8], BatchHeader)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let len = frame_len(&body[pos..], MAX_FRAME_BYTES).unwrap().unwrap();
        let frame = &body[pos..pos + len];
        out.push((frame, BatchHeader::parse(frame).unwrap()));
        pos += len;
    }
    out
}

/// Every segment's summary: its stream table and blocks.
fn summaries(p: &Partition) -> Vec<(Vec<StreamLabels>, Vec<Block>)> {
    p.view()
        .segments
        .iter()
        .map(|s| {
            let s = s.summary.read().unwrap();
            (s.streams().to_vec(), s.blocks().to_vec())
        })
        .collect()
}

#[test]
fn shipped_stats_equal_rebuilt_stats() {
    let dir = tempfile::tempdir().unwrap();
    let leader = open(&dir.path().join("leader"), LEADER);
    fill(&leader);
    let body = log_body(&leader);
    let header = for_frames(&leader, &body).expect("the leader remembers its batches");
    assert!(header.len() <= MAX_HEADER_BYTES);
    let shipped = decode(header.as_bytes()).unwrap();
    let frames = frames(&body);
    assert_eq!(shipped.len(), frames.len());
    let mut unknown_cursors = 0;
    for ((frame, h), batch) in frames.iter().zip(&shipped) {
        assert_eq!(batch.key, BatchKey::of(h));
        assert_eq!(
            *batch.stats,
            build::stats_of(frame, h),
            "batch at offset {}",
            h.base_offset
        );
        match &batch.cursor {
            KnownCursor::Known(c) => assert_eq!(*c, cursor_of(frame, h), "batch at offset {}", h.base_offset),
            KnownCursor::Unknown => unknown_cursors += 1,
        }
    }
    assert_eq!(unknown_cursors, 1, "only the batch the append decoded itself");

    // Followers with and without the shipped stats, and the leader, hold
    // the same summaries.
    let with = open(&dir.path().join("with"), WriteRole::Follower);
    let copies = copied("t", 0, &body, &shipped).unwrap();
    assert_eq!((copies.shipped, copies.rebuilt), (frames.len() as u64, 0));
    with.append(&copies.items.iter().collect::<Vec<_>>(), false, false)
        .unwrap();
    let without = open(&dir.path().join("without"), WriteRole::Follower);
    let copies = copied("t", 0, &body, &shipped_stats("t", 0, None)).unwrap();
    assert_eq!((copies.shipped, copies.rebuilt), (0, frames.len() as u64));
    without
        .append(&copies.items.iter().collect::<Vec<_>>(), false, false)
        .unwrap();
    assert_eq!(summaries(&with), summaries(&without));
    assert_eq!(summaries(&with), summaries(&leader));
    for pid in [40, 41, 42] {
        let cursors = |p: &Partition| {
            p.producer(pid)
                .map(|e| e.cursors().map(str::to_owned).collect::<Vec<_>>())
        };
        assert!(cursors(&with).is_some_and(|c| !c.is_empty()), "producer {pid}");
        assert_eq!(cursors(&with), cursors(&without), "producer {pid}");
        // The leader took 42's batch without a cursor (as a caller that
        // did not decode it does); followers decode the frame's own.
        if pid != 42 {
            assert_eq!(cursors(&with), cursors(&leader), "producer {pid}");
        }
    }
}

#[test]
fn what_does_not_match_exactly_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let leader = open(dir.path(), LEADER);
    for seq in 0..3 {
        let item = ingested(frame(Compression::Gzip { level: 1 }, 7, seq * 4, 4, 1));
        leader.append(&[&item], false, true).unwrap();
    }
    let body = log_body(&leader);
    let mut shipped = decode(for_frames(&leader, &body).unwrap().as_bytes()).unwrap();
    assert_eq!(shipped.len(), 3);
    // Another CRC (another batch at that offset), and one not remembered.
    shipped[0].key.crc ^= 1;
    shipped.remove(1);
    let copies = copied("t", 0, &body, &shipped).unwrap();
    assert_eq!((copies.shipped, copies.rebuilt), (1, 2));
    let stats: Vec<bool> = copies.items.iter().map(|i| i.stats.is_some()).collect();
    assert_eq!(stats, [false, false, true]);
    for (item, (frame, h)) in copies.items.iter().zip(frames(&body)) {
        assert_eq!(item.cursor, cursor_of(frame, &h));
        assert!(item.cursor.is_some());
    }

    // An older leader sends no header; a garbled one is as good as none.
    for header in [None, Some("%%%"), Some("AQ==")] {
        let copies = copied("t", 0, &body, &shipped_stats("t", 0, header)).unwrap();
        assert_eq!((copies.shipped, copies.rebuilt), (0, 3), "{header:?}");
    }

    // A truncation, a role change and a restart forget everything.
    let keys: Vec<BatchKey> = frames(&body).iter().map(|(_, h)| BatchKey::of(h)).collect();
    let remembered = |p: &Partition| p.recent_batches(&keys).iter().filter(|b| b.is_some()).count();
    assert_eq!(remembered(&leader), 3);
    leader.truncate_to(8).unwrap();
    assert_eq!(remembered(&leader), 0);
    let item = ingested(frame(Compression::Gzip { level: 1 }, 8, 0, 4, 1));
    leader.append(&[&item], false, true).unwrap();
    let last = frames(&log_body(&leader)).last().map(|(_, h)| BatchKey::of(h)).unwrap();
    assert!(leader.recent_batches(&[last])[0].is_some());
    leader.set_role(WriteRole::Follower);
    leader.set_role(LEADER);
    assert!(leader.recent_batches(&[last])[0].is_none());
    drop(leader);
    let reopened = open(dir.path(), LEADER);
    assert_eq!(for_frames(&reopened, &log_body(&reopened)), None);
}

#[test]
fn a_standalone_partition_or_a_follower_remembers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), WriteRole::Standalone);
    p.append(&[&ingested(frame(Compression::None, -1, 0, 3, 1))], false, true)
        .unwrap();
    assert_eq!(for_frames(&p, &log_body(&p)), None);
}

#[test]
fn the_ring_forgets_the_oldest_and_they_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let leader = open(dir.path(), LEADER);
    let n = crate::store::partition::MAX_RING_BATCHES + 10;
    let one = frame(Compression::None, -1, 0, 1, 1);
    let items: Vec<AppendItem> = (0..n).map(|_| ingested(one.clone())).collect();
    for chunk in items.chunks(256) {
        leader.append(&chunk.iter().collect::<Vec<_>>(), false, true).unwrap();
    }
    let body = log_body(&leader);
    let shipped = decode(for_frames(&leader, &body).unwrap().as_bytes()).unwrap();
    assert!(!shipped.is_empty() && shipped.len() < n, "{}", shipped.len());
    assert!(shipped[0].key.base_offset >= 10, "the oldest were forgotten");
    let copies = copied("t", 0, &body, &shipped).unwrap();
    assert_eq!(copies.shipped, shipped.len() as u64);
    assert_eq!(copies.shipped + copies.rebuilt, n as u64);
}

fn stats(streams: Option<Vec<StreamLabels>>) -> Arc<BatchStats> {
    Arc::new(BatchStats {
        min_timestamp: -5,
        max_timestamp: i64::MAX,
        records: 3,
        line_bytes: u64::MAX,
        streams,
    })
}

fn labels(pairs: &[(&str, &str)]) -> StreamLabels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<Vec<_>>()
        .into()
}

fn sample() -> Vec<RecentBatch> {
    let a = labels(&[("host", "h"), ("source", "ä")]);
    let b = labels(&[]);
    let cursors = [
        KnownCursor::Known(None),
        KnownCursor::Unknown,
        KnownCursor::Known(Some("12 34 56".into())),
    ];
    cursors
        .into_iter()
        .enumerate()
        .map(|(i, cursor)| RecentBatch {
            key: BatchKey {
                base_offset: i64::MAX - 10 + i as i64,
                batch_length: 61 + i,
                crc: u32::MAX - i as u32,
                last_offset_delta: 2,
                records_count: 3,
            },
            stats: match i {
                0 => stats(None),
                1 => stats(Some(vec![])),
                _ => stats(Some(vec![Arc::clone(&a), b.clone(), Arc::clone(&a)])),
            },
            cursor,
        })
        .collect()
}

#[test]
fn encode_then_decode_gives_the_batches_back() {
    let batches = sample();
    let header = encode(&batches).unwrap();
    assert_eq!(decode(header.as_bytes()).unwrap(), batches);
    assert_eq!(encode(&[]), None);
    // Values a response header may carry.
    assert!(axum::http::HeaderValue::from_str(&header).is_ok());
}

#[test]
fn a_long_answer_ships_what_fits() {
    let many: Vec<StreamLabels> = (0..16)
        .map(|i| labels(&[("source", "x".repeat(200 + i).as_str())]))
        .collect();
    let batches: Vec<RecentBatch> = (0..2000)
        .map(|i| RecentBatch {
            key: BatchKey {
                base_offset: i,
                batch_length: 100,
                crc: 1,
                last_offset_delta: 0,
                records_count: 1,
            },
            // Each batch a label set of its own: the table grows too.
            stats: stats(Some(vec![
                labels(&[("n", format!("{i:0>300}").as_str())]),
                many[0].clone(),
            ])),
            cursor: KnownCursor::Known(Some("c".repeat(100))),
        })
        .collect();
    let header = encode(&batches).unwrap();
    assert!(header.len() <= MAX_HEADER_BYTES, "{}", header.len());
    let decoded = decode(header.as_bytes()).unwrap();
    assert!(!decoded.is_empty() && decoded.len() < batches.len());
    assert_eq!(decoded[..], batches[..decoded.len()]);
}

fn raw(header: &str) -> Vec<u8> {
    STANDARD.decode(header).unwrap()
}

fn header(raw: &[u8]) -> Vec<u8> {
    STANDARD.encode(raw).into_bytes()
}

#[test]
fn hostile_headers_are_errors() {
    let good = raw(&encode(&sample()).unwrap());
    // Every strict prefix is incomplete.
    for len in 0..good.len() {
        let r = decode(&header(&good[..len]));
        assert!(r.is_err(), "prefix of {len} bytes decoded: {r:?}");
    }
    // Every single-byte change either fails or decodes to something.
    for i in 0..good.len() {
        for x in [0x01, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= x;
            let _ = decode(&header(&bad));
        }
    }
    assert!(matches!(decode(b"not base64!"), Err(FetchStatsError::Base64(_))));
    assert_eq!(decode(&header(&[2])), Err(FetchStatsError::Version(2)));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        decode(&header(&trailing)),
        Err(FetchStatsError::Trailing { .. })
    ));
    // A count far past the bytes there: refused before allocating.
    let mut huge = vec![1];
    put_varlong(&mut huge, i64::MAX);
    assert!(matches!(
        decode(&header(&huge)),
        Err(FetchStatsError::OutOfRange { pos: 1, .. })
    ));
    let mut negative = vec![1];
    put_varlong(&mut negative, -1);
    assert!(matches!(
        decode(&header(&negative)),
        Err(FetchStatsError::OutOfRange { .. })
    ));
    // A stream index past the table, a label that is not UTF-8.
    let one = RecentBatch {
        stats: stats(Some(vec![labels(&[("k", "v")])])),
        ..sample().remove(0)
    };
    let good = raw(&encode(&[one]).unwrap());
    let mut bad_index = good.clone();
    let index_pos = good.len() - 2; // the index, then the cursor tag
    bad_index[index_pos] = 2; // zigzag 1: the table has one set
    assert!(matches!(
        decode(&header(&bad_index)),
        Err(FetchStatsError::OutOfRange {
            what: "stream index",
            ..
        })
    ));
    let mut bad_tag = good.clone();
    *bad_tag.last_mut().unwrap() = 14;
    assert!(matches!(
        decode(&header(&bad_tag)),
        Err(FetchStatsError::OutOfRange { what: "cursor tag", .. })
    ));
    let mut not_utf8 = good;
    let k = not_utf8.iter().position(|&b| b == b'k').unwrap();
    not_utf8[k] = 0xff;
    assert!(matches!(
        decode(&header(&not_utf8)),
        Err(FetchStatsError::NotUtf8 { what: "label name", .. })
    ));
}

proptest! {
    #[test]
    fn arbitrary_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = decode(&header(&bytes));
        let mut versioned = vec![VERSION];
        versioned.extend_from_slice(&bytes);
        let _ = decode(&header(&versioned));
    }
}
