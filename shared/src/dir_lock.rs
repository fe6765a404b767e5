//! An exclusive lock on a data directory, as Kafka locks its log
//! directories: two processes appending to one store, or two agents moving
//! one set of checkpoints, would each undo what the other wrote. The lock
//! is `flock(2)` on a file in the directory (released by the kernel when
//! the process dies, SIGKILL included), and the file names the holder's
//! pid for the error the second process prints.
//!
//! The one piece of file handling in this crate: agent and collector lock
//! their directories the same way and say the same thing when they cannot.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE: &str = ".lock";

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
    #[error(
        "{}: data directory is in use by another {program}{}; each process needs a data directory of its own",
        dir.display(),
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        dir: PathBuf,
        program: String,
        holder: Option<u32>,
    },
    #[error("{}: cannot lock the data directory", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DirLock {
    /// Locks `dir` (which must exist) for `program` (named in the error
    /// another process gets), without waiting.
    ///
    /// # Errors
    /// Another process holds the lock, or the lock file cannot be opened.
    pub fn acquire(dir: &Path, program: &str) -> Result<DirLock, DirLockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| DirLockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(DirLockError::Held {
                    dir: dir.to_owned(),
                    program: program.to_owned(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // The pid is for people and for the next process's error only:
        // the lock itself is the flock.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_naming_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let held = DirLock::acquire(dir, "logpost-collector").unwrap();
        let err = DirLock::acquire(dir, "logpost-collector").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "in use by another logpost-collector (pid {})",
                std::process::id()
            )),
            "{text}"
        );
        drop(held);
        // Released with the holder: the next one gets it.
        let again = DirLock::acquire(dir, "logpost-collector").unwrap();
        assert!(again.path().ends_with(LOCK_FILE));
    }
}
