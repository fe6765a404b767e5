//! Kafka's codecs end to end: librdkafka producers compressing with snappy,
//! lz4 and zstd, and agents shipping lz4 and snappy. Each batch is stored as
//! it arrived (its codec unchanged on disk), every value comes back exactly
//! once through `logpost query`, and kcat (librdkafka) decodes the stored
//! batches as a Kafka consumer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use logpost_e2e::clients::{kcat, run_py};
use logpost_e2e::corpus;
use logpost_e2e::process::{Agent, Collector, agent_config};
use logpost_e2e::{PATIENCE, wait_for};

const LONG: Duration = Duration::from_secs(180);

/// Codec ids of every batch stored for `topic`, with their counts, read
/// from the segment files themselves.
fn stored_codecs(c: &Collector, topic: &str) -> BTreeMap<u8, usize> {
    let mut codecs = BTreeMap::new();
    let topic_dir = c.dir.join("data").join("topics").join(topic);
    for partition in std::fs::read_dir(&topic_dir).unwrap() {
        let partition = partition.unwrap().path();
        if !partition.is_dir() {
            continue;
        }
        for seg in std::fs::read_dir(&partition).unwrap() {
            let seg = seg.unwrap().path();
            if seg.extension().is_some_and(|e| e == "log") {
                count_codecs(&seg, &mut codecs);
            }
        }
    }
    codecs
}

fn count_codecs(segment: &Path, codecs: &mut BTreeMap<u8, usize>) {
    let bytes = std::fs::read(segment).unwrap();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        let end = at + 12 + usize::try_from(len).unwrap();
        let header = logpost_shared::batch::check(&bytes[at..end])
            .unwrap_or_else(|e| panic!("{}: batch at {at}: {e}", segment.display()));
        *codecs.entry(header.codec_id()).or_default() += 1;
        at = end;
    }
}

/// Every value kcat reads from `topic` (all partitions, from the start).
fn kcat_values(c: &Collector, topic: &str, expected: usize) -> Vec<Vec<u8>> {
    let out = Command::new(kcat())
        .args(["-b", c.kafka(), "-C", "-t", topic, "-o", "beginning", "-e", "-q"])
        .args(["-f", "%s\\n", "-m", "60"])
        .output()
        .unwrap();
    assert!(out.status.success(), "kcat: {}", String::from_utf8_lossy(&out.stderr));
    let mut got: Vec<Vec<u8>> = out.stdout.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(got.pop(), Some(Vec::new()), "kcat's output ends with a newline");
    assert_eq!(
        got.len(),
        expected,
        "kcat read {} values of {topic}, expected {expected}",
        got.len()
    );
    got
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[test]
fn kafka_producers_snappy_lz4_zstd_are_stored_as_sent_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[storage]\ndefault_partitions = 2\n",
    );
    for (codec, id) in [("snappy", 2u8), ("lz4", 3), ("zstd", 4)] {
        let topic = format!("from-{codec}");
        let out = run_py("confluent_produce.py", &[c.kafka(), &topic, "3000", codec, codec], LONG);
        assert!(out.contains("OK 3000"), "{codec}: {out}");
        let expected: BTreeSet<Vec<u8>> = (0..3000).map(|i| format!("{codec}-{i}").into_bytes()).collect();
        let stored = wait_for("every produced value to be queryable", PATIENCE, || {
            let lines = c.lines(&topic);
            (lines.len() >= expected.len()).then_some(lines)
        });
        assert_eq!(stored.len(), expected.len(), "{codec}: duplicates stored");
        assert_eq!(
            stored.into_iter().collect::<BTreeSet<_>>(),
            expected,
            "{codec}: values differ"
        );
        // librdkafka sends a batch uncompressed when compressing would not
        // pay off; everything else must be on disk in the producer's codec.
        let codecs = stored_codecs(&c, &topic);
        assert!(
            codecs.get(&id).copied().unwrap_or(0) > 0,
            "{codec}: no batch stored as {id}: {codecs:?}"
        );
        assert!(codecs.keys().all(|k| *k == id || *k == 0), "{codec}: {codecs:?}");
        let read = kcat_values(&c, &topic, expected.len());
        assert_eq!(
            read.into_iter().collect::<BTreeSet<_>>(),
            expected,
            "{codec}: kcat read other values"
        );
        // A line filter over the compressed batches.
        let hits = c.logpost(&[
            "query",
            &format!("{{topic=\"{topic}\"}} |= \"{codec}-299\""),
            "--output",
            "raw",
        ]);
        assert!(hits.status.success(), "{}", String::from_utf8_lossy(&hits.stderr));
        let mut hits: Vec<&str> = std::str::from_utf8(&hits.stdout).unwrap().lines().collect();
        hits.sort_unstable();
        let want: Vec<String> = [2990, 2991, 2992, 2993, 2994, 2995, 2996, 2997, 2998, 2999, 299]
            .iter()
            .map(|i| format!("{codec}-{i}"))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(hits, want, "{codec}: |= filter");
    }
    assert!(!c.proc.stderr_text().contains("panicked"));
}

#[test]
fn agents_ship_lz4_and_snappy_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        &tmp.path().join("collector"),
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[storage]\ndefault_partitions = 1\n",
    );
    let files = corpus::files();
    let mut agents = Vec::new();
    let mut expected = BTreeMap::new();
    for (codec, id) in [("lz4", 3u8), ("snappy", 2)] {
        let logs = tmp.path().join(format!("logs-{codec}"));
        std::fs::create_dir_all(&logs).unwrap();
        let glob = format!("{}/*.log", logs.display());
        let config =
            agent_config(&c, &glob, codec).replace("[batch]\n", &format!("[batch]\ncompression = \"{codec}\"\n"));
        agents.push(Agent::start(&tmp.path().join(format!("agent-{codec}")), &config));
        // Corpus files (CRLF, invalid UTF-8), appended as a program would.
        let lines = corpus::append_to(&logs, &files[..3]);
        expected.insert((codec, id), lines);
    }
    for ((codec, id), lines) in &expected {
        let stored = wait_for("the agent's lines to be stored", PATIENCE, || {
            let stored = c.lines(codec);
            (stored.len() >= lines.len()).then_some(stored)
        });
        assert_eq!(stored.len(), lines.len(), "{codec}: lines lost or repeated");
        assert!(
            sorted(stored) == sorted(lines.clone()),
            "{codec}: stored lines differ from the files'"
        );
        let codecs = stored_codecs(&c, codec);
        assert_eq!(
            codecs.keys().copied().collect::<Vec<_>>(),
            vec![*id],
            "{codec}: {codecs:?}"
        );
        let read = kcat_values(&c, codec, lines.len());
        assert!(
            sorted(read) == sorted(lines.clone()),
            "{codec}: kcat decoded other bytes"
        );
    }
}

#[test]
fn loki_pushes_are_stored_in_the_configured_codec() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "[loki]\ncompression = \"lz4\"\n");
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let values: Vec<serde_json::Value> = (0..500)
        .map(|i| serde_json::json!([(now_ns + i).to_string(), format!("pushed line {i} of a Loki stream")]))
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"job": "lz4"}, "values": values}]});
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/loki/api/v1/push", c.url))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().unwrap_or_default());
    let lines = c.lines("loki");
    let expected: Vec<Vec<u8>> = (0..500)
        .map(|i| format!("pushed line {i} of a Loki stream").into_bytes())
        .collect();
    assert!(sorted(lines) == sorted(expected), "pushed lines differ");
    assert_eq!(stored_codecs(&c, "loki"), BTreeMap::from([(3, 1)]));
}
