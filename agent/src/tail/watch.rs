//! Knowing when to look: inotify events (through `notify`) mark files dirty
//! and wake the tailing loop; where inotify does not work (NFS, some
//! container file systems) or is turned off, the loop polls instead.
//!
//! The watcher watches *directories* (the fixed prefix of each glob), never
//! one watch per file, so 10,000 files cost a handful of watches. Events only
//! say "look at this path"; what changed is always found by reading, so a
//! lost or coalesced event costs latency (the periodic rescan catches it),
//! never data.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};

/// How the tailer learns about changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify where it can be set up, polling otherwise.
    Auto,
    /// inotify only: fail at start if it cannot be set up.
    Notify,
    /// Polling only.
    Poll,
}

/// Paths reported by events, and the wake-up for the tailing loop.
/// Bounded by the number of distinct paths in the watched directories.
#[derive(Debug, Default)]
pub struct Wake {
    state: Mutex<WakeState>,
    cond: Condvar,
}

#[derive(Debug, Default)]
struct WakeState {
    woken: Woken,
    poked: bool,
}

/// What happened since the loop last looked.
#[derive(Debug, Default)]
pub struct Woken {
    pub dirty: HashSet<PathBuf>,
    /// A directory-level change (create, rename, delete): rescan globs.
    pub rescan: bool,
    /// Renames seen whole (from, to): a file renamed out of its glob
    /// before a scan saw it is found only this way.
    pub renames: Vec<(PathBuf, PathBuf)>,
}

impl Wake {
    /// Records an event for `path`.
    pub fn mark(&self, path: PathBuf, rescan: bool) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.woken.dirty.insert(path);
        s.woken.rescan |= rescan;
        s.poked = true;
        self.cond.notify_one();
    }

    /// Records a rename from `from` to `to`.
    pub fn renamed(&self, from: PathBuf, to: PathBuf) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.woken.rescan = true;
        s.woken.renames.push((from, to));
        s.poked = true;
        self.cond.notify_one();
    }

    /// Wakes the loop without an event (shutdown).
    pub fn poke(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.poked = true;
        self.cond.notify_one();
    }

    /// Waits up to `timeout` for an event; returns what happened.
    pub fn wait(&self, timeout: Duration) -> Woken {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (mut s, _) = self
            .cond
            .wait_timeout_while(s, timeout, |s| !s.poked)
            .unwrap_or_else(|e| e.into_inner());
        s.poked = false;
        std::mem::take(&mut s.woken)
    }

    /// Takes what is pending without waiting.
    pub fn take(&self) -> Woken {
        self.wait(Duration::ZERO)
    }
}

/// A running inotify watcher (dropping it stops the watches).
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
    pub watched: Vec<PathBuf>,
}

/// Starts watching the directories the globs live in. `Ok(None)` in poll mode.
///
/// # Errors
/// In `Notify` mode, a watch that cannot be set up; in `Auto` mode such
/// failures fall back to polling (reported by the caller).
pub fn start(mode: WatchMode, globs: &[String], wake: std::sync::Arc<Wake>) -> Result<Option<Watcher>, String> {
    if mode == WatchMode::Poll {
        return Ok(None);
    }
    let handler_wake = std::sync::Arc::clone(&wake);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        // Opens, reads and closes (the agent's own among them: reopening
        // an idle file to read it) change nothing; reacting to them made
        // the loop chase its own tail with thousands of files.
        Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
        Ok(event)
            if matches!(
                event.kind,
                EventKind::Modify(notify::event::ModifyKind::Name(notify::event::RenameMode::Both))
            ) && event.paths.len() == 2 =>
        {
            let mut paths = event.paths.into_iter();
            if let (Some(from), Some(to)) = (paths.next(), paths.next()) {
                handler_wake.renamed(from, to);
            }
        }
        Ok(event) => {
            let rescan = matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
            );
            for path in event.paths {
                handler_wake.mark(path, rescan);
            }
        }
        // Overflowed queue or a watch error: rescan everything.
        Err(_) => handler_wake.mark(PathBuf::new(), true),
    })
    .map_err(|e| format!("cannot start inotify: {e}"))?;
    let mut watched = Vec::new();
    for (dir, recursive) in watch_roots(globs) {
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        match watcher.watch(&dir, mode) {
            Ok(()) => watched.push(dir),
            // A directory that does not exist yet: the periodic rescan
            // finds files there; a later start watches it.
            Err(e) if !dir.exists() => {
                tracing::debug!(dir = %dir.display(), error = %e, "not watching missing directory")
            }
            Err(e) => return Err(format!("cannot watch {}: {e}", dir.display())),
        }
    }
    Ok(Some(Watcher {
        _inner: watcher,
        watched,
    }))
}

/// The directories to watch for a set of globs: each glob's longest prefix
/// without wildcards, recursive when a wildcard spans directories.
pub fn watch_roots(globs: &[String]) -> Vec<(PathBuf, bool)> {
    let mut roots: Vec<(PathBuf, bool)> = Vec::new();
    for g in globs {
        let path = Path::new(g);
        let mut prefix = PathBuf::new();
        let mut wild_at = None;
        let comps: Vec<Component<'_>> = path.components().collect();
        for (i, c) in comps.iter().enumerate() {
            let s = c.as_os_str().to_string_lossy();
            if s.contains(['*', '?', '[']) {
                wild_at = Some(i);
                break;
            }
            prefix.push(c);
        }
        // Without a wildcard the last component is the file: watch its directory.
        let (dir, recursive) = match wild_at {
            None => (prefix.parent().map(Path::to_path_buf).unwrap_or_default(), false),
            // A wildcard in a directory component (not the last) spans levels.
            Some(i) => (prefix, i + 1 < comps.len()),
        };
        if !roots.iter().any(|(d, r)| d == &dir && *r == recursive) {
            roots.push((dir, recursive));
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_of_globs() {
        let globs: Vec<String> = [
            "/var/log/app/*.log",
            "/var/log/syslog",
            "/srv/*/logs/*.log",
            "/var/log/app/x-*.log",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            watch_roots(&globs),
            vec![
                (PathBuf::from("/var/log/app"), false),
                (PathBuf::from("/var/log"), false),
                (PathBuf::from("/srv"), true),
            ]
        );
    }

    #[test]
    fn wake_collects_and_wakes() {
        let w = Wake::default();
        w.mark(PathBuf::from("/a"), false);
        w.mark(PathBuf::from("/b"), true);
        w.renamed(PathBuf::from("/a"), PathBuf::from("/a.1"));
        let woken = w.wait(Duration::from_secs(5));
        assert_eq!(woken.dirty.len(), 2);
        assert!(woken.rescan);
        assert_eq!(woken.renames, vec![(PathBuf::from("/a"), PathBuf::from("/a.1"))]);
        let woken = w.wait(Duration::from_millis(10));
        assert!(woken.dirty.is_empty() && !woken.rescan && woken.renames.is_empty());
    }
}
