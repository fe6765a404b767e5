//! After a restart: finding again the contents the checkpoint knows that
//! rotation moved while the agent was down (renamed away, copied,
//! compressed), and the rotated files written meanwhile beside tracked
//! ones that no glob matches.
//!
//! Why a module of its own: `lifecycle.rs` follows files as they come and
//! go while the agent runs; this is the one-off reconciliation at start.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::checkpoint::{Continues, Entry};
use super::copies::CopyWindow;
use super::file_server::FileServer;
use super::fingerprint::{FileKey, Tail, born};
use super::lifecycle::{is_compressed_name, is_rotated_name, list_dir, never_read};
use super::tracked::{Start, TrackedFile};

impl FileServer {
    /// Files in the checkpoint that no glob matches any more: rotation
    /// renamed them away while the agent was down. Look for each in its
    /// old directory by device and inode; if its head still matches, read it
    /// to its end. Costs one directory listing per directory, however many
    /// entries there are.
    pub(super) fn recover_dormant(&mut self, now: Instant) {
        let mut dormant: Vec<Entry> = self.dormant.drain().map(|(_, e)| e).collect();
        // Copies held back last: their originals claim the content first.
        dormant.sort_by_key(|e| e.held);
        let mut listings: HashMap<PathBuf, HashMap<FileKey, PathBuf>> = HashMap::new();
        for entry in dormant {
            let Some(source) = self.cfg.sources.iter().position(|s| s.name == entry.source) else {
                continue;
            };
            let Some(dir) = entry.path.parent() else { continue };
            let listing = listings.entry(dir.to_owned()).or_insert_with(|| list_dir(dir));
            let dir = dir.to_owned();
            let Some(path) = listing.get(&entry.key).cloned() else {
                // Gone from its directory (renamed away, or replaced by a
                // copy that holds its content): look for the content.
                self.adopt_moved_content(&dir, &entry, source, now);
                continue;
            };
            // An inode is reused: a checkpointed content with no head to
            // tell it by, or an inode now under a name that is neither
            // matched nor a rotation of the old one (a new logrotate state
            // file), is not that content.
            let old_stem = entry
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if entry.head.len == 0 || !(self.matched_by_a_source(&path) || is_rotated_name(&name, &old_stem)) {
                continue;
            }
            let Ok(file) = File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            if FileKey::of(&meta) != entry.key {
                continue;
            }
            // A gzip file read (inflated) before the restart: inflated again.
            let (file, inflated) = if is_compressed_name(&path.file_name().unwrap_or_default().to_string_lossy()) {
                if !super::compressed::is_gzip(&path) {
                    continue;
                }
                match super::compressed::inflate_open(file, entry.key, &self.cfg.data_dir) {
                    Ok((f, guard)) => (f, Some(guard)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot inflate a compressed rotated file");
                        continue;
                    }
                }
            } else {
                (file, None)
            };
            let Ok(meta) = file.metadata() else { continue };
            let same =
                entry.head.matches(&file).unwrap_or(false) && entry.tail.matches(&file, entry.pos).unwrap_or(false);
            if !same {
                // Its inode holds other content now: the old one may be in a copy.
                self.adopt_moved_content(&dir, &entry, source, now);
                continue;
            }
            // Read to its end: nothing to do, unless a glob matches it (a
            // rotated name in `app.log*`, missed by the first scan because
            // logrotate renamed it meanwhile). That one stays tracked at
            // its position, or the next checkpoint would forget it and the
            // next scan read it again from its start as a new file.
            let matched = self.matched_by_a_source(&path);
            if meta.len() <= entry.pos && !matched {
                continue;
            }
            let start = Start {
                pos: entry.pos,
                producer_id: entry.producer_id,
                next_seq: entry.next_seq,
                generation: entry.generation,
                born: entry.born_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
                tail: entry.tail,
                continues: entry.continues,
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
                if meta.len() > entry.pos {
                    tracing::info!(path = %path.display(), pos = entry.pos, "found unfinished rotated file; reading it to its end");
                }
                t.gone = !matched;
                t.continues = entry.continues;
                t.inflated = inflated;
                t.record_key = self.render_key(source, &path);
                self.insert_tracked(path, t);
            }
        }
    }

    /// A checkpointed content no longer where the checkpoint saw it: if a
    /// file in its directory starts with it (a copy made while the agent
    /// was down, found as new by the scan or not matched by any glob), that
    /// file is read from where the content had got to, as its continuation.
    fn adopt_moved_content(&mut self, dir: &Path, entry: &Entry, source: usize, now: Instant) {
        if never_read(entry) && entry.held && self.original_checkpointed(entry) {
            // A copy held back: its content is its original's, recovered
            // through that one.
            return;
        }
        let window = CopyWindow {
            from: entry.born_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
            until: SystemTime::now(),
        };
        // A copy that had sent nothing yet (adopted at a live truncation,
        // its position where the original had *read* to) continues the
        // same original: what the collector stored of that one says where
        // the content's next copy starts, not this entry's position.
        let continues = match entry.continues {
            Some(c) if entry.next_seq == 0 && entry.generation == 0 => c,
            _ => Continues {
                original: entry.producer_id,
                checkpoint_seq: Some(entry.next_seq),
            },
        };
        match self.adopt_truncated_copy(dir, entry.head, entry.pos, source, Some(continues), window, now) {
            Some(copy) => {
                tracing::info!(from = %entry.path.display(), to = ?self.files.get(&copy).map(|f| f.path.clone()),
                "checkpointed content found in another file")
            }
            // Maybe being compressed, or renamed while listed: looked for again.
            None => self.missing.push(super::copies::Missing {
                dir: dir.to_owned(),
                head: entry.head,
                pos: entry.pos,
                source,
                continues: Some(continues),
                live: None,
                window,
                until: now + super::copies::MISSING_LOOKED_FOR,
            }),
        }
    }

    /// Whether the checkpoint knows the original of a copy held back: a
    /// file in the same directory, not held, that starts as the copy did.
    /// Files are held for other reasons too (too short to tell when
    /// found, or found while the collector could not be asked where they
    /// resume): those have no original, and their content is their own.
    fn original_checkpointed(&self, held: &Entry) -> bool {
        held.head.len >= super::copies::MIN_COPY_HEAD
            && self
                .loaded_entries
                .iter()
                .any(|e| !e.held && e.key != held.key && e.head == held.head && e.path.parent() == held.path.parent())
    }

    /// After a restart: files beside the tracked ones that no glob matches,
    /// named as rotation names them (`app.log.1`, `app.log-20261207`,
    /// `app-1.log` beside `app.log`), unknown to the checkpoint and
    /// modified after it was written. They were created and rotated away
    /// while the agent was not running, so nothing else would read them:
    /// they are read from their start, each as a stream of its own (a gzip
    /// one inflated, `compressed.rs`).
    pub(super) fn adopt_unseen_siblings(&mut self, now: Instant) {
        let loaded = std::mem::take(&mut self.loaded_entries);
        if self.first_start || self.checkpoint_saved_ms == 0 {
            return;
        }
        // Modified after the last checkpoint, give or take half of
        // `rotated_file_idle`: a file finished and forgotten before that
        // checkpoint had been idle at least that long.
        let since = (UNIX_EPOCH + Duration::from_millis(self.checkpoint_saved_ms))
            .checked_sub(self.cfg.tail.rotated_file_idle / 2)
            .unwrap_or(UNIX_EPOCH);
        // Per directory: (stem of a tracked file's name, its source).
        let mut stems: HashMap<PathBuf, Vec<(String, usize)>> = HashMap::new();
        for f in self.files.values() {
            let (Some(dir), Some(name)) = (f.path.parent(), f.path.file_name()) else {
                continue;
            };
            let name = name.to_string_lossy();
            let stem = name.split('.').next().unwrap_or_default().to_owned();
            if !stem.is_empty() {
                stems.entry(dir.to_owned()).or_default().push((stem, f.source));
            }
        }
        for (dir, stems) in stems {
            let Ok(rd) = std::fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(&(_, source)) = stems.iter().find(|(stem, _)| is_rotated_name(&name, stem)) else {
                    continue;
                };
                let gzip = is_compressed_name(&name) && super::compressed::is_gzip(&path);
                if !gzip && (is_compressed_name(&name) || self.matched_by_a_source(&path)) {
                    continue;
                }
                let Ok(file) = File::open(&path) else { continue };
                let Ok(meta) = file.metadata() else { continue };
                let key = FileKey::of(&meta);
                if !meta.is_file() || self.files.contains_key(&key) || meta.modified().is_ok_and(|m| m < since) {
                    continue;
                }
                // gzip keeps the mtime of the file it compressed: this one
                // was written after the checkpoint. Read what it inflates to.
                let (file, inflated) = if gzip {
                    match super::compressed::inflate_open(file, key, &self.cfg.data_dir) {
                        Ok((f, guard)) => (f, Some(guard)),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot inflate a rotated file written while the agent was not running");
                            continue;
                        }
                    }
                } else {
                    (file, None)
                };
                // Content a tracked file is reading (the plain file that
                // logrotate is compressing into this `.gz`, or a live file
                // whose copy this is, truncation still to come): its lines
                // arrive through that file.
                let head = super::fingerprint::Head::read(&file).unwrap_or(super::fingerprint::Head::EMPTY);
                if head.len >= super::copies::MIN_COPY_HEAD
                    && self
                        .files
                        .values()
                        .any(|o| o.file.is_some() && o.head == head && o.path.parent() == Some(dir.as_path()))
                {
                    tracing::debug!(path = %path.display(), "rotated file holds content a tracked file is reading; not read");
                    continue;
                }
                let size = file.metadata().map_or(0, |m| m.len());
                // A copy of content the checkpoint knows (its copy was
                // made while the agent was down, and held nothing unread)
                // starts where that content had got to.
                // The furthest any checkpointed file had got in it (a copy
                // held back has its own entry, at 0).
                let known = loaded
                    .iter()
                    .filter(|e| {
                        e.path.parent() == Some(dir.as_path())
                            && e.head.len > 0
                            && e.head.matches(&file).unwrap_or(false)
                    })
                    .max_by_key(|e| e.pos);
                let (pos, continues) = match known {
                    Some(e) => (
                        e.pos.min(size),
                        Some(Continues {
                            original: e.producer_id,
                            checkpoint_seq: Some(e.next_seq),
                        }),
                    ),
                    None => (0, None),
                };
                let start = Start {
                    pos,
                    producer_id: self.stream_id(key, &meta),
                    next_seq: 0,
                    generation: 0,
                    born: born(&meta),
                    tail: Tail::NONE,
                    continues: None,
                };
                let framing = (self.cfg.tail.max_line_bytes, self.cfg.tail.long_lines);
                match TrackedFile::new(key, source, path.clone(), file, start, framing, now) {
                    Ok(mut t) => {
                        tracing::info!(path = %path.display(), pos, "rotated file written while the agent was not running; reading it");
                        t.gone = true;
                        t.continues = continues;
                        t.inflated = inflated;
                        t.pristine = continues.is_none() && !gzip;
                        t.next_seq = 0;
                        t.record_key = self.render_key(source, &path);
                        self.insert_tracked(path, t);
                    }
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read file head"),
                }
            }
        }
    }
}
