//! Starting and stopping the collector: open the store (recovery), start
//! the writer threads and the group coordinator, serve HTTP (and Kafka,
//! when configured) until cancelled, then drain in order: stop accepting,
//! finish in-flight requests, let the writers finish and fsync, exit.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::config::CollectorConfig;
use crate::http::AppState;
use crate::http::router::app;
use crate::ingest::route::Router as PartitionRouter;
use crate::kafka::backend::partitions_of;
use crate::kafka::coordinator::{FileOffsetStore, GroupCoordinator};
use crate::kafka::server::{ServerConfig, serve as serve_kafka};
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
    #[error("{}: cannot open committed offsets", path.display())]
    Offsets {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS")]
    Tls(#[from] logpost_shared::tls::TlsError),
    #[error("http.listen: {0}")]
    AnonymousRemote(String),
    #[error("cannot start writer threads")]
    Threads(#[source] std::io::Error),
    #[error("start-up task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("cannot join the cluster")]
    Cluster(#[from] crate::cluster::node::StartError),
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
    run_with(config, shutdown, on_listening, |_| {}).await
}

/// As [`run`]; `on_kafka_listening` is told the Kafka listener's bound
/// address, if there is one, before `on_listening` is called.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: CollectorConfig,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(SocketAddr),
    on_kafka_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    // `--listen` may have replaced the file's address after validation.
    if let Some(msg) = crate::config::anonymous_remote(config.listen, &config.auth) {
        return Err(ServerError::AnonymousRemote(msg));
    }
    let tls = match &config.http.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            logpost_shared::tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?,
        ))),
        None => None,
    };
    let metrics = crate::metrics::install();
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
    let coordinator = start_coordinator(&config, &store).await?;
    let coordinator_task = tokio::spawn(Arc::clone(&coordinator).run(shutdown.clone()));
    let kafka_listener = match &config.kafka {
        Some(k) => Some(
            bind_kafka(
                k,
                config.max_uncompressed_bytes,
                config.cluster.as_ref().map_or(0, |c| c.node_id),
            )
            .await?,
        ),
        None => None,
    };
    let http_settings = config.http.clone();
    let query_slots = config.query.max_concurrent;
    announce_security(&config, addr);
    let cluster = match &config.cluster {
        Some(settings) => {
            let kafka_advertised = kafka_listener
                .as_ref()
                .map(|(_, _, c)| format!("{}:{}", c.advertised_host, c.advertised_port));
            let me = crate::cluster::meta::NodeInfo {
                id: settings.node_id,
                http: settings.advertise.clone().unwrap_or_else(|| addr.to_string()),
                scheme: if config.http.tls.is_some() { "https" } else { "http" }.to_owned(),
                kafka: kafka_advertised,
                started_ms: crate::store::topic::now_ms(),
            };
            tracing::info!(node = settings.node_id, etcd = ?settings.etcd, "joining the cluster");
            Some(
                crate::cluster::Cluster::start(
                    settings.clone(),
                    Arc::clone(&store),
                    me,
                    &config.data_dir,
                    shutdown.clone(),
                )
                .await?,
            )
        }
        None => None,
    };
    let state = Arc::new(AppState {
        config,
        store: Arc::clone(&store),
        writer,
        router: PartitionRouter::new(),
        coordinator,
        validations: tokio::sync::Semaphore::new(crate::http::validation_slots()),
        metrics,
        cluster: cluster.clone(),
        body_budget: crate::budget::ByteBudget::new(http_settings.max_in_flight_bytes, "http"),
        tails: crate::http::loki_tail::TailSlots::default(),
        queries: tokio::sync::Semaphore::new(query_slots),
    });
    if state.cluster.is_some() {
        // Groups live on their __consumer_offsets leaders, commits in that log.
        let placement = crate::kafka::coordinator::in_cluster::ClusterGroups::new(&state, Handle::current());
        state.coordinator.set_placement(Arc::new(placement));
    }
    let kafka = match kafka_listener {
        Some((listener, kafka_addr, server_config)) => {
            tracing::info!(addr = %kafka_addr, advertised = %format!("{}:{}", server_config.advertised_host, server_config.advertised_port), "kafka listening");
            on_kafka_listening(kafka_addr);
            Some(tokio::spawn(serve_kafka(
                listener,
                Arc::clone(&state),
                server_config,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    tracing::info!(%addr, "listening");
    on_listening(addr);
    crate::http::serve::serve(listener, app(Arc::clone(&state)), &http_settings, tls, shutdown.clone()).await;
    // Either server failing stops the other, so that the drain below runs.
    shutdown.cancel();
    if let Some(kafka) = kafka {
        kafka.await?;
    }
    let _ = coordinator_task.await;
    if let Some(cluster) = &cluster {
        // Revokes the lease: the other nodes take over at once.
        cluster.shutdown().await;
    }
    drop(cluster);
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
    Ok(())
}

/// Says at start who may do what: an operator reading the journal should
/// not have to open the config to learn that the collector is open.
fn announce_security(config: &CollectorConfig, addr: SocketAddr) {
    let tls = config.http.tls.as_ref();
    let client_certs = tls.is_some_and(|t| t.client_ca.is_some());
    if config.auth.enabled() {
        let names: Vec<&str> = config.auth.tokens.iter().map(|t| t.name.as_str()).collect();
        tracing::info!(tokens = ?names, tls = tls.is_some(), client_certs, "bearer tokens required");
    } else if addr.ip().is_loopback() {
        tracing::warn!(%addr, "no [auth] tokens configured: serving loopback only, without authentication");
    } else {
        tracing::warn!(%addr, "no [auth] tokens configured and allow_anonymous_remote = true: anyone who can connect may read, write and delete");
    }
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "plain HTTP on a non-loopback address: tokens and logs travel unencrypted; configure [http.tls]");
    }
    if let Some(k) = &config.kafka
        && config.auth.enabled()
    {
        tracing::warn!(addr = %k.listen, "the Kafka listener has no authentication: keep it on a trusted network");
    }
}

/// The group coordinator, with committed offsets loaded from
/// `<data_dir>/groups/offsets.json`.
async fn start_coordinator(config: &CollectorConfig, store: &Arc<Store>) -> Result<Arc<GroupCoordinator>, ServerError> {
    let dir = config.data_dir.join("groups");
    let path = dir.join("offsets.json");
    let groups = config.groups.clone();
    let counts = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let offsets_err = |source| ServerError::Offsets {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(offsets_err)?;
        let offsets = FileOffsetStore::open(&path).map_err(offsets_err)?;
        GroupCoordinator::new(
            groups,
            Arc::new(offsets),
            Arc::new(move |topic: &str| partitions_of(&counts, topic)),
        )
        .map_err(offsets_err)
    })
    .await?
}

/// Binds the Kafka listener and works out what to advertise.
async fn bind_kafka(
    k: &crate::config::kafka::KafkaSettings,
    max_uncompressed_bytes: usize,
    node_id: i32,
) -> Result<(TcpListener, SocketAddr, ServerConfig), ServerError> {
    let bind_err = |source| ServerError::Bind { addr: k.listen, source };
    let listener = TcpListener::bind(k.listen).await.map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    let (host, port) = k
        .advertised
        .clone()
        .unwrap_or_else(|| (bound.ip().to_string(), bound.port()));
    let config = ServerConfig {
        advertised_host: host,
        advertised_port: i32::from(port),
        node_id,
        cluster_id: k.cluster_id.clone(),
        max_connections: k.max_connections,
        max_frame_size: k.max_request_bytes,
        idle_timeout: k.idle_timeout,
        max_fetch_wait: k.max_fetch_wait,
        auto_create_topics: k.auto_create_topics,
        max_uncompressed_bytes,
        max_in_flight_bytes: k.max_in_flight_bytes,
        ..ServerConfig::default()
    };
    Ok((listener, bound, config))
}
