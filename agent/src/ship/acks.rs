//! Acknowledged positions: the shipper writes them as acknowledgements
//! arrive, the tailer takes them when it writes checkpoints. A plain mutex
//! rather than a channel, so that neither side can block the other (the
//! tailer may be waiting to hand the shipper a batch at that moment).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::tail::fingerprint::FileKey;
use crate::tail::watch::Wake;

/// Acknowledged progress of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// File position after the last acknowledged line.
    pub pos: u64,
    /// Sequence number of the next record of the file's stream.
    pub next_seq: i64,
    /// Which incarnation of the file's content (bumped on truncation).
    pub generation: u32,
}

/// Progress acknowledged but not yet taken by the tailer, and streams the
/// collector refused (a sequence gap): those must be resynchronised.
#[derive(Debug, Default)]
pub struct AckBoard {
    inner: Mutex<HashMap<FileKey, Acked>>,
    resync: Mutex<HashSet<FileKey>>,
    /// Woken when something arrives, so an idle tailer need not poll.
    waker: OnceLock<Arc<Wake>>,
    /// Requests handed to the shipper and not yet settled.
    unsettled: AtomicUsize,
}

/// A request handed to the shipper, counted until it is settled
/// (acknowledged, refused for good, or dropped in any other way): the
/// count falls when this is dropped, and the tailer is woken, since an
/// idle shipper may make a lingering batch due (`batch.linger`).
#[derive(Debug)]
pub struct Unsettled(Arc<AckBoard>);

impl Drop for Unsettled {
    fn drop(&mut self) {
        self.0.unsettled.fetch_sub(1, Ordering::AcqRel);
        self.0.wake();
    }
}

impl AckBoard {
    /// Who to wake when an acknowledgement or a resync request arrives.
    pub fn set_waker(&self, wake: Arc<Wake>) {
        let _ = self.waker.set(wake);
    }

    fn wake(&self) {
        if let Some(w) = self.waker.get() {
            w.poke();
        }
    }

    /// Records an acknowledgement; positions only move forward within a generation.
    pub fn record(&self, file: FileKey, acked: Acked) {
        {
            let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(file)
                .and_modify(|cur| {
                    if (acked.generation, acked.pos) > (cur.generation, cur.pos) {
                        *cur = acked;
                    }
                })
                .or_insert(acked);
        }
        self.wake();
    }

    /// Takes everything recorded since the last call.
    pub fn take(&self) -> HashMap<FileKey, Acked> {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Marks a stream the collector refused: the tailer asks the collector
    /// where it stands and reads the file again from there.
    pub fn request_resync(&self, file: FileKey) {
        self.resync.lock().unwrap_or_else(|e| e.into_inner()).insert(file);
        self.wake();
    }

    /// Counts a request handed to the shipper until the returned token is dropped.
    pub fn hand_over(self: &Arc<Self>) -> Unsettled {
        self.unsettled.fetch_add(1, Ordering::AcqRel);
        Unsettled(Arc::clone(self))
    }

    /// Whether every request handed to the shipper is settled.
    pub fn all_settled(&self) -> bool {
        self.unsettled.load(Ordering::Acquire) == 0
    }

    /// Takes the streams to resynchronise.
    pub fn take_resync(&self) -> HashSet<FileKey> {
        std::mem::take(&mut *self.resync.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
