//! Reading whole batch frames from a segment file in order, with large
//! sequential reads: what recovery, queries and consumers share.
//!
//! The scanner reads through a shared `File` with positioned reads, so any
//! number of scanners run beside the writer, and it never reads past the
//! `end` it was given (the durable length), so readers see only whole,
//! acknowledged batches.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use logpost_shared::batch::{BatchError, frame_len};

/// Read size: large enough that syscalls are rare at disk speed, small
/// enough that thousands of concurrent scanners stay cheap.
const READ_CHUNK: usize = 1 << 20;

/// Why scanning stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("i/o error at byte {pos}")]
    Io {
        pos: u64,
        #[source]
        source: io::Error,
    },
    #[error("bad batch at byte {pos}")]
    Batch {
        pos: u64,
        #[source]
        source: BatchError,
    },
    #[error("batch at byte {pos} runs past the end ({end})")]
    Torn { pos: u64, end: u64 },
}

impl ScanError {
    /// Byte position in the file where the problem starts.
    pub fn pos(&self) -> u64 {
        match self {
            ScanError::Io { pos, .. } | ScanError::Batch { pos, .. } | ScanError::Torn { pos, .. } => *pos,
        }
    }
}

/// Yields the frames of one segment between two byte positions.
#[derive(Debug)]
pub struct SegmentScanner {
    file: Arc<File>,
    /// File position of `buf[0]`.
    buf_pos: u64,
    /// Read bytes, `..filled` of it; past that, stale bytes kept so that
    /// the next read does not zero the buffer again (1% of a scan).
    buf: Vec<u8>,
    filled: usize,
    /// Bytes of `buf` already handed out.
    consumed: usize,
    /// Where in `buf` the frame handed out last is, and its length.
    last: Option<(usize, usize)>,
    end: u64,
    max_batch_bytes: usize,
}

impl SegmentScanner {
    /// Scans `file` from byte `start` up to byte `end`.
    pub fn new(file: Arc<File>, start: u64, end: u64, max_batch_bytes: usize) -> Self {
        Self {
            file,
            buf_pos: start,
            buf: Vec::new(),
            filled: 0,
            consumed: 0,
            last: None,
            end,
            max_batch_bytes,
        }
    }

    /// File position of the next frame.
    pub fn pos(&self) -> u64 {
        self.buf_pos + self.consumed as u64
    }

    /// The next whole frame and its file position; `Ok(None)` at `end`.
    ///
    /// # Errors
    /// An i/o error, a frame whose length is invalid, or a frame cut off by `end`.
    pub fn next_frame(&mut self) -> Result<Option<(u64, &[u8])>, ScanError> {
        let pos = self.pos();
        if pos >= self.end {
            return Ok(None);
        }
        loop {
            let avail = self.buf.get(self.consumed..self.filled).unwrap_or_default();
            match frame_len(avail, self.max_batch_bytes) {
                Ok(Some(len)) => {
                    let start = self.consumed;
                    self.consumed += len;
                    self.last = Some((start, len));
                    let frame = self.buf.get(start..start + len).unwrap_or_default();
                    return Ok(Some((pos, frame)));
                }
                Ok(None) => {
                    // The length is known (and valid) once 12 bytes are here.
                    let frame_total = avail
                        .get(8..12)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map_or(0, |b| 12 + i32::from_be_bytes(b).max(0) as usize);
                    let missing = frame_total.saturating_sub(avail.len());
                    if !self.fill(pos, missing)? {
                        return Err(ScanError::Torn { pos, end: self.end });
                    }
                }
                Err(source) => return Err(ScanError::Batch { pos, source }),
            }
        }
    }

    /// The frame [`next_frame`](Self::next_frame) returned last, and its
    /// file position, again: for a caller that had to let go of it.
    pub fn last_frame(&self) -> Option<(u64, &[u8])> {
        let (start, len) = self.last?;
        Some((self.buf_pos + start as u64, self.buf.get(start..start + len)?))
    }

    /// Moves the unread tail to the front and reads more; false at `end`.
    fn fill(&mut self, pos: u64, missing: usize) -> Result<bool, ScanError> {
        self.last = None;
        self.buf.copy_within(self.consumed..self.filled, 0);
        self.filled -= self.consumed;
        self.buf_pos += self.consumed as u64;
        self.consumed = 0;
        let read_from = self.buf_pos + self.filled as u64;
        if read_from >= self.end {
            return Ok(false);
        }
        // Read at least one chunk, or the rest of a large frame.
        let want = (self.end - read_from).min(READ_CHUNK.max(missing) as u64) as usize;
        let old = self.filled;
        if self.buf.len() < old + want {
            self.buf.resize(old + want, 0);
        }
        let mut filled = 0;
        while filled < want {
            let dst = self.buf.get_mut(old + filled..old + want).unwrap_or_default();
            match self.file.read_at(dst, read_from + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ScanError::Io { pos, source });
                }
            }
        }
        self.filled = old + filled;
        Ok(filled > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use logpost_shared::batch::BatchBuilder;
    use logpost_shared::compression::Compression;

    use super::*;

    /// Frames of 1 KiB to 2.5 MiB: refills move partial frames to the front
    /// and read past `READ_CHUNK` for the large ones.
    fn frames() -> Vec<Vec<u8>> {
        [1_000usize, 700_000, 2_500_000, 3, 900_000, 1_100_000, 50]
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut b = BatchBuilder::new();
                b.append(i as i64, None, Some(&vec![b'a' + i as u8; len]), &[]);
                b.finish(Compression::None).unwrap()
            })
            .collect()
    }

    #[test]
    fn every_frame_comes_back_whole_in_order_then_a_cut_one_is_torn() {
        let frames = frames();
        let mut file = tempfile::tempfile().unwrap();
        for f in &frames {
            file.write_all(f).unwrap();
        }
        let total: u64 = frames.iter().map(|f| f.len() as u64).sum();
        let file = Arc::new(file);

        let mut scanner = SegmentScanner::new(Arc::clone(&file), 0, total, 1 << 24);
        let mut pos = 0u64;
        for (i, want) in frames.iter().enumerate() {
            let (at, got) = scanner.next_frame().unwrap().unwrap();
            assert_eq!((at, got), (pos, want.as_slice()), "frame {i}");
            pos += want.len() as u64;
        }
        assert!(scanner.next_frame().unwrap().is_none());

        // An end inside the last frame but one: that frame is torn.
        let cut = total - frames[6].len() as u64 - 10;
        let mut scanner = SegmentScanner::new(file, 0, cut, 1 << 24);
        for _ in 0..5 {
            scanner.next_frame().unwrap().unwrap();
        }
        let err = scanner.next_frame().unwrap_err();
        assert!(matches!(err, ScanError::Torn { end, .. } if end == cut), "{err:?}");
    }
}
