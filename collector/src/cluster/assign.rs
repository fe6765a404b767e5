//! Where a new topic's partitions live: Kafka's round-robin placement.
//! Partition `p`'s replicas are consecutive live nodes starting at an
//! offset that moves with `p` (and with the topic's name, so that many
//! one-partition topics do not all lead on the first node); the first
//! replica is the preferred leader, so leadership spreads over the nodes.
//!
//! Pure functions of their inputs, unit-tested here; the caller writes the
//! result to etcd.

use super::meta::PartitionState;

/// Why a topic cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("{live} node(s) alive, but replication factor {replication_factor} needs as many nodes")]
    TooFewNodes { live: usize, replication_factor: u32 },
}

/// Replicas for `partitions` partitions of `topic` over `live` node ids,
/// every replica in sync and the first one leading, at epoch 0.
///
/// # Errors
/// Fewer live nodes than `replication_factor`.
pub fn place(
    topic: &str,
    partitions: u32,
    replication_factor: u32,
    live: &[i32],
) -> Result<Vec<PartitionState>, PlacementError> {
    let mut nodes = live.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    let n = nodes.len();
    let rf = replication_factor as usize;
    if rf == 0 || n < rf {
        return Err(PlacementError::TooFewNodes {
            live: n,
            replication_factor,
        });
    }
    let start = name_hash(topic) % n;
    Ok((0..partitions as usize)
        .map(|p| {
            let first = (start + p) % n;
            // Kafka shifts followers too, so that a node's partitions do not
            // all have the same followers; one shift per round of n.
            let shift = 1 + (p / n) % (n - 1).max(1);
            let replicas: Vec<i32> = (0..rf)
                .map(|j| {
                    let i = if j == 0 { first } else { (first + shift * j) % n };
                    nodes.get(i).copied().unwrap_or_default()
                })
                .collect();
            let replicas = dedup_keep_order(replicas, &nodes, first);
            PartitionState {
                leader: replicas.first().copied().unwrap_or(super::meta::NO_LEADER),
                leader_epoch: 0,
                isr: replicas.clone(),
                replicas,
            }
        })
        .collect())
}

/// A topic adopted from a node's own data (a single node joining a
/// cluster): that node holds it all, so it leads and is the only in-sync
/// replica until the others have caught up.
pub fn adopt(topic: &str, partitions: u32, replication_factor: u32, holder: i32, live: &[i32]) -> Vec<PartitionState> {
    let others: Vec<i32> = {
        let mut v: Vec<i32> = live.iter().copied().filter(|&n| n != holder).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let followers = (replication_factor as usize).saturating_sub(1).min(others.len());
    let start = if others.is_empty() {
        0
    } else {
        name_hash(topic) % others.len()
    };
    (0..partitions as usize)
        .map(|p| {
            let mut replicas = vec![holder];
            for j in 0..followers {
                if let Some(&n) = others.get((start + p + j) % others.len().max(1)) {
                    replicas.push(n);
                }
            }
            PartitionState {
                replicas,
                leader: holder,
                leader_epoch: 0,
                isr: vec![holder],
            }
        })
        .collect()
}

/// With few nodes the shifted picks can repeat a node; fill from the ring.
fn dedup_keep_order(replicas: Vec<i32>, nodes: &[i32], first: usize) -> Vec<i32> {
    let want = replicas.len();
    let mut out: Vec<i32> = Vec::with_capacity(want);
    for r in replicas {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    let n = nodes.len();
    let mut i = first;
    while out.len() < want {
        i = (i + 1) % n;
        if let Some(&node) = nodes.get(i)
            && !out.contains(&node)
        {
            out.push(node);
        }
    }
    out
}

/// A stable hash of a topic name (FNV-1a), for where its placement starts.
/// FNV's low bits barely depend on the last bytes modulo small numbers
/// (its prime is 435 modulo 2^31, a multiple of 3 and 5: `topic-0` to
/// `topic-299` never started on the third of three nodes), so the whole
/// 64 bits go through murmur3's finalizer before the modulo.
fn name_hash(name: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    usize::try_from(h % (1 << 31)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn similar_names_start_on_every_node() {
        for n in [2usize, 3, 5] {
            let mut starts = vec![0u32; n];
            for i in 0..300 {
                starts[name_hash(&format!("topic-{i}")) % n] += 1;
            }
            let fair = 300 / n as u32;
            assert!(
                starts.iter().all(|&c| c > fair / 2 && c < fair * 3 / 2),
                "{n} nodes: starts {starts:?}"
            );
        }
    }

    #[test]
    fn replicas_are_distinct_and_leaders_spread() {
        for n in 1..=5 {
            let live: Vec<i32> = (1..=n).collect();
            for rf in 1..=n as u32 {
                let placed = place("app", 12, rf, &live).unwrap();
                let mut leaders: HashMap<i32, usize> = HashMap::new();
                for s in &placed {
                    assert_eq!(s.replicas.len(), rf as usize);
                    let mut r = s.replicas.clone();
                    r.sort_unstable();
                    r.dedup();
                    assert_eq!(r.len(), rf as usize, "distinct: {s:?}");
                    assert_eq!((s.leader, &s.isr), (s.replicas[0], &s.replicas));
                    *leaders.entry(s.leader).or_default() += 1;
                }
                // 12 partitions over n nodes: each leads 12/n (rounded).
                for (&node, &count) in &leaders {
                    assert!(
                        count.abs_diff(12 / n as usize) <= 1,
                        "node {node} leads {count} of 12 over {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn too_few_nodes_is_an_error_naming_both_numbers() {
        let err = place("t", 1, 3, &[1, 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 node(s) alive, but replication factor 3 needs as many nodes"
        );
    }

    #[test]
    fn an_adopted_topic_is_led_by_its_holder_alone_in_sync() {
        let placed = adopt("old", 2, 3, 2, &[1, 2, 3]);
        for s in placed {
            assert_eq!((s.leader, s.isr.clone()), (2, vec![2]));
            assert_eq!(s.replicas.len(), 3);
            assert_eq!(s.replicas[0], 2);
        }
        assert_eq!(
            adopt("old", 1, 3, 2, &[2])[0].replicas,
            vec![2],
            "alone, it keeps one copy"
        );
    }
}
