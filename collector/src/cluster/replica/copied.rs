//! A follower's side of a fetch answer: its body split into checked
//! frames, each made an [`AppendItem`] with the stats and cursor the
//! leader shipped for it (`cluster::fetch_stats`) when they match the
//! frame exactly, or none, so that the append rebuilds them as recovery
//! would.
//!
//! Why a module of its own: `replica.rs` keeps the replica's roles and
//! bookkeeping; this is the pure part of [`Replica::append_copied`]
//! (frames, epochs, which stats to trust), testable without a cluster.
//!
//! [`Replica::append_copied`]: super::Replica::append_copied

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use logpost_shared::batch::{BatchHeader, check, frame_len, last_record_header};
use logpost_shared::record::CURSOR_HEADER;

use crate::cluster::fetch_stats;
use crate::store::partition::{BatchKey, KnownCursor, MAX_FRAME_BYTES, RecentBatch};
use crate::store::{AppendItem, StoreError};

/// Undecodable stats headers logged at `warn` per process; later ones at
/// `debug` (a leader of another version would send one with every fetch).
const WARN_BAD_HEADERS: u32 = 5;
static BAD_HEADERS: AtomicU32 = AtomicU32::new(0);

/// A fetch answer ready to append.
#[derive(Debug, Default)]
pub struct Copied {
    pub items: Vec<AppendItem>,
    /// `(leader epoch, base offset)` of every batch, in order.
    pub epochs: Vec<(i32, i64)>,
    /// Batches stored with the leader's stats.
    pub shipped: u64,
    /// Batches whose stats the append rebuilds.
    pub rebuilt: u64,
}

/// The stats the leader shipped, or none if the header is absent or
/// cannot be decoded (logged; every batch is then rebuilt).
pub fn shipped_stats(topic: &str, partition: u32, header: Option<&str>) -> Vec<RecentBatch> {
    let Some(value) = header else { return Vec::new() };
    match fetch_stats::decode(value.as_bytes()) {
        Ok(batches) => batches,
        Err(e) => {
            if BAD_HEADERS.fetch_add(1, Ordering::Relaxed) < WARN_BAD_HEADERS {
                tracing::warn!(topic, partition, error = %e, "leader's batch stats unreadable; rebuilding them");
            } else {
                tracing::debug!(topic, partition, error = %e, "leader's batch stats unreadable; rebuilding them");
            }
            Vec::new()
        }
    }
}

/// Splits a fetch answer's `body` into checked frames and pairs each with
/// the entry of `shipped` (in offset order) whose key it matches.
///
/// # Errors
/// A frame that is incomplete or fails its CRC check.
pub fn copied(topic: &str, partition: u32, body: &Bytes, shipped: &[RecentBatch]) -> Result<Copied, StoreError> {
    let mut out = Copied::default();
    let mut pos = 0usize;
    let corrupt = |what: String| StoreError::Unavailable(format!("{topic}/{partition}: {what}"));
    while pos < body.len() {
        let rest = body.get(pos..).unwrap_or_default();
        let len = match frame_len(rest, MAX_FRAME_BYTES) {
            Ok(Some(len)) => len,
            Ok(None) => return Err(corrupt(format!("leader's answer ends inside a batch at byte {pos}"))),
            Err(e) => return Err(corrupt(format!("leader's answer has a bad batch at byte {pos}: {e}"))),
        };
        let frame = body.slice(pos..pos + len);
        let header: BatchHeader =
            check(&frame).map_err(|e| corrupt(format!("leader's batch at byte {pos} fails its check: {e}")))?;
        let key = BatchKey::of(&header);
        let known = shipped
            .binary_search_by_key(&key.base_offset, |b| b.key.base_offset)
            .ok()
            .and_then(|i| shipped.get(i))
            .filter(|b| b.key == key);
        let (stats, cursor) = match known {
            Some(b) => (Some(Arc::clone(&b.stats)), b.cursor.clone()),
            None => (None, KnownCursor::Unknown),
        };
        let cursor = match cursor {
            KnownCursor::Known(cursor) => cursor,
            KnownCursor::Unknown => cursor_of(&frame, &header),
        };
        if stats.is_some() {
            out.shipped += 1;
        } else {
            out.rebuilt += 1;
        }
        out.epochs.push((header.partition_leader_epoch, header.base_offset));
        out.items.push(AppendItem {
            frame,
            cursor,
            stats,
            replicated: true,
            ..AppendItem::default()
        });
        pos += len;
    }
    Ok(out)
}

/// The last record's cursor header, decoded from the frame, as recovery
/// reads it: only batches with a producer id have one.
pub fn cursor_of(frame: &[u8], header: &BatchHeader) -> Option<String> {
    if header.producer.producer_id < 0 {
        return None;
    }
    last_record_header(frame, header, CURSOR_HEADER, MAX_FRAME_BYTES)
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
}
