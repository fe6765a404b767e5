//! The controller's decisions, as a pure function of the cluster's state:
//! which partitions need a new leader (theirs is gone, or the preferred
//! replica is back and in sync) and which in-sync sets lose dead nodes.
//!
//! Rules (Kafka's, before KRaft):
//! - Only an in-sync replica that is alive becomes leader; replicas are
//!   tried in their listed order. If none is alive the partition has no
//!   leader, and its in-sync set keeps its last members, so that one of
//!   them, returning, can lead with everything acknowledged. A topic that
//!   allows unclean election takes any live replica instead.
//! - Every change of leader bumps the leader epoch.
//! - Dead nodes leave the in-sync set of partitions whose leader lives
//!   (no epoch change): the leader stops waiting for them at once.
//! - The preferred replica (the first) gets its leadership back once it is
//!   alive and in sync.
//!
//! The controller only ever removes nodes from an in-sync set; only the
//! leader adds them back (once caught up). So a leader's own idea of its
//! in-sync set is never smaller than the truth, which is what makes its
//! high watermark safe.

use super::meta::{ClusterView, NO_LEADER, PartitionState};

/// One partition's next state, to write if its key is still at `mod_revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub topic: String,
    pub partition: u32,
    pub mod_revision: i64,
    pub next: PartitionState,
    pub why: &'static str,
}

/// What the controller should change now. `unclean_default` is
/// `[cluster] unclean_leader_election`; topics may override it.
pub fn decide(view: &ClusterView, unclean_default: bool) -> Vec<Change> {
    let mut changes = Vec::new();
    for ((topic, partition), state) in &view.partitions {
        let unclean = view
            .topics
            .get(topic)
            .and_then(|t| t.value.unclean_leader_election)
            .unwrap_or(unclean_default);
        if let Some((next, why)) = next_state(&state.value, |n| view.is_live(n), unclean) {
            changes.push(Change {
                topic: topic.clone(),
                partition: *partition,
                mod_revision: state.mod_revision,
                next,
                why,
            });
        }
    }
    changes
}

/// The next state of one partition, if it should change.
pub fn next_state(
    s: &PartitionState,
    live: impl Fn(i32) -> bool,
    unclean: bool,
) -> Option<(PartitionState, &'static str)> {
    let leader_alive = s.leader != NO_LEADER && live(s.leader);
    if !leader_alive {
        let in_sync = s.replicas.iter().copied().find(|&r| s.isr.contains(&r) && live(r));
        let (leader, isr, why) = match in_sync {
            Some(l) => (
                l,
                s.isr.iter().copied().filter(|&r| live(r)).collect(),
                "leader gone: an in-sync replica takes over",
            ),
            None => match s.replicas.iter().copied().find(|&r| live(r)).filter(|_| unclean) {
                Some(l) => (l, vec![l], "leader gone, no in-sync replica alive: unclean election"),
                None if s.leader == NO_LEADER => return None,
                None => (
                    NO_LEADER,
                    s.isr.clone(),
                    "leader gone, no in-sync replica alive: offline",
                ),
            },
        };
        return Some((
            PartitionState {
                replicas: s.replicas.clone(),
                leader,
                leader_epoch: s.leader_epoch + 1,
                isr,
            },
            why,
        ));
    }
    let isr: Vec<i32> = s.isr.iter().copied().filter(|&r| r == s.leader || live(r)).collect();
    if isr != s.isr {
        return Some((
            PartitionState { isr, ..s.clone() },
            "dead replicas leave the in-sync set",
        ));
    }
    let preferred = s.replicas.first().copied()?;
    if preferred != s.leader && live(preferred) && s.isr.contains(&preferred) {
        return Some((
            PartitionState {
                leader: preferred,
                leader_epoch: s.leader_epoch + 1,
                ..s.clone()
            },
            "preferred replica in sync again: it leads",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
        }
    }

    fn alive(nodes: &'static [i32]) -> impl Fn(i32) -> bool {
        move |n| nodes.contains(&n)
    }

    #[test]
    fn a_dead_leader_is_replaced_by_the_first_live_in_sync_replica() {
        let s = state(&[1, 2, 3], 1, 4, &[1, 2, 3]);
        let (next, _) = next_state(&s, alive(&[2, 3]), false).unwrap();
        assert_eq!(next, state(&[1, 2, 3], 2, 5, &[2, 3]));
        // Not in sync: never leader, even if listed first.
        let s = state(&[1, 2, 3], 1, 4, &[1, 3]);
        let (next, _) = next_state(&s, alive(&[2, 3]), false).unwrap();
        assert_eq!((next.leader, next.isr), (3, vec![3]));
    }

    #[test]
    fn without_a_live_in_sync_replica_the_partition_waits_for_one() {
        let s = state(&[1, 2, 3], 1, 4, &[1]);
        let (next, why) = next_state(&s, alive(&[2, 3]), false).unwrap();
        assert_eq!(next, state(&[1, 2, 3], NO_LEADER, 5, &[1]), "{why}");
        assert_eq!(next_state(&next, alive(&[2, 3]), false), None, "stays offline");
        let (back, _) = next_state(&next, alive(&[1, 2, 3]), false).unwrap();
        assert_eq!(
            (back.leader, back.leader_epoch),
            (1, 6),
            "the last in-sync replica returns"
        );
        let (unclean, _) = next_state(&s, alive(&[3]), true).unwrap();
        assert_eq!((unclean.leader, unclean.isr), (3, vec![3]));
    }

    #[test]
    fn dead_followers_leave_the_isr_without_a_new_epoch() {
        let s = state(&[1, 2, 3], 1, 4, &[1, 2, 3]);
        let (next, _) = next_state(&s, alive(&[1, 2]), false).unwrap();
        assert_eq!(next, state(&[1, 2, 3], 1, 4, &[1, 2]));
        assert_eq!(next_state(&s, alive(&[1, 2, 3]), false), None);
    }

    #[test]
    fn the_preferred_replica_leads_again_once_in_sync() {
        let s = state(&[1, 2, 3], 2, 5, &[2, 3]);
        assert_eq!(next_state(&s, alive(&[1, 2, 3]), false), None, "alive but not in sync");
        let s = state(&[1, 2, 3], 2, 5, &[2, 3, 1]);
        let (next, _) = next_state(&s, alive(&[1, 2, 3]), false).unwrap();
        assert_eq!((next.leader, next.leader_epoch, next.isr), (1, 6, vec![2, 3, 1]));
    }
}
