//! The controller: one node at a time, elected through etcd (the first to
//! create the controller key under its lease wins; the key goes with the
//! lease). It watches the cluster's state and writes what [`elect`]
//! decides: new leaders for partitions whose leader is gone, in-sync sets
//! without dead nodes, leadership back to preferred replicas.
//!
//! Whether this node is the controller is read from its view each time
//! round ([`controller_term`]), not remembered: a node that holds the key
//! always acts, and one that does not never does.
//!
//! Every write is a compare-and-swap on the partition's revision *and* on
//! the controller key's creation revision, so a controller that lost its
//! lease (and may not know it yet) changes nothing.
//!
//! [`elect`]: super::elect

use std::sync::Arc;
use std::time::Duration;

use super::elect::{Change, controller_term, decide};
use super::etcd::{Compare, Op};
use super::meta::{ControllerRecord, NO_LEADER};
use super::node::Cluster;

/// How often the controller looks again without a change (a missed
/// event, a failed write).
const TICK: Duration = Duration::from_secs(1);

/// Campaigns, and acts while elected, until the node shuts down.
pub async fn run(cluster: &Arc<Cluster>) {
    let mut views = cluster.subscribe();
    let mut sessions = cluster.session.subscribe();
    // The term of the last campaign won, for as long as the view may not
    // show it yet.
    let mut won: Option<i64> = None;
    let mut acting: Option<i64> = None;
    loop {
        if cluster.cancel.is_cancelled() {
            return;
        }
        let view = cluster.view();
        let valid = cluster.session.is_valid();
        let mut term = if valid {
            controller_term(&view, cluster.me.id, cluster.session.lease(), won)
        } else {
            None
        };
        if term.is_none() && view.controller.is_none() && valid {
            won = campaign(cluster).await;
            term = won;
        }
        if term != acting {
            match term {
                Some(t) => tracing::info!(node = cluster.me.id, term = t, "acting as the controller"),
                None => tracing::info!(node = cluster.me.id, "no longer the controller"),
            }
            acting = term;
        }
        if let Some(t) = term {
            for change in decide(&view, cluster.settings.unclean_leader_election) {
                if !apply(cluster, t, &change).await {
                    break;
                }
            }
        }
        tokio::select! {
            _ = views.changed() => {}
            _ = sessions.changed() => {}
            () = tokio::time::sleep(TICK) => {}
            () = cluster.cancel.cancelled() => return,
        }
    }
}

/// Tries to become controller; the term (the key's creation revision) if so.
async fn campaign(cluster: &Cluster) -> Option<i64> {
    let key = cluster.keys.controller();
    let value = serde_json::to_vec(&ControllerRecord { node_id: cluster.me.id }).unwrap_or_default();
    match cluster
        .etcd
        .txn(
            &[Compare::CreateRevision(key.clone(), 0)],
            &[Op::Put {
                key,
                value,
                lease: cluster.session.lease(),
            }],
        )
        .await
    {
        Ok((true, revision)) => {
            tracing::info!(node = cluster.me.id, term = revision, "elected controller");
            Some(revision)
        }
        Ok((false, _)) => None,
        Err(e) => {
            tracing::debug!(error = %crate::http::error::chain(&e), "cannot campaign for controller");
            None
        }
    }
}

/// Writes one change; false when this node is no longer the controller.
async fn apply(cluster: &Cluster, term: i64, change: &Change) -> bool {
    let key = cluster.keys.partition(&change.topic, change.partition);
    let value = serde_json::to_vec(&change.next).unwrap_or_default();
    let compares = [
        Compare::ModRevision(key.clone(), change.mod_revision),
        Compare::CreateRevision(cluster.keys.controller(), term),
    ];
    match cluster.etcd.txn(&compares, &[Op::Put { key, value, lease: 0 }]).await {
        Ok((true, _)) => {
            tracing::info!(topic = %change.topic, partition = change.partition, leader = change.next.leader,
                epoch = change.next.leader_epoch, isr = ?change.next.isr, why = change.why, "partition state changed");
            if change.why.starts_with("leader gone") || change.why.starts_with("preferred") {
                crate::metrics::leader_elected(if change.next.leader == NO_LEADER {
                    "offline"
                } else if change.why.contains("unclean") {
                    "unclean"
                } else if change.why.starts_with("preferred") {
                    "preferred"
                } else {
                    "failover"
                });
            }
            true
        }
        // The partition changed meanwhile (the next view decides again), or
        // the controller key is not ours any more.
        Ok((false, _)) => cluster
            .view()
            .controller
            .is_some_and(|c| c.node_id == cluster.me.id && c.term == term),
        Err(e) => {
            tracing::warn!(error = %crate::http::error::chain(&e), "cannot write a partition state");
            false
        }
    }
}
