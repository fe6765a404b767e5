//! Truncation and copytruncate's copies: a file read again from 0 when it
//! shrinks, remembering truncated contents, telling a
//! new file that is a copy of one from an unrelated file, and reading the
//! part of the old content the agent had not read from the copy, without
//! running ahead of what the collector stored of the original.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::checkpoint::Continues;
use super::emit::{EmitCtx, Sink, emit_lines, flush_multiline};
use super::file_server::{FileServer, unix_ms};
use super::fingerprint::{FileKey, HEAD_BYTES, Head};
use super::tracked::{Start, TrackedFile};
use crate::ship::batcher::ShipRequest;

/// Shortest head for copy detection: shorter heads (a banner line) are too
/// likely to repeat in unrelated files.
const MIN_COPY_HEAD: u32 = 64;
/// How long after a truncation a copy of the old content is recognised.
const COPY_WINDOW: Duration = Duration::from_secs(600);
/// Truncated contents remembered for copy detection.
const MAX_RETIRED: usize = 256;
/// Longest a new file waits for the truncation that would make it a copy
/// (logrotate truncates right after copying).
pub(super) const COPY_DECISION: Duration = Duration::from_secs(2);

/// Tracked files with a full head, by directory and head CRC.
pub(super) type LiveHeads = HashMap<(PathBuf, u32), Vec<FileKey>>;

/// The content a file had before it was truncated, and how far it was read.
#[derive(Debug, Clone)]
pub struct Retired {
    dir: PathBuf,
    head: Head,
    pos: u64,
    at: Instant,
}

impl FileServer {
    /// After a file in `dir` was truncated with its old content (head
    /// `head`) read up to `pos`, finds the copy that copytruncate made of
    /// that content (an untracked file in the same directory that starts
    /// with the same head and is longer than `pos`; the newest if several)
    /// and tails it from `pos` to its end, so that lines written just
    /// before the truncation are not lost. `original` is the truncated
    /// file's stream when its position is only known from a checkpoint
    /// (the agent was down): what the collector stored of it then says how
    /// far the old content really got. Returns
    /// the copy, if one was found.
    pub(super) fn adopt_truncated_copy(
        &mut self,
        dir: &Path,
        head: Head,
        pos: u64,
        source: usize,
        original: Option<Continues>,
        now: Instant,
    ) -> Option<FileKey> {
        if head.len < MIN_COPY_HEAD {
            return None;
        }
        let entries = std::fs::read_dir(dir).ok()?;
        let mut best: Option<(std::time::SystemTime, PathBuf, File, std::fs::Metadata)> = None;
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = e.path();
            let Ok(file) = File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            if meta.len() <= pos || self.files.contains_key(&FileKey::of(&meta)) {
                continue;
            }
            if !head.matches(&file).unwrap_or(false) {
                continue;
            }
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|b| modified > b.0) {
                best = Some((modified, path, file, meta));
            }
        }
        let (_, path, file, meta) = best?;
        let key = FileKey::of(&meta);
        // A copy already being read before a crash resumes from its own entry.
        let (start, continues) = match self.dormant.remove(&key) {
            Some(e) if e.head.matches(&file).unwrap_or(false) && e.pos <= meta.len() => (
                Start {
                    pos: e.pos,
                    producer_id: e.producer_id,
                    next_seq: e.next_seq,
                    generation: e.generation,
                },
                e.continues.or(original),
            ),
            _ => (
                Start {
                    pos,
                    producer_id: self.stream_id(key, &meta),
                    next_seq: 0,
                    generation: 0,
                },
                original,
            ),
        };
        let mut t = TrackedFile::new(
            key,
            source,
            path.clone(),
            file,
            start,
            (self.cfg.tail.max_line_bytes, self.cfg.tail.long_lines),
            now,
        )
        .ok()?;
        tracing::info!(path = %path.display(), pos = start.pos, "reading the rest of truncated content from its copy");
        // Not in the glob until a scan finds it there.
        t.gone = true;
        t.continues = continues;
        t.record_key = self.render_key(source, &path);
        self.retired.retain(|r| !(r.dir == dir && r.head == head));
        self.insert_tracked(path, t);
        Some(key)
    }

    /// Whether the copy `key`, adopted at a live truncation, may be read:
    /// once the collector has acknowledged the original's old content (or
    /// the original is no longer tracked).
    pub(super) fn original_acked(&mut self, key: FileKey) -> bool {
        let Some((original, generation, end)) = self.files.get(&key).and_then(|f| f.after_original) else {
            return true;
        };
        let done = |o: &TrackedFile| {
            o.committed.generation > generation || (o.committed.generation == generation && o.committed.pos >= end)
        };
        if !self.files.get(&original).map(|o| &**o).is_none_or(done) {
            self.apply_acks();
            if !self.files.get(&original).map(|o| &**o).is_none_or(done) {
                return false;
            }
        }
        if let Some(f) = self.files.get_mut(&key) {
            f.after_original = None;
        }
        true
    }

    /// Tracked files with a full-length head, by directory and head CRC.
    pub(super) fn live_heads(&self) -> LiveHeads {
        let mut heads = LiveHeads::new();
        for f in self.files.values() {
            if !f.gone
                && f.head.len as usize == HEAD_BYTES
                && let Some(dir) = f.path.parent()
            {
                heads.entry((dir.to_owned(), f.head.crc)).or_default().push(f.key);
            }
        }
        heads
    }

    /// Remembers a file's content just before it was truncated.
    pub(super) fn retired_heads_insert(&mut self, key: FileKey) {
        let Some(f) = self.files.get(&key) else { return };
        if f.head.len < MIN_COPY_HEAD {
            return;
        }
        let dir = f.path.parent().map(Path::to_path_buf).unwrap_or_default();
        if self.retired.len() >= MAX_RETIRED {
            self.retired.remove(0);
        }
        self.retired.push(Retired {
            dir,
            head: f.head,
            pos: f.framer.emitted_pos(),
            at: Instant::now(),
        });
    }

    pub(super) fn copy_of_retired(&mut self, path: &Path, file: &File, size: u64, now: Instant) -> Option<u64> {
        self.retired.retain(|r| now.duration_since(r.at) < COPY_WINDOW);
        let dir = path.parent()?;
        // A copy holds at least what had been read of the original; a new
        // file that merely starts with the same banner is usually shorter.
        let i = self
            .retired
            .iter()
            .position(|r| r.dir == dir && r.pos <= size && r.head.matches(file).unwrap_or(false))?;
        let r = self.retired.remove(i);
        Some(r.pos)
    }

    /// Whether a new file may be a copy that copytruncate is making of a
    /// tracked file whose truncation is still to come: it starts like a
    /// tracked file in the same directory (its first KiB, whatever its
    /// size: the copy may still be being written), or is too short to
    /// tell. Such a file is tracked at once but not read until
    /// `copy_check_passed` says so.
    pub(super) fn might_be_copy(&self, path: &Path, file: &File, size: u64, heads: &LiveHeads) -> bool {
        if size < HEAD_BYTES as u64 {
            return true;
        }
        let Some(dir) = path.parent() else { return false };
        let Ok(head) = Head::read(file) else { return false };
        heads
            .get(&(dir.to_owned(), head.crc))
            .is_some_and(|keys| keys.iter().filter_map(|k| self.files.get(k)).any(|o| !o.gone))
    }

    /// Whether a file held back as a possible copy may be read now: once
    /// a tracked file's truncation shows it is that file's copy (it is then
    /// read only past what was read of the original), once it is long
    /// enough and starts like no tracked file, or after `COPY_DECISION`.
    /// Unrelated files are thus read from their start, at most a little
    /// later; a file is never skipped unless an original was truncated.
    pub(super) fn copy_check_passed(&mut self, key: FileKey, now: Instant, heads: &mut Option<LiveHeads>) -> bool {
        let Some(f) = self.files.get(&key) else { return false };
        let Some(until) = f.copy_check_until else { return true };
        let Some(file) = f.file.as_ref().and_then(|h| h.try_clone().ok()) else {
            return false;
        };
        let (path, size) = (f.path.clone(), f.size().unwrap_or(0));
        let copy_from = self.copy_of_retired(&path, &file, size, now);
        let decided = copy_from.is_some() || now >= until || {
            let heads = heads.get_or_insert_with(|| self.live_heads());
            size >= HEAD_BYTES as u64 && !self.might_be_copy(&path, &file, size, heads)
        };
        if !decided {
            return false;
        }
        let Some(f) = self.files.get_mut(&key) else {
            return false;
        };
        f.copy_check_until = None;
        if let Some(pos) = copy_from {
            tracing::info!(path = %path.display(), pos, "file is a copy of truncated content; reading only what was not read before");
            f.framer.reset(pos);
            f.committed.pos = pos;
            f.last_record_end = pos;
        }
        true
    }

    /// A file shorter than what was read has been truncated in place
    /// (copytruncate): finish the old content's last line, start again at 0.
    pub(super) fn check_truncation(&mut self, key: FileKey, now: Instant, sealed: &mut Vec<ShipRequest>) {
        let Some(f) = self.files.get_mut(&key) else { return };
        let Ok(size) = f.size() else { return };
        if size >= f.framer.next_pos() {
            return;
        }
        tracing::info!(path = %f.path.display(), was = f.framer.next_pos(), now = size, "file truncated; reading it again from the start");
        self.checkpoint_stale = true;
        self.stats.truncations += 1;
        // Remember the old content's head and how far it was read: a copy
        // of it (logrotate's copytruncate) is then read only past that point.
        self.retired_heads_insert(key);
        // What had not been read of the old content is in its copy, if
        // copytruncate made one: read it from there.
        let old = self.files.get(&key).and_then(|f| {
            let dir = f.path.parent()?.to_path_buf();
            Some((dir, f.head, f.framer.emitted_pos(), f.source))
        });
        let copy =
            old.and_then(|(dir, head, pos, source)| self.adopt_truncated_copy(&dir, head, pos, source, None, now));
        let adopted = copy.is_some();
        let Some(f) = self.files.get_mut(&key) else { return };
        let Some(ctx) = EmitCtx::for_source(
            &self.cfg,
            &self.source_headers,
            &self.flags,
            &mut self.batcher,
            f.source,
            unix_ms(),
            now,
        ) else {
            return;
        };
        let mut sink = Sink {
            batcher: &mut self.batcher,
            stats: &mut self.stats,
            sealed,
            scratch: &mut self.scratch,
        };
        // The old content is gone: its last line (unless the copy has it
        // whole) and held event go out now.
        if !adopted {
            emit_lines(f, &ctx, &mut sink, |framer, emit| {
                framer.flush(emit);
            });
        }
        flush_multiline(f, &ctx, &mut sink, true);
        let old_content = (f.generation, f.last_record_end);
        if let Err(e) = f.truncated() {
            tracing::warn!(path = %f.path.display(), error = %e, "cannot read head after truncation");
        }
        let original = f.producer_id;
        if let Some(c) = copy.and_then(|c| self.files.get_mut(&c)) {
            // The copy's stream is new: nothing to ask the collector now.
            // After a crash, the original's stream says where it starts.
            c.synced = true;
            c.continues = Some(Continues {
                original,
                checkpoint_seq: None,
            });
            c.after_original = Some((key, old_content.0, old_content.1));
        }
        for req in std::mem::take(sealed) {
            self.send(req);
        }
    }
}
