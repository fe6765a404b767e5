//! Finding the files a source names: glob expansion, exclusion, and the
//! checks that keep non-files (directories, FIFOs, sockets, devices),
//! files whose size lies (on pseudo-file systems such as /proc and /sys,
//! see [`pseudo_file_system`]) and unreadable entries out, each reported
//! rather than fatal.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::Source;

/// A regular file a source matched.
#[derive(Debug)]
pub struct Found {
    pub source: usize,
    pub path: PathBuf,
    /// Metadata of the file (symlinks followed).
    pub meta: Metadata,
    /// The path is a symlink: its target may change without the glob's
    /// directory changing.
    pub via_symlink: bool,
}

/// Something a glob matched that cannot be tailed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Expands every source's globs. A path matched by two sources goes to the
/// first. Problems are returned, not logged, so the caller can rate-limit.
pub fn discover(sources: &[Source]) -> (Vec<Found>, Vec<Skipped>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    // Files of one directory share its file system (a symlink may not).
    let mut dir_fs: HashMap<PathBuf, Option<&'static str>> = HashMap::new();
    for (i, source) in sources.iter().enumerate() {
        for pattern in &source.paths {
            let paths = match glob::glob_with(pattern.as_str(), glob::MatchOptions::new()) {
                Ok(p) => p,
                Err(e) => {
                    skipped.push(Skipped {
                        path: PathBuf::from(pattern.as_str()),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            for entry in paths {
                let path = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        // An unreadable directory on the way: report it.
                        skipped.push(Skipped {
                            path: e.path().to_owned(),
                            reason: e.error().to_string(),
                        });
                        continue;
                    }
                };
                if source.exclude.iter().any(|x| x.matches_path(&path)) || !seen.insert(path.clone()) {
                    continue;
                }
                // lstat first: for a regular file it is the only call.
                let (meta, via_symlink) = match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => (std::fs::metadata(&path), true),
                    other => (other, false),
                };
                let pseudo = match (&meta, via_symlink, path.parent()) {
                    (Ok(m), false, Some(dir)) if m.is_file() => *dir_fs
                        .entry(dir.to_path_buf())
                        .or_insert_with(|| pseudo_file_system(dir)),
                    (Ok(m), _, _) if m.is_file() => pseudo_file_system(&path),
                    _ => None,
                };
                if let Some(fs) = pseudo {
                    skipped.push(Skipped {
                        path,
                        reason: format!("{}{fs}", PSEUDO_REASON),
                    });
                    continue;
                }
                match meta {
                    Ok(meta) if meta.is_file() => found.push(Found {
                        source: i,
                        path,
                        meta,
                        via_symlink,
                    }),
                    Ok(meta) => {
                        let kind = file_kind(&meta);
                        skipped.push(Skipped {
                            path,
                            reason: format!("is a {kind}, not a regular file"),
                        });
                    }
                    Err(e) => skipped.push(Skipped {
                        path,
                        reason: e.to_string(),
                    }),
                }
            }
        }
    }
    (found, skipped)
}

/// Why a file on a pseudo-file system is skipped; the system's name follows.
pub const PSEUDO_REASON: &str = "reports a size that is not its content (every read would look like a truncation), so it cannot be tailed: it is on ";

/// Pseudo-file systems, by statfs(2) magic number: their "files" are made
/// up when read, report a size of 0 or 4096 whatever they hold, and change
/// in place, so tailing one re-reads it from the start forever.
const PSEUDO_FILE_SYSTEMS: [(u64, &str); 11] = [
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x6265_6570, "configfs"),
    (0x0027_e0eb, "cgroupfs"),
    (0x6367_7270, "cgroup2fs"),
    (0xcafe_4a11, "bpffs"),
    (0x6165_676c, "pstorefs"),
    (0xde5e_81e4, "efivarfs"),
];

/// The name of the pseudo-file system `path` (symlinks followed) is on, if
/// it is on one. Unknown (statfs failed): `None`, the open will say why.
pub fn pseudo_file_system(path: &Path) -> Option<&'static str> {
    let st = rustix::fs::statfs(path).ok()?;
    // `f_type` is a C long (signed on most targets); magic numbers are 32 bits.
    let magic = (st.f_type as u64) & 0xffff_ffff;
    PSEUDO_FILE_SYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

/// The pseudo-file system a path glob is under, judged by its text:
/// `/proc/...` and `/sys/...` (for `validate`, before any file exists).
pub fn pseudo_glob(pattern: &str) -> Option<&'static str> {
    let under = |root: &str| pattern == root || pattern.strip_prefix(root).is_some_and(|r| r.starts_with('/'));
    if under("/proc") {
        Some("/proc")
    } else if under("/sys") {
        Some("/sys")
    } else {
        None
    }
}

/// What a directory looked like: a change to its entries (a file created,
/// renamed, deleted) changes its modification time, and any change of its
/// own its change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(dir: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(dir).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    /// The later of the two times, as a `SystemTime`.
    fn changed_at(&self) -> Option<SystemTime> {
        let at = |(s, ns): (i64, i64)| {
            SystemTime::UNIX_EPOCH.checked_add(Duration::new(u64::try_from(s).ok()?, u32::try_from(ns).ok()?))
        };
        Some(at(self.mtime)?.max(at(self.ctime)?))
    }
}

/// A directory changed this recently may change again within the same
/// timestamp tick (coarse on some file systems) without a new stamp.
const STAMP_SETTLE: Duration = Duration::from_secs(2);

/// The directories every glob reads, as they were when a full scan began:
/// while none has changed, a rescan would find exactly the files it found
/// (names come and go only through their directory, which a rename, create
/// or delete stamps), so it can be skipped. That keeps an idle agent with
/// thousands of files from reading and stat-ing them all every
/// `glob_interval`.
#[derive(Debug, Default)]
pub struct DirStamps {
    stamps: Vec<(PathBuf, Stamp)>,
    /// Whether the stamps describe every glob (none has a wildcard above
    /// its last component, and every directory could be read).
    complete: bool,
}

impl DirStamps {
    /// Stamps the directories of `sources`' globs; call right before a full scan.
    pub fn record(sources: &[Source]) -> Self {
        Self::record_at(sources, SystemTime::now())
    }

    fn record_at(sources: &[Source], taken: SystemTime) -> Self {
        let mut stamps = Vec::new();
        let mut complete = true;
        for source in sources {
            for pattern in &source.paths {
                let Some(dir) = literal_dir(pattern.as_str()) else {
                    complete = false;
                    continue;
                };
                if stamps.iter().any(|(d, _)| d == &dir) {
                    continue;
                }
                match Stamp::of(&dir) {
                    // Too fresh to trust: a change in the same tick would not show.
                    Some(st) if st.changed_at().is_some_and(|t| t + STAMP_SETTLE < taken) => stamps.push((dir, st)),
                    _ => complete = false,
                }
            }
        }
        DirStamps { stamps, complete }
    }

    /// Makes the next rescan happen whatever the stamps say (the last one
    /// left something to retry).
    pub fn invalidate(&mut self) {
        self.complete = false;
    }

    /// Whether a rescan now would find what the recorded one found.
    pub fn unchanged(&self) -> bool {
        self.complete && self.stamps.iter().all(|(dir, st)| Stamp::of(dir).as_ref() == Some(st))
    }
}

/// The directory a glob lists, when only its last component has wildcards.
fn literal_dir(pattern: &str) -> Option<PathBuf> {
    let path = Path::new(pattern);
    let dir = path.parent()?;
    let has_wildcard = |s: &str| s.contains(['*', '?', '[']);
    (!has_wildcard(dir.to_str()?)).then(|| dir.to_path_buf())
}

fn file_kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(globs: &[String]) -> Source {
        let toml = format!(
            "data_dir = \"/tmp/x\"\n[collector]\nurls = [\"http://127.0.0.1:1\"]\n[[sources]]\nname = \"s\"\ntopic = \"t\"\npaths = {globs:?}\n"
        );
        let text = logpost_shared::config::SourceText {
            path: "agent.toml".into(),
            text: toml,
        };
        let cfg = crate::config::AgentConfig::from_source(&text).expect("config");
        cfg.sources.into_iter().next().expect("a source")
    }

    #[test]
    fn unchanged_directories_are_seen_and_changes_are_not_missed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), "x\n").unwrap();
        let glob = format!("{}/*.log", dir.path().display());
        let sources = vec![source(std::slice::from_ref(&glob))];
        // Freshly changed: not trusted yet.
        assert!(!DirStamps::record(&sources).unchanged());
        let later = SystemTime::now() + STAMP_SETTLE * 2;
        let stamps = DirStamps::record_at(&sources, later);
        assert!(stamps.unchanged(), "nothing changed");
        // Appending to a file does not touch its directory.
        std::fs::write(dir.path().join("a.log"), "x\ny\n").unwrap();
        assert!(stamps.unchanged());
        std::fs::write(dir.path().join("b.log"), "new\n").unwrap();
        assert!(!stamps.unchanged(), "a new file");
        let stamps = DirStamps::record_at(&sources, later + STAMP_SETTLE * 2);
        std::fs::rename(dir.path().join("b.log"), dir.path().join("b.log.1")).unwrap();
        assert!(!stamps.unchanged(), "a rename");
        let mut stamps = DirStamps::record_at(&sources, later + STAMP_SETTLE * 4);
        assert!(stamps.unchanged());
        stamps.invalidate();
        assert!(!stamps.unchanged(), "invalidated");
    }

    #[test]
    fn wildcard_directories_are_always_rescanned() {
        let dir = tempfile::tempdir().unwrap();
        let glob = format!("{}/*/app.log", dir.path().display());
        let sources = vec![source(&[glob])];
        let stamps = DirStamps::record_at(&sources, SystemTime::now() + STAMP_SETTLE * 2);
        assert!(!stamps.unchanged());
    }

    /// Issue 28: `/proc` files passed discovery, then were re-read from
    /// the start forever (their size is 0 whatever they hold). A symlink
    /// into /proc is skipped with the reason; a real file is not.
    #[test]
    fn issue_28_pseudo_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real.log"), "x\n").unwrap();
        std::os::unix::fs::symlink("/proc/self/status", dir.path().join("status.log")).unwrap();
        let glob = format!("{}/*.log", dir.path().display());
        let (found, skipped) = discover(&[source(&[glob])]);
        let found: Vec<_> = found.iter().map(|f| f.path.file_name().unwrap().to_owned()).collect();
        assert_eq!(found, ["real.log"]);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].path.ends_with("status.log"));
        assert!(skipped[0].reason.ends_with("procfs"), "{}", skipped[0].reason);
        assert_eq!(pseudo_file_system(Path::new("/proc/uptime")), Some("procfs"));
        assert_eq!(pseudo_file_system(dir.path()), None);
        assert_eq!(pseudo_glob("/proc/self/status"), Some("/proc"));
        assert_eq!(pseudo_glob("/sys/kernel/*"), Some("/sys"));
        assert_eq!(pseudo_glob("/procedures/*.log"), None);
        assert_eq!(pseudo_glob("/var/log/*.log"), None);
    }
}
