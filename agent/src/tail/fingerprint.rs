//! File identity. Device and inode locate a file quickly and survive
//! renames; a checksum of its first bytes tells a file from a different
//! one that reuses the inode (or a truncated and rewritten one). Files
//! shorter than the fingerprint length are fingerprinted on what they have,
//! and the fingerprint lengthens as they grow, so short files are read too.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

/// Bytes of a file's head that identify its content. Long enough to get
/// past a shared header line in most formats, short enough to read often.
pub const HEAD_BYTES: usize = 1024;

/// Where a file lives: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    /// The key of a file from its metadata.
    pub fn of(meta: &Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A checksum of the first `len` bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Head {
    pub len: u32,
    pub crc: u32,
}

impl Head {
    /// The head of an empty file.
    pub const EMPTY: Head = Head { len: 0, crc: 0 };

    /// Reads the first `min(size, HEAD_BYTES)` bytes of `file`.
    ///
    /// # Errors
    /// The read failed.
    pub fn read(file: &File) -> io::Result<Head> {
        Head::read_len(file, HEAD_BYTES)
    }

    /// Reads at most `max` bytes of the file's head.
    ///
    /// # Errors
    /// The read failed.
    pub fn read_len(file: &File, max: usize) -> io::Result<Head> {
        let mut buf = vec![0u8; max.min(HEAD_BYTES)];
        let mut filled = 0;
        while filled < buf.len() {
            let dst = buf.get_mut(filled..).unwrap_or_default();
            match file.read_at(dst, filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let bytes = buf.get(..filled).unwrap_or_default();
        Ok(Head {
            len: filled as u32,
            crc: crc32c::crc32c(bytes),
        })
    }

    /// Whether `file` still starts with the bytes this head was taken from.
    ///
    /// # Errors
    /// The read failed.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let now = Head::read_len(file, self.len as usize)?;
        Ok(now == *self)
    }
}
