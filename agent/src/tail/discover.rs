//! Finding the files a source names: glob expansion, exclusion, and the
//! checks that keep non-files (directories, FIFOs, sockets, devices) and
//! unreadable entries out, each reported rather than fatal.

use std::collections::HashSet;
use std::fs::Metadata;
use std::path::PathBuf;

use crate::config::Source;

/// A regular file a source matched.
#[derive(Debug)]
pub struct Found {
    pub source: usize,
    pub path: PathBuf,
    /// Metadata of the file (symlinks followed).
    pub meta: Metadata,
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
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => found.push(Found { source: i, path, meta }),
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
