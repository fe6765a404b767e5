//! Acknowledged positions, persisted in `<data_dir>/checkpoints.json`.
//!
//! A position is written here only after the collector acknowledged the
//! batch holding the line before it, so a restart resumes at or before the
//! first unshipped line (never after it). Writes are atomic: a temp file,
//! fsync, rename, fsync of the directory. On load the temp file is tried
//! first (a crash between its fsync and the rename leaves it newer and
//! whole); a corrupt file is reported and set aside, never a crash.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fingerprint::{FileKey, Head, Tail};

fn tail_unknown(t: &Tail) -> bool {
    t.len == 0
}

/// Format version of the file; bumped on incompatible changes.
const VERSION: u32 = 1;
const FILE_NAME: &str = "checkpoints.json";

/// One file's acknowledged state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub key: FileKey,
    /// Name of the source that tails the file.
    pub source: String,
    pub head: Head,
    /// Last path the file was seen at (for humans and for finding it again).
    pub path: PathBuf,
    /// First byte not yet acknowledged.
    pub pos: u64,
    /// The file's stream (producer id) and its next record sequence.
    pub producer_id: i64,
    pub next_seq: i64,
    /// Incarnation of the file's content (bumped when it is truncated).
    pub generation: u32,
    /// For the copy of truncated content: the stream it continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<Continues>,
    /// The bytes just before `pos`, when they were known at the write: a
    /// restart resumes at `pos` only if they are still there.
    #[serde(default, skip_serializing_if = "tail_unknown")]
    pub tail: Tail,
    /// Held back as a possible copy of another file, never read: its
    /// content is that file's, recovered through it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// When the current content began (ms since the epoch), if known: a
    /// copy of a short content must be younger (`copies::CopyWindow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub born_ms: Option<u64>,
}

/// The stream a copy of truncated content continues. Until the copy's own
/// stream has records, what the collector stored of the original says
/// where the copy starts (`sync::resume_copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Continues {
    /// The truncated original's stream.
    pub original: i64,
    /// For a copy found after a restart from the original's checkpoint
    /// (the truncation happened while the agent was down): the original's
    /// next sequence number then, the copy's position being only a lower
    /// bound. `None` for a copy adopted at a truncation seen live, whose
    /// position is where the original's records of that content end.
    pub checkpoint_seq: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    /// When this file was written (ms since the epoch): a rotated sibling
    /// modified later holds lines written while the agent was not running.
    #[serde(default)]
    saved_ms: u64,
    files: Vec<Entry>,
}

/// Why checkpoints could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: cannot write checkpoints", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What loading found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub entries: Vec<Entry>,
    /// No checkpoint file existed: the agent's very first start.
    pub first_start: bool,
    /// When the loaded checkpoint was written (ms since the epoch; 0 if
    /// unknown).
    pub saved_ms: u64,
    /// Problems met (corrupt files set aside), for the log.
    pub warnings: Vec<String>,
}

/// Reads and writes the checkpoint file.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl Checkpointer {
    /// Checkpoints in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(FILE_NAME),
            tmp: data_dir.join(format!("{FILE_NAME}.tmp")),
            dir: data_dir.to_owned(),
        }
    }

    /// Path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the newest whole checkpoint: the temp file if it is valid, else
    /// the main file. Corrupt files are renamed to `*.corrupt` and reported.
    pub fn load(&self) -> Loaded {
        let mut loaded = Loaded::default();
        for path in [&self.tmp, &self.path] {
            match fs::read(path) {
                Ok(bytes) => match serde_json::from_slice::<CheckpointFile>(&bytes) {
                    Ok(f) if f.version == VERSION => {
                        loaded.entries = f.files;
                        loaded.saved_ms = f.saved_ms;
                        return loaded;
                    }
                    Ok(f) => loaded.warnings.push(format!(
                        "{}: checkpoint version {} is not supported (expected {VERSION}); ignoring it",
                        path.display(),
                        f.version
                    )),
                    Err(e) => {
                        let aside = path.with_extension("corrupt");
                        let _ = fs::rename(path, &aside);
                        loaded.warnings.push(format!(
                            "{}: corrupt checkpoint ({e}); moved to {}, files will be matched afresh",
                            path.display(),
                            aside.display()
                        ));
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => loaded
                    .warnings
                    .push(format!("{}: cannot read checkpoint: {e}", path.display())),
            }
        }
        loaded.first_start = loaded.warnings.is_empty() && !self.path.exists();
        loaded
    }

    /// Writes `entries` atomically.
    ///
    /// # Errors
    /// Any step of write, fsync, rename or directory fsync failed.
    pub fn save(&self, entries: &[Entry]) -> Result<(), CheckpointError> {
        let err = |source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        };
        let saved_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let json = serde_json::to_vec(&CheckpointFile {
            version: VERSION,
            saved_ms,
            files: entries.to_vec(),
        })
        .map_err(|e| err(io::Error::other(e)))?;
        let mut f = fs::File::create(&self.tmp).map_err(err)?;
        f.write_all(&json).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        fs::rename(&self.tmp, &self.path).map_err(err)?;
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64, pos: u64) -> Entry {
        Entry {
            key: FileKey { dev: 1, ino },
            source: "app".into(),
            head: Head { len: 3, crc: 7 },
            path: "/var/log/x.log".into(),
            pos,
            producer_id: 5,
            next_seq: 9,
            generation: 0,
            continues: None,
            tail: Tail::NONE,
            held: false,
            born_ms: None,
        }
    }

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpointer::new(dir.path());
        let first = c.load();
        assert!(first.first_start);
        c.save(&[entry(1, 10), entry(2, 20)]).unwrap();
        let loaded = c.load();
        assert!(!loaded.first_start);
        assert_eq!(loaded.entries, vec![entry(1, 10), entry(2, 20)]);
    }

    #[test]
    fn corrupt_file_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpointer::new(dir.path());
        fs::write(c.path(), b"{\"version\":1,\"files\":[{\"trunc").unwrap();
        let loaded = c.load();
        assert!(loaded.entries.is_empty());
        assert!(!loaded.first_start, "a corrupt checkpoint is not a first start");
        assert_eq!(loaded.warnings.len(), 1);
        assert!(
            loaded.warnings[0].contains("corrupt checkpoint"),
            "{:?}",
            loaded.warnings
        );
        assert!(dir.path().join("checkpoints.corrupt").exists());
    }

    #[test]
    fn whole_temp_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpointer::new(dir.path());
        c.save(&[entry(1, 10)]).unwrap();
        // A crash after the temp file's fsync but before the rename.
        let newer = serde_json::to_vec(&CheckpointFile {
            version: VERSION,
            saved_ms: 0,
            files: vec![entry(1, 99)],
        })
        .unwrap();
        fs::write(dir.path().join("checkpoints.json.tmp"), newer).unwrap();
        assert_eq!(c.load().entries, vec![entry(1, 99)]);
        // A torn temp file falls back to the main file.
        fs::write(dir.path().join("checkpoints.json.tmp"), b"{\"vers").unwrap();
        assert_eq!(c.load().entries, vec![entry(1, 10)]);
    }
}
