//! One consumer group's state machine: its members, generation, leader,
//! and the transitions between Kafka's group states. [`super::state::Groups`]
//! routes requests here; this module owns what a single group does with them.

use super::assign::{decode_subscription, encode_assignment, range_assign};
use super::state::{GroupState, PartitionCount};
use super::{CoordinatorConfig, JoinMember, JoinRequest, JoinResult, SyncResult};
use crate::kafka::error::KafkaError;
use bytes::Bytes;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A member as the coordinator tracks it.
pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) last_seen: Instant,
    pub(super) awaiting_join: Option<oneshot::Sender<JoinResult>>,
    pub(super) awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    pub(super) assignment: Bytes,
}

impl Member {
    pub(super) fn metadata(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| Some(n.as_str()) == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    // Members parked on a JoinGroup or SyncGroup reply are alive by
    // definition: the rebalance timeout, not the session, bounds them.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.awaiting_join.is_none() && self.awaiting_sync.is_none() && now >= self.last_seen + self.session_timeout
    }
}

/// One group: membership, generation and where it is in a rebalance.
pub(super) struct Group {
    pub(super) id: String,
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: String,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: Vec<Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pub(super) pending: Vec<(String, Instant)>,
    pub(super) rebalance_deadline: Option<Instant>,
    /// Initial rebalance delay: a new group waits this long for more members.
    pub(super) not_before: Option<Instant>,
}

pub(super) fn send<T>(tx: oneshot::Sender<T>, value: T) {
    // The requester may have gone away; the state change stands regardless.
    let _ = tx.send(value);
}

impl Group {
    pub(super) fn new(id: &str, protocol_type: &str) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: protocol_type.to_string(),
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: Vec::new(),
            rebalance_deadline: None,
            not_before: None,
        }
    }

    /// No members, none pending: nothing left to coordinate.
    pub(super) fn is_idle(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending.is_empty()
    }

    pub(super) fn index_of(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == member_id)
    }

    /// Protocols every member supports, in the first member's preference order.
    pub(super) fn candidates(&self) -> Vec<&str> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| self.members.iter().all(|m| m.protocols.iter().any(|(p, _)| p == n)))
            .collect()
    }

    pub(super) fn accepts(&self, req: &JoinRequest) -> bool {
        if self.members.is_empty() {
            return true;
        }
        req.protocol_type == self.protocol_type
            && self
                .candidates()
                .iter()
                .any(|c| req.protocols.iter().any(|(p, _)| p == c))
    }

    /// Each member votes for its most preferred candidate; most votes wins,
    /// ties going to the first member's preference (Kafka's rule).
    pub(super) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes = vec![0usize; candidates.len()];
        for m in &self.members {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(p, _)| candidates.iter().position(|c| c == p))
                && let Some(v) = votes.get_mut(i)
            {
                *v += 1;
            }
        }
        let best = votes
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i)?;
        candidates.get(best).map(|s| s.to_string())
    }

    pub(super) fn add_member(
        &mut self,
        id: String,
        req: &JoinRequest,
        reply: oneshot::Sender<JoinResult>,
        now: Instant,
    ) {
        if self.members.is_empty() {
            self.protocol_type = req.protocol_type.clone();
        }
        let session_timeout = ms(req.session_timeout_ms);
        let rebalance_timeout = if req.rebalance_timeout_ms > 0 {
            ms(req.rebalance_timeout_ms)
        } else {
            session_timeout
        };
        self.members.push(Member {
            id,
            instance_id: req.group_instance_id.clone(),
            session_timeout,
            rebalance_timeout,
            protocols: req.protocols.clone(),
            last_seen: now,
            awaiting_join: Some(reply),
            awaiting_sync: None,
            assignment: Bytes::new(),
        });
    }

    pub(super) fn prepare_rebalance(&mut self, now: Instant, config: &CoordinatorConfig) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        for m in &mut self.members {
            if let Some(tx) = m.awaiting_sync.take() {
                send(tx, SyncResult::failed(KafkaError::REBALANCE_IN_PROGRESS));
            }
        }
        let timeout = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        let deadline = now + timeout;
        self.not_before = (self.state == GroupState::Empty && !config.initial_rebalance_delay.is_zero())
            .then(|| after(now, config.initial_rebalance_delay).min(deadline));
        self.rebalance_deadline = Some(deadline);
        self.state = GroupState::PreparingRebalance;
    }

    /// A new member arrived: start a rebalance, or, during the initial
    /// delay, push the delay out so that members starting together land in
    /// one generation.
    pub(super) fn member_added(&mut self, now: Instant, config: &CoordinatorConfig) {
        if self.state == GroupState::PreparingRebalance {
            if let (Some(nb), Some(deadline)) = (self.not_before.as_mut(), self.rebalance_deadline) {
                *nb = after(now, config.initial_rebalance_delay).min(deadline);
            }
        } else {
            self.prepare_rebalance(now, config);
        }
    }

    pub(super) fn remove_member(&mut self, index: usize, error: KafkaError, now: Instant, config: &CoordinatorConfig) {
        if index >= self.members.len() {
            return;
        }
        let m = self.members.remove(index);
        if let Some(tx) = m.awaiting_join {
            send(tx, JoinResult::failed(error, &m.id));
        }
        if let Some(tx) = m.awaiting_sync {
            send(tx, SyncResult::failed(error));
        }
        if self.leader.as_deref() == Some(m.id.as_str()) {
            self.leader = None;
        }
        if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance) {
            self.prepare_rebalance(now, config);
        }
    }

    pub(super) fn join_result(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let members = if is_leader {
            let protocol = self.protocol.as_deref();
            self.members
                .iter()
                .map(|m| JoinMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m.metadata(protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation_id: self.generation,
            protocol_name: self.protocol.clone(),
            leader_id: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    pub(super) fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.pending.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some());
        let delay_over = self.not_before.is_none_or(|t| now >= t);
        let timed_out = self.rebalance_deadline.is_some_and(|d| now >= d);
        let ready = all_joined && delay_over;
        if !ready && !timed_out {
            return;
        }
        if timed_out {
            // Members that did not rejoin in time are out of the group.
            self.members.retain(|m| m.awaiting_join.is_some());
            self.pending.clear();
            if let Some(l) = &self.leader
                && !self.members.iter().any(|m| &m.id == l)
            {
                self.leader = None;
            }
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        self.rebalance_deadline = None;
        self.not_before = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.is_none() {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            protocol = ?self.protocol,
            leader = ?self.leader,
            members = self.members.len(),
            "join phase complete"
        );
        let results: Vec<JoinResult> = self.members.iter().map(|m| self.join_result(&m.id)).collect();
        for (m, result) in self.members.iter_mut().zip(results) {
            m.assignment = Bytes::new();
            m.last_seen = now;
            if let Some(tx) = m.awaiting_join.take() {
                send(tx, result);
            }
        }
    }

    pub(super) fn finish_sync(&mut self, mut assignments: HashMap<String, Bytes>) {
        self.state = GroupState::Stable;
        for m in &mut self.members {
            m.assignment = assignments.remove(&m.id).unwrap_or_default();
            if let Some(tx) = m.awaiting_sync.take() {
                send(
                    tx,
                    SyncResult {
                        error: None,
                        assignment: m.assignment.clone(),
                    },
                );
            }
        }
    }

    pub(super) fn logpost_assignments(&self, partition_count: &PartitionCount) -> HashMap<String, Bytes> {
        let protocol = self.protocol.as_deref();
        let subscriptions: Vec<(String, Vec<String>)> = self
            .members
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    decode_subscription(&m.metadata(protocol)).unwrap_or_default(),
                )
            })
            .collect();
        range_assign(&subscriptions, partition_count)
            .into_iter()
            .map(|(member, assignment)| (member, encode_assignment(&assignment)))
            .collect()
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none());
        let rebalance = if self.state == GroupState::PreparingRebalance {
            [self.rebalance_deadline, self.not_before]
        } else {
            [None, None]
        };
        sessions
            .map(|m| m.last_seen + m.session_timeout)
            .chain(self.pending.iter().map(|(_, t)| *t))
            .chain(rebalance.into_iter().flatten())
            .min()
    }
}

/// `now + d`, saturating instead of panicking for absurd configured durations.
pub(super) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or(now + Duration::from_secs(10 * 365 * 24 * 3600))
}

pub(super) fn ms(v: i32) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}
