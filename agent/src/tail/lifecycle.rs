//! How files come and go in the tailing loop: discovery and identity on
//! rescans, where a new file starts, finding rotated files again after a
//! restart (`restart.rs`), the cap on open handles (idle files are closed and reopened on
//! change), and closing finished files (copytruncate's copies: `copies.rs`).
//!
//! Why a module of its own: `file_server.rs` decides *what to read when*;
//! this module decides *which files exist and what state they start in*.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::checkpoint::{Continues, Entry};
use super::copies::{COPY_DECISION, CopyWindow, LiveHeads};
use super::discover::discover;
use super::file_server::FileServer;
use super::fingerprint::{FileKey, HEAD_BYTES, Tail, born};
use super::tracked::{Start, TrackedFile};
use crate::config::StartAt;

impl FileServer {
    /// Re-expands the globs: new files are tracked, renamed ones followed,
    /// vanished ones marked gone (read to their end, then closed).
    pub(super) fn scan(&mut self, now: Instant, initial: bool) {
        let (found, skipped) = discover(&self.cfg.sources);
        // Anything left to retry (unreadable, failing, waiting for a
        // handle) or a symlink (its target can change elsewhere) needs the
        // next periodic rescan even if no glob directory changes.
        let mut needs_rescan = !skipped.is_empty();
        for s in skipped {
            if self.warned.insert((s.path.clone(), s.reason.clone())) {
                tracing::warn!(path = %s.path.display(), reason = %s.reason, "cannot tail matched path; skipping it");
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(found.len());
        let mut no_idle = false;
        // Files known (tracked, or in the checkpoint) first: a restart
        // that meets a copy before its original must already know that
        // the original's content moved to the copy (`adopt_truncated_copy`
        // claims it) or is still where it was (the copy is held back).
        let mut found = found;
        found.sort_by_key(|f| {
            let key = FileKey::of(&f.meta);
            !(self.files.contains_key(&key) || self.dormant.contains_key(&key))
        });
        let mut heads: Option<LiveHeads> = None;
        for f in found {
            needs_rescan |= f.via_symlink;
            // Compressed rotated files are not lines: they are read only
            // for content found nowhere else (`compressed.rs`). By name: a
            // `.gz` being written has no gzip header yet.
            if is_compressed_name(&f.path.file_name().unwrap_or_default().to_string_lossy()) {
                continue;
            }
            let key = FileKey::of(&f.meta);
            if !seen.insert(key) {
                continue; // the same file through another path (a symlink)
            }
            if let Some(t) = self.files.get_mut(&key) {
                t.gone = false;
                if t.path != f.path {
                    tracing::info!(from = %t.path.display(), to = %f.path.display(), "file renamed");
                    self.by_path.remove(&t.path);
                    t.renamed(f.path.clone());
                    self.checkpoint_stale = true;
                    self.by_path.insert(f.path, key);
                }
                continue;
            }
            // Past the handle cap a new file is still tracked (head read,
            // checkpointed, looked up), only without a handle: the read
            // loop opens it as open files reach their end. One failed
            // eviction per scan is enough to know none is idle.
            let over_cap = self.open_handles >= self.cfg.tail.max_open_files && (no_idle || !self.evict_idle());
            no_idle |= over_cap;
            let file = match File::open(&f.path) {
                Ok(file) => file,
                Err(e) => {
                    needs_rescan = true;
                    if self.warned.insert((f.path.clone(), e.to_string())) {
                        tracing::warn!(path = %f.path.display(), error = %e, "cannot open file; will retry");
                    }
                    continue;
                }
            };
            // Identify by the handle: the path may have been replaced since the stat.
            let Ok(meta) = file.metadata() else {
                needs_rescan = true;
                continue;
            };
            let key = FileKey::of(&meta);
            if self.files.contains_key(&key) {
                continue;
            }
            seen.insert(key);
            // A file the checkpoint knows is no copy; on the very first
            // start nothing is known to be copied from. The live heads are
            // taken once every known file is tracked (they come first).
            let fresh = self.dormant.get(&key).is_none_or(never_read);
            let maybe_copy = fresh && !(initial && self.first_start) && {
                let heads = heads.get_or_insert_with(|| self.live_heads());
                self.might_be_copy(&f.path, &file, meta.len(), heads)
            };
            let start = self.start_for(key, f.source, &f.path, &file, &meta, initial, now);
            match TrackedFile::new(
                key,
                f.source,
                f.path.clone(),
                file,
                start,
                (self.cfg.tail.max_line_bytes, self.cfg.tail.long_lines),
                now,
            ) {
                Ok(mut t) => {
                    t.record_key = self.render_key(f.source, &f.path);
                    t.pristine = fresh && start.pos == 0 && start.next_seq == 0;
                    if maybe_copy && start.pos == 0 {
                        // Tracked (so followed through renames) but not
                        // read until it is known not to be a copy.
                        tracing::debug!(path = %f.path.display(), "may be a copy in the making; holding it back");
                        t.copy_check_until = Some(now + COPY_DECISION);
                    }
                    tracing::debug!(path = %f.path.display(), pos = start.pos, "tailing file");
                    if over_cap {
                        t.file = None;
                    }
                    self.insert_tracked(f.path, t);
                    for (copy, of) in std::mem::take(&mut self.copies_found) {
                        self.continue_in_copy(copy, of.original, of.after);
                    }
                }
                Err(e) => {
                    needs_rescan = true;
                    tracing::warn!(path = %f.path.display(), error = %e, "cannot read file head; will retry");
                }
            }
        }
        if needs_rescan {
            self.dir_stamps.invalidate();
        }
        // A file the glob did not list may only have been renamed while it
        // was listed (logrotate shifting `app.log.N` while the scan ran):
        // its directory is listed once more, by inode, before it is taken
        // for gone. Gone and finished, it would be forgotten, and found
        // again later as a new file.
        let unseen: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(key, t)| !seen.contains(*key) && !t.gone)
            .map(|(key, _)| *key)
            .collect();
        let mut listings: HashMap<PathBuf, HashMap<FileKey, PathBuf>> = HashMap::new();
        for key in unseen {
            let Some(dir) = self
                .files
                .get(&key)
                .and_then(|t| t.path.parent().map(Path::to_path_buf))
            else {
                continue;
            };
            let listing = listings.entry(dir.clone()).or_insert_with(|| list_dir(&dir));
            let now_at = listing.get(&key).filter(|p| self.matched_by_a_source(p)).cloned();
            let Some(t) = self.files.get_mut(&key) else { continue };
            match now_at {
                Some(path) => {
                    if t.path != path {
                        tracing::info!(from = %t.path.display(), to = %path.display(), "file renamed");
                        self.by_path.remove(&t.path);
                        t.renamed(path.clone());
                        self.checkpoint_stale = true;
                        self.by_path.insert(path, key);
                    }
                }
                None => {
                    tracing::debug!(path = %t.path.display(), "file no longer matched (rotated or deleted); reading it to its end");
                    t.gone = true;
                }
            }
        }
    }

    /// A file renamed from a path a source matches to one it does not,
    /// before any scan saw it (created and rotated away between two scans,
    /// as when logrotate moves aside a file that appeared between its
    /// rename and its `create`): tracked now, as rotated, so that its lines
    /// are not lost.
    pub(super) fn renamed_unseen(&mut self, from: &Path, to: &Path, now: Instant) {
        let matches = |s: &crate::config::Source, p: &Path| {
            s.paths.iter().any(|g| g.matches_path(p)) && !s.exclude.iter().any(|x| x.matches_path(p))
        };
        let Some(source) = self.cfg.sources.iter().position(|s| matches(s, from)) else {
            return;
        };
        if self.cfg.sources.iter().any(|s| matches(s, to)) {
            return; // still matched: the scan has it
        }
        let Ok(file) = File::open(to) else { return };
        let Ok(meta) = file.metadata() else { return };
        let key = FileKey::of(&meta);
        if !meta.is_file() || self.files.contains_key(&key) {
            return;
        }
        if self.open_handles >= self.cfg.tail.max_open_files && !self.evict_idle() {
            return;
        }
        let start = self.start_for(key, source, to, &file, &meta, false, now);
        let framing = (self.cfg.tail.max_line_bytes, self.cfg.tail.long_lines);
        match TrackedFile::new(key, source, to.to_owned(), file, start, framing, now) {
            Ok(mut t) => {
                tracing::info!(from = %from.display(), to = %to.display(), "file renamed out of the glob before it was seen; reading it");
                t.gone = true;
                t.record_key = self.render_key(source, to);
                self.insert_tracked(to.to_owned(), t);
            }
            Err(e) => tracing::warn!(path = %to.display(), error = %e, "cannot read file head"),
        }
    }

    /// Where a newly found file starts: its checkpoint if it is the same
    /// content; past what was already read if it is a copy of truncated
    /// content; else the beginning (or the end, at the very first start for
    /// `start_at = "end"` sources).
    #[allow(clippy::too_many_arguments)]
    fn start_for(
        &mut self,
        key: FileKey,
        source: usize,
        path: &Path,
        file: &File,
        meta: &std::fs::Metadata,
        initial: bool,
        now: Instant,
    ) -> Start {
        let producer_id = self.stream_id(key, meta);
        let file_born = born(meta);
        if let Some(entry) = self.dormant.remove(&key) {
            let entry_born = entry.born_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
            match entry.head.matches(file) {
                // A head shorter than the position it vouches for (up to
                // HEAD_BYTES) cannot tell this content from a later one;
                // the bytes before the position must be the same too.
                Ok(true)
                    if entry.pos <= meta.len()
                        && u64::from(entry.head.len) >= entry.pos.min(HEAD_BYTES as u64)
                        && entry.tail.matches(file, entry.pos).unwrap_or(false) =>
                {
                    return Start {
                        pos: entry.pos,
                        producer_id: entry.producer_id,
                        next_seq: entry.next_seq,
                        generation: entry.generation,
                        born: entry_born.or(file_born.filter(|_| entry.generation == 0)),
                        tail: entry.tail,
                        continues: entry.continues,
                    };
                }
                Ok(true) => tracing::warn!(path = %path.display(), checkpoint = entry.pos, size = meta.len(),
                    "file is shorter than its checkpoint (truncated while the agent was down); reading it from the start"),
                _ => {
                    self.stats.inode_reused += 1;
                    tracing::warn!(path = %path.display(), "content changed since the checkpoint (truncated and rewritten, or the inode reused); reading the file from the start");
                }
            }
            // Truncated while the agent was down (copytruncate): what had
            // not been read of the old content is in the copy, if any.
            if let Some(dir) = path.parent() {
                let dir = dir.to_owned();
                let window = CopyWindow {
                    from: entry_born.or(file_born),
                    until: SystemTime::now(),
                };
                self.adopt_truncated_copy(
                    &dir,
                    entry.head,
                    entry.pos,
                    source,
                    Some(Continues {
                        original: entry.producer_id,
                        checkpoint_seq: Some(entry.next_seq),
                    }),
                    window,
                    now,
                );
            }
            // The same stream id (the inode came back without a birth time to
            // tell it apart) continues its sequence, so nothing is mistaken
            // for a duplicate.
            let next_seq = if entry.producer_id == producer_id {
                entry.next_seq
            } else {
                0
            };
            // The content now in the file began after the checkpoint.
            let since = UNIX_EPOCH.checked_add(Duration::from_millis(self.checkpoint_saved_ms));
            return Start {
                pos: 0,
                producer_id,
                next_seq,
                generation: 0,
                born: file_born.max(since),
                tail: Tail::NONE,
                continues: None,
            };
        }
        if let Some(copy_of) = self.copy_of_retired(path, file, meta.len(), now) {
            let pos = copy_of.pos;
            tracing::info!(path = %path.display(), pos, "file is a copy of truncated content; reading only what was not read before");
            self.copies_found.push((key, copy_of));
            return Start {
                pos,
                producer_id,
                next_seq: 0,
                generation: 0,
                born: file_born,
                tail: Tail::NONE,
                continues: None,
            };
        }
        let at_end =
            initial && self.first_start && self.cfg.sources.get(source).is_some_and(|s| s.start_at == StartAt::End);
        Start {
            pos: if at_end { meta.len() } else { 0 },
            producer_id,
            next_seq: 0,
            generation: 0,
            born: file_born,
            tail: Tail::NONE,
            continues: None,
        }
    }

    /// Starts tracking `t` (opened) at `path`. Its checkpoint entry is
    /// written before it is read (see `FileServer::run`), so that a restart
    /// finds it by inode even if rotation renames it away in between.
    pub(super) fn insert_tracked(&mut self, path: PathBuf, t: TrackedFile) {
        self.by_path.insert(path, t.key);
        if t.file.is_some() {
            self.open_handles += 1;
        }
        self.files.insert(t.key, Box::new(t));
        self.untracked_by_checkpoint = true;
    }

    /// Whether some source's globs match `path` (and its excludes do not).
    pub(super) fn matched_by_a_source(&self, path: &Path) -> bool {
        self.cfg
            .sources
            .iter()
            .any(|s| s.paths.iter().any(|g| g.matches_path(path)) && !s.exclude.iter().any(|x| x.matches_path(path)))
    }

    /// Makes sure `key` has an open handle, reopening an idle file; false if
    /// it cannot be read now (handle cap reached, or it vanished).
    pub(super) fn ensure_open(&mut self, key: FileKey) -> bool {
        match self.files.get(&key) {
            None => return false,
            Some(f) if f.file.is_some() => return true,
            Some(f) if f.vanished => return false,
            Some(_) => {}
        }
        if self.open_handles >= self.cfg.tail.max_open_files && !self.evict_idle() {
            return false;
        }
        let Some(f) = self.files.get_mut(&key) else {
            return false;
        };
        let reopened = File::open(&f.path)
            .ok()
            .filter(|file| file.metadata().is_ok_and(|m| FileKey::of(&m) == key));
        let file = match reopened {
            Some(file) => file,
            None => {
                // The path holds another file now, or none: the file was
                // rotated away while closed. Look for it by inode.
                let Some(dir) = f.path.parent() else { return false };
                let Some(path) = list_dir(dir).remove(&key) else {
                    self.vanished(key);
                    return false;
                };
                let Ok(file) = File::open(&path) else { return false };
                self.by_path.remove(&f.path);
                f.renamed(path.clone());
                self.checkpoint_stale = true;
                f.gone = true;
                self.by_path.insert(path, key);
                file
            }
        };
        f.file = Some(file);
        self.open_handles += 1;
        true
    }

    /// A file closed while idle is gone from its directory (deleted, or
    /// compressed away, which gives its content a new inode): nothing more
    /// can be read from it. Whatever of its content was not read is looked
    /// for elsewhere (a `.gz` of it, a copy) and read from there; the file
    /// itself is finished once what was read of it is acknowledged.
    fn vanished(&mut self, key: FileKey) {
        let Some(f) = self.files.get_mut(&key) else { return };
        f.gone = true;
        f.vanished = true;
        f.at_eof = true;
        // A partial last line is read again, whole, from the copy.
        let pos = f.framer.emitted_pos();
        f.framer.reset(pos);
        let (head, source, producer_id, generation, end) =
            (f.head, f.source, f.producer_id, f.generation, f.last_record_end);
        let window = CopyWindow {
            from: f.content_born,
            until: SystemTime::now(),
        };
        let Some(dir) = f.path.parent().map(Path::to_path_buf) else {
            return;
        };
        tracing::info!(path = %f.path.display(), "file gone while closed; looking for its content elsewhere");
        self.checkpoint_stale = true;
        let now = Instant::now();
        match self.adopt_truncated_copy(&dir, head, pos, source, None, window, now) {
            Some(c) => self.continue_in_copy(c, producer_id, (key, generation, end)),
            None => self.missing.push(super::copies::Missing {
                dir,
                head,
                pos,
                source,
                continues: None,
                live: Some((key, producer_id, generation, end)),
                window,
                until: now + super::copies::MISSING_LOOKED_FOR,
            }),
        }
    }

    /// Closes the handles of the files read to their end that grew least
    /// recently, an eighth of the cap at a time (one pass over the files
    /// pays for many evictions: 10,000 new files over a cap of 256 made a
    /// pass per eviction quadratic); false if no open file is at its end.
    fn evict_idle(&mut self) -> bool {
        let batch = (self.cfg.tail.max_open_files / 8).max(1);
        let mut idle: Vec<(Instant, FileKey)> = self
            .files
            .values()
            .filter(|f| f.file.is_some() && f.at_eof && !f.gone)
            .map(|f| (f.last_growth, f.key))
            .collect();
        if idle.is_empty() {
            return false;
        }
        if idle.len() > batch {
            idle.select_nth_unstable(batch - 1);
            idle.truncate(batch);
        }
        for (_, key) in idle {
            if let Some(f) = self.files.get_mut(&key) {
                f.file = None;
                self.open_handles -= 1;
            }
        }
        true
    }

    /// Closes handles of files idle for `close_idle_after`, and forgets
    /// rotated or deleted files that were read to the end, have been idle
    /// for `rotated_file_idle`, and whose lines were all acknowledged.
    pub(super) fn close_idle(&mut self, now: Instant) {
        let close_after = self.cfg.tail.close_idle_after;
        let finished_after = self.cfg.tail.rotated_file_idle;
        let mut finished = Vec::new();
        for f in self.files.values_mut() {
            let idle = now.duration_since(f.last_growth);
            if f.gone && f.at_eof && f.framer.partial_len() == 0 && idle >= finished_after && f.fully_acked() {
                finished.push(f.key);
            } else if f.file.is_some() && !f.gone && f.at_eof && idle >= close_after {
                f.file = None;
                self.open_handles -= 1;
            }
        }
        for key in finished {
            self.checkpoint_stale = true;
            if let Some(f) = self.files.remove(&key) {
                if f.file.is_some() {
                    self.open_handles -= 1;
                }
                if self.by_path.get(&f.path) == Some(&key) {
                    self.by_path.remove(&f.path);
                }
                tracing::debug!(path = %f.path.display(), "closed finished file");
            }
        }
    }

    /// Polling mode: closed files whose size or inode changed are read.
    pub(super) fn poll_closed_files(&mut self, to_read: &mut std::collections::HashSet<FileKey>) {
        for f in self.files.values().filter(|f| f.file.is_none()) {
            match std::fs::metadata(&f.path) {
                Ok(m) if FileKey::of(&m) == f.key && m.len() == f.framer.next_pos() => {}
                _ => {
                    to_read.insert(f.key);
                }
            }
        }
    }

    /// The record key of a file of source `source` at `path`, if the
    /// source has a key template.
    pub(super) fn render_key(&self, source: usize, path: &Path) -> Option<Vec<u8>> {
        let s = self.cfg.sources.get(source)?;
        let template = s.key.as_ref()?;
        Some(template.render(|name| match name {
            "host" => self.cfg.host.clone(),
            "source" => s.name.clone(),
            "path" => path.display().to_string(),
            label => s.labels.get(label).cloned().unwrap_or_default(),
        }))
    }

    /// The stream id of a file: stable across restarts (agent id, device,
    /// inode and, where the file system records it, birth time), so that
    /// the collector recognises batches it already holds.
    pub(super) fn stream_id(&self, key: FileKey, meta: &std::fs::Metadata) -> i64 {
        let born = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        let mut h = Fnv64::new();
        for word in [self.agent_id, key.dev, key.ino, born] {
            h.write(&word.to_le_bytes());
        }
        (h.finish() & (i64::MAX as u64)) as i64
    }
}

/// A checkpoint entry of a file nothing was read from (a copy held back,
/// or a new file the agent died before reading): at a restart it is as new
/// as a file never seen.
pub(super) fn never_read(e: &Entry) -> bool {
    e.pos == 0 && e.next_seq == 0 && e.generation == 0 && e.continues.is_none()
}

/// Whether `name` is how rotation names a file whose name starts with
/// `stem`: the stem followed by `.`, `-` or `_` (so `app.log.1`,
/// `app.log-20261207`, `app-1.log` for `app`, but not `application.log`).
pub(super) fn is_rotated_name(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem)
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| matches!(c, '.' | '-' | '_'))
}

/// Compressed rotated files, which cannot be tailed as they are.
pub(super) fn is_compressed_name(name: &str) -> bool {
    [".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip"]
        .iter()
        .any(|x| name.ends_with(x))
}

/// Regular files of a directory by device and inode.
pub(super) fn list_dir(dir: &Path) -> HashMap<FileKey, PathBuf> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for entry in rd.flatten() {
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
        {
            out.insert(FileKey::of(&meta), entry.path());
        }
    }
    out
}

/// FNV-1a, 64-bit: a stable hash for stream ids (std's hasher is randomly seeded).
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
