//! A cluster (issue 29, docs/cluster.md): three collectors coordinated by
//! a real etcd, a topic replicated on all three, HTTP ingest (`acks=all`)
//! under way while the partition's leader is SIGKILLed. A new leader is
//! elected from the in-sync replicas, writes go on, the killed node comes
//! back, truncates and catches up, and every acknowledged record is on
//! every replica exactly once, the replicas' logs identical offset by
//! offset. Then two of the three nodes die: writes are refused with an
//! error naming the partition and its in-sync replicas, until one returns.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use logpost_e2e::etcd::Etcd;
use logpost_e2e::ingest::{PostError, batch, post};
use logpost_e2e::lines::{LineWriter, Reopen, check};
use logpost_e2e::process::{Agent, Collector, agent_config_for};
use logpost_e2e::{PATIENCE, http, pace, wait_for};
use serde_json::Value;

mod consumers;
mod failovers;
mod faults;
mod joining;
mod kafka;
mod tail;

const TOPIC: &str = "replicated";
/// Lines per posted batch.
const PER_BATCH: usize = 10;

fn node_config(id: i32, etcd: &str) -> String {
    format!(
        "[cluster]\nnode_id = {id}\netcd = [\"{etcd}\"]\nreplication_factor = 3\nmin_insync_replicas = 2\n\
         session_timeout = \"2s\"\nreplica_lag_time_max = \"10s\"\n"
    )
}

/// A partition as a node's `GET /v1/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionView {
    leader: i32,
    epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// `GET /v1/cluster` of the node at `url`, if it answers.
fn cluster_json(client: &reqwest::blocking::Client, url: &str) -> Option<Value> {
    let resp = client
        .get(format!("{url}/v1/cluster"))
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().ok()
}

fn partition_view(v: &Value, topic: &str, partition: u64) -> Option<PartitionView> {
    let t = v["topics"].as_array()?.iter().find(|t| t["name"] == topic)?;
    let p = t["partitions"]
        .as_array()?
        .iter()
        .find(|p| p["partition"] == partition)?;
    let ids = |v: &Value| -> Vec<i32> {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_i64()).map(|x| x as i32).collect())
            .unwrap_or_default()
    };
    Some(PartitionView {
        leader: p["leader"].as_i64()? as i32,
        epoch: p["leader_epoch"].as_i64()? as i32,
        replicas: ids(&p["replicas"]),
        isr: ids(&p["isr"]),
    })
}

/// Node id to HTTP URL, from a node's view.
fn node_urls(v: &Value) -> HashMap<i32, String> {
    v["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| Some((n["id"].as_i64()? as i32, n["url"].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Lines acknowledged by the cluster, and every line ever sent.
#[derive(Debug, Default)]
struct Ledger {
    acked: Vec<String>,
    sent: Vec<String>,
    refusals: Vec<String>,
}

/// Posts batches of fresh lines to whichever node leads partition 0,
/// found through any live node's view, until stopped. A batch that is
/// not acknowledged is never sent again (its lines may or may not be
/// stored): so every acknowledged line must be stored exactly once.
struct Writer {
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(live: Arc<Mutex<Vec<String>>>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (s, l) = (Arc::clone(&stop), Arc::clone(&ledger));
        let handle = std::thread::spawn(move || {
            let client = http();
            let mut seq = 0u64;
            let mut ts = 1_700_000_000_000i64;
            while !s.load(Ordering::Relaxed) {
                let urls = live.lock().unwrap().clone();
                let leader = urls.iter().find_map(|u| {
                    let v = cluster_json(&client, u)?;
                    let p = partition_view(&v, TOPIC, 0)?;
                    node_urls(&v).get(&p.leader).cloned()
                });
                let Some(leader) = leader else {
                    pace(Duration::from_millis(50));
                    continue;
                };
                let lines: Vec<String> = (0..PER_BATCH).map(|i| format!("line {seq:06}-{i:02}")).collect();
                seq += 1;
                l.lock().unwrap().sent.extend(lines.iter().cloned());
                let body = batch(&lines, ts);
                ts += PER_BATCH as i64;
                match post(&client, &leader, TOPIC, body) {
                    Ok(_) => l.lock().unwrap().acked.extend(lines),
                    Err(e) => {
                        let what = match e {
                            PostError::Status(code, msg) => format!("{code}: {msg}"),
                            PostError::Transport(msg) => format!("transport: {msg}"),
                        };
                        l.lock().unwrap().refusals.push(what);
                        pace(Duration::from_millis(20));
                    }
                }
            }
        });
        Writer {
            stop,
            ledger,
            handle: Some(handle),
        }
    }

    fn acked(&self) -> usize {
        self.ledger.lock().unwrap().acked.len()
    }

    /// Waits until `more` lines beyond `from` are acknowledged.
    fn wait_acked(&self, what: &str, from: usize, more: usize) -> usize {
        wait_for(what, PATIENCE, || {
            let n = self.acked();
            (n >= from + more).then_some(n)
        })
    }

    fn finish(mut self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every record of partition 0 of `TOPIC` on the node at `url`, up to its
/// high watermark, as `(offset, line)`, through its HTTP fetch.
fn replica_log(client: &reqwest::blocking::Client, url: &str) -> Option<Vec<(i64, String)>> {
    replica_log_of(client, url, TOPIC)
}

/// As [`replica_log`], for partition 0 of `topic`.
fn replica_log_of(client: &reqwest::blocking::Client, url: &str, topic: &str) -> Option<Vec<(i64, String)>> {
    partition_log(client, url, topic, 0)
}

/// As [`replica_log`], for partition `partition` of `topic`.
fn partition_log(
    client: &reqwest::blocking::Client,
    url: &str,
    topic: &str,
    partition: u32,
) -> Option<Vec<(i64, String)>> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    loop {
        let resp = client
            .get(format!(
                "{url}/v1/fetch/{topic}/{partition}?offset={offset}&max_bytes=1048576"
            ))
            .timeout(Duration::from_secs(10))
            .send()
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let v: Value = resp.json().ok()?;
        let hw = v["high_watermark"].as_i64()?;
        for r in v["records"].as_array()? {
            out.push((r["offset"].as_i64()?, r["line"].as_str()?.to_owned()));
        }
        let next = v["next_offset"].as_i64()?;
        if next >= hw || next == offset {
            return Some(out);
        }
        offset = next;
    }
}

/// Waits until the three replicas hold the same log of `topic` with every
/// line the ledger says was acknowledged, then checks each acknowledged
/// line is stored exactly once and nothing never sent is stored. The
/// replicas' logs.
fn assert_acknowledged_exactly_once(
    cl: &ClusterUnderTest,
    client: &reqwest::blocking::Client,
    topic: &str,
    ledger: &Ledger,
) -> Vec<Vec<(i64, String)>> {
    let logs = wait_for(
        "three identical replicas holding every acknowledged line",
        PATIENCE,
        || {
            let logs: Vec<Vec<(i64, String)>> = (1..=3)
                .map(|id| replica_log_of(client, &cl.url(id), topic))
                .collect::<Option<_>>()?;
            let same = logs.windows(2).all(|w| w[0] == w[1]);
            let stored: std::collections::HashSet<&str> = logs[0].iter().map(|(_, l)| l.as_str()).collect();
            (same && ledger.acked.iter().all(|l| stored.contains(l.as_str()))).then_some(logs)
        },
    );
    let sent: std::collections::HashSet<&str> = ledger.sent.iter().map(String::as_str).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, line) in &logs[0] {
        assert!(sent.contains(line.as_str()), "a line never sent is stored: {line:?}");
        *counts.entry(line.as_str()).or_default() += 1;
    }
    for line in &ledger.acked {
        assert_eq!(
            counts.get(line.as_str()),
            Some(&1),
            "acknowledged line {line:?} not stored exactly once"
        );
    }
    logs
}

struct ClusterUnderTest {
    _etcd: Etcd,
    nodes: BTreeMap<i32, Collector>,
    /// URLs of the nodes now running, for the writer.
    live: Arc<Mutex<Vec<String>>>,
}

impl ClusterUnderTest {
    fn start(dir: &std::path::Path) -> ClusterUnderTest {
        Self::start_with(dir, "")
    }

    /// As [`start`](Self::start), each node's config ending with `extra`.
    fn start_with(dir: &std::path::Path, extra: &str) -> ClusterUnderTest {
        Self::start_each(dir, |_| extra.to_owned())
    }

    /// As [`start`](Self::start), node `id`'s config ending with `extra(id)`.
    fn start_each(dir: &std::path::Path, extra: impl Fn(i32) -> String) -> ClusterUnderTest {
        Self::start_configs(dir, |id, etcd| format!("{}{}", node_config(id, etcd), extra(id)))
    }

    /// Three nodes, node `id`'s whole config `config(id, etcd_url)`.
    fn start_configs(dir: &std::path::Path, config: impl Fn(i32, &str) -> String) -> ClusterUnderTest {
        let etcd = Etcd::start(&dir.join("etcd"));
        let mut nodes = BTreeMap::new();
        for id in 1..=3 {
            let config = config(id, &etcd.url);
            let c = Collector::start(&dir.join(format!("node{id}")), &config);
            nodes.insert(id, c);
        }
        let live = Arc::new(Mutex::new(nodes.values().map(|c| c.url.clone()).collect()));
        ClusterUnderTest {
            _etcd: etcd,
            nodes,
            live,
        }
    }

    fn url(&self, id: i32) -> String {
        self.nodes[&id].url.clone()
    }

    fn set_live(&self, ids: &[i32]) {
        *self.live.lock().unwrap() = ids.iter().map(|&id| self.url(id)).collect();
    }

    /// Partition 0 as node `id` sees it.
    fn view_from(&self, client: &reqwest::blocking::Client, id: i32) -> Option<PartitionView> {
        self.topic_view_from(client, id, TOPIC)
    }

    /// Partition 0 of `topic` as node `id` sees it.
    fn topic_view_from(&self, client: &reqwest::blocking::Client, id: i32, topic: &str) -> Option<PartitionView> {
        partition_view(&cluster_json(client, &self.url(id))?, topic, 0)
    }

    /// Waits until every node sees the three nodes and a controller, then
    /// creates `topic` (one partition on all three nodes) and waits for its
    /// leader and three in-sync replicas.
    fn formed_with_topic(&self, client: &reqwest::blocking::Client, topic: &str) -> PartitionView {
        self.formed_with_partitions(client, topic, 1).remove(0)
    }

    /// As [`formed_with_topic`](Self::formed_with_topic), with `partitions`
    /// partitions; their views in partition order.
    fn formed_with_partitions(
        &self,
        client: &reqwest::blocking::Client,
        topic: &str,
        partitions: u32,
    ) -> Vec<PartitionView> {
        for id in 1..=3 {
            wait_for(
                &format!("node {id} to see three nodes and a controller"),
                PATIENCE,
                || {
                    let v = cluster_json(client, &self.url(id))?;
                    (node_urls(&v).len() == 3 && v["controller"].as_i64().is_some()).then_some(())
                },
            );
        }
        let out = self.nodes[&1].logpost(&[
            "topics",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "3",
        ]);
        assert!(
            out.status.success(),
            "topic creation failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for("a leader with three in-sync replicas", PATIENCE, || {
            let v = cluster_json(client, &self.url(1))?;
            (0..partitions)
                .map(|p| {
                    let p = partition_view(&v, topic, u64::from(p))?;
                    (p.leader >= 0 && p.isr.len() == 3 && p.replicas.len() == 3).then_some(p)
                })
                .collect::<Option<Vec<_>>>()
        })
    }

    /// An agent's config tailing `glob` into `topic`, with every node in
    /// its `[collector] urls`.
    fn agent_config(&self, glob: &str, topic: &str) -> String {
        let urls: Vec<String> = self.nodes.values().map(|c| format!("{:?}", c.url)).collect();
        let config = agent_config_for(&self.url(1), glob, topic).replace(
            &format!("urls = [\"{}\"]", self.url(1)),
            &format!("urls = [{}]", urls.join(", ")),
        );
        assert!(
            config.contains(&urls.join(", ")),
            "agent config not rewritten:\n{config}"
        );
        config
    }

    fn logs(&self, id: i32) -> String {
        let c = &self.nodes[&id];
        format!("node {id} stderr:\n{}", c.proc.stderr_text())
    }
}

#[test]
fn a_killed_leader_is_replaced_from_the_isr_without_losing_acknowledged_writes() {
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let mut cl = ClusterUnderTest::start(dir.path());
    let client = http();

    let first = cl.formed_with_topic(&client, TOPIC);
    let described = cl.nodes[&2].logpost(&["topics", "describe", TOPIC]);
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(
        text.contains("LEADER") && text.contains("ISR"),
        "describe shows no leader/ISR:\n{text}"
    );

    // The leader reports what it leads and how its followers lag.
    wait_for("the leader's cluster gauges", PATIENCE, || {
        let text = client
            .get(format!("{}/metrics", cl.url(first.leader)))
            .send()
            .ok()?
            .text()
            .ok()?;
        (text.contains("logpost_collector_cluster_leader_partitions 1")
            && text.contains("logpost_collector_cluster_under_replicated_partitions 0")
            && text.contains("logpost_collector_cluster_session_valid 1")
            && text.contains("logpost_collector_cluster_replica_lag_records{"))
        .then_some(())
    });

    // A write sent to a follower is refused before anything is stored,
    // naming the leader and where it is.
    let follower = (1..=3).find(|&id| id != first.leader).unwrap();
    match post(&client, &cl.url(follower), TOPIC, batch(&["misdirected".to_owned()], 1)) {
        Err(PostError::Status(421, msg)) => assert!(
            msg.contains(&format!("node {} at {}", first.leader, cl.url(first.leader))),
            "421 does not name the leader: {msg}"
        ),
        other => panic!("a follower took a write: {other:?}"),
    }

    // Writes under way; the leader is killed in the middle of them.
    let writer = Writer::start(Arc::clone(&cl.live));
    let before_kill = writer.wait_acked("writes acknowledged before the kill", 0, 300);
    let old = first.leader;
    let survivors: Vec<i32> = (1..=3).filter(|&id| id != old).collect();
    cl.set_live(&survivors);
    cl.nodes.get_mut(&old).unwrap().kill9();

    let second = wait_for("a new leader from the in-sync replicas", PATIENCE, || {
        let p = cl.view_from(&client, survivors[0])?;
        (p.leader >= 0 && p.leader != old).then_some(p)
    });
    assert!(
        first.isr.contains(&second.leader),
        "{second:?} not from the ISR {first:?}"
    );
    assert!(second.epoch > first.epoch, "no new epoch: {first:?} then {second:?}");
    assert!(!second.isr.contains(&old), "dead node still in sync: {second:?}");
    let after_failover = writer.wait_acked("writes acknowledged by the new leader", before_kill, 300);

    // The killed node comes back: it truncates, catches up, rejoins the ISR.
    cl.nodes.get_mut(&old).unwrap().restart();
    cl.set_live(&[1, 2, 3]);
    wait_for("the restarted node back in sync", PATIENCE, || {
        let p = cl.view_from(&client, survivors[0])?;
        (p.leader >= 0 && p.isr.len() == 3).then_some(())
    });
    writer.wait_acked("writes acknowledged after the node returned", after_failover, 200);
    let ledger = writer.finish();

    // Every acknowledged line is stored exactly once, and the three logs
    // are the same offset by offset once the followers have caught up.
    let logs = assert_acknowledged_exactly_once(&cl, &client, TOPIC, &ledger);
    let offsets: Vec<i64> = logs[0].iter().map(|(o, _)| *o).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets out of order");

    // Two of three nodes down: the survivor refuses acks=all writes,
    // naming the partition and its in-sync set.
    let last = *survivors.last().unwrap();
    let down: Vec<i32> = (1..=3).filter(|&id| id != last).collect();
    for id in &down {
        cl.nodes.get_mut(id).unwrap().kill9();
    }
    cl.set_live(&[last]);
    let refusal = wait_for(
        "the lone survivor to refuse writes for too few replicas",
        PATIENCE,
        || {
            let body = batch(&["refused?".to_owned()], 1_800_000_000_000);
            match post(&client, &cl.url(last), TOPIC, body) {
                Err(PostError::Status(503, msg)) if msg.contains("not enough in-sync replicas") => Some(msg),
                _ => None,
            }
        },
    );
    assert!(
        refusal.contains(&format!("{TOPIC}/0")) && refusal.contains(&format!("[{last}]")),
        "refusal does not name the partition and its ISR: {refusal}"
    );

    // One returns: writes are acknowledged again.
    let back = down[0];
    cl.nodes.get_mut(&back).unwrap().restart();
    cl.set_live(&[last, back]);
    wait_for("writes acknowledged with two nodes up", PATIENCE, || {
        let p = cl.view_from(&client, last)?;
        let url = cl.nodes.get(&p.leader)?.url.clone();
        let body = batch(&["accepted again".to_owned()], 1_800_000_000_001);
        post(&client, &url, TOPIC, body).ok()
    });
    if std::env::var_os("LOGPOST_TEST_VERBOSE").is_some() {
        eprintln!(
            "acked {} of {} lines; {} refusals, e.g. {:?}\n{}",
            ledger.acked.len(),
            ledger.sent.len(),
            ledger.refusals.len(),
            ledger.refusals.first(),
            cl.logs(last)
        );
    }
}

/// An agent given every node's URL, the first a follower: it finds the
/// leader (the others answer 421), and goes on through a SIGKILL of the
/// leader; its lines arrive exactly once, in file order, on the new
/// leader and on every replica.
#[test]
fn an_agent_delivers_through_a_leader_failover_exactly_once() {
    const AGENT_TOPIC: &str = "agentlines";
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let mut cl = ClusterUnderTest::start(dir.path());
    let client = http();
    let first = cl.formed_with_topic(&client, AGENT_TOPIC);
    let old = first.leader;
    let mut order: Vec<i32> = (1..=3).filter(|&id| id != old).collect();
    order.push(old);
    let urls: Vec<String> = order.iter().map(|&id| format!("{:?}", cl.url(id))).collect();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = logs.join("*.log").display().to_string();
    let config = agent_config_for(&cl.url(order[0]), &glob, AGENT_TOPIC).replace(
        &format!("urls = [\"{}\"]", cl.url(order[0])),
        &format!("urls = [{}]", urls.join(", ")),
    );
    assert!(
        config.contains(&urls.join(", ")),
        "agent config not rewritten:\n{config}"
    );
    let _agent = Agent::start(&dir.path().join("agent"), &config);
    let writer = LineWriter::spawn(
        1,
        logs.join("app.log"),
        3000,
        10,
        Duration::from_millis(20),
        Reopen::Never,
    );

    let count = |id: i32| {
        cl.nodes
            .get(&id)
            .and_then(|c| replica_log_of(&client, &c.url, AGENT_TOPIC))
            .map_or(0, |l| l.len())
    };
    wait_for("the agent's first lines on the leader", PATIENCE, || {
        (count(old) >= 300).then_some(())
    });
    cl.nodes.get_mut(&old).unwrap().kill9();
    let second = wait_for("a new leader from the in-sync replicas", PATIENCE, || {
        let p = cl.topic_view_from(&client, order[0], AGENT_TOPIC)?;
        (p.leader >= 0 && p.leader != old).then_some(p)
    });
    let written = writer.finish();
    cl.nodes.get_mut(&old).unwrap().restart();

    let expected = BTreeMap::from([(1u32, written)]);
    let new_leader = &cl.nodes[&second.leader];
    let report = wait_for("every line on the new leader", PATIENCE, || {
        let report = check(&new_leader.records(AGENT_TOPIC), &expected);
        (report.delivered >= written).then_some(report)
    });
    assert_eq!(
        (report.lost, report.duplicated, report.altered, report.out_of_order),
        (0, 0, 0, 0),
        "{report}"
    );
    // Every replica, the restarted one included, holds the same log.
    wait_for("three identical replicas of the agent's lines", PATIENCE, || {
        let logs: Vec<Vec<(i64, String)>> = (1..=3)
            .map(|id| replica_log_of(&client, &cl.url(id), AGENT_TOPIC))
            .collect::<Option<_>>()?;
        (logs[0].len() as u64 == written && logs.windows(2).all(|w| w[0] == w[1])).then_some(())
    });
}

/// The value of a counter on the agent's `/metrics` at `addr`.
fn agent_counter(client: &reqwest::blocking::Client, addr: &str, name: &str) -> Option<f64> {
    let text = client.get(format!("http://{addr}/metrics")).send().ok()?.text().ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Issue 29: an agent routes each stream to its partition's leader. A
/// topic with three partitions, led by three different nodes, takes eight
/// files' lines; the leader of a partition holding some of them is
/// SIGKILLed mid-run. Every line arrives exactly once, in file order, on
/// every replica, and the agent rarely hit a node that does not lead
/// (each 421 counted): without routing, every request mixing partitions
/// would be refused by all but one node.
#[test]
// This test once stalled in 2 of 3 runs at "new leaders for the killed
// node's partitions": no node acted as controller. The campaign's winner
// read a view older than its own write, took itself for deposed and never
// campaigned again (the key, its own, existed); so nobody elected a
// leader for the dead node's partition. The controller now reads who it
// is from the view (`cluster::elect::controller_term`).
fn an_agent_routes_each_stream_to_its_partition_leader_through_a_failover() {
    const ROUTED: &str = "routed";
    const FILES: u32 = 8;
    const PARTITIONS: u32 = 3;
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    let mut cl = ClusterUnderTest::start(dir.path());
    let client = http();
    let first = cl.formed_with_partitions(&client, ROUTED, PARTITIONS);
    let leaders: std::collections::BTreeSet<i32> = first.iter().map(|p| p.leader).collect();
    assert!(
        leaders.len() >= 2,
        "partitions' leaders not spread over nodes: {first:?}"
    );

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = logs.join("*.log").display().to_string();
    let config = cl
        .agent_config(&glob, ROUTED)
        .replace("[tail]", "[metrics]\nlisten = \"127.0.0.1:0\"\n[tail]");
    let agent = Agent::start(&dir.path().join("agent"), &config);
    let writers: Vec<LineWriter> = (1..=FILES)
        .map(|id| {
            LineWriter::spawn(
                id,
                logs.join(format!("app{id}.log")),
                2000,
                10,
                Duration::from_millis(25),
                Reopen::Never,
            )
        })
        .collect();

    // Lines per partition on the node at `url`, up to its high watermark.
    let on = |url: &str, p: u32| partition_log(&client, url, ROUTED, p).map_or(0, |l| l.len());
    let victim = wait_for("the agent's first lines in the partitions", PATIENCE, || {
        let v = cluster_json(&client, &cl.url(1))?;
        let urls = node_urls(&v);
        let mut total = 0;
        let mut fullest = None;
        for p in 0..PARTITIONS {
            let view = partition_view(&v, ROUTED, u64::from(p))?;
            let n = on(urls.get(&view.leader)?, p);
            total += n;
            if fullest.is_none_or(|(m, _)| n > m) {
                fullest = Some((n, view.leader));
            }
        }
        (total >= 2000).then_some(fullest?.1)
    });
    cl.nodes.get_mut(&victim).unwrap().kill9();
    let survivor = (1..=3).find(|&id| id != victim).unwrap();
    wait_for("new leaders for the killed node's partitions", PATIENCE, || {
        let v = cluster_json(&client, &cl.url(survivor))?;
        (0..PARTITIONS)
            .all(|p| {
                partition_view(&v, ROUTED, u64::from(p)).is_some_and(|view| view.leader >= 0 && view.leader != victim)
            })
            .then_some(())
    });
    let written: BTreeMap<u32, u64> = writers
        .into_iter()
        .enumerate()
        .map(|(i, w)| (i as u32 + 1, w.finish()))
        .collect();
    let total: u64 = written.values().sum();
    cl.nodes.get_mut(&victim).unwrap().restart();

    // Each file lives in one partition: partitions one after another keep
    // every file's order.
    let all_from = |url: &str| -> Option<Vec<Value>> {
        let mut out = Vec::new();
        for p in 0..PARTITIONS {
            out.extend(
                partition_log(&client, url, ROUTED, p)?
                    .into_iter()
                    .map(|(_, line)| serde_json::json!({ "line": line })),
            );
        }
        Some(out)
    };
    let report = wait_for("every line in the cluster", PATIENCE, || {
        let report = check(&all_from(&cl.url(survivor))?, &written);
        (report.delivered >= total).then_some(report)
    });
    assert_eq!(
        (report.lost, report.duplicated, report.altered, report.out_of_order),
        (0, 0, 0, 0),
        "{report}\n{}",
        agent.proc.stderr_text()
    );
    let used = (0..PARTITIONS).filter(|&p| on(&cl.url(survivor), p) > 0).count();
    assert!(
        used >= 2,
        "the files' lines went to {used} partition(s); routing was not exercised"
    );
    wait_for("three identical replicas of every partition", PATIENCE, || {
        (0..PARTITIONS)
            .all(|p| {
                let logs: Option<Vec<Vec<(i64, String)>>> = (1..=3)
                    .map(|id| partition_log(&client, &cl.url(id), ROUTED, p))
                    .collect();
                logs.is_some_and(|l| l.windows(2).all(|w| w[0] == w[1]))
            })
            .then_some(())
    });

    let addr = wait_for("the agent's metrics address", PATIENCE, || {
        agent
            .proc
            .stderr_text()
            .lines()
            .find(|l| l.contains("metrics listening"))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .map(str::to_owned)
            })
    });
    let sent = agent_counter(&client, &addr, "logpost_agent_batches_sent_total").unwrap_or(0.0);
    let misdirected = agent_counter(&client, &addr, "logpost_agent_not_leader_total").unwrap_or(0.0);
    assert!(sent > 0.0, "the agent's metrics count no request sent");
    assert!(
        misdirected * 10.0 <= sent,
        "the agent bounced between nodes: {misdirected} of {sent} requests answered 421"
    );
}
