//! Periodic work on a thread of its own: checkpoints (so that recovery
//! after a crash scans only what came since), retention, forgetting
//! producers idle past the expiry, and rebuilding segment summaries that
//! are missing or stale (after a crash, or on a store written before
//! summaries existed). Each step takes a partition's lock only briefly;
//! appends to other partitions go on meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Store;
use super::topic::now_ms;

/// Handle to the maintenance thread; dropping it without `stop` leaves the
/// thread running until the process ends.
pub struct Maintenance {
    stop: SyncSender<()>,
    /// Set on stop, so that a long summary rebuild ends between segments.
    stopping: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Maintenance {
    /// Starts the thread.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(store: Arc<Store>) -> std::io::Result<Maintenance> {
        let (stop, stopped) = sync_channel::<()>(1);
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopping);
        let handle = std::thread::Builder::new()
            .name("store-maintenance".into())
            .spawn(move || {
                let config = store.config().clone();
                let tick = config
                    .checkpoint_interval
                    .min(config.retention_check_interval)
                    .max(Duration::from_millis(10));
                let mut next_checkpoint = Instant::now() + config.checkpoint_interval;
                let mut next_retention = Instant::now() + config.retention_check_interval;
                // Summaries first: until they exist, queries read whole segments.
                let mut summaries_pending = true;
                // A message or a disconnected handle means stop; a timeout is a tick.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    let now = Instant::now();
                    let checkpoint_due = now >= next_checkpoint;
                    if checkpoint_due {
                        store.checkpoint_all();
                        next_checkpoint = now + config.checkpoint_interval;
                    }
                    if now >= next_retention {
                        let deleted = store.enforce_retention(now_ms());
                        let expiry_ms = i64::try_from(config.producer_expiry.as_millis()).unwrap_or(i64::MAX);
                        let expired = store.expire_producers(now_ms().saturating_sub(expiry_ms));
                        if deleted > 0 || expired > 0 {
                            tracing::info!(
                                deleted_segments = deleted,
                                expired_producers = expired,
                                "retention pass"
                            );
                        }
                        next_retention = now + config.retention_check_interval;
                    }
                    if summaries_pending || checkpoint_due {
                        let started = Instant::now();
                        let rebuilt = store.rebuild_summaries(&|| flag.load(Ordering::Relaxed));
                        if rebuilt > 0 {
                            tracing::info!(
                                segments = rebuilt,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "rebuilt segment summaries"
                            );
                        }
                        summaries_pending = false;
                    }
                }
            })?;
        Ok(Maintenance { stop, stopping, handle })
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.stop.try_send(());
        let _ = self.handle.join();
    }
}
