//! The Kafka TCP server: accepts connections (bounded by a semaphore) and
//! runs one task per connection that decodes requests, dispatches them to
//! the store (through [`super::backend`]) and the group coordinator, and
//! writes responses in request order.
//!
//! The server is a single broker (node id 0) that leads every partition
//! and coordinates every group, advertised at a configured host and port
//! so that clients behind NAT or in containers reconnect to the right
//! address.
//!
//! Shutdown follows mini-redis `server.rs`: cancelling the token stops the
//! accept loop and every connection; [`serve`] returns once all connection
//! tasks have ended, so that the caller can then stop the writer threads.

mod connection;
mod fetch;
mod handlers;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::budget::ByteBudget;
use crate::http::AppState;

/// Server settings, from `[kafka]` and the address actually bound.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Host clients are told to connect to (Metadata, FindCoordinator).
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: i32,
    /// This broker's node id.
    pub node_id: i32,
    /// Cluster id reported by Metadata v2+.
    pub cluster_id: String,
    /// Connections served at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// Largest request frame accepted; a larger length prefix closes the connection.
    pub max_frame_size: usize,
    /// A connection with no request and nothing in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Requests per connection decoded ahead of their responses being written.
    pub max_in_flight: usize,
    /// Whether Metadata and Produce may create missing topics (the store's
    /// `auto_create_topics` must allow it too).
    pub auto_create_topics: bool,
    /// Upper bound on a Fetch's `max_wait_ms`.
    pub max_fetch_wait: Duration,
    /// Largest records section a produced batch may inflate to.
    pub max_uncompressed_bytes: usize,
    /// Request bytes held at once across all connections.
    pub max_in_flight_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            node_id: 0,
            cluster_id: "logpost".into(),
            max_connections: 1024,
            max_frame_size: 64 << 20,
            idle_timeout: Duration::from_secs(600),
            max_in_flight: 64,
            auto_create_topics: true,
            max_fetch_wait: Duration::from_secs(30),
            max_uncompressed_bytes: 256 << 20,
            max_in_flight_bytes: 128 << 20,
        }
    }
}

/// What every connection task needs.
pub(crate) struct Shared {
    pub(crate) app: Arc<AppState>,
    pub(crate) config: ServerConfig,
    /// Request frames held at once, all connections together.
    pub(crate) budget: ByteBudget,
}

/// Serves Kafka clients on `listener` until `shutdown` is cancelled, then
/// closes every connection and returns. The coordinator's run task (see
/// [`crate::kafka::coordinator::GroupCoordinator::run`]) must be running
/// for sessions to expire and commits to complete.
pub async fn serve(listener: TcpListener, app: Arc<AppState>, config: ServerConfig, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(config.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    let budget = ByteBudget::new(config.max_in_flight_bytes.max(config.max_frame_size as u64), "kafka");
    let shared = Arc::new(Shared { app, config, budget });
    let mut connections = JoinSet::new();
    loop {
        // Take a permit before accepting, so excess clients queue in the
        // kernel's backlog instead of being accepted and dropped.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        // Reap finished connection tasks so the set does not grow forever.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                let stop = shutdown.child_token();
                connections.spawn(async move {
                    connection::run(stream, peer, shared, stop).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Usually EMFILE or a connection reset before accept; back
                // off briefly instead of spinning on a persistent error.
                tracing::warn!(error = %e, "kafka accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    shutdown.cancel();
    while connections.join_next().await.is_some() {}
    tracing::info!("kafka listener stopped");
}
