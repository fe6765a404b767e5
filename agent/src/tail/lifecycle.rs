//! How files come and go in the tailing loop: discovery and identity on
//! rescans, where a new file starts, finding rotated files again after a
//! restart, the cap on open handles (idle files are closed and reopened on
//! change), copies made by copytruncate, and closing finished files.
//!
//! Why a module of its own: `file_server.rs` decides *what to read when*;
//! this module decides *which files exist and what state they start in*.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::checkpoint::Entry;
use super::discover::discover;
use super::file_server::FileServer;
use super::fingerprint::{FileKey, Head};
use super::tracked::{Start, TrackedFile};
use crate::config::StartAt;

/// Shortest head for copy detection: shorter heads (a banner line) are too
/// likely to repeat in unrelated files.
const MIN_COPY_HEAD: u32 = 64;
/// How long after a truncation a copy of the old content is recognised.
const COPY_WINDOW: Duration = Duration::from_secs(600);
/// Truncated contents remembered for copy detection.
const MAX_RETIRED: usize = 256;
/// How long a file that looks like a copy in progress may stop growing
/// before it is decided on anyway.
const COPY_STALL: Duration = Duration::from_secs(2);
/// Bytes compared to tell a copy in progress from an unrelated file.
const PREFIX_CHECK_BYTES: u64 = 64 << 10;

/// The content a file had before it was truncated, and how far it was read.
#[derive(Debug, Clone)]
pub struct Retired {
    dir: PathBuf,
    head: Head,
    pos: u64,
    at: Instant,
}

impl FileServer {
    /// Re-expands the globs: new files are tracked, renamed ones followed,
    /// vanished ones marked gone (read to their end, then closed).
    pub(super) fn scan(&mut self, now: Instant, initial: bool) {
        let (found, skipped) = discover(&self.cfg.sources);
        for s in skipped {
            if self.warned.insert((s.path.clone(), s.reason.clone())) {
                tracing::warn!(path = %s.path.display(), reason = %s.reason, "cannot tail matched path; skipping it");
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(found.len());
        for f in found {
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
                    self.by_path.insert(f.path, key);
                }
                continue;
            }
            if self.open_handles >= self.cfg.tail.max_open_files && !self.evict_idle(now) {
                self.stats.files_waiting += 1;
                continue; // retried at the next scan
            }
            let file = match File::open(&f.path) {
                Ok(file) => file,
                Err(e) => {
                    if self.warned.insert((f.path.clone(), e.to_string())) {
                        tracing::warn!(path = %f.path.display(), error = %e, "cannot open file; will retry");
                    }
                    continue;
                }
            };
            // Identify by the handle: the path may have been replaced since the stat.
            let Ok(meta) = file.metadata() else { continue };
            let key = FileKey::of(&meta);
            if self.files.contains_key(&key) {
                continue;
            }
            seen.insert(key);
            if !initial && self.copy_in_progress(&f.path, &file, meta.len(), now) {
                continue; // decided at a later scan, once the copy is done
            }
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
                    tracing::debug!(path = %f.path.display(), pos = start.pos, "tailing file");
                    self.by_path.insert(f.path, key);
                    self.files.insert(key, t);
                    self.open_handles += 1;
                }
                Err(e) => tracing::warn!(path = %f.path.display(), error = %e, "cannot read file head; will retry"),
            }
        }
        for (key, t) in &mut self.files {
            if !seen.contains(key) && !t.gone {
                tracing::debug!(path = %t.path.display(), "file no longer matched (rotated or deleted); reading it to its end");
                t.gone = true;
            }
        }
        self.stats.files_waiting = self.stats.files_waiting.min(self.files.len());
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
        if let Some(entry) = self.dormant.remove(&key) {
            match entry.head.matches(file) {
                Ok(true) if entry.pos <= meta.len() => {
                    return Start {
                        pos: entry.pos,
                        producer_id: entry.producer_id,
                        next_seq: entry.next_seq,
                        generation: entry.generation,
                    };
                }
                Ok(true) => tracing::warn!(path = %path.display(), checkpoint = entry.pos, size = meta.len(),
                    "file is shorter than its checkpoint (truncated while the agent was down); reading it from the start"),
                _ => {
                    self.stats.inode_reused += 1;
                    tracing::warn!(path = %path.display(), "inode reused by a different file; reading the new file from the start");
                }
            }
            // The same stream id (the inode came back without a birth time to
            // tell it apart) continues its sequence, so nothing is mistaken
            // for a duplicate.
            let next_seq = if entry.producer_id == producer_id {
                entry.next_seq
            } else {
                0
            };
            return Start {
                pos: 0,
                producer_id,
                next_seq,
                generation: 0,
            };
        }
        if let Some(pos) = self
            .copy_of_retired(path, file, meta.len(), now)
            .or_else(|| self.copy_of_live(path, file, meta.len()))
        {
            tracing::info!(path = %path.display(), pos, "file is a copy of truncated content; reading only what was not read before");
            return Start {
                pos,
                producer_id,
                next_seq: 0,
                generation: 0,
            };
        }
        let at_end =
            initial && self.first_start && self.cfg.sources.get(source).is_some_and(|s| s.start_at == StartAt::End);
        Start {
            pos: if at_end { meta.len() } else { 0 },
            producer_id,
            next_seq: 0,
            generation: 0,
        }
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

    fn copy_of_retired(&mut self, path: &Path, file: &File, size: u64, now: Instant) -> Option<u64> {
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

    /// Whether `path` looks like a copy of a tracked file still being
    /// written: its whole content so far is a prefix of the original's, and
    /// it is shorter than what was read of the original. Such a file is
    /// left alone until it has grown that far (a copy: read from there), or
    /// has diverged (not a copy), or has stopped growing for a while.
    fn copy_in_progress(&mut self, path: &Path, file: &File, size: u64, now: Instant) -> bool {
        let Some(dir) = path.parent() else { return false };
        // An empty file is a prefix of anything: a copy that has only just
        // been created. Waiting costs nothing, there is nothing to read yet.
        // Only a file still in place (not rotated away) with an open handle
        // can be the original: compare through its handle, since its path
        // may already name another file.
        let candidate = self.files.values().find(|f| {
            !f.gone
                && f.path.parent() == Some(dir)
                && f.framer.emitted_pos() > size
                && f.file
                    .as_ref()
                    .is_some_and(|orig| size == 0 || is_prefix_of(file, size, orig))
        });
        if candidate.is_none() {
            self.deferred.remove(path);
            return false;
        }
        let first = *self.deferred.entry(path.to_owned()).or_insert((now, size));
        if size != first.1 {
            self.deferred.insert(path.to_owned(), (now, size));
            return true;
        }
        // Stalled for long enough: stop waiting (it is then read from
        // where the original had been read to, or its end).
        if now.duration_since(first.0) >= COPY_STALL {
            self.deferred.remove(path);
            return false;
        }
        true
    }

    /// A new file in the same directory that starts with a tracked file's
    /// head and is at least as long as what was read of it: a copy being
    /// made by copytruncate, seen before the truncation. It is read from
    /// where the original had been read to. (With logrotate's `copy`
    /// without truncation, lines between that point and the copy would be
    /// shipped twice: use a glob that does not match rotated names.)
    fn copy_of_live(&self, path: &Path, file: &File, size: u64) -> Option<u64> {
        let dir = path.parent()?;

        self.files
            .values()
            .filter(|f| !f.gone && f.head.len >= MIN_COPY_HEAD && f.path.parent() == Some(dir))
            .filter(|f| f.framer.emitted_pos() <= size && f.framer.emitted_pos() > 0)
            .find(|f| f.head.matches(file).unwrap_or(false))
            .map(|f| f.framer.emitted_pos())
    }

    /// Files in the checkpoint that no glob matches any more: rotation
    /// renamed them away while the agent was down. Look for each in its
    /// old directory by device and inode; if its head still matches, read it
    /// to its end. Costs one directory listing per directory, however many
    /// entries there are.
    pub(super) fn recover_dormant(&mut self, now: Instant) {
        let dormant: Vec<Entry> = self.dormant.drain().map(|(_, e)| e).collect();
        let mut listings: HashMap<PathBuf, HashMap<FileKey, PathBuf>> = HashMap::new();
        for entry in dormant {
            let Some(source) = self.cfg.sources.iter().position(|s| s.name == entry.source) else {
                continue;
            };
            let Some(dir) = entry.path.parent() else { continue };
            let listing = listings.entry(dir.to_owned()).or_insert_with(|| list_dir(dir));
            let Some(path) = listing.get(&entry.key).cloned() else {
                continue;
            };
            let Ok(file) = File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            if FileKey::of(&meta) != entry.key || !entry.head.matches(&file).unwrap_or(false) || meta.len() <= entry.pos
            {
                continue;
            }
            let start = Start {
                pos: entry.pos,
                producer_id: entry.producer_id,
                next_seq: entry.next_seq,
                generation: entry.generation,
            };
            if let Ok(mut t) = TrackedFile::new(
                entry.key,
                source,
                path.clone(),
                file,
                start,
                (self.cfg.tail.max_line_bytes, self.cfg.tail.long_lines),
                now,
            ) {
                tracing::info!(path = %path.display(), pos = entry.pos, "found unfinished rotated file; reading it to its end");
                t.gone = true;
                t.record_key = self.render_key(source, &path);
                self.by_path.insert(path, entry.key);
                self.files.insert(entry.key, t);
                self.open_handles += 1;
            }
        }
    }

    /// Makes sure `key` has an open handle, reopening an idle file; false if
    /// it cannot be read now (handle cap reached, or it vanished).
    pub(super) fn ensure_open(&mut self, key: FileKey, now: Instant) -> bool {
        match self.files.get(&key) {
            None => return false,
            Some(f) if f.file.is_some() => return true,
            Some(_) => {}
        }
        if self.open_handles >= self.cfg.tail.max_open_files && !self.evict_idle(now) {
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
                    f.gone = true;
                    return false;
                };
                let Ok(file) = File::open(&path) else { return false };
                self.by_path.remove(&f.path);
                f.renamed(path.clone());
                f.gone = true;
                self.by_path.insert(path, key);
                file
            }
        };
        f.file = Some(file);
        self.open_handles += 1;
        true
    }

    /// Closes the least recently active idle handle; false if none is idle.
    fn evict_idle(&mut self, now: Instant) -> bool {
        let victim = self
            .files
            .values()
            .filter(|f| {
                f.file.is_some()
                    && f.at_eof
                    && !f.gone
                    && now.duration_since(f.last_growth) >= Duration::from_millis(100)
            })
            .min_by_key(|f| f.last_growth)
            .map(|f| f.key);
        match victim.and_then(|k| self.files.get_mut(&k)) {
            Some(f) => {
                f.file = None;
                self.open_handles -= 1;
                true
            }
            None => false,
        }
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
    fn render_key(&self, source: usize, path: &Path) -> Option<Vec<u8>> {
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
    fn stream_id(&self, key: FileKey, meta: &std::fs::Metadata) -> i64 {
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

/// Whether the first `size` bytes of `file` equal the start of `original`
/// (compared up to `PREFIX_CHECK_BYTES`).
fn is_prefix_of(file: &File, size: u64, original: &File) -> bool {
    use std::os::unix::fs::FileExt;
    let n = size.min(PREFIX_CHECK_BYTES) as usize;
    let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
    file.read_exact_at(&mut a, 0).is_ok() && original.read_exact_at(&mut b, 0).is_ok() && a == b
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
