//! Starting and stopping the collector: open the store (recovery), start
//! the writer threads, serve HTTP until cancelled, then drain in order:
//! stop accepting, finish in-flight requests, let the writers finish and
//! fsync, exit.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::CollectorConfig;
use crate::http::AppState;
use crate::http::router::app;
use crate::ingest::route::Router as PartitionRouter;
use crate::store::maintenance::Maintenance;
use crate::store::writer::{DEFAULT_MAX_GROUP, LogWriter};
use crate::store::{Store, StoreError};

/// Why the collector could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start writer threads")]
    Threads(#[source] std::io::Error),
    #[error("server failed")]
    Serve(#[source] std::io::Error),
    #[error("start-up task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Runs the collector until `shutdown` is cancelled. `on_listening` is told
/// the bound address once the collector accepts requests.
///
/// # Errors
/// Start-up failures (store, bind, threads) and a failing server.
pub async fn run(
    config: CollectorConfig,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    let store_config = config.store.clone();
    let started = std::time::Instant::now();
    let store = tokio::task::spawn_blocking(move || Store::open(store_config)).await??;
    let topics = store.topics().len();
    tracing::info!(topics, elapsed_ms = started.elapsed().as_millis() as u64, data_dir = %config.data_dir.display(), "store opened");
    let store = Arc::new(store);
    let maintenance = Maintenance::start(Arc::clone(&store)).map_err(ServerError::Threads)?;
    if !config.deduplicate {
        tracing::warn!("deduplication is off: retried batches are stored again (at-least-once)");
    }
    let writer = LogWriter::start_with(
        config.store.writer_threads,
        config.store.fsync,
        DEFAULT_MAX_GROUP,
        config.deduplicate,
    )
    .map_err(ServerError::Threads)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let state = Arc::new(AppState {
        config,
        store: Arc::clone(&store),
        writer,
        router: PartitionRouter::new(),
    });
    tracing::info!(%addr, "listening");
    on_listening(addr);
    let result = axum::serve(listener, app(Arc::clone(&state)))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    tracing::info!("http stopped; draining writers");
    // Handlers are done: the state's last references go with the router.
    match Arc::try_unwrap(state) {
        Ok(state) => state.writer.shutdown(),
        Err(_) => tracing::warn!("requests still hold the store; exiting without waiting for them"),
    }
    maintenance.stop();
    // A final checkpoint: the next start recovers nothing.
    tokio::task::spawn_blocking(move || store.close()).await?;
    tracing::info!("stopped cleanly");
    result.map_err(ServerError::Serve)
}
