//! Where a keyed or producer's batch goes among a topic's partitions:
//! Kafka's default partitioner (murmur2 of the key). The collector places
//! batches with it, and a cluster's agent routes each stream to its
//! partition's leader with it, so both must compute the same partition.

/// The partition of a batch whose first record has `key`, from producer
/// `producer_id`, among `partitions`: the key's hash, else the producer
/// id's; `None` for a batch with neither (the collector round-robins it).
pub fn by_key(key: Option<&[u8]>, producer_id: i64, partitions: u32) -> Option<u32> {
    let partitions = partitions.max(1);
    if let Some(key) = key {
        return Some(to_positive(murmur2(key)) % partitions);
    }
    if producer_id >= 0 {
        return Some(to_positive(murmur2(&producer_id.to_be_bytes())) % partitions);
    }
    None
}

pub fn to_positive(hash: i32) -> u32 {
    (hash & 0x7fff_ffff) as u32
}

/// Kafka's `Utils.murmur2`: MurmurHash2, seed 0x9747b28c, 32-bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(chunk);
        let mut k = u32::from_le_bytes(bytes);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if let Some(&b) = tail.get(2) {
        h ^= u32::from(b) << 16;
    }
    if let Some(&b) = tail.get(1) {
        h ^= u32::from(b) << 8;
    }
    if let Some(&b) = tail.first() {
        h ^= u32::from(b);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kafka_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for &(input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn keys_before_producer_ids() {
        assert_eq!(by_key(Some(b"21"), 5, 7), Some(to_positive(-973_932_308) % 7));
        assert_eq!(by_key(None, 5, 7), Some(to_positive(murmur2(&5i64.to_be_bytes())) % 7));
        assert_eq!(by_key(None, -1, 7), None);
    }
}
