//! `[cluster]`: this collector as one node of a replicated cluster
//! coordinated by etcd (docs/cluster.md). Without the section the
//! collector is a single node and none of this applies.

use std::path::PathBuf;
use std::time::Duration;

use logpost_shared::config::secret::read_token_file;
use logpost_shared::config::{HumanDuration, Problems};
use serde::Deserialize;
use toml::Spanned;

/// Largest replication factor: more copies than this on one cluster is a
/// typo, and every copy costs a follower's fetches.
pub const MAX_REPLICATION_FACTOR: u32 = 7;

/// `[cluster]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterToml {
    /// This node's id: unique in the cluster and stable across restarts
    /// (its Kafka broker id too).
    pub node_id: Spanned<i64>,
    /// etcd's client URLs, e.g. `["http://127.0.0.1:2379"]`.
    pub etcd: Spanned<Vec<String>>,
    /// `host:port` other nodes, agents and `logpost` use to reach this
    /// node's HTTP listener. Default: the address `http.listen` binds,
    /// unless that is a wildcard address (then this is required).
    pub advertise: Option<Spanned<String>>,
    /// Copies of each partition of a topic created without saying.
    /// Default 3.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: Spanned<u32>,
    /// Copies that must hold a batch, fsynced, before an `acks=all` write
    /// (agents', HTTP ingest's and Loki pushes' always) is acknowledged;
    /// with fewer in-sync replicas such writes are refused. Default 2.
    #[serde(default = "default_min_insync")]
    pub min_insync_replicas: Spanned<u32>,
    /// Prefix of this cluster's keys in etcd (several clusters may share
    /// one etcd). Default `"/logpost"`.
    #[serde(default = "default_prefix")]
    pub etcd_prefix: Spanned<String>,
    /// A node that has not renewed its etcd lease for this long is taken
    /// for dead: its partitions get new leaders, and it acknowledges no
    /// more writes. Whole seconds, 2s to 60s. Default 2s.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: Spanned<HumanDuration>,
    /// A follower that has not caught up with its leader for this long
    /// leaves the in-sync replicas (Kafka's `replica.lag.time.max.ms`).
    /// Default 10s.
    #[serde(default = "default_lag_time")]
    pub replica_lag_time_max: HumanDuration,
    /// Longest an `acks=all` write waits for its in-sync replicas before it
    /// is answered with an error (the client retries; nothing is
    /// duplicated). Default 10s.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: HumanDuration,
    /// Let a replica that is not in sync become leader when no in-sync
    /// replica is alive: service comes back, acknowledged writes may be
    /// lost. Default false (Kafka's `unclean.leader.election.enable`).
    #[serde(default)]
    pub unclean_leader_election: bool,
    /// File holding the token this node presents to the others when
    /// `[[auth.tokens]]` are configured; the others must accept it with
    /// the `cluster` scope.
    pub token_file: Option<PathBuf>,
}

fn default_replication_factor() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}
fn default_min_insync() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}
fn default_prefix() -> Spanned<String> {
    Spanned::new(0..0, "/logpost".to_owned())
}
fn default_session_timeout() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(Duration::from_secs(2)))
}
fn default_lag_time() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_ack_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// `[cluster]` after validation.
#[derive(Clone)]
pub struct ClusterSettings {
    pub node_id: i32,
    pub etcd: Vec<String>,
    /// `None`: the bound HTTP address.
    pub advertise: Option<String>,
    pub replication_factor: u32,
    pub min_insync_replicas: u32,
    /// Without a trailing slash.
    pub etcd_prefix: String,
    pub session_timeout: Duration,
    pub replica_lag_time_max: Duration,
    pub ack_timeout: Duration,
    pub unclean_leader_election: bool,
    pub token: Option<String>,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself, even in debug output.
        f.debug_struct("ClusterSettings")
            .field("node_id", &self.node_id)
            .field("etcd", &self.etcd)
            .field("advertise", &self.advertise)
            .field("replication_factor", &self.replication_factor)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("etcd_prefix", &self.etcd_prefix)
            .field("session_timeout", &self.session_timeout)
            .field("token", &self.token.as_ref().map(|_| "<token>"))
            .finish_non_exhaustive()
    }
}

/// Validates `[cluster]`.
pub fn validate_cluster(raw: Option<&ClusterToml>, problems: &mut Problems<'_>) -> Option<ClusterSettings> {
    let raw = raw?;
    let node_id = *raw.node_id.get_ref();
    if !(0..=i64::from(i32::MAX)).contains(&node_id) {
        problems.at(
            raw.node_id.span(),
            "cluster.node_id",
            format!("{node_id} is out of range (0 to {})", i32::MAX),
        );
    }
    let etcd = raw.etcd.get_ref();
    if etcd.is_empty() {
        problems.at(raw.etcd.span(), "cluster.etcd", "give at least one etcd URL");
    }
    for url in etcd {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            problems.at(
                raw.etcd.span(),
                "cluster.etcd",
                format!("{url:?} is not an etcd client URL (expected e.g. \"http://127.0.0.1:2379\")"),
            );
        }
    }
    let advertise = raw.advertise.as_ref().and_then(|a| {
        let ok = a
            .get_ref()
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !ok {
            problems.at(
                a.span(),
                "cluster.advertise",
                format!(
                    "invalid address {:?} (expected host:port, e.g. \"10.0.0.5:7070\")",
                    a.get_ref()
                ),
            );
        }
        ok.then(|| a.get_ref().clone())
    });
    let rf = *raw.replication_factor.get_ref();
    if !(1..=MAX_REPLICATION_FACTOR).contains(&rf) {
        problems.at(
            raw.replication_factor.span(),
            "cluster.replication_factor",
            format!("{rf} is out of range (1 to {MAX_REPLICATION_FACTOR})"),
        );
    }
    let min_isr = *raw.min_insync_replicas.get_ref();
    if min_isr == 0 || min_isr > rf {
        problems.at(
            raw.min_insync_replicas.span(),
            "cluster.min_insync_replicas",
            format!("{min_isr} is out of range (1 to replication_factor, {rf})"),
        );
    }
    let prefix = raw.etcd_prefix.get_ref().trim_end_matches('/').to_owned();
    if !prefix.starts_with('/') || prefix.len() < 2 {
        problems.at(
            raw.etcd_prefix.span(),
            "cluster.etcd_prefix",
            format!(
                "{:?} must start with '/' and name something, e.g. \"/logpost\"",
                raw.etcd_prefix.get_ref()
            ),
        );
    }
    let session = raw.session_timeout.get_ref().get();
    if session < Duration::from_secs(2) || session > Duration::from_secs(60) || session.subsec_nanos() != 0 {
        problems.at(
            raw.session_timeout.span(),
            "cluster.session_timeout",
            format!(
                "{} is out of range (whole seconds, 2s to 60s: etcd's leases count seconds)",
                raw.session_timeout.get_ref()
            ),
        );
    }
    let token = raw.token_file.as_ref().and_then(|path| match read_token_file(path) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.at(raw.node_id.span(), "cluster.token_file", e);
            None
        }
    });
    Some(ClusterSettings {
        node_id: i32::try_from(node_id).unwrap_or(0),
        etcd: etcd.clone(),
        advertise,
        replication_factor: rf.clamp(1, MAX_REPLICATION_FACTOR),
        min_insync_replicas: min_isr.clamp(1, rf.max(1)),
        etcd_prefix: prefix,
        session_timeout: session.clamp(Duration::from_secs(2), Duration::from_secs(60)),
        replica_lag_time_max: raw.replica_lag_time_max.get().max(Duration::from_millis(100)),
        ack_timeout: raw.ack_timeout.get().max(Duration::from_millis(100)),
        unclean_leader_election: raw.unclean_leader_election,
        token,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::CollectorConfig;
    use logpost_shared::config::SourceText;

    fn load(text: &str) -> Result<CollectorConfig, String> {
        CollectorConfig::from_source(&SourceText {
            path: "collector.toml".into(),
            text: format!("data_dir = \"/x\"\n{text}"),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_the_named_keys() {
        assert!(load("").unwrap().cluster.is_none(), "no section: a single node");
        let c = load("[cluster]\nnode_id = 2\netcd = [\"http://127.0.0.1:2379\"]\n")
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!((c.node_id, c.replication_factor, c.min_insync_replicas), (2, 3, 2));
        assert_eq!(c.etcd_prefix, "/logpost");
        assert_eq!(c.session_timeout, std::time::Duration::from_secs(2));
        assert!(c.advertise.is_none());
        let c = load("[cluster]\nnode_id = 1\netcd = [\"http://e:2379\"]\nadvertise = \"10.0.0.5:7070\"\nreplication_factor = 1\nmin_insync_replicas = 1\netcd_prefix = \"/logs/\"\n")
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(
            (c.advertise.as_deref(), c.etcd_prefix.as_str()),
            (Some("10.0.0.5:7070"), "/logs")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = load("[cluster]\nnode_id = 1\netcd = []\nmin_insync_replicas = 4\n").unwrap_err();
        assert!(err.contains("cluster.etcd: give at least one etcd URL"), "{err}");
        assert!(
            err.contains("cluster.min_insync_replicas: 4 is out of range (1 to replication_factor, 3)"),
            "{err}"
        );
        let err =
            load("[cluster]\nnode_id = -1\netcd = [\"127.0.0.1:2379\"]\nsession_timeout = \"500ms\"\n").unwrap_err();
        assert!(err.contains("cluster.node_id: -1 is out of range"), "{err}");
        assert!(err.contains("is not an etcd client URL"), "{err}");
        assert!(err.contains("cluster.session_timeout: 500ms is out of range"), "{err}");
        let err = load("[cluster]\nnode_id = 1\netcd = [\"http://e:2379\"]\nadvertise = \"nohost\"\n").unwrap_err();
        assert!(err.contains("cluster.advertise: invalid address \"nohost\""), "{err}");
        let err = load("[cluster]\nnode_id = 1\netcd = [\"http://e:2379\"]\nreplicas = 3\n").unwrap_err();
        assert!(err.contains("unknown field `replicas`"), "{err}");
    }
}
