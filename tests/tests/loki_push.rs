//! Issue 9: Loki's push API with bodies built as the documented formats
//! say (tests/py/loki_push.py: protobuf through the real protobuf library,
//! snappy block format; JSON plain and gzip), read back with `logpost
//! query --output json`: lines, labels as headers, structured metadata
//! apart (issue 32), exact nanosecond timestamps, topics by tenant; bad bodies get
//! 400/413/415 and change nothing.

use std::time::Duration;

use logpost_e2e::clients::run_py;
use logpost_e2e::process::Collector;

#[test]
fn issue_9_loki_push_protobuf_and_json_land_with_labels_and_exact_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[loki]\nroute_by = \"tenant\"\ndefault_topic = \"loki\"\nmax_decompressed_bytes = \"4MiB\"\n",
    );
    let out = run_py("loki_push.py", &[&c.url], Duration::from_secs(120));
    assert!(out.contains("OK"), "{out}");

    let records = c.records("loki");
    let mut by_line: std::collections::BTreeMap<String, serde_json::Value> = records
        .iter()
        .map(|r| (r["line"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    assert_eq!(
        by_line.keys().cloned().collect::<Vec<_>>(),
        [
            "db line",
            "gzip line",
            "json line 1",
            "json line 2",
            "late line",
            "proto line 1",
            "proto line 2 ünïcode"
        ],
        "every good push stored once, no bad one"
    );
    // (line, timestamp_ms, ns header if ms loses precision, headers
    // expected; `sm:name` is structured metadata, shown apart as `metadata`)
    type Expected<'a> = (&'a str, i64, Option<&'a str>, &'a [(&'a str, &'a str)]);
    let expected: &[Expected] = &[
        (
            "proto line 1",
            1_700_000_000_123,
            Some("1700000000123456789"),
            &[("app", "web"), ("env", "prod"), ("sm:trace_id", "abc")],
        ),
        (
            "proto line 2 ünïcode",
            1_700_000_001_000,
            None,
            &[("app", "web"), ("env", "prod")],
        ),
        (
            "db line",
            1_700_000_002_000,
            Some("1700000002000000001"),
            &[("app", "db")],
        ),
        ("json line 1", 1_700_000_003_000, None, &[("job", "fluent-bit")]),
        (
            "json line 2",
            1_700_000_003_000,
            Some("1700000003000000500"),
            &[("job", "fluent-bit"), ("sm:k", "v")],
        ),
        (
            "gzip line",
            1_700_000_004_000,
            Some("1700000004000001000"),
            &[("job", "gz")],
        ),
    ];
    for (line, ms, ns, headers) in expected {
        let r = by_line.remove(*line).unwrap();
        assert_eq!(r["timestamp_ms"].as_i64(), Some(*ms), "{line}: {r}");
        // The exact nanoseconds: as a number in the output, and as the
        // nanoseconds past the millisecond in the `logpost.ns_be` header
        // (stored as three bytes, shown in decimal).
        let exact: Option<i64> = ns.map(|n| n.parse().unwrap());
        assert_eq!(r["timestamp_ns"].as_i64(), exact, "{line}: {r}");
        let sub_ms = exact.map(|n| (n % 1_000_000).to_string());
        assert_eq!(r["headers"]["logpost.ns_be"].as_str(), sub_ms.as_deref(), "{line}: {r}");
        assert!(r.get("key").is_none(), "{line}: Loki entries have no key: {r}");
        for (k, v) in *headers {
            match k.strip_prefix("sm:") {
                Some(name) => {
                    assert_eq!(r["metadata"][name].as_str(), Some(*v), "{line}: metadata {name}: {r}");
                    assert!(r["headers"].get(name).is_none(), "{line}: metadata is no header: {r}");
                }
                None => assert_eq!(r["headers"][k].as_str(), Some(*v), "{line}: header {k}: {r}"),
            }
        }
    }
    // Entries of one stream keep their order (one partition, by labels).
    let web: Vec<&str> = records
        .iter()
        .filter(|r| r["headers"]["app"] == "web")
        .map(|r| r["line"].as_str().unwrap())
        .collect();
    assert_eq!(web, ["proto line 1", "proto line 2 ünïcode"]);
    // The tenant header picked the topic.
    let tenant = c.records("team-a");
    assert_eq!(tenant.len(), 1);
    assert_eq!(tenant[0]["line"], "tenant line");
    assert!(c.proc.stderr_text().lines().all(|l| !l.contains("panicked")));
}
