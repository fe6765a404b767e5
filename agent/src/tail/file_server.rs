//! The loop that ties tailing together, on its own thread: discover files,
//! read them, frame lines, hand records to the batcher, hand sealed
//! requests to the shipper, and write checkpoints from acknowledgements.
//!
//! Backpressure: the queue to the shipper is bounded; when it is full this
//! thread stops reading and waits, so a slow or absent collector leaves the
//! data in the files rather than in memory.
//!
//! Shutdown is two-phase: `stop` ends reading and seals what is pending;
//! the caller then waits for the shipper to drain and calls
//! [`FileServer::final_checkpoint`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use logpost_shared::batch::HeaderSet;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpointer, Entry};
use super::discover::discover;
use super::fingerprint::FileKey;
use super::framing::Line;
use super::tracked::{Start, TrackedFile};
use crate::config::{AgentConfig, StartAt};
use crate::ship::acks::AckBoard;
use crate::ship::batcher::{Batcher, Limits, ShipRequest, StreamPos};

/// Bytes read per read call: large enough for few syscalls on a busy file,
/// small enough that one shared buffer serves every file.
const READ_CHUNK: usize = 256 << 10;
/// Reads per file per pass, so that one busy file cannot starve the rest.
const READS_PER_PASS: usize = 8;
/// How long to wait between attempts to hand a full queue a request.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// The tailing loop's state.
pub struct FileServer {
    cfg: Arc<AgentConfig>,
    source_headers: Vec<HeaderSet>,
    split_header: HeaderSet,
    files: BTreeMap<FileKey, TrackedFile>,
    /// Checkpoint entries not (yet) matched to an open file.
    dormant: HashMap<FileKey, Entry>,
    batcher: Batcher,
    tx: Option<mpsc::Sender<ShipRequest>>,
    acks: Arc<AckBoard>,
    checkpointer: Checkpointer,
    last_saved: Vec<Entry>,
    agent_id: u64,
    first_start: bool,
    read_buf: Vec<u8>,
    warned: HashSet<(PathBuf, String)>,
    next_checkpoint: Instant,
}

impl FileServer {
    /// Loads checkpoints and prepares to tail `cfg`'s sources.
    pub fn new(cfg: Arc<AgentConfig>, agent_id: u64, tx: mpsc::Sender<ShipRequest>, acks: Arc<AckBoard>) -> FileServer {
        let checkpointer = Checkpointer::new(&cfg.data_dir);
        let loaded = checkpointer.load();
        for w in &loaded.warnings {
            tracing::warn!(problem = %w, "checkpoint problem");
        }
        let source_headers = cfg
            .sources
            .iter()
            .map(|s| {
                let mut h = HeaderSet::new();
                h.push("source", Some(s.name.as_bytes()));
                h.push("host", Some(cfg.host.as_bytes()));
                for (k, v) in &s.labels {
                    h.push(k, Some(v.as_bytes()));
                }
                h
            })
            .collect();
        let mut split_header = HeaderSet::new();
        split_header.push("logpost.split", Some(b"true"));
        let limits = Limits {
            max_bytes: cfg.batch.max_bytes,
            max_records: cfg.batch.max_records,
            max_wait: cfg.batch.max_wait,
        };
        FileServer {
            source_headers,
            split_header,
            files: BTreeMap::new(),
            dormant: loaded.entries.iter().map(|e| (e.key, e.clone())).collect(),
            last_saved: loaded.entries,
            batcher: Batcher::new(limits),
            tx: Some(tx),
            acks,
            checkpointer,
            agent_id,
            first_start: loaded.first_start,
            read_buf: vec![0; READ_CHUNK],
            warned: HashSet::new(),
            next_checkpoint: Instant::now() + cfg.tail.checkpoint_interval,
            cfg,
        }
    }

    /// Tails until `stop` is cancelled, then seals and hands over what is
    /// pending. Returns itself for the final checkpoint.
    pub fn run(mut self, stop: &CancellationToken) -> FileServer {
        let mut next_scan = Instant::now();
        let mut initial = true;
        while !stop.is_cancelled() {
            let now = Instant::now();
            if now >= next_scan {
                self.scan(now, initial);
                if initial {
                    self.recover_dormant(now);
                    initial = false;
                }
                next_scan = now + self.cfg.tail.glob_interval;
            }
            let read = self.read_pass(now);
            self.flush_idle_partials(now);
            for req in self.batcher.due(now) {
                self.send(req);
            }
            self.close_finished(now);
            self.maybe_checkpoint(now);
            if read == 0 {
                let mut wake = now + self.cfg.tail.poll_interval;
                if let Some(due) = self.batcher.next_due() {
                    wake = wake.min(due);
                }
                let pause = wake
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                // Wake early on stop; otherwise a plain sleep.
                let deadline = Instant::now() + pause;
                while !stop.is_cancelled() && Instant::now() < deadline {
                    std::thread::sleep(pause.min(Duration::from_millis(50)));
                }
            }
        }
        tracing::info!(files = self.files.len(), "stopped reading; sealing pending batches");
        for req in self.batcher.drain_all() {
            self.send(req);
        }
        self.tx = None; // closes the queue: the shipper drains and ends
        self
    }

    /// Applies the last acknowledgements and writes the checkpoint.
    pub fn final_checkpoint(&mut self) {
        self.checkpoint();
    }

    fn scan(&mut self, now: Instant, initial: bool) {
        let (found, skipped) = discover(&self.cfg.sources);
        for s in skipped {
            if self.warned.insert((s.path.clone(), s.reason.clone())) {
                tracing::warn!(path = %s.path.display(), reason = %s.reason, "cannot tail matched path; skipping it");
            }
        }
        let mut seen = HashSet::with_capacity(found.len());
        for f in found {
            let key = FileKey::of(&f.meta);
            if !seen.insert(key) {
                continue; // the same file through another path (a symlink)
            }
            if let Some(t) = self.files.get_mut(&key) {
                t.gone = false;
                if t.path != f.path {
                    tracing::info!(from = %t.path.display(), to = %f.path.display(), "file renamed");
                    t.renamed(f.path);
                }
                continue;
            }
            let file = match File::open(&f.path) {
                Ok(file) => file,
                Err(e) => {
                    if self.warned.insert((f.path.clone(), e.to_string())) {
                        tracing::warn!(path = %f.path.display(), error = %e, "cannot open file; will retry");
                    }
                    continue;
                }
            };
            // Identify by the handle: the path may have been replaced since the stat.
            let Ok(meta) = file.metadata() else { continue };
            let key = FileKey::of(&meta);
            if self.files.contains_key(&key) {
                continue;
            }
            seen.insert(key);
            let start = self.start_for(key, f.source, &file, meta.len(), initial);
            match TrackedFile::new(
                key,
                f.source,
                f.path.clone(),
                file,
                start,
                self.cfg.tail.max_line_bytes,
                now,
            ) {
                Ok(t) => {
                    tracing::debug!(path = %f.path.display(), pos = start.pos, "tailing file");
                    self.files.insert(key, t);
                }
                Err(e) => tracing::warn!(path = %f.path.display(), error = %e, "cannot read file head; will retry"),
            }
        }
        for (key, t) in &mut self.files {
            if !seen.contains(key) && !t.gone {
                tracing::debug!(path = %t.path.display(), "file no longer matched (rotated or deleted); reading it to its end");
                t.gone = true;
            }
        }
    }

    /// Where a newly found file starts: its checkpoint if the content is the
    /// same file, else the beginning (or the end, at the very first start
    /// for `start_at = "end"` sources).
    fn start_for(&mut self, key: FileKey, source: usize, file: &File, size: u64, initial: bool) -> Start {
        if let Some(entry) = self.dormant.remove(&key) {
            match entry.head.matches(file) {
                Ok(true) if entry.pos <= size => {
                    return Start {
                        pos: entry.pos,
                        producer_id: entry.producer_id,
                        next_seq: entry.next_seq,
                        generation: entry.generation,
                    };
                }
                Ok(true) => tracing::warn!(path = %entry.path.display(), checkpoint = entry.pos, size,
                    "file is shorter than its checkpoint (truncated while the agent was down); reading it from the start"),
                _ => tracing::warn!(path = %entry.path.display(),
                    "inode reused by a different file; reading the new file from the start"),
            }
        }
        let at_end =
            initial && self.first_start && self.cfg.sources.get(source).is_some_and(|s| s.start_at == StartAt::End);
        Start {
            pos: if at_end { size } else { 0 },
            producer_id: self.new_producer_id(key),
            next_seq: 0,
            generation: 0,
        }
    }

    /// Files in the checkpoint that no glob matches any more: rotation
    /// renamed them away while the agent was down. Look for each in its
    /// old directory by device and inode; if its head still matches, read it
    /// to its end. Costs one directory listing per directory, however many
    /// entries there are.
    fn recover_dormant(&mut self, now: Instant) {
        let dormant: Vec<Entry> = self.dormant.drain().map(|(_, e)| e).collect();
        let mut listings: HashMap<PathBuf, HashMap<FileKey, PathBuf>> = HashMap::new();
        for entry in dormant {
            let Some(source) = self.cfg.sources.iter().position(|s| s.name == entry.source) else {
                continue;
            };
            let Some(dir) = entry.path.parent() else { continue };
            let listing = listings.entry(dir.to_owned()).or_insert_with(|| list_dir(dir));
            let Some(path) = listing.get(&entry.key).cloned() else {
                continue;
            };
            let Ok(file) = File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            if FileKey::of(&meta) != entry.key || !entry.head.matches(&file).unwrap_or(false) || meta.len() <= entry.pos
            {
                continue;
            }
            let start = Start {
                pos: entry.pos,
                producer_id: entry.producer_id,
                next_seq: entry.next_seq,
                generation: entry.generation,
            };
            if let Ok(mut t) = TrackedFile::new(
                entry.key,
                source,
                path.clone(),
                file,
                start,
                self.cfg.tail.max_line_bytes,
                now,
            ) {
                tracing::info!(path = %path.display(), pos = entry.pos, "found unfinished rotated file; reading it to its end");
                t.gone = true;
                self.files.insert(entry.key, t);
            }
        }
    }

    /// One pass over every file; returns the bytes read.
    fn read_pass(&mut self, now: Instant) -> usize {
        let mut total = 0;
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        let now_ms = unix_ms();
        let mut sealed = Vec::new();
        for key in keys {
            for _ in 0..READS_PER_PASS {
                let Some(f) = self.files.get_mut(&key) else { break };
                let n = match f.read_chunk(&mut self.read_buf) {
                    Ok(n) => n,
                    Err(e) => {
                        if self.warned.insert((f.path.clone(), e.to_string())) {
                            tracing::warn!(path = %f.path.display(), error = %e, "read failed; will retry");
                        }
                        break;
                    }
                };
                if n == 0 {
                    f.at_eof = true;
                    self.check_truncation(key, now, &mut sealed);
                    break;
                }
                f.at_eof = false;
                f.last_growth = now;
                total += n;
                let data = self.read_buf.get(..n).unwrap_or_default();
                let Some(source) = self.cfg.sources.get(f.source) else {
                    break;
                };
                let headers = self.source_headers.get(f.source);
                emit_lines(
                    f,
                    &mut self.batcher,
                    &source.topic,
                    headers,
                    &self.split_header,
                    now_ms,
                    now,
                    &mut sealed,
                    |framer, mut emit| {
                        framer.feed(data, &mut emit);
                    },
                );
                let short = n < self.read_buf.len();
                for req in sealed.drain(..) {
                    self.send(req);
                }
                if short {
                    break;
                }
            }
        }
        total
    }

    /// A file shorter than what was read has been truncated in place
    /// (copytruncate): finish the old content's last line, start again at 0.
    fn check_truncation(&mut self, key: FileKey, now: Instant, sealed: &mut Vec<ShipRequest>) {
        let Some(f) = self.files.get_mut(&key) else { return };
        let Ok(size) = f.size() else { return };
        if size >= f.framer.next_pos() {
            return;
        }
        tracing::info!(path = %f.path.display(), was = f.framer.next_pos(), now = size, "file truncated; reading it again from the start");
        let Some(source) = self.cfg.sources.get(f.source) else {
            return;
        };
        let headers = self.source_headers.get(f.source);
        emit_lines(
            f,
            &mut self.batcher,
            &source.topic,
            headers,
            &self.split_header,
            unix_ms(),
            now,
            sealed,
            |framer, mut emit| {
                framer.flush(&mut emit);
            },
        );
        if let Err(e) = f.truncated() {
            tracing::warn!(path = %f.path.display(), error = %e, "cannot read head after truncation");
        }
        for req in std::mem::take(sealed) {
            self.send(req);
        }
    }

    fn flush_idle_partials(&mut self, now: Instant) {
        let timeout = self.cfg.tail.partial_line_timeout;
        let mut sealed = Vec::new();
        let now_ms = unix_ms();
        for f in self.files.values_mut() {
            if f.framer.partial_len() == 0 || !f.at_eof || now.duration_since(f.last_growth) < timeout {
                continue;
            }
            let Some(source) = self.cfg.sources.get(f.source) else {
                continue;
            };
            let headers = self.source_headers.get(f.source);
            emit_lines(
                f,
                &mut self.batcher,
                &source.topic,
                headers,
                &self.split_header,
                now_ms,
                now,
                &mut sealed,
                |framer, mut emit| {
                    framer.flush(&mut emit);
                },
            );
        }
        for req in sealed {
            self.send(req);
        }
    }

    /// Closes rotated or deleted files that were read to the end, have been
    /// idle for `rotated_file_idle`, and whose lines were all acknowledged.
    fn close_finished(&mut self, now: Instant) {
        let idle = self.cfg.tail.rotated_file_idle;
        let done: Vec<FileKey> = self
            .files
            .values()
            .filter(|f| {
                f.gone
                    && f.at_eof
                    && f.framer.partial_len() == 0
                    && now.duration_since(f.last_growth) >= idle
                    && f.fully_acked()
            })
            .map(|f| f.key)
            .collect();
        for key in done {
            if let Some(f) = self.files.remove(&key) {
                tracing::debug!(path = %f.path.display(), "closed finished file");
            }
        }
    }

    fn maybe_checkpoint(&mut self, now: Instant) {
        if now >= self.next_checkpoint {
            self.checkpoint();
            self.next_checkpoint = now + self.cfg.tail.checkpoint_interval;
        }
    }

    fn checkpoint(&mut self) {
        for (key, acked) in self.acks.take() {
            if let Some(f) = self.files.get_mut(&key) {
                f.acknowledge(acked);
            }
        }
        let sources = &self.cfg.sources;
        let mut entries: Vec<Entry> = self
            .files
            .values_mut()
            .map(|f| {
                let name = sources.get(f.source).map_or("", |s| s.name.as_str());
                f.entry(name)
            })
            .collect();
        entries.sort_by_key(|e| e.key);
        if entries == self.last_saved {
            return;
        }
        match self.checkpointer.save(&entries) {
            Ok(()) => self.last_saved = entries,
            Err(e) => {
                tracing::warn!(error = %e, cause = %std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default(),
                "cannot write checkpoint; will retry")
            }
        }
    }

    /// Hands a request to the shipper, waiting while the queue is full
    /// (backpressure). Checkpoints keep being written while waiting.
    fn send(&mut self, req: ShipRequest) {
        let mut req = req;
        loop {
            let Some(tx) = &self.tx else { return };
            match tx.try_send(req) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(r)) => {
                    req = r;
                    std::thread::sleep(QUEUE_FULL_WAIT);
                    self.maybe_checkpoint(Instant::now());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The shipper was stopped (drain deadline): the lines stay
                    // unacknowledged and are read again at the next start.
                    self.tx = None;
                    return;
                }
            }
        }
    }

    fn new_producer_id(&self, key: FileKey) -> i64 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut h = Fnv64::new();
        for word in [self.agent_id, key.dev, key.ino, nanos] {
            h.write(&word.to_le_bytes());
        }
        (h.finish() & (i64::MAX as u64)) as i64
    }
}

/// Runs `drive` (feed or flush) on a file's framer and appends every line
/// it emits to the batcher; sealed requests are collected in `sealed`.
#[allow(clippy::too_many_arguments)]
fn emit_lines(
    f: &mut TrackedFile,
    batcher: &mut Batcher,
    topic: &str,
    source_headers: Option<&HeaderSet>,
    split_header: &HeaderSet,
    now_ms: i64,
    now: Instant,
    sealed: &mut Vec<ShipRequest>,
    drive: impl FnOnce(&mut super::framing::LineFramer, &mut dyn FnMut(Line<'_>)),
) {
    let empty = HeaderSet::new();
    let source_headers = source_headers.unwrap_or(&empty);
    let TrackedFile {
        framer,
        key,
        generation,
        producer_id,
        next_seq,
        stream_key,
        path_headers,
        ..
    } = f;
    let mut emit = |line: Line<'_>| {
        let at = StreamPos {
            file: *key,
            generation: *generation,
            producer_id: *producer_id,
            seq: *next_seq,
            end_pos: line.end_pos,
        };
        *next_seq += 1;
        let with_split = [source_headers, &*path_headers, split_header];
        let headers: &[&HeaderSet] = if line.split { &with_split } else { &with_split[..2] };
        if let Some(req) = batcher.append(topic, at, now_ms, stream_key, line.bytes, headers, now) {
            sealed.push(req);
        }
    };
    drive(framer, &mut emit);
}

fn list_dir(dir: &Path) -> HashMap<FileKey, PathBuf> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for entry in rd.flatten() {
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
        {
            out.insert(FileKey::of(&meta), entry.path());
        }
    }
    out
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// FNV-1a, 64-bit: a stable hash for stream ids (std's hasher is randomly seeded).
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
