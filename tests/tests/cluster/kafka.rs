//! Kafka clients against the cluster: consumer groups are coordinated by
//! the leader of their `__consumer_offsets` partition and their commits
//! ride that replicated log, so a group resumes from its committed
//! offsets after its coordinator is SIGKILLed, and again after the
//! killed node returns and coordinates once more.

use std::collections::BTreeSet;
use std::time::Duration;

use logpost_e2e::clients::{Client, run_py};
use logpost_e2e::process::free_port;
use logpost_e2e::{http, wait_for};

use super::{ClusterUnderTest, cluster_json, partition_view};

/// librdkafka's group joins and coordinator searches back off for
/// seconds; a loaded machine stretches them.
const LONG: Duration = Duration::from_secs(240);
const TOPIC: &str = "orders";
const GROUP: &str = "billing";
const PARTITIONS: u32 = 2;
/// `__consumer_offsets` partitions (the collector's OFFSETS_PARTITIONS).
const OFFSETS_PARTITIONS: u32 = 6;

/// A confluent-kafka group member (tests/py/group_member.py): it prints
/// each record before committing it, and each commit once acknowledged.
struct Member(Client);

impl Member {
    fn start(bootstrap: &str) -> Member {
        Member(Client::start(
            "group_member.py",
            &["confluent", bootstrap, TOPIC, GROUP],
        ))
    }

    /// Values of every record it printed.
    fn values(&self) -> Vec<String> {
        self.0
            .lines()
            .iter()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("MSG")).then(|| f.nth(2).unwrap_or_default().to_owned())
            })
            .collect()
    }

    /// Whether it has committed `offset` on every partition.
    fn committed_through(&self, offset: i64) -> bool {
        (0..i64::from(PARTITIONS)).all(|p| {
            self.0.lines().iter().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&"COMMITTED")
                    && f.get(1).and_then(|x| x.parse::<i64>().ok()) == Some(p)
                    && f.get(2).and_then(|x| x.parse::<i64>().ok()) >= Some(offset)
            })
        })
    }

    fn kill(mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

fn values(range: std::ops::Range<u32>) -> BTreeSet<String> {
    range.map(|i| format!("m-{i}")).collect()
}

/// Every node's Kafka address, comma-separated (librdkafka's bootstrap list).
fn bootstrap(cl: &ClusterUnderTest) -> String {
    cl.nodes
        .values()
        .map(|c| c.kafka().to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// The node that coordinates `GROUP`: the leader of its partition of
/// `__consumer_offsets` (murmur2 of the group id, as the collector places it).
fn coordinator(cl: &ClusterUnderTest, client: &reqwest::blocking::Client, from: i32) -> Option<i32> {
    let p = logpost_shared::partition::by_key(Some(GROUP.as_bytes()), 0, OFFSETS_PARTITIONS)?;
    let v = cluster_json(client, &cl.url(from))?;
    let view = partition_view(&v, "__consumer_offsets", u64::from(p))?;
    (view.leader >= 0 && view.isr.len() >= 2).then_some(view.leader)
}

/// Produces m-`start`..m-`start + count` (message i to partition i % 2)
/// with an idempotent confluent-kafka producer (acks=all).
fn produce(cl: &ClusterUnderTest, start: u32, count: u32) {
    run_py(
        "produce.py",
        &[
            &bootstrap(cl),
            TOPIC,
            &start.to_string(),
            &count.to_string(),
            &PARTITIONS.to_string(),
        ],
        LONG,
    );
}

#[test]
fn a_consumer_group_resumes_from_its_committed_offsets_after_its_coordinator_is_killed() {
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    // Fixed Kafka ports, as brokers have: the restarted node is found where
    // clients knew it.
    let mut cl = ClusterUnderTest::start_each(dir.path(), |_| {
        format!(
            "[kafka]\nlisten = \"127.0.0.1:{}\"\n[groups]\ninitial_rebalance_delay = \"500ms\"\n",
            free_port()
        )
    });
    let client = http();
    cl.formed_with_partitions(&client, TOPIC, PARTITIONS);

    // A member reads and commits the first 200 records.
    produce(&cl, 0, 200);
    let first = Member::start(&bootstrap(&cl));
    wait_for("the first member to commit 100 records per partition", LONG, || {
        first.committed_through(100).then_some(())
    });
    let seen: BTreeSet<String> = first.values().into_iter().collect();
    assert_eq!(seen, values(0..200), "first member: {}", first.0.describe());
    first.kill();

    // Its coordinator dies. The offsets partition's new leader coordinates
    // the group from its copy of the log.
    let killed = wait_for("the group's coordinator in the cluster map", LONG, || {
        coordinator(&cl, &client, 1)
    });
    let survivor = (1..=3).find(|&id| id != killed).unwrap();
    cl.nodes.get_mut(&killed).unwrap().kill9();
    let survivors: Vec<i32> = (1..=3).filter(|&id| id != killed).collect();
    cl.set_live(&survivors);
    let second_coordinator = wait_for("a new coordinator for the group", LONG, || {
        coordinator(&cl, &client, survivor).filter(|&c| c != killed)
    });

    // A new member starts from the committed offsets: it reads exactly
    // what was produced since, nothing the first member committed.
    produce(&cl, 200, 100);
    let second = Member::start(&bootstrap(&cl));
    wait_for("the second member to commit through offset 150", LONG, || {
        second.committed_through(150).then_some(())
    });
    let seen: BTreeSet<String> = second.values().into_iter().collect();
    assert_eq!(
        seen,
        values(200..300),
        "after the failover to node {second_coordinator}, the group did not resume at its commits: {}",
        second.0.describe()
    );
    second.kill();

    // The killed node returns, catches up and (as the preferred leader)
    // may coordinate again: it rebuilds the offsets from its own log,
    // commits made while it was down included.
    cl.nodes.get_mut(&killed).unwrap().restart();
    cl.set_live(&[1, 2, 3]);
    wait_for("the returned node back in every in-sync set", LONG, || {
        let v = cluster_json(&client, &cl.url(survivor))?;
        let p = logpost_shared::partition::by_key(Some(GROUP.as_bytes()), 0, OFFSETS_PARTITIONS)?;
        let offsets = partition_view(&v, "__consumer_offsets", u64::from(p))?;
        let data = (0..PARTITIONS)
            .map(|p| partition_view(&v, TOPIC, u64::from(p)))
            .collect::<Option<Vec<_>>>()?;
        (offsets.isr.len() == 3 && data.iter().all(|d| d.isr.len() == 3)).then_some(())
    });
    produce(&cl, 300, 100);
    let third = Member::start(&bootstrap(&cl));
    wait_for("the third member to commit through offset 200", LONG, || {
        third.committed_through(200).then_some(())
    });
    let seen: BTreeSet<String> = third.values().into_iter().collect();
    assert_eq!(
        seen,
        values(300..400),
        "with node {killed} back, the group did not resume at its commits: {}",
        third.0.describe()
    );
}
