//! Issue 7: exactly once from file to topic, proven by a crash-and-rotation
//! torture test. Writer processes append numbered lines; the real
//! `logrotate` rotates their files (create, create with compress +
//! delaycompress, copytruncate); the agent and the collector are each
//! killed with SIGKILL at random moments and restarted; at the end the
//! topic holds every line written exactly once, unaltered, in order per
//! writer's file.
//!
//! Short form (CI): ≥ 30 kills, ≥ 100,000 lines. Long form:
//! `scripts/torture 3600` (LOGPOST_TORTURE_SECONDS). With the collector's
//! deduplication switched off (a test-only setting) the same checker must
//! report duplicates, which proves it can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use logpost_e2e::lines::{Checker, Report};
use logpost_e2e::process::{Agent, Collector, agent_config};
use logpost_e2e::{PATIENCE, pace};

/// How a writer's file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    Create,
    CreateCompressed,
    CopyTruncate,
}

struct Writer {
    id: u32,
    path: PathBuf,
    rotation: Rotation,
    child: Child,
}

impl Writer {
    fn spawn(id: u32, path: PathBuf, rotation: Rotation, count: u64, rate: u32) -> Writer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/writer.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(&path)
            .arg(id.to_string())
            .arg(count.to_string())
            .arg(rate.to_string());
        if rotation != Rotation::CopyTruncate {
            cmd.arg("--reopen");
        }
        let child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the writer processes");
        Writer {
            id,
            path,
            rotation,
            child,
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(libc::pid_t::try_from(self.child.id()).unwrap(), sig);
        }
    }

    /// Waits for the writer to finish; the number of lines it wrote.
    fn finish(mut self) -> u64 {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "writer {} failed", self.id);
        let mut out = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out).unwrap();
        out.trim().parse().unwrap()
    }
}

fn logrotate(dir: &Path, w: &Writer) {
    let options = match w.rotation {
        Rotation::Create => "create",
        Rotation::CreateCompressed => "create\n  compress\n  delaycompress",
        Rotation::CopyTruncate => "copytruncate",
    };
    let conf = dir.join(format!("logrotate-{}.conf", w.id));
    std::fs::write(
        &conf,
        format!("{} {{\n  rotate 50\n  missingok\n  {options}\n}}\n", w.path.display()),
    )
    .unwrap();
    // copytruncate loses lines written between its copy and its truncate:
    // that race is logrotate's, so the writer is stopped while it runs.
    let pause = w.rotation == Rotation::CopyTruncate;
    if pause {
        w.signal(libc::SIGSTOP);
    }
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(dir.join(format!("logrotate-{}.state", w.id)))
        .arg(&conf)
        .output()
        .expect("logrotate is needed (scripts/test installs it)");
    if pause {
        w.signal(libc::SIGCONT);
    }
    assert!(
        out.status.success(),
        "logrotate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Xorshift(u64);
impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Checks what the topic holds, streaming it (the hour-long form stores
/// 14 million records: held as JSON values they took more than 24 GiB).
fn check_streaming(collector: &Collector, written: &BTreeMap<u32, u64>) -> Report {
    let mut checker = Checker::new(written);
    collector.for_each_record("torture", |r| checker.add(r));
    checker.finish()
}

/// Runs the torture; returns the final report and the number of kills.
fn torture(dedup: bool, lines_per_writer: u64, min_kills: u32, soak: Option<Duration>) -> (Report, u32) {
    let _heavy = logpost_e2e::heavy();
    let tmp = tempfile::tempdir().unwrap();
    let collector_extra = format!(
        "[storage]\ndefault_partitions = 3\ncheckpoint_interval = \"500ms\"\n[ingest]\ndeduplicate = {dedup}\n"
    );
    let mut collector = Collector::start(&tmp.path().join("collector"), &collector_extra);
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let glob = format!("{}/*.log", logs.display());
    // Checkpoints less often than the tests' default, so that an agent
    // killed after an acknowledgement has usually not recorded it yet.
    let config = agent_config(&collector, &glob, "torture")
        .replace("checkpoint_interval = \"100ms\"", "checkpoint_interval = \"1s\"");
    let mut agent = Agent::start(&tmp.path().join("agent"), &config);

    let rotations = [
        Rotation::Create,
        Rotation::CreateCompressed,
        Rotation::CopyTruncate,
        Rotation::CopyTruncate,
    ];
    // Rate so that the short form lasts about 25 s.
    let rate = u32::try_from((lines_per_writer / 25).max(200)).unwrap();
    let total = soak.map_or(lines_per_writer, |d| u64::from(rate) * d.as_secs());
    let writers: Vec<Writer> = rotations
        .iter()
        .enumerate()
        .map(|(i, &r)| Writer::spawn(i as u32 + 1, logs.join(format!("w{}.log", i + 1)), r, total, rate))
        .collect();

    let mut rng = Xorshift(0x7047_7572_6521);
    let started = Instant::now();
    let mut kills = 0;
    let mut next_rotation = Instant::now() + Duration::from_secs(2);
    let expected_end = Duration::from_secs(total / u64::from(rate));
    while started.elapsed() < expected_end.saturating_sub(Duration::from_secs(1)) || kills < min_kills {
        pace(Duration::from_millis(200 + rng.below(500)));
        if rng.below(2) == 0 {
            agent.kill9_and_restart();
        } else {
            collector.restart();
        }
        kills += 1;
        if Instant::now() >= next_rotation {
            for w in &writers {
                logrotate(&logs, w);
            }
            next_rotation = Instant::now() + Duration::from_millis(2000 + rng.below(2000));
        }
    }
    let written: BTreeMap<u32, u64> = writers.into_iter().map(|w| (w.id, w.finish())).collect();
    // Everything written must arrive; then the agent drains and stops.
    let deadline = Instant::now() + PATIENCE;
    let report = loop {
        let r = check_streaming(&collector, &written);
        if r.lost == 0 {
            break r;
        }
        if Instant::now() >= deadline {
            // Keep the files, logs of every agent and collector run, and
            // stored data for the post-mortem.
            let kept = tmp.keep();
            panic!(
                "gave up waiting: {r}\nfiles and logs kept in {}\nlast agent log:\n{}",
                kept.display(),
                agent.proc.stderr_text()
            );
        }
        pace(Duration::from_millis(200));
    };
    let _ = report;
    assert_eq!(
        agent.proc.terminate(),
        Some(0),
        "agent did not drain cleanly:\n{}",
        agent.proc.stderr_text()
    );
    let report = check_streaming(&collector, &written);
    if dedup && (report.duplicated, report.altered, report.out_of_order) != (0, 0, 0) {
        eprintln!("files and logs kept in {}", tmp.keep().display());
    }
    (report, kills)
}

#[test]
fn issue_7_exactly_once_through_crashes_and_rotation() {
    let soak = std::env::var("LOGPOST_TORTURE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    let (r, kills) = torture(true, 25_000, 30, soak);
    eprintln!("torture (dedup on): {kills} kills; {r}");
    assert!(kills >= 30);
    assert!(r.written >= 100_000, "{r}");
    assert_eq!((r.lost, r.duplicated, r.altered, r.out_of_order), (0, 0, 0, 0), "{r}");
}

#[test]
fn issue_7_without_dedup_the_checker_sees_duplicates() {
    let (r, kills) = torture(false, 8_000, 10, None);
    eprintln!("torture (dedup off): {kills} kills; {r}");
    assert_eq!(r.lost, 0, "{r}");
    assert!(
        r.duplicated > 0,
        "with deduplication off, crashes must show duplicates: {r}"
    );
}
