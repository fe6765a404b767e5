//! Brings this node in line with the cluster's state, after every change
//! of it: creates local copies of the cluster's topics and deletes those
//! the cluster deleted, and gives each local replica its role (leader at
//! the current epoch, follower of the current leader, or offline). While
//! this node's session has lapsed every replica is offline: it takes no
//! writes and acknowledges nothing.

use std::sync::Arc;
use std::time::Duration;

use super::meta::{ClusterView, NO_LEADER};
use super::node::Cluster;
use super::replica::Replica;
use crate::store::TopicSpec;

/// Runs until the node shuts down.
pub async fn run(cluster: &Arc<Cluster>) {
    let mut views = cluster.subscribe();
    let mut sessions = cluster.session.subscribe();
    loop {
        let view = cluster.view();
        sync_topics(cluster, &view).await;
        assign_roles(cluster, &view).await;
        tokio::select! {
            _ = views.changed() => {}
            _ = sessions.changed() => {}
            // Also look again now and then: a session that lapses by the
            // clock sends no event, and a failed step is retried.
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = cluster.cancel.cancelled() => break,
        }
    }
}

/// Local copies of the cluster's topics: created when missing, deleted
/// when the cluster deleted them, opened as replicas.
async fn sync_topics(cluster: &Arc<Cluster>, view: &ClusterView) {
    let store = Arc::clone(&cluster.store);
    for (name, record) in &view.topics {
        if store.topic(name).is_none() {
            let spec = TopicSpec {
                partitions: Some(record.value.partitions),
                retention_bytes: record.value.retention_bytes,
                retention_age: record.value.retention_age_ms.map(Duration::from_millis),
                replication_factor: Some(record.value.replication_factor),
            };
            let (s, n) = (Arc::clone(&store), name.clone());
            match tokio::task::spawn_blocking(move || s.create_local_topic(&n, spec)).await {
                Ok(Ok(_)) | Ok(Err(crate::store::StoreError::TopicExists(_))) => {}
                Ok(Err(e)) => {
                    tracing::error!(topic = %name, error = %crate::http::error::chain(&e), "cannot create the local copy of a cluster topic");
                    continue;
                }
                Err(_) => continue,
            }
        }
        let Some(topic) = store.topic(name) else { continue };
        if topic.meta.partitions != record.value.partitions {
            tracing::error!(topic = %name, local = topic.meta.partitions, cluster = record.value.partitions,
                "the local copy of a topic has another partition count than the cluster's; leaving it alone");
            continue;
        }
        for p in &topic.partitions {
            if cluster.replica(name, p.id).is_some() {
                continue;
            }
            let (log, t, id, me) = (Arc::clone(p), name.clone(), p.id, cluster.me.id);
            match tokio::task::spawn_blocking(move || Replica::open(&t, id, log, me)).await {
                Ok(Ok(r)) => cluster.insert_replica(Arc::new(r)),
                Ok(Err(e)) => {
                    tracing::error!(topic = %name, partition = id, error = %crate::http::error::chain(&e), "cannot open the replica");
                }
                Err(_) => {}
            }
        }
    }
    // Deleted in the cluster: the view is complete (it came from a full
    // read and its watch), so a local topic it lacks was deleted.
    for topic in store.topics() {
        if view.topics.contains_key(&*topic.name) {
            continue;
        }
        for r in cluster.remove_topic_replicas(&topic.name) {
            r.become_offline().await;
        }
        let (s, n) = (Arc::clone(&store), topic.name.to_string());
        match tokio::task::spawn_blocking(move || s.delete_local_topic(&n)).await {
            Ok(Ok(())) => tracing::info!(topic = %topic.name, "deleted the local copy of a topic the cluster deleted"),
            Ok(Err(e)) => {
                tracing::warn!(topic = %topic.name, error = %crate::http::error::chain(&e), "cannot delete the local copy of a deleted topic");
            }
            Err(_) => {}
        }
    }
}

/// Gives every local replica the role the view says.
async fn assign_roles(cluster: &Arc<Cluster>, view: &ClusterView) {
    let valid = cluster.session.is_valid();
    let me = cluster.me.id;
    for ((topic, partition), replica) in cluster.replicas() {
        let Some(state) = view.partition(&topic, partition) else {
            replica.become_offline().await;
            continue;
        };
        let s = &state.value;
        let current = replica.current();
        if !valid || !s.replicas.contains(&me) || s.leader == NO_LEADER {
            if current.is_some() {
                replica.become_offline().await;
            }
            continue;
        }
        if s.leader == me {
            if current == Some((me, s.leader_epoch)) {
                replica.adopt_isr(state);
            } else {
                replica.become_leader(s.leader_epoch, state).await;
            }
            continue;
        }
        let (leader, epoch) = (s.leader, s.leader_epoch);
        if current == Some((leader, epoch)) && replica.is_following(leader, epoch).await {
            continue;
        }
        let c = Arc::clone(cluster);
        let r = Arc::clone(&replica);
        replica
            .become_follower(leader, epoch, move |cancel| {
                tokio::spawn(super::fetcher::follow(c, r, leader, epoch, cancel))
            })
            .await;
    }
}
