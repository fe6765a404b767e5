//! Truncation and copytruncate's copies: a file read again from 0 when it
//! shrinks, remembering truncated contents, telling a
//! new file that is a copy of one from an unrelated file, and reading the
//! part of the old content the agent had not read from the copy, without
//! running ahead of what the collector stored of the original.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::checkpoint::Continues;
use super::compressed;
use super::emit::{EmitCtx, Sink, flush_multiline};
use super::file_server::{FileServer, unix_ms};
use super::fingerprint::{FileKey, HEAD_BYTES, Head, born};
use super::tracked::{Start, TrackedFile};
use crate::ship::batcher::ShipRequest;

/// Shortest head that identifies a content by itself for copy detection:
/// shorter heads (a banner line) are too likely to repeat in unrelated
/// files, and need the birth time of the copy to agree (`CopyWindow`).
pub(super) const MIN_COPY_HEAD: u32 = 64;
/// How long after a truncation a copy of the old content is recognised.
const COPY_WINDOW: Duration = Duration::from_secs(600);
/// Truncated contents remembered for copy detection.
const MAX_RETIRED: usize = 256;
/// Longest a new file waits for the truncation that would make it a copy
/// (logrotate truncates right after copying).
pub(super) const COPY_DECISION: Duration = Duration::from_secs(2);

/// Tracked files with a full head, by directory and head CRC.
pub(super) type LiveHeads = HashMap<(PathBuf, u32), Vec<FileKey>>;
/// How long the rest of a content that went is looked for, when it was
/// not found at once.
pub(super) const MISSING_LOOKED_FOR: Duration = Duration::from_secs(10);

/// A content that went (truncated, renamed away, compressed) whose rest
/// was not found at once: looked for again (`look_for_missing`).
#[derive(Debug, Clone)]
pub struct Missing {
    pub(super) dir: PathBuf,
    pub(super) head: Head,
    pub(super) pos: u64,
    pub(super) source: usize,
    /// After a restart: the stream it continues, from the checkpoint.
    pub(super) continues: Option<Continues>,
    /// Seen going live: (the original, its stream, its generation then,
    /// where its records of that content end).
    pub(super) live: Option<(FileKey, i64, u32, u64)>,
    pub(super) window: CopyWindow,
    pub(super) until: Instant,
}

/// The content a file had before it was truncated, and how far it was read.
#[derive(Debug, Clone)]
pub struct Retired {
    dir: PathBuf,
    head: Head,
    pos: u64,
    at: Instant,
    /// When the content began and when it was found gone: a copy of it
    /// was made in between (see `CopyWindow`).
    window: CopyWindow,
    /// The stream that read it and (its file, its generation then, where
    /// its records of it end): a copy continues it (`continue_in_copy`).
    original: i64,
    after: (FileKey, u32, u64),
}

/// A new file found to be the copy of a content that went.
#[derive(Debug, Clone, Copy)]
pub(super) struct CopyOf {
    /// Where the copy is read from.
    pub pos: u64,
    pub original: i64,
    pub after: (FileKey, u32, u64),
}

/// When a copy of a content can have been made: after the content began,
/// and before (or just after) it was found truncated. Files with a head
/// too short to identify them (a line or two) are taken for copies only
/// if their birth time falls in this window, so that an unrelated new
/// file that starts with the same line is not.
#[derive(Debug, Clone, Copy)]
pub(super) struct CopyWindow {
    pub from: Option<SystemTime>,
    pub until: SystemTime,
}

/// Slack on both ends of a copy window: clocks and file system time stamps
/// are coarse.
const WINDOW_SLACK: Duration = Duration::from_secs(1);

impl CopyWindow {
    /// Whether a file with head `head` and metadata `meta` may be a copy
    /// made in this window: always for heads long enough to identify a
    /// content; for short ones only with a birth time inside the window.
    pub(super) fn admits(&self, head: Head, meta: &std::fs::Metadata) -> bool {
        if head.len >= MIN_COPY_HEAD {
            return true;
        }
        let (Some(from), Some(born)) = (self.from, born(meta)) else {
            return false;
        };
        born + WINDOW_SLACK >= from && born <= self.until + WINDOW_SLACK + COPY_DECISION
    }
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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn adopt_truncated_copy(
        &mut self,
        dir: &Path,
        head: Head,
        pos: u64,
        source: usize,
        original: Option<Continues>,
        window: CopyWindow,
        now: Instant,
    ) -> Option<FileKey> {
        if head.len == 0 {
            return None;
        }
        // Already being read from a copy (found by an earlier look, or the
        // plain copy before logrotate's gzip replaced it with a `.gz`):
        // one copy continues a content, never two.
        let taken = self.files.values().any(|t| {
            t.head == head
                && !t.pristine
                && t.copy_check_until.is_none()
                && t.path.parent() == Some(dir)
                && t.continues.is_some()
        });
        if taken {
            return None;
        }
        // A copy held back while it was being made (copytruncate's plain
        // copy, maybe deleted since by logrotate's gzip: its handle still
        // reads it) is this content's copy, before any `.gz` of it.
        let held = self
            .files
            .values()
            .find(|t| {
                t.pristine
                    && t.copy_check_until.is_some()
                    && t.path.parent() == Some(dir)
                    && t.file.as_ref().is_some_and(|f| head.matches(f).unwrap_or(false))
            })
            .map(|t| t.key);
        if let Some(key) = held
            && let Some(t) = self.files.get_mut(&key)
        {
            let pos = pos.min(t.size().unwrap_or(0));
            tracing::info!(path = %t.path.display(), pos, "a copy held back is the copy of truncated content; reading only what was not read before");
            t.start_at(pos);
            t.continues = original;
            t.copy_check_until = None;
            self.retired.retain(|r| !(r.dir == dir && r.head == head));
            self.checkpoint_stale = true;
            return Some(key);
        }
        let entries = std::fs::read_dir(dir).ok()?;
        // (plain rather than gzip, newest, ...): a plain copy being
        // compressed is read, not its half-written `.gz`.
        let mut best: Option<((bool, std::time::SystemTime), PathBuf, File, std::fs::Metadata)> = None;
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = e.path();
            let Ok(file) = File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            if compressed::is_gzip(&path) {
                // Compressed before the agent read it: known by what it
                // inflates to (its length is known only once inflated).
                let known = !self.files.contains_key(&FileKey::of(&meta))
                    && compressed::inflated_head(&path, head.len as usize).is_ok_and(|h| h == head)
                    && window.admits(head, &meta);
                let rank = (false, meta.modified().unwrap_or(std::time::UNIX_EPOCH));
                if known && best.as_ref().is_none_or(|b| rank > b.0) {
                    best = Some((rank, path, file, meta));
                }
                continue;
            }
            // A file tracked already is a candidate only if it was found
            // in this run as new and not read yet (a restart's scan may
            // meet the copy before the original).
            let tracked = self.files.get(&FileKey::of(&meta));
            // An untracked copy no longer than what was read has nothing
            // to add; a pristine one is claimed all the same, so that it
            // is not read from its start.
            if tracked.is_some_and(|t| !t.pristine) || (tracked.is_none() && meta.len() <= pos) {
                continue;
            }
            if !head.matches(&file).unwrap_or(false) || !window.admits(head, &meta) {
                continue;
            }
            let rank = (true, meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            if best.as_ref().is_none_or(|b| rank > b.0) {
                best = Some((rank, path, file, meta));
            }
        }
        let ((plain, _), path, file, meta) = best?;
        let key = FileKey::of(&meta);
        let (file, inflated) = if plain {
            (file, None)
        } else {
            // The handle whose head was checked, not the name: logrotate
            // may have renamed the next `.gz` to it since.
            match compressed::inflate_open(file, key, &self.cfg.data_dir) {
                Ok((f, guard)) if f.metadata().is_ok_and(|m| m.len() > pos) && head.matches(&f).unwrap_or(false) => {
                    (f, Some(guard))
                }
                Ok(_) => return None,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot inflate a compressed copy of truncated content");
                    return None;
                }
            }
        };
        // Positions are line ends: in a copy of this content the byte
        // before `pos` is a newline. One that is not holds other content
        // (read from there it would send the rest of a line as a line).
        if pos > 0 && pos < file.metadata().map_or(0, |m| m.len()) && !newline_before(&file, pos) {
            tracing::warn!(path = %path.display(), pos, "a file that starts like truncated content has no line end where that content was read to; not taken for its copy");
            return None;
        }
        if let Some(t) = self.files.get_mut(&key) {
            // Found as new earlier in this run: it is this copy.
            let pos = pos.min(meta.len());
            tracing::info!(path = %path.display(), pos, "a file found as new is a copy of truncated content; reading only what was not read before");
            t.start_at(pos);
            t.continues = original;
            t.copy_check_until = None;
            self.retired.retain(|r| !(r.dir == dir && r.head == head));
            self.checkpoint_stale = true;
            return Some(key);
        }
        // A copy already being read before a crash resumes from its own entry.
        // The length of the content (inflated, for a gzip file).
        let size = file.metadata().map_or(0, |m| m.len());
        // A `.gz` made while the agent was down from the plain copy it was
        // reading has another inode: it takes over that copy's entry (its
        // stream and position). Started afresh instead, it was read again
        // from the original's position (duplicates), or skipped whole when
        // the original's stream had gone on (loss).
        let entry = match self.dormant.remove(&key) {
            Some(e) => Some(e),
            None if !plain => self
                .compressed_predecessor(dir, head)
                .and_then(|k| self.dormant.remove(&k)),
            None => None,
        };
        let (start, continues) = match entry {
            Some(e) if e.head.matches(&file).unwrap_or(false) && e.pos <= size => (
                Start {
                    pos: e.pos,
                    producer_id: e.producer_id,
                    next_seq: e.next_seq,
                    generation: e.generation,
                    born: e.born_ms.map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
                    tail: e.tail,
                    continues: None,
                },
                e.continues.or(original),
            ),
            _ => (
                Start {
                    pos,
                    producer_id: self.stream_id(key, &meta),
                    next_seq: 0,
                    generation: 0,
                    born: window.from,
                    tail: super::fingerprint::Tail::NONE,
                    continues: None,
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
        tracing::info!(path = %path.display(), pos = start.pos, compressed = inflated.is_some(), "reading the rest of truncated content from its copy");
        // Not in the glob until a scan finds it there.
        t.gone = true;
        t.inflated = inflated;
        t.continues = continues;
        t.record_key = self.render_key(source, &path);
        self.retired.retain(|r| !(r.dir == dir && r.head == head));
        self.insert_tracked(path, t);
        Some(key)
    }

    /// The checkpoint entry of a plain copy of content `head` in `dir`
    /// that is gone from the directory (compressed since): the furthest
    /// read if several.
    fn compressed_predecessor(&self, dir: &Path, head: Head) -> Option<FileKey> {
        if head.len < MIN_COPY_HEAD {
            return None;
        }
        let present = super::lifecycle::list_dir(dir);
        self.dormant
            .values()
            .filter(|e| !e.held && e.head == head && e.path.parent() == Some(dir) && !present.contains_key(&e.key))
            .max_by_key(|e| e.pos)
            .map(|e| e.key)
    }

    /// Wires copy `c` of content of stream `original` that the tailing
    /// loop saw go (truncated, or compressed away): the copy's stream is
    /// new (nothing to ask the collector now; after a crash the original's
    /// stream says where it starts), and it is not read before the
    /// collector has acknowledged what was read of the original (`after`:
    /// the original, its generation then and where its records end).
    pub(super) fn continue_in_copy(&mut self, c: FileKey, original: i64, after: (FileKey, u32, u64)) {
        // The copy's entry is on disk before the original's next content
        // is read: a restart that finds the original's stream gone on
        // past its checkpoint then knows the copy was found and where.
        self.untracked_by_checkpoint = true;
        if let Some(c) = self.files.get_mut(&c) {
            c.synced = true;
            c.continues = Some(Continues {
                original,
                checkpoint_seq: None,
            });
            c.after_original = Some(after);
        }
    }

    /// Looks again for the contents whose rest was not found yet; forgets
    /// those looked for long enough.
    pub(super) fn look_for_missing(&mut self, now: Instant) {
        if self.missing.is_empty() {
            return;
        }
        let missing = std::mem::take(&mut self.missing);
        for m in missing {
            let found = self.adopt_truncated_copy(&m.dir, m.head, m.pos, m.source, m.continues, m.window, now);
            match found {
                Some(c) => {
                    if let Some((key, original, generation, end)) = m.live {
                        self.continue_in_copy(c, original, (key, generation, end));
                    }
                }
                None if now < m.until => self.missing.push(m),
                None => tracing::debug!(dir = %m.dir.display(), pos = m.pos, "no copy of truncated content found"),
            }
        }
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
    fn retired_heads_insert(&mut self, key: FileKey, head: Head, pos: u64, window: CopyWindow, after: (u32, u64)) {
        let Some(f) = self.files.get(&key) else { return };
        if head.len == 0 {
            return;
        }
        let dir = f.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let original = f.producer_id;
        if self.retired.len() >= MAX_RETIRED {
            self.retired.remove(0);
        }
        self.retired.push(Retired {
            dir,
            head,
            pos,
            at: Instant::now(),
            window,
            original,
            after: (key, after.0, after.1),
        });
    }

    /// Whether `file` (at `path`, `size` bytes) is the copy of a content
    /// that went recently; where it is read from, and what it continues.
    pub(super) fn copy_of_retired(&mut self, path: &Path, file: &File, size: u64, now: Instant) -> Option<CopyOf> {
        self.retired.retain(|r| now.duration_since(r.at) < COPY_WINDOW);
        let dir = path.parent()?;
        let meta = file.metadata().ok()?;
        // A copy may be shorter than what had been read of the original
        // (lines written during logrotate's copy, before its truncate):
        // then it has nothing left to read.
        let i = self
            .retired
            .iter()
            .position(|r| r.dir == dir && r.head.matches(file).unwrap_or(false) && r.window.admits(r.head, &meta))?;
        let r = self.retired.remove(i);
        self.missing.retain(|m| !(m.dir == r.dir && m.head == r.head));
        Some(CopyOf {
            pos: r.pos.min(size),
            original: r.original,
            after: r.after,
        })
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
        self.content_replaced(key, now, sealed, "truncated");
    }

    /// The file no longer holds the content read so far (truncated, or
    /// truncated and rewritten before the agent looked): the old content's
    /// unread part is sought in its copy, and the new content is read from
    /// its start as the stream's next generation.
    pub(super) fn content_replaced(&mut self, key: FileKey, now: Instant, sealed: &mut Vec<ShipRequest>, why: &str) {
        let Some(f) = self.files.get_mut(&key) else { return };
        if why != "truncated" {
            tracing::info!(path = %f.path.display(), read = f.framer.next_pos(), why, "content replaced; reading the file again from the start");
        }
        self.checkpoint_stale = true;
        self.stats.truncations += 1;
        // What had not been read of the old content is in its copy, if
        // copytruncate made one: read it from there.
        let Some(dir) = f.path.parent().map(Path::to_path_buf) else {
            return;
        };
        let window = CopyWindow {
            from: f.content_born,
            until: SystemTime::now(),
        };
        let (head, source) = (f.head, f.source);
        let copy = self.adopt_truncated_copy(
            &dir,
            head,
            self.files.get(&key).map_or(0, |f| f.framer.emitted_pos()),
            source,
            None,
            window,
            now,
        );
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
        // The old content is gone: its held event goes out now. An
        // incomplete last line does not: copytruncate's copy has it whole
        // (the writer finished it before the copy), and the copy, found
        // now or later, is read from the end of the last complete line.
        // Emitted here it would arrive cut in two: its start now, its rest
        // from the copy.
        if f.framer.partial_len() > 0 {
            tracing::debug!(path = %f.path.display(), bytes = f.framer.partial_len(),
                "incomplete last line of truncated content left to its copy");
        }
        flush_multiline(f, &ctx, &mut sink, true);
        let old_content = (f.generation, f.last_record_end);
        let read_to = f.framer.emitted_pos();
        if let Err(e) = f.truncated() {
            tracing::warn!(path = %f.path.display(), error = %e, "cannot read head after truncation");
        }
        let original = f.producer_id;
        match copy {
            Some(c) => self.continue_in_copy(c, original, (key, old_content.0, old_content.1)),
            None => {
                // Remembered, so that a copy found later (a new file the
                // scan meets, or one held back) is read only past what was
                // read here; and looked for again meanwhile (logrotate's
                // gzip may be between removing the plain copy and
                // finishing the `.gz`).
                self.retired_heads_insert(key, head, read_to, window, old_content);
                self.missing.push(Missing {
                    dir,
                    head,
                    pos: read_to,
                    source,
                    continues: None,
                    live: Some((key, original, old_content.0, old_content.1)),
                    window,
                    until: now + MISSING_LOOKED_FOR,
                });
            }
        }
        for req in std::mem::take(sealed) {
            self.send(req);
        }
    }
}

/// Whether the byte just before `pos` in `file` is a newline.
fn newline_before(file: &File, pos: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, pos - 1).is_ok() && byte[0] == b'\n'
}
