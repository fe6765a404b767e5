//! A listener's memory budget: the bytes of requests it may hold at once,
//! across all its connections ([`ByteBudget`]).
//!
//! Why a module of its own: a per-request limit bounds one request, not a
//! thousand of them. The HTTP listener (bodies before they are checked)
//! and the Kafka listener (request frames until their appends are done)
//! each take their requests' bytes from one budget before they read them,
//! so their memory stays bounded whatever the number of connections; a
//! request that finds the budget spent waits, and its bytes wait in the
//! kernel's socket buffers (TCP backpressure), as Kafka's
//! `queued.max.request.bytes` does.
//!
//! Invariant: the budget is counted in KiB units, so that a tokio
//! `Semaphore` (u32 permits per acquisition) can hold budgets up to 4 TiB;
//! a request of `n` bytes takes `ceil(n / 1024)` units, at least one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes per unit of the budget.
const UNIT: u64 = 1024;

/// Bytes of requests held at once by one listener.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    units: Arc<Semaphore>,
    total_bytes: u64,
    /// Bytes currently held, for the metrics.
    held: Arc<AtomicU64>,
    /// Which metric gauge reports `held`.
    gauge: &'static str,
}

/// Bytes taken from a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    _units: OwnedSemaphorePermit,
    bytes: u64,
    held: Arc<AtomicU64>,
    gauge: &'static str,
}

impl Drop for Held {
    fn drop(&mut self) {
        let now = self
            .held
            .fetch_sub(self.bytes, Ordering::AcqRel)
            .saturating_sub(self.bytes);
        crate::metrics::in_flight_bytes(self.gauge, now);
    }
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Why bytes could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// More than the whole budget: it can never be granted.
    #[error("{wanted} bytes is more than the whole budget of {total} bytes")]
    Exceeds { wanted: u64, total: u64 },
    /// Not granted within the wait.
    #[error("{wanted} bytes were not free within {waited:?} ({total} bytes held by requests in flight)")]
    Busy { wanted: u64, total: u64, waited: Duration },
    /// The listener is shutting down.
    #[error("shutting down")]
    Closed,
}

impl ByteBudget {
    /// A budget of `total_bytes`, reported as the gauge `gauge` (a
    /// `listener` label value of `logpost_collector_in_flight_bytes`).
    pub fn new(total_bytes: u64, gauge: &'static str) -> Self {
        let units = usize::try_from(total_bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        ByteBudget {
            units: Arc::new(Semaphore::new(units)),
            total_bytes,
            held: Arc::new(AtomicU64::new(0)),
            gauge,
        }
    }

    /// The whole budget, bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    fn units_of(bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
    }

    /// Takes `bytes`, waiting up to `wait` for them (first come, first
    /// served: a large request is not starved by small ones).
    ///
    /// # Errors
    /// More than the whole budget, not free in time, or closed.
    pub async fn take(&self, bytes: u64, wait: Duration) -> Result<Held, BudgetError> {
        if bytes > self.total_bytes {
            return Err(BudgetError::Exceeds {
                wanted: bytes,
                total: self.total_bytes,
            });
        }
        let acquire = Arc::clone(&self.units).acquire_many_owned(Self::units_of(bytes));
        let units = match tokio::time::timeout(wait, acquire).await {
            Ok(Ok(units)) => units,
            Ok(Err(_)) => return Err(BudgetError::Closed),
            Err(_) => {
                return Err(BudgetError::Busy {
                    wanted: bytes,
                    total: self.total_bytes,
                    waited: wait,
                });
            }
        };
        let now = self.held.fetch_add(bytes, Ordering::AcqRel).saturating_add(bytes);
        crate::metrics::in_flight_bytes(self.gauge, now);
        Ok(Held {
            _units: units,
            bytes,
            held: Arc::clone(&self.held),
            gauge: self.gauge,
        })
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn takes_wait_for_room_and_give_it_back() {
        let budget = ByteBudget::new(10 * 1024, "test");
        let a = budget.take(6 * 1024, Duration::from_secs(1)).await.unwrap();
        assert_eq!(budget.held_bytes(), 6 * 1024);
        // 5 KiB more does not fit; the wait ends in Busy.
        let busy = budget.take(5 * 1024, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(busy, BudgetError::Busy { .. }), "{busy}");
        // Once `a` is given back it fits.
        let b = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(5 * 1024, Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        drop(a);
        let b = b.await.unwrap().unwrap();
        assert_eq!(b.bytes(), 5 * 1024);
        assert_eq!(budget.held_bytes(), 5 * 1024);
        let too_big = budget.take(11 * 1024, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(too_big, BudgetError::Exceeds { .. }));
        // A request of one byte still takes a unit.
        drop(b);
        let tiny: Vec<Held> = futures_take(&budget, 10).await;
        assert_eq!(tiny.len(), 10);
        assert!(
            budget.take(1, Duration::from_millis(10)).await.is_err(),
            "ten units are all taken"
        );
    }

    async fn futures_take(budget: &ByteBudget, n: usize) -> Vec<Held> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(budget.take(1, Duration::from_secs(1)).await.unwrap());
        }
        out
    }
}
