use std::sync::Arc;

use super::file::{load, save, summary_path};
use super::*;

fn stats(min: i64, max: i64, streams: Option<&[&str]>) -> BatchStats {
    BatchStats {
        min_timestamp: min,
        max_timestamp: max,
        records: 10,
        line_bytes: 100,
        streams: streams.map(|s| {
            s.iter()
                .map(|name| -> StreamLabels { Arc::from(vec![("source".to_string(), (*name).to_string())]) })
                .collect()
        }),
    }
}

#[test]
fn batches_fill_blocks_of_block_bytes() {
    let mut s = SegmentSummary::new();
    let half = BLOCK_BYTES / 2;
    s.add_batch(0, half, 0, 9, &stats(100, 200, Some(&["a"])));
    s.add_batch(half, half, 10, 19, &stats(50, 150, Some(&["b", "a"])));
    s.add_batch(2 * half, 10, 20, 29, &stats(300, 400, Some(&["c"])));
    assert_eq!(s.blocks().len(), 2);
    let b0 = &s.blocks()[0];
    assert_eq!(
        (b0.pos, b0.end, b0.base_offset, b0.next_offset),
        (0, BLOCK_BYTES, 0, 20)
    );
    assert_eq!(
        (b0.min_timestamp, b0.max_timestamp, b0.records, b0.line_bytes),
        (50, 200, 20, 200)
    );
    assert_eq!(b0.streams, Some(vec![0, 1]));
    assert_eq!(s.blocks()[1].streams, Some(vec![2]));
    assert_eq!(s.streams().len(), 3);
    assert_eq!(s.covered(), BLOCK_BYTES + 10);
    assert_eq!(s.time_bounds(), Some((50, 400)));
}

#[test]
fn unknown_streams_stay_unknown_in_their_block() {
    let mut s = SegmentSummary::new();
    s.add_batch(0, 10, 0, 0, &stats(1, 1, Some(&["a"])));
    s.add_batch(10, 10, 1, 1, &stats(1, 1, None));
    s.add_batch(20, 10, 2, 2, &stats(1, 1, Some(&["b"])));
    assert_eq!(s.blocks()[0].streams, None);
}

#[test]
fn a_gap_invalidates() {
    let mut s = SegmentSummary::new();
    s.add_batch(0, 10, 0, 0, &stats(1, 1, Some(&["a"])));
    s.add_batch(20, 10, 1, 1, &stats(1, 1, Some(&["a"])));
    assert!(!s.is_valid());
    assert!(s.blocks().is_empty());
    s.add_batch(30, 10, 2, 2, &stats(1, 1, Some(&["a"])));
    assert!(!s.is_valid(), "an invalid summary stays invalid until rebuilt");
}

#[test]
fn file_round_trip_and_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let path = summary_path(dir.path(), 42);
    assert!(path.ends_with("00000000000000000042.summary"));
    let mut s = SegmentSummary::new();
    s.add_batch(0, BLOCK_BYTES, 42, 51, &stats(5, 7, Some(&["a"])));
    s.add_batch(BLOCK_BYTES, 10, 52, 61, &stats(8, 9, None));
    assert_eq!(s.blocks().len(), 2);
    save(&path, &s, true).unwrap();
    let back = load(&path).unwrap();
    assert_eq!(back.blocks(), s.blocks());
    assert_eq!(back.streams(), s.streams());
    assert_eq!(back.covered(), s.covered());
    assert!(back.is_valid() && !back.is_dirty());

    // Inconsistent content is treated as missing (rebuilt), never trusted.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"covered\":", "\"covered\":1")).unwrap();
    assert!(load(&path).is_none());
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    assert!(load(&path).is_none());
    std::fs::write(&path, text.replace("\"streams\":[0]", "\"streams\":[7]")).unwrap();
    assert!(load(&path).is_none());
    assert!(load(&dir.path().join("missing.summary")).is_none());
}
