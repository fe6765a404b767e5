//! Every metric the agent emits, described in one place, and the small
//! HTTP endpoint that serves them in Prometheus' text format
//! (`[metrics] listen`).
//!
//! The tailing loop keeps plain counters (`Stats`) and publishes them here
//! once a second, so the hot path never touches the metrics registry;
//! the shipper counts per request. Labels are bounded: `source` only,
//! never a path.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::tail::file_server::Stats;

/// Installs the Prometheus recorder and describes every metric.
///
/// # Errors
/// A recorder was already installed.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| e.to_string())?;
    describe_counter!("logpost_agent_lines_read_total", "Lines read from files, per source.");
    describe_counter!("logpost_agent_bytes_read_total", "Bytes read from files, per source.");
    describe_counter!(
        "logpost_agent_lines_split_total",
        "Pieces of lines longer than max_line_bytes (split mode)."
    );
    describe_counter!(
        "logpost_agent_lines_truncated_total",
        "Lines cut to max_line_bytes (truncate mode)."
    );
    describe_counter!(
        "logpost_agent_events_filtered_total",
        "Events dropped by include_lines/exclude_lines."
    );
    describe_counter!(
        "logpost_agent_parse_failures_total",
        "Events that did not parse (kept, marked logpost.parse_error)."
    );
    describe_counter!(
        "logpost_agent_truncations_total",
        "Files found truncated in place (copytruncate)."
    );
    describe_counter!(
        "logpost_agent_inode_reuse_total",
        "Checkpointed files whose inode now holds other content."
    );
    describe_gauge!("logpost_agent_files_tracked", "Files being tailed.");
    describe_gauge!(
        "logpost_agent_files_open",
        "Files with an open handle (capped by tail.max_open_files)."
    );
    describe_gauge!(
        "logpost_agent_files_waiting",
        "Files with unread data waiting for a handle (the max_open_files cap)."
    );
    describe_gauge!(
        "logpost_agent_bytes_behind",
        "Bytes written to files but not yet acknowledged, per source."
    );
    describe_gauge!(
        "logpost_agent_checkpoint_age_seconds",
        "Seconds since the checkpoint file was last written."
    );
    describe_counter!(
        "logpost_agent_batches_sent_total",
        "Requests sent to the collector (retries included)."
    );
    describe_counter!(
        "logpost_agent_not_leader_total",
        "Requests a cluster node refused because it does not lead the partition (421); the agent then asks who does."
    );
    describe_counter!(
        "logpost_agent_requests_resent_in_order_total",
        "Requests sent ahead of an unanswered one (batch.max_in_flight) that the collector did not store whole, sent again once alone."
    );
    describe_counter!(
        "logpost_agent_batches_acked_total",
        "Requests the collector acknowledged."
    );
    describe_counter!(
        "logpost_agent_batches_failed_total",
        "Requests given up after the collector refused them."
    );
    describe_counter!(
        "logpost_agent_retries_total",
        "Retries after an error, a timeout or backpressure."
    );
    describe_counter!(
        "logpost_agent_records_shipped_total",
        "Records acknowledged by the collector."
    );
    describe_counter!(
        "logpost_agent_bytes_shipped_total",
        "Compressed request bytes acknowledged by the collector."
    );
    Ok(handle)
}

/// Publishes the tailing loop's counters (absolute values).
pub fn publish(stats: &Stats, source_names: &[String], checkpoint_age: Duration) {
    for (i, name) in source_names.iter().enumerate() {
        let Some(s) = stats.per_source.get(i) else { continue };
        counter!("logpost_agent_lines_read_total", "source" => name.clone()).absolute(s.lines);
        counter!("logpost_agent_bytes_read_total", "source" => name.clone()).absolute(s.bytes);
        gauge!("logpost_agent_bytes_behind", "source" => name.clone()).set(s.bytes_behind as f64);
    }
    counter!("logpost_agent_lines_split_total").absolute(stats.lines_split);
    counter!("logpost_agent_lines_truncated_total").absolute(stats.lines_truncated);
    counter!("logpost_agent_events_filtered_total").absolute(stats.events_filtered);
    counter!("logpost_agent_parse_failures_total").absolute(stats.parse_failures);
    counter!("logpost_agent_truncations_total").absolute(stats.truncations);
    counter!("logpost_agent_inode_reuse_total").absolute(stats.inode_reused);
    gauge!("logpost_agent_files_tracked").set(stats.files_tracked as f64);
    gauge!("logpost_agent_files_open").set(stats.files_open as f64);
    gauge!("logpost_agent_files_waiting").set(stats.files_waiting as f64);
    gauge!("logpost_agent_checkpoint_age_seconds").set(checkpoint_age.as_secs_f64());
}

/// Longest request head read from a scraper; anything longer is refused.
const MAX_REQUEST_HEAD: usize = 8 << 10;

/// Serves `GET /metrics` on `listener` until `shutdown`. One request per
/// connection; anything else gets 404.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, shutdown: CancellationToken) {
    loop {
        let (mut socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
                    let n = socket.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(buf.get(..n).unwrap_or_default());
                }
                Ok::<(), std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let (status, body) = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?") {
                ("200 OK", handle.render())
            } else {
                ("404 Not Found", "not found; metrics are at /metrics\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Binds the metrics listener.
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
