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

use super::checkpoint::Continues;
use super::file_server::FileServer;
use super::fingerprint::{FileKey, HEAD_BYTES, Head};
use crate::ship::acks::Acked;
use crate::ship::lookup::StreamState;

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
        let topic_of = |f: &super::tracked::TrackedFile| {
            self.cfg
                .sources
                .get(f.source)
                .map(|s| s.topic.clone())
                .unwrap_or_default()
        };
        let mut keys: Vec<(String, i64)> = Vec::with_capacity(pending.len());
        // Originals of copies adopted after a truncation, asked about after
        // the files themselves: (index in `pending`, index in `keys`).
        let mut originals: Vec<(usize, usize)> = Vec::new();
        for f in pending.iter().filter_map(|k| self.files.get(k)) {
            keys.push((topic_of(f), f.producer_id));
        }
        for (i, f) in pending.iter().enumerate() {
            if let Some(f) = self.files.get(f)
                && let Some(continues) = f.continues
            {
                originals.push((i, keys.len()));
                keys.push((topic_of(f), continues.original));
            }
        }
        match lookup.lookup(&keys) {
            Ok(states) => {
                for (i, (key, state)) in pending.iter().zip(&states).enumerate() {
                    let original = originals
                        .iter()
                        .find(|(p, _)| *p == i)
                        .and_then(|&(_, k)| states.get(k));
                    self.apply_stream_state(*key, state, original);
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

    fn apply_stream_state(&mut self, key: FileKey, state: &StreamState, original: Option<&StreamState>) {
        self.checkpoint_stale = true;
        let Some(f) = self.files.get_mut(&key) else { return };
        f.synced = true;
        if !state.found {
            if let (Some(original), Some(continues)) = (original, f.continues) {
                resume_copy(f, original, continues);
            }
            return; // the collector has nothing: the checkpoint stands
        }
        let next_seq = state.next_sequence.unwrap_or(f.next_seq);
        let Some((pos, head)) = state.cursor.as_deref().and_then(parse_cursor) else {
            // Known without a cursor: keep the position, never reuse a number.
            f.next_seq = f.next_seq.max(next_seq);
            return;
        };
        let size = f.size().unwrap_or(0);
        // A head shorter than what the cursor covers (up to HEAD_BYTES)
        // cannot tell this content from a later one: do not trust it.
        let head_covers = u64::from(head.len) >= pos.min(HEAD_BYTES as u64);
        let same_content = head_covers && f.file.as_ref().is_some_and(|file| head.matches(file).unwrap_or(false));
        let changed = !(same_content && pos <= size);
        let resume = if changed {
            // The content changed since the collector's last batch
            // (truncated or replaced): the current content is new to it,
            // and the head must be the new content's, or later cursors
            // would vouch for the old one.
            if let Some(file) = &f.file
                && let Ok(h) = Head::read(file)
            {
                f.head = h;
            }
            0
        } else {
            pos
        };
        if resume != f.framer.emitted_pos() || f.framer.partial_len() > 0 {
            tracing::info!(path = %f.path.display(), from = f.framer.emitted_pos(), to = resume, next_seq,
                "resuming after what the collector holds");
        }
        if resume != f.framer.next_pos() {
            f.tail = super::fingerprint::Tail::NONE;
        }
        // The collector holds records of it: not a new file any more.
        f.pristine = false;
        f.framer.reset(resume);
        f.next_seq = next_seq;
        f.generation_start_seq = next_seq;
        f.committed = Acked {
            pos: resume,
            next_seq,
            generation: f.generation,
        };
        f.at_eof = false;
        if changed && head_covers && pos > 0 {
            // Truncated (copytruncate) since that batch: what had not been
            // stored of the old content is in the copy, if there is one.
            let (dir, source) = (f.path.parent().map(std::path::Path::to_path_buf), f.source);
            // That content began no earlier than the file itself.
            let window = super::copies::CopyWindow {
                from: f
                    .file
                    .as_ref()
                    .and_then(|h| h.metadata().ok())
                    .and_then(|m| super::fingerprint::born(&m)),
                until: std::time::SystemTime::now(),
            };
            let waiting_copy = self
                .files
                .values_mut()
                .find(|c| c.after_original.is_some_and(|(original, ..)| original == key));
            if let Some(copy) = waiting_copy {
                // The copy adopted at the truncation waits for the old
                // content's acknowledgements, which will not come now: it
                // starts where the collector's copy of the old content ends.
                tracing::info!(path = %copy.path.display(), pos, "reading the copy from where the collector's records of the original end");
                copy.start_at(pos);
                copy.after_original = None;
            } else if let Some(dir) = dir {
                self.adopt_truncated_copy(&dir, head, pos, source, None, window, Instant::now());
            }
        }
    }
}

/// Where a copy of truncated content whose own stream has nothing stored
/// resumes, given what the collector stored of the original's stream:
/// - right after the original's cursor if that is in this content (even
///   before the copy's position: lines the original had sent but not had
///   stored when the agent crashed are read again from the copy);
/// - at the copy's end if the position came from the original's checkpoint
///   and the stream has records past it from later content: the run before
///   the crash saw the truncation live and found nothing left to read in a
///   copy (had it found something, this copy would have its own checkpoint
///   entry, written before the original's later content was read);
/// - else where the checkpoint said (a copy adopted live: its position is
///   where the original's records of this content end).
fn resume_copy(f: &mut super::tracked::TrackedFile, original: &StreamState, continues: Continues) {
    if !original.found {
        return;
    }
    let size = f.size().unwrap_or(0);
    let cursor = original.cursor.as_deref().and_then(parse_cursor);
    let resume = match cursor {
        Some((pos, head))
            if u64::from(head.len) >= pos.min(HEAD_BYTES as u64)
                && pos <= size
                && f.file.as_ref().is_some_and(|file| head.matches(file).unwrap_or(false)) =>
        {
            pos
        }
        _ if continues
            .checkpoint_seq
            .is_some_and(|seq| original.next_sequence.is_some_and(|n| n > seq)) =>
        {
            size
        }
        _ => return,
    };
    if resume != f.framer.emitted_pos() {
        tracing::info!(path = %f.path.display(), from = f.framer.emitted_pos(), to = resume,
            "resuming the copy after what the collector holds of the original");
        f.start_at(resume);
    }
}
