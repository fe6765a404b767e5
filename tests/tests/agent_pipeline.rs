//! Issue 4: the agent's processing pipeline, end to end: multiline
//! grouping, parsing into headers with the event's own timestamp,
//! include/exclude filters, truncation of long lines, and a key template.

use std::io::Write;

use logpost_e2e::lines::record_line;
use logpost_e2e::process::{Agent, Collector};
use logpost_e2e::{PATIENCE, wait_for};

#[test]
fn issue_4_multiline_parse_filters_truncate_key() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "[storage]\ndefault_partitions = 4\n");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = format!(
        r#"data_dir = "{{data_dir}}"
[collector]
urls = ["{url}"]
[batch]
max_wait = "100ms"
[tail]
poll_interval = "20ms"
partial_line_timeout = "2s"
max_line_bytes = "1KiB"
long_lines = "truncate"
[[sources]]
name = "java"
paths = ["{logs}/app.log"]
topic = "java"
labels = {{ team = "core" }}
key = "{{team}}-{{host}}"
include_lines = ['^20']
exclude_lines = ['healthcheck']
[sources.multiline]
start = '^\d{{4}}-\d{{2}}-\d{{2}}'
timeout = "300ms"
[sources.parse]
format = "regex"
pattern = '^(?P<ts>\S+ \S+) (?P<level>[A-Z]+) (?P<logger>\S+)'
fields = ["level", "logger"]
timestamp_field = "ts"
timestamp_format = "%Y-%m-%d %H:%M:%S%f"
[[sources]]
name = "json"
paths = ["{logs}/events.json"]
topic = "json"
[sources.parse]
format = "json"
timestamp_field = "time"
timestamp_format = "unix_ms"
"#,
        url = c.url,
        logs = logs.display()
    );
    let _agent = Agent::start(&tmp.path().join("agent"), &config);

    let long = "x".repeat(5000);
    // One write: a line split over several could be flushed in pieces.
    let text = format!(
        "2024-05-01 12:00:00.250 ERROR com.example.Pay payment failed\n\
         java.lang.IllegalStateException: card declined\n\
         \tat com.example.Pay.charge(Pay.java:42)\n\
         \tat com.example.Api.post(Api.java:7)\n\
         2024-05-01 12:00:01 INFO com.example.Api healthcheck ok\n\
         2024-05-01 12:00:02 WARN com.example.Api slow {long}\n\
         2024-05-01 12:00:03 INFO com.example.Api done\n"
    );
    std::fs::write(logs.join("app.log"), text).unwrap();
    let mut events = std::fs::File::create(logs.join("events.json")).unwrap();
    writeln!(
        events,
        r#"{{"time": 1700000000123, "level": "info", "msg": "hello", "status": 200}}"#
    )
    .unwrap();
    writeln!(events, "not json at all").unwrap();

    let java = wait_for("the java events", PATIENCE, || {
        let r = c.records("java");
        (r.len() >= 3).then_some(r)
    });
    let lines: Vec<String> = java
        .iter()
        .map(|r| String::from_utf8(record_line(r)).unwrap())
        .collect();
    assert_eq!(java.len(), 3, "{lines:#?}");
    // The stack trace is one event; the healthcheck was excluded.
    assert_eq!(
        lines[0],
        "2024-05-01 12:00:00.250 ERROR com.example.Pay payment failed\njava.lang.IllegalStateException: card declined\n\tat com.example.Pay.charge(Pay.java:42)\n\tat com.example.Api.post(Api.java:7)"
    );
    assert_eq!(java[0]["headers"]["level"], "ERROR");
    assert_eq!(java[0]["headers"]["logger"], "com.example.Pay");
    assert_eq!(java[0]["headers"]["team"], "core");
    assert!(
        java[0]["headers"].get("ts").is_none(),
        "only the listed fields become headers"
    );
    assert_eq!(
        java[0]["timestamp_ms"], 1_714_564_800_250_i64,
        "time taken from the event"
    );
    // Truncated to max_line_bytes, marked.
    assert_eq!(lines[1].len(), 1024);
    assert_eq!(java[1]["headers"]["logpost.truncated"], "true");
    assert_eq!(java[2]["headers"]["level"], "INFO");
    // The key template, the same for every record of the file.
    let key = java[0]["key"].as_str().unwrap();
    assert!(key.starts_with("core-"), "{key}");
    assert!(
        java.iter()
            .all(|r| r["key"] == key && r["partition"] == java[0]["partition"])
    );

    let json = wait_for("the json events", PATIENCE, || {
        let r = c.records("json");
        (r.len() >= 2).then_some(r)
    });
    assert_eq!(json[0]["headers"]["level"], "info");
    assert_eq!(json[0]["headers"]["status"], "200");
    assert_eq!(json[0]["timestamp_ms"], 1_700_000_000_123_i64);
    // A line that does not parse is kept whole and marked.
    assert_eq!(record_line(&json[1]), b"not json at all");
    assert_eq!(json[1]["headers"]["logpost.parse_error"], "json");
}

/// `batch.linger`: once the agent has read everything and has no request
/// outstanding, a batch goes out after the linger, not after `max_wait`.
/// With `max_wait` at ten minutes, lines arriving within the test's
/// patience (two minutes) can only have been sent by the linger rule.
#[test]
fn issue_4_a_caught_up_agent_sends_without_waiting_for_max_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = format!(
        r#"data_dir = "{{data_dir}}"
[collector]
urls = ["{url}"]
[batch]
max_wait = "10m"
[tail]
poll_interval = "20ms"
[[sources]]
name = "app"
paths = ["{logs}/*.log"]
topic = "app"
"#,
        url = c.url,
        logs = logs.display()
    );
    let _agent = Agent::start(&tmp.path().join("agent"), &config);
    let mut file = std::fs::File::create(logs.join("app.log")).unwrap();
    let mut expected = Vec::new();
    // A burst, then, once it is stored, a single line: each is sent as
    // soon as the agent is caught up.
    for (round, count) in [(0, 2000), (1, 1)] {
        let mut text = String::new();
        for i in 0..count {
            let line = format!("round {round} line {i}");
            text.push_str(&line);
            text.push('\n');
            expected.push(line.into_bytes());
        }
        file.write_all(text.as_bytes()).unwrap();
        let lines = wait_for("the lines, well before max_wait", PATIENCE, || {
            let lines = c.lines("app");
            (lines.len() >= expected.len()).then_some(lines)
        });
        assert_eq!(lines, expected, "every line once, in order");
    }
}
