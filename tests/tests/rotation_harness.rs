//! Issue 27: exactly once whatever the rotation, in the cases held-out
//! harness runs broke: a file truncated and regrown faster than the agent
//! looks, copies of truncated content that the glob also matches, files
//! rotated away (and compressed) while the agent was down, a writer that
//! reopens on SIGHUP, and an agent switched to another collector by a
//! reload. Each test counts lines: none lost, none duplicated, none
//! altered.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use logpost_e2e::lines::{LineWriter, Reopen, Report, check};
use logpost_e2e::process::{Agent, Collector, agent_config};
use logpost_e2e::{PATIENCE, wait_for};

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The agent's checkpoint entries: (path, acknowledged position).
fn checkpoint_positions(agent_dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(bytes) = std::fs::read(agent_dir.join("data/checkpoints.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    v["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| {
                    (
                        PathBuf::from(f["path"].as_str().unwrap_or_default()),
                        f["pos"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the agent has acknowledged every byte of every file it
/// tracks in `dir` whose name starts with `prefix` (each checkpoint entry
/// at its file's full size), twice in a row a glob interval apart, so that
/// files just found are in the checkpoint too. Nothing is left to read,
/// held back or in flight then, so what the topic holds is final. (Files
/// finished and forgotten have no entry; a file held back as a possible
/// copy has one, short of its size.)
fn wait_settled(agent: &Agent, agent_dir: &Path, dir: &Path, prefix: &str) {
    let settled = || {
        let positions = checkpoint_positions(agent_dir);
        positions.iter().all(|(path, pos)| {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            // A gzip file's position is in what it inflates to: its lines
            // are counted by the caller, not its size here.
            if path.parent() != Some(dir) || !name.starts_with(prefix) || name.ends_with(".gz") {
                return true;
            }
            std::fs::metadata(path).map_or(true, |m| m.len() == *pos)
        })
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if settled() {
            logpost_e2e::pace(Duration::from_millis(300));
            if settled() {
                return;
            }
        }
        if std::time::Instant::now() > deadline {
            let sizes: Vec<(PathBuf, u64, Option<u64>)> = checkpoint_positions(agent_dir)
                .into_iter()
                .map(|(p, pos)| {
                    let size = std::fs::metadata(&p).ok().map(|m| m.len());
                    (p, pos, size)
                })
                .collect();
            panic!(
                "the agent did not acknowledge every file to its end: (path, checkpoint, size) {sizes:?}\nagent log:\n{}",
                agent.proc.stderr_text()
            );
        }
        logpost_e2e::pace(Duration::from_millis(50));
    }
}

/// Lines of `topic` as text, each with how many times it arrived.
fn counts(c: &Collector, topic: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in c.lines(topic) {
        *out.entry(String::from_utf8_lossy(&l).into_owned()).or_default() += 1;
    }
    out
}

/// Vector's harness "truncate" case: a file holding one line is copied
/// (the glob matches the copy too), truncated and rewritten with a longer
/// line at once, before the agent looks; later a line is appended to the
/// copy. Exactly the three lines must arrive: not the copy's first line
/// again, and never the tail of the new line read from the old position.
#[test]
fn issue_27_truncate_and_regrow_faster_than_the_agent_looks() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/t*", logs.display());
    let agent_dir = tmp.path().join("agent");
    let agent = Agent::start(&agent_dir, &agent_config(&c, &glob, "harness"));
    let rounds = 4;
    let mut expected = BTreeMap::new();
    for r in 0..rounds {
        let f = logs.join(format!("t{r}"));
        let copy = logs.join(format!("t{r}.0"));
        let first = format!("First line {r}");
        append(&f, &format!("{first}\n"));
        wait_for("the first line", PATIENCE, || {
            counts(&c, "harness").contains_key(&first).then_some(())
        });
        std::fs::copy(&f, &copy).unwrap();
        // Truncate and write at once: O_TRUNC and one write(2).
        std::fs::write(&f, format!("New file line {r}\n")).unwrap();
        let new = format!("New file line {r}");
        wait_for("the new file's line", PATIENCE, || {
            counts(&c, "harness").contains_key(&new).then_some(())
        });
        append(&copy, &format!("Last line {r}\n"));
        expected.insert(first, 1);
        expected.insert(new, 1);
        expected.insert(format!("Last line {r}"), 1);
    }
    wait_for("every last line", PATIENCE, || {
        let got = counts(&c, "harness");
        expected.keys().all(|l| got.contains_key(l)).then_some(())
    });
    wait_settled(&agent, &agent_dir, &logs, "t");
    let got = counts(&c, "harness");
    assert_eq!(got, expected, "agent log:\n{}", agent.proc.stderr_text());
}

/// Vector's harness "create" case: files created while the agent runs,
/// one of them deleted and created again under the same name (the inode
/// is usually reused) with other content of the same length, at once:
/// every line arrives exactly once.
#[test]
fn issue_27_files_created_and_recreated_under_one_name() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/c*", logs.display());
    let agent_dir = tmp.path().join("agent");
    let agent = Agent::start(&agent_dir, &agent_config(&c, &glob, "create"));
    let mut expected = BTreeMap::new();
    for r in 0..4 {
        let f = logs.join(format!("c{r}"));
        let first = format!("First line {r}");
        append(&f, &format!("{first}\n"));
        wait_for("the first line", PATIENCE, || {
            counts(&c, "create").contains_key(&first).then_some(())
        });
        std::fs::remove_file(&f).unwrap();
        let other = format!("Other line {r}");
        std::fs::write(&f, format!("{other}\n")).unwrap();
        expected.insert(first, 1);
        expected.insert(other, 1);
    }
    wait_for("every line", PATIENCE, || {
        let got = counts(&c, "create");
        expected.keys().all(|l| got.contains_key(l)).then_some(())
    });
    wait_settled(&agent, &agent_dir, &logs, "c");
    assert_eq!(
        counts(&c, "create"),
        expected,
        "agent log:\n{}",
        agent.proc.stderr_text()
    );
}

/// Waits until nothing written is missing, then until the agent has
/// acknowledged every file in `dir` to its end; the final report.
fn delivered(c: &Collector, topic: &str, written: &BTreeMap<u32, u64>, agent: &Agent, dirs: (&Path, &Path)) -> Report {
    let (agent_dir, logs) = dirs;
    arrived(c, topic, written, agent);
    wait_settled(agent, agent_dir, logs, "app");
    check(&c.records(topic), written)
}

fn assert_exact(r: &Report, agent: &Agent) {
    eprintln!("{r}");
    assert_eq!(
        (r.lost, r.duplicated, r.altered, r.out_of_order),
        (0, 0, 0, 0),
        "{r}\nagent log:\n{}",
        agent.proc.stderr_text()
    );
}

/// copytruncate while the agent is down, with a glob that matches the
/// copies (`app.log*`, as Vector's and Filebeat's guides suggest): the
/// restarted agent must see that the copy holds content it already
/// shipped, whichever file it finds first, and read only the rest.
#[test]
fn issue_27_copytruncate_while_down_with_a_glob_matching_the_copies() {
    for checkpoint_interval in ["100ms", "1h"] {
        let tmp = tempfile::tempdir().unwrap();
        let c = Collector::start(&tmp.path().join("collector"), "");
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let glob = format!("{}/app.log*", logs.display());
        // "1h": the agent's checkpoint lags behind what the collector
        // holds, so the collector's cursor has to tell where the copy is.
        let config = agent_config(&c, &glob, "ct").replace(
            "checkpoint_interval = \"100ms\"",
            &format!("checkpoint_interval = \"{checkpoint_interval}\""),
        );
        let agent_dir = tmp.path().join("agent");
        let path = logs.join("app.log");
        let lagging = checkpoint_interval == "1h";
        let mut agent = Agent::start(&agent_dir, &config);
        let first = LineWriter::spawn(1, path.clone(), 400, 400, Duration::ZERO, Reopen::Never).finish();
        let mut written = BTreeMap::from([(1, first)]);
        if lagging {
            arrived(&c, "ct", &written, &agent);
        } else {
            let _ = delivered(&c, "ct", &written, &agent, (&agent_dir, &logs));
        }
        agent.proc.kill9();

        // While the agent is down: more lines, then copytruncate (the copy
        // holds lines the agent shipped and lines it never saw), then more.
        let second = LineWriter::spawn(2, path.clone(), 300, 300, Duration::ZERO, Reopen::Never).finish();
        std::fs::copy(&path, logs.join("app.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let third = LineWriter::spawn(3, path.clone(), 200, 200, Duration::ZERO, Reopen::Never).finish();
        written.insert(2, second);
        written.insert(3, third);

        let mut agent = Agent::start(&agent_dir, &config);
        let r = if lagging {
            // Its checkpoint is written at start and at the end only: the
            // agent is stopped, and then must have read every file to its
            // end (nothing held back that could still be read twice).
            arrived(&c, "ct", &written, &agent);
            assert_eq!(agent.proc.terminate(), Some(0), "{}", agent.proc.stderr_text());
            let unread: Vec<_> = checkpoint_positions(&agent_dir)
                .into_iter()
                .filter(|(p, pos)| std::fs::metadata(p).is_ok_and(|m| m.len() != *pos))
                .collect();
            assert!(
                unread.is_empty(),
                "not read to the end: {unread:?}\n{}",
                agent.proc.stderr_text()
            );
            check(&c.records("ct"), &written)
        } else {
            delivered(&c, "ct", &written, &agent, (&agent_dir, &logs))
        };
        assert_exact(&r, &agent);
    }
}

/// Waits until nothing written is missing.
fn arrived(c: &Collector, topic: &str, written: &BTreeMap<u32, u64>, agent: &Agent) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let r = check(&c.records(topic), written);
        if r.lost == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for delivery: {r}\nagent log:\n{}",
            agent.proc.stderr_text()
        );
        logpost_e2e::pace(Duration::from_millis(50));
    }
}

/// A copy made while the agent is down, of a file not yet truncated when
/// the agent comes back (logrotate copies, then truncates): the copy is
/// held back as a copy of a tracked file, not read from its start.
#[test]
fn issue_27_copy_found_at_restart_before_its_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/app.log*", logs.display());
    let config = agent_config(&c, &glob, "cr");
    let agent_dir = tmp.path().join("agent");
    let path = logs.join("app.log");
    let mut agent = Agent::start(&agent_dir, &config);
    let first = LineWriter::spawn(1, path.clone(), 400, 400, Duration::ZERO, Reopen::Never).finish();
    let mut written = BTreeMap::from([(1, first)]);
    let _ = delivered(&c, "cr", &written, &agent, (&agent_dir, &logs));
    agent.proc.kill9();
    let second = LineWriter::spawn(2, path.clone(), 300, 300, Duration::ZERO, Reopen::Never).finish();
    written.insert(2, second);
    std::fs::copy(&path, logs.join("app.log.1")).unwrap();

    let agent = Agent::start(&agent_dir, &config);
    // The truncation comes once the agent is back (and may have read on).
    wait_for("the agent to track both files", PATIENCE, || {
        (checkpoint_positions(&agent_dir).len() >= 2).then_some(())
    });
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let third = LineWriter::spawn(3, path.clone(), 200, 200, Duration::ZERO, Reopen::Never).finish();
    written.insert(3, third);
    let r = delivered(&c, "cr", &written, &agent, (&agent_dir, &logs));
    assert_exact(&r, &agent);
}

/// Two rotations (`create`) while the agent is down, with a glob that does
/// not match rotated names (`*.log`): the file the agent was reading is
/// found again by inode, and the file created and rotated away entirely
/// while the agent was down is found among the rotated siblings and read
/// from its start.
#[test]
fn issue_27_files_rotated_away_while_down_with_a_glob_not_matching_them() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/*.log", logs.display());
    let config = agent_config(&c, &glob, "rot");
    let agent_dir = tmp.path().join("agent");
    let path = logs.join("app.log");
    let mut agent = Agent::start(&agent_dir, &config);
    let first = LineWriter::spawn(1, path.clone(), 300, 300, Duration::ZERO, Reopen::Never).finish();
    let mut written = BTreeMap::from([(1, first)]);
    let _ = delivered(&c, "rot", &written, &agent, (&agent_dir, &logs));
    agent.proc.kill9();

    let rotate = |n: u32| {
        for i in (1..n).rev() {
            let from = logs.join(format!("app.log.{i}"));
            if from.exists() {
                std::fs::rename(&from, logs.join(format!("app.log.{}", i + 1))).unwrap();
            }
        }
        std::fs::rename(&path, logs.join("app.log.1")).unwrap();
    };
    let second = LineWriter::spawn(2, path.clone(), 200, 200, Duration::ZERO, Reopen::Never).finish();
    rotate(3);
    let third = LineWriter::spawn(3, path.clone(), 250, 250, Duration::ZERO, Reopen::Never).finish();
    rotate(3);
    let fourth = LineWriter::spawn(4, path.clone(), 150, 150, Duration::ZERO, Reopen::Never).finish();
    written.extend([(2, second), (3, third), (4, fourth)]);

    let agent = Agent::start(&agent_dir, &config);
    let r = delivered(&c, "rot", &written, &agent, (&agent_dir, &logs));
    assert_exact(&r, &agent);
}

/// Rotation with `compress` and no `delaycompress` while the agent is
/// down: the rotated file exists only gzipped when the agent comes back;
/// its unread lines are read from the `.gz`, and nothing of it is read
/// twice, whether or not the glob matches `.gz` files.
#[test]
fn issue_27_rotated_and_compressed_while_down() {
    for glob_name in ["*.log", "app.log*"] {
        let tmp = tempfile::tempdir().unwrap();
        let c = Collector::start(&tmp.path().join("collector"), "");
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let glob = format!("{}/{glob_name}", logs.display());
        let config = agent_config(&c, &glob, "gz");
        let agent_dir = tmp.path().join("agent");
        let path = logs.join("app.log");
        let mut agent = Agent::start(&agent_dir, &config);
        let first = LineWriter::spawn(1, path.clone(), 300, 300, Duration::ZERO, Reopen::Never).finish();
        let mut written = BTreeMap::from([(1, first)]);
        let _ = delivered(&c, "gz", &written, &agent, (&agent_dir, &logs));
        agent.proc.kill9();

        let second = LineWriter::spawn(2, path.clone(), 400, 400, Duration::ZERO, Reopen::Never).finish();
        let rotated = logs.join("app.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        let status = std::process::Command::new("gzip").arg(&rotated).status().unwrap();
        assert!(status.success());
        let third = LineWriter::spawn(3, path.clone(), 100, 100, Duration::ZERO, Reopen::Never).finish();
        written.extend([(2, second), (3, third)]);

        let agent = Agent::start(&agent_dir, &config);
        let r = delivered(&c, "gz", &written, &agent, (&agent_dir, &logs));
        assert_exact(&r, &agent);
    }
}

/// A writer that reopens its file on SIGHUP (rsyslog, nginx), rotated by
/// logrotate `create` with a `postrotate` that signals it: the lines it
/// writes to the renamed file until the signal arrives are delivered too.
#[test]
fn issue_27_writer_reopening_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/*.log", logs.display());
    let agent_dir = tmp.path().join("agent");
    let agent = Agent::start(&agent_dir, &agent_config(&c, &glob, "hup"));
    let path = logs.join("app.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/writer.py");
    let total = 20_000u64;
    let mut writer = std::process::Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg("1")
        .arg(total.to_string())
        .arg("4000")
        .arg("--reopen-on-hup")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = writer.id();
    let conf = logs.join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  rotate 50\n  create\n  postrotate\n    kill -HUP {pid}\n  endscript\n}}\n",
            path.display()
        ),
    )
    .unwrap();
    let mut rotations = 0;
    while writer.try_wait().unwrap().is_none() && rotations < 8 {
        wait_for("the writer to write a little more", PATIENCE, || {
            (std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 20_000).then_some(())
        });
        let out = std::process::Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(logs.join("logrotate.state"))
            .arg(&conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        rotations += 1;
    }
    let out = writer.wait_with_output().unwrap();
    assert!(out.status.success());
    let n: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(n, total);
    let written = BTreeMap::from([(1, n)]);
    let r = delivered(&c, "hup", &written, &agent, (&agent_dir, &logs));
    assert!(rotations >= 3, "only {rotations} rotations");
    assert_exact(&r, &agent);
}

/// The agent reloaded (SIGHUP) with a config naming a second collector:
/// every line is in exactly one of the two collectors, none lost, none in
/// both.
#[test]
fn issue_27_reload_to_a_second_collector() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Collector::start(&tmp.path().join("c1"), "");
    let second = Collector::start(&tmp.path().join("c2"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/*.log", logs.display());
    let agent_dir = tmp.path().join("agent");
    let agent = Agent::start(&agent_dir, &agent_config(&first, &glob, "sw"));
    let writer = LineWriter::spawn(
        1,
        logs.join("app.log"),
        6_000,
        100,
        Duration::from_millis(20),
        Reopen::Never,
    );
    wait_for("the first collector to get lines", PATIENCE, || {
        (first.lines("sw").len() > 500).then_some(())
    });
    agent.rewrite_config(&agent_config(&second, &glob, "sw"));
    agent.proc.signal(libc::SIGHUP);
    let n = writer.finish();
    let written = BTreeMap::from([(1, n)]);
    let deadline = std::time::Instant::now() + PATIENCE;
    let report = loop {
        let mut all = first.records("sw");
        all.extend(second.records("sw"));
        let r = check(&all, &written);
        if r.lost == 0 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{r}\n{}",
            agent.proc.stderr_text()
        );
        logpost_e2e::pace(Duration::from_millis(50));
    };
    eprintln!("{report}");
    wait_settled(&agent, &agent_dir, &logs, "app");
    let mut all = first.records("sw");
    all.extend(second.records("sw"));
    let report = check(&all, &written);
    assert!(!second.lines("sw").is_empty(), "nothing went to the second collector");
    assert_exact(&report, &agent);
}

/// A collector that refuses the agent's batches by policy (the topic does
/// not exist and is not created on first write): the agent drops nothing.
/// Its lines wait in their file, `validate` says what is refused and why,
/// and once the operator creates the topic every line arrives, once.
#[test]
fn issue_27_refused_batches_wait_in_their_files_never_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "[storage]\nauto_create_topics = false\n");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/*.log", logs.display());
    let agent_dir = tmp.path().join("agent");
    let agent = Agent::start(&agent_dir, &agent_config(&c, &glob, "later"));
    let n = LineWriter::spawn(1, logs.join("app.log"), 3_000, 3_000, Duration::ZERO, Reopen::Never).finish();
    let refused = wait_for("validate to report the refusal", PATIENCE, || {
        let out = std::process::Command::new(logpost_e2e::process::bin("logpost-agent"))
            .arg("validate")
            .arg("--config")
            .arg(&agent.config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("REFUSED").then_some(text)
    });
    assert!(refused.contains("topic \"later\""), "{refused}");
    assert!(refused.contains("404"), "{refused}");
    assert!(refused.contains("does not exist on"), "{refused}");
    let log = agent.proc.stderr_text();
    assert!(!log.contains("dropped"), "{log}");
    assert!(c.lines("later").is_empty());

    let out = c.logpost(&["topics", "create", "later", "--partitions", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = BTreeMap::from([(1, n)]);
    let r = delivered(&c, "later", &written, &agent, (&agent_dir, &logs));
    assert_exact(&r, &agent);
    wait_for("the refusal to be cleared", PATIENCE, || {
        (!agent_dir.join("data/refused.json").exists()).then_some(())
    });
}

/// copytruncate seen live while the collector hangs (SIGSTOP), then the
/// agent killed before anything of the old content's tail was stored: the
/// restarted agent must read that tail from the copy (the glob matches it
/// too), once, though the original's stream goes on with new content.
#[test]
fn issue_27_copytruncate_seen_live_then_killed_before_the_tail_was_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/app.log*", logs.display());
    let config = agent_config(&c, &glob, "live")
        .replace("checkpoint_interval = \"100ms\"", "checkpoint_interval = \"1s\"")
        .replace("[tail]", "[metrics]\nlisten = \"127.0.0.1:0\"\n[tail]");
    let agent_dir = tmp.path().join("agent");
    let path = logs.join("app.log");
    let mut agent = Agent::start(&agent_dir, &config);
    let metrics = agent.metrics_addr();
    let first = LineWriter::spawn(1, path.clone(), 400, 400, Duration::ZERO, Reopen::Never).finish();
    let mut written = BTreeMap::from([(1, first)]);
    arrived(&c, "live", &written, &agent);

    // The collector hangs: what the agent reads now stays in flight.
    c.proc.signal(libc::SIGSTOP);
    let second = LineWriter::spawn(2, path.clone(), 300, 300, Duration::ZERO, Reopen::Never).finish();
    let size = std::fs::metadata(&path).unwrap().len();
    let client = logpost_e2e::http();
    wait_for("the agent to read the new lines", PATIENCE, || {
        // Read, not stored: its checkpoint lags behind the hung collector.
        let read = agent.metric_sum(&client, &metrics, "logpost_agent_bytes_read_total")?;
        (read >= size as f64).then_some(())
    });
    std::fs::copy(&path, logs.join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let third = LineWriter::spawn(3, path.clone(), 200, 200, Duration::ZERO, Reopen::Never).finish();
    wait_for("the agent to see the truncation", PATIENCE, || {
        agent.proc.stderr_text().contains("file truncated").then_some(())
    });
    agent.proc.kill9();
    c.proc.signal(libc::SIGCONT);
    written.insert(2, second);
    written.insert(3, third);

    let agent = Agent::start(&agent_dir, &config);
    let r = delivered(&c, "live", &written, &agent, (&agent_dir, &logs));
    assert_exact(&r, &agent);
}

/// Compresses `plain` to `<plain>.gz` and removes it, as logrotate's
/// `compress` does (gzip keeps the file's modification time).
fn gzip(plain: &Path) {
    let status = std::process::Command::new("gzip").arg(plain).status().unwrap();
    assert!(status.success(), "gzip {}", plain.display());
}

/// copytruncate while the agent is down (glob `app.log*`), the copy read
/// by the restarted agent, then, while the agent is down again, the copy
/// compressed (`app.log.1` replaced by `app.log.1.gz`) and the original
/// appended to: the `.gz` holds content the agent shipped from the plain
/// copy, and nothing of it may arrive again, nor be skipped. With a
/// checkpoint written every 100 ms the plain copy's entry is at its end;
/// with one written only at start ("1h") it is where the copy started,
/// behind what the collector holds.
#[test]
fn issue_27_copy_compressed_while_down_after_it_was_read() {
    for checkpoint_interval in ["100ms", "1h"] {
        let tmp = tempfile::tempdir().unwrap();
        let c = Collector::start(&tmp.path().join("collector"), "");
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let glob = format!("{}/app.log*", logs.display());
        let config = agent_config(&c, &glob, "cz").replace(
            "checkpoint_interval = \"100ms\"",
            &format!("checkpoint_interval = \"{checkpoint_interval}\""),
        );
        let agent_dir = tmp.path().join("agent");
        let path = logs.join("app.log");
        let copy = logs.join("app.log.1");
        let mut agent = Agent::start(&agent_dir, &config);
        let first = LineWriter::spawn(1, path.clone(), 400, 400, Duration::ZERO, Reopen::Never).finish();
        let mut written = BTreeMap::from([(1, first)]);
        arrived(&c, "cz", &written, &agent);
        agent.proc.kill9();

        // Down: lines the agent never saw, then copytruncate.
        let second = LineWriter::spawn(2, path.clone(), 300, 300, Duration::ZERO, Reopen::Never).finish();
        std::fs::copy(&path, &copy).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let third = LineWriter::spawn(3, path.clone(), 200, 200, Duration::ZERO, Reopen::Never).finish();
        written.extend([(2, second), (3, third)]);

        // Up: the copy is read past what was read of the original.
        let mut agent = Agent::start(&agent_dir, &config);
        arrived(&c, "cz", &written, &agent);
        if checkpoint_interval == "100ms" {
            wait_settled(&agent, &agent_dir, &logs, "app");
            let positions = checkpoint_positions(&agent_dir);
            assert!(
                positions.iter().any(|(p, _)| p == &copy),
                "the copy has no checkpoint entry: {positions:?}"
            );
        }
        let before = check(&c.records("cz"), &written);
        assert_exact(&before, &agent);
        agent.proc.kill9();

        // Down again: the copy compressed, the original appended to.
        gzip(&copy);
        let fourth = LineWriter::spawn(4, path.clone(), 100, 100, Duration::ZERO, Reopen::Never).finish();
        written.insert(4, fourth);

        let mut agent = Agent::start(&agent_dir, &config);
        let r = if checkpoint_interval == "1h" {
            // Its checkpoint is written at start and at the end only: the
            // lines are counted once the agent has stopped.
            arrived(&c, "cz", &written, &agent);
            assert_eq!(agent.proc.terminate(), Some(0), "{}", agent.proc.stderr_text());
            check(&c.records("cz"), &written)
        } else {
            delivered(&c, "cz", &written, &agent, (&agent_dir, &logs))
        };
        assert_exact(&r, &agent);
    }
}

/// Issue 27: a copytruncate copy not yet found when the agent was killed
/// (logrotate was still compressing it: the plain copy gone, the `.gz`
/// not whole), while the original's stream went on with its new content.
/// The restarted agent must still read the copy's unread lines, once:
/// nothing but the checkpoint can tell it that a copy of that content is
/// owed, since the collector's stream has moved on to the new content.
///
/// Known loss: on main the copy's unread 300 lines are lost (resume_copy's
/// "records past checkpoint" rule skips the `.gz`); a fix persisting the
/// tailer's `missing` copies in the checkpoint passed this test but lost
/// lines in `torture::issue_27_every_rotation_loses_nothing_with_a_glob_of_live_files_only`,
/// so it is not in yet (docs/exactly-once.md names the gap).
#[test]
#[ignore = "issue 27: a copy not yet found when the agent was killed is not read after the restart (known loss)"]
fn issue_27_copy_not_found_before_a_crash_is_read_after_it() {
    for glob_name in ["app.log*", "*.log"] {
        let tmp = tempfile::tempdir().unwrap();
        let c = Collector::start(&tmp.path().join("collector"), "");
        let logs = tmp.path().join("logs");
        let stash = tmp.path().join("stash");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&stash).unwrap();
        let glob = format!("{}/{glob_name}", logs.display());
        let config = agent_config(&c, &glob, "owed");
        let agent_dir = tmp.path().join("agent");
        let path = logs.join("app.log");
        let mut agent = Agent::start(&agent_dir, &config);
        let first = LineWriter::spawn(1, path.clone(), 400, 400, Duration::ZERO, Reopen::Never).finish();
        let mut written = BTreeMap::from([(1, first)]);
        let _ = delivered(&c, "owed", &written, &agent, (&agent_dir, &logs));

        // The agent is held while lines it will not read are written and
        // the file is copied (out of its sight: the copy is being
        // compressed) and truncated.
        agent.proc.signal(libc::SIGSTOP);
        let second = LineWriter::spawn(2, path.clone(), 300, 300, Duration::ZERO, Reopen::Never).finish();
        let plain = stash.join("app.log.1");
        std::fs::copy(&path, &plain).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        agent.proc.signal(libc::SIGCONT);
        let deadline = std::time::Instant::now() + PATIENCE;
        while !agent.proc.stderr_text().contains("file truncated") {
            assert!(
                std::time::Instant::now() < deadline,
                "the agent did not see the truncation:\n{}",
                agent.proc.stderr_text()
            );
            logpost_e2e::pace(Duration::from_millis(50));
        }
        // The original's stream goes on with its new content, stored and
        // checkpointed; then the agent dies, the copy still not found.
        let third = LineWriter::spawn(3, path.clone(), 200, 200, Duration::ZERO, Reopen::Never).finish();
        written.extend([(2, second), (3, third)]);
        let mut so_far = written.clone();
        so_far.remove(&2);
        arrived(&c, "owed", &so_far, &agent);
        wait_settled(&agent, &agent_dir, &logs, "app");
        agent.proc.kill9();

        // Down: the compression finishes; the original is appended to.
        gzip(&plain);
        std::fs::rename(stash.join("app.log.1.gz"), logs.join("app.log.1.gz")).unwrap();
        let fourth = LineWriter::spawn(4, path.clone(), 100, 100, Duration::ZERO, Reopen::Never).finish();
        written.insert(4, fourth);

        let agent = Agent::start(&agent_dir, &config);
        let r = delivered(&c, "owed", &written, &agent, (&agent_dir, &logs));
        assert_exact(&r, &agent);
    }
}
