//! Inflating a scan's batches on helper threads, a few frames ahead of
//! the scan, and handing them back in file order.
//!
//! Inflating is most of what a scan costs (libdeflate alone caps one core
//! near 1,000 MiB/s of raw log). The scan still reads frames and consumes
//! records on its own thread, in order, so what comes after (prefilter,
//! pipeline, limits, stopping early, errors at their position) is exactly
//! what a one-thread scan does; only the inflating moves. At most
//! [`DEPTH_PER_THREAD`] frames per helper are in flight, which bounds the
//! memory (each holds one compressed frame and its records section).

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::Scope;

use logpost_shared::batch::{BatchError, BatchHeader, HEADER_LEN, stored_records_section_into};
use logpost_shared::compression::stated_size;

/// Frames in flight per helper: enough that a helper never waits for the
/// scan to hand it the next one.
const DEPTH_PER_THREAD: usize = 2;

/// A frame to inflate, with the buffer its records go into.
struct Job {
    frame: Vec<u8>,
    header: BatchHeader,
    out: Vec<u8>,
    max_uncompressed: usize,
    reply: SyncSender<Done>,
}

/// An inflated frame: the records section in `out`, or why not.
struct Done {
    frame: Vec<u8>,
    out: Vec<u8>,
    result: Result<(), BatchError>,
}

/// A frame's file position, header and records section (or why it has none).
pub(crate) type Section<'a> = (u64, BatchHeader, Result<&'a [u8], BatchError>);

/// Frames submitted in order, records sections taken back in that order.
pub(crate) struct Ahead {
    jobs: SyncSender<Job>,
    pending: VecDeque<(u64, BatchHeader, Receiver<Done>)>,
    /// The section handed out last: its buffers are reused once the scan
    /// asks for the next one.
    current: Option<Done>,
    spare: Vec<(Vec<u8>, Vec<u8>)>,
    depth: usize,
    max_uncompressed: usize,
}

impl Ahead {
    /// Starts up to `threads` helpers in `scope`; dropping this closes
    /// their queue, and each stops after the job it is on. `None` when no
    /// thread could be started (a process or system thread limit): the
    /// caller then inflates on its own thread.
    pub(crate) fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        threads: usize,
        max_uncompressed: usize,
    ) -> Option<Self> {
        #[cfg(test)]
        if tests::NO_THREADS.get() {
            return None;
        }
        let (jobs, queue) = sync_channel::<Job>(threads.max(1) * DEPTH_PER_THREAD);
        let queue = Arc::new(Mutex::new(queue));
        let mut started = 0;
        for _ in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let helper = std::thread::Builder::new()
                .name("query-inflate".to_owned())
                .spawn_scoped(scope, move || help(&queue));
            match helper {
                Ok(_) => started += 1,
                Err(e) => {
                    tracing::warn!(error = %e, started, "cannot start a query helper thread");
                    break;
                }
            }
        }
        if started == 0 {
            return None;
        }
        let depth = started * DEPTH_PER_THREAD;
        Some(Ahead {
            jobs,
            pending: VecDeque::with_capacity(depth),
            current: None,
            spare: Vec::new(),
            depth,
            max_uncompressed,
        })
    }

    /// Another queue of frames on the same helpers, with at most `depth`
    /// of its own in flight: one per partition of a scan that merges them.
    /// The helpers stop once this and every other queue are dropped.
    pub(crate) fn sibling(&self, depth: usize) -> Self {
        Ahead {
            jobs: self.jobs.clone(),
            pending: VecDeque::with_capacity(depth.max(1)),
            current: None,
            spare: Vec::new(),
            depth: depth.max(1),
            max_uncompressed: self.max_uncompressed,
        }
    }

    /// Frames in flight that the helpers started with: what a scan's
    /// queues share between them.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// Whether as many frames as allowed are in flight.
    pub(crate) fn is_full(&self) -> bool {
        self.pending.len() >= self.depth
    }

    /// Whether no frame is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queues `frame` (found at file position `pos`) for inflating.
    pub(crate) fn submit(&mut self, pos: u64, header: BatchHeader, frame: &[u8]) {
        self.recycle();
        let (mut buf, mut out) = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        // Sized here, on the scan's thread, where the codec states the size
        // (gzip), so that the sections live in its malloc arena: grown by
        // the helpers, each helper's arena kept up to a few sections after
        // the scan (about 10 MiB of RSS on 2 CPUs).
        if let Some(codec) = header.codec()
            && let Some(size) = frame
                .get(HEADER_LEN..header.frame_len())
                .and_then(|section| stated_size(codec, section))
        {
            // Keeping its length: inflating zeroes only what a buffer grows by.
            let size = size.min(self.max_uncompressed);
            out.reserve(size.saturating_sub(out.len()));
        }
        let (reply, done) = sync_channel(1);
        let job = Job {
            frame: buf,
            header,
            out,
            max_uncompressed: self.max_uncompressed,
            reply,
        };
        // If no helper is left (one panicked), the job and its reply
        // sender are dropped here and `next` reports the frame as failed.
        let _ = self.jobs.send(job);
        self.pending.push_back((pos, header, done));
    }

    /// The oldest frame's position, header and records section, waiting
    /// for it; `None` when nothing is in flight.
    pub(crate) fn next(&mut self) -> Option<Section<'_>> {
        self.recycle();
        let (pos, header, done) = self.pending.pop_front()?;
        // No reply only if the helper panicked (decoding does not panic on
        // any input; the scope re-raises the panic when it ends): the
        // frame counts as unreadable rather than as skipped.
        let done = done.recv().unwrap_or_else(|_| Done {
            frame: Vec::new(),
            out: Vec::new(),
            result: Err(BatchError::Truncated {
                needed: header.frame_len(),
                available: 0,
            }),
        });
        let current = self.current.insert(done);
        // After an error the scan stops, so the error can be moved out.
        let section = std::mem::replace(&mut current.result, Ok(())).map(|()| current.out.as_slice());
        Some((pos, header, section))
    }

    fn recycle(&mut self) {
        if let Some(done) = self.current.take() {
            self.spare.push((done.frame, done.out));
        }
    }
}

/// A helper: inflates jobs until the queue closes.
fn help(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job.
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = next else { return };
        let Job {
            frame,
            header,
            mut out,
            max_uncompressed,
            reply,
        } = job;
        let result = stored_records_section_into(&frame, &header, max_uncompressed, &mut out);
        // The scan may have stopped early and dropped the receiver.
        let _ = reply.send(Done { frame, out, result });
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;

    thread_local! {
        /// Makes [`super::Ahead::start`] fail on this thread, as when the
        /// system refuses new threads.
        pub static NO_THREADS: Cell<bool> = const { Cell::new(false) };
    }
}
