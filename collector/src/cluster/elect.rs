//! The controller's decisions, as a pure function of the cluster's state:
//! whether this node is the controller, which partitions need a new
//! leader (theirs is gone, or the preferred replica is back and in sync)
//! and which in-sync sets lose dead nodes.
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

/// The term this node controls under now, if it is the controller.
///
/// The view decides: the node is the controller while the controller key
/// names it under its current session's `lease`, whatever happened
/// meanwhile (its session seemed lapsed for a moment on a starved
/// machine, say). Only until the view has caught up with a campaign this
/// node just `won` (at that revision) does the won term stand on its own:
/// the view is late then, not wrong. Deciding from the node's memory
/// instead once left a cluster without a controller: the winner read a
/// view older than its own write, took itself for deposed, and never
/// campaigned again because the key (its own) existed.
pub fn controller_term(view: &ClusterView, me: i32, lease: i64, won: Option<i64>) -> Option<i64> {
    if let Some(c) = view.controller
        && c.node_id == me
        && lease != 0
        && c.lease == lease
    {
        return Some(c.term);
    }
    won.filter(|&term| view.revision < term)
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
    use crate::cluster::meta::ElectedController;

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

    fn view(revision: i64, controller: Option<(i32, i64, i64)>) -> ClusterView {
        ClusterView {
            revision,
            controller: controller.map(|(node_id, term, lease)| ElectedController { node_id, term, lease }),
            ..ClusterView::default()
        }
    }

    #[test]
    fn a_campaign_won_stands_until_the_view_shows_its_key() {
        // Won at revision 4; the view still reads revision 3, no
        // controller: the node controls (this view once made it step down
        // for good).
        assert_eq!(controller_term(&view(3, None), 1, 77, Some(4)), Some(4));
        // The view caught up and shows the key: the view's term.
        assert_eq!(controller_term(&view(5, Some((1, 4, 77))), 1, 77, Some(4)), Some(4));
        assert_eq!(controller_term(&view(5, Some((1, 4, 77))), 1, 77, None), Some(4));
        // The view is past the campaign and the key is gone (lease
        // expired) or another node's: not the controller.
        assert_eq!(controller_term(&view(9, None), 1, 77, Some(4)), None);
        assert_eq!(controller_term(&view(9, Some((2, 8, 55))), 1, 77, Some(4)), None);
    }

    #[test]
    fn the_key_under_this_nodes_lease_makes_it_controller_again() {
        // The loop forgot its term (a moment without a valid session), but
        // the key is still its own: it controls again, with the key's term.
        assert_eq!(controller_term(&view(40, Some((1, 4, 77))), 1, 77, None), Some(4));
        // A key left by an earlier session of this node (a lease that is
        // expiring) is not: writes under it would fail, and the node
        // campaigns once it is gone.
        assert_eq!(controller_term(&view(40, Some((1, 4, 66))), 1, 77, None), None);
        assert_eq!(controller_term(&view(40, Some((1, 4, 0))), 1, 0, None), None);
        assert_eq!(controller_term(&view(40, Some((2, 4, 77))), 1, 77, None), None);
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
