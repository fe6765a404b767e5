//! Acknowledged positions: the shipper writes them as acknowledgements
//! arrive, the tailer takes them when it writes checkpoints. A plain mutex
//! rather than a channel, so that neither side can block the other (the
//! tailer may be waiting to hand the shipper a batch at that moment).

use std::collections::{HashMap, HashSet};
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

    /// Takes the streams to resynchronise.
    pub fn take_resync(&self) -> HashSet<FileKey> {
        std::mem::take(&mut *self.resync.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
