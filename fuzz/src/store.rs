//! A partition's files after a crash, recovered as the collector does at
//! start-up (`store::recovery::load_partition`).
//!
//! Input: a flags byte, then sections separated by [`SECTION`]: the first
//! segment's `.log`, its `.index`, its `.timeindex`, a second segment's
//! `.log`, `recovery-point.json`, and the producer snapshot it names.
//! Flag bit 0 rewrites the CRC of each whole batch in the logs (so that
//! mutations reach what lies behind the CRC check); bits 4-7 choose the
//! second segment's base offset.
//!
//! Checks: without a recovery point every segment is checked from its
//! start, and then every batch left on disk is whole, passes its CRC and
//! continues the offsets of the one before; recovering again finds
//! nothing more to cut.

use std::path::Path;

use logpost_collector::store::file_names::{INDEX_SUFFIX, RECOVERY_POINT, TIMEINDEX_SUFFIX, log_path, snapshot_path};
use logpost_collector::store::producer_state::ProducerState;
use logpost_collector::store::recovery::{load_partition, read_recovery_point};
use logpost_shared::batch::{check, frame_len};

use crate::batch::fix_crcs;

/// Separates the sections of an input (a fuzzer learns it from the
/// dictionary and the seeds).
pub const SECTION: &[u8] = b"\n--8<--\n";
/// Bytes between offset index entries: small, so that short inputs get
/// index entries too.
const INDEX_INTERVAL: u64 = 64;

/// Writes the input's files into a fresh directory and recovers it.
///
/// # Panics
/// When a property above fails: a finding.
pub fn recover(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut sections = split_sections(rest);
    if flags & 1 != 0 {
        for i in [0, 3] {
            if let Some(s) = sections.get_mut(i) {
                fix_crcs(s);
            }
        }
    }
    let Ok(dir) = tempfile::tempdir() else { return };
    let dir = dir.path();
    let second_base = i64::from(flags >> 4);
    let section = |i: usize| sections.get(i).filter(|s| !s.is_empty());
    let segment0 = log_path(dir, 0);
    let mut files = vec![(segment0.clone(), sections.first().cloned().unwrap_or_default())];
    if let Some(s) = section(1) {
        files.push((segment0.with_extension(&INDEX_SUFFIX[1..]), s.clone()));
    }
    if let Some(s) = section(2) {
        files.push((segment0.with_extension(&TIMEINDEX_SUFFIX[1..]), s.clone()));
    }
    if let Some(s) = section(3) {
        files.push((log_path(dir, second_base.max(1)), s.clone()));
    }
    if let Some(s) = section(4) {
        files.push((dir.join(RECOVERY_POINT), s.clone()));
    }
    if let Some(s) = section(5) {
        let _ = ProducerState::from_snapshot(s);
        let offset = read_recovery_point_of(dir, &files).unwrap_or(0);
        files.push((snapshot_path(dir, offset), s.clone()));
    }
    for (path, bytes) in &files {
        if std::fs::write(path, bytes).is_err() {
            return;
        }
    }
    let checked_whole = section(4).is_none();
    let Ok(loaded) = load_partition(dir, INDEX_INTERVAL, None) else {
        return;
    };
    drop(loaded);
    if checked_whole {
        assert_logs_whole(dir);
        match load_partition(dir, INDEX_INTERVAL, None) {
            Ok(again) => assert_eq!(again.report.truncated_bytes, 0, "a second recovery cut more"),
            Err(e) => panic!("a recovered partition does not open again: {e}"),
        }
    }
}

fn split_sections(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(SECTION.len()).position(|w| w == SECTION) {
        out.push(rest[..at].to_vec());
        rest = &rest[at + SECTION.len()..];
    }
    out.push(rest.to_vec());
    out
}

/// The offset the input's recovery point names, written first to read it
/// the way recovery will.
fn read_recovery_point_of(dir: &Path, files: &[(std::path::PathBuf, Vec<u8>)]) -> Option<i64> {
    let (path, bytes) = files.iter().find(|(p, _)| p.ends_with(RECOVERY_POINT))?;
    std::fs::write(path, bytes).ok()?;
    read_recovery_point(dir).map(|rp| rp.offset)
}

/// Every `.log` left in `dir` is whole batches with good CRCs, offsets
/// continuing from segment to segment.
fn assert_logs_whole(dir: &Path) {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let base: i64 = name.strip_suffix(".log")?.parse().ok()?;
            Some((base, e.path()))
        })
        .collect();
    logs.sort();
    let mut expected: Option<i64> = None;
    for (base, path) in logs {
        let Ok(bytes) = std::fs::read(&path) else {
            panic!("{}: cannot read", path.display())
        };
        let mut next = expected.unwrap_or(base);
        assert_eq!(next, base, "{}: segment does not continue the offsets", path.display());
        let mut pos = 0;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let len = match frame_len(rest, usize::MAX) {
                Ok(Some(len)) => len,
                other => panic!(
                    "{}: byte {pos}: not a whole batch after recovery: {other:?}",
                    path.display()
                ),
            };
            let header = match check(&rest[..len]) {
                Ok(h) => h,
                Err(e) => panic!("{}: byte {pos}: recovery kept a bad batch: {e}", path.display()),
            };
            assert_eq!(
                header.base_offset,
                next,
                "{}: byte {pos}: offsets do not continue",
                path.display()
            );
            next = header.last_offset() + 1;
            pos += len;
        }
        expected = Some(next);
    }
}
