//! logpost-collector: receives batches from agents, stores them in
//! partitioned topic logs, and serves them back.
//!
//! # Layout
//! - [`budget`]: the bytes of requests a listener may hold at once.
//! - [`config`]: `collector.toml`, raw and validated.
//! - [`server`]: start-up (store recovery, writer threads), serving, shutdown.
//! - [`http`]: routes and handlers, a thin shell over the modules below;
//!   also the web page (`http::ui`, files in `collector/ui/`).
//! - [`ingest`]: checking and routing incoming batches.
//! - [`kafka`]: the Kafka wire protocol listener and the consumer-group
//!   coordinator (shared with HTTP).
//! - [`store`]: topics, partitions, segments, group commit, recovery.
//! - [`query`]: scanning, filtering and merging records for readers.
//! - [`client`]: the `logpost` command's subcommands.
//! - [`cluster`]: replication and failover over etcd (`[cluster]`).
//! - [`metrics`]: every Prometheus metric, described in one place.
//!
//! The path of a batch: `http::ingest` → `ingest::validate` → `ingest::route`
//! → `store::writer` (group commit) → `store::partition` → `store::segment`.

pub mod budget;
pub mod client;
pub mod cluster;
pub mod config;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod query;
pub mod server;
pub mod store;
