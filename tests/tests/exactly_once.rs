//! Issue 7: exactly once in the crash sequences the torture test found,
//! each replayed deterministically.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use logpost_e2e::lines::{LineWriter, Reopen, Report, check};
use logpost_e2e::process::{Agent, Collector, agent_config};
use logpost_e2e::{PATIENCE, pace};

/// Waits until nothing written is missing; fails with the last report and
/// the agent's log on timeout.
fn wait_delivered(c: &Collector, topic: &str, written: &BTreeMap<u32, u64>, agent: &Agent) -> Report {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = check(&c.records(topic), written);
        if r.lost == 0 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for delivery: {r}\nagent log:\n{}",
            agent.proc.stderr_text()
        );
        pace(Duration::from_millis(50));
    }
}

/// An agent that is killed before its first periodic checkpoint, after it
/// read a file that is then renamed out of the glob (logrotate `create`)
/// and appended to while the agent is down: the restarted agent still
/// finds the file by inode and ships the rest, once. The torture test lost
/// whole bursts this way when every agent run was shorter than
/// `checkpoint_interval`.
#[test]
fn issue_7_file_rotated_away_before_the_first_periodic_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/*.log", logs.display());
    let config =
        agent_config(&c, &glob, "eo").replace("checkpoint_interval = \"100ms\"", "checkpoint_interval = \"1h\"");
    let path = logs.join("app.log");
    let agent_dir = tmp.path().join("agent");

    let mut agent = Agent::start(&agent_dir, &config);
    let first = LineWriter::spawn(1, path.clone(), 300, 300, Duration::ZERO, Reopen::Never).finish();
    let r = wait_delivered(&c, "eo", &BTreeMap::from([(1, first)]), &agent);
    assert_eq!(r.duplicated, 0, "{r}");
    agent.proc.kill9();

    // While the agent is down: the file gets more lines, then is rotated.
    let second = LineWriter::spawn(2, path.clone(), 200, 200, Duration::ZERO, Reopen::Never).finish();
    std::fs::rename(&path, logs.join("app.log.1")).unwrap();
    let third = LineWriter::spawn(3, path, 100, 100, Duration::ZERO, Reopen::Never).finish();

    let agent = Agent::start(&agent_dir, &config);
    let written = BTreeMap::from([(1, first), (2, second), (3, third)]);
    let r = wait_delivered(&c, "eo", &written, &agent);
    eprintln!("{r}");
    assert_eq!((r.lost, r.duplicated, r.altered, r.out_of_order), (0, 0, 0, 0), "{r}");
}

/// A file that appears and is renamed out of the glob before any scan can
/// see it (logrotate moving aside a file an application created between
/// logrotate's rename and its `create`) is still read, once: the agent
/// follows the rename event.
#[test]
fn issue_7_file_renamed_away_before_any_scan_saw_it() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/*.log", logs.display());
    let config = agent_config(&c, &glob, "eo").replace("glob_interval = \"100ms\"", "glob_interval = \"1h\"");
    let agent = Agent::start(&tmp.path().join("agent"), &config);
    // The agent is up and watching once it ships this file.
    let first = LineWriter::spawn(1, logs.join("first.log"), 50, 50, Duration::ZERO, Reopen::Never).finish();
    wait_delivered(&c, "eo", &BTreeMap::from([(1, first)]), &agent);

    let mut text = String::new();
    for seq in 0..3 {
        text.push_str(&logpost_e2e::lines::line(2, seq));
        text.push('\n');
    }
    let quick = logs.join("quick.log");
    std::fs::write(&quick, &text).unwrap();
    std::fs::rename(&quick, logs.join("quick.log-20261125.backup")).unwrap();

    let r = wait_delivered(&c, "eo", &BTreeMap::from([(1, first), (2, 3)]), &agent);
    assert_eq!((r.lost, r.duplicated, r.altered, r.out_of_order), (0, 0, 0, 0), "{r}");
}
