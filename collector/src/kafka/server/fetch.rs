//! Fetch with long polling: read every requested partition; if fewer than
//! `min_bytes` came back (and nothing failed), wait until any of those
//! partitions' high watermark moves or `max_wait_ms` passes, then read
//! again. Waiting is on the partitions' high-watermark watches, never a
//! timer loop; reads run on the blocking pool.
//!
//! Size limits follow KIP-74: `partition_max_bytes` per partition and
//! `max_bytes` per response, except that the first batch returned is
//! returned whole even when larger, so consumers cannot get stuck.

use super::Shared;
use super::handlers::{BoxFuture, Pending};
use crate::kafka::backend;
use crate::kafka::error::KafkaError;
use crate::kafka::protocol::ResponseFrame;
use crate::kafka::protocol::fetch::{FetchPartitionResponse, FetchRequest, encode_response};
use crate::kafka::protocol::wire::Writer;
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::watch;
use tokio::time::Instant;

pub(super) fn handle(shared: &Arc<Shared>, req: FetchRequest, id: i32, v: i16) -> Pending {
    let shared = Arc::clone(shared);
    let req = Arc::new(req);
    let wait =
        std::time::Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)).min(shared.config.max_fetch_wait);
    // The wait is measured from arrival, not from when the writer gets here.
    let deadline = Instant::now() + wait;
    Box::pin(async move {
        let partitions = req.topics.iter().map(|(_, p)| p.len()).sum::<usize>();
        loop {
            // Subscribe before reading: an append between the read and the
            // wait then still wakes us.
            let watchers: Vec<watch::Receiver<i64>> = req
                .topics
                .iter()
                .flat_map(|(t, parts)| parts.iter().map(move |p| (t, p.partition)))
                .filter_map(|(t, p)| backend::watch(&shared.app.store, t, p).ok())
                .collect();
            let (s, r) = (Arc::clone(&shared), Arc::clone(&req));
            let (topics, bytes, failed) = match tokio::task::spawn_blocking(move || read_all(&s, &r)).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(error = %e, "fetch read task failed");
                    (failed_all(&req, KafkaError::UNKNOWN_SERVER_ERROR), 0, true)
                }
            };
            let enough = bytes >= usize::try_from(req.min_bytes).unwrap_or(0).max(1) || req.min_bytes <= 0;
            if enough || failed || partitions == 0 || Instant::now() >= deadline {
                let mut w = Writer::new();
                encode_response(&mut w, v, &topics);
                return Some(ResponseFrame::new(id, w));
            }
            tracing::debug!(partitions, bytes, "fetch waiting for data");
            let _ = tokio::time::timeout_at(deadline, any_changed(watchers)).await;
        }
    })
}

fn read_all(shared: &Shared, req: &FetchRequest) -> (Vec<(String, Vec<FetchPartitionResponse>)>, usize, bool) {
    let mut budget = usize::try_from(req.max_bytes).unwrap_or(0);
    let mut total = 0usize;
    let mut failed = false;
    let topics = req
        .topics
        .iter()
        .map(|(topic, parts)| {
            let parts = parts
                .iter()
                .map(|p| {
                    let limit = usize::try_from(p.partition_max_bytes).unwrap_or(0).min(budget);
                    // In a cluster consumers read from the leader (Kafka's rule).
                    let led = match (&shared.app.cluster, u32::try_from(p.partition)) {
                        (Some(c), Ok(index)) => c.check_leader(topic, index).map_err(|e| e.kafka_code()),
                        _ => Ok(()),
                    };
                    match led
                        .and_then(|()| backend::fetch(&shared.app.store, topic, p.partition, p.fetch_offset, limit))
                    {
                        Ok(ok) => {
                            let len = ok.records.len();
                            // Only the first data in a response may exceed the budget.
                            let records = if (total > 0 && len > budget) || len == 0 {
                                Vec::new()
                            } else {
                                vec![ok.records]
                            };
                            let taken: usize = records.iter().map(bytes::Bytes::len).sum();
                            total += taken;
                            budget = budget.saturating_sub(taken);
                            FetchPartitionResponse {
                                partition: p.partition,
                                error_code: 0,
                                high_watermark: ok.high_watermark,
                                log_start_offset: ok.log_start_offset,
                                records,
                            }
                        }
                        Err(e) => {
                            failed = true;
                            FetchPartitionResponse {
                                partition: p.partition,
                                error_code: e.code(),
                                high_watermark: -1,
                                log_start_offset: -1,
                                records: Vec::new(),
                            }
                        }
                    }
                })
                .collect();
            (topic.clone(), parts)
        })
        .collect();
    (topics, total, failed)
}

/// Every requested partition answered with `error`.
fn failed_all(req: &FetchRequest, error: KafkaError) -> Vec<(String, Vec<FetchPartitionResponse>)> {
    req.topics
        .iter()
        .map(|(topic, parts)| {
            let parts = parts
                .iter()
                .map(|p| FetchPartitionResponse {
                    partition: p.partition,
                    error_code: error.code(),
                    high_watermark: -1,
                    log_start_offset: -1,
                    records: Vec::new(),
                })
                .collect();
            (topic.clone(), parts)
        })
        .collect()
}

/// Resolves when any receiver sees a new value. A closed channel never
/// resolves (the partition is gone; the read after the deadline reports it).
async fn any_changed(watchers: Vec<watch::Receiver<i64>>) {
    let mut waits: Vec<BoxFuture<'static, ()>> = watchers
        .into_iter()
        .map(|mut rx| -> BoxFuture<'static, ()> {
            Box::pin(async move {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
        })
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        if waits.iter_mut().any(|w| w.as_mut().poll(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
