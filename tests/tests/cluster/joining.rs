//! A single collector's data joining a running cluster (docs/cluster.md,
//! "A single node joining a cluster"): the node is restarted with a
//! `[cluster]` section on its own data directory; its topics become
//! cluster topics it leads, the other nodes copy them record for record,
//! and writes go on replicated. A topic the cluster already holds with
//! other data is refused by name, and nothing of either copy is touched.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use logpost_e2e::etcd::Etcd;
use logpost_e2e::ingest::{batch, post};
use logpost_e2e::process::Collector;
use logpost_e2e::{PATIENCE, http, wait_for};

use super::{ClusterUnderTest, cluster_json, node_config, node_urls, partition_log, partition_view};

const TOPIC: &str = "legacy";
const PARTITIONS: u32 = 2;

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} line {i:05}")).collect()
}

/// Every partition of `topic` on the node at `url`.
fn topic_log(client: &reqwest::blocking::Client, url: &str, topic: &str) -> Option<Vec<Vec<(i64, String)>>> {
    (0..PARTITIONS).map(|p| partition_log(client, url, topic, p)).collect()
}

/// Nodes 2 and 3 as a running cluster (both members), before node 1 joins.
fn two_running_nodes(dir: &std::path::Path, client: &reqwest::blocking::Client) -> (Etcd, BTreeMap<i32, Collector>) {
    let etcd = Etcd::start(&dir.join("etcd"));
    let mut nodes = BTreeMap::new();
    for id in [2, 3] {
        let c = Collector::start(&dir.join(format!("node{id}")), &node_config(id, &etcd.url));
        nodes.insert(id, c);
    }
    for id in [2, 3] {
        let url = nodes[&id].url.clone();
        wait_for(&format!("node {id} to see nodes 2 and 3"), PATIENCE, || {
            let v = cluster_json(client, &url)?;
            (node_urls(&v).len() == 2 && v["controller"].as_i64().is_some()).then_some(())
        });
    }
    (etcd, nodes)
}

#[test]
fn a_single_nodes_topics_join_a_running_cluster_and_every_node_copies_them() {
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let client = http();

    // A single node, as the quickstart runs one, with data of its own.
    let mut single = Collector::start(&dir.path().join("node1"), "");
    let out = single.logpost(&["topics", "create", TOPIC, "--partitions", &PARTITIONS.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let old = lines("single-node", 600);
    for chunk in old.chunks(50) {
        post(&client, &single.url, TOPIC, batch(chunk, 1_700_000_000_000)).expect("single-node ingest");
    }
    let before = topic_log(&client, &single.url, TOPIC).expect("the single node's log");
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), old.len());
    assert!(
        before.iter().all(|p| !p.is_empty()),
        "both partitions hold data: {before:?}"
    );
    assert_eq!(single.proc.terminate(), Some(0), "{}", single.proc.stderr_text());
    drop(single);

    // Nodes 2 and 3 run a cluster; node 1 joins it on its old data directory.
    let (etcd, mut nodes) = two_running_nodes(dir.path(), &client);
    let joined = Collector::start(&dir.path().join("node1"), &node_config(1, &etcd.url));
    assert!(
        dir.path().join("node1/data/cluster.json").exists(),
        "the data directory is marked as node 1's"
    );
    nodes.insert(1, joined);
    let live = Arc::new(Mutex::new(nodes.values().map(|c| c.url.clone()).collect()));
    let cl = ClusterUnderTest {
        _etcd: etcd,
        nodes,
        live,
    };

    // Node 1 leads the adopted topic; the others copy it and join the ISR.
    wait_for(
        "the adopted topic led by node 1 with three in-sync replicas",
        PATIENCE,
        || {
            (1..=3)
                .all(|id| {
                    cluster_json(&client, &cl.url(id)).is_some_and(|v| {
                        (0..PARTITIONS).all(|p| {
                            partition_view(&v, TOPIC, u64::from(p))
                                .is_some_and(|p| p.leader == 1 && p.replicas.len() == 3 && p.isr.len() == 3)
                        })
                    })
                })
                .then_some(())
        },
    );
    for id in 1..=3 {
        let copied = wait_for(
            &format!("node {id} to hold the single node's records"),
            PATIENCE,
            || topic_log(&client, &cl.url(id), TOPIC).filter(|log| log == &before),
        );
        assert_eq!(copied, before, "node {id}'s copy differs");
    }

    // Writes go on, replicated: the old records keep their offsets and the
    // new ones follow, the same on every node.
    let new = lines("cluster", 200);
    for chunk in new.chunks(50) {
        post(&client, &cl.url(1), TOPIC, batch(chunk, 1_800_000_000_000)).expect("cluster ingest");
    }
    let logs: Vec<Vec<Vec<(i64, String)>>> = wait_for("every node to hold the new records", PATIENCE, || {
        let logs: Vec<_> = (1..=3)
            .map(|id| topic_log(&client, &cl.url(id), TOPIC))
            .collect::<Option<_>>()?;
        let total: usize = logs[0].iter().map(Vec::len).sum();
        (logs.windows(2).all(|w| w[0] == w[1]) && total == old.len() + new.len()).then_some(logs)
    });
    for (p, was) in before.iter().enumerate() {
        assert_eq!(
            logs[0][p].get(..was.len()),
            Some(&was[..]),
            "partition {p}'s old records moved"
        );
    }
    let mut stored: Vec<&str> = logs[0].iter().flatten().map(|(_, l)| l.as_str()).collect();
    stored.sort_unstable();
    let mut sent: Vec<&str> = old.iter().chain(&new).map(String::as_str).collect();
    sent.sort_unstable();
    assert_eq!(stored, sent, "every line exactly once");
}

#[test]
fn a_node_whose_topic_the_cluster_holds_with_other_data_is_refused_by_name() {
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let client = http();

    let mut single = Collector::start(&dir.path().join("node1"), "");
    post(&client, &single.url, TOPIC, batch(&lines("single-node", 20), 1)).expect("single-node ingest");
    assert_eq!(single.proc.terminate(), Some(0), "{}", single.proc.stderr_text());
    drop(single);

    let (etcd, nodes) = two_running_nodes(dir.path(), &client);
    let out = nodes[&2].logpost(&["topics", "create", TOPIC, "--replication-factor", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A topic just created: its leader may refuse (421) until it has
    // taken up the role.
    wait_for("the cluster's topic to take a write", PATIENCE, || {
        [2, 3]
            .iter()
            .find_map(|id| post(&client, &nodes[id].url, TOPIC, batch(&lines("cluster", 20), 1)).ok())
    });

    let refused = std::panic::catch_unwind(|| Collector::start(&dir.path().join("node1"), &node_config(1, &etcd.url)));
    let why = match refused {
        Ok(_) => panic!("node 1 started with a topic the cluster holds with other data"),
        Err(payload) => payload.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(
        why.contains(&format!(
            "topic {TOPIC:?} exists in this data directory and in the cluster"
        )),
        "the refusal names the topic: {why}"
    );

    // Nothing of either copy was touched: the node's data starts again
    // alone, whole, and the cluster's topic still holds its own lines.
    let single = Collector::start(&dir.path().join("node1"), "");
    let kept: usize = single.lines(TOPIC).len();
    assert_eq!(kept, 20, "the single node's records after the refusal");
    let cluster_lines = wait_for("the cluster's topic", PATIENCE, || {
        let v = cluster_json(&client, &nodes[&2].url)?;
        let leader = partition_view(&v, TOPIC, 0)?.leader;
        let url = node_urls(&v).get(&leader)?.clone();
        partition_log(&client, &url, TOPIC, 0)
    });
    assert_eq!(cluster_lines.len(), 20);
    assert!(cluster_lines.iter().all(|(_, l)| l.starts_with("cluster line")));
}
