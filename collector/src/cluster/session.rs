//! This node's membership: an etcd lease, the node's key under it, and
//! the renewals that keep both alive.
//!
//! The lease is the node's right to act. It is taken for valid until
//! `session_timeout` after the last renewal was *sent* (etcd counts from
//! when it received it, later), so this node stops acknowledging writes
//! before etcd can let anyone else lead: a node paused (SIGSTOP, a stalled
//! VM) wakes to find its lease expired and acknowledges nothing. When etcd
//! says the lease is gone the node registers again under a new one; the
//! controller has meanwhile treated it as dead.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::etcd::{Compare, Etcd, Op};

/// Taken off the lease's validity for the difference between our clock
/// and etcd's, which tick at the same rate but are read at different
/// moments.
const CLOCK_MARGIN: Duration = Duration::from_millis(100);

/// The lease and how long it is good for.
#[derive(Debug)]
pub struct Session {
    ttl: Duration,
    lease: AtomicI64,
    valid_until: Mutex<Option<Instant>>,
    /// Bumped at every registration and every loss: waiters re-check.
    generation: watch::Sender<u64>,
}

impl Session {
    /// A session not yet registered.
    pub fn new(ttl: Duration) -> Self {
        let (generation, _) = watch::channel(0);
        Self {
            ttl,
            lease: AtomicI64::new(0),
            valid_until: Mutex::new(None),
            generation,
        }
    }

    /// Whether the lease is (still) ours: renewed less than
    /// `session_timeout` ago.
    pub fn is_valid(&self) -> bool {
        self.valid_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }

    /// The current lease id (0 before the first registration).
    pub fn lease(&self) -> i64 {
        self.lease.load(Ordering::Acquire)
    }

    /// Changes when the session is registered again or lost.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn renewed(&self, sent: Instant) {
        let until = sent + self.ttl.saturating_sub(CLOCK_MARGIN);
        let mut v = self.valid_until.lock().unwrap_or_else(|e| e.into_inner());
        if v.is_none_or(|old| until > old) {
            *v = Some(until);
        }
    }

    /// Marks the session renewed now (unit tests of its users).
    #[cfg(test)]
    pub fn renew_for_tests(&self) {
        self.renewed(Instant::now());
    }

    fn lost(&self) {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.generation.send_modify(|g| *g += 1);
    }

    /// Grants a lease and puts `node_key` = `value` under it, waiting for
    /// an older registration of the same id (a previous process of this
    /// node, dead but whose lease has not expired yet) to go first.
    ///
    /// # Errors
    /// Only when cancelled; etcd failures are retried.
    pub async fn register(
        &self,
        etcd: &Etcd,
        node_key: &str,
        value: &[u8],
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let mut waited = 0u32;
        loop {
            if cancel.is_cancelled() {
                return Err(Cancelled);
            }
            let sent = Instant::now();
            let attempt = async {
                let lease = etcd.grant(self.ttl).await?;
                let (ok, _) = etcd
                    .txn(
                        &[Compare::CreateRevision(node_key.to_owned(), 0)],
                        &[Op::Put {
                            key: node_key.to_owned(),
                            value: value.to_vec(),
                            lease,
                        }],
                    )
                    .await?;
                if !ok {
                    let _ = etcd.revoke(lease).await;
                }
                Ok::<_, super::etcd::EtcdError>(ok.then_some(lease))
            };
            match attempt.await {
                Ok(Some(lease)) => {
                    self.lease.store(lease, Ordering::Release);
                    self.renewed(sent);
                    self.generation.send_modify(|g| *g += 1);
                    tracing::info!(lease, key = node_key, "registered in the cluster");
                    return Ok(());
                }
                Ok(None) => {
                    if waited.is_multiple_of(25) {
                        tracing::warn!(
                            key = node_key,
                            "this node id is registered already (a previous run whose lease has not expired, or another node with the same node_id); waiting"
                        );
                    }
                }
                Err(e) => {
                    if waited.is_multiple_of(25) {
                        tracing::warn!(error = %crate::http::error::chain(&e), "cannot register in the cluster; retrying");
                    }
                }
            }
            waited += 1;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = cancel.cancelled() => return Err(Cancelled),
            }
        }
    }

    /// Renews the lease every quarter of its time to live until
    /// cancelled; registers again (`reregister`) when etcd says the lease
    /// is gone. On cancellation revokes the lease, so that the node's
    /// partitions move at once instead of after the timeout.
    pub async fn keep_alive<F, Fut>(&self, etcd: &Etcd, cancel: &CancellationToken, mut reregister: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), Cancelled>>,
    {
        let every = self.ttl / 4;
        let mut failures = 0u32;
        let mut announced = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = cancel.cancelled() => break,
            }
            let sent = Instant::now();
            match etcd.keep_alive(self.lease()).await {
                Ok(true) => {
                    if failures > 0 {
                        tracing::info!(failures, "etcd reachable again; lease renewed");
                    }
                    failures = 0;
                    announced = false;
                    self.renewed(sent);
                }
                Ok(false) => {
                    tracing::warn!(
                        lease = self.lease(),
                        "etcd lease expired: this node was taken for dead; registering again"
                    );
                    self.lost();
                    if reregister().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(error = %crate::http::error::chain(&e), failures, valid = self.is_valid(),
                            "cannot renew the etcd lease");
                    }
                    if !self.is_valid() && !announced {
                        // Tell waiters once: writes are refused until renewed.
                        announced = true;
                        self.generation.send_modify(|g| *g += 1);
                    }
                }
            }
        }
        let lease = self.lease();
        self.lost();
        if lease != 0 {
            let _ = tokio::time::timeout(Duration::from_secs(1), etcd.revoke(lease)).await;
        }
    }
}

/// The operation stopped because the collector is shutting down.
#[derive(Debug, Clone, Copy)]
pub struct Cancelled;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_runs_from_the_sent_renewal() {
        let s = Session::new(Duration::from_secs(2));
        assert!(!s.is_valid(), "not before registration");
        s.renewed(Instant::now());
        assert!(s.is_valid());
        // A renewal sent long ago (a pause) is no longer good.
        let s = Session::new(Duration::from_secs(2));
        s.renewed(Instant::now() - Duration::from_secs(3));
        assert!(!s.is_valid());
        s.renewed(Instant::now());
        s.lost();
        assert!(!s.is_valid());
    }
}
