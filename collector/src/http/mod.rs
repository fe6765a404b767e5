//! The HTTP shell: routes, handlers, and the mapping of errors to
//! responses. Handlers only move data between the request, the blocking
//! pool (validation, queries) and the writer threads; the logic they call
//! lives in `ingest/`, `store/` and `query/`.

pub mod admin;
pub mod error;
pub mod fetch;
pub mod ingest;
pub mod loki;
pub mod loki_params;
pub mod loki_read;
pub mod loki_tail;
pub mod query_stream;
pub mod read;
pub mod router;
pub mod streams;

use std::sync::Arc;

use crate::config::CollectorConfig;
use crate::ingest::route::Router as PartitionRouter;
use crate::kafka::coordinator::GroupCoordinator;
use crate::store::Store;
use crate::store::writer::LogWriter;

/// What every handler shares.
pub struct AppState {
    pub config: CollectorConfig,
    pub store: Arc<Store>,
    pub writer: LogWriter,
    pub router: PartitionRouter,
    /// Consumer groups and committed offsets: one coordinator for Kafka
    /// clients and HTTP consumers alike.
    pub coordinator: Arc<GroupCoordinator>,
}
