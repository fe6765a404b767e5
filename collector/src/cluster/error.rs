//! Why a cluster node refuses a write or cannot answer for a partition,
//! in words that name the partition, its leader and its in-sync replicas.

/// A refusal of the cluster layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{topic}/{partition}: this node ({node}) is not the partition's leader{}", leader_hint(*leader, leader_url.as_deref()))]
    NotLeader {
        topic: String,
        partition: u32,
        node: i32,
        /// -1 when no leader is known.
        leader: i32,
        leader_url: Option<String>,
    },
    #[error(
        "{topic}/{partition}: not enough in-sync replicas: {isr:?} are in sync, min_insync_replicas is {min}; acks=all writes are refused until more catch up"
    )]
    NotEnoughReplicas {
        topic: String,
        partition: u32,
        isr: Vec<i32>,
        min: u32,
    },
    #[error(
        "{topic}/{partition}: stored on the leader, but the in-sync replicas shrank to {isr:?} (min_insync_replicas is {min}) before it was copied; send it again"
    )]
    NotEnoughReplicasAfterAppend {
        topic: String,
        partition: u32,
        isr: Vec<i32>,
        min: u32,
    },
    #[error(
        "{topic}/{partition}: the in-sync replicas {isr:?} did not confirm the write within {timeout_ms} ms; send it again (it is not stored twice)"
    )]
    Timeout {
        topic: String,
        partition: u32,
        isr: Vec<i32>,
        timeout_ms: u64,
    },
    #[error("this node's etcd session has lapsed: it acknowledges no writes until it renews it")]
    SessionLost,
    #[error("{0}")]
    Unavailable(String),
}

fn leader_hint(leader: i32, url: Option<&str>) -> String {
    match (leader, url) {
        (l, _) if l < 0 => "; it has no leader now (its in-sync replicas are down)".to_owned(),
        (l, Some(url)) => format!("; node {l} at {url} is"),
        (l, None) => format!("; node {l} is"),
    }
}

impl ClusterError {
    /// The Kafka error code clients act on.
    pub fn kafka_code(&self) -> crate::kafka::error::KafkaError {
        use crate::kafka::error::KafkaError;
        match self {
            ClusterError::NotLeader { leader, .. } if *leader < 0 => KafkaError::LEADER_NOT_AVAILABLE,
            ClusterError::NotLeader { .. } | ClusterError::SessionLost => KafkaError::NOT_LEADER_OR_FOLLOWER,
            ClusterError::NotEnoughReplicas { .. } => KafkaError::NOT_ENOUGH_REPLICAS,
            ClusterError::NotEnoughReplicasAfterAppend { .. } => KafkaError::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            ClusterError::Timeout { .. } => KafkaError::REQUEST_TIMED_OUT,
            ClusterError::Unavailable(_) => KafkaError::LEADER_NOT_AVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_partition_the_leader_and_the_isr() {
        let e = ClusterError::NotLeader {
            topic: "app".into(),
            partition: 2,
            node: 1,
            leader: 3,
            leader_url: Some("http://10.0.0.3:7070".into()),
        };
        assert_eq!(
            e.to_string(),
            "app/2: this node (1) is not the partition's leader; node 3 at http://10.0.0.3:7070 is"
        );
        let e = ClusterError::NotEnoughReplicas {
            topic: "app".into(),
            partition: 0,
            isr: vec![2],
            min: 2,
        };
        assert!(
            e.to_string()
                .starts_with("app/0: not enough in-sync replicas: [2] are in sync"),
            "{e}"
        );
    }
}
