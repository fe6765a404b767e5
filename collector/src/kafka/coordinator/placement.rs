//! The coordinator's seam to a cluster: which node serves a group, and
//! where its commits are kept (`in_cluster` implements it).

use super::CommittedOffset;
use crate::kafka::error::KafkaError;

/// Where groups are coordinated and their commits kept when this node is
/// one of a cluster's (`in_cluster`): a group belongs to one node at a
/// time, and its committed offsets ride a replicated log.
pub trait GroupPlacement: Send + Sync + 'static {
    /// The node that coordinates `group` now (FindCoordinator).
    ///
    /// # Errors
    /// COORDINATOR_NOT_AVAILABLE while none can (no leader yet).
    fn locate(&self, group: &str) -> Result<i32, KafkaError>;
    /// Whether this node coordinates `group` now: `Ok(None)` if it does
    /// and has its offsets in memory; `Ok(Some(reload))` if it has just
    /// become the coordinator of the groups `reload` owns (their state in
    /// memory is replaced by `reload`); or NOT_COORDINATOR /
    /// COORDINATOR_NOT_AVAILABLE. Called with the coordinator's lock held.
    ///
    /// # Errors
    /// Another node coordinates the group, or none can now.
    fn claim(&self, group: &str) -> Result<Option<Reload>, KafkaError>;
    /// Stores `commits` durably on the group's replicas before returning.
    /// Called from a blocking thread, one call at a time.
    ///
    /// # Errors
    /// This node no longer coordinates the groups, or too few replicas.
    fn save(&self, commits: &[CommittedOffset]) -> Result<(), KafkaError>;
}

/// What a node that has just become coordinator knows of its groups.
pub struct Reload {
    /// Whether a group belongs to the reloaded set.
    pub owns: Box<dyn Fn(&str) -> bool + Send>,
    /// Their committed offsets, oldest first (later entries win).
    pub offsets: Vec<CommittedOffset>,
}
