//! The live tail (`/loki/api/v1/tail`, Grafana's and the web page's)
//! through one node of a cluster (issue 30): it sees the partitions that
//! node holds no copy of, read from the nodes that do, and when the
//! leader it reads one of them from is SIGKILLed it carries on from the
//! partition's other replica without losing or repeating a line.

use std::time::Duration;

use logpost_e2e::{PATIENCE, http, wait_for};
use serde_json::Value;

use super::consumers::{create, post_to_leader};
use super::{ClusterUnderTest, cluster_json, partition_view};

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Reads tail messages into `seen` until `done(seen)` holds.
fn read_until(ws: &mut Socket, seen: &mut Vec<String>, what: &str, done: impl Fn(&[String]) -> bool) {
    wait_for(what, PATIENCE, || {
        let text = match ws.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(_) => return None,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                return None;
            }
            Err(e) => panic!("tail connection failed: {e}"),
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        for s in v["streams"].as_array().unwrap() {
            for p in s["values"].as_array().unwrap() {
                seen.push(p[1].as_str().unwrap().to_owned());
            }
        }
        done(seen).then_some(())
    });
}

fn round(p: u32, round: u32) -> Vec<String> {
    (0..100).map(|i| format!("live p{p} round {round} line {i}")).collect()
}

#[test]
fn a_live_tail_through_one_node_sees_every_partition_and_survives_a_leaders_death() {
    let _heavy = logpost_e2e::heavy();
    let dir = logpost_e2e::TestDir::new();
    // Two copies of each partition, writes acknowledged by one in-sync
    // replica: partitions stay writable when one node dies.
    let mut cl = ClusterUnderTest::start_configs(dir.path(), |id, etcd| {
        format!(
            "[cluster]\nnode_id = {id}\netcd = [\"{etcd}\"]\nreplication_factor = 2\nmin_insync_replicas = 1\n\
             session_timeout = \"2s\"\nreplica_lag_time_max = \"10s\"\n"
        )
    });
    let client = http();
    let replicas = create(&cl, &client, "live", 3, 2);
    // The tail goes through a node that lacks a copy of some partition.
    let (tailed, lacking) = (1..=3)
        .find_map(|id| Some((id, (0..3u32).find(|&p| !replicas[p as usize].contains(&id))?)))
        .expect("with three partitions of two copies on three nodes, some node lacks one");

    let url = format!(
        "ws://{}/loki/api/v1/tail?query={}&start=0&limit=1000",
        cl.nodes[&tailed].addr,
        enc(r#"{topic="live"} |= "round""#)
    );
    let (mut ws, _) = tungstenite::connect(url).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    }

    let mut want: Vec<String> = Vec::new();
    for p in 0..3 {
        let lines = round(p, 1);
        post_to_leader(&cl, &client, &[1, 2, 3], "live", p, &lines);
        want.extend(lines);
    }
    let mut seen = Vec::new();
    read_until(&mut ws, &mut seen, "the tail to show the first round", |s| {
        s.len() >= want.len()
    });

    // The leader of the partition the tailed node lacks dies; its other
    // replica takes over and the tail reads it from there.
    let leader = wait_for("the lacking partition's leader", PATIENCE, || {
        let v = cluster_json(&client, &cl.url(tailed))?;
        let view = partition_view(&v, "live", u64::from(lacking))?;
        (view.leader >= 0).then_some(view.leader)
    });
    assert_ne!(leader, tailed);
    cl.nodes.get_mut(&leader).unwrap().kill9();
    let live: Vec<i32> = (1..=3).filter(|&id| id != leader).collect();
    cl.set_live(&live);
    for p in 0..3 {
        let lines = round(p, 2);
        post_to_leader(&cl, &client, &live, "live", p, &lines);
        want.extend(lines);
    }
    read_until(
        &mut ws,
        &mut seen,
        "the tail to show the second round after the leader died",
        |s| s.len() >= want.len(),
    );
    let mut got = seen.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "the tail through node {tailed} (lacking live/{lacking}, whose leader node {leader} died) lost or repeated lines"
    );
}
