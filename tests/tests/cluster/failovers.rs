//! Issue 29's failover under load: an agent tailing files and an
//! idempotent confluent-kafka producer (acks=all) write at once while the
//! leader of a partition is SIGKILLed ten times in a row, the kills going
//! round the nodes, each killed node restarted. After healing, every
//! agent line is in the cluster exactly once and in file order, every
//! message the producer was told was delivered is stored exactly once
//! (and none it was not told about), and the three replicas of every
//! partition are identical.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use logpost_e2e::clients::Client;
use logpost_e2e::lines::{LineWriter, Reopen, check};
use logpost_e2e::process::{Agent, free_port};
use logpost_e2e::{http, wait_for};
use serde_json::Value;

use super::{ClusterUnderTest, cluster_json, partition_log, partition_view};

const LONG: Duration = Duration::from_secs(240);
const AGENT_TOPIC: &str = "tailed";
const KAFKA_TOPIC: &str = "produced";
const PARTITIONS: u32 = 3;
const FAILOVERS: u32 = 10;
const FILES: u32 = 4;

/// Every partition of both topics as node `from` sees it, if all have a
/// leader with three in-sync replicas.
fn all_in_sync(cl: &ClusterUnderTest, client: &reqwest::blocking::Client, from: i32) -> Option<()> {
    let v = cluster_json(client, &cl.url(from))?;
    for topic in [AGENT_TOPIC, KAFKA_TOPIC] {
        for p in 0..PARTITIONS {
            let view = partition_view(&v, topic, u64::from(p))?;
            if view.leader < 0 || view.isr.len() != 3 {
                return None;
            }
        }
    }
    Some(())
}

/// The producer's delivery reports: value -> (partition, offset).
fn delivered(producer: &Client) -> HashMap<String, (u32, i64)> {
    producer
        .lines()
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"DELIVERED")).then(|| {
                (
                    f.get(3).copied().unwrap_or_default().to_owned(),
                    (
                        f.get(1).and_then(|p| p.parse().ok()).unwrap_or(u32::MAX),
                        f.get(2).and_then(|o| o.parse().ok()).unwrap_or(-1),
                    ),
                )
            })
        })
        .collect()
}

#[test]
fn ten_leader_kills_under_an_agent_and_an_idempotent_producer_lose_and_duplicate_nothing() {
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    // Fixed Kafka ports, as brokers have: a restarted node must be found
    // where clients knew it (with `:0` every node may have moved by the
    // time a client looks again, and a client that knows no live address
    // is stuck; seen in this test before).
    let mut cl = ClusterUnderTest::start_each(dir.path(), |_| {
        format!("[kafka]\nlisten = \"127.0.0.1:{}\"\n", free_port())
    });
    let client = http();
    cl.formed_with_partitions(&client, AGENT_TOPIC, PARTITIONS);
    cl.formed_with_partitions(&client, KAFKA_TOPIC, PARTITIONS);

    // The agent, given every node, tails files written steadily.
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = logs.join("*.log").display().to_string();
    let agent = Agent::start(&dir.path().join("agent"), &cl.agent_config(&glob, AGENT_TOPIC));
    let writers: Vec<LineWriter> = (1..=FILES)
        .map(|id| {
            LineWriter::spawn(
                id,
                logs.join(format!("app{id}.log")),
                1_000_000,
                5,
                Duration::from_millis(25),
                Reopen::Never,
            )
        })
        .collect();
    let bootstrap: Vec<String> = cl.nodes.values().map(|c| c.kafka().to_owned()).collect();
    let producer = Client::start(
        "produce_steadily.py",
        &[&bootstrap.join(","), KAFKA_TOPIC, &PARTITIONS.to_string(), "300"],
    );
    wait_for("the producer's first deliveries", LONG, || {
        (delivered(&producer).len() >= 100).then_some(())
    });

    let mut kills: BTreeMap<i32, u32> = BTreeMap::new();
    for round in 0..FAILOVERS {
        let watcher = wait_for("every partition led with three in-sync replicas", LONG, || {
            (1..=3).find(|&id| all_in_sync(&cl, &client, id).is_some())
        });
        let p = round % PARTITIONS;
        let victim = wait_for("the partition's leader", LONG, || {
            let v = cluster_json(&client, &cl.url(watcher))?;
            let leader = partition_view(&v, KAFKA_TOPIC, u64::from(p))?.leader;
            (leader >= 0).then_some(leader)
        });
        let before = delivered(&producer).len();
        cl.nodes.get_mut(&victim).unwrap().kill9();
        *kills.entry(victim).or_default() += 1;
        let survivor = (1..=3).find(|&id| id != victim).unwrap();
        wait_for(
            &format!("round {round}: a new leader for {KAFKA_TOPIC}/{p}"),
            LONG,
            || {
                let v = cluster_json(&client, &cl.url(survivor))?;
                let view = partition_view(&v, KAFKA_TOPIC, u64::from(p))?;
                (view.leader >= 0 && view.leader != victim).then_some(())
            },
        );
        let deadline = std::time::Instant::now() + LONG;
        while delivered(&producer).len() < before + 100 {
            if std::time::Instant::now() > deadline {
                let lines = producer.lines();
                let tail = &lines[lines.len().saturating_sub(20)..];
                panic!(
                    "round {round}: deliveries stalled after node {victim} was killed; the cluster as node \
                     {survivor} sees it: {}\nthe producer's last lines:\n{}\nstderr: {:?}",
                    cluster_json(&client, &cl.url(survivor)).unwrap_or_default(),
                    tail.join("\n"),
                    producer.errors.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cl.nodes.get_mut(&victim).unwrap().restart();
    }
    assert!(kills.len() >= 2, "the kills did not go round the nodes: {kills:?}");
    wait_for("every partition back in sync after the last kill", LONG, || {
        (1..=3).find(|&id| all_in_sync(&cl, &client, id).is_some())
    });

    // Stop writing; everything written must arrive.
    let written: BTreeMap<u32, u64> = writers
        .into_iter()
        .enumerate()
        .map(|(i, w)| (i as u32 + 1, w.stop()))
        .collect();
    let total: u64 = written.values().sum();
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(producer.child.id() as libc::pid_t, libc::SIGTERM);
    }
    wait_for("the producer to flush and stop", LONG, || {
        producer.lines().iter().any(|l| l.starts_with("DONE")).then_some(())
    });
    let produced: u64 = producer
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("DONE ").and_then(|n| n.trim().parse().ok()))
        .unwrap_or(0);
    let failed: Vec<String> = producer
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("FAILED"))
        .collect();
    assert!(
        failed.is_empty(),
        "deliveries failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    let reports = delivered(&producer);
    assert_eq!(
        reports.len() as u64,
        produced,
        "every produced message gets one successful delivery report: {}",
        producer.describe()
    );

    // Every partition's three replicas end identical.
    let logs_of = |topic: &str| -> Vec<Vec<(i64, String)>> {
        wait_for(&format!("three identical replicas of {topic}"), LONG, || {
            (0..PARTITIONS)
                .map(|p| {
                    let logs: Vec<Vec<(i64, String)>> = (1..=3)
                        .map(|id| partition_log(&client, &cl.url(id), topic, p))
                        .collect::<Option<_>>()?;
                    logs.windows(2).all(|w| w[0] == w[1]).then(|| logs[0].clone())
                })
                .collect::<Option<Vec<_>>>()
        })
    };

    // The agent's lines: exactly once, in file order (a file lives in one
    // partition, so reading partitions one after another keeps its order).
    let report = wait_for("every tailed line in the cluster", LONG, || {
        let lines: Vec<Value> = logs_of(AGENT_TOPIC)
            .into_iter()
            .flatten()
            .map(|(_, line)| serde_json::json!({ "line": line }))
            .collect();
        let report = check(&lines, &written);
        (report.delivered >= total).then_some(report)
    });
    assert_eq!(
        (report.lost, report.duplicated, report.altered, report.out_of_order),
        (0, 0, 0, 0),
        "{report}\n{}",
        agent.proc.stderr_text()
    );

    // The producer's messages: each delivered one stored exactly once, at
    // the partition and offset its report gave; nothing else stored.
    let stored = logs_of(KAFKA_TOPIC);
    let mut seen: HashMap<&str, (u32, i64)> = HashMap::new();
    for (p, log) in (0u32..).zip(&stored) {
        for (offset, value) in log {
            let earlier = seen.insert(value.as_str(), (p, *offset));
            assert!(
                earlier.is_none(),
                "{value} stored twice: {earlier:?} and ({p}, {offset})"
            );
        }
    }
    for (value, at) in &reports {
        assert_eq!(
            seen.get(value.as_str()),
            Some(at),
            "{value}: delivery report and store disagree"
        );
    }
    assert_eq!(seen.len(), reports.len(), "messages stored without a delivery report");
    eprintln!("{FAILOVERS} leader kills {kills:?}: {total} tailed lines and {produced} Kafka messages, exactly once");
}
