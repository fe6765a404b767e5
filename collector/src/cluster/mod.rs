//! The collector as one node of a replicated cluster (docs/cluster.md),
//! the way Kafka built it before KRaft: consensus on a proven engine
//! (etcd), Kafka's own replication protocol on top of the log store.
//!
//! # Layout
//! - [`etcd`]: the etcd v3 client (JSON gateway).
//! - [`meta`]: what is kept in etcd, and each node's copy of it.
//! - [`session`]: this node's lease and registration.
//! - [`watcher`]: keeps the node's copy current (etcd's watch).
//! - [`controller`]: the elected controller's loop; [`elect`] its
//!   decisions (new leaders, in-sync sets without dead nodes).
//! - [`assign`]: where a new topic's partitions go.
//! - [`topics`]: creating, deleting and adopting topics in etcd.
//! - [`reconcile`]: local topic copies and each replica's role.
//! - [`replica`]: one local partition as a replica: leader bookkeeping
//!   (followers' progress, in-sync set, high watermark), waiting for acks.
//! - [`fetcher`]: a follower's fetch loop, truncation first.
//! - [`fetch_stats`]: the batch stats a leader ships with a fetch answer,
//!   so that followers need not rebuild them.
//! - [`epochs`]: leader epoch cache and saved high watermark per replica.
//! - [`reads`]: queries across the cluster: which node reads which
//!   partition, remote parts asked for and merged, failover.
//! - [`error`]: refusals, with the leader and the in-sync set named.
//! - [`node`]: ties it together: start, tasks, what the rest of the
//!   collector asks (`ticket`, `acknowledge`).
//!
//! The HTTP side is `http::replica` (followers' fetches) and
//! `http::cluster` (`GET /v1/cluster`), `http::replica_scan` (a query's
//! part asked by another node).

pub mod assign;
pub mod controller;
pub mod elect;
pub mod epochs;
pub mod error;
pub mod etcd;
pub mod fetch_stats;
pub mod fetcher;
pub mod meta;
pub mod node;
pub mod reads;
pub mod reconcile;
pub mod replica;
pub mod session;
pub mod topics;
pub mod watcher;

pub use error::ClusterError;
pub use node::{Cluster, HIGH_WATERMARK_HEADER};
