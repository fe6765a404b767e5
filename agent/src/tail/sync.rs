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
use crate::ship::lookup::{StreamLookup, StreamState};

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
                self.continue_known_contents(&lookup, &pending);
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

    /// Files whose own stream has nothing stored yet, about to be read
    /// from their start or from where the checkpoint placed a copy: if the
    /// collector holds their content from another stream (a copy, plain or
    /// compressed, made while the agent was down; or the original's content
    /// before a copytruncate, which the collector remembers after the
    /// stream went on in new content), each goes on from where the stored
    /// records of that content end: forward (what is stored is stored,
    /// whichever stream sent it), or back for a copy placed past them.
    /// Heads too short to
    /// identify a content are not asked about; files held back as copies
    /// of a live file are that file's business.
    fn continue_known_contents(&mut self, lookup: &StreamLookup, pending: &[FileKey]) {
        let candidates: Vec<FileKey> = pending
            .iter()
            .filter(|k| {
                self.files.get(*k).is_some_and(|f| {
                    (f.continues.is_some() || f.framer.next_pos() == 0)
                        && f.after_original.is_none()
                        && f.copy_check_until.is_none()
                        && f.next_seq == 0
                        && f.head.len >= super::copies::MIN_COPY_HEAD
                })
            })
            .copied()
            .collect();
        if candidates.is_empty() {
            return;
        }
        let keys: Vec<(String, String)> = candidates
            .iter()
            .filter_map(|k| self.files.get(k))
            .map(|f| {
                let topic = self
                    .cfg
                    .sources
                    .get(f.source)
                    .map(|s| s.topic.clone())
                    .unwrap_or_default();
                (topic, format!("{} {}", f.head.len, f.head.crc))
            })
            .collect();
        let states = match lookup.by_content(&keys) {
            Ok(states) => states,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the collector which contents it holds; reading those files from their start");
                return;
            }
        };
        for (key, state) in candidates.iter().zip(&states) {
            let Some(f) = self.files.get(key) else { continue };
            if !state.found || state.producer_id == f.producer_id {
                continue;
            }
            // A stream this agent is reading from the same content (the
            // original, still growing, or renamed away and read to its
            // end through its handle while logrotate compresses it): this
            // file is its copy, and its lines arrive through it.
            let reader = self
                .files
                .values()
                .find(|o| o.key != f.key && o.producer_id == state.producer_id && o.head == f.head)
                .map(|o| o.gone && o.file.is_some());
            match reader {
                Some(true) => {
                    // Read to its end by the original: nothing left here.
                    let Some(f) = self.files.get_mut(key) else { continue };
                    let size = f.size().unwrap_or(0);
                    tracing::info!(path = %f.path.display(), stream = state.producer_id,
                        "a copy of content another file is read to its end from; not read");
                    f.start_at(size);
                    f.continues = Some(Continues {
                        original: state.producer_id,
                        checkpoint_seq: None,
                    });
                    self.checkpoint_stale = true;
                    continue;
                }
                Some(false) => {
                    // Its original still grows: held as its copy (read
                    // past what the original had, once that is truncated).
                    if let Some(f) = self.files.get_mut(key) {
                        f.copy_check_until = Some(Instant::now() + super::copies::COPY_DECISION);
                    }
                    continue;
                }
                None => {}
            }
            let Some((pos, head)) = state.cursor.as_deref().and_then(parse_cursor) else {
                continue;
            };
            let size = f.size().unwrap_or(0);
            // Forward past what is stored; or back, for a copy that sent
            // nothing yet and was placed past what is stored (where its
            // original had read to when the agent died): no stream holds
            // the lines in between.
            let moves = pos > f.framer.next_pos() || (pos < f.framer.next_pos() && f.continues.is_some());
            if head != f.head || pos > size || !moves || u64::from(head.len) < pos.min(HEAD_BYTES as u64) {
                continue;
            }
            let Some(f) = self.files.get_mut(key) else { continue };
            tracing::info!(path = %f.path.display(), from = f.framer.next_pos(), to = pos, stream = state.producer_id,
                "the collector holds this file's content from another stream; going on from there");
            f.start_at(pos);
            if f.continues.is_none() {
                f.continues = Some(Continues {
                    original: state.producer_id,
                    checkpoint_seq: None,
                });
            }
            self.checkpoint_stale = true;
        }
    }

    fn apply_stream_state(&mut self, key: FileKey, state: &StreamState, original: Option<&StreamState>) {
        self.checkpoint_stale = true;
        let Some(f) = self.files.get_mut(&key) else { return };
        tracing::debug!(path = %f.path.display(), found = state.found, cursor = ?state.cursor, continues = ?f.continues,
            original = original.is_some(), "where the collector says this file's stream stands");
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
            let (dir, source, producer_id) = (
                f.path.parent().map(std::path::Path::to_path_buf),
                f.source,
                f.producer_id,
            );
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
                let now = Instant::now();
                let continues = Some(Continues {
                    original: producer_id,
                    checkpoint_seq: None,
                });
                if self
                    .adopt_truncated_copy(&dir, head, pos, source, continues, window, now)
                    .is_none()
                {
                    // Maybe being compressed: looked for again.
                    self.missing.push(super::copies::Missing {
                        dir,
                        head,
                        pos,
                        source,
                        continues,
                        live: None,
                        window,
                        until: now + super::copies::MISSING_LOOKED_FOR,
                    });
                }
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
    tracing::debug!(path = %f.path.display(), found = original.found, cursor = ?original.cursor,
        next_sequence = ?original.next_sequence, ?continues, "where the original of this copy stands");
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
