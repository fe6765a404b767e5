//! New files held back as possible copies: a file that starts like a
//! live tracked file may be the copy copytruncate is making of it, whose
//! lines arrive through the original. It is tracked but not read until it
//! proves unrelated, turns out to be the copy of a truncated content (then
//! read past what the original had), or a second copy of one.
//!
//! Why a module of its own: `copies.rs` handles the truncation and the
//! copy taken for it; this decides, for every new file, whether it waits.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use super::copies::{LiveHeads, MIN_COPY_HEAD};
use super::file_server::FileServer;
use super::fingerprint::{FileKey, HEAD_BYTES, Head};

impl FileServer {
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
        self.shadows_live_file(path, file, size, heads, None)
    }

    /// Whether `file` (of `size` bytes, at least `HEAD_BYTES`) starts as a
    /// live tracked file in the same directory (other than `except`) and
    /// is no longer than it: a copy of it, whose lines arrive through it.
    ///
    /// Both are compared as the agent knows the live file (its head as
    /// read, the furthest it has read), not as it is now: the copy may be
    /// looked at after the live file was truncated but before the agent
    /// noticed, and must then still be taken for its copy.
    fn shadows_live_file(
        &self,
        path: &Path,
        file: &File,
        size: u64,
        heads: &LiveHeads,
        except: Option<FileKey>,
    ) -> bool {
        let Some(dir) = path.parent() else { return false };
        let Ok(head) = Head::read(file) else { return false };
        heads.get(&(dir.to_owned(), head.crc)).is_some_and(|keys| {
            keys.iter()
                .filter(|k| Some(**k) != except)
                .filter_map(|k| self.files.get(k))
                .any(|o| {
                    !o.gone
                        && (size <= o.size().unwrap_or(0).max(o.framer.next_pos())
                            // Truncated (or rewritten) and not seen yet:
                            // held until the loop sees it, which then says
                            // where this copy starts (`copy_of_retired`).
                            || !o.content_unchanged().unwrap_or(true))
                })
        })
    }

    /// Whether `file`, shorter than `HEAD_BYTES`, starts as the content
    /// of a live tracked file in the same directory (other than `except`)
    /// as the agent knows it: the file is a prefix of that content, or that
    /// content as read so far is a prefix of the file.
    fn prefix_of_live_file(&self, path: &Path, file: &File, size: u64, except: FileKey) -> bool {
        let Some(dir) = path.parent() else { return false };
        if size == 0 {
            return false;
        }
        self.files.values().any(|o| {
            if o.key == except || o.gone || o.path.parent() != Some(dir) || o.head.len == 0 {
                return false;
            }
            if u64::from(o.head.len) <= size {
                // What was read of it is how this file starts.
                Head::read_len(file, o.head.len as usize).is_ok_and(|h| h == o.head)
            } else {
                // This file is how it starts (read now: it may have changed).
                let Ok(mine) = Head::read(file) else { return false };
                u64::from(mine.len) == size
                    && o.file
                        .as_ref()
                        .is_some_and(|h| Head::read_len(h, mine.len as usize).is_ok_and(|p| p == mine))
            }
        })
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
        if copy_from.is_none() {
            // Still a copy of a live file (its whole content a prefix of
            // that file's): its lines arrive through that file, so it is
            // held for as long as that lasts, not only `COPY_DECISION`.
            let heads = heads.get_or_insert_with(|| self.live_heads());
            let shadow = if size >= HEAD_BYTES as u64 {
                self.shadows_live_file(&path, &file, size, heads, Some(key))
            } else {
                self.prefix_of_live_file(&path, &file, size, key)
            };
            let hold = if size >= HEAD_BYTES as u64 {
                shadow
            } else {
                // Empty, or a short prefix: maybe a copy being written.
                // Past `COPY_DECISION` too little says it is a copy: it
                // is read (a duplicate at worst, never a loss).
                (shadow || size == 0) && now < until
            };
            if hold {
                return false;
            }
        }
        // A second copy of a content a copy already continues (the plain
        // file and the `.gz` logrotate made of it): that one brings its
        // lines; this one is not read.
        let dir = path.parent().map(Path::to_path_buf);
        let second = copy_from.is_none()
            && self.files.values().any(|o| {
                o.key != key
                    && o.continues.is_some()
                    && o.path.parent().map(Path::to_path_buf) == dir
                    && o.head.len >= MIN_COPY_HEAD
                    && o.head.matches(&file).unwrap_or(false)
            });
        let Some(f) = self.files.get_mut(&key) else {
            return false;
        };
        f.copy_check_until = None;
        if second {
            tracing::info!(path = %path.display(), "a second copy of content a copy is read from; not read");
            f.start_at(size);
            return true;
        }
        if let Some(c) = copy_from {
            tracing::info!(path = %path.display(), pos = c.pos, "file is a copy of truncated content; reading only what was not read before");
            f.start_at(c.pos);
            self.continue_in_copy(key, c.original, c.after);
        }
        true
    }
}
