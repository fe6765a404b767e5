//! Producer ids for InitProducerId: what an idempotent Kafka producer
//! stamps on its batches so that the store can deduplicate its retries.
//!
//! Why a module of its own: Kafka producers and logpost agents share one
//! producer-state table per partition, so their ids must never meet.
//! Agents derive a file stream's id as a hash masked to 63 bits, spread
//! uniformly over `[0, 2^63)`; no range of that space is free of them. So
//! Kafka ids are drawn the same way, at random from the operating system
//! over `[1, 2^63)`, and an id that any partition's producer state already
//! holds is drawn again. A Kafka id then collides with an agent stream
//! exactly as rarely as two agent streams collide with each other (one
//! million of each: about 1 in 10^7), which is the bar the agent already
//! set. Nothing needs persisting: an id is never reissued in practice
//! (birthday bound 10^-7 after a million allocations), and one that was
//! used is in the producer state, which survives restarts. See
//! docs/kafka.md.

use crate::store::Store;

use super::error::KafkaError;

/// Draws that may hit ids in use before giving up; reaching it means the
/// random source is broken, not that the id space is full.
const MAX_DRAWS: usize = 16;

/// A fresh producer id: random, positive, unknown to every partition.
/// Blocking only in that it takes each partition's lock briefly.
///
/// # Errors
/// `UNKNOWN_SERVER_ERROR` when the operating system gives no randomness.
pub fn allocate(store: &Store) -> Result<i64, KafkaError> {
    for _ in 0..MAX_DRAWS {
        let raw = getrandom::u64().map_err(|e| {
            tracing::error!(error = %e, "no randomness for a producer id");
            KafkaError::UNKNOWN_SERVER_ERROR
        })?;
        let id = to_producer_id(raw);
        if id > 0 && !in_use(store, id) {
            return Ok(id);
        }
    }
    tracing::error!("every drawn producer id was in use; the random source looks broken");
    Err(KafkaError::UNKNOWN_SERVER_ERROR)
}

/// The low 63 bits: non-negative, as Kafka requires (-1 means "none").
fn to_producer_id(raw: u64) -> i64 {
    (raw & (i64::MAX as u64)) as i64
}

fn in_use(store: &Store, id: i64) -> bool {
    store
        .topics()
        .iter()
        .flat_map(|t| t.partitions.iter())
        .any(|p| p.producer(id).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AppendItem, StoreConfig, TopicSpec};
    use bytes::Bytes;
    use logpost_shared::batch::{BatchBuilder, ProducerInfo};
    use logpost_shared::compression::Compression;

    #[test]
    fn ids_are_positive_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path().to_owned())).unwrap();
        let ids: std::collections::HashSet<i64> = (0..1000).map(|_| allocate(&store).unwrap()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|&id| id > 0));
        assert_eq!(to_producer_id(u64::MAX), i64::MAX);
        assert_eq!(to_producer_id(1 << 63), 0, "the sign bit is dropped");
    }

    #[test]
    fn an_id_in_the_producer_state_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path().to_owned())).unwrap();
        let topic = store.create_topic("t", TopicSpec::default()).unwrap();
        let mut b = BatchBuilder::new();
        b.set_producer(ProducerInfo {
            producer_id: 4242,
            producer_epoch: 0,
            base_sequence: 0,
        });
        b.append(1, None, Some(b"x"), &[]);
        let item = AppendItem {
            frame: Bytes::from(b.finish(Compression::None).unwrap()),
            ..AppendItem::default()
        };
        topic.partitions[0].append(&[&item], true, true).unwrap();
        assert!(in_use(&store, 4242));
        assert!(!in_use(&store, 4243));
    }
}
