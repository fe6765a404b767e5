//! The HTTP shell: routes, handlers, and the mapping of errors to
//! responses. Handlers only move data between the request, the blocking
//! pool (validation, queries) and the writer threads; the logic they call
//! lives in `ingest/`, `store/` and `query/`.

pub mod admin;
pub mod auth;
pub mod body_budget;
pub mod cluster;
pub mod error;
pub mod fetch;
pub mod forward;
pub mod groups;
pub mod ingest;
pub mod loki;
pub mod loki_categorized;
pub mod loki_json;
pub mod loki_params;
pub mod loki_read;
pub mod loki_tail;
pub mod observe;
pub mod query_fanout;
pub mod query_stream;
pub mod read;
pub mod replica;
pub mod replica_scan;
pub mod router;
pub mod serve;
pub mod streams;
pub mod ui;

use std::sync::Arc;

use crate::config::CollectorConfig;
use crate::ingest::route::Router as PartitionRouter;
use crate::kafka::coordinator::GroupCoordinator;
use crate::store::Store;
use crate::store::writer::LogWriter;

/// Bodies validated at once per CPU: inflating is CPU-bound, so more would
/// only add memory, not throughput.
pub const VALIDATIONS_PER_CPU: usize = 2;

/// The validation semaphore's size for this machine.
pub fn validation_slots() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get) * VALIDATIONS_PER_CPU
}

/// What every handler shares.
pub struct AppState {
    pub config: CollectorConfig,
    pub store: Arc<Store>,
    pub writer: LogWriter,
    pub router: PartitionRouter,
    /// Consumer groups and committed offsets: one coordinator for Kafka
    /// clients and HTTP consumers alike.
    pub coordinator: Arc<GroupCoordinator>,
    /// Bodies being inflated and checked at once. Each may take up to
    /// `http.max_uncompressed_bytes`, so this, not the connection count,
    /// bounds the memory that concurrent (hostile) bodies can cost.
    pub validations: tokio::sync::Semaphore,
    /// The Prometheus recorder's handle, for `GET /metrics`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// This node's part in a cluster; `None` for a single node.
    pub cluster: Option<Arc<crate::cluster::node::Cluster>>,
    /// Request bodies held at once, across all connections, before they
    /// are checked (`http.max_in_flight_bytes`).
    pub body_budget: crate::budget::ByteBudget,
    /// Live tails running now (`query.max_concurrent_tails`).
    pub tails: loki_tail::TailSlots,
    /// Queries being evaluated at once (`query.max_concurrent`): Loki's
    /// read API and live tail polls take one while they run.
    pub queries: tokio::sync::Semaphore,
}
