//! Issue 4: bad inputs on the tailing side each get a clear message, and
//! the agent keeps shipping the good files.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use logpost_e2e::lines::{LineWriter, Reopen, check, record_line};
use logpost_e2e::process::{Agent, Collector, agent_config};
use logpost_e2e::{PATIENCE, wait_for};

#[test]
fn issue_4_bad_files_are_reported_and_skipped() {
    let _heavy = logpost_e2e::heavy();
    let tmp = tempfile::tempdir().unwrap();
    // Readable by the unprivileged user the agent runs as (below).
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = Collector::start(&tmp.path().join("collector"), "");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();

    // An unreadable file: as root, the agent runs as `nobody` so that
    // permissions apply.
    let secret = logs.join("secret.log");
    std::fs::write(&secret, "hidden\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    // A directory, a FIFO and a symlink loop matching the glob.
    std::fs::create_dir(logs.join("dir.log")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(logs.join("pipe.log"))
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink(logs.join("loop2.log"), logs.join("loop1.log")).unwrap();
    std::os::unix::fs::symlink(logs.join("loop1.log"), logs.join("loop2.log")).unwrap();
    // A file of NUL bytes and invalid UTF-8, and a 50 MiB line.
    let mut nul = vec![0u8; 100_000];
    nul.extend_from_slice(b"\xff\xfe\n");
    std::fs::write(logs.join("nul.log"), &nul).unwrap();
    let big: Vec<u8> = (0..50u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut big_file = big.clone();
    big_file.push(b'\n');
    std::fs::write(logs.join("big.log"), &big_file).unwrap();
    // A file the agent tails, later replaced by a directory.
    std::fs::write(logs.join("swap.log"), "before\n").unwrap();

    let agent_dir = tmp.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::set_permissions(&agent_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let glob = format!("{}/*.log", logs.display());
    let config = agent_config(&c, &glob, "bad");
    let root = unsafe_free_is_root();
    let agent = if root {
        Agent::start_wrapped(
            &agent_dir,
            &config,
            &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        )
    } else {
        Agent::start(&agent_dir, &config)
    };
    let good = LineWriter::spawn(
        1,
        logs.join("good.log"),
        2000,
        100,
        Duration::from_millis(5),
        Reopen::Never,
    );

    // Replace the tailed file by a directory once it has been read.
    wait_for("swap.log to be read", PATIENCE, || {
        c.records("bad")
            .iter()
            .any(|r| record_line(r) == b"before")
            .then_some(())
    });
    std::fs::remove_file(logs.join("swap.log")).unwrap();
    std::fs::create_dir(logs.join("swap.log")).unwrap();

    let written = BTreeMap::from([(1, good.finish())]);
    let records = wait_for("good lines, the NUL file and the 50 MiB line", PATIENCE, || {
        let records = c.records("bad");
        let good_done = check(
            &records
                .iter()
                .filter(|r| r["headers"]["path"].as_str().is_some_and(|p| p.ends_with("good.log")))
                .cloned()
                .collect::<Vec<_>>(),
            &written,
        )
        .lost
            == 0;
        let big_bytes: usize = records
            .iter()
            .filter(|r| r["headers"]["path"].as_str().is_some_and(|p| p.ends_with("big.log")))
            .map(|r| record_line(r).len())
            .sum();
        (good_done && big_bytes == big.len()).then_some(records)
    });
    let of = |name: &str| -> Vec<&serde_json::Value> {
        records
            .iter()
            .filter(|r| r["headers"]["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .collect()
    };
    // The long line arrives whole, in pieces of at most max_line_bytes, each marked.
    let pieces = of("big.log");
    assert_eq!(pieces.len(), 50);
    assert!(pieces.iter().all(|r| r["headers"]["logpost.split"] == "true"));
    let joined: Vec<u8> = pieces.iter().flat_map(|r| record_line(r)).collect();
    assert!(joined == big, "the 50 MiB line was altered");
    // NUL bytes and invalid UTF-8 pass through byte-exact.
    let nul_records = of("nul.log");
    assert_eq!(nul_records.len(), 1);
    assert_eq!(record_line(nul_records[0]), nul[..nul.len() - 1].to_vec());
    // Nothing from the unreadable file (when permissions apply).
    if root {
        assert!(of("secret.log").is_empty());
    }
    let mut agent = agent;
    for (what, needle) in [
        ("directory", "dir.log"),
        ("FIFO", "pipe.log"),
        ("symlink loop", "loop1.log"),
        ("replaced by a directory", "swap.log"),
    ] {
        // The swap is noticed on a rescan, which may come after the data.
        wait_for(&format!("a message about the {what} ({needle})"), PATIENCE, || {
            assert!(agent.proc.is_running(), "agent stopped:\n{}", agent.proc.stderr_text());
            agent.proc.stderr_text().contains(needle).then_some(())
        });
    }
    if root {
        wait_for("a message about the unreadable file", PATIENCE, || {
            let log = agent.proc.stderr_text();
            (log.contains("secret.log") && log.contains("ermission denied")).then_some(())
        });
        // Made readable (which does not touch its directory): the periodic
        // rescan still retries it, and its line arrives.
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        wait_for("the once unreadable file's line", PATIENCE, || {
            c.records("bad")
                .iter()
                .any(|r| record_line(r) == b"hidden")
                .then_some(())
        });
    }
}

fn unsafe_free_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}
