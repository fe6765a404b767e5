//! Resuming each file where the collector has got (exactly-once delivery).
//!
//! Before a file is read, the collector is asked what it holds of the
//! file's stream: the next sequence number and the cursor (file position
//! and content fingerprint) sent with the stream's last stored batch. The
//! file then resumes right after what is stored, whatever the local
//! checkpoint says: a crash between the collector's acknowledgement and the
//! checkpoint write costs no duplicate, and a collector that lost data it
//! had acknowledged (`fsync = "interval"` and a power cut) gets it again if
//! the file still has it. Files are looked up in batches, and not read
//! until their lookup has succeeded.

use std::time::{Duration, Instant};

use super::file_server::FileServer;
use super::fingerprint::{FileKey, Head};
use crate::ship::acks::Acked;
use crate::ship::client::StreamState;

/// Streams asked about in one request.
const LOOKUP_BATCH: usize = 5_000;
/// Wait before asking again after a failed lookup.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A parsed cursor: `<position> <head length> <head CRC-32C>`.
fn parse_cursor(text: &str) -> Option<(u64, Head)> {
    let mut it = text.split_ascii_whitespace();
    let pos = it.next()?.parse().ok()?;
    let len = it.next()?.parse().ok()?;
    let crc = it.next()?.parse().ok()?;
    Some((pos, Head { len, crc }))
}

impl FileServer {
    /// Looks up files not yet synchronised (and those the collector asked
    /// to resynchronise); returns whether any file became readable.
    pub(super) fn sync_streams(&mut self, now: Instant) -> bool {
        for key in self.acks.take_resync() {
            if let Some(f) = self.files.get_mut(&key) {
                tracing::warn!(path = %f.path.display(), "resynchronising file with the collector");
                f.synced = false;
            }
        }
        let Some(lookup) = self.lookup.clone() else {
            // Dry run: nothing to ask.
            for f in self.files.values_mut() {
                f.synced = true;
            }
            return false;
        };
        if now < self.next_sync || self.files.values().all(|f| f.synced) {
            return false;
        }
        let pending: Vec<FileKey> = self
            .files
            .values()
            .filter(|f| !f.synced)
            .map(|f| f.key)
            .take(LOOKUP_BATCH)
            .collect();
        let keys: Vec<(String, i64)> = pending
            .iter()
            .filter_map(|k| self.files.get(k))
            .map(|f| {
                (
                    self.cfg
                        .sources
                        .get(f.source)
                        .map(|s| s.topic.clone())
                        .unwrap_or_default(),
                    f.producer_id,
                )
            })
            .collect();
        match lookup.lookup(&keys) {
            Ok(states) => {
                for (key, state) in pending.iter().zip(states) {
                    self.apply_stream_state(*key, &state);
                }
                self.sync_failures = 0;
                true
            }
            Err(e) => {
                if self.sync_failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, files = pending.len(), "cannot ask the collector where files resume; retrying");
                }
                self.sync_failures += 1;
                self.next_sync = now + RETRY_AFTER;
                false
            }
        }
    }

    fn apply_stream_state(&mut self, key: FileKey, state: &StreamState) {
        let Some(f) = self.files.get_mut(&key) else { return };
        f.synced = true;
        if !state.found {
            return; // the collector has nothing: the checkpoint stands
        }
        let next_seq = state.next_sequence.unwrap_or(f.next_seq);
        let Some((pos, head)) = state.cursor.as_deref().and_then(parse_cursor) else {
            // Known without a cursor: keep the position, never reuse a number.
            f.next_seq = f.next_seq.max(next_seq);
            return;
        };
        let size = f.size().unwrap_or(0);
        let same_content = f.file.as_ref().is_some_and(|file| head.matches(file).unwrap_or(false));
        let resume = if same_content && pos <= size {
            pos
        } else {
            // The content changed since the collector's last batch
            // (truncated or replaced): the current content is new to it.
            0
        };
        if resume != f.framer.emitted_pos() || f.framer.partial_len() > 0 {
            tracing::info!(path = %f.path.display(), from = f.framer.emitted_pos(), to = resume, next_seq,
                "resuming after what the collector holds");
        }
        f.framer.reset(resume);
        f.next_seq = next_seq;
        f.generation_start_seq = next_seq;
        f.committed = Acked {
            pos: resume,
            next_seq,
            generation: f.generation,
        };
        f.at_eof = false;
    }
}
