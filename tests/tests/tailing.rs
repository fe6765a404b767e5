//! Issue 4: tailing that operators can trust. Real processes, real files,
//! the real `logrotate`; each test counts: no line lost, none altered,
//! order per file kept (duplicates after a crash are issue 7's to remove).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use logpost_e2e::lines::{LineWriter, Reopen, Report, check};
use logpost_e2e::process::{Agent, Collector, agent_config};
use logpost_e2e::{PATIENCE, pace, wait_for};

/// Waits until nothing written is missing; returns the final report. On
/// timeout, fails with the last report (and the agent's log when given).
fn wait_delivered(c: &Collector, topic: &str, written: &BTreeMap<u32, u64>) -> Report {
    wait_delivered_by(c, topic, written, None)
}

fn wait_delivered_by(c: &Collector, topic: &str, written: &BTreeMap<u32, u64>, agent: Option<&Agent>) -> Report {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let r = check(&c.records(topic), written);
        if r.lost == 0 {
            return r;
        }
        if std::time::Instant::now() > deadline {
            let log = agent.map(|a| a.proc.stderr_text()).unwrap_or_default();
            panic!("gave up waiting for delivery: {r}\nagent log:\n{log}");
        }
        pace(Duration::from_millis(50));
    }
}

fn assert_clean(r: &Report, allow_duplicates: bool) {
    eprintln!("{r}");
    assert_eq!(r.lost, 0, "{r}");
    assert_eq!(r.altered, 0, "{r}");
    assert_eq!(r.out_of_order, 0, "{r}");
    if !allow_duplicates {
        assert_eq!(r.duplicated, 0, "{r}");
    }
}

fn logrotate(dir: &Path, stanza: &str) {
    let conf = dir.join("logrotate.conf");
    std::fs::write(&conf, stanza).unwrap();
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(dir.join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate is needed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "logrotate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn setup(tmp: &Path, glob_name: &str) -> (Collector, PathBuf, String) {
    let c = Collector::start(&tmp.join("collector"), "");
    let logs = tmp.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/{glob_name}", logs.display());
    (c, logs, glob)
}

/// Rename-and-create rotation (direct renames and logrotate's `create`)
/// while writers keep writing, with the agent killed in the middle.
#[test]
fn issue_4_create_rotation_under_continuous_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, logs, glob) = setup(tmp.path(), "*.log");
    let mut agent = Agent::start(&tmp.path().join("agent"), &agent_config(&c, &glob, "rot"));
    let wa = LineWriter::spawn(
        1,
        logs.join("a.log"),
        6000,
        50,
        Duration::from_millis(5),
        Reopen::EveryChunk,
    );
    let wb = LineWriter::spawn(
        2,
        logs.join("b.log"),
        6000,
        50,
        Duration::from_millis(5),
        Reopen::EveryChunk,
    );
    for round in 0..4 {
        wait_for("writers to make progress", PATIENCE, || {
            (wa.written() > (round + 1) * 1000).then_some(())
        });
        // a.log by hand, b.log by logrotate; the rotated names do not match the glob.
        std::fs::rename(logs.join("a.log"), logs.join(format!("a.log.{round}"))).unwrap();
        logrotate(
            &logs,
            &format!("{}/b.log {{\n  rotate 10\n  create\n  missingok\n}}\n", logs.display()),
        );
        if round == 1 {
            agent.kill9_and_restart();
        }
    }
    let written = BTreeMap::from([(1, wa.finish()), (2, wb.finish())]);
    let r = wait_delivered_by(&c, "rot", &written, Some(&agent));
    assert_clean(&r, true);
}

/// copytruncate (logrotate's, whose copy-then-truncate race loses lines
/// written in between, so the writer pauses while it runs) and a
/// copy-and-truncate by hand whose copy matches the glob: the copy is
/// recognised and not shipped again.
#[test]
fn issue_4_copytruncate_under_continuous_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, logs, glob) = setup(tmp.path(), "*.log");
    let agent = Agent::start(&tmp.path().join("agent"), &agent_config(&c, &glob, "ct"));
    let w = LineWriter::spawn(1, logs.join("c.log"), 5000, 20, Duration::from_millis(5), Reopen::Never);
    for round in 0..3u64 {
        wait_for("the writer to make progress", PATIENCE, || {
            (w.written() > (round + 1) * 1000).then_some(())
        });
        w.paused(|| {
            logrotate(
                &logs,
                &format!(
                    "{}/c.log {{\n  rotate 10\n  copytruncate\n  missingok\n}}\n",
                    logs.display()
                ),
            )
        });
    }
    wait_for("the writer to make progress", PATIENCE, || {
        (w.written() > 4000).then_some(())
    });
    // By hand, with a copy that the glob matches.
    w.paused(|| {
        // The agent must have read the file before the copy appears for the
        // copy to be recognised: wait until it has caught up.
        let n = w.written();
        wait_for("the agent to catch up", PATIENCE, || {
            (check(&c.records("ct"), &BTreeMap::from([(1, n)])).lost == 0).then_some(())
        });
        std::fs::copy(logs.join("c.log"), logs.join("c-copy.log")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(logs.join("c.log"))
            .unwrap()
            .set_len(0)
            .unwrap();
    });
    let written = BTreeMap::from([(1, w.finish())]);
    let r = wait_delivered(&c, "ct", &written);
    if r.duplicated > 0 {
        eprintln!("agent log:\n{}", agent.proc.stderr_text());
    }
    assert_clean(&r, false);
}

/// A file deleted while the agent still has it open is read to its end;
/// the collector being down meanwhile holds the agent back (the file is
/// the buffer), and an agent SIGKILL in the middle loses nothing.
#[test]
fn issue_4_delete_while_open_and_collector_down() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, logs, glob) = setup(tmp.path(), "*.log");
    let mut agent = Agent::start(&tmp.path().join("agent"), &agent_config(&c, &glob, "del"));
    let w = LineWriter::spawn(
        1,
        logs.join("d.log"),
        3000,
        100,
        Duration::from_millis(2),
        Reopen::Never,
    );
    wait_for("some lines to arrive", PATIENCE, || {
        (c.records("del").len() > 500).then_some(())
    });
    c.kill9();
    let n = w.finish();
    // The collector is down: the agent cannot have shipped everything.
    std::fs::remove_file(logs.join("d.log")).unwrap();
    pace(Duration::from_millis(500));
    assert!(agent.proc.is_running(), "agent died while the collector was down");
    c.restart();
    let r = wait_delivered(&c, "del", &BTreeMap::from([(1, n)]));
    assert_clean(&r, false);

    // Collector down while a writer goes on, with an agent SIGKILL too.
    let w2 = LineWriter::spawn(2, logs.join("e.log"), 4000, 50, Duration::from_millis(3), Reopen::Never);
    wait_for("writer 2 to start", PATIENCE, || (w2.written() > 1000).then_some(()));
    c.kill9();
    pace(Duration::from_millis(300));
    agent.kill9_and_restart();
    pace(Duration::from_millis(300));
    c.restart();
    let written = BTreeMap::from([(1, n), (2, w2.finish())]);
    let r = wait_delivered(&c, "del", &written);
    assert_clean(&r, true);
}

/// A new file that reuses a deleted file's inode is read from its start,
/// even when it is longer than the old file's checkpoint.
#[test]
fn issue_4_inode_reuse_reads_new_file_from_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, logs, glob) = setup(tmp.path(), "*.log");
    let mut agent = Agent::start(&tmp.path().join("agent"), &agent_config(&c, &glob, "ino"));
    let path = logs.join("r.log");
    let old = LineWriter::spawn(1, path.clone(), 100, 100, Duration::ZERO, Reopen::Never).finish();
    wait_delivered(&c, "ino", &BTreeMap::from([(1, old)]));
    assert_eq!(agent.proc.terminate(), Some(0), "clean stop writes the checkpoint");
    let old_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    // Recreate until the file system hands out the same inode (it usually
    // does at once); the check below holds either way.
    let mut reused = false;
    for _ in 0..50 {
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        if std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()) == old_ino {
            reused = true;
            break;
        }
    }
    eprintln!("inode reused: {reused}");
    let new = LineWriter::spawn(2, path, 400, 400, Duration::ZERO, Reopen::Never).finish();
    let agent = Agent::start(&tmp.path().join("agent"), &agent_config(&c, &glob, "ino"));
    let r = wait_delivered(&c, "ino", &BTreeMap::from([(1, old), (2, new)]));
    assert_clean(&r, false);
    if reused {
        assert!(agent.proc.stderr_text().contains("inode reused"), "reuse not reported");
    }
}

/// 10,000 files: all delivered, with open handles capped and no thread per
/// file; idle files whose handles were closed are read again when they grow.
#[test]
fn issue_4_ten_thousand_files() {
    let _heavy = logpost_e2e::heavy();
    let tmp = tempfile::tempdir().unwrap();
    let (c, logs, glob) = setup(tmp.path(), "*.log");
    const FILES: u32 = 10_000;
    for i in 0..FILES {
        std::fs::write(
            logs.join(format!("f{i:05}.log")),
            format!("{}\n", logpost_e2e::lines::line(i, 0)),
        )
        .unwrap();
    }
    let config =
        agent_config(&c, &glob, "many").replace("[tail]", "[tail]\nmax_open_files = 256\nclose_idle_after = \"1s\"\n");
    let agent = Agent::start(&tmp.path().join("agent"), &config);
    let pid = agent.pid();
    // The cap holds while all 10,000 are new: the most descriptors seen
    // while they are shipped (the cap plus the agent's own sockets, pipes
    // and inotify).
    let shipping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let shipping = std::sync::Arc::clone(&shipping);
        std::thread::spawn(move || {
            let mut most = 0;
            while shipping.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                    most = most.max(dir.count());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            most
        })
    };
    let written: BTreeMap<u32, u64> = (0..FILES).map(|i| (i, 1)).collect();
    let r = wait_delivered(&c, "many", &written);
    shipping.store(false, std::sync::atomic::Ordering::Relaxed);
    let most_fds = sampler.join().unwrap();
    assert_clean(&r, false);
    eprintln!("most descriptors while shipping {most_fds}");
    assert!(
        most_fds <= 256 + 40,
        "{most_fds} descriptors open with max_open_files = 256"
    );
    let fds = wait_for("idle handles to be closed", PATIENCE, || {
        let n = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
        (n < 300).then_some(n)
    });
    let threads: usize = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().unwrap()))
        .unwrap();
    eprintln!("open descriptors {fds}, threads {threads}");
    assert!(threads < 32, "{threads} threads for {FILES} files");
    // Files whose handles were closed are reopened when they grow.
    let mut written = written;
    for i in (0..FILES).step_by(97) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(logs.join(format!("f{i:05}.log")))
            .unwrap();
        std::io::Write::write_all(&mut f, format!("{}\n", logpost_e2e::lines::line(i, 1)).as_bytes()).unwrap();
        written.insert(i, 2);
    }
    let r = wait_delivered(&c, "many", &written);
    assert_clean(&r, false);
}
