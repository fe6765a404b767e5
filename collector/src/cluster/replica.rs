//! One local partition as a replica of a cluster partition: its role
//! (leader at an epoch, follower of a leader, or offline), and, when it
//! leads, Kafka's ISR bookkeeping: each follower's log end as its fetches
//! report it, when it last caught up, the in-sync set, and the high
//! watermark (the lowest log end in the in-sync set), which bounds what
//! readers see and what `acks=all` writes wait for.
//!
//! Role changes take effect on the partition itself
//! ([`WriteRole`](crate::store::WriteRole)), under its lock, so that a
//! leader stepping down appends nothing more for clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::epochs::{EpochCache, ReplicaFile, ReplicaState};
use super::error::ClusterError;
use super::meta::{PartitionState, Versioned};
use super::session::Session;
use crate::store::{AppendItem, Partition, StoreError, WriteRole};

/// Where one follower stands, as its fetches tell the leader.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Its log end (the offset it fetched from); -1 until it fetches in
    /// this leader epoch.
    leo: i64,
    last_caught_up: Instant,
    last_fetch: Instant,
    /// The leader's log end when it last fetched.
    leader_leo_at_last_fetch: i64,
}

/// What a leader keeps.
#[derive(Debug)]
pub struct LeaderState {
    pub epoch: i32,
    /// The leader's log end when it took over: a follower must reach it
    /// before it is in sync again.
    epoch_start: i64,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The partition key's revision that `isr` was read or written at.
    isr_version: i64,
    followers: HashMap<i32, Progress>,
    isr_change_in_flight: bool,
}

/// A replica's role.
#[derive(Debug)]
pub enum Role {
    Offline,
    Leader(LeaderState),
    Follower { leader: i32, epoch: i32 },
}

/// A change of the in-sync set the leader wants written to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub epoch: i32,
    pub expected_version: i64,
    pub next: PartitionState,
}

/// Why a follower's fetch is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchRefusal {
    /// Not the leader at the fetch's epoch; this node's view of it.
    Fenced {
        leader_epoch: i32,
    },
    NotAReplica,
    OutOfRange {
        log_start_offset: i64,
        log_end_offset: i64,
    },
}

/// A running follower fetch loop.
struct Following {
    leader: i32,
    epoch: i32,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A local partition in the cluster.
pub struct Replica {
    pub topic: String,
    pub partition: u32,
    pub log: Arc<Partition>,
    me: i32,
    file: ReplicaFile,
    epochs: Mutex<EpochCache>,
    /// The high watermark last written to the file.
    saved_hw: Mutex<i64>,
    role: Mutex<Role>,
    /// Bumped at every change of role or in-sync set.
    changed: watch::Sender<u64>,
    following: tokio::sync::Mutex<Option<Following>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica({}/{})", self.topic, self.partition)
    }
}

impl Replica {
    /// Takes over a local partition: loads its saved state, bounds its
    /// readers by the saved high watermark (the log end when there is no
    /// saved state: a single node's data, all of it acknowledged), and
    /// refuses writes until a role is given. Blocking.
    ///
    /// # Errors
    /// The state file is unreadable, or the log cannot be read.
    pub fn open(topic: &str, partition: u32, log: Arc<Partition>, me: i32) -> Result<Replica, StoreError> {
        let file = ReplicaFile::new(log.dir());
        let state_err = |source: std::io::Error| StoreError::Io {
            topic: topic.to_owned(),
            partition: Some(partition),
            source: crate::store::SegmentError::Io {
                path: log.dir().join(super::epochs::REPLICA_STATE),
                op: "read",
                source,
            },
        };
        let saved = file.load().map_err(state_err)?;
        log.set_role(WriteRole::Offline);
        let leo = log.log_end_offset();
        let (hw, mut epochs) = match saved {
            Some(s) => (s.high_watermark, s.leader_epochs),
            None => (leo, EpochCache::default()),
        };
        // Epochs starting past the log's end describe a tail that a crash
        // took before it was synced.
        epochs.truncate_from_end(leo + 1);
        let hw = log.enable_replication(hw)?;
        let (changed, _) = watch::channel(0);
        Ok(Replica {
            topic: topic.to_owned(),
            partition,
            log,
            me,
            file,
            epochs: Mutex::new(epochs),
            saved_hw: Mutex::new(hw),
            role: Mutex::new(Role::Offline),
            changed,
            following: tokio::sync::Mutex::new(None),
        })
    }

    fn role(&self) -> std::sync::MutexGuard<'_, Role> {
        self.role.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    /// `(leader, epoch)` of the role now: `(me, epoch)` when leading,
    /// `None` when offline.
    pub fn current(&self) -> Option<(i32, i32)> {
        match &*self.role() {
            Role::Offline => None,
            Role::Leader(l) => Some((self.me, l.epoch)),
            Role::Follower { leader, epoch } => Some((*leader, *epoch)),
        }
    }

    /// The in-sync set when leading.
    pub fn leader_isr(&self) -> Option<Vec<i32>> {
        match &*self.role() {
            Role::Leader(l) => Some(l.isr.clone()),
            _ => None,
        }
    }

    /// The newest leader epoch in the log and where it starts.
    pub fn latest_epoch(&self) -> Option<(i32, i64)> {
        self.epochs.lock().unwrap_or_else(|e| e.into_inner()).latest()
    }

    /// Where `epoch` ends in this replica's log (KIP-101).
    pub fn epoch_end(&self, epoch: i32) -> Option<(i32, i64)> {
        let leo = self.log.log_end_offset();
        self.epochs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .end_offset_for(epoch, leo)
    }

    /// Writes the state file if the high watermark moved since the last
    /// write (or `force`). Blocking.
    pub fn save(&self, force: bool) {
        let hw = self.log.high_watermark();
        let mut saved = self.saved_hw.lock().unwrap_or_else(|e| e.into_inner());
        if !force && *saved == hw {
            return;
        }
        let state = ReplicaState {
            high_watermark: hw,
            leader_epochs: self.epochs.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        match self.file.save(&state) {
            Ok(()) => *saved = hw,
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "cannot save replica state");
            }
        }
    }

    /// Becomes leader at `epoch` with `state`'s replicas and in-sync set:
    /// stops following, records the epoch's start, lets clients append.
    pub async fn become_leader(self: &Arc<Self>, epoch: i32, state: &Versioned<PartitionState>) {
        self.stop_following().await;
        let this = Arc::clone(self);
        let start = tokio::task::spawn_blocking(move || {
            let leo = this.log.log_end_offset();
            let added = this.epochs.lock().unwrap_or_else(|e| e.into_inner()).assign(epoch, leo);
            if added {
                this.save(true);
            }
            this.log.set_role(WriteRole::Leader { epoch });
            leo
        })
        .await
        .unwrap_or_else(|_| self.log.log_end_offset());
        let now = Instant::now();
        let followers = state
            .value
            .replicas
            .iter()
            .filter(|&&r| r != self.me)
            .map(|&r| {
                (
                    r,
                    Progress {
                        leo: -1,
                        // Members get a full lag time to show up.
                        last_caught_up: now,
                        last_fetch: now,
                        leader_leo_at_last_fetch: -1,
                    },
                )
            })
            .collect();
        *self.role() = Role::Leader(LeaderState {
            epoch,
            epoch_start: start,
            replicas: state.value.replicas.clone(),
            isr: state.value.isr.clone(),
            isr_version: state.mod_revision,
            followers,
            isr_change_in_flight: false,
        });
        tracing::info!(topic = %self.topic, partition = self.partition, epoch, log_end_offset = start, isr = ?state.value.isr, "leading partition");
        self.bump();
        self.recompute_hw();
    }

    /// Becomes a follower of `leader` at `epoch`; `follow` starts the fetch
    /// loop (with a token that cancels it).
    pub async fn become_follower(
        self: &Arc<Self>,
        leader: i32,
        epoch: i32,
        follow: impl FnOnce(CancellationToken) -> tokio::task::JoinHandle<()>,
    ) {
        *self.role() = Role::Follower { leader, epoch };
        self.bump();
        self.stop_following().await;
        let this = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || this.log.set_role(WriteRole::Follower)).await;
        let cancel = CancellationToken::new();
        let task = follow(cancel.clone());
        *self.following.lock().await = Some(Following {
            leader,
            epoch,
            cancel,
            task,
        });
        tracing::info!(topic = %self.topic, partition = self.partition, leader, epoch, "following partition");
    }

    /// Takes no writes and follows no one.
    pub async fn become_offline(self: &Arc<Self>) {
        let was = std::mem::replace(&mut *self.role(), Role::Offline);
        self.bump();
        self.stop_following().await;
        let this = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || this.log.set_role(WriteRole::Offline)).await;
        if !matches!(was, Role::Offline) {
            tracing::info!(topic = %self.topic, partition = self.partition, "partition offline here");
        }
    }

    /// Whether the fetch loop for `(leader, epoch)` is running.
    pub async fn is_following(&self, leader: i32, epoch: i32) -> bool {
        self.following
            .lock()
            .await
            .as_ref()
            .is_some_and(|f| f.leader == leader && f.epoch == epoch && !f.task.is_finished())
    }

    async fn stop_following(&self) {
        let following = self.following.lock().await.take();
        if let Some(f) = following {
            f.cancel.cancel();
            let _ = f.task.await;
        }
    }

    /// Stops the fetch loop at shutdown.
    pub async fn shutdown(&self) {
        self.stop_following().await;
    }

    /// Takes the view's in-sync set when it is newer than the leader's own
    /// (the controller removed a dead node).
    pub fn adopt_isr(&self, state: &Versioned<PartitionState>) {
        let mut role = self.role();
        let Role::Leader(l) = &mut *role else { return };
        if state.value.leader_epoch != l.epoch || state.mod_revision <= l.isr_version {
            return;
        }
        l.isr_version = state.mod_revision;
        l.replicas = state.value.replicas.clone();
        if l.isr != state.value.isr {
            l.isr = state.value.isr.clone();
            drop(role);
            self.bump();
            self.recompute_hw();
        }
    }

    /// The epoch writes are stamped with, if this node may take a write
    /// now: it leads, its session holds, and (for `acks=all`) enough
    /// replicas are in sync.
    ///
    /// # Errors
    /// Why not.
    pub fn ticket(&self, session: &Session, acks_all: bool, min_isr: u32) -> Result<i32, ClusterError> {
        if !session.is_valid() {
            return Err(ClusterError::SessionLost);
        }
        match &*self.role() {
            Role::Leader(l) => {
                if acks_all && l.isr.len() < min_isr as usize {
                    return Err(ClusterError::NotEnoughReplicas {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        isr: l.isr.clone(),
                        min: min_isr,
                    });
                }
                Ok(l.epoch)
            }
            Role::Follower { leader, .. } => Err(self.not_leader(*leader)),
            Role::Offline => Err(self.not_leader(-1)),
        }
    }

    fn not_leader(&self, leader: i32) -> ClusterError {
        ClusterError::NotLeader {
            topic: self.topic.clone(),
            partition: self.partition,
            node: self.me,
            leader,
            leader_url: None,
        }
    }

    /// Waits until the high watermark reaches `target` (every in-sync
    /// replica holds everything below it, fsynced), checking before
    /// answering that this node still leads at `epoch` under a live
    /// session: a leader that lost either acknowledges nothing.
    ///
    /// # Errors
    /// Leadership or session lost, too few replicas in sync, or the wait
    /// timed out.
    pub async fn await_acks(
        &self,
        session: &Session,
        epoch: i32,
        target: i64,
        min_isr: u32,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut hw = self.log.watch_high_watermark();
        let mut changed = self.changed.subscribe();
        let mut sessions = session.subscribe();
        loop {
            self.recompute_hw();
            if !session.is_valid() {
                return Err(ClusterError::SessionLost);
            }
            let isr = match &*self.role() {
                Role::Leader(l) if l.epoch == epoch => l.isr.clone(),
                Role::Follower { leader, .. } => return Err(self.not_leader(*leader)),
                _ => return Err(self.not_leader(-1)),
            };
            if isr.len() < min_isr as usize {
                return Err(ClusterError::NotEnoughReplicasAfterAppend {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    isr,
                    min: min_isr,
                });
            }
            if self.log.high_watermark() >= target {
                return Ok(());
            }
            // The session lapses by the clock, without an event: look again
            // at least this often.
            let tick = tokio::time::sleep(Duration::from_millis(100));
            tokio::select! {
                _ = hw.changed() => {}
                _ = changed.changed() => {}
                _ = sessions.changed() => {}
                () = tick => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(ClusterError::Timeout {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        isr,
                        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    });
                }
            }
        }
    }

    /// A follower's fetch from `offset` at `epoch`: records where it
    /// stands (Kafka's rule: caught up if it fetched the leader's log end,
    /// or reached what the leader held at its previous fetch), and says
    /// whether it may join the in-sync set.
    ///
    /// # Errors
    /// Not leading at `epoch`, not a replica, or an offset outside the log.
    pub fn on_fetch(&self, follower: i32, epoch: i32, offset: i64) -> Result<Option<IsrChange>, FetchRefusal> {
        let mut role = self.role();
        let Role::Leader(l) = &mut *role else {
            let mine = match &*role {
                Role::Follower { epoch, .. } => *epoch,
                _ => -1,
            };
            return Err(FetchRefusal::Fenced { leader_epoch: mine });
        };
        if l.epoch != epoch {
            return Err(FetchRefusal::Fenced { leader_epoch: l.epoch });
        }
        if !l.replicas.contains(&follower) || follower == self.me {
            return Err(FetchRefusal::NotAReplica);
        }
        let view = self.log.end_view();
        let (start, leo) = (view.log_start_offset, view.high_watermark);
        if offset > leo || offset < start {
            return Err(FetchRefusal::OutOfRange {
                log_start_offset: start,
                log_end_offset: leo,
            });
        }
        let now = Instant::now();
        let p = l.followers.entry(follower).or_insert(Progress {
            leo: -1,
            last_caught_up: now,
            last_fetch: now,
            leader_leo_at_last_fetch: -1,
        });
        if offset >= leo {
            p.last_caught_up = now;
        } else if offset >= p.leader_leo_at_last_fetch {
            p.last_caught_up = p.last_caught_up.max(p.last_fetch);
        }
        p.leader_leo_at_last_fetch = leo;
        p.last_fetch = now;
        p.leo = offset;
        let hw = self.log.high_watermark();
        if !l.isr.contains(&follower) && !l.isr_change_in_flight && offset >= hw && offset >= l.epoch_start {
            let mut isr = l.isr.clone();
            isr.push(follower);
            l.isr_change_in_flight = true;
            return Ok(Some(IsrChange {
                epoch: l.epoch,
                expected_version: l.isr_version,
                next: PartitionState {
                    replicas: l.replicas.clone(),
                    leader: self.me,
                    leader_epoch: l.epoch,
                    isr,
                },
            }));
        }
        Ok(None)
    }

    /// In-sync followers that have not caught up for `lag_max`: the
    /// change that drops them, if any and none is in flight.
    pub fn shrink(&self, lag_max: Duration) -> Option<IsrChange> {
        let mut role = self.role();
        let Role::Leader(l) = &mut *role else { return None };
        if l.isr_change_in_flight {
            return None;
        }
        let now = Instant::now();
        let lagging: Vec<i32> = l
            .isr
            .iter()
            .copied()
            .filter(|&r| r != self.me)
            .filter(|r| {
                l.followers
                    .get(r)
                    .is_none_or(|p| now.duration_since(p.last_caught_up) > lag_max)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        l.isr_change_in_flight = true;
        Some(IsrChange {
            epoch: l.epoch,
            expected_version: l.isr_version,
            next: PartitionState {
                replicas: l.replicas.clone(),
                leader: self.me,
                leader_epoch: l.epoch,
                isr: l.isr.iter().copied().filter(|r| !lagging.contains(r)).collect(),
            },
        })
    }

    /// The outcome of an in-sync set change: written at `version`, or not.
    pub fn isr_changed(&self, change: &IsrChange, version: Option<i64>) {
        let mut role = self.role();
        let Role::Leader(l) = &mut *role else { return };
        if l.epoch != change.epoch {
            return;
        }
        l.isr_change_in_flight = false;
        let Some(version) = version else { return };
        if version > l.isr_version {
            let before = std::mem::replace(&mut l.isr, change.next.isr.clone());
            l.isr_version = version;
            tracing::info!(topic = %self.topic, partition = self.partition, epoch = l.epoch, from = ?before, to = ?l.isr, "in-sync replicas changed");
            if change.next.isr.len() < before.len() {
                crate::metrics::isr_changed("shrink");
            } else {
                crate::metrics::isr_changed("expand");
            }
            drop(role);
            self.bump();
            self.recompute_hw();
        }
    }

    /// Moves the high watermark to the lowest log end of the in-sync set,
    /// when every member's is known.
    pub fn recompute_hw(&self) {
        let role = self.role();
        let Role::Leader(l) = &*role else { return };
        let mut hw = self.log.log_end_offset();
        for r in &l.isr {
            if *r == self.me {
                continue;
            }
            match l.followers.get(r) {
                Some(p) if p.leo >= 0 => hw = hw.min(p.leo),
                _ => return,
            }
        }
        drop(role);
        self.log.advance_high_watermark(hw);
    }

    /// Followers' lag in records (leader only), for metrics.
    pub fn follower_lag(&self) -> Vec<(i32, i64)> {
        let role = self.role();
        let Role::Leader(l) = &*role else { return Vec::new() };
        let leo = self.log.log_end_offset();
        l.followers
            .iter()
            .map(|(&r, p)| (r, if p.leo < 0 { leo } else { leo - p.leo }))
            .collect()
    }

    /// Appends batches copied from the leader (a fetch answer's body, and
    /// its `x-logpost-batch-stats` header if any): checks each frame's CRC,
    /// records new leader epochs first (so that a crash never leaves
    /// batches of an epoch the cache does not know), then appends them at
    /// their own offsets, with the stats the leader shipped for those it
    /// matches exactly (see [`copied`]). Blocking.
    ///
    /// # Errors
    /// A corrupt frame, a batch that does not continue the log, or the
    /// store's errors.
    pub fn append_copied(&self, body: &Bytes, stats_header: Option<&str>, sync: bool) -> Result<usize, StoreError> {
        let shipped = copied::shipped_stats(&self.topic, self.partition, stats_header);
        let copies = copied::copied(&self.topic, self.partition, body, &shipped)?;
        if copies.items.is_empty() {
            return Ok(0);
        }
        let added = {
            let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
            copies
                .epochs
                .iter()
                .filter(|&&(e, _)| e >= 0)
                .fold(false, |added, &(e, start)| epochs.assign(e, start) || added)
        };
        if added {
            self.save(true);
        }
        let refs: Vec<&AppendItem> = copies.items.iter().collect();
        self.log.append(&refs, sync, false)?;
        crate::metrics::replicated_batches(copies.shipped, copies.rebuilt);
        Ok(copies.items.len())
    }

    /// Cuts the log to `offset` and forgets the epochs past it. Blocking.
    ///
    /// # Errors
    /// As [`Partition::truncate_to`].
    pub fn truncate(&self, offset: i64) -> Result<i64, StoreError> {
        let report = self.log.truncate_to(offset)?;
        self.forget_epochs_past(report.log_end_offset);
        Ok(report.log_end_offset)
    }

    /// Empties the log and starts it at `offset`. Blocking.
    ///
    /// # Errors
    /// As [`Partition::truncate_fully_and_start_at`].
    pub fn restart_at(&self, offset: i64) -> Result<(), StoreError> {
        self.log.truncate_fully_and_start_at(offset)?;
        self.forget_epochs_past(offset);
        Ok(())
    }

    fn forget_epochs_past(&self, end: i64) {
        let cut = self
            .epochs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .truncate_from_end(end);
        if cut || *self.saved_hw.lock().unwrap_or_else(|e| e.into_inner()) > end {
            self.save(true);
        }
    }
}

pub mod copied;
#[cfg(test)]
mod tests;
