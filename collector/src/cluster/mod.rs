//! The collector as one node of a replicated cluster (docs/cluster.md),
//! the way Kafka built it before KRaft: consensus on a proven engine
//! (etcd), Kafka's own replication protocol on top of the log store.
//!
//! # Layout
//! - [`etcd`]: the etcd v3 client (JSON gateway).
pub mod etcd;
