//! Consumers against any node of a cluster (issue 30): `GET /v1/fetch`,
//! `logpost consume` and the topic figures answer through a node that
//! holds no copy of a partition exactly as through its leader, and
//! `logpost consume --group` members attached to different nodes split a
//! topic's partitions and carry on, losing nothing, when the node that
//! coordinates their group is SIGKILLed.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use logpost_e2e::ingest::{batch, post};
use logpost_e2e::process::{Proc, bin};
use logpost_e2e::{PATIENCE, http, wait_for};
use serde_json::Value;

use super::{ClusterUnderTest, cluster_json, partition_view};

/// `__consumer_offsets` partitions (the collector's OFFSETS_PARTITIONS).
const OFFSETS_PARTITIONS: u32 = 6;

/// Creates `topic` through node 1 and waits until every partition has a
/// leader and `rf` in-sync replicas; returns each partition's replicas.
pub(super) fn create(
    cl: &ClusterUnderTest,
    client: &reqwest::blocking::Client,
    topic: &str,
    partitions: u32,
    rf: u32,
) -> Vec<Vec<i32>> {
    for id in 1..=3 {
        wait_for(&format!("node {id} to see three nodes"), PATIENCE, || {
            let v = cluster_json(client, &cl.url(id))?;
            (v["nodes"].as_array()?.len() == 3 && v["controller"].as_i64().is_some()).then_some(())
        });
    }
    let out = cl.nodes[&1].logpost(&[
        "topics",
        "create",
        topic,
        "--partitions",
        &partitions.to_string(),
        "--replication-factor",
        &rf.to_string(),
    ]);
    assert!(
        out.status.success(),
        "topic creation failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("every partition led with all its replicas in sync", PATIENCE, || {
        (1..=3)
            .map(|id| {
                let v = cluster_json(client, &cl.url(id))?;
                (0..partitions)
                    .map(|p| {
                        let view = partition_view(&v, topic, u64::from(p))?;
                        (view.leader >= 0 && view.isr.len() == rf as usize).then_some(view.replicas)
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .collect::<Option<Vec<_>>>()
            .map(|mut all| all.remove(0))
    })
}

/// Posts `lines` to partition `p` of `topic` through its current leader,
/// asking the live nodes `live` for the leader until a post is acknowledged.
pub(super) fn post_to_leader(
    cl: &ClusterUnderTest,
    client: &reqwest::blocking::Client,
    live: &[i32],
    topic: &str,
    p: u32,
    lines: &[String],
) {
    wait_for(
        &format!("a post to {topic}/{p} acknowledged by its leader"),
        PATIENCE,
        || {
            let v = live.iter().find_map(|&id| cluster_json(client, &cl.url(id)))?;
            let leader = partition_view(&v, topic, u64::from(p))?.leader;
            if !live.contains(&leader) {
                return None;
            }
            post(
                client,
                &cl.url(leader),
                &format!("{topic}?partition={p}"),
                batch(lines, 1_700_000_000_000),
            )
            .ok()
        },
    );
}

/// The values of the records a `logpost consume -o json` printed.
fn values(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["line"].as_str().map(str::to_owned))
        .collect()
}

fn lines_of(topic: &str, p: u32, round: u32, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{topic} p{p} round {round} line {i}")).collect()
}

#[test]
fn fetch_consume_and_topic_figures_answer_through_every_node_for_every_partition() {
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let cl = ClusterUnderTest::start(dir.path());
    let client = http();
    // Three partitions, two copies each: every node lacks a copy of one.
    let replicas = create(&cl, &client, "spread", 3, 2);
    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for p in 0..3 {
        let lines = lines_of("spread", p, 0, 50 + 10 * p as usize);
        post_to_leader(&cl, &client, &[1, 2, 3], "spread", p, &lines);
        expected.insert(p, lines);
    }
    let all: BTreeSet<String> = expected.values().flatten().cloned().collect();
    let total = expected.values().map(Vec::len).sum::<usize>();

    for id in 1..=3 {
        // Every partition's records, read through node `id` whether or not
        // it holds a copy.
        for (&p, lines) in &expected {
            let v: Value = wait_for(&format!("node {id} to serve spread/{p}"), PATIENCE, || {
                let resp = client
                    .get(format!(
                        "{}/v1/fetch/spread/{p}?offset=0&max_bytes=10000000",
                        cl.url(id)
                    ))
                    .send()
                    .ok()?;
                resp.status().is_success().then(|| resp.json::<Value>().ok()).flatten()
            });
            let got: Vec<String> = v["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["line"].as_str().unwrap_or_default().to_owned())
                .collect();
            let holds = replicas[p as usize].contains(&id);
            assert_eq!(
                &got, lines,
                "node {id} (holds a copy: {holds}) served other records for spread/{p}"
            );
            assert_eq!(v["high_watermark"].as_i64(), Some(lines.len() as i64), "{v}");
        }

        // The topic's figures through node `id` are the readers' figures.
        let info: Value = client
            .get(format!("{}/v1/topics/spread", cl.url(id)))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(info["records"].as_i64(), Some(total as i64), "node {id}: {info}");
        for (&p, lines) in &expected {
            let part = &info["partitions"][p as usize];
            assert_eq!(
                part["high_watermark"].as_i64(),
                Some(lines.len() as i64),
                "node {id}: {part}"
            );
            assert!(part.get("error").is_none(), "node {id}: {part}");
        }

        // `logpost consume` through node `id`: every line once.
        let out = Command::new(bin("logpost"))
            .args(["--collector", &cl.url(id), "consume", "spread", "-o", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "consume via node {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = values(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(
            got.len(),
            total,
            "consume via node {id} printed {} of {total} records",
            got.len()
        );
        assert_eq!(
            got.iter().cloned().collect::<BTreeSet<_>>(),
            all,
            "consume via node {id}"
        );
    }
}

/// A `logpost consume --group billing --follow` member attached to `node`.
fn member(cl: &ClusterUnderTest, dir: &std::path::Path, node: i32) -> Proc {
    let dir = dir.join(format!("member-on-{node}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(bin("logpost"));
    cmd.args([
        "--collector",
        &cl.url(node),
        "consume",
        "orders",
        "--group",
        "billing",
        "--follow",
        "-o",
        "json",
    ]);
    Proc::spawn("consume", &dir, cmd)
}

/// The partitions of a member's last join, once it has joined.
fn assigned(p: &Proc) -> Option<BTreeSet<u32>> {
    let text = p.stderr_text();
    let line = text.lines().rev().find(|l| l.contains("joined group"))?;
    let list = line.rsplit_once("partitions [")?.1.trim_end_matches(']');
    Some(list.split(", ").filter_map(|s| s.parse().ok()).collect())
}

#[test]
fn group_members_on_different_nodes_split_the_partitions_and_survive_the_coordinators_death() {
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let mut cl = ClusterUnderTest::start_with(dir.path(), "[groups]\ninitial_rebalance_delay = \"500ms\"\n");
    let client = http();
    create(&cl, &client, "orders", 4, 3);

    // The group's coordinator: asking any node for its offsets creates
    // `__consumer_offsets`; the leader of the group's partition of it
    // coordinates.
    wait_for("the group's offsets answered through node 1", PATIENCE, || {
        let resp = client
            .get(format!("{}/v1/groups/billing/offsets?topic=orders", cl.url(1)))
            .send()
            .ok()?;
        resp.status().is_success().then_some(())
    });
    let offsets_partition = logpost_shared::partition::by_key(Some(b"billing"), 0, OFFSETS_PARTITIONS).unwrap();
    let coordinator = wait_for("the group's coordinator", PATIENCE, || {
        let v = cluster_json(&client, &cl.url(1))?;
        let view = partition_view(&v, "__consumer_offsets", u64::from(offsets_partition))?;
        (view.leader >= 0).then_some(view.leader)
    });
    let others: Vec<i32> = (1..=3).filter(|&id| id != coordinator).collect();

    // Two members, each attached to a node that does not coordinate the
    // group: every request of theirs is forwarded.
    let a = member(&cl, dir.path(), others[0]);
    let b = member(&cl, dir.path(), others[1]);
    let split = || {
        let (x, y) = (assigned(&a)?, assigned(&b)?);
        (x.len() == 2 && y.len() == 2 && x.union(&y).count() == 4).then_some(())
    };
    wait_for("the two members to split the four partitions", PATIENCE, split);

    let mut all = BTreeSet::new();
    for p in 0..4 {
        let lines = lines_of("orders", p, 1, 100);
        post_to_leader(&cl, &client, &[1, 2, 3], "orders", p, &lines);
        all.extend(lines);
    }
    let printed = |a: &Proc, b: &Proc| -> Vec<String> {
        let mut v = values(&a.stdout_text());
        v.extend(values(&b.stdout_text()));
        v
    };
    wait_for("the members to print the first round", PATIENCE, || {
        let seen: BTreeSet<String> = printed(&a, &b).into_iter().collect();
        all.is_subset(&seen).then_some(())
    });

    // The coordinator's node dies; its successor coordinates the group
    // from the replicated commits, and the members carry on.
    cl.nodes.get_mut(&coordinator).unwrap().kill9();
    cl.set_live(&others);
    for p in 0..4 {
        let lines = lines_of("orders", p, 2, 100);
        post_to_leader(&cl, &client, &others, "orders", p, &lines);
        all.extend(lines);
    }
    wait_for(
        "the members to print the second round after the coordinator died",
        PATIENCE,
        || {
            let seen: BTreeSet<String> = printed(&a, &b).into_iter().collect();
            all.is_subset(&seen).then_some(())
        },
    );
    wait_for("the members to split the partitions again", PATIENCE, split);
    let seen = printed(&a, &b);
    let extra = seen.len() - all.len();
    assert!(
        seen.iter().all(|v| all.contains(v)),
        "a member printed a record never written"
    );

    // The group's commits reach the end of every partition, through either
    // surviving node (forwarded to the new coordinator).
    for &id in &others {
        wait_for(
            &format!("commits at every partition's end, through node {id}"),
            PATIENCE,
            || {
                let v: Value = client
                    .get(format!("{}/v1/groups/billing/offsets?topic=orders", cl.url(id)))
                    .send()
                    .ok()?
                    .json()
                    .ok()?;
                let offsets = v["offsets"].as_array()?;
                (offsets.len() == 4 && offsets.iter().all(|o| o["offset"].as_i64() == Some(200))).then_some(())
            },
        );
    }
    // The group list through either node: the coordinator's view, lag
    // counted against the partitions' leaders.
    for &id in &others {
        let v: Value = client
            .get(format!("{}/v1/groups", cl.url(id)))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let g = v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == "billing")
            .unwrap_or_else(|| panic!("node {id}: no group billing in {v}"));
        assert_eq!(g["members"].as_u64(), Some(2), "node {id}: {g}");
        assert_eq!(g["lag"].as_i64(), Some(0), "node {id}: {g}");
        for p in g["partitions"].as_array().unwrap() {
            assert_eq!(p["high_watermark"].as_i64(), Some(200), "node {id}: {g}");
        }
    }
    let (mut a, mut b) = (a, b);
    a.terminate();
    b.terminate();
    // At least once: a record printed after its last commit may be printed
    // again by the partition's next owner, never more than a batch's worth.
    assert!(extra <= 400, "{extra} records printed twice");
}
