//! The `.summary` file: a segment's summary as JSON, written atomically
//! (temp file, fsync, rename) at checkpoints, read back at start-up.
//!
//! Why JSON: the file is small (a few hundred bytes per MiB of log), read
//! once per segment at start-up, and an operator can read it with `jq`
//! when a query does not prune as expected. A file that does not parse, is
//! of another version, or is inconsistent (blocks not contiguous, stream
//! ids out of range) is treated as missing: the summary is rebuilt.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Block, SegmentSummary, StreamLabels};
use crate::store::file_names::TMP_SUFFIX;

/// Suffix of summary files.
pub const SUMMARY_SUFFIX: &str = ".summary";
/// Version of the format written; others are rebuilt.
const VERSION: u32 = 1;

/// `<dir>/<base offset, 20 digits>.summary`.
pub fn summary_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}{SUMMARY_SUFFIX}"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryJson {
    version: u32,
    covered: u64,
    streams: Vec<Vec<(String, String)>>,
    blocks: Vec<BlockJson>,
}

/// A block as stored; field names are short because there are thousands.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockJson {
    pos: u64,
    end: u64,
    base: i64,
    next: i64,
    min_ts: i64,
    max_ts: i64,
    records: u64,
    bytes: u64,
    streams: Option<Vec<u32>>,
}

/// Writes `summary` to `path` atomically; with `sync`, durably.
///
/// # Errors
/// The file cannot be written or renamed.
pub fn save(path: &Path, summary: &SegmentSummary, sync: bool) -> io::Result<()> {
    let json = SummaryJson {
        version: VERSION,
        covered: summary.covered(),
        streams: summary.streams().iter().map(|s| s.to_vec()).collect(),
        blocks: summary
            .blocks()
            .iter()
            .map(|b| BlockJson {
                pos: b.pos,
                end: b.end,
                base: b.base_offset,
                next: b.next_offset,
                min_ts: b.min_timestamp,
                max_ts: b.max_timestamp,
                records: b.records,
                bytes: b.line_bytes,
                streams: b.streams.clone(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&json).map_err(io::Error::other)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("segment.summary");
    let tmp = path.with_file_name(format!("{name}{TMP_SUFFIX}"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    if sync {
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads a summary; `None` if missing, unreadable or inconsistent.
pub fn load(path: &Path) -> Option<SegmentSummary> {
    let bytes = std::fs::read(path).ok()?;
    let json: SummaryJson = serde_json::from_slice(&bytes).ok()?;
    if json.version != VERSION {
        return None;
    }
    let streams: Vec<StreamLabels> = json.streams.into_iter().map(Arc::from).collect();
    let mut blocks = Vec::with_capacity(json.blocks.len());
    let mut expected = 0;
    for b in json.blocks {
        let ids_ok = b
            .streams
            .as_ref()
            .is_none_or(|ids| ids.iter().all(|&id| (id as usize) < streams.len()));
        if b.pos != expected || b.end <= b.pos || !ids_ok || b.next < b.base {
            return None;
        }
        expected = b.end;
        blocks.push(Block {
            pos: b.pos,
            end: b.end,
            base_offset: b.base,
            next_offset: b.next,
            min_timestamp: b.min_ts,
            max_timestamp: b.max_ts,
            records: b.records,
            line_bytes: b.bytes,
            streams: b.streams,
        });
    }
    if expected != json.covered {
        return None;
    }
    Some(SegmentSummary::from_parts(streams, blocks, json.covered))
}
