//! Wiring: the tailing thread, the shipper on a small runtime, and the
//! two-phase shutdown (stop reading, then keep checkpointing until the
//! in-flight acknowledgements arrive or the drain deadline passes).

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::ship::acks::AckBoard;
use crate::ship::client::{self, SharedUrls, ShipperConfig, ShipperStats};
use crate::ship::leaders::Leaders;
use crate::ship::lookup::StreamLookup;
use crate::tail::file_server::FileServer;

/// Sealed requests queued between the tailer and the shipper. With the
/// default 2 MiB batches this bounds queued data to a few MiB; a full queue
/// stops reading (backpressure).
const QUEUE_DEPTH: usize = 2;
/// How long an idle compression thread is kept (tokio's default: 10 s).
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Worker threads of the shipper's runtime: HTTP and waiting only;
/// compression runs on the blocking pool.
const RUNTIME_WORKERS: usize = 2;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{}: cannot create data directory", path.display())]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot read or create the agent id", path.display())]
    AgentId {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the tailing thread failed")]
    Tailer,
    #[error(transparent)]
    Locked(#[from] logpost_shared::dir_lock::DirLockError),
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary {
    pub shipper: ShipperStats,
    /// Whether everything read was acknowledged before exit.
    pub drained: bool,
}

/// How to run.
pub struct RunOptions {
    /// After SIGTERM, how long to wait for in-flight batches.
    pub drain_timeout: Duration,
    /// Print records instead of shipping them; move no checkpoint.
    pub dry_run: bool,
    /// New configs (SIGHUP), already validated.
    pub reloads: Option<std::sync::mpsc::Receiver<AgentConfig>>,
}

/// Runs the agent until `shutdown` is cancelled; then drains for at most
/// `options.drain_timeout`.
///
/// # Errors
/// Start-up failures.
pub fn run(config: AgentConfig, shutdown: CancellationToken, options: RunOptions) -> Result<RunSummary, AgentError> {
    let drain_timeout = options.drain_timeout;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // Two agents on one data directory would each move the other's
    // checkpoints; a dry run writes none, so it may look on beside one.
    let _lock = if options.dry_run {
        None
    } else {
        Some(logpost_shared::dir_lock::DirLock::acquire(
            &config.data_dir,
            "logpost-agent",
        )?)
    };
    let agent_id = load_or_create_agent_id(&config.data_dir)?;
    if !options.dry_run {
        // A refusal recorded by an earlier run is stale until seen again.
        crate::ship::refusals::RefusalLog::new(Some(config.data_dir.clone())).cleared();
        crate::tail::compressed::clear_leftovers(&config.data_dir);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        // Compression threads end before the tailer releases the code
        // pages of a quiet agent (crate::memory), not after it: a thread's
        // exit runs code that would be faulted back in.
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .thread_name("agent-ship")
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    let config = Arc::new(config);
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let acks = Arc::new(AckBoard::default());
    let hard_stop = CancellationToken::new();
    let urls: SharedUrls = Arc::new(RwLock::new(config.collector_urls.clone()));
    // Who leads which partition, when the collectors form a cluster: the
    // shipper routes by it and the stream lookup asks the leaders.
    let leaders = crate::ship::http::client_builder(&config.collector_auth)
        .and_then(|b| {
            b.connect_timeout(Duration::from_secs(3))
                .build()
                .map_err(|e| e.to_string())
        })
        .map(|http| Arc::new(Leaders::new(http, Arc::clone(&urls))))
        .map_err(|e| AgentError::Runtime(std::io::Error::other(e)))?;
    let shipper_config = ShipperConfig {
        urls: Arc::clone(&urls),
        leaders: Arc::clone(&leaders),
        compression: config.batch.compression,
        max_in_flight: config.batch.max_in_flight,
        request_timeout: config.request_timeout,
        auth: config.collector_auth.clone(),
        refusals: crate::ship::refusals::RefusalLog::new(Some(config.data_dir.clone())),
    };
    let shipper = if options.dry_run {
        runtime.spawn(client::run_dry(rx))
    } else {
        runtime.spawn(client::run(shipper_config, rx, Arc::clone(&acks), hard_stop.clone()))
    };
    let metrics_stop = CancellationToken::new();
    if let Some(addr) = config.metrics_listen {
        let handle = crate::metrics::install().map_err(|e| AgentError::Runtime(std::io::Error::other(e)))?;
        let listener = runtime
            .block_on(crate::metrics::bind(addr))
            .map_err(|source| AgentError::Metrics { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| AgentError::Metrics { addr, source })?;
        tracing::info!(addr = %bound, "metrics listening");
        runtime.spawn(crate::metrics::serve(listener, handle, metrics_stop.clone()));
    }
    let lookup = if options.dry_run {
        None
    } else {
        Some(
            StreamLookup::new(
                runtime.handle().clone(),
                Arc::clone(&urls),
                leaders,
                &config.collector_auth,
            )
            .map_err(|e| AgentError::Runtime(std::io::Error::other(e)))?,
        )
    };
    let mut server = FileServer::new(
        Arc::clone(&config),
        agent_id,
        tx,
        runtime.handle().clone(),
        acks,
        lookup,
    );
    server.set_dry_run(options.dry_run);
    if let Some(reloads) = options.reloads {
        server.set_reloads(reloads, urls);
    }
    let stop_reading = shutdown.clone();
    let tailer = std::thread::Builder::new()
        .name("agent-tail".into())
        .spawn(move || server.run(&stop_reading))
        .map_err(AgentError::Runtime)?;
    tracing::info!(sources = config.sources.len(), collectors = ?config.collector_urls, "agent started");

    runtime.block_on(shutdown.cancelled());
    // Phase two: the deadline starts now, while the tailer seals and hands
    // over what is pending and the shipper drains.
    let deadline = hard_stop.clone();
    runtime.spawn(async move {
        tokio::time::sleep(drain_timeout).await;
        deadline.cancel();
    });
    let mut server = tailer.join().map_err(|_| AgentError::Tailer)?;
    let stats = runtime.block_on(shipper).unwrap_or_default();
    let drained = !hard_stop.is_cancelled();
    hard_stop.cancel();
    server.final_checkpoint();
    if drained {
        tracing::info!(records = stats.records, "drained and checkpointed");
    } else {
        tracing::warn!("drain deadline passed; unacknowledged lines will be read again at the next start");
    }
    metrics_stop.cancel();
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(RunSummary {
        shipper: stats,
        drained,
    })
}

/// The agent's persistent random id, part of every stream id, so that two
/// agents sharing a collector never share a stream.
fn load_or_create_agent_id(data_dir: &Path) -> Result<u64, AgentError> {
    let path = data_dir.join("agent_id");
    let err = |source| AgentError::AgentId {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            if let Ok(id) = u64::from_str_radix(s.trim(), 16) {
                return Ok(id);
            }
            tracing::warn!(path = %path.display(), "agent id is corrupt; creating a new one");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut bytes = [0u8; 8];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(err)?;
    }
    let id = u64::from_le_bytes(bytes);
    let tmp = data_dir.join("agent_id.tmp");
    std::fs::write(&tmp, format!("{id:016x}\n")).map_err(err)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(id)
}
