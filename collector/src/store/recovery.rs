//! Opening a partition after any kind of stop, in passes (Kafka's
//! LogLoader): delete temp files; load the recovery point and the producer
//! snapshot taken with it; open segments below the recovery point as they
//! are (rebuilding an index only if it is missing or inconsistent); check
//! the log from the recovery point to the end batch by batch, truncating at
//! the first bad batch and deleting any segment after it.
//!
//! Why a module of its own: this is the only code that decides what of a
//! crashed partition survives. Its cost is bounded by what was written since
//! the last checkpoint, not by the data stored.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use logpost_shared::batch::last_record_header;
use logpost_shared::record::CURSOR_HEADER;
use serde::{Deserialize, Serialize};

use super::faults::Faults;
use super::file_names::{
    RECOVERY_POINT, SNAPSHOT_SUFFIX, TMP_SUFFIX, parse_log_name, parse_offset_name, snapshot_path,
};
use super::producer_state::ProducerState;
use super::segment::{Segment, SegmentError};

/// Everything below `offset` (in segment `segment`, below byte `position`)
/// was durable, and its indexes and the producer snapshot `offset` were
/// written, when this was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    pub offset: i64,
    pub segment: i64,
    pub position: u64,
}

/// What loading did, for the start-up log.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub segments: usize,
    pub scanned_bytes: u64,
    pub truncated_bytes: u64,
    pub removed_segments: usize,
    pub rebuilt_indexes: usize,
    /// Producer state came from a snapshot (else it was replayed from the log).
    pub snapshot_used: bool,
    pub reason: Option<String>,
}

/// A loaded partition.
#[derive(Debug)]
pub struct Loaded {
    pub segments: BTreeMap<i64, Segment>,
    pub producers: ProducerState,
    pub recovery_point: Option<RecoveryPoint>,
    pub report: LoadReport,
}

/// Loads the partition in `dir` (which must exist).
///
/// # Errors
/// I/O errors listing, opening or truncating files.
pub fn load_partition(dir: &Path, index_interval: u64, faults: Option<Arc<Faults>>) -> Result<Loaded, SegmentError> {
    let list_err = |source: io::Error| SegmentError::Io {
        path: dir.to_owned(),
        op: "list",
        source,
    };
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            let _ = std::fs::remove_file(entry.path());
        } else if let Some(base) = parse_log_name(name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let mut report = LoadReport {
        segments: bases.len(),
        ..LoadReport::default()
    };
    if bases.is_empty() {
        let seg = Segment::create(dir, 0, index_interval, faults)?;
        super::sync_dir(dir).map_err(list_err)?;
        let mut segments = BTreeMap::new();
        segments.insert(0, seg);
        return Ok(Loaded {
            segments,
            producers: ProducerState::new(),
            recovery_point: None,
            report,
        });
    }

    let rp = read_recovery_point(dir).filter(|rp| bases.binary_search(&rp.segment).is_ok());
    let snapshot = rp.and_then(|rp| {
        let bytes = std::fs::read(snapshot_path(dir, rp.offset)).ok()?;
        ProducerState::from_snapshot(&bytes).ok()
    });
    // Without a recovery point and its snapshot, replay everything: slow,
    // but only after a crash before the first checkpoint or lost files.
    let (start_segment, start_pos, start_offset, mut producers) = match (rp, snapshot) {
        (Some(rp), Some(state)) => {
            report.snapshot_used = true;
            (rp.segment, rp.position, rp.offset, state)
        }
        _ => {
            let first = bases.first().copied().unwrap_or(0);
            (first, 0, first, ProducerState::new())
        }
    };
    let now_ms = super::topic::now_ms();

    let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
    let mut expected = start_offset;
    let mut torn = false;
    for (i, &base) in bases.iter().enumerate() {
        if torn {
            // Everything after a torn batch is gone: a later segment cannot
            // continue an offset sequence that was cut.
            let (seg, _) = Segment::open(dir, base, base, index_interval, faults.clone())?;
            tracing::warn!(path = %seg.path().display(), "deleting segment after a torn one");
            seg.delete_files();
            report.removed_segments += 1;
            continue;
        }
        let next_base = bases.get(i + 1).copied();
        if base < start_segment {
            let (mut seg, indexes_ok) =
                Segment::open(dir, base, next_base.unwrap_or(base), index_interval, faults.clone())?;
            if !indexes_ok {
                tracing::warn!(path = %seg.path().display(), "index missing or inconsistent; rebuilding it");
                seg.rebuild_indexes()?;
                if let Some(next) = next_base {
                    seg.set_next_offset(next);
                }
                report.rebuilt_indexes += 1;
            }
            // A sealed segment's summary must cover it whole; if not, the
            // maintenance thread rebuilds it (recovery stays bounded).
            seg.check_summary();
            segments.insert(base, seg);
            continue;
        }
        let (from_pos, from_offset) = if base == start_segment {
            (start_pos, start_offset)
        } else {
            (0, expected)
        };
        if base != start_segment && base != expected {
            torn = true;
            report.reason = Some(format!("segment {base} does not continue offset {expected}"));
            let (seg, _) = Segment::open(dir, base, base, index_interval, faults.clone())?;
            seg.delete_files();
            report.removed_segments += 1;
            continue;
        }
        let (mut seg, indexes_ok) = Segment::open(dir, base, from_offset, index_interval, faults.clone())?;
        // Lost indexes of the start segment: check it from its start (the
        // producer state already holds what lies before the recovery point).
        let (scan_pos, scan_offset) = if indexes_ok { (from_pos, from_offset) } else { (0, base) };
        if !indexes_ok && from_pos > 0 {
            report.rebuilt_indexes += 1;
        }
        let tail = seg.recover_tail(scan_pos, scan_offset, |h, frame| {
            if h.base_offset < from_offset || h.producer.producer_id < 0 {
                return;
            }
            // The agent's cursor rides on the batch's last record.
            let cursor = last_record_header(frame, h, CURSOR_HEADER, super::partition::MAX_FRAME_BYTES)
                .ok()
                .flatten()
                .and_then(|v| String::from_utf8(v).ok());
            producers.update_with_cursor(
                h.producer.producer_id,
                h.producer.producer_epoch,
                h.producer.base_sequence,
                h.records_count,
                h.base_offset,
                now_ms,
                cursor,
            );
        })?;
        report.scanned_bytes += tail.scanned_bytes;
        report.truncated_bytes += tail.truncated_bytes;
        if tail.truncated_bytes > 0 {
            torn = true;
            report.reason = tail.reason.clone();
            tracing::warn!(path = %seg.path().display(), valid_bytes = seg.len(), dropped_bytes = tail.truncated_bytes,
                reason = tail.reason.as_deref().unwrap_or(""), "truncated torn tail of segment");
        }
        expected = seg.next_offset();
        segments.insert(base, seg);
    }
    // A segment below the start keeps the next offset its successor gave it;
    // the last one before the start segment needs the start segment's base.
    Ok(Loaded {
        segments,
        producers,
        recovery_point: rp,
        report,
    })
}

/// Reads `recovery-point.json`; `None` if missing or unreadable.
pub fn read_recovery_point(dir: &Path) -> Option<RecoveryPoint> {
    let bytes = std::fs::read(dir.join(RECOVERY_POINT)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the producer snapshot for `rp.offset`, then `rp` itself, each
/// atomically, and deletes snapshots older than the previous one.
///
/// # Errors
/// Any file operation failed; the old recovery point stays in force.
pub fn write_checkpoint(dir: &Path, rp: RecoveryPoint, producers: &ProducerState) -> io::Result<()> {
    write_atomic(dir, &snapshot_path(dir, rp.offset), &producers.to_snapshot())?;
    let json = serde_json::to_vec(&rp).map_err(io::Error::other)?;
    write_atomic(dir, &dir.join(RECOVERY_POINT), &json)?;
    super::sync_dir(dir)?;
    let mut snapshots: Vec<i64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| parse_offset_name(n, SNAPSHOT_SUFFIX))
        })
        .collect();
    snapshots.sort_unstable();
    // Keep the newest two: the one just written and its predecessor.
    for old in snapshots.iter().rev().skip(2) {
        let _ = std::fs::remove_file(snapshot_path(dir, *old));
    }
    Ok(())
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
