//! Issue 8: the collector's `/metrics`, scraped and parsed by a real
//! Prometheus text-format parser (Python's prometheus_client), shows what
//! was ingested, how long appends and fsyncs took, partition offsets and
//! refused requests.

use std::io::Write;
use std::process::{Command, Stdio};

use logpost_e2e::ingest::{BATCH_CONTENT_TYPE, batch};
use logpost_e2e::process::Collector;

/// Samples of a scrape, parsed by prometheus_client: (name, labels, value).
fn parse(text: &str) -> Vec<(String, serde_json::Map<String, serde_json::Value>, f64)> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed (scripts/test installs prometheus_client)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, serde_json::Map<String, serde_json::Value>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    samples
}

fn value(
    samples: &[(String, serde_json::Map<String, serde_json::Value>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

#[test]
fn issue_8_metrics_scraped_and_parsed_by_prometheus_client() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[storage]\ndefault_partitions = 2\n[[auth.tokens]]\nname = \"agents\"\ntoken = \"ingest-token-0123456789abcdef\"\nscopes = [\"ingest\"]\n",
    );
    let client = logpost_e2e::http();
    for i in 0..3 {
        let lines: Vec<String> = (0..5).map(|j| format!("batch {i} line {j}")).collect();
        let resp = client
            .post(format!("{}/v1/ingest/metered", c.url))
            .bearer_auth("ingest-token-0123456789abcdef")
            .header("content-type", BATCH_CONTENT_TYPE)
            .body(batch(&lines, 1_700_000_000_000))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    // Refused: no token, then garbage with a token.
    assert_eq!(
        client
            .get(format!("{}/v1/topics", c.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let resp = client
        .post(format!("{}/v1/ingest/metered", c.url))
        .bearer_auth("ingest-token-0123456789abcdef")
        .header("content-type", BATCH_CONTENT_TYPE)
        .body("garbage")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // /metrics is open: Prometheus scrapes without a token.
    let resp = client.get(format!("{}/metrics", c.url)).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().unwrap();
    let samples = parse(&text);
    let topic = [("topic", "metered")];
    assert_eq!(
        value(&samples, "logpost_collector_ingested_records_total", &topic),
        Some(15.0)
    );
    assert_eq!(
        value(&samples, "logpost_collector_ingested_batches_total", &topic),
        Some(3.0)
    );
    assert!(value(&samples, "logpost_collector_ingested_bytes_total", &topic).unwrap() > 0.0);
    assert!(value(&samples, "logpost_collector_fsync_seconds_count", &[]).unwrap() >= 3.0);
    assert!(value(&samples, "logpost_collector_append_seconds_bucket", &[("le", "+Inf")]).unwrap() >= 3.0);
    assert!(value(&samples, "logpost_collector_group_commit_batches_count", &[]).unwrap() >= 3.0);
    let hw: f64 = ["0", "1"]
        .iter()
        .map(|p| {
            value(
                &samples,
                "logpost_collector_partition_high_watermark",
                &[("topic", "metered"), ("partition", p)],
            )
            .unwrap()
        })
        .sum();
    assert_eq!(hw, 15.0, "high watermarks of both partitions add up to the records");
    let size: f64 = samples
        .iter()
        .filter(|(n, l, _)| {
            n == "logpost_collector_partition_size_bytes" && l.get("topic").and_then(|t| t.as_str()) == Some("metered")
        })
        .map(|(_, _, v)| *v)
        .sum();
    assert!(size > 0.0, "partition sizes are reported");
    assert_eq!(
        value(
            &samples,
            "logpost_collector_rejected_requests_total",
            &[("reason", "auth_missing")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "logpost_collector_rejected_requests_total",
            &[("reason", "bad_request")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "logpost_collector_http_requests_total",
            &[("route", "/v1/ingest/{topic}"), ("method", "POST"), ("status", "200")]
        ),
        Some(3.0)
    );
    assert!(
        value(
            &samples,
            "logpost_collector_http_request_seconds_count",
            &[("route", "/v1/ingest/{topic}")]
        )
        .unwrap()
            >= 4.0
    );
}

#[test]
fn issue_8_consumer_lag_per_group() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[kafka]\nlisten = \"127.0.0.1:0\"\n[groups]\ninitial_rebalance_delay = \"0s\"\n",
    );
    let client = logpost_e2e::http();
    let lines: Vec<String> = (0..5).map(|j| format!("line {j}")).collect();
    let resp = client
        .post(format!("{}/v1/ingest/lagged", c.url))
        .header("content-type", BATCH_CONTENT_TYPE)
        .body(batch(&lines, 1_700_000_000_000))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A consumer of group "lagging" commits offset 2 of 5 (a real Kafka client).
    let script = r#"
import sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "lagging", "enable.auto.commit": False})
c.commit(offsets=[TopicPartition("lagged", 0, 2)], asynchronous=False)
c.close()
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(c.kafka())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "commit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = client.get(format!("{}/metrics", c.url)).send().unwrap().text().unwrap();
    let samples = parse(&text);
    assert_eq!(
        value(
            &samples,
            "logpost_collector_consumer_lag",
            &[("group", "lagging"), ("topic", "lagged"), ("partition", "0")]
        ),
        Some(3.0),
        "{text}"
    );
}
