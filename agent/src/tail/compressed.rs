//! Rotated files that were compressed before the agent read them to their
//! end: logrotate's `compress` without `delaycompress` gzips a rotated file
//! at once (and a copytruncate copy too), so lines the agent had not read
//! when it was down, or slower than logrotate, exist only in a `.gz`.
//!
//! Such a file is never tailed as it is (its bytes are not lines). Where
//! the agent looks for the rest of a content it knows (a copy of truncated
//! content, a checkpointed file gone from its directory) or for files
//! rotated away while it was not running, a gzip file is identified by
//! the head of what it inflates to, and, when it holds lines to read, is
//! inflated into a temporary file under `<data_dir>/inflated/` that is
//! read like any other file and removed once it is finished. Memory stays
//! bounded: inflating streams, whatever the size.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::fingerprint::{FileKey, HEAD_BYTES, Head};

/// Directory of inflated copies, under the data directory.
pub const INFLATED_DIR: &str = "inflated";

/// Whether `path` names a gzip file and starts like one.
pub fn is_gzip(path: &Path) -> bool {
    if path.extension().is_none_or(|x| x != "gz") {
        return false;
    }
    let mut magic = [0u8; 2];
    File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == [0x1f, 0x8b]
}

/// The head of what `path` inflates to, at most `len` bytes (`HEAD_BYTES`
/// at most): what a content's head is compared with.
///
/// # Errors
/// The file cannot be read or is not valid gzip.
pub fn inflated_head(path: &Path, len: usize) -> io::Result<Head> {
    let mut decoder = MultiGzDecoder::new(File::open(path)?);
    let mut buf = vec![0u8; len.min(HEAD_BYTES)];
    let mut filled = 0;
    while filled < buf.len() {
        let dst = buf.get_mut(filled..).unwrap_or_default();
        match decoder.read(dst) {
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

/// A temporary inflated copy, removed when dropped.
#[derive(Debug)]
pub struct Inflated {
    pub path: PathBuf,
}

impl Drop for Inflated {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Inflates `gz` (whose key is `key`) into a temporary file under
/// `data_dir`; returns a handle to read it and the guard that removes it.
///
/// # Errors
/// The file cannot be read, is not whole gzip (still being written), or
/// the copy cannot be written.
pub fn inflate(gz: &Path, key: FileKey, data_dir: &Path) -> io::Result<(File, Inflated)> {
    inflate_open(File::open(gz)?, key, data_dir)
}

/// [`inflate`] of a gzip file already open: what was checked through this
/// handle is what is inflated, even if logrotate renamed another file to
/// its name meanwhile.
///
/// # Errors
/// Reading, inflating (a truncated or corrupt stream) or writing failed.
pub fn inflate_open(gz: File, key: FileKey, data_dir: &Path) -> io::Result<(File, Inflated)> {
    let dir = data_dir.join(INFLATED_DIR);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}-{}", key.dev, key.ino));
    let guard = Inflated { path: path.clone() };
    let mut out = File::create(&path)?;
    let mut decoder = MultiGzDecoder::new(io::BufReader::with_capacity(256 << 10, gz));
    io::copy(&mut decoder, &mut out)?;
    drop(out);
    Ok((File::open(&path)?, guard))
}

/// Removes inflated copies a crash left behind (they are made again when
/// needed).
pub fn clear_leftovers(data_dir: &Path) {
    let _ = std::fs::remove_dir_all(data_dir.join(INFLATED_DIR));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(path: &Path, data: &[u8]) {
        let mut enc = flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap();
    }

    #[test]
    fn a_gzip_file_is_known_by_what_it_inflates_to() {
        let tmp = tempfile::tempdir().unwrap();
        let gz = tmp.path().join("app.log.1.gz");
        let text = b"first line\nsecond line\n".repeat(100);
        gzip(&gz, &text);
        assert!(is_gzip(&gz));
        let plain = tmp.path().join("app.log");
        std::fs::write(&plain, &text).unwrap();
        assert!(!is_gzip(&plain));
        let want = Head::read(&File::open(&plain).unwrap()).unwrap();
        assert_eq!(inflated_head(&gz, HEAD_BYTES).unwrap(), want);

        let data = tmp.path().join("data");
        let key = FileKey { dev: 1, ino: 2 };
        let (mut file, guard) = inflate(&gz, key, &data).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, text);
        let copy = guard.path.clone();
        assert!(copy.exists());
        drop(guard);
        assert!(!copy.exists(), "the inflated copy is removed with its guard");
    }

    #[test]
    fn a_gzip_file_still_being_written_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let gz = tmp.path().join("x.gz");
        gzip(&gz, &b"line\n".repeat(10_000));
        let bytes = std::fs::read(&gz).unwrap();
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
        let data = tmp.path().join("data");
        assert!(inflate(&gz, FileKey { dev: 1, ino: 3 }, &data).is_err());
    }
}
