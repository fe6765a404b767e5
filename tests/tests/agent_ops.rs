//! Issue 4: operating the agent: `validate`, `--dry-run`, SIGHUP reload,
//! and the Prometheus metrics endpoint (parsed by a real Prometheus
//! text-format parser).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use logpost_e2e::lines::{LineWriter, Reopen, check};
use logpost_e2e::process::{Agent, Collector, agent_config, agent_config_for, bin};
use logpost_e2e::{PATIENCE, pace, wait_for};

#[test]
fn issue_4_validate_reports_files_and_collector() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for name in ["a.log", "b.log"] {
        std::fs::write(logs.join(name), "x\n").unwrap();
    }
    let glob = format!("{}/*.log", logs.display());
    let run = |config: String| {
        let path = tmp.path().join("validate.toml");
        std::fs::write(&path, config.replace("{data_dir}", "/tmp/unused")).unwrap();
        let out = Command::new(bin("logpost-agent"))
            .arg("validate")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = run(agent_config(&c, &glob, "t"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("config ok"), "{out}");
    assert!(out.contains("2 file(s) match now"), "{out}");
    assert!(out.contains(&format!("collector {}: reachable", c.url)), "{out}");
    let (code, out) = run(agent_config_for("http://127.0.0.1:1", &glob, "t"));
    assert_eq!(code, Some(0));
    assert!(out.contains("NOT reachable"), "{out}");
}

#[test]
fn issue_4_dry_run_prints_events_and_ships_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("a.log"), "one\ntwo\nthree\n").unwrap();
    let glob = format!("{}/*.log", logs.display());
    let mut agent = Agent::start_with_args(
        &tmp.path().join("agent"),
        &agent_config(&c, &glob, "dry"),
        &["--dry-run"],
    );
    let printed = wait_for("three events on stdout", PATIENCE, || {
        let out = agent.proc.stdout_text();
        let lines: Vec<serde_json::Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        (lines.len() >= 3).then_some(lines)
    });
    let texts: Vec<&str> = printed.iter().map(|v| v["line"].as_str().unwrap()).collect();
    assert_eq!(texts, vec!["one", "two", "three"]);
    assert_eq!(printed[0]["topic"], "dry");
    assert!(printed[0]["headers"]["path"].as_str().unwrap().ends_with("a.log"));
    assert_eq!(agent.proc.terminate(), Some(0));
    assert!(c.records("dry").is_empty(), "a dry run shipped records");
    assert!(
        !tmp.path().join("agent/data/checkpoints.json").exists(),
        "a dry run wrote a checkpoint"
    );
}

#[test]
fn issue_4_sighup_reloads_without_losing_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let one = agent_config(&c, &format!("{}/*.log", a.display()), "reload");
    let agent = Agent::start(&tmp.path().join("agent"), &one);
    let w1 = LineWriter::spawn(1, a.join("app.log"), 500, 50, Duration::from_millis(5), Reopen::Never).finish();
    wait_for("the first lines", PATIENCE, || {
        (check(&c.records("reload"), &BTreeMap::from([(1, w1)])).lost == 0).then_some(())
    });

    // A second source, and a label on the first.
    let two = format!(
        "{}\n[[sources]]\nname = \"second\"\npaths = [\"{}/*.log\"]\ntopic = \"reload\"\n",
        one.replace(
            "topic = \"reload\"\n",
            "topic = \"reload\"\nlabels = { env = \"new\" }\n"
        ),
        b.display()
    );
    agent.rewrite_config(&two);
    agent.proc.signal(libc::SIGHUP);
    wait_for("the reload", PATIENCE, || {
        agent.proc.stderr_text().contains("config reloaded").then_some(())
    });
    let w2 = LineWriter::spawn(2, b.join("other.log"), 300, 50, Duration::from_millis(5), Reopen::Never).finish();
    // More lines in the first file: continued, not read again.
    let mut more = std::fs::OpenOptions::new()
        .append(true)
        .open(a.join("app.log"))
        .unwrap();
    for seq in w1..w1 + 100 {
        std::io::Write::write_all(&mut more, format!("{}\n", logpost_e2e::lines::line(1, seq)).as_bytes()).unwrap();
    }
    let written = BTreeMap::from([(1, w1 + 100), (2, w2)]);
    let records = wait_for("both sources after the reload", PATIENCE, || {
        let r = c.records("reload");
        (check(&r, &written).lost == 0).then_some(r)
    });
    let report = check(&records, &written);
    assert_eq!((report.duplicated, report.altered), (0, 0), "{report}");
    let late = records
        .iter()
        .find(|r| {
            r["line"]
                .as_str()
                .is_some_and(|l| l.starts_with(&format!("001 {:010}", w1)))
        })
        .unwrap();
    assert_eq!(late["headers"]["env"], "new", "the reloaded label applies");

    // A bad config is refused and the running one kept.
    agent.rewrite_config("data_dir = 5\n");
    agent.proc.signal(libc::SIGHUP);
    wait_for("the refusal", PATIENCE, || {
        agent.proc.stderr_text().contains("new config is invalid").then_some(())
    });
    pace(Duration::from_millis(200));
    let mut agent = agent;
    assert!(agent.proc.is_running());
}

#[test]
fn issue_4_metrics_scraped_and_parsed() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = agent_config(&c, &format!("{}/*.log", logs.display()), "m")
        .replace("[tail]", "[metrics]\nlisten = \"127.0.0.1:0\"\n[tail]");
    let agent = Agent::start(&tmp.path().join("agent"), &config);
    let n = LineWriter::spawn(1, logs.join("m.log"), 777, 777, Duration::ZERO, Reopen::Never).finish();
    wait_for("delivery", PATIENCE, || {
        (check(&c.records("m"), &BTreeMap::from([(1, n)])).lost == 0).then_some(())
    });
    let addr = wait_for("the metrics address", PATIENCE, || {
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
    let script = r#"
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
for family in text_string_to_metric_families(text):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}|{labels}|{s.value}")
"#;
    let samples = wait_for("metrics that reflect the delivery", PATIENCE, || {
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(format!("http://{addr}/metrics"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "prometheus_client could not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let get = |name: &str, labels: &str| -> Option<f64> {
            text.lines().find_map(|l| {
                let mut p = l.split('|');
                (p.next() == Some(name) && p.next() == Some(labels))
                    .then(|| p.next().and_then(|v| v.parse().ok()))
                    .flatten()
            })
        };
        let lines = get("logpost_agent_lines_read_total", "source=test")?;
        let shipped = get("logpost_agent_records_shipped_total", "")?;
        (lines as u64 == n && shipped as u64 == n).then_some(text)
    });
    for name in [
        "logpost_agent_files_tracked",
        "logpost_agent_files_open",
        "logpost_agent_bytes_behind",
        "logpost_agent_checkpoint_age_seconds",
        "logpost_agent_batches_acked_total",
    ] {
        assert!(samples.contains(name), "{name} missing from\n{samples}");
    }
    let not_found = Command::new("python3")
        .arg("-c")
        .arg("import sys,urllib.request,urllib.error\ntry:\n urllib.request.urlopen(sys.argv[1])\nexcept urllib.error.HTTPError as e:\n print(e.code)")
        .arg(format!("http://{addr}/other"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&not_found.stdout).trim(), "404");
}
