//! Issue 7: exactly once in the crash sequences the torture test found,
//! each replayed deterministically.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use logpost_e2e::lines::{LineWriter, Reopen, Report, check};
use logpost_e2e::process::{Agent, Collector, agent_config};
use logpost_e2e::{PATIENCE, pace, wait_for};

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

/// The agent's checkpoint entry for inode `ino`, if it has one.
fn checkpoint_entry(agent_dir: &Path, ino: u64) -> Option<serde_json::Value> {
    let bytes = std::fs::read(agent_dir.join("data/checkpoints.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["files"]
        .as_array()?
        .iter()
        .find(|f| f["key"]["ino"].as_u64() == Some(ino))
        .cloned()
}

/// A file created while the collector is down cannot be read (the agent
/// has not been told where it resumes); it sits in the checkpoint unread,
/// held back as a possible copy since it was empty when found. Written,
/// rotated away and compressed (logrotate `create` + `compress`), then
/// the agent killed: the restarted agent must find that content in the
/// `.gz` and read it, once. The 300 s torture lost a whole compressed
/// file this way: the checkpoint kept the empty head the file had when
/// found, and the held entry was taken for a copy whose lines come
/// through its original, of which there was none.
#[test]
fn issue_27_file_created_while_the_collector_was_down_then_compressed_before_a_crash() {
    for glob_name in ["*.log", "app.log*"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = Collector::start(&tmp.path().join("collector"), "");
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let glob = format!("{}/{glob_name}", logs.display());
        let config = agent_config(&c, &glob, "eo");
        let path = logs.join("app.log");
        let agent_dir = tmp.path().join("agent");
        let mut agent = Agent::start(&agent_dir, &config);
        let first = LineWriter::spawn(1, path.clone(), 300, 300, Duration::ZERO, Reopen::Never).finish();
        wait_delivered(&c, "eo", &BTreeMap::from([(1, first)]), &agent);
        c.kill9();

        // Rotated (`create`): the new file is empty when the agent finds it.
        std::fs::rename(&path, logs.join("app.log.1")).unwrap();
        std::fs::File::create(&path).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        wait_for("the agent to checkpoint the new file", PATIENCE, || {
            checkpoint_entry(&agent_dir, ino).map(|_| ())
        });
        let second = LineWriter::spawn(2, path.clone(), 400, 400, Duration::ZERO, Reopen::Never).finish();
        // Last written well before the agent's next checkpoint, so that
        // the restart cannot take its `.gz` for a file written while it
        // was down: it must know the content from the checkpoint.
        let earlier = SystemTime::now() - Duration::from_secs(5);
        std::fs::File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(earlier)
            .unwrap();

        // Rotated again and compressed (gzip deletes the plain file).
        std::fs::rename(logs.join("app.log.1"), logs.join("app.log.2")).unwrap();
        std::fs::rename(&path, logs.join("app.log.1")).unwrap();
        let status = std::process::Command::new("gzip")
            .arg(logs.join("app.log.1"))
            .status()
            .unwrap();
        assert!(status.success());
        // logrotate `create`: a new file, which the next checkpoint lists
        // beside the unread content.
        std::fs::File::create(&path).unwrap();
        let next = std::fs::metadata(&path).unwrap().ino();
        wait_for("the agent to checkpoint the next new file", PATIENCE, || {
            checkpoint_entry(&agent_dir, next).map(|_| ())
        });
        agent.proc.kill9();

        c.restart();
        let third = LineWriter::spawn(3, path.clone(), 100, 100, Duration::ZERO, Reopen::Never).finish();
        let agent = Agent::start(&agent_dir, &config);
        let written = BTreeMap::from([(1, first), (2, second), (3, third)]);
        let r = wait_delivered(&c, "eo", &written, &agent);
        eprintln!("{glob_name}: {r}");
        assert_eq!(
            (r.lost, r.duplicated, r.altered, r.out_of_order),
            (0, 0, 0, 0),
            "{glob_name}: {r}"
        );
    }
}
