//! The writer threads: the only callers of `Partition::append_frames`, and
//! where group commit happens.
//!
//! fdatasync blocks for milliseconds, so it runs on dedicated OS threads,
//! never on the async runtime. Ingest sends an [`AppendRequest`] through a
//! bounded channel (full = backpressure on ingest) and awaits a oneshot; a
//! thread takes every request that queued meanwhile, writes each
//! partition's share in one write and covers it with one fdatasync.
//!
//! A partition always goes to the same thread (by hash), so its appends stay
//! in arrival order.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::dedup::BatchOutcome;
use super::partition::{AppendItem, Partition};
use super::{FsyncPolicy, StoreError};

/// Requests one thread gathers into a group: enough that one fsync covers a
/// burst from many agents, few enough that the first waiter is not delayed
/// by a huge group's write.
pub const DEFAULT_MAX_GROUP: usize = 256;
/// Queue depth per writer thread; a full queue makes ingest wait (backpressure).
const QUEUE_DEPTH: usize = 1024;

/// The result of one append request: each batch's outcome, in order.
pub type AppendResult = Result<Vec<BatchOutcome>, Arc<StoreError>>;

/// Batches for one partition, and where to send the outcome.
pub struct AppendRequest {
    pub partition: Arc<Partition>,
    /// Whole, checked batches.
    pub items: Vec<AppendItem>,
    pub reply: oneshot::Sender<AppendResult>,
}

enum Msg {
    Append(AppendRequest),
    /// Interval mode: fsync every partition appended to since the last tick.
    Sync,
}

/// Handle to the writer threads.
pub struct LogWriter {
    senders: Vec<mpsc::Sender<Msg>>,
    threads: Vec<JoinHandle<()>>,
    ticker: Option<(JoinHandle<()>, std::sync::mpsc::SyncSender<()>)>,
}

impl LogWriter {
    /// Starts `threads` writer threads (and a ticker in interval mode).
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn start(threads: usize, fsync: FsyncPolicy) -> std::io::Result<LogWriter> {
        Self::start_with(threads, fsync, DEFAULT_MAX_GROUP, true)
    }

    /// As [`start`](Self::start), gathering at most `max_group` requests per
    /// fsync (1 turns group commit off, for benchmarks) and deduplicating
    /// producers' batches unless `dedup` is false (tests that prove the
    /// deduplication matters).
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn start_with(threads: usize, fsync: FsyncPolicy, max_group: usize, dedup: bool) -> std::io::Result<LogWriter> {
        let sync_each = fsync == FsyncPolicy::Always;
        let max_group = max_group.max(1);
        let mut senders = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            let handle = std::thread::Builder::new()
                .name(format!("log-writer-{i}"))
                .spawn(move || run_writer(rx, sync_each, max_group, dedup))?;
            senders.push(tx);
            handles.push(handle);
        }
        let ticker = match fsync {
            FsyncPolicy::Always => None,
            FsyncPolicy::Interval(every) => Some(start_ticker(senders.clone(), every)?),
        };
        Ok(LogWriter {
            senders,
            threads: handles,
            ticker,
        })
    }

    /// Appends `frames` to `partition`; resolves once durable (per the fsync policy).
    ///
    /// # Errors
    /// The store's error, or [`StoreError::ShuttingDown`].
    pub async fn append(&self, partition: Arc<Partition>, items: Vec<AppendItem>) -> AppendResult {
        let (reply, rx) = oneshot::channel();
        let sender = self.sender_for(&partition);
        sender
            .send(Msg::Append(AppendRequest {
                partition,
                items,
                reply,
            }))
            .await
            .map_err(|_| Arc::new(StoreError::ShuttingDown))?;
        rx.await.map_err(|_| Arc::new(StoreError::ShuttingDown))?
    }

    /// Queues `frames` for `partition` and returns the receiver of the
    /// outcome, so that a caller can queue several partitions before waiting.
    ///
    /// # Errors
    /// [`StoreError::ShuttingDown`].
    pub async fn submit(
        &self,
        partition: Arc<Partition>,
        items: Vec<AppendItem>,
    ) -> Result<oneshot::Receiver<AppendResult>, Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        let sender = self.sender_for(&partition);
        sender
            .send(Msg::Append(AppendRequest {
                partition,
                items,
                reply,
            }))
            .await
            .map_err(|_| Arc::new(StoreError::ShuttingDown))?;
        Ok(rx)
    }

    /// As [`append`](Self::append), from a thread outside the runtime.
    ///
    /// # Errors
    /// The store's error, or [`StoreError::ShuttingDown`].
    pub fn append_blocking(&self, partition: Arc<Partition>, items: Vec<AppendItem>) -> AppendResult {
        let (reply, rx) = oneshot::channel();
        let sender = self.sender_for(&partition);
        sender
            .blocking_send(Msg::Append(AppendRequest {
                partition,
                items,
                reply,
            }))
            .map_err(|_| Arc::new(StoreError::ShuttingDown))?;
        rx.blocking_recv().map_err(|_| Arc::new(StoreError::ShuttingDown))?
    }

    /// Reserves one queue place per entry of `partitions` without waiting:
    /// all of them or none, so that a caller refused for backpressure has
    /// queued nothing (and a retry duplicates nothing).
    ///
    /// # Errors
    /// [`StoreError::Busy`] when a queue is full, [`StoreError::ShuttingDown`].
    pub fn try_reserve(&self, partitions: &[Arc<Partition>]) -> Result<Vec<AppendPermit<'_>>, StoreError> {
        partitions
            .iter()
            .map(|p| match self.sender_for(p).try_reserve() {
                Ok(permit) => Ok(AppendPermit {
                    permit,
                    partition: Arc::clone(p),
                }),
                Err(mpsc::error::TrySendError::Full(())) => Err(StoreError::Busy {
                    topic: p.topic.to_string(),
                    partition: p.id,
                }),
                Err(mpsc::error::TrySendError::Closed(())) => Err(StoreError::ShuttingDown),
            })
            .collect()
    }

    // The modulo keeps the index below `senders.len()`, which `start` makes at least 1.
    #[allow(clippy::indexing_slicing)]
    fn sender_for(&self, partition: &Partition) -> &mpsc::Sender<Msg> {
        let mut h = DefaultHasher::new();
        partition.topic.hash(&mut h);
        partition.id.hash(&mut h);
        let i = (h.finish() % self.senders.len() as u64) as usize;
        &self.senders[i]
    }

    /// Stops the threads after they finish what is queued (and, in interval
    /// mode, a last fsync).
    pub fn shutdown(mut self) {
        if let Some((handle, stop)) = self.ticker.take() {
            drop(stop);
            let _ = handle.join();
        }
        for tx in &self.senders {
            let _ = tx.try_send(Msg::Sync);
        }
        self.senders.clear();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// A place reserved in a writer thread's queue for one partition's append.
pub struct AppendPermit<'a> {
    permit: mpsc::Permit<'a, Msg>,
    partition: Arc<Partition>,
}

impl AppendPermit<'_> {
    /// The partition the place was reserved for.
    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    /// Queues `items` in the reserved place; the receiver gets the outcome
    /// once durable.
    pub fn send(self, items: Vec<AppendItem>) -> oneshot::Receiver<AppendResult> {
        let (reply, rx) = oneshot::channel();
        self.permit.send(Msg::Append(AppendRequest {
            partition: self.partition,
            items,
            reply,
        }));
        rx
    }
}

fn start_ticker(
    senders: Vec<mpsc::Sender<Msg>>,
    every: Duration,
) -> std::io::Result<(JoinHandle<()>, std::sync::mpsc::SyncSender<()>)> {
    let (stop_tx, stop_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let handle = std::thread::Builder::new()
        .name("log-fsync-ticker".into())
        .spawn(move || {
            // Disconnection of `stop_tx` ends the loop; a timeout is a tick.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(every) {
                for tx in &senders {
                    // A full queue means the thread is busy and will tick soon.
                    let _ = tx.try_send(Msg::Sync);
                }
            }
        })?;
    Ok((handle, stop_tx))
}

fn run_writer(mut rx: mpsc::Receiver<Msg>, sync_each: bool, max_group: usize, dedup: bool) {
    let mut group: Vec<AppendRequest> = Vec::with_capacity(max_group);
    let mut dirty: Vec<Arc<Partition>> = Vec::new();
    // `None` only once every sender is dropped: shutdown, after ingest drained.
    while let Some(first) = rx.blocking_recv() {
        let mut tick = false;
        match first {
            Msg::Append(req) => group.push(req),
            Msg::Sync => tick = true,
        }
        while group.len() < max_group {
            match rx.try_recv() {
                Ok(Msg::Append(req)) => group.push(req),
                Ok(Msg::Sync) => tick = true,
                Err(_) => break,
            }
        }
        write_group(&mut group, sync_each, dedup, &mut dirty);
        if tick {
            sync_dirty(&mut dirty);
        }
    }
    sync_dirty(&mut dirty);
}

/// Writes each partition's requests with one write and (when `sync_each`) one fsync.
fn write_group(group: &mut Vec<AppendRequest>, sync_each: bool, dedup: bool, dirty: &mut Vec<Arc<Partition>>) {
    while let Some(first) = group.first() {
        let partition = Arc::clone(&first.partition);
        let (mine, rest): (Vec<_>, Vec<_>) = group.drain(..).partition(|r| Arc::ptr_eq(&r.partition, &partition));
        *group = rest;
        let items: Vec<&AppendItem> = mine.iter().flat_map(|r| r.items.iter()).collect();
        let started = std::time::Instant::now();
        let outcome = partition.append(&items, sync_each, dedup).map_err(Arc::new);
        crate::metrics::appended(items.len(), started.elapsed());
        if outcome.is_ok() && !sync_each && !dirty.iter().any(|p| Arc::ptr_eq(p, &partition)) {
            dirty.push(Arc::clone(&partition));
        }
        let mut at = 0;
        for req in mine {
            let n = req.items.len();
            let reply = match &outcome {
                Ok(summaries) => Ok(summaries.get(at..at + n).map(<[_]>::to_vec).unwrap_or_default()),
                Err(e) => Err(Arc::clone(e)),
            };
            at += n;
            let _ = req.reply.send(reply); // the requester may have gone away
        }
    }
}

fn sync_dirty(dirty: &mut Vec<Arc<Partition>>) {
    for p in dirty.drain(..) {
        if let Err(e) = p.sync_if_dirty() {
            tracing::error!(topic = %p.topic, partition = p.id, error = %e, "interval fsync failed");
        }
    }
}
