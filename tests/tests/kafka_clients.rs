//! Issue 9: real Kafka clients against the collector's Kafka listener:
//! kcat reads what a logpost agent wrote; confluent-kafka and kafka-python
//! produce (idempotently, a retried batch stored once) and consume with
//! consumer groups that survive a SIGKILLed member; everything produced is
//! in `logpost query`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use logpost_e2e::clients::{Client, kcat, run_py};
use logpost_e2e::corpus;
use logpost_e2e::process::{Agent, Collector, agent_config};
use logpost_e2e::{PATIENCE, wait_for};

const LONG: Duration = Duration::from_secs(180);

fn kafka_collector(dir: &std::path::Path, extra: &str) -> Collector {
    Collector::start(
        dir,
        &format!("[kafka]\nlisten = \"127.0.0.1:0\"\n[groups]\ninitial_rebalance_delay = \"500ms\"\n{extra}"),
    )
}

fn run_kcat(args: &[&str]) -> Vec<u8> {
    let out = Command::new(kcat()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The values `logpost query` holds for `topic`, with how often each appears.
fn stored_counts(c: &Collector, topic: &str) -> BTreeMap<Vec<u8>, usize> {
    let mut counts = BTreeMap::new();
    for l in c.lines(topic) {
        *counts.entry(l).or_default() += 1;
    }
    counts
}

fn assert_stored_once(c: &Collector, topic: &str, expected: &BTreeSet<String>) {
    let counts = wait_for("every produced record to be queryable", PATIENCE, || {
        let counts = stored_counts(c, topic);
        (counts.len() >= expected.len()).then_some(counts)
    });
    let got: BTreeSet<String> = counts.keys().map(|k| String::from_utf8(k.clone()).unwrap()).collect();
    assert_eq!(&got, expected, "logpost query holds other values than were produced");
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicates in {topic}: {dups:?}");
}

#[test]
fn issue_9_kcat_lists_metadata_and_reads_what_an_agent_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let c = kafka_collector(&tmp.path().join("collector"), "[storage]\ndefault_partitions = 3\n");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/*.log", logs.display());
    let _agent = Agent::start(&tmp.path().join("agent"), &agent_config(&c, &glob, "tailed"));
    // Two corpus files (CRLF, odd bytes), appended as a program would.
    let files = corpus::files();
    let expected = corpus::append_to(&logs, &files[..2]);
    wait_for("the agent's lines to be stored", PATIENCE, || {
        (c.lines("tailed").len() >= expected.len()).then_some(())
    });

    let meta = String::from_utf8(run_kcat(&["-b", c.kafka(), "-L", "-m", "30"])).unwrap();
    assert!(
        meta.contains(&format!("broker 0 at {} (controller)", c.kafka())),
        "{meta}"
    );
    assert!(meta.contains("topic \"tailed\" with 3 partitions"), "{meta}");
    assert!(meta.contains("partition 2, leader 0, replicas: 0, isrs: 0"), "{meta}");

    // From the beginning, every partition, value bytes only.
    let out = run_kcat(&[
        "-b",
        c.kafka(),
        "-C",
        "-t",
        "tailed",
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%s\\n",
        "-m",
        "60",
    ]);
    let mut got: Vec<Vec<u8>> = out.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(got.pop(), Some(Vec::new()), "output ends with a newline");
    // Each file is one stream, so one partition: its lines arrive in order;
    // partitions interleave, so compare per file by sorting both sides'
    // multisets and, separately, each file's order.
    assert_eq!(
        got.len(),
        expected.len(),
        "kcat read {} lines, the agent wrote {}",
        got.len(),
        expected.len()
    );
    let (mut g, mut e) = (got.clone(), expected.clone());
    g.sort();
    e.sort();
    assert!(g == e, "kcat's lines differ from the files' lines");
    for (name, data) in files.iter().take(2) {
        let want = corpus::expected_lines(data);
        let set: BTreeSet<&Vec<u8>> = want.iter().collect();
        let order: Vec<&Vec<u8>> = got.iter().filter(|l| set.contains(l)).collect();
        assert!(order.len() >= want.len(), "{name}");
        let firsts: Vec<&Vec<u8>> = {
            let mut seen = BTreeSet::new();
            order.into_iter().filter(|l| seen.insert(*l)).collect()
        };
        let want_firsts: Vec<&Vec<u8>> = {
            let mut seen = BTreeSet::new();
            want.iter().filter(|l| seen.insert(*l)).collect()
        };
        assert!(firsts == want_firsts, "{name}: lines out of file order");
    }
    // Headers travel too: the agent's `path` header, as kcat prints it.
    let one = String::from_utf8(run_kcat(&[
        "-b",
        c.kafka(),
        "-C",
        "-t",
        "tailed",
        "-o",
        "beginning",
        "-c",
        "1",
        "-e",
        "-q",
        "-f",
        "%h\\n",
    ]))
    .unwrap();
    assert!(one.contains("path=") && one.contains("source=test"), "{one}");
}

#[test]
fn issue_9_confluent_idempotent_producer_and_group_consumer() {
    let tmp = tempfile::tempdir().unwrap();
    let c = kafka_collector(tmp.path(), "[topics.idem]\npartitions = 3\n");
    let out = run_py("confluent_idempotent.py", &[c.kafka(), "idem", "2000"], LONG);
    assert!(out.contains("OK 2000"), "{out}");
    assert_stored_once(&c, "idem", &(0..2000).map(|i| format!("idem-{i}")).collect());
    // What librdkafka 2.16 negotiates from the advertised ranges.
    let log = wait_for("connections to close", PATIENCE, || {
        let log = c.proc.stderr_text();
        [
            "InitProducerId v1",
            "Produce v8",
            "Fetch v11",
            "JoinGroup v5",
            "OffsetCommit v7",
        ]
        .iter()
        .all(|v| log.contains(v))
        .then_some(log)
    });
    assert!(!log.contains("panicked"));
}

#[test]
fn issue_9_kafka_python_producer_and_group_consumer() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start_logging(
        tmp.path(),
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[groups]\ninitial_rebalance_delay = \"500ms\"\n[topics.kp]\npartitions = 2\n",
        "info,logpost_collector::kafka=debug",
    );
    let out = run_py("kafka_python_roundtrip.py", &[c.kafka(), "kp", "500"], LONG);
    assert!(out.contains("OK 500"), "{out}");
    assert_stored_once(&c, "kp", &(0..500).map(|i| format!("kp-{i}")).collect());
    // kafka-python starts with ApiVersions v4 and falls back to v3.
    let log = c.proc.stderr_text();
    for needle in [
        "ApiVersions v4 unsupported",
        "first ApiVersions v3",
        "first InitProducerId v1",
        "first Produce v8",
    ] {
        assert!(log.contains(needle), "missing {needle:?} in the collector's log");
    }
}

/// A TCP proxy in front of the Kafka listener that swallows the response
/// to the first Produce it sees and closes that client connection, as a
/// network failure after the append would: the client cannot know the
/// batch was stored, so it sends it again (same producer id, epoch and
/// sequence) on a new connection.
struct LosingProxy {
    addr: String,
    dropped: Arc<AtomicUsize>,
}

impl LosingProxy {
    fn start(listener: TcpListener, upstream: String) -> LosingProxy {
        let addr = listener.local_addr().unwrap().to_string();
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&dropped);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let d = Arc::clone(&d);
                std::thread::spawn(move || proxy_connection(client, server, &d));
            }
        });
        LosingProxy { addr, dropped }
    }
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut frame = len.to_vec();
    frame.resize(4 + usize::try_from(i32::from_be_bytes(len)).ok()?, 0);
    s.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

fn proxy_connection(mut client: TcpStream, mut server: TcpStream, dropped: &AtomicUsize) {
    let produce_ids = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let ids = Arc::clone(&produce_ids);
    std::thread::spawn(move || {
        while let Some(frame) = read_frame(&mut c2) {
            let api_key = i16::from_be_bytes([frame[4], frame[5]]);
            let corr = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
            if api_key == 0 {
                ids.lock().unwrap().insert(corr);
            }
            if s2.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = s2.shutdown(std::net::Shutdown::Both);
    });
    while let Some(frame) = read_frame(&mut server) {
        let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let is_produce = produce_ids.lock().unwrap().remove(&corr);
        if is_produce
            && dropped
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            break; // the response is lost with the connection
        }
        if client.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = server.shutdown(std::net::Shutdown::Both);
}

#[test]
fn issue_9_confluent_retry_after_a_lost_response_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let proxy_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy_listener.local_addr().unwrap().to_string();
    // Clients are told to use the proxy for every connection.
    let c = Collector::start(
        tmp.path(),
        &format!("[kafka]\nlisten = \"127.0.0.1:0\"\nadvertised = \"{proxy_addr}\"\n[topics.retry]\npartitions = 1\n"),
    );
    let proxy = LosingProxy::start(proxy_listener, c.kafka().to_owned());
    let out = run_py("confluent_produce.py", &[&proxy.addr, "retry", "300", "r"], LONG);
    assert!(out.contains("OK 300"), "{out}");
    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        1,
        "the proxy lost one Produce response"
    );
    let delivered: BTreeSet<(i64, String)> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("DELIVERED")).then(|| {
                let _partition = f.next();
                (f.next().unwrap().parse().unwrap(), f.next().unwrap().to_owned())
            })
        })
        .collect();
    assert_eq!(
        delivered.len(),
        300,
        "one delivery report per message, distinct offsets"
    );
    assert_stored_once(&c, "retry", &(0..300).map(|i| format!("r-{i}")).collect());
    // Offsets are dense: nothing was appended twice.
    let offsets: Vec<i64> = delivered.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..300).collect::<Vec<_>>());
}

/// A group member process (tests/py/group_member.py).
struct Member(Client);

impl Member {
    fn start(lib: &str, addr: &str, topic: &str, group: &str) -> Member {
        Member(Client::start("group_member.py", &[lib, addr, topic, group]))
    }

    /// Partitions of the latest ASSIGNED line, if any.
    fn assignment(&self) -> Option<BTreeSet<i32>> {
        let lines = self.0.lines();
        let last = lines.iter().rev().find(|l| l.starts_with("ASSIGNED"))?;
        Some(
            last.trim_start_matches("ASSIGNED")
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect(),
        )
    }

    /// `value -> partition` of every MSG line.
    fn messages(&self) -> BTreeMap<String, i32> {
        Self::parse_messages(&self.0.lines())
    }

    /// As [`messages`](Self::messages), printed after the latest ASSIGNED line.
    fn messages_since_assignment(&self) -> BTreeMap<String, i32> {
        let lines = self.0.lines();
        let from = lines
            .iter()
            .rposition(|l| l.starts_with("ASSIGNED"))
            .map_or(0, |i| i + 1);
        Self::parse_messages(&lines[from..])
    }

    fn parse_messages(lines: &[String]) -> BTreeMap<String, i32> {
        lines
            .iter()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("MSG")).then(|| {
                    let p = f.next().unwrap().parse().unwrap();
                    let _offset = f.next();
                    (f.next().unwrap().to_string(), p)
                })
            })
            .collect()
    }

    /// Highest committed offset per partition.
    fn committed(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        for l in self.0.lines() {
            let mut f = l.split_whitespace();
            if f.next() == Some("COMMITTED") {
                let p: i32 = f.next().unwrap().parse().unwrap();
                let o: i64 = f.next().unwrap().parse().unwrap();
                let e = out.entry(p).or_insert(o);
                *e = (*e).max(o);
            }
        }
        out
    }
}

fn values(range: std::ops::Range<i32>) -> BTreeSet<String> {
    range.map(|i| format!("m-{i}")).collect()
}

/// Two members split a 4-partition topic; the first is SIGKILLed; the
/// survivor takes over all partitions from the committed offsets: nothing
/// lost, and nothing the dead member committed is read again.
fn takeover(lib_a: &str, lib_b: &str) {
    let _heavy = logpost_e2e::heavy();
    let tmp = tempfile::tempdir().unwrap();
    // A long initial delay (Kafka's default is 3 s): both members, started
    // together, land in the first generation however long Python takes to
    // start on a busy machine.
    let c = Collector::start(
        tmp.path(),
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[groups]\ninitial_rebalance_delay = \"10s\"\n[topics.grp]\npartitions = 4\n",
    );
    let (topic, group) = ("grp", "takeover");

    let a = Member::start(lib_a, c.kafka(), topic, group);
    let b = Member::start(lib_b, c.kafka(), topic, group);
    wait_for("both members to hold two partitions each, disjoint", LONG, || {
        match (a.assignment(), b.assignment()) {
            (Some(x), Some(y)) => (x.len() == 2 && y.len() == 2 && x.is_disjoint(&y)).then_some(()),
            _ => None,
        }
    });
    let a_parts = a.assignment().unwrap();
    // Produced only once the split is settled: should one member still
    // join late, nothing was read (and committed) in a one-member round.
    run_py("produce.py", &[c.kafka(), topic, "0", "400", "4"], LONG);
    wait_for("the first 400 messages to be consumed and committed", LONG, || {
        let mut seen: BTreeSet<String> = a.messages().into_keys().collect();
        seen.extend(b.messages().into_keys());
        (seen.is_superset(&values(0..400)) && a_parts.iter().all(|p| a.committed().get(p) == Some(&100))).then_some(())
    });
    let a_seen = a.messages();
    assert!(
        a.messages_since_assignment().values().all(|p| a_parts.contains(p)),
        "a read outside its assignment: {}",
        a.0.describe()
    );

    let mut a = a;
    a.0.child.kill().unwrap(); // SIGKILL: no LeaveGroup, the session must expire
    a.0.child.wait().unwrap();
    run_py("produce.py", &[c.kafka(), topic, "400", "400", "4"], LONG);

    wait_for(
        "the survivor to own all four partitions and read the new messages",
        LONG,
        || {
            (b.assignment().is_some_and(|s| s.len() == 4)
                && b.messages()
                    .keys()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .is_superset(&values(400..800)))
            .then_some(())
        },
    );
    let b_seen = b.messages();
    let mut all: BTreeSet<String> = a_seen.keys().cloned().collect();
    all.extend(b_seen.keys().cloned());
    assert!(all.is_superset(&values(0..800)), "messages lost");
    let reread: Vec<&String> = a_seen.keys().filter(|v| b_seen.contains_key(*v)).collect();
    assert!(
        reread.is_empty(),
        "the survivor re-read {} records the dead member had committed: {:?}",
        reread.len(),
        &reread[..reread.len().min(5)]
    );
    let from_a_parts = b_seen.iter().filter(|(_, p)| a_parts.contains(p)).count();
    assert_eq!(
        from_a_parts,
        200,
        "the survivor must read exactly the new records of the taken-over partitions\n{}",
        b.0.describe()
    );
    let log = c.proc.stderr_text();
    assert!(
        log.contains("session expired"),
        "the killed member left no LeaveGroup: its session must expire"
    );
    assert!(log.contains("generation=2"));
    assert_stored_once(&c, topic, &values(0..800));
}

#[test]
fn issue_9_group_takeover_confluent_pair() {
    takeover("confluent", "confluent");
}

#[test]
fn issue_9_group_takeover_mixed_clients() {
    takeover("confluent", "kafka-python");
}
