//! Every metric the collector emits, described in one place, and the
//! Prometheus rendering behind `GET /metrics`.
//!
//! Counters and histograms are updated where things happen (ingest, the
//! writer threads, the HTTP layer) through the `metrics` facade; state that
//! already lives in the store and the group coordinator (partition sizes,
//! offsets, consumer lag) is read at scrape time instead, so the hot path
//! pays nothing for it. Labels are bounded: topic and partition (capped by
//! `storage.max_topics`/`max_partitions`), group, route template, reason;
//! never a path, a token or a client address.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::kafka::coordinator::GroupCoordinator;
use crate::store::Store;

/// Seconds buckets for latencies: 100µs (a page-cache write) to 10s (a
/// struggling disk or a large query).
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Batches per group commit: 1 means no sharing; the writer groups at most
/// `store::writer::DEFAULT_MAX_GROUP` requests.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and describes every
/// metric; later calls return the same handle. `None` when another
/// recorder was installed first (a test harness, say): metrics then go there.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batches".to_owned()), GROUP_BUCKETS))
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    describe_counter!(
        "logpost_collector_ingested_bytes_total",
        "Batch bytes stored, per topic."
    );
    describe_counter!("logpost_collector_ingested_records_total", "Records stored, per topic.");
    describe_counter!("logpost_collector_ingested_batches_total", "Batches stored, per topic.");
    describe_counter!(
        "logpost_collector_duplicate_batches_total",
        "Batches dropped as already stored (deduplication), per topic."
    );
    describe_gauge!(
        "logpost_collector_batches_waiting_for_predecessor",
        "Batches of pipelined ingest requests waiting for their stream's previous batch (agents' batch.max_in_flight)."
    );
    describe_counter!(
        "logpost_collector_predecessor_waits_total",
        "Batches of pipelined ingest requests that arrived before their stream's previous batch and waited for it."
    );
    describe_histogram!(
        "logpost_collector_append_seconds",
        "Time to write one group of batches to a partition, fsync included when fsync = always."
    );
    describe_histogram!("logpost_collector_fsync_seconds", "Time of one fdatasync of a segment.");
    describe_histogram!(
        "logpost_collector_group_commit_batches",
        "Batches written (and fsynced) together in one group commit."
    );
    describe_gauge!(
        "logpost_collector_partition_size_bytes",
        "Bytes on disk of a partition's segments."
    );
    describe_gauge!(
        "logpost_collector_partition_high_watermark",
        "Offset the next record of a partition gets."
    );
    describe_gauge!(
        "logpost_collector_partition_log_start_offset",
        "Oldest offset retained in a partition."
    );
    describe_gauge!("logpost_collector_topics", "Topics in the store.");
    describe_gauge!(
        "logpost_collector_consumer_lag",
        "Records between a group's committed offset and the partition's high watermark."
    );
    describe_counter!(
        "logpost_collector_http_requests_total",
        "HTTP requests answered, per route template, method and status."
    );
    describe_histogram!(
        "logpost_collector_http_request_seconds",
        "Time to answer an HTTP request (to the response head), per route template."
    );
    describe_counter!(
        "logpost_collector_rejected_requests_total",
        "Requests refused, per reason (auth_missing, auth_unknown, auth_scope, body_too_large, bad_request, topic_limit, busy, header_timeout, header_too_large, tls_handshake, body_budget, body_too_slow, tail_limit)."
    );
    describe_gauge!(
        "logpost_collector_cluster_under_replicated_partitions",
        "Partitions this node leads whose in-sync replicas are fewer than their replicas (cluster)."
    );
    describe_gauge!(
        "logpost_collector_cluster_leader_partitions",
        "Partitions this node leads (cluster)."
    );
    describe_counter!(
        "logpost_collector_cluster_isr_changes_total",
        "In-sync replica set changes this node made as leader, per kind (shrink, expand)."
    );
    describe_counter!(
        "logpost_collector_cluster_leader_elections_total",
        "Leader changes this node made as controller, per reason (failover, preferred, offline, unclean)."
    );
    describe_gauge!(
        "logpost_collector_cluster_replica_lag_records",
        "Records a follower lacks of this leader's log, per topic, partition and follower (cluster)."
    );
    describe_counter!(
        "logpost_collector_cluster_replicated_batches_total",
        "Batches a follower copied from its leaders, per stats (shipped: stored with the stats the leader sent; rebuilt: decoded again for them) (cluster)."
    );
    describe_gauge!(
        "logpost_collector_cluster_session_valid",
        "1 while this node's etcd lease is renewed in time, 0 while it acknowledges no writes (cluster)."
    );
    describe_gauge!(
        "logpost_collector_in_flight_bytes",
        "Bytes of requests a listener holds now (http: bodies being read and checked; kafka: request frames until their appends are done), against http.max_in_flight_bytes and kafka.max_in_flight_bytes."
    );
    describe_gauge!("logpost_collector_tails_active", "Live tails (WebSocket) running now.");
    describe_counter!(
        "logpost_collector_tail_messages_total",
        "Messages sent to live tails (WebSocket)."
    );
}

/// Sets the bytes a listener (`http`, `kafka`) holds now.
pub fn in_flight_bytes(listener: &'static str, bytes: u64) {
    gauge!("logpost_collector_in_flight_bytes", "listener" => listener).set(bytes as f64);
}

/// Sets the number of live tails running.
pub fn tails_active(n: usize) {
    gauge!("logpost_collector_tails_active").set(n as f64);
}

/// Counts one message sent to a live tail.
pub fn tail_message() {
    counter!("logpost_collector_tail_messages_total").increment(1);
}

/// Counts an in-sync set change made as leader (`shrink`, `expand`).
pub fn isr_changed(kind: &'static str) {
    counter!("logpost_collector_cluster_isr_changes_total", "kind" => kind).increment(1);
}

/// Sets the cluster gauges of this node: partitions it leads, those of
/// them with fewer in-sync replicas than replicas, and whether its etcd
/// session is valid.
pub fn cluster_gauges(leading: usize, under_replicated: usize, session_valid: bool) {
    gauge!("logpost_collector_cluster_leader_partitions").set(leading as f64);
    gauge!("logpost_collector_cluster_under_replicated_partitions").set(under_replicated as f64);
    gauge!("logpost_collector_cluster_session_valid").set(if session_valid { 1.0 } else { 0.0 });
}

/// Sets how many records follower `follower` lacks of this leader's log.
pub fn replica_lag(topic: &str, partition: u32, follower: i32, records: i64) {
    gauge!("logpost_collector_cluster_replica_lag_records",
        "topic" => topic.to_owned(), "partition" => partition.to_string(), "follower" => follower.to_string())
    .set(records as f64);
}

/// Counts batches copied from a leader: `shipped` with the leader's
/// stats, `rebuilt` without (decoded again for the summary).
pub fn replicated_batches(shipped: u64, rebuilt: u64) {
    if shipped > 0 {
        counter!("logpost_collector_cluster_replicated_batches_total", "stats" => "shipped").increment(shipped);
    }
    if rebuilt > 0 {
        counter!("logpost_collector_cluster_replicated_batches_total", "stats" => "rebuilt").increment(rebuilt);
    }
}

/// Counts bytes of answers this node received from other nodes for its
/// queries: `lines` (entries of a remote scan), `state` (a metric query's
/// partial state).
pub fn cluster_read_bytes(kind: &'static str, bytes: u64) {
    counter!("logpost_collector_cluster_read_bytes_total", "kind" => kind).increment(bytes);
}

/// Counts a leader change made as controller.
pub fn leader_elected(reason: &'static str) {
    counter!("logpost_collector_cluster_leader_elections_total", "reason" => reason).increment(1);
}

/// Counts a refused request.
pub fn rejected(reason: &'static str) {
    counter!("logpost_collector_rejected_requests_total", "reason" => reason).increment(1);
}

/// Counts what one ingest request stored.
pub fn ingested(topic: &str, batches: u64, records: u64, bytes: u64, duplicates: u64) {
    let topic = topic.to_owned();
    counter!("logpost_collector_ingested_batches_total", "topic" => topic.clone()).increment(batches);
    counter!("logpost_collector_ingested_records_total", "topic" => topic.clone()).increment(records);
    counter!("logpost_collector_ingested_bytes_total", "topic" => topic.clone()).increment(bytes);
    if duplicates > 0 {
        counter!("logpost_collector_duplicate_batches_total", "topic" => topic).increment(duplicates);
    }
}

/// A pipelined batch starts (`true`) or ends waiting for its predecessor.
pub fn waiting_for_predecessor(starts: bool) {
    if starts {
        counter!("logpost_collector_predecessor_waits_total").increment(1);
        gauge!("logpost_collector_batches_waiting_for_predecessor").increment(1.0);
    } else {
        gauge!("logpost_collector_batches_waiting_for_predecessor").decrement(1.0);
    }
}

/// Records one group commit to one partition.
pub fn appended(batches: usize, elapsed: Duration) {
    histogram!("logpost_collector_append_seconds").record(elapsed.as_secs_f64());
    histogram!("logpost_collector_group_commit_batches").record(batches as f64);
}

/// Records one fdatasync.
pub fn fsynced(elapsed: Duration) {
    histogram!("logpost_collector_fsync_seconds").record(elapsed.as_secs_f64());
}

/// Records one answered HTTP request.
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    counter!(
        "logpost_collector_http_requests_total",
        "route" => route.to_owned(),
        "method" => method.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
    histogram!("logpost_collector_http_request_seconds", "route" => route.to_owned()).record(elapsed.as_secs_f64());
}

/// Sets the scrape-time gauges from the store and the coordinator, then
/// renders everything in Prometheus' text format.
pub fn render(handle: &PrometheusHandle, store: &Store, coordinator: &Arc<GroupCoordinator>) -> String {
    let topics = store.topics();
    gauge!("logpost_collector_topics").set(topics.len() as f64);
    let mut high_watermarks = std::collections::HashMap::new();
    for t in &topics {
        for p in &t.partitions {
            let v = p.view();
            let labels = [("topic", t.name.to_string()), ("partition", p.id.to_string())];
            gauge!("logpost_collector_partition_size_bytes", &labels).set(v.size_bytes() as f64);
            gauge!("logpost_collector_partition_high_watermark", &labels).set(v.high_watermark as f64);
            gauge!("logpost_collector_partition_log_start_offset", &labels).set(v.log_start_offset as f64);
            high_watermarks.insert((t.name.to_string(), p.id), v.high_watermark);
        }
    }
    for (group, topic, partition, committed) in coordinator.all_committed() {
        let Ok(partition) = u32::try_from(partition) else {
            continue;
        };
        let Some(&hw) = high_watermarks.get(&(topic.clone(), partition)) else {
            continue;
        };
        let labels = [("group", group), ("topic", topic), ("partition", partition.to_string())];
        gauge!("logpost_collector_consumer_lag", &labels).set((hw - committed).max(0) as f64);
    }
    handle.render()
}
