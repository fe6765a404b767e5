//! Choosing a batch's partition. A batch goes to the partition of its first
//! record's key, hashed as Kafka's default partitioner does (murmur2,
//! `logpost_shared::partition`), so that logpost, its agent and a Kafka
//! producer agree on where a key lives and one file's lines (one key) stay
//! in one partition, in order. Batches without a key go to the partition
//! of their producer id, or round-robin.

use std::sync::atomic::{AtomicU32, Ordering};

pub use logpost_shared::partition::murmur2;

/// Picks partitions for batches of one topic.
#[derive(Debug, Default)]
pub struct Router {
    round_robin: AtomicU32,
}

impl Router {
    /// A router starting its round-robin at partition 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partition for a batch with `key` and `producer_id` among `partitions`.
    pub fn partition(&self, key: Option<&[u8]>, producer_id: i64, partitions: u32) -> u32 {
        logpost_shared::partition::by_key(key, producer_id, partitions)
            .unwrap_or_else(|| self.round_robin.fetch_add(1, Ordering::Relaxed) % partitions.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_batches_spread() {
        let r = Router::new();
        let picks: Vec<u32> = (0..6).map(|_| r.partition(None, -1, 3)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(
            r.partition(Some(b"21"), -1, 7),
            (-973_932_308i32 & 0x7fff_ffff) as u32 % 7
        );
    }
}
