//! The loop that ties tailing together, on its own thread: discover files,
//! read the ones that changed, frame lines, hand records to the batcher,
//! hand sealed requests to the shipper, and write checkpoints from
//! acknowledgements.
//!
//! What to read: with inotify, the files events name, plus "hot" files
//! (grown recently), so an idle file costs nothing; when polling, every
//! file's size is checked each tick. Open handles are capped: idle files at
//! their end are closed and reopened on change (`lifecycle.rs`); reading
//! itself is in `reading.rs`.
//!
//! Backpressure: the queue to the shipper is bounded; when it is full this
//! thread stops reading and waits, so a slow or absent collector leaves the
//! data in the files rather than in memory.
//!
//! Shutdown is two-phase: `stop` ends reading and seals what is pending;
//! the caller then waits for the shipper to drain and calls
//! [`FileServer::final_checkpoint`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use logpost_shared::batch::HeaderSet;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpointer, Entry};
use super::discover::DirStamps;
use super::emit::Flags;
use super::fingerprint::FileKey;
use super::tracked::TrackedFile;
use super::watch::{self, Wake, Watcher, Woken};
use crate::config::AgentConfig;
use crate::ship::acks::AckBoard;
use crate::ship::batcher::{Batcher, Limits, ShipRequest};
use crate::ship::client::SharedUrls;
use crate::ship::lookup::StreamLookup;

/// Bytes read per read call: large enough for few syscalls on a busy file,
/// small enough that one shared buffer serves every file.
const READ_CHUNK: usize = 256 << 10;
/// How long to wait at once for room in a full queue before writing a
/// checkpoint and waiting again. The wait ends as soon as there is room.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(100);
/// Quiet time after work before freed memory is returned to the OS: long
/// enough not to trim between the reads of one burst.
const QUIET_BEFORE_RELEASE: Duration = Duration::from_secs(2);
/// While quiet, code pages are released again at most this often.
const RELEASE_AGAIN_AFTER: Duration = Duration::from_secs(20);
/// How often contents whose rest was not found are looked for again.
const MISSING_EVERY: Duration = Duration::from_millis(200);
/// How often counters are published as metrics.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Delay of a rescan triggered by an event on an untracked path.
const UNKNOWN_PATH_RESCAN: Duration = Duration::from_millis(50);
/// A file that grew this recently is read every tick even without an
/// event: inotify coalesces, and a busy file should not wait for one.
const HOT_WINDOW: Duration = Duration::from_secs(2);

/// The tailing loop's state.
pub struct FileServer {
    pub(super) cfg: Arc<AgentConfig>,
    pub(super) source_headers: Vec<HeaderSet>,
    pub(super) flags: Flags,
    /// Parsed fields of the event being emitted, reused.
    pub(super) scratch: HeaderSet,
    /// Boxed: a `TrackedFile` is ~450 bytes, and a map's spare buckets
    /// (up to half of them after it grows) would each hold one inline.
    pub(super) files: HashMap<FileKey, Box<TrackedFile>>,
    pub(super) by_path: HashMap<PathBuf, FileKey>,
    pub(super) open_handles: usize,
    /// Checkpoint entries not (yet) matched to a file.
    pub(super) dormant: HashMap<FileKey, Entry>,
    pub(super) batcher: Batcher,
    pub(super) tx: Option<mpsc::Sender<ShipRequest>>,
    /// The shipper's runtime: waiting for room in a full queue there
    /// wakes the tailer the moment the shipper takes a request.
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) acks: Arc<AckBoard>,
    pub(super) checkpointer: Checkpointer,
    /// Digest of the entries last written: a checkpoint is skipped when
    /// nothing in it changed (a digest rather than the entries: with
    /// 10,000 files they were a megabyte or two, kept for a comparison).
    pub(super) last_saved: Option<u64>,
    /// The glob directories as the last full scan saw them (see `DirStamps`).
    pub(super) dir_stamps: DirStamps,
    pub(super) agent_id: u64,
    pub(super) first_start: bool,
    /// When the checkpoint loaded at start was written (ms since the
    /// epoch): rotated siblings modified later were written while the
    /// agent was not running.
    pub(super) checkpoint_saved_ms: u64,
    /// The checkpoint's entries as loaded, for telling copies of known
    /// content among rotated siblings at start (emptied after).
    pub(super) loaded_entries: Vec<Entry>,
    pub(super) read_buf: Vec<u8>,
    pub(super) warned: HashSet<(PathBuf, String)>,
    pub(super) next_checkpoint: Instant,
    pub(super) wake: Arc<Wake>,
    pub(super) watcher: Option<Watcher>,
    pub(super) stats: Stats,
    /// Contents truncated recently, for recognising their copies.
    pub(super) retired: Vec<super::copies::Retired>,
    /// Contents that went whose rest is still looked for.
    pub(super) missing: Vec<super::copies::Missing>,
    /// New files just found to be copies of contents that went, to be
    /// wired to the streams they continue once tracked.
    pub(super) copies_found: Vec<(FileKey, super::copies::CopyOf)>,
    /// Asks the collector where streams resume; `None` in a dry run.
    pub(super) lookup: Option<StreamLookup>,
    pub(super) next_sync: Instant,
    pub(super) last_checkpoint_write: Instant,
    /// Dry run: never write checkpoints.
    pub(super) dry_run: bool,
    /// New configs to switch to (SIGHUP), and the shipper's URLs to update.
    pub(super) reloads: Option<(std::sync::mpsc::Receiver<AgentConfig>, SharedUrls)>,
    pub(super) sync_failures: u64,
    /// Files were tracked since the last checkpoint write.
    pub(super) untracked_by_checkpoint: bool,
    /// Something a checkpoint entry holds may have changed since the last
    /// one (bytes read, acknowledgements, files added, removed, renamed or
    /// resynchronised): with thousands of idle files, building and
    /// comparing every entry each second was most of the idle CPU.
    pub(super) checkpoint_stale: bool,
}

/// Per-source counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceStats {
    pub lines: u64,
    pub bytes: u64,
    /// Written to its files but not yet acknowledged.
    pub bytes_behind: u64,
}

/// Counters the loop keeps (published as metrics once a second).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Per source, by index: lines and bytes read, bytes behind.
    pub per_source: Vec<SourceStats>,
    pub files_tracked: usize,
    pub files_open: usize,
    pub lines: u64,
    pub bytes: u64,
    pub lines_split: u64,
    pub lines_truncated: u64,
    pub events_filtered: u64,
    pub parse_failures: u64,
    pub files_waiting: usize,
    pub inode_reused: u64,
    pub truncations: u64,
}

impl FileServer {
    /// Loads checkpoints, starts the watcher and prepares to tail `cfg`'s sources.
    pub fn new(
        cfg: Arc<AgentConfig>,
        agent_id: u64,
        tx: mpsc::Sender<ShipRequest>,
        runtime: tokio::runtime::Handle,
        acks: Arc<AckBoard>,
        lookup: Option<StreamLookup>,
    ) -> FileServer {
        let checkpointer = Checkpointer::new(&cfg.data_dir);
        let loaded = checkpointer.load();
        for w in &loaded.warnings {
            tracing::warn!(problem = %w, "checkpoint problem");
        }
        let source_headers = source_headers(&cfg);
        let limits = Limits {
            max_bytes: cfg.batch.max_bytes,
            max_records: cfg.batch.max_records,
            max_wait: cfg.batch.max_wait,
            linger: cfg.batch.linger,
        };
        let wake = Arc::new(Wake::default());
        acks.set_waker(Arc::clone(&wake));
        let globs: Vec<String> = cfg
            .sources
            .iter()
            .flat_map(|s| s.paths.iter().map(|p| p.as_str().to_owned()))
            .collect();
        let watcher = match watch::start(cfg.tail.watch, &globs, Arc::clone(&wake)) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; polling for changes instead");
                None
            }
        };
        if let Some(w) = &watcher {
            tracing::info!(directories = w.watched.len(), "watching for changes with inotify");
        }
        FileServer {
            source_headers,
            flags: Flags::default(),
            scratch: HeaderSet::new(),
            files: HashMap::new(),
            by_path: HashMap::new(),
            open_handles: 0,
            last_saved: Some(checkpoint_digest(&loaded.entries)),
            dir_stamps: DirStamps::default(),
            loaded_entries: loaded.entries.clone(),
            dormant: loaded.entries.into_iter().map(|e| (e.key, e)).collect(),
            batcher: Batcher::new(limits),
            tx: Some(tx),
            runtime,
            acks,
            checkpointer,
            agent_id,
            first_start: loaded.first_start,
            checkpoint_saved_ms: loaded.saved_ms,
            read_buf: vec![0; READ_CHUNK],
            warned: HashSet::new(),
            next_checkpoint: Instant::now() + cfg.tail.checkpoint_interval,
            wake,
            watcher,
            stats: Stats {
                per_source: vec![SourceStats::default(); cfg.sources.len()],
                ..Stats::default()
            },
            retired: Vec::new(),
            missing: Vec::new(),
            copies_found: Vec::new(),
            lookup,
            next_sync: Instant::now(),
            last_checkpoint_write: Instant::now(),
            dry_run: false,
            reloads: None,
            sync_failures: 0,
            untracked_by_checkpoint: false,
            checkpoint_stale: false,
            cfg,
        }
    }

    /// Dry run: read and print, but never write checkpoints.
    pub fn set_dry_run(&mut self, dry_run: bool) {
        self.dry_run = dry_run;
    }

    /// Where reloaded configs arrive (already validated), and the shipper's
    /// URLs to update with them.
    pub fn set_reloads(&mut self, reloads: std::sync::mpsc::Receiver<AgentConfig>, urls: SharedUrls) {
        self.reloads = Some((reloads, urls));
    }

    /// Switches to a reloaded config: sources are matched by name, so the
    /// files of unchanged and changed sources keep their positions; files
    /// of removed sources stop being tailed; new sources are picked up by
    /// the next scan. Settings read only at start (data_dir, watch mode,
    /// metrics address, the shipper's codec and requests in flight) need a
    /// restart.
    fn apply_reload(&mut self, new: AgentConfig) {
        let old = Arc::clone(&self.cfg);
        if new.data_dir != old.data_dir
            || new.tail.watch != old.tail.watch
            || new.metrics_listen != old.metrics_listen
            || new.batch.compression != old.batch.compression
            || new.batch.max_in_flight != old.batch.max_in_flight
        {
            tracing::warn!(
                "data_dir, tail.watch, metrics.listen, batch.compression, batch.gzip_level and batch.max_in_flight change only at a restart"
            );
        }
        let index: HashMap<&str, usize> = new
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut dropped = Vec::new();
        for f in self.files.values_mut() {
            let name = old.sources.get(f.source).map_or("", |s| s.name.as_str());
            match index.get(name) {
                Some(&i) => f.source = i,
                None => dropped.push(f.key),
            }
        }
        for key in dropped {
            self.checkpoint_stale = true;
            if let Some(f) = self.files.remove(&key) {
                if f.file.is_some() {
                    self.open_handles -= 1;
                }
                self.by_path.remove(&f.path);
                tracing::info!(path = %f.path.display(), "source removed; stopped tailing file");
            }
        }
        self.source_headers = source_headers(&new);
        self.stats.per_source = vec![SourceStats::default(); new.sources.len()];
        self.batcher.set_limits(Limits {
            max_bytes: new.batch.max_bytes,
            max_records: new.batch.max_records,
            max_wait: new.batch.max_wait,
            linger: new.batch.linger,
        });
        if let Some((_, urls)) = &self.reloads {
            *urls.write().unwrap_or_else(|e| e.into_inner()) = new.collector_urls.clone();
        }
        tracing::info!(sources = new.sources.len(), "config reloaded");
        self.cfg = Arc::new(new);
    }

    /// The wake-up the loop sleeps on; poking it makes a stop take effect at once.
    pub fn wake(&self) -> Arc<Wake> {
        Arc::clone(&self.wake)
    }

    /// Tails until `stop` is cancelled, then seals and hands over what is
    /// pending. Returns itself for the final checkpoint.
    pub fn run(mut self, stop: &CancellationToken) -> FileServer {
        let now = Instant::now();
        self.dir_stamps = DirStamps::record(&self.cfg.sources);
        self.scan(now, true);
        self.recover_dormant(now);
        self.adopt_unseen_siblings(now);
        let mut next_scan = now + self.cfg.tail.glob_interval;
        let mut next_poll = now;
        let mut next_metrics = now;
        let mut next_missing = now;
        let mut woken = Woken::default();
        // When the loop last did work, and whether freed memory has been
        // returned since (see `crate::memory`).
        let mut last_busy = now;
        let mut released = false;
        let mut last_release = now;
        while !stop.is_cancelled() {
            let now = Instant::now();
            let reloaded = self.reloads.as_ref().and_then(|(rx, _)| rx.try_recv().ok());
            if let Some(new) = reloaded {
                self.apply_reload(new);
                woken.rescan = true;
            }
            if woken.rescan || now >= next_scan {
                // A periodic rescan over directories that have not changed
                // since the last one would find the same files: skipped.
                let unchanged = !woken.rescan && self.dir_stamps.unchanged();
                if !unchanged {
                    self.dir_stamps = DirStamps::record(&self.cfg.sources);
                    self.scan(now, false);
                }
                next_scan = now + self.cfg.tail.glob_interval;
            }
            for (from, to) in woken.renames.drain(..) {
                self.renamed_unseen(&from, &to, now);
            }
            if !self.missing.is_empty() && now >= next_missing {
                self.look_for_missing(now);
                next_missing = now + MISSING_EVERY;
            }
            let mut to_read: HashSet<FileKey> = HashSet::new();
            let mut unknown = false;
            for path in woken.dirty.drain() {
                match self.by_path.get(&path) {
                    Some(&key) => {
                        to_read.insert(key);
                    }
                    None => unknown = true,
                }
            }
            // A path no file is tracked at changed: a new file. Rescan
            // soon (rate-limited, since an excluded file being written
            // also lands here).
            if unknown && next_scan > now + UNKNOWN_PATH_RESCAN {
                next_scan = now + UNKNOWN_PATH_RESCAN;
            }
            let polling = self.watcher.is_none();
            let poll_due = now >= next_poll;
            if poll_due {
                next_poll = now + self.cfg.tail.poll_interval;
            }
            // Whether anything needs the poll tick: when every file is idle
            // (and inotify works), the loop sleeps until an event, a scan
            // or a checkpoint, not four times a second over every file.
            let mut needs_ticks = polling;
            // Whether some file has data left (or was never read to its end).
            let mut unread = false;
            for (key, f) in &self.files {
                // A file with data left is read every iteration; one that
                // grew recently (or was rotated away) at every poll tick.
                let hot = now.duration_since(f.last_growth) < HOT_WINDOW || f.gone;
                if !f.at_eof || (hot && poll_due) || (polling && poll_due && f.file.is_some()) {
                    to_read.insert(*key);
                }
                needs_ticks |= !f.at_eof || hot || f.framer.partial_len() > 0 || f.multiline.pending_bytes() > 0;
                unread |= !f.at_eof;
            }
            if polling && poll_due {
                self.poll_closed_files(&mut to_read);
            }
            // A new file gets its checkpoint entry before its first read
            // (reads wait for `sync_streams`): a file that is read, then
            // renamed out of the glob while the agent is down, is found
            // again by inode only if the checkpoint knows it. Waiting for
            // the periodic checkpoint lost such files when the agent ran
            // for less than `checkpoint_interval` at a time.
            if self.untracked_by_checkpoint {
                self.checkpoint();
            }
            if self.sync_streams(now) {
                // Files just synchronised are read at once.
                to_read.extend(self.files.values().filter(|f| f.synced && !f.at_eof).map(|f| f.key));
            }
            let read = self.read_files(to_read, now);
            self.checkpoint_stale |= read > 0;
            if read > 0 || self.batcher.pending_bytes() > 0 {
                last_busy = now;
                released = false;
            }
            self.flush_idle_partials(now);
            // Caught up: every file is read to its end, nothing was read
            // this pass and the shipper has nothing left to do, so a batch
            // need not wait for more lines.
            let caught_up = read == 0 && !unread && self.acks.all_settled();
            for req in self.batcher.due(now, caught_up) {
                self.send(req);
            }
            self.close_idle(now);
            self.maybe_checkpoint(now);
            if now >= next_metrics {
                self.publish_metrics();
                next_metrics = now + METRICS_EVERY;
            }
            if read == 0 && !stop.is_cancelled() {
                // Acknowledgements wake the loop (the ack board pokes it):
                // with nothing to checkpoint, it sleeps to the next scan.
                self.apply_acks();
                let mut wake_at = next_scan;
                if self.checkpoint_stale || self.untracked_by_checkpoint {
                    wake_at = wake_at.min(self.next_checkpoint);
                }
                if needs_ticks {
                    wake_at = wake_at.min(next_poll);
                }
                if !self.missing.is_empty() {
                    wake_at = wake_at.min(next_missing);
                }
                // The same condition as the `due` above: a linger that is
                // past but does not apply would wake the loop at once.
                if let Some(due) = self.batcher.next_due(caught_up) {
                    wake_at = wake_at.min(due);
                }
                if !released {
                    // Memory is released on time even when nothing else
                    // would wake the loop before the next scan.
                    wake_at = wake_at.min(last_busy + QUIET_BEFORE_RELEASE);
                }
                // Released at the first quiet sleep, then again now and
                // then: code a rescan or another thread ran since (a
                // connection closing) is dropped too, without a release
                // (and refaults) at every wake of a polling loop.
                let quiet = now.duration_since(last_busy) >= QUIET_BEFORE_RELEASE;
                if quiet && (!released || now.duration_since(last_release) >= RELEASE_AGAIN_AFTER) {
                    if !released {
                        crate::memory::release_free_memory();
                    }
                    crate::memory::release_code_pages();
                    released = true;
                    last_release = now;
                }
                let pause = wake_at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                woken = self.wake.wait(pause);
            } else {
                woken = self.wake.take();
            }
        }
        tracing::info!(files = self.files.len(), "stopped reading; sealing pending batches");
        for req in self.batcher.drain_all() {
            self.send(req);
        }
        self.tx = None; // closes the queue: the shipper drains and ends
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Publishes counters and gauges (once a second, from the loop).
    fn publish_metrics(&mut self) {
        let mut behind = vec![0u64; self.cfg.sources.len()];
        let (mut open, mut waiting) = (0, 0);
        for f in self.files.values() {
            if f.file.is_some() {
                open += 1;
            } else if !f.at_eof {
                waiting += 1;
            }
            let size = if f.file.is_some() {
                f.size().unwrap_or(0)
            } else {
                f.framer.next_pos()
            };
            if let Some(b) = behind.get_mut(f.source) {
                *b += size.saturating_sub(f.committed.pos);
            }
        }
        for (s, b) in self.stats.per_source.iter_mut().zip(behind) {
            s.bytes_behind = b;
        }
        self.stats.files_tracked = self.files.len();
        self.stats.files_open = open;
        self.stats.files_waiting = waiting;
        let names: Vec<String> = self.cfg.sources.iter().map(|s| s.name.clone()).collect();
        crate::metrics::publish(&self.stats, &names, self.last_checkpoint_write.elapsed());
    }

    /// Hands a request to the shipper, waiting while the queue is full
    /// (backpressure). Checkpoints keep being written while waiting.
    pub(super) fn send(&mut self, mut req: ShipRequest) {
        req.unsettled.get_or_insert_with(|| self.acks.hand_over());
        while let Some(tx) = self.tx.clone() {
            match tx.try_send(req) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(r)) => req = r,
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
            // Woken by the shipper taking a request: a fixed sleep here
            // left the shipper idle with an empty queue.
            let room = self
                .runtime
                .block_on(async { tokio::time::timeout(QUEUE_FULL_WAIT, tx.reserve()).await });
            match room {
                Ok(Ok(permit)) => {
                    permit.send(req);
                    return;
                }
                Ok(Err(_closed)) => break,
                Err(_elapsed) => self.maybe_checkpoint(Instant::now()),
            }
        }
        // The shipper was stopped (drain deadline): the lines stay
        // unacknowledged and are read again at the next start.
        self.tx = None;
    }
}

/// Each source's static headers: `source`, `host` and its labels.
fn source_headers(cfg: &AgentConfig) -> Vec<HeaderSet> {
    cfg.sources
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
        .collect()
}

/// A digest of checkpoint entries, to tell whether they changed.
pub(super) fn checkpoint_digest(entries: &[Entry]) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same entries give the same digest.
    let mut h = std::hash::DefaultHasher::new();
    entries.hash(&mut h);
    h.finish()
}

pub(super) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
