//! Summaries through the partition's life: appends, rolls, clean closes,
//! crashes, torn tails and lost files must all end with summaries equal to
//! ones built from the log afresh.

use std::sync::Arc;

use logpost_shared::batch::{BatchBuilder, HeaderSet};
use logpost_shared::compression::Compression;

use crate::store::partition::{Partition, PartitionSettings};
use crate::store::summary::{SegmentSummary, build};

fn open(dir: &std::path::Path) -> Partition {
    let settings = PartitionSettings {
        segment_bytes: 4096,
        segment_age: None,
        index_interval_bytes: 256,
    };
    Partition::open(Arc::from("t"), 0, dir, settings, None).unwrap().0
}

fn batch(i: i64) -> Vec<u8> {
    let mut headers = HeaderSet::new();
    headers.push("source", Some(format!("s{}", i % 3).as_bytes()));
    headers.push("logpost.cursor", Some(b"ignored"));
    let mut b = BatchBuilder::new();
    for r in 0..20 {
        // Out of order inside the batch: the minimum is not the first record.
        let ts = 1_000 * i + (r * 7) % 20;
        b.append(ts, None, Some(format!("line {i} {r}").as_bytes()), &[&headers]);
    }
    b.finish(Compression::Gzip { level: 1 }).unwrap()
}

/// (valid and complete, blocks, streams) of every segment, and what a
/// fresh build from each log gives.
fn summaries(p: &Partition) -> Vec<(bool, SegmentSummary, SegmentSummary)> {
    p.view()
        .segments
        .iter()
        .map(|s| {
            let have = s.summary.read().unwrap().clone();
            let mut fresh = SegmentSummary::new();
            build::extend(&mut fresh, &s.file, s.len).unwrap();
            (have.is_valid() && have.covered() == s.len, have, fresh)
        })
        .collect()
}

fn assert_all_match(p: &Partition) {
    let all = summaries(p);
    assert!(all.len() > 2, "the test needs several segments");
    for (i, (complete, have, fresh)) in all.iter().enumerate() {
        assert!(complete, "segment {i}: summary incomplete");
        assert_eq!(have.blocks(), fresh.blocks(), "segment {i}");
        assert_eq!(have.streams(), fresh.streams(), "segment {i}");
        let streams: Vec<&str> = have.streams().iter().map(|s| s[0].1.as_str()).collect();
        assert!(
            have.streams().iter().all(|s| s.len() == 1),
            "logpost.* headers are not labels"
        );
        assert!(!streams.is_empty());
    }
}

fn fill(p: &Partition, from: i64, to: i64) {
    for i in from..to {
        p.append_frames(&[&batch(i)], true).unwrap();
    }
}

#[test]
fn appends_then_clean_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    fill(&p, 0, 40);
    assert_all_match(&p);
    let first = p.view().segments[0].summary.read().unwrap().clone();
    assert_eq!(first.time_bounds(), Some((0, first.time_bounds().unwrap().1)));
    p.close();
    drop(p);
    let p = open(dir.path());
    assert_all_match(&p);
}

#[test]
fn crash_without_checkpoint_and_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    fill(&p, 0, 40);
    drop(p); // no close: the active segment's summary file is older than its log
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(active_name(dir.path())))
        .unwrap();
    f.write_all(b"torn garbage that is not a batch").unwrap();
    let p = open(dir.path());
    assert_all_match(&p);
    fill(&p, 40, 50);
    assert_all_match(&p);
}

/// The file name of the newest segment.
fn active_name(dir: &std::path::Path) -> String {
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn lost_summary_files_are_rebuilt_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    fill(&p, 0, 40);
    p.close();
    drop(p);
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "summary") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let p = open(dir.path());
    assert!(
        summaries(&p).iter().all(|(complete, _, _)| !complete),
        "without files, summaries must not be trusted"
    );
    // Appends meanwhile are caught up when the rebuilt summary is installed.
    fill(&p, 40, 41);
    let rebuilt = p.rebuild_summaries(&|| false);
    assert!(rebuilt > 2, "{rebuilt}");
    assert_all_match(&p);
    fill(&p, 41, 45);
    assert_all_match(&p);
}
