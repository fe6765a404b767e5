//! Where Kafka requests meet the collector's store: produce through the
//! same checks and the same writer threads as HTTP ingest, fetch and
//! ListOffsets through a partition's published view, and the mapping of
//! the store's errors and outcomes to Kafka error codes.
//!
//! Why a module of its own: the protocol layer (`protocol/`, `server/`)
//! speaks only Kafka; the store speaks only offsets and batches. This is
//! the one place that knows both, so a change to either side's vocabulary
//! touches one file.
//!
//! Everything here except [`submit`] and [`outcome`] reads files or may
//! create a topic (an fsync), so the server calls it on the blocking pool.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::KafkaError;
use crate::ingest::validate::{IngestError, split_and_check};
use crate::store::read::{ReadError, read_from, record_for_time};
use crate::store::writer::{AppendResult, LogWriter};
use crate::store::{AppendItem, BatchOutcome, Partition, Refusal, Store, StoreError, Topic};

/// A refused request part: the code the client sees and, where there is
/// more to say, a message (Produce v8 carries it to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error: KafkaError,
    pub message: Option<String>,
}

impl From<KafkaError> for Failure {
    fn from(error: KafkaError) -> Self {
        Failure { error, message: None }
    }
}

impl Failure {
    fn with(error: KafkaError, message: impl Into<String>) -> Self {
        Failure {
            error,
            message: Some(message.into()),
        }
    }
}

/// A durable append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOk {
    /// Offset of the batch's first record (for a retried batch: the offset
    /// it got the first time).
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// The offset after the batch's records (what acks=all waits for).
    pub stored_end: i64,
}

/// What one partition's read returned.
#[derive(Debug, Clone, Default)]
pub struct FetchOk {
    /// Whole batches, as stored on disk.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// The Kafka code for a store error. Retriable conditions get retriable
/// codes, so clients back off and try again instead of failing.
pub fn store_error_code(e: &StoreError) -> KafkaError {
    match e {
        StoreError::TopicName(_) => KafkaError::INVALID_TOPIC_EXCEPTION,
        StoreError::UnknownTopic(_) | StoreError::AutoCreateDisabled(_) | StoreError::NoSuchPartition { .. } => {
            KafkaError::UNKNOWN_TOPIC_OR_PARTITION
        }
        // A shutting-down collector is a leader going away: clients refresh
        // their metadata and retry.
        StoreError::ShuttingDown | StoreError::Busy { .. } | StoreError::NotLeader { .. } => {
            KafkaError::NOT_LEADER_OR_FOLLOWER
        }
        StoreError::ReplicaOutOfOrder { .. } => KafkaError::KAFKA_STORAGE_ERROR,
        StoreError::Unavailable(_) => KafkaError::LEADER_NOT_AVAILABLE,
        StoreError::Poisoned { .. } | StoreError::DiskFull { .. } | StoreError::Io { .. } | StoreError::Read { .. } => {
            KafkaError::KAFKA_STORAGE_ERROR
        }
        StoreError::TopicLimit { .. } => KafkaError::POLICY_VIOLATION,
        StoreError::TopicExists(_)
        | StoreError::Meta { .. }
        | StoreError::MetaCorrupt { .. }
        | StoreError::BadPartitionCount(_)
        | StoreError::Internal(_)
        | StoreError::Locked(_) => KafkaError::UNKNOWN_SERVER_ERROR,
    }
}

fn store_failure(e: &StoreError) -> Failure {
    let code = store_error_code(e);
    if code == KafkaError::UNKNOWN_SERVER_ERROR || code == KafkaError::KAFKA_STORAGE_ERROR {
        tracing::error!(error = %crate::http::error::chain(e), "kafka request failed in the store");
    }
    Failure::with(code, crate::http::error::chain(e))
}

fn ingest_failure(e: &IngestError) -> Failure {
    use logpost_shared::batch::BatchError;
    let code = match e {
        IngestError::TooLarge { .. } => KafkaError::MESSAGE_TOO_LARGE,
        IngestError::TimestampOutOfRange { .. } => KafkaError::INVALID_TIMESTAMP,
        IngestError::Batch {
            source: BatchError::UnsupportedCompression(_),
            ..
        } => KafkaError::UNSUPPORTED_COMPRESSION_TYPE,
        IngestError::EmptyBatch { .. } | IngestError::OffsetDeltaMismatch { .. } | IngestError::ControlBatch { .. } => {
            KafkaError::INVALID_RECORD
        }
        _ => KafkaError::CORRUPT_MESSAGE,
    };
    Failure::with(code, crate::http::error::chain(e))
}

/// `(name, partition count)` of every topic.
pub fn topics(store: &Store) -> Vec<(String, i32)> {
    store
        .topics()
        .iter()
        .map(|t| (t.name.to_string(), partition_count(t)))
        .collect()
}

fn partition_count(t: &Topic) -> i32 {
    i32::try_from(t.meta.partitions).unwrap_or(i32::MAX)
}

/// Topic `name`, created with the store's defaults when missing and
/// `create` is set (and the store allows it). Blocking: creation fsyncs.
///
/// # Errors
/// `UNKNOWN_TOPIC_OR_PARTITION`, `INVALID_TOPIC_EXCEPTION`, or a storage error.
pub fn topic(store: &Store, name: &str, create: bool) -> Result<Arc<Topic>, Failure> {
    if let Some(t) = store.topic(name) {
        return Ok(t);
    }
    if let Err(e) = logpost_shared::topic::validate_topic_name(name) {
        return Err(Failure::with(KafkaError::INVALID_TOPIC_EXCEPTION, e.to_string()));
    }
    if !create {
        return Err(KafkaError::UNKNOWN_TOPIC_OR_PARTITION.into());
    }
    store.topic_for_ingest(name).map_err(|e| store_failure(&e))
}

/// The partition count of `name`, for the coordinator's own assignments.
pub fn partitions_of(store: &Store, name: &str) -> Option<i32> {
    store.topic(name).map(|t| partition_count(&t))
}

fn partition(store: &Store, topic: &str, partition: i32) -> Result<Arc<Partition>, KafkaError> {
    let t = store.topic(topic).ok_or(KafkaError::UNKNOWN_TOPIC_OR_PARTITION)?;
    u32::try_from(partition)
        .ok()
        .and_then(|p| t.partition(p))
        .cloned()
        .ok_or(KafkaError::UNKNOWN_TOPIC_OR_PARTITION)
}

/// A produce payload that passed every check, ready for the writer.
pub struct CheckedProduce {
    pub partition: Arc<Partition>,
    pub item: AppendItem,
}

/// Checks one partition's produce payload as HTTP ingest checks a body
/// (framing, CRC, codec, every record decoded within `max_uncompressed_bytes`)
/// and finds (or creates) its partition: the one the client chose; a Kafka
/// producer's partitioner is never second-guessed. Blocking.
///
/// Kafka accepts exactly one batch per partition in a Produce request (v3
/// and later), and so does this: a request is then applied whole or not at
/// all, as the producer's sequence bookkeeping assumes.
///
/// # Errors
/// The Kafka error for a bad batch, an unknown topic or partition, or a
/// transactional batch (transactions are not supported).
pub fn check_produce(
    store: &Store,
    topic_name: &str,
    partition_index: i32,
    records: Option<Bytes>,
    max_uncompressed_bytes: usize,
    create: bool,
) -> Result<CheckedProduce, Failure> {
    let records = records.ok_or_else(|| Failure::with(KafkaError::CORRUPT_MESSAGE, "records are null"))?;
    let mut batches = split_and_check(&records, max_uncompressed_bytes).map_err(|e| ingest_failure(&e))?;
    if batches.len() != 1 {
        return Err(Failure::with(
            KafkaError::INVALID_RECORD,
            format!(
                "{} record batches for one partition; Produce carries exactly one",
                batches.len()
            ),
        ));
    }
    let batch = batches.remove(0);
    if batch.header.is_transactional() {
        return Err(Failure::with(
            KafkaError::INVALID_RECORD,
            "transactional batches are not supported",
        ));
    }
    let t = topic(store, topic_name, create)?;
    let partition = u32::try_from(partition_index)
        .ok()
        .and_then(|p| t.partition(p))
        .cloned()
        .ok_or_else(|| {
            Failure::with(
                KafkaError::UNKNOWN_TOPIC_OR_PARTITION,
                format!(
                    "topic {topic_name:?} has no partition {partition_index} (it has {})",
                    t.meta.partitions
                ),
            )
        })?;
    Ok(CheckedProduce {
        partition,
        item: AppendItem {
            frame: batch.frame,
            cursor: batch.cursor,
            stats: Some(batch.stats),
            ahead: false,
            replicated: false,
        },
    })
}

/// Queues a checked payload on the writer threads. The append's place in
/// the partition is fixed once this returns, so callers that must keep
/// their requests in order await it before starting the next one.
///
/// # Errors
/// The collector is shutting down.
pub async fn submit(
    writer: &LogWriter,
    checked: CheckedProduce,
) -> Result<(Arc<Partition>, oneshot::Receiver<AppendResult>), Failure> {
    let partition = Arc::clone(&checked.partition);
    let rx = writer
        .submit(checked.partition, vec![checked.item])
        .await
        .map_err(|e| store_failure(&e))?;
    Ok((partition, rx))
}

/// Waits for a queued append to be durable and maps its outcome:
/// appended or a known duplicate → success (a retry gets its original
/// offset); an older duplicate → `DUPLICATE_SEQUENCE_NUMBER`, which
/// clients treat as "already stored"; a sequence gap →
/// `OUT_OF_ORDER_SEQUENCE_NUMBER`; a fenced epoch → `INVALID_PRODUCER_EPOCH`.
///
/// # Errors
/// As above, and storage errors.
pub async fn outcome(partition: &Partition, rx: oneshot::Receiver<AppendResult>) -> Result<ProduceOk, Failure> {
    let outcomes = rx
        .await
        .map_err(|_| store_failure(&StoreError::ShuttingDown))?
        .map_err(|e| store_failure(&e))?;
    let log_start_offset = partition.view().log_start_offset;
    let stored_end = BatchOutcome::ack_target(&outcomes, || partition.log_end_offset());
    let ok = |base_offset| ProduceOk {
        base_offset,
        log_start_offset,
        stored_end,
    };
    match outcomes.first() {
        Some(BatchOutcome::Appended(s)) => Ok(ok(s.base_offset)),
        // Kafka producers resend whole batches, so a partial overlap does
        // not come from them; the stored remainder's offset is the honest answer.
        Some(BatchOutcome::Trimmed { summary, .. }) => Ok(ok(summary.base_offset)),
        Some(BatchOutcome::Duplicate {
            offsets: Some((base, _)),
            ..
        }) => Ok(ok(*base)),
        Some(BatchOutcome::Duplicate { offsets: None, .. }) => Err(Failure::with(
            KafkaError::DUPLICATE_SEQUENCE_NUMBER,
            "batch was stored before, beyond the last five batches remembered",
        )),
        Some(BatchOutcome::Refused(r @ (Refusal::Gap { .. } | Refusal::AheadOfPredecessor { .. }))) => {
            Err(Failure::with(KafkaError::OUT_OF_ORDER_SEQUENCE_NUMBER, r.to_string()))
        }
        Some(BatchOutcome::Refused(r @ Refusal::Fenced { .. })) => {
            Err(Failure::with(KafkaError::INVALID_PRODUCER_EPOCH, r.to_string()))
        }
        None => Err(Failure::with(
            KafkaError::UNKNOWN_SERVER_ERROR,
            "the writer returned no outcome",
        )),
    }
}

/// Whole batches from the one holding `offset`, up to about `max_bytes`
/// (at least one batch, so a large batch never blocks a consumer), exactly
/// as stored. Blocking.
///
/// # Errors
/// `OFFSET_OUT_OF_RANGE` outside `[log start, high watermark]`,
/// `UNKNOWN_TOPIC_OR_PARTITION`, `KAFKA_STORAGE_ERROR` for an unreadable segment.
pub fn fetch(store: &Store, topic: &str, index: i32, offset: i64, max_bytes: usize) -> Result<FetchOk, KafkaError> {
    let p = partition(store, topic, index)?;
    let view = p.view();
    match read_from(&view, offset, max_bytes) {
        Ok(r) => Ok(FetchOk {
            records: Bytes::from(r.frames),
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
        }),
        Err(ReadError::OutOfRange { .. }) => Err(KafkaError::OFFSET_OUT_OF_RANGE),
        Err(e) => {
            tracing::error!(topic, partition = index, offset, error = %crate::http::error::chain(&e), "kafka fetch cannot read the log");
            Err(KafkaError::KAFKA_STORAGE_ERROR)
        }
    }
}

/// The high watermark of a partition, as a watch that long-polling fetches wait on.
///
/// # Errors
/// `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn watch(store: &Store, topic: &str, index: i32) -> Result<tokio::sync::watch::Receiver<i64>, KafkaError> {
    Ok(partition(store, topic, index)?.watch_high_watermark())
}

/// `(timestamp, offset)` for ListOffsets: -2 the log start, -1 the high
/// watermark (both with timestamp -1, as Kafka answers), otherwise the
/// first record at or after `timestamp_ms` found through the time index,
/// or `(-1, -1)` when every record is older. Blocking.
///
/// # Errors
/// `UNKNOWN_TOPIC_OR_PARTITION`, `KAFKA_STORAGE_ERROR`.
pub fn list_offset(store: &Store, topic: &str, index: i32, timestamp_ms: i64) -> Result<(i64, i64), KafkaError> {
    let p = partition(store, topic, index)?;
    let view = p.view();
    match timestamp_ms {
        -2 => Ok((-1, view.log_start_offset)),
        -1 => Ok((-1, view.high_watermark)),
        ts if ts < 0 => Err(KafkaError::INVALID_REQUEST),
        ts => match record_for_time(&view, ts) {
            Ok(Some((offset, timestamp))) => Ok((timestamp, offset)),
            Ok(None) => Ok((-1, -1)),
            Err(e) => {
                tracing::error!(topic, partition = index, timestamp_ms = ts, error = %crate::http::error::chain(&e), "kafka list offsets cannot read the log");
                Err(KafkaError::KAFKA_STORAGE_ERROR)
            }
        },
    }
}
