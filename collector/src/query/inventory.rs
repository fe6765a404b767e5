//! What a time range holds, from the segment summaries alone (no record
//! is read): the streams (label sets) a selector accepts and the blocks,
//! records and bytes they fill. Loki's `labels`, `label/*/values`,
//! `series` and `index/stats` are answered from it.
//!
//! Why a module of its own: a cluster node takes the inventory of the
//! partitions it reads and asks others for theirs (`cluster::reads`);
//! inventories of disjoint partitions merge by union and sums.

use std::collections::BTreeSet;

use super::logql::{Labels, Selector};
use super::source::{PartitionFilter, labels_of, topics_for};
use crate::store::Store;

/// Streams (label sets, with `topic`) stored in `[start_ns, end_ns]` that
/// `selector` accepts (all when `None`), from the segment summaries; with
/// the blocks, records and line bytes they hold there.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Inventory {
    pub streams: BTreeSet<Labels>,
    pub blocks: u64,
    pub records: u64,
    pub bytes: u64,
}

impl Inventory {
    /// Adds what another set of partitions holds (streams are a union:
    /// a stream may span partitions; counts are sums: blocks are not).
    pub fn merge(&mut self, other: Inventory) {
        self.streams.extend(other.streams);
        self.blocks += other.blocks;
        self.records += other.records;
        self.bytes += other.bytes;
    }
}

/// The inventory of the partitions `wanted` accepts (every one when
/// `None`) of the topics `selector` can match.
pub fn inventory(
    store: &Store,
    selector: Option<&Selector>,
    start_ns: i64,
    end_ns: i64,
    wanted: Option<PartitionFilter<'_>>,
) -> Inventory {
    let (start_ms, end_ms) = (start_ns.div_euclid(1_000_000), end_ns.div_euclid(1_000_000));
    let topics = match selector {
        Some(s) => topics_for(store, s),
        None => store.user_topics(),
    };
    let mut inv = Inventory::default();
    for topic in topics {
        for partition in &topic.partitions {
            if wanted.is_some_and(|w| !w(&topic.name, partition.id)) {
                continue;
            }
            for seg in &partition.view().segments {
                let summary = seg.summary.read().unwrap_or_else(|e| e.into_inner());
                let labels: Vec<Labels> = summary.streams().iter().map(|s| labels_of(&topic.name, s)).collect();
                let ok: Vec<bool> = labels.iter().map(|l| selector.is_none_or(|s| s.matches(l))).collect();
                for b in summary.blocks() {
                    if b.pos >= seg.len || b.max_timestamp < start_ms || b.min_timestamp > end_ms {
                        continue;
                    }
                    let Some(ids) = &b.streams else {
                        // Streams unknown: counted, but no names to list.
                        inv.blocks += 1;
                        inv.records += b.records;
                        inv.bytes += b.line_bytes;
                        continue;
                    };
                    let mut any = false;
                    for &id in ids {
                        if ok.get(id as usize).copied().unwrap_or(false)
                            && let Some(l) = labels.get(id as usize)
                        {
                            inv.streams.insert(l.clone());
                            any = true;
                        }
                    }
                    if any {
                        inv.blocks += 1;
                        inv.records += b.records;
                        inv.bytes += b.line_bytes;
                    }
                }
            }
        }
    }
    inv
}
