//! A follower's loop for one partition (Kafka's replica fetcher): first
//! cut the log back to where the leader's history and ours agree (KIP-101
//! and KIP-279, through the leader's answer to "where does my last epoch
//! end?"), then fetch from the log end, append what comes, fsync, and ask
//! again. Each fetch tells the leader our log end, which is how the leader
//! learns what we hold; its answer carries its high watermark, which
//! bounds what our readers see.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::node::Cluster;
use super::replica::Replica;
use crate::store::StoreError;

/// How long the leader holds a fetch that finds nothing new.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// Bytes asked for per fetch: large enough for a burst, small enough that
/// one partition does not hold the others' fetches for long.
const FETCH_MAX_BYTES: usize = 8 << 20;
/// Retry delays after a failed fetch (the leader down or restarting).
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a fetch came back with.
enum Fetched {
    Batches {
        body: Bytes,
        high_watermark: i64,
        /// The `x-logpost-batch-stats` header, if the leader sent one.
        stats: Option<String>,
    },
    /// The leader is not leading at our epoch (yet, or any more).
    Fenced,
    /// Our log end is outside the leader's log.
    OutOfRange { log_start_offset: i64, log_end_offset: i64 },
}

#[derive(Deserialize)]
struct OutOfRangeBody {
    log_start_offset: i64,
    log_end_offset: i64,
}

#[derive(Deserialize)]
struct EpochEnd {
    epoch: i32,
    end_offset: i64,
}

/// Follows `leader` at `epoch` until cancelled.
pub async fn follow(cluster: Arc<Cluster>, replica: Arc<Replica>, leader: i32, epoch: i32, cancel: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    let sync = cluster.store.config().fsync == crate::store::FsyncPolicy::Always;
    'truncate: loop {
        if cancel.is_cancelled() {
            return;
        }
        let Some(url) = cluster.node_url(leader) else {
            if pause(&cancel, BACKOFF_MAX).await {
                return;
            }
            continue;
        };
        if let Err(e) = truncate(&cluster, &replica, &url, epoch).await {
            failures += 1;
            if failures == 1 || failures.is_multiple_of(20) {
                tracing::warn!(topic = %replica.topic, partition = replica.partition, leader, error = %e, "cannot agree on a truncation point with the leader; retrying");
            }
            if pause(&cancel, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        }
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let offset = replica.log.log_end_offset();
            let known_hw = replica.log.high_watermark();
            let fetched = tokio::select! {
                f = fetch(&cluster, &url, &replica, epoch, offset, known_hw) => f,
                () = cancel.cancelled() => return,
            };
            match fetched {
                Ok(Fetched::Batches {
                    body,
                    high_watermark,
                    stats,
                }) => {
                    if !body.is_empty() {
                        let r = Arc::clone(&replica);
                        let appended =
                            tokio::task::spawn_blocking(move || r.append_copied(&body, stats.as_deref(), sync)).await;
                        match appended {
                            Ok(Ok(_)) => {}
                            Ok(Err(StoreError::ReplicaOutOfOrder { .. })) => continue 'truncate,
                            Ok(Err(StoreError::NotLeader { .. })) => return, // our role changed
                            Ok(Err(e)) => {
                                tracing::error!(topic = %replica.topic, partition = replica.partition, error = %crate::http::error::chain(&e), "cannot append the leader's batches");
                                if pause(&cancel, BACKOFF_MAX).await {
                                    return;
                                }
                                continue 'truncate;
                            }
                            Err(_) => return,
                        }
                    }
                    let hw = high_watermark.min(replica.log.log_end_offset());
                    replica.log.advance_high_watermark(hw);
                    backoff = BACKOFF_MIN;
                    failures = 0;
                }
                Ok(Fetched::Fenced) => {
                    // The leader has not seen the election yet, or a newer
                    // one moved on: the reconciler restarts us if so.
                    if pause(&cancel, Duration::from_millis(100)).await {
                        return;
                    }
                }
                Ok(Fetched::OutOfRange {
                    log_start_offset,
                    log_end_offset,
                }) => {
                    if offset < log_start_offset {
                        tracing::warn!(topic = %replica.topic, partition = replica.partition, offset, log_start_offset,
                            "our log ends before the leader's starts (retention): starting over at its start");
                        let r = Arc::clone(&replica);
                        let _ = tokio::task::spawn_blocking(move || r.restart_at(log_start_offset)).await;
                    } else {
                        tracing::warn!(topic = %replica.topic, partition = replica.partition, offset, log_end_offset,
                            "our log runs past the leader's: truncating again");
                    }
                    continue 'truncate;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(50) {
                        tracing::warn!(topic = %replica.topic, partition = replica.partition, leader, error = %e, "fetch from the leader failed; retrying");
                    }
                    if pause(&cancel, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Sleeps `d`; true if cancelled meanwhile.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = cancel.cancelled() => true,
    }
}

/// Cuts our log to where it stops agreeing with the leader's.
async fn truncate(cluster: &Cluster, replica: &Arc<Replica>, url: &str, epoch: i32) -> Result<(), String> {
    let leo = replica.log.log_end_offset();
    let target = match replica.latest_epoch() {
        // No epoch known: a fresh replica, or data from before the cluster
        // (kept only up to what was acknowledged).
        None => replica.log.high_watermark(),
        Some((mine, _)) => {
            let answer = cluster
                .peer_get(&format!(
                    "{url}/v1/replica/epoch/{}/{}?epoch={mine}&leader_epoch={epoch}&replica={}",
                    replica.topic, replica.partition, cluster.me.id
                ))
                .await?;
            let end: EpochEnd = serde_json::from_slice(&answer).map_err(|e| format!("unexpected answer: {e}"))?;
            if end.epoch < 0 {
                replica.log.high_watermark()
            } else if end.epoch == mine {
                end.end_offset
            } else {
                // KIP-279: the leader does not have our last epoch; cut to
                // where the older epoch it has ends in either log.
                let own = replica.epoch_end(end.epoch).map_or(end.end_offset, |(_, e)| e);
                end.end_offset.min(own)
            }
        }
    };
    if target < leo {
        let r = Arc::clone(replica);
        let cut = tokio::task::spawn_blocking(move || r.truncate(target))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| crate::http::error::chain(&e))?;
        tracing::info!(topic = %replica.topic, partition = replica.partition, from = leo, to = cut, "truncated to the leader's history");
    }
    Ok(())
}

/// One fetch from the leader.
async fn fetch(
    cluster: &Cluster,
    url: &str,
    replica: &Replica,
    epoch: i32,
    offset: i64,
    known_hw: i64,
) -> Result<Fetched, String> {
    let resp = cluster
        .peers
        .get(format!(
            "{url}/v1/replica/fetch/{}/{}?replica={}&epoch={epoch}&offset={offset}&hw={known_hw}&wait_ms={}&max_bytes={FETCH_MAX_BYTES}",
            replica.topic,
            replica.partition,
            cluster.me.id,
            FETCH_WAIT.as_millis()
        ))
        .send()
        .await
        .map_err(|e| crate::http::error::chain(&e))?;
    let status = resp.status();
    let header_i64 = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    match status.as_u16() {
        200 => {
            let high_watermark = header_i64(super::HIGH_WATERMARK_HEADER).ok_or("answer without a high watermark")?;
            // Not valid text is as good as absent: the batches are rebuilt.
            let stats = resp
                .headers()
                .get(super::fetch_stats::BATCH_STATS_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp.bytes().await.map_err(|e| crate::http::error::chain(&e))?;
            Ok(Fetched::Batches {
                body,
                high_watermark,
                stats,
            })
        }
        409 => Ok(Fetched::Fenced),
        416 => {
            let body: OutOfRangeBody = resp.json().await.map_err(|e| e.to_string())?;
            Ok(Fetched::OutOfRange {
                log_start_offset: body.log_start_offset,
                log_end_offset: body.log_end_offset,
            })
        }
        _ => {
            let text = resp.text().await.unwrap_or_default();
            Err(format!("{status}: {}", text.trim()))
        }
    }
}
