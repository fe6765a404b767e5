//! Issue 30: cluster-wide reads. Three collectors on a real etcd hold two
//! topics whose partitions (two copies each) are led by different nodes;
//! a single collector holds the same batches in topics of the same shape.
//! Every query of the LogQL corpus test (issue 6), log and metric, and
//! Loki's label and series endpoints give, through each of the three
//! nodes, exactly the single node's answer: same lines, same order, same
//! values. Then a node is SIGKILLed: the survivors answer in full from
//! the other copies, or refuse with a 503 naming the partitions they
//! cannot read, never a partial answer; with a second node gone, the
//! partitions whose two copies are both down are named.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logpost_e2e::corpus::{LINE_SPACING_MS, expected_lines, files};
use logpost_e2e::etcd::Etcd;
use logpost_e2e::ingest::post;
use logpost_e2e::process::Collector;
use logpost_e2e::{PATIENCE, http, wait_for};
use serde_json::Value;

/// Topic (partitions) pairs: the corpus in `corpus`, two of its files
/// again (at other times) in `extra`, so that queries span topics.
const TOPICS: [(&str, u32); 2] = [("corpus", 6), ("extra", 3)];
const NS_PER_MS: i64 = 1_000_000;

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn node_config(id: i32, etcd: &str) -> String {
    format!(
        "[cluster]\nnode_id = {id}\netcd = [\"{etcd}\"]\nreplication_factor = 2\nmin_insync_replicas = 1\n\
         session_timeout = \"2s\"\nreplica_lag_time_max = \"10s\"\n"
    )
}

/// Percent-encodes every byte but unreserved ones.
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

/// The batches both setups get: per topic, per corpus file (label
/// `source`, key = source, so one partition each), lines 500 at a time.
/// Timestamps are unique across files, so that the order of every answer
/// is fixed by time alone.
fn batches(base_ms: i64) -> Vec<(&'static str, Vec<u8>)> {
    use logpost_shared::batch::{BatchBuilder, HeaderSet};
    use logpost_shared::compression::Compression;
    let mut out = Vec::new();
    for (t, (topic, _)) in TOPICS.iter().enumerate() {
        let all = files();
        let chosen: Vec<_> = if t == 0 { all } else { all.into_iter().take(2).collect() };
        for (k, (name, data)) in chosen.into_iter().enumerate() {
            let source = name.trim_end_matches(".log").to_owned();
            let mut headers = HeaderSet::new();
            headers.push("source", Some(source.as_bytes()));
            let lines = expected_lines(&data);
            for (c, chunk) in lines.chunks(500).enumerate() {
                let mut b = BatchBuilder::new();
                for (i, l) in chunk.iter().enumerate() {
                    let n = (c * 500 + i) as i64;
                    let ts = base_ms + t as i64 * 7 + n * LINE_SPACING_MS + k as i64 * 11;
                    b.append(ts, Some(source.as_bytes()), Some(l), &[&headers]);
                }
                out.push((*topic, b.finish(Compression::Gzip { level: 1 }).unwrap()));
            }
        }
    }
    out
}

/// Posts `body` to whichever of `urls` leads its partition (the others
/// answer 421).
fn post_to_leader(client: &reqwest::blocking::Client, urls: &[String], topic: &str, body: &[u8]) {
    wait_for(&format!("a leader of {topic} to take a batch"), PATIENCE, || {
        urls.iter()
            .find_map(|u| post(client, u, topic, body.to_vec()).ok())
            .map(|_| ())
    });
}

/// GET `path` on `url`: status and body.
fn get(client: &reqwest::blocking::Client, url: &str, path: &str) -> (u16, String) {
    let resp = client
        .get(format!("{url}{path}"))
        .timeout(Duration::from_secs(120))
        .send()
        .unwrap_or_else(|e| panic!("GET {url}{path}: {e}"));
    (resp.status().as_u16(), resp.text().unwrap())
}

/// What must match between nodes: the answer without timing figures
/// (`/v1/query`'s NDJSON as a list of records).
fn answer(status: u16, body: &str) -> Result<Value, (u16, String)> {
    if status != 200 {
        return Err((status, body.to_owned()));
    }
    if !body.starts_with('{') || body.starts_with("{\"topic\"") || body.is_empty() {
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        return Ok(Value::Array(lines));
    }
    let mut v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut) {
        data.remove("stats");
    }
    Ok(v)
}

/// Every request compared: the corpus test's queries as range queries
/// (both directions, with and without a cut), its metric queries as range
/// and instant queries, and the label, series and stats endpoints.
fn requests(start_ns: i64, end_ns: i64) -> Vec<String> {
    let logs = [
        r#"{topic="corpus"}"#,
        r#"{topic="corpus", source="OpenSSH"}"#,
        r#"{topic="corpus", source!="OpenSSH"}"#,
        r#"{topic="corpus", source=~"HDFS|Spark"}"#,
        r#"{topic="corpus", source!~"H.*"}"#,
        r#"{topic="corpus"} |= "error""#,
        r#"{topic="corpus"} != "INFO""#,
        r#"{topic="corpus"} |~ "(?i)fail(ed|ure)""#,
        r#"{topic="corpus"} !~ "[0-9]{4}""#,
        r#"{topic="corpus"} |= `Failed` != "invalid user" |= "root""#,
        r#"{topic="corpus", source="OpenSSH"} | regexp "from (?P<ip>[0-9.]+) port" | ip="173.234.31.186""#,
        r#"{topic="corpus", source="OpenSSH"} | pattern "<_> sshd[<pid>]: <_>" | pid="24200""#,
        r#"{topic="corpus", source="HDFS"} |= "Receiving" | line_format "got {{.source}}""#,
        r#"{topic="corpus", source="Linux"} | json | __error__="JSONParserErr""#,
        r#"{source=~".+"} |= "error""#,
    ];
    let metrics = [
        r#"sum by (source) (count_over_time({topic="corpus"} |= "error" [1h]))"#,
        r#"sum(count_over_time({topic="corpus"}[1h]))"#,
        r#"sum by (source) (bytes_over_time({topic="corpus"}[1h]))"#,
        r#"sum(rate({topic="corpus", source="HDFS"}[1h]))"#,
        r#"sum(bytes_rate({topic="corpus"}[1h]))"#,
        r#"max(sum by (source) (count_over_time({topic="corpus"} |= "error" [1h])))"#,
        r#"avg(sum by (source) (count_over_time({topic="corpus"} |= "error" [1h])))"#,
        r#"topk(2, sum by (source) (count_over_time({topic="corpus"} |= "error" [1h])))"#,
        r#"sum without (topic) (count_over_time({topic="corpus", source="Spark"}[1h]))"#,
        r#"sum by (source) (count_over_time({source=~".+"}[5m]))"#,
        r#"count_over_time({topic="extra"}[10m]) / 2"#,
    ];
    let range = format!("start={start_ns}&end={end_ns}");
    let mut out = Vec::new();
    for q in logs {
        for (dir, limit) in [("forward", 5000), ("backward", 5000), ("forward", 37), ("backward", 37)] {
            out.push(format!(
                "/loki/api/v1/query_range?query={}&{range}&direction={dir}&limit={limit}",
                enc(q)
            ));
        }
    }
    for q in metrics {
        out.push(format!("/loki/api/v1/query_range?query={}&{range}&step=300", enc(q)));
        out.push(format!("/loki/api/v1/query?query={}&time={end_ns}", enc(q)));
    }
    // logpost's own streaming query (what `logpost query` and the web
    // page read), records in full: partition and offset included.
    for q in [logs[0], logs[5], logs[9], logs[14]] {
        for (dir, limit) in [("forward", 0), ("forward", 50), ("backward", 50)] {
            out.push(format!(
                "/v1/query?query={}&{range}&direction={dir}&limit={limit}",
                enc(q)
            ));
        }
    }
    out.push(format!("/loki/api/v1/labels?{range}"));
    out.push(format!("/loki/api/v1/label/source/values?{range}"));
    out.push(format!(
        "/loki/api/v1/label/source/values?{range}&query={}",
        enc(r#"{topic="extra"}"#)
    ));
    out.push(format!(
        "/loki/api/v1/series?{range}&match[]={}",
        enc(r#"{source=~"H.*"}"#)
    ));
    out.push(format!(
        "/loki/api/v1/index/stats?{range}&query={}",
        enc(r#"{topic="corpus"}"#)
    ));
    out
}

struct Setup {
    _etcd: Etcd,
    nodes: BTreeMap<i32, Collector>,
    single: Collector,
    client: reqwest::blocking::Client,
    requests: Vec<String>,
    /// The single node's answer to each request.
    reference: Vec<Value>,
}

fn setup(dir: &std::path::Path) -> Setup {
    let etcd = Etcd::start(&dir.join("etcd"));
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(
            id,
            Collector::start(&dir.join(format!("node{id}")), &node_config(id, &etcd.url)),
        );
    }
    let single = Collector::start(&dir.join("single"), "");
    let client = http();
    for (id, c) in &nodes {
        wait_for(&format!("node {id} to see three nodes"), PATIENCE, || {
            let (s, body) = get(&client, &c.url, "/v1/cluster");
            let v: Value = serde_json::from_str(&body).ok()?;
            (s == 200 && v["nodes"].as_array()?.len() == 3 && v["controller"].as_i64().is_some()).then_some(())
        });
    }
    for (topic, partitions) in TOPICS {
        let p = partitions.to_string();
        for c in [&nodes[&1], &single] {
            let out = c.logpost(&[
                "topics",
                "create",
                topic,
                "--partitions",
                &p,
                "--replication-factor",
                "2",
            ]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    // Every partition led, both copies in sync, and the leaders spread.
    let leaders: Vec<i64> = wait_for("every partition led with two in-sync copies", PATIENCE, || {
        let (_, body) = get(&client, &nodes[&1].url, "/v1/topics");
        let v: Value = serde_json::from_str(&body).ok()?;
        let mut leaders = Vec::new();
        for (topic, partitions) in TOPICS {
            let t = v["topics"].as_array()?.iter().find(|t| t["name"] == topic)?;
            let ps = t["partitions"].as_array()?;
            if ps.len() != partitions as usize {
                return None;
            }
            for p in ps {
                if p["leader"].as_i64()? < 1 || p["isr"].as_array()?.len() != 2 {
                    return None;
                }
                leaders.push(p["leader"].as_i64()?);
            }
        }
        Some(leaders)
    });
    for id in 1..=3 {
        assert!(leaders.contains(&id), "node {id} leads nothing: {leaders:?}");
    }
    let base_ms = now_ms() - 40 * 60 * 1000;
    let urls: Vec<String> = nodes.values().map(|c| c.url.clone()).collect();
    for (topic, body) in batches(base_ms) {
        post_to_leader(&client, &urls, topic, &body);
        post(&client, &single.url, topic, body).unwrap();
    }
    let (start_ns, end_ns) = ((base_ms - 60_000) * NS_PER_MS, now_ms() * NS_PER_MS);
    let requests = requests(start_ns, end_ns);
    let reference: Vec<Value> = requests
        .iter()
        .map(|r| {
            let (s, body) = get(&client, &single.url, r);
            answer(s, &body).unwrap_or_else(|e| panic!("single node, {r}: {e:?}"))
        })
        .collect();
    Setup {
        _etcd: etcd,
        nodes,
        single,
        client,
        requests,
        reference,
    }
}

impl Setup {
    /// How node `id`'s answers differ from the single node's: each
    /// request that differs, with both answers (cut short).
    fn differences(&self, id: i32) -> Vec<String> {
        let url = &self.nodes[&id].url;
        let mut out = Vec::new();
        for (r, want) in self.requests.iter().zip(&self.reference) {
            let (s, body) = get(&self.client, url, r);
            match answer(s, &body) {
                Ok(got) if &got == want => {}
                got => {
                    let show = |v: String| v.chars().take(600).collect::<String>();
                    out.push(format!(
                        "{r}:\n  node {id}: {}\n  single: {}",
                        show(format!("{got:?}")),
                        show(want.to_string())
                    ));
                }
            }
        }
        out
    }
}

#[test]
fn issue_30_every_node_answers_as_one_node_holding_everything() {
    let _heavy = logpost_e2e::heavy();
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(dir.path());
    assert!(
        s.reference
            .iter()
            .any(|v| v["data"]["result"].as_array().is_some_and(|a| !a.is_empty())),
        "the single node's answers are all empty: {}",
        s.single.proc.stderr_text()
    );

    // Leaders answer as soon as a write is acknowledged; the first round
    // is compared as it is (no waiting for anything but the answers).
    for id in 1..=3 {
        let diff = s.differences(id);
        assert!(diff.is_empty(), "{} answers differ:\n{}", diff.len(), diff.join("\n"));
    }

    // A node dies. Each answer through a survivor is complete (from the
    // other copies) or a 503 naming what it cannot read: never partial.
    s.nodes.get_mut(&3).unwrap().kill9();
    for id in [1, 2] {
        let url = s.nodes[&id].url.clone();
        for (r, want) in s.requests.iter().zip(&s.reference) {
            let (status, body) = get(&s.client, &url, r);
            match answer(status, &body) {
                Ok(got) => assert!(&got == want, "node {id}, {r}: an answer after the kill differs"),
                Err((503, msg)) => assert!(msg.contains("cannot read"), "node {id}, {r}: {msg}"),
                Err(e) => panic!("node {id}, {r}: {e:?}"),
            }
        }
    }
    // Once the cluster has noticed, every answer is complete again.
    for id in [1, 2] {
        wait_for(
            &format!("node {id} to answer everything without node 3"),
            PATIENCE,
            || s.differences(id).is_empty().then_some(()),
        );
    }

    // With a second node gone, partitions whose two copies were on nodes
    // 2 and 3 have none left: node 1 names them rather than answer partially.
    s.nodes.get_mut(&2).unwrap().kill9();
    let i = s
        .requests
        .iter()
        .position(|r| r.contains("query_range") && r.contains("direction=forward&limit=5000"))
        .unwrap();
    let (status, body) = get(&s.client, &s.nodes[&1].url, &s.requests[i]);
    assert_eq!(
        status,
        503,
        "node 1 alone answered {}",
        body.chars().take(300).collect::<String>()
    );
    assert!(body.contains("cannot read corpus/"), "{body}");
    assert!(body.contains("partial"), "{body}");
}

/// Whether a request sits unread in a socket of the process listening on
/// `port` (an established connection to it with bytes in its receive
/// queue): with that process stopped, a query's request to it is there.
fn request_waiting_on(port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local_port = f
            .get(1)
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        let queued = f
            .get(4)
            .and_then(|q| q.split_once(':'))
            .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok());
        local_port == Some(port) && f.get(3) == Some(&"01") && queued.is_some_and(|n| n > 0)
    })
}

#[test]
fn issue_30_a_node_killed_in_the_middle_of_its_part_is_replaced_by_a_replica() {
    let _heavy = logpost_e2e::heavy();
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(dir.path());

    // Metric queries: the other nodes send partial state, not lines.
    let metric = format!(
        "/loki/api/v1/query?query={}&time={}",
        enc(r#"sum(count_over_time({topic="corpus"}[1h]))"#),
        now_ms() * NS_PER_MS
    );
    let (status, body) = get(&s.client, &s.nodes[&1].url, &metric);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let summary = &v["data"]["stats"]["summary"];
    let (from_nodes, processed) = (
        summary["totalBytesFromOtherNodes"].as_u64().unwrap(),
        summary["totalBytesProcessed"].as_u64().unwrap(),
    );
    assert!(
        from_nodes > 0 && from_nodes * 20 < processed,
        "a metric query moved {from_nodes} bytes between nodes for {processed} bytes scanned"
    );

    // Node 3 is frozen while a query through node 1 waits for its part,
    // then killed: its connection breaks mid-answer and its partitions
    // are read from their other copies, the answer complete.
    let picks: Vec<usize> = ["query_range", "/v1/query?", "api/v1/query?"]
        .iter()
        .filter_map(|kind| {
            s.requests
                .iter()
                .position(|r| r.contains(kind) && !r.contains("limit=37"))
        })
        .collect();
    assert_eq!(picks.len(), 3);
    let node1 = s.nodes[&1].url.clone();
    let mut mid_answer = 0;
    for (round, &i) in picks.iter().enumerate() {
        if round > 0 {
            // The node returns for the next round; wait until node 1's
            // answer is whole with it.
            s.nodes.get_mut(&3).unwrap().restart();
            wait_for("node 1 to answer in full with node 3 back", PATIENCE, || {
                let (st, b) = get(&s.client, &node1, &s.requests[i]);
                (answer(st, &b).ok().as_ref() == Some(&s.reference[i])).then_some(())
            });
        }
        let port: u16 = s.nodes[&3].addr.rsplit_once(':').unwrap().1.parse().unwrap();
        s.nodes[&3].proc.signal(libc::SIGSTOP);
        let (client, url, request) = (s.client.clone(), node1.clone(), s.requests[i].clone());
        let query = std::thread::spawn(move || get(&client, &url, &request));
        let waited = wait_for("node 1 to ask node 3, or to answer", PATIENCE, || {
            if request_waiting_on(port) {
                Some(true)
            } else {
                query.is_finished().then_some(false)
            }
        });
        mid_answer += usize::from(waited);
        s.nodes.get_mut(&3).unwrap().kill9();
        let (status, body) = query.join().unwrap();
        assert_eq!(
            answer(status, &body).as_ref(),
            Ok(&s.reference[i]),
            "{}: the answer after node 3 died mid-query differs",
            s.requests[i]
        );
    }
    eprintln!(
        "{mid_answer} of {} queries were cut in the middle of node 3's part",
        picks.len()
    );
}
