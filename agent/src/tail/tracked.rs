//! One tailed file's read state: its open handle, where reading has got
//! to, what has been acknowledged, and its stream identity.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use logpost_shared::batch::HeaderSet;

use super::checkpoint::{Continues, Entry};
use super::fingerprint::{FileKey, HEAD_BYTES, Head, Tail};
use super::framing::{LineFramer, LongLines};
use crate::pipeline::multiline::Multiline;
use crate::ship::acks::Acked;
use crate::ship::batcher::Slot;

/// A file being tailed.
#[derive(Debug)]
pub struct TrackedFile {
    pub key: FileKey,
    pub source: usize,
    pub path: PathBuf,
    /// Open handle; `None` while the file is idle and closed (reopened on change).
    pub file: Option<File>,
    pub framer: LineFramer,
    /// Fingerprint of the current content's first bytes.
    pub head: Head,
    /// The `path` header, encoded once.
    pub path_headers: HeaderSet,
    pub producer_id: i64,
    /// Sequence number the next record gets.
    pub next_seq: i64,
    /// Bumped when the file is truncated (copytruncate).
    pub generation: u32,
    /// Sequence number of the first record of the current generation.
    pub generation_start_seq: i64,
    /// What the collector has acknowledged.
    pub committed: Acked,
    pub last_growth: Instant,
    /// No longer matched by its glob: rotated away or deleted. Read to its
    /// end, then closed once everything read was acknowledged.
    pub gone: bool,
    pub at_eof: bool,
    /// Where this stream's batch is in the batcher, between reads.
    pub slot: Slot,
    /// The collector has said where this file resumes (`sync.rs`); until
    /// then it is not read.
    pub synced: bool,
    /// The event being assembled (sources with multiline only).
    pub multiline: Multiline,
    /// The record key, rendered once from the source's key template.
    pub record_key: Option<Vec<u8>>,
    /// File position after the last event turned into a record.
    pub last_record_end: u64,
    /// For the copy of truncated content: the stream it continues.
    pub continues: Option<Continues>,
    /// For a copy adopted at a live truncation: the original and where its
    /// old content's records end (generation, position). The copy is not
    /// read before the collector has acknowledged them, so that the copy's
    /// stream never holds lines past a gap the original left at a crash.
    pub after_original: Option<(FileKey, u32, u64)>,
    /// A new file that may be a copy in the making is not read before
    /// this (see `copy_check_passed`).
    pub copy_check_until: Option<Instant>,
    /// The bytes just before `framer.next_pos()`, as last read.
    pub tail: Tail,
    /// When the content was last found unchanged (head and tail).
    pub verified_at: Option<Instant>,
    /// Tracked in this run as a new stream from its start, and not read
    /// yet: it may still turn out to be a copy of content known elsewhere
    /// (a checkpoint entry, a collector's cursor) and start further on.
    pub pristine: bool,
    /// When the current content began: the file's birth for its first
    /// content, the truncation for later ones. A copy of this content
    /// cannot be older (used to tell copies of short contents).
    pub content_born: Option<SystemTime>,
    /// For a gzip file: the inflated copy being read (removed with it).
    pub inflated: Option<super::compressed::Inflated>,
    /// Gone from its directory while closed: it cannot be opened again.
    pub vanished: bool,
}

/// How long a content check holds: reads closer together than this (one
/// pass over a busy file) are not checked again.
const VERIFY_EVERY: Duration = Duration::from_millis(20);

/// Where a newly tracked file starts.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub pos: u64,
    pub producer_id: i64,
    pub next_seq: i64,
    pub generation: u32,
    /// When the content began, if known (`TrackedFile::content_born`).
    pub born: Option<SystemTime>,
    /// The bytes before `pos`, if known (from a checkpoint).
    pub tail: Tail,
    /// For a copy of truncated content, from its checkpoint: the stream
    /// it continues.
    pub continues: Option<Continues>,
}

impl TrackedFile {
    /// Starts tracking an open file.
    ///
    /// # Errors
    /// The head of the file cannot be read.
    pub fn new(
        key: FileKey,
        source: usize,
        path: PathBuf,
        file: File,
        start: Start,
        framing: (usize, LongLines),
        now: Instant,
    ) -> io::Result<TrackedFile> {
        let head = Head::read(&file)?;
        Ok(TrackedFile {
            key,
            source,
            path_headers: path_headers(&path),
            path,
            file: Some(file),
            framer: LineFramer::with_mode(framing.0, framing.1, start.pos),
            head,
            producer_id: start.producer_id,
            next_seq: start.next_seq,
            generation: start.generation,
            generation_start_seq: start.next_seq,
            committed: Acked {
                pos: start.pos,
                next_seq: start.next_seq,
                generation: start.generation,
            },
            last_growth: now,
            gone: false,
            at_eof: false,
            slot: Slot::default(),
            synced: false,
            multiline: Multiline::new(),
            record_key: None,
            last_record_end: start.pos,
            continues: start.continues,
            after_original: None,
            copy_check_until: None,
            tail: start.tail,
            verified_at: None,
            pristine: false,
            content_born: start.born,
            inflated: None,
            vanished: false,
        })
    }

    /// Moves reading to `pos` (set from elsewhere: a cursor, a copy's
    /// start), as if everything before it had been read and acknowledged.
    pub fn start_at(&mut self, pos: u64) {
        self.framer.reset(pos);
        self.committed.pos = pos;
        self.last_record_end = pos;
        self.tail = Tail::NONE;
        self.pristine = false;
    }

    /// Whether the content should be checked before the bytes just read
    /// are used.
    pub fn needs_verify(&self, now: Instant) -> bool {
        self.verified_at.is_none_or(|at| now.duration_since(at) >= VERIFY_EVERY)
    }

    /// Whether the file still holds the content read so far: the same
    /// first bytes and the same bytes just before the read position. A
    /// file truncated and rewritten past that position fails, so reading
    /// never goes on in the middle of another content.
    ///
    /// # Errors
    /// A read failed.
    pub fn content_unchanged(&self) -> io::Result<bool> {
        let Some(file) = &self.file else { return Ok(true) };
        Ok(self.head.matches(file)? && self.tail.matches(file, self.framer.next_pos())?)
    }

    /// Reads the next bytes after what was read so far into `buf`.
    ///
    /// # Errors
    /// The read failed.
    pub fn read_chunk(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(file) = &self.file else { return Ok(0) };
        loop {
            match file.read_at(buf, self.framer.next_pos()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// Current size of the open file.
    ///
    /// # Errors
    /// fstat failed.
    pub fn size(&self) -> io::Result<u64> {
        match &self.file {
            Some(f) => Ok(f.metadata()?.len()),
            None => Ok(std::fs::metadata(&self.path)?.len()),
        }
    }

    /// Updates path and `path` header after a rename within the glob.
    pub fn renamed(&mut self, path: PathBuf) {
        self.path_headers = path_headers(&path);
        self.path = path;
    }

    /// Starts a new generation after the file was truncated: reading
    /// restarts at 0 and sequence numbers continue.
    ///
    /// # Errors
    /// The new head cannot be read.
    pub fn truncated(&mut self) -> io::Result<()> {
        self.generation += 1;
        self.generation_start_seq = self.next_seq;
        self.framer.reset(0);
        self.tail = Tail::NONE;
        self.verified_at = None;
        self.content_born = Some(SystemTime::now());
        if let Some(f) = &self.file {
            self.head = Head::read(f)?;
        }
        self.at_eof = false;
        Ok(())
    }

    /// Lengthens the head fingerprint of a file that has grown past it, so
    /// that the cursors its batches carry identify the content well.
    /// `read_end` is where the bytes just read end: the head must cover
    /// them (up to `HEAD_BYTES`) before they are sent, or a cursor could
    /// carry a head too short to tell this content from the next one.
    pub fn refresh_head(&mut self, read_end: u64) {
        if (self.head.len as usize) < HEAD_BYTES
            && read_end > u64::from(self.head.len)
            && let Some(Ok(h)) = self.file.as_ref().map(Head::read)
        {
            self.head = h;
        }
    }

    /// Applies an acknowledgement.
    pub fn acknowledge(&mut self, acked: Acked) {
        if (acked.generation, acked.pos) > (self.committed.generation, self.committed.pos) {
            self.committed = acked;
        }
    }

    /// Everything emitted so far has been acknowledged.
    pub fn fully_acked(&self) -> bool {
        self.committed.generation == self.generation
            && self.committed.pos >= self.last_record_end
            && self.multiline.pending_bytes() == 0
            && self.framer.partial_len() == 0
    }

    /// The checkpoint entry for what has been acknowledged.
    pub fn entry(&mut self, source_name: &str) -> Entry {
        // The head lengthens as a short file grows, up to HEAD_BYTES.
        if (self.head.len as usize) < HEAD_BYTES
            && self.framer.next_pos() > u64::from(self.head.len)
            && let Some(Ok(h)) = self.file.as_ref().map(Head::read)
        {
            self.head = h;
        }
        // A file never read (held back as a possible copy, or waiting for
        // the collector to say where it resumes) keeps the head it had
        // when found, often empty. The checkpoint gets its head as it is
        // now: after a crash it is by this head that the content is found
        // again wherever rotation moved it (renamed, compressed).
        let head = if self.framer.next_pos() == 0 && (self.head.len as usize) < HEAD_BYTES {
            self.file.as_ref().and_then(|f| Head::read(f).ok()).unwrap_or(self.head)
        } else {
            self.head
        };
        let (pos, next_seq) = if self.committed.generation == self.generation {
            // Events dropped by filters yield no record, so no acknowledgement:
            // once every record sent is acknowledged, the checkpoint may pass them.
            let pos = if self.fully_acked() {
                self.committed.pos.max(self.framer.emitted_pos())
            } else {
                self.committed.pos
            };
            (pos, self.committed.next_seq)
        } else {
            // Nothing of the current content acknowledged yet: restart it
            // from 0 with the numbers it was given (the old content is gone).
            (0, self.generation_start_seq)
        };
        Entry {
            key: self.key,
            source: source_name.to_owned(),
            head,
            path: self.path.clone(),
            pos,
            producer_id: self.producer_id,
            next_seq,
            generation: self.generation,
            continues: self.continues,
            tail: if pos == self.framer.next_pos() {
                self.tail
            } else {
                Tail::NONE
            },
            held: self.copy_check_until.is_some(),
            born_ms: self.content_born.and_then(|t| {
                let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
                u64::try_from(d.as_millis()).ok()
            }),
        }
    }
}

fn path_headers(path: &std::path::Path) -> HeaderSet {
    let mut h = HeaderSet::new();
    h.push("path", Some(path.as_os_str().as_encoded_bytes()));
    h
}
