//! Cluster discovery: Metadata (key 3, v0-v8), FindCoordinator (key 10,
//! v0-v2) and InitProducerId (key 22, v0-v1).
//!
//! A single node is the whole cluster: one broker that leads every
//! partition and coordinates every group. A cluster node (`[cluster]`)
//! lists every live node and each partition's leader, replicas and
//! in-sync replicas, so clients route to leaders by themselves.

use super::wire::{DecodeResult, Reader, Writer};

/// A Metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRequest {
    /// `None`: all topics. v0 sends an empty list for that.
    pub topics: Option<Vec<String>>,
    /// v4+: create missing topics (subject to server policy). True before v4.
    pub allow_auto_topic_creation: bool,
}

impl MetadataRequest {
    /// Decodes the body.
    pub fn decode(r: &mut Reader, version: i16) -> DecodeResult<Self> {
        let mut topics = r.nullable_array(2, |r| r.string())?;
        if version == 0 && topics.as_ref().is_some_and(Vec::is_empty) {
            topics = None;
        }
        let allow_auto_topic_creation = if version >= 4 { r.bool()? } else { true };
        if version >= 8 {
            let _include_cluster_authorized_operations = r.bool()?;
            let _include_topic_authorized_operations = r.bool()?;
        }
        Ok(Self {
            topics,
            allow_auto_topic_creation,
        })
    }
}

/// One partition in a Metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Error code, 0 for none.
    pub error_code: i16,
    /// Partition index.
    pub index: i32,
    /// Leader node id.
    pub leader: i32,
    /// v7+: leader epoch; -1 (unknown) keeps clients from validating offsets
    /// with OffsetForLeaderEpoch, which we do not implement.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

/// One topic in a Metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Error code, 0 for none.
    pub error_code: i16,
    /// Topic name.
    pub name: String,
    /// Its partitions.
    pub partitions: Vec<PartitionMetadata>,
}

/// A Metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataResponse {
    /// `(node id, host, port)` of every broker.
    pub brokers: Vec<(i32, String, i32)>,
    /// v2+: cluster id.
    pub cluster_id: Option<String>,
    /// v1+: controller node id.
    pub controller_id: i32,
    /// Requested (or all) topics.
    pub topics: Vec<TopicMetadata>,
}

impl MetadataResponse {
    /// Encodes the body for `version`.
    pub fn encode(&self, w: &mut Writer, version: i16) {
        if version >= 3 {
            w.i32(0); // throttle_time_ms
        }
        w.array_len(self.brokers.len());
        for (node_id, host, port) in &self.brokers {
            w.i32(*node_id);
            w.string(host);
            w.i32(*port);
            if version >= 1 {
                w.nullable_string(None); // rack
            }
        }
        if version >= 2 {
            w.nullable_string(self.cluster_id.as_deref());
        }
        if version >= 1 {
            w.i32(self.controller_id);
        }
        w.array_len(self.topics.len());
        for t in &self.topics {
            w.i16(t.error_code);
            w.string(&t.name);
            if version >= 1 {
                w.bool(logpost_shared::topic::is_internal(&t.name)); // is_internal
            }
            w.array_len(t.partitions.len());
            for p in &t.partitions {
                w.i16(p.error_code);
                w.i32(p.index);
                w.i32(p.leader);
                if version >= 7 {
                    w.i32(p.leader_epoch);
                }
                w.array_len(p.replicas.len());
                p.replicas.iter().for_each(|&n| w.i32(n));
                w.array_len(p.isr.len());
                p.isr.iter().for_each(|&n| w.i32(n));
                if version >= 5 {
                    w.array_len(0); // offline_replicas
                }
            }
            if version >= 8 {
                w.i32(i32::MIN); // topic_authorized_operations: not requested
            }
        }
        if version >= 8 {
            w.i32(i32::MIN); // cluster_authorized_operations
        }
    }
}

/// A FindCoordinator request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindCoordinatorRequest {
    /// Group id (or transactional id).
    pub key: String,
    /// v1+: 0 = group, 1 = transaction.
    pub key_type: i8,
}

impl FindCoordinatorRequest {
    /// Decodes the body.
    pub fn decode(r: &mut Reader, version: i16) -> DecodeResult<Self> {
        let key = r.string()?;
        let key_type = if version >= 1 { r.i8()? } else { 0 };
        Ok(Self { key, key_type })
    }
}

/// Encodes a FindCoordinator response pointing at `node`.
pub fn encode_find_coordinator(w: &mut Writer, version: i16, error_code: i16, node: (i32, &str, i32)) {
    if version >= 1 {
        w.i32(0); // throttle_time_ms
    }
    w.i16(error_code);
    if version >= 1 {
        w.nullable_string(None);
    }
    w.i32(node.0);
    w.string(node.1);
    w.i32(node.2);
}

/// An InitProducerId request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    /// Transactions are not supported; a non-null id is refused.
    pub transactional_id: Option<String>,
    /// Transaction timeout (ignored).
    pub transaction_timeout_ms: i32,
}

impl InitProducerIdRequest {
    /// Decodes the body (v0 and v1 are identical).
    pub fn decode(r: &mut Reader, _version: i16) -> DecodeResult<Self> {
        Ok(Self {
            transactional_id: r.nullable_string()?,
            transaction_timeout_ms: r.i32()?,
        })
    }
}

/// Encodes an InitProducerId response.
pub fn encode_init_producer_id(w: &mut Writer, error_code: i16, producer_id: i64, epoch: i16) {
    w.i32(0); // throttle_time_ms
    w.i16(error_code);
    w.i64(producer_id);
    w.i16(epoch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn reader(w: Writer) -> Reader {
        Reader::new(Bytes::from(w.into_chunks().concat()))
    }

    #[test]
    fn metadata_request_versions() {
        let mut w = Writer::new();
        w.array_len(0);
        assert_eq!(
            MetadataRequest::decode(&mut reader(w), 0).unwrap().topics,
            None,
            "v0 empty list = all"
        );
        let mut w = Writer::new();
        w.array_len(0);
        w.bool(false);
        let req = MetadataRequest::decode(&mut reader(w), 4).unwrap();
        assert_eq!(req.topics, Some(vec![]));
        assert!(!req.allow_auto_topic_creation);
        let mut w = Writer::new();
        w.i32(-1);
        w.bool(true);
        w.bool(false);
        w.bool(false);
        let mut r = reader(w);
        let req = MetadataRequest::decode(&mut r, 8).unwrap();
        assert_eq!(req.topics, None);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn metadata_response_v7_layout() {
        let resp = MetadataResponse {
            brokers: vec![(0, "h".into(), 9092)],
            cluster_id: Some("c".into()),
            controller_id: 0,
            topics: vec![TopicMetadata {
                error_code: 0,
                name: "t".into(),
                partitions: vec![PartitionMetadata {
                    error_code: 0,
                    index: 0,
                    leader: 0,
                    leader_epoch: -1,
                    replicas: vec![0],
                    isr: vec![0],
                }],
            }],
        };
        let mut w = Writer::new();
        resp.encode(&mut w, 7);
        let mut r = reader(w);
        assert_eq!(r.i32().unwrap(), 0);
        let brokers = r
            .array(10, |r| Ok((r.i32()?, r.string()?, r.i32()?, r.nullable_string()?)))
            .unwrap();
        assert_eq!(brokers, vec![(0, "h".to_string(), 9092, None)]);
        assert_eq!(r.nullable_string().unwrap().as_deref(), Some("c"));
        assert_eq!(r.i32().unwrap(), 0);
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(
            (r.i16().unwrap(), r.string().unwrap(), r.bool().unwrap()),
            (0, "t".into(), false)
        );
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(
            (r.i16().unwrap(), r.i32().unwrap(), r.i32().unwrap(), r.i32().unwrap()),
            (0, 0, 0, -1)
        );
        assert_eq!(r.array(4, |r| r.i32()).unwrap(), vec![0]);
        assert_eq!(r.array(4, |r| r.i32()).unwrap(), vec![0]);
        assert_eq!(r.array(4, |r| r.i32()).unwrap(), Vec::<i32>::new());
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn find_coordinator_v0_and_v2() {
        let mut w = Writer::new();
        encode_find_coordinator(&mut w, 0, 0, (0, "h", 1));
        assert_eq!(w.len(), 2 + 4 + 3 + 4);
        let mut w = Writer::new();
        encode_find_coordinator(&mut w, 2, 0, (0, "h", 1));
        assert_eq!(w.len(), 4 + 2 + 2 + 4 + 3 + 4);
        let mut w = Writer::new();
        w.string("g");
        w.i8(0);
        assert_eq!(
            FindCoordinatorRequest::decode(&mut reader(w), 1).unwrap(),
            FindCoordinatorRequest {
                key: "g".into(),
                key_type: 0
            }
        );
    }
}
