//! The HTTP listener's accept loop: plain or TLS connections, each served
//! by hyper with the limits `axum::serve` does not expose.
//!
//! Why our own loop: the collector faces networks it does not control.
//! - A request head must arrive within `http.header_timeout`, which also
//!   closes idle keep-alive connections (hyper starts the timer whenever
//!   it waits for a head): slowloris clients are cut off.
//! - A request head larger than `http.max_header_bytes` gets 431.
//! - At most `http.max_connections` connections are served; more wait in
//!   the kernel's backlog instead of costing memory.
//! - The TLS handshake runs in the connection's task, under the header
//!   timeout, so a slow handshake holds up no one else.
//!
//! Shutdown: stop accepting, ask every connection to finish its request
//! and close, and wait for them up to [`DRAIN_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::http::HttpSettings;

/// Longest wait for open connections after shutdown begins: a streaming
/// query or a long-poll must not keep the collector from stopping (systemd
/// would SIGKILL it after its own timeout, skipping the final checkpoint).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause after a failed accept (EMFILE, say), so that the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let tracker = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes);
    let handshake_timeout = settings.header_timeout;
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (app, builder, tls, shutdown) = (app.clone(), builder.clone(), tls.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(tcp, app, builder, shutdown).await,
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_connection(stream, app, builder, shutdown).await,
                    Ok(Err(e)) => {
                        crate::metrics::rejected("tls_handshake");
                        tracing::debug!(%peer, error = %e, "tls handshake failed");
                    }
                    Err(_) => {
                        crate::metrics::rejected("tls_handshake");
                        tracing::debug!(%peer, "tls handshake timed out");
                    }
                },
            }
        });
    }
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            "connections still open after the drain timeout; closing them"
        );
    }
}

async fn serve_connection<IO>(io: IO, app: Router, builder: http1::Builder, shutdown: CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    // Upgrades: live tail over WebSocket.
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            crate::metrics::rejected("header_timeout");
        } else if e.is_parse_too_large() {
            crate::metrics::rejected("header_too_large");
        }
        tracing::debug!(error = %e, "connection closed with an error");
    }
}
