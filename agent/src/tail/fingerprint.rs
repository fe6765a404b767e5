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
/// Bytes just before a read position that must still be there when
/// reading resumes (see [`Tail`]).
pub const TAIL_BYTES: usize = 64;

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

/// A checksum of the bytes just before a read position. With the head, it
/// tells whether the content read so far is still there when reading
/// resumes: a file truncated and rewritten past that position with the
/// same first bytes (a shared header) fails here, where the head alone
/// would let the agent read on from the middle of a new line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Tail {
    pub len: u32,
    pub crc: u32,
}

impl Tail {
    /// Nothing known (a position just set from elsewhere): matches anything.
    pub const NONE: Tail = Tail { len: 0, crc: 0 };

    /// The tail of `bytes`, the last bytes read before a position.
    pub fn of(bytes: &[u8]) -> Tail {
        let start = bytes.len().saturating_sub(TAIL_BYTES);
        let last = bytes.get(start..).unwrap_or_default();
        Tail {
            len: last.len() as u32,
            crc: crc32c::crc32c(last),
        }
    }

    /// Whether `file` still has these bytes just before `pos`.
    ///
    /// # Errors
    /// The read failed.
    pub fn matches(&self, file: &File, pos: u64) -> io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        let Some(start) = pos.checked_sub(u64::from(self.len)) else {
            return Ok(false);
        };
        let mut buf = [0u8; TAIL_BYTES];
        let want = buf.get_mut(..self.len as usize).unwrap_or_default();
        let mut filled = 0;
        while filled < want.len() {
            let dst = want.get_mut(filled..).unwrap_or_default();
            match file.read_at(dst, start + filled as u64) {
                Ok(0) => return Ok(false),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(crc32c::crc32c(want) == self.crc)
    }
}

/// When a file was created, where the file system records it (statx).
pub fn born(meta: &Metadata) -> Option<std::time::SystemTime> {
    meta.created().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn head_and_tail_tell_a_rewritten_file_from_a_grown_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, b"header\nfirst line\n").unwrap();
        let file = File::open(&path).unwrap();
        let head = Head::read(&file).unwrap();
        let tail = Tail::of(b"header\nfirst line\n");
        assert!(head.matches(&file).unwrap() && tail.matches(&file, 18).unwrap());
        // Grown: both still hold.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more\n")
            .unwrap();
        assert!(head.matches(&file).unwrap() && tail.matches(&file, 18).unwrap());
        // Rewritten with the same header, past the old position: the head
        // cannot tell, the tail does.
        std::fs::write(&path, b"header\nanother line entirely\n").unwrap();
        assert!(
            !head.matches(&file).unwrap(),
            "the head covers the whole old content here"
        );
        let short_head = Head {
            len: 7,
            crc: crc32c::crc32c(b"header\n"),
        };
        assert!(short_head.matches(&file).unwrap());
        assert!(!tail.matches(&file, 18).unwrap());
        // Shorter than the position: fails.
        std::fs::write(&path, b"h").unwrap();
        assert!(!tail.matches(&file, 18).unwrap());
        assert!(Tail::NONE.matches(&file, 18).unwrap());
    }
}
