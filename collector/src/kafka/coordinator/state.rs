//! The group membership state machine, with Kafka's classic-protocol
//! semantics and no I/O: time comes in as `now`, replies go out through
//! oneshot senders, and the caller drives expiry with [`Groups::tick`] at
//! [`Groups::next_deadline`]. Everything is therefore testable without
//! sleeping or sockets.
//!
//! States follow Kafka's `GroupCoordinator`: Empty → PreparingRebalance
//! (collecting JoinGroups) → CompletingRebalance (waiting for the leader's
//! SyncGroup) → Stable. For protocol type "logpost" the coordinator computes
//! the assignment itself at the first SyncGroup, so no member acts as leader.

use super::group::{Group, ms, send};
use super::{CoordinatorConfig, JoinRequest, JoinResult, LOGPOST_PROTOCOL_TYPE, SyncRequest, SyncResult};
use crate::kafka::error::KafkaError;
use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Looks up a topic's partition count (for server-side assignment).
pub type PartitionCount = dyn Fn(&str) -> Option<i32> + Send + Sync;

/// Where a group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may still exist).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the assignment (the leader's SyncGroup).
    CompletingRebalance,
    /// Everyone has an assignment.
    Stable,
}

/// A snapshot of a group, for observers and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Current state.
    pub state: GroupState,
    /// Current generation.
    pub generation: i32,
    /// Chosen protocol (assignor) name.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// `(member id, assignment bytes)` in join order.
    pub members: Vec<(String, Bytes)>,
}

/// All groups of one coordinator.
pub struct Groups {
    config: CoordinatorConfig,
    groups: HashMap<String, Group>,
    partition_count: Arc<PartitionCount>,
    id_seed: RandomState,
    next_id: u64,
}

impl Groups {
    /// No groups yet. `partition_count` serves "logpost" assignment.
    pub fn new(config: CoordinatorConfig, partition_count: Arc<PartitionCount>) -> Self {
        Groups {
            config,
            groups: HashMap::new(),
            partition_count,
            id_seed: RandomState::new(),
            next_id: 0,
        }
    }

    // Kafka uses `client_id-UUID`; a random per-process seed keeps ids
    // from a previous run from matching ids handed out by this one.
    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_id += 1;
        let noise = self.id_seed.hash_one(self.next_id);
        let prefix: String = client_id.chars().take(64).collect();
        format!("{prefix}-{noise:016x}-{:x}", self.next_id)
    }

    /// Handles a JoinGroup; `reply` gets the result now or when the join
    /// phase completes.
    pub fn join(&mut self, req: JoinRequest, reply: oneshot::Sender<JoinResult>, now: Instant) {
        let group_id = req.group_id.clone();
        self.join_one(req, reply, now);
        self.prune(&group_id);
    }

    fn join_one(&mut self, req: JoinRequest, reply: oneshot::Sender<JoinResult>, now: Instant) {
        let session = ms(req.session_timeout_ms);
        let error = if req.group_id.is_empty() {
            Some(KafkaError::INVALID_GROUP_ID)
        } else if session < self.config.min_session_timeout || session > self.config.max_session_timeout {
            Some(KafkaError::INVALID_SESSION_TIMEOUT)
        } else if req.protocol_type.is_empty() || req.protocols.is_empty() {
            Some(KafkaError::INCONSISTENT_GROUP_PROTOCOL)
        } else if !req.member_id.is_empty() && !self.groups.contains_key(&req.group_id) {
            Some(KafkaError::UNKNOWN_MEMBER_ID)
        } else {
            None
        };
        if let Some(e) = error {
            return send(reply, JoinResult::failed(e, &req.member_id));
        }
        let new_id = req.member_id.is_empty().then(|| self.new_member_id(&req.client_id));
        let config = self.config.clone();
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(&req.group_id, &req.protocol_type));
        if !group.accepts(&req) {
            return send(
                reply,
                JoinResult::failed(KafkaError::INCONSISTENT_GROUP_PROTOCOL, &req.member_id),
            );
        }
        match new_id {
            Some(id) => {
                if group.members.len() + group.pending.len() >= config.max_group_size {
                    return send(reply, JoinResult::failed(KafkaError::GROUP_MAX_SIZE_REACHED, ""));
                }
                // A static member restarting replaces (fences) its old incarnation.
                if let Some(instance) = &req.group_instance_id
                    && let Some(i) = group
                        .members
                        .iter()
                        .position(|m| m.instance_id.as_ref() == Some(instance))
                {
                    group.remove_member(i, KafkaError::FENCED_INSTANCE_ID, now, &config);
                }
                if req.require_known_member_id {
                    group.pending.push((id.clone(), now + session));
                    return send(reply, JoinResult::failed(KafkaError::MEMBER_ID_REQUIRED, &id));
                }
                group.add_member(id, &req, reply, now);
                group.member_added(now, &config);
            }
            None => {
                if let Some(i) = group.pending.iter().position(|(p, _)| *p == req.member_id) {
                    group.pending.remove(i);
                    group.add_member(req.member_id.clone(), &req, reply, now);
                    group.member_added(now, &config);
                } else if let Some(i) = group.index_of(&req.member_id) {
                    let state = group.state;
                    let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
                    let Some(member) = group.members.get_mut(i) else { return };
                    let changed = member.protocols != req.protocols;
                    member.protocols = req.protocols.clone();
                    member.session_timeout = session;
                    member.last_seen = now;
                    let unchanged_rejoin = !changed
                        && (state == GroupState::CompletingRebalance || (state == GroupState::Stable && !is_leader));
                    if unchanged_rejoin {
                        // A lost JoinGroup response: answer with the current generation.
                        let result = group.join_result(&req.member_id);
                        return send(reply, result);
                    }
                    member.awaiting_join = Some(reply);
                    group.prepare_rebalance(now, &config);
                } else {
                    return send(reply, JoinResult::failed(KafkaError::UNKNOWN_MEMBER_ID, &req.member_id));
                }
            }
        }
        group.maybe_complete_join(now);
    }

    /// Forgets `group_id` if it has neither members nor pending members
    /// (its committed offsets live elsewhere and are unaffected).
    fn prune(&mut self, group_id: &str) {
        if self.groups.get(group_id).is_some_and(Group::is_idle) {
            self.groups.remove(group_id);
        }
    }

    /// Handles a SyncGroup; `reply` gets the member's assignment once the
    /// leader (or, for "logpost" groups, the coordinator) has provided it.
    pub fn sync(&mut self, req: SyncRequest, reply: oneshot::Sender<SyncResult>, now: Instant) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return send(reply, SyncResult::failed(KafkaError::UNKNOWN_MEMBER_ID));
        };
        let Some(i) = group.index_of(&req.member_id) else {
            return send(reply, SyncResult::failed(KafkaError::UNKNOWN_MEMBER_ID));
        };
        if req.generation_id != group.generation {
            return send(reply, SyncResult::failed(KafkaError::ILLEGAL_GENERATION));
        }
        let Some(member) = group.members.get_mut(i) else { return };
        member.last_seen = now;
        match group.state {
            GroupState::Empty => send(reply, SyncResult::failed(KafkaError::UNKNOWN_MEMBER_ID)),
            GroupState::PreparingRebalance => send(reply, SyncResult::failed(KafkaError::REBALANCE_IN_PROGRESS)),
            GroupState::Stable => send(
                reply,
                SyncResult {
                    error: None,
                    assignment: member.assignment.clone(),
                },
            ),
            GroupState::CompletingRebalance => {
                member.awaiting_sync = Some(reply);
                if group.protocol_type == LOGPOST_PROTOCOL_TYPE {
                    let assignments = group.logpost_assignments(&*self.partition_count);
                    group.finish_sync(assignments);
                } else if group.leader.as_deref() == Some(req.member_id.as_str()) {
                    group.finish_sync(req.assignments.into_iter().collect());
                }
            }
        }
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        now: Instant,
    ) -> Result<(), KafkaError> {
        let group = self.groups.get_mut(group_id).ok_or(KafkaError::UNKNOWN_MEMBER_ID)?;
        let state = group.state;
        let current = group.generation;
        let member = group
            .members
            .iter_mut()
            .find(|m| m.id == member_id)
            .ok_or(KafkaError::UNKNOWN_MEMBER_ID)?;
        if generation != current {
            return Err(KafkaError::ILLEGAL_GENERATION);
        }
        member.last_seen = now;
        match state {
            GroupState::PreparingRebalance => Err(KafkaError::REBALANCE_IN_PROGRESS),
            GroupState::Empty => Err(KafkaError::UNKNOWN_MEMBER_ID),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// Handles one member of a LeaveGroup, named by member id or, for a
    /// static member, by instance id.
    pub fn leave(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), KafkaError> {
        let result = self.leave_one(group_id, member_id, instance_id, now);
        self.prune(group_id);
        result
    }

    fn leave_one(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), KafkaError> {
        let group = self.groups.get_mut(group_id).ok_or(KafkaError::UNKNOWN_MEMBER_ID)?;
        if let Some(i) = group.pending.iter().position(|(p, _)| p == member_id) {
            group.pending.remove(i);
            group.maybe_complete_join(now);
            return Ok(());
        }
        let index = group
            .members
            .iter()
            .position(|m| {
                (!member_id.is_empty() && m.id == member_id)
                    || (m.instance_id.is_some() && m.instance_id.as_deref() == instance_id)
            })
            .ok_or(KafkaError::UNKNOWN_MEMBER_ID)?;
        group.remove_member(index, KafkaError::UNKNOWN_MEMBER_ID, now, &self.config);
        group.maybe_complete_join(now);
        Ok(())
    }

    /// Whether an OffsetCommit from `(generation, member_id)` is allowed now
    /// (Kafka's rules: commits outside group management need generation -1
    /// and no active membership; members commit in their own generation,
    /// also while a rebalance is being prepared, but not while it completes).
    pub fn check_commit(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        now: Instant,
    ) -> Result<(), KafkaError> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(KafkaError::ILLEGAL_GENERATION)
            };
        };
        if generation < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        let state = group.state;
        let current = group.generation;
        let member = group
            .members
            .iter_mut()
            .find(|m| m.id == member_id)
            .ok_or(KafkaError::UNKNOWN_MEMBER_ID)?;
        if generation != current {
            return Err(KafkaError::ILLEGAL_GENERATION);
        }
        if state == GroupState::CompletingRebalance {
            return Err(KafkaError::REBALANCE_IN_PROGRESS);
        }
        member.last_seen = now;
        Ok(())
    }

    /// Expires sessions and pending member ids, ends join phases whose delay
    /// or timeout passed, and forgets empty groups.
    pub fn tick(&mut self, now: Instant) {
        let config = &self.config;
        for group in self.groups.values_mut() {
            group.pending.retain(|(_, until)| *until > now);
            while let Some(i) = group.members.iter().position(|m| m.expired(now)) {
                if let Some(m) = group.members.get(i) {
                    tracing::info!(group = %group.id, member = %m.id, "session expired");
                }
                group.remove_member(i, KafkaError::UNKNOWN_MEMBER_ID, now, config);
            }
            group.maybe_complete_join(now);
        }
        self.groups
            .retain(|_, g| !(g.state == GroupState::Empty && g.members.is_empty() && g.pending.is_empty()));
    }

    /// Drops every group `owned` picks, members and all (their pending
    /// joins and syncs end with the coordinator gone): another node
    /// coordinated them meanwhile.
    pub fn forget(&mut self, owned: impl Fn(&str) -> bool) {
        self.groups.retain(|id, _| !owned(id));
    }

    /// The earliest instant at which [`Groups::tick`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups.values().filter_map(Group::next_deadline).min()
    }

    /// A snapshot of one group.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let g = self.groups.get(group_id)?;
        Some(GroupDescription {
            state: g.state,
            generation: g.generation,
            protocol: g.protocol.clone(),
            leader: g.leader.clone(),
            members: g.members.iter().map(|m| (m.id.clone(), m.assignment.clone())).collect(),
        })
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
