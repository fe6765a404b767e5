//! This node: its etcd session, its copy of the cluster's state, its
//! replicas, and the tasks that keep them current. What the rest of the
//! collector asks of the cluster goes through [`Cluster`]: may this node
//! take a write for a partition ([`Cluster::ticket`]), has it been copied
//! enough to acknowledge ([`Cluster::acknowledge`]), where is a
//! partition's leader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::ClusterError;
use super::etcd::{Compare, Etcd, Op};
use super::meta::{ClusterView, Keys, NodeInfo};
use super::replica::{IsrChange, Replica};
use super::session::{Cancelled, Session};
use crate::config::cluster::ClusterSettings;
use crate::store::{Partition, Store};

/// Why the cluster layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot build the etcd client")]
    Client(#[source] reqwest::Error),
    #[error("{}: {what}", path.display())]
    Marker { path: PathBuf, what: String },
    #[error(
        "topic {0:?} exists in this data directory and in the cluster, with different data; move one of them aside"
    )]
    Conflict(String),
    #[error("shutting down")]
    Cancelled,
}

/// `<data_dir>/cluster.json`: which cluster and node this data belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    cluster_id: String,
    node_id: i32,
}

/// A node of the cluster.
pub struct Cluster {
    pub settings: ClusterSettings,
    pub keys: Keys,
    pub etcd: Etcd,
    pub me: NodeInfo,
    pub session: Session,
    pub store: Arc<Store>,
    /// Node-to-node HTTP (with `[cluster] token_file`'s token).
    pub peers: reqwest::Client,
    /// Node-to-node HTTP for query parts (`cluster::reads`): as `peers`
    /// but with no limit on the whole answer, which streams for as long
    /// as the scan takes; silence is bounded by the reader instead.
    pub reads: reqwest::Client,
    view: watch::Sender<Arc<ClusterView>>,
    replicas: Mutex<HashMap<(String, u32), Arc<Replica>>>,
    pub(super) cancel: CancellationToken,
    pub(super) tasks: TaskTracker,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster(node {})", self.me.id)
    }
}

/// Response header of a replica fetch: the leader's high watermark.
pub const HIGH_WATERMARK_HEADER: &str = "x-logpost-high-watermark";

impl Cluster {
    /// Joins the cluster: registers this node, reads the cluster's state,
    /// adopts this data directory's topics if it joins for the first time,
    /// and starts the background tasks. Waits for etcd if it is down.
    ///
    /// # Errors
    /// A data directory of another cluster or node, a topic both here and
    /// in the cluster, or shutdown while waiting.
    pub async fn start(
        settings: ClusterSettings,
        store: Arc<Store>,
        me: NodeInfo,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Arc<Cluster>, StartError> {
        let etcd = Etcd::new(settings.etcd.clone()).map_err(StartError::Client)?;
        let peers = peer_client(&settings, Some(Duration::from_secs(10))).map_err(StartError::Client)?;
        let reads = peer_client(&settings, None).map_err(StartError::Client)?;
        let keys = Keys::new(&settings.etcd_prefix);
        let cancel = shutdown.child_token();
        let cluster_id = retry(&cancel, "read the cluster id", || ensure_cluster_id(&etcd, &keys)).await?;
        let marker_path = data_dir.join("cluster.json");
        let marker = read_marker(&marker_path)?;
        if let Some(m) = &marker {
            if m.cluster_id != cluster_id {
                return Err(StartError::Marker {
                    path: marker_path,
                    what: format!(
                        "this data belongs to cluster {:?}, but etcd holds cluster {cluster_id:?}",
                        m.cluster_id
                    ),
                });
            }
            if m.node_id != settings.node_id {
                return Err(StartError::Marker {
                    path: marker_path,
                    what: format!(
                        "this data belongs to node {}, but cluster.node_id is {}",
                        m.node_id, settings.node_id
                    ),
                });
            }
        }
        let session = Session::new(settings.session_timeout);
        let node_key = keys.node(settings.node_id);
        let node_value = serde_json::to_vec(&me).unwrap_or_default();
        session
            .register(&etcd, &node_key, &node_value, &cancel)
            .await
            .map_err(|Cancelled| StartError::Cancelled)?;
        let all = keys.all();
        let (kvs, revision) = retry(&cancel, "read the cluster state", || etcd.get_prefix(&all)).await?;
        let view = ClusterView::from_pairs(&keys, kvs, revision);
        let (view_tx, _) = watch::channel(Arc::new(view));
        let cluster = Arc::new(Cluster {
            settings,
            keys,
            etcd,
            me,
            session,
            store: Arc::clone(&store),
            peers,
            reads,
            view: view_tx,
            replicas: Mutex::new(HashMap::new()),
            cancel,
            tasks: TaskTracker::new(),
        });
        if marker.is_none() {
            let adopted = super::topics::adopt_local_topics(&cluster).await?;
            // The view read above predates the adopted topics: given to the
            // reconciler, it would take them for topics the cluster deleted,
            // and delete this node's data.
            let (kvs, revision) = retry(&cluster.cancel, "read the cluster state", || {
                cluster.etcd.get_prefix(&all)
            })
            .await?;
            cluster.publish(ClusterView::from_pairs(&cluster.keys, kvs, revision));
            if adopted > 0 {
                tracing::info!(
                    topics = adopted,
                    "this node's topics joined the cluster with their data"
                );
            }
            write_marker(
                &marker_path,
                &Marker {
                    cluster_id: cluster_id.clone(),
                    node_id: cluster.settings.node_id,
                },
            )?;
        }
        store.set_authority(Arc::new(super::topics::Authority::new(
            &cluster,
            tokio::runtime::Handle::current(),
        )));
        tracing::info!(node = cluster.me.id, cluster_id = %cluster_id, url = %cluster.me.url(), "joined the cluster");
        cluster.spawn_tasks(node_key, node_value);
        Ok(cluster)
    }

    fn spawn_tasks(self: &Arc<Self>, node_key: String, node_value: Vec<u8>) {
        let c = Arc::clone(self);
        self.tasks.spawn(async move {
            let again = || c.session.register(&c.etcd, &node_key, &node_value, &c.cancel);
            c.session.keep_alive(&c.etcd, &c.cancel, again).await;
        });
        let c = Arc::clone(self);
        self.tasks.spawn(async move { super::watcher::run(&c).await });
        let c = Arc::clone(self);
        self.tasks.spawn(async move { super::controller::run(&c).await });
        let c = Arc::clone(self);
        self.tasks.spawn(async move { super::reconcile::run(&c).await });
        let c = Arc::clone(self);
        self.tasks.spawn(async move { c.maintain().await });
    }

    /// Stops every task (the session's last act revokes the lease, so
    /// that this node's partitions move at once) and waits for them.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let replicas: Vec<Arc<Replica>> = self.replicas().into_values().collect();
        for r in replicas {
            r.shutdown().await;
            let rr = Arc::clone(&r);
            let _ = tokio::task::spawn_blocking(move || rr.save(true)).await;
        }
    }

    /// The latest view of the cluster's state.
    pub fn view(&self) -> Arc<ClusterView> {
        Arc::clone(&self.view.borrow())
    }

    /// Changes whenever the view does.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.subscribe()
    }

    pub(super) fn publish(&self, view: ClusterView) {
        self.view.send_replace(Arc::new(view));
    }

    /// The HTTP URL of node `id`, if it is alive.
    pub fn node_url(&self, id: i32) -> Option<String> {
        self.view().nodes.get(&id).map(NodeInfo::url)
    }

    /// Every local replica.
    pub fn replicas(&self) -> HashMap<(String, u32), Arc<Replica>> {
        self.replicas.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The local replica of `topic`/`partition`.
    pub fn replica(&self, topic: &str, partition: u32) -> Option<Arc<Replica>> {
        self.replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_owned(), partition))
            .cloned()
    }

    pub(super) fn insert_replica(&self, r: Arc<Replica>) {
        self.replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((r.topic.clone(), r.partition), r);
    }

    pub(super) fn remove_topic_replicas(&self, topic: &str) -> Vec<Arc<Replica>> {
        let mut map = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<(String, u32)> = map.keys().filter(|(t, _)| t == topic).cloned().collect();
        keys.into_iter().filter_map(|k| map.remove(&k)).collect()
    }

    /// May this node take a write for `partition` now? The epoch the
    /// append will carry, or why not (with the leader's URL).
    ///
    /// # Errors
    /// Not the leader, no live session, or (`acks_all`) too few in-sync
    /// replicas.
    pub fn ticket(&self, partition: &Partition, acks_all: bool) -> Result<i32, ClusterError> {
        let Some(r) = self.replica(&partition.topic, partition.id) else {
            return Err(self.with_leader_url(ClusterError::NotLeader {
                topic: partition.topic.to_string(),
                partition: partition.id,
                node: self.me.id,
                leader: -1,
                leader_url: None,
            }));
        };
        r.ticket(&self.session, acks_all, self.settings.min_insync_replicas)
            .map_err(|e| self.with_leader_url(e))
    }

    /// Whether this node leads `topic`/`partition` (for reads that only
    /// the leader serves: Kafka fetches and offset lookups).
    ///
    /// # Errors
    /// Not the leader, with where it is.
    pub fn check_leader(&self, topic: &str, partition: u32) -> Result<(), ClusterError> {
        match self.replica(topic, partition).and_then(|r| r.current()) {
            Some((leader, _)) if leader == self.me.id => Ok(()),
            found => Err(self.with_leader_url(ClusterError::NotLeader {
                topic: topic.to_owned(),
                partition,
                node: self.me.id,
                leader: found.map_or(-1, |(l, _)| l),
                leader_url: None,
            })),
        }
    }

    /// Waits until everything below `target` of `partition` is held by
    /// every in-sync replica (`acks=all`), this node still leading at
    /// `epoch` under a live session.
    ///
    /// # Errors
    /// See [`Replica::await_acks`].
    pub async fn acknowledge(&self, partition: &Partition, epoch: i32, target: i64) -> Result<(), ClusterError> {
        let r = self.replica(&partition.topic, partition.id).ok_or_else(|| {
            self.with_leader_url(ClusterError::NotLeader {
                topic: partition.topic.to_string(),
                partition: partition.id,
                node: self.me.id,
                leader: -1,
                leader_url: None,
            })
        })?;
        r.await_acks(
            &self.session,
            epoch,
            target,
            self.settings.min_insync_replicas,
            self.settings.ack_timeout,
        )
        .await
        .map_err(|e| self.with_leader_url(e))
    }

    /// Fills in where the leader is, from the view.
    pub fn with_leader_url(&self, e: ClusterError) -> ClusterError {
        match e {
            ClusterError::NotLeader {
                topic,
                partition,
                node,
                leader,
                leader_url: None,
            } => {
                let view = self.view();
                let leader = if leader >= 0 {
                    leader
                } else {
                    view.partition(&topic, partition).map_or(-1, |s| s.value.leader)
                };
                let leader_url = view.nodes.get(&leader).map(NodeInfo::url);
                ClusterError::NotLeader {
                    topic,
                    partition,
                    node,
                    leader,
                    leader_url,
                }
            }
            other => other,
        }
    }

    /// Writes an in-sync set change (compare-and-swap on the partition's
    /// key) and tells the replica how it went.
    pub async fn alter_isr(&self, replica: &Replica, change: IsrChange) {
        let key = self.keys.partition(&replica.topic, replica.partition);
        let value = serde_json::to_vec(&change.next).unwrap_or_default();
        let written = self
            .etcd
            .txn(
                &[Compare::ModRevision(key.clone(), change.expected_version)],
                &[Op::Put { key, value, lease: 0 }],
            )
            .await;
        match written {
            Ok((true, revision)) => replica.isr_changed(&change, Some(revision)),
            Ok((false, _)) => {
                tracing::debug!(topic = %replica.topic, partition = replica.partition, "in-sync set changed meanwhile; will retry");
                replica.isr_changed(&change, None);
            }
            Err(e) => {
                tracing::warn!(topic = %replica.topic, partition = replica.partition, error = %crate::http::error::chain(&e), "cannot change the in-sync set");
                replica.isr_changed(&change, None);
            }
        }
    }

    /// GET from another node, with this node's token; the body.
    ///
    /// # Errors
    /// Unreachable, or an answer other than 200, as text.
    pub async fn peer_get(&self, url: &str) -> Result<bytes::Bytes, String> {
        let resp = self
            .peers
            .get(url)
            .send()
            .await
            .map_err(|e| crate::http::error::chain(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| crate::http::error::chain(&e))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body).trim()))
        }
    }

    /// Leader upkeep: drop followers that fell behind from the in-sync
    /// set, save high watermarks now and then, refresh gauges.
    async fn maintain(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut rounds = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.cancel.cancelled() => return,
            }
            rounds += 1;
            let replicas = self.replicas();
            for r in replicas.values() {
                if let Some(change) = r.shrink(self.settings.replica_lag_time_max) {
                    tracing::warn!(topic = %r.topic, partition = r.partition, isr = ?change.next.isr,
                        "followers fell behind for longer than replica_lag_time_max: leaving them out of the in-sync set");
                    self.alter_isr(r, change).await;
                }
            }
            // Every second: the high watermarks, for readers after a restart.
            if rounds.is_multiple_of(4) {
                self.report_gauges(&replicas);
                let all: Vec<Arc<Replica>> = replicas.into_values().collect();
                let _ = tokio::task::spawn_blocking(move || {
                    for r in all {
                        r.save(false);
                    }
                })
                .await;
            }
        }
    }
}

impl Cluster {
    /// Prometheus gauges: partitions led, under-replicated ones among
    /// them, followers' lag, the session.
    fn report_gauges(&self, replicas: &HashMap<(String, u32), Arc<Replica>>) {
        let view = self.view();
        let (mut leading, mut under) = (0, 0);
        for ((topic, partition), r) in replicas {
            let Some(isr) = r.leader_isr() else { continue };
            leading += 1;
            let copies = view.partition(topic, *partition).map_or(0, |s| s.value.replicas.len());
            if isr.len() < copies {
                under += 1;
            }
            for (follower, lag) in r.follower_lag() {
                crate::metrics::replica_lag(topic, *partition, follower, lag);
            }
        }
        crate::metrics::cluster_gauges(leading, under, self.session.is_valid());
    }
}

/// The HTTP client other nodes are called with.
/// `timeout` bounds a whole call; `None` for streamed answers.
fn peer_client(settings: &ClusterSettings, timeout: Option<Duration>) -> Result<reqwest::Client, reqwest::Error> {
    logpost_shared::tls::install_default_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &settings.token
        && let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(1));
    let builder = match timeout {
        Some(t) => builder.timeout(t),
        None => builder,
    };
    builder
        .default_headers(headers)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}

/// Reads the cluster id, creating it if this is the first node ever.
async fn ensure_cluster_id(etcd: &Etcd, keys: &Keys) -> Result<String, super::etcd::EtcdError> {
    if let Some(kv) = etcd.get(&keys.cluster_id()).await? {
        return Ok(String::from_utf8_lossy(&kv.value).into_owned());
    }
    let mut raw = [0u8; 8];
    let _ = getrandom::fill(&mut raw);
    let id = format!("{:016x}", u64::from_le_bytes(raw));
    let _ = etcd
        .txn(
            &[Compare::CreateRevision(keys.cluster_id(), 0)],
            &[Op::Put {
                key: keys.cluster_id(),
                value: id.clone().into_bytes(),
                lease: 0,
            }],
        )
        .await?;
    // Whoever won the race wrote it.
    Ok(etcd
        .get(&keys.cluster_id())
        .await?
        .map_or(id, |kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

/// Runs `op` until it succeeds, logging now and then; `Cancelled` on shutdown.
pub(super) async fn retry<T, F, Fut>(cancel: &CancellationToken, what: &str, mut op: F) -> Result<T, StartError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, super::etcd::EtcdError>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                if attempt.is_multiple_of(10) {
                    tracing::warn!(error = %crate::http::error::chain(&e), what, "etcd unavailable; retrying");
                }
            }
        }
        attempt += 1;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = cancel.cancelled() => return Err(StartError::Cancelled),
        }
    }
}

fn read_marker(path: &Path) -> Result<Option<Marker>, StartError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StartError::Marker {
                path: path.to_owned(),
                what: format!("unreadable: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StartError::Marker {
            path: path.to_owned(),
            what: format!("cannot read: {e}"),
        }),
    }
}

fn write_marker(path: &Path, marker: &Marker) -> Result<(), StartError> {
    let err = |e: std::io::Error| StartError::Marker {
        path: path.to_owned(),
        what: format!("cannot write: {e}"),
    };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(marker).unwrap_or_default()).map_err(err)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        crate::store::sync_dir(dir).map_err(err)?;
    }
    Ok(())
}
