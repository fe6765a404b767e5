//! Keeps this node's copy of the cluster state current: read everything
//! once, then follow etcd's watch from the next revision; on any break
//! (etcd restarting, a compaction, a silent stream) read everything again.
//! Every change is published to the node's view, which the controller and
//! the reconciler react to.

use std::time::Duration;

use super::meta::ClusterView;
use super::node::Cluster;

/// After a failure, wait this long before reading again (etcd away).
const RETRY: Duration = Duration::from_millis(250);

/// Runs until the node shuts down.
pub async fn run(cluster: &Cluster) {
    let mut failures = 0u32;
    let all = cluster.keys.all();
    loop {
        if cluster.cancel.is_cancelled() {
            return;
        }
        let read = tokio::select! {
            r = cluster.etcd.get_prefix(&all) => r,
            () = cluster.cancel.cancelled() => return,
        };
        let (kvs, revision) = match read {
            Ok(r) => r,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(40) {
                    tracing::warn!(error = %crate::http::error::chain(&e), "cannot read the cluster state from etcd; retrying");
                }
                if pause(cluster, RETRY).await {
                    return;
                }
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(failures, "reading the cluster state from etcd again");
            failures = 0;
        }
        let mut view = ClusterView::from_pairs(&cluster.keys, kvs, revision);
        cluster.publish(view.clone());
        let watched = tokio::select! {
            w = cluster.etcd.watch(&all, revision + 1, |events, rev| {
                view.apply(&cluster.keys, &events, rev);
                if !events.is_empty() {
                    cluster.publish(view.clone());
                }
                true
            }) => w,
            () = cluster.cancel.cancelled() => return,
        };
        if let Err(e) = watched {
            tracing::debug!(error = %crate::http::error::chain(&e), "etcd watch ended; reading again");
        }
        if pause(cluster, RETRY).await {
            return;
        }
    }
}

async fn pause(cluster: &Cluster, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = cluster.cancel.cancelled() => true,
    }
}
