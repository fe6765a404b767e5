//! Real Kafka and Loki clients as processes: the Python scripts in
//! `tests/py` (kafka-python, confluent-kafka, protobuf) and kcat, each
//! checked for and named when missing (`scripts/test` installs them).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::wait_for;

/// Directory of the Python client scripts.
pub fn py_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py")
}

/// `python3`, after checking that the client packages import; panics
/// with the install command if they do not.
pub fn python() -> &'static str {
    let check = Command::new("python3")
        .args([
            "-c",
            "import kafka, confluent_kafka, google.protobuf, cramjam; print(kafka.__version__, confluent_kafka.version()[0])",
        ])
        .output()
        .expect("python3 is missing: the end-to-end tests need it (scripts/test installs the rest)");
    assert!(
        check.status.success(),
        "Python test clients missing: run `python3 -m pip install -r tests/requirements.txt`\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    "python3"
}

/// kcat, or a panic saying how to install it.
pub fn kcat() -> &'static str {
    let ok = Command::new("kcat")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "kcat is missing: run `apt-get install -y kcat`");
    "kcat"
}

/// Reads lines from `r` on a thread into a shared vector.
pub fn collect_lines(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => sink.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
    lines
}

/// Runs a script from `tests/py` to completion, asserting success; its stdout.
pub fn run_py(script: &str, args: &[&str], timeout: Duration) -> String {
    let mut child = Command::new(python())
        .arg(py_dir().join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let out = collect_lines(child.stdout.take().unwrap());
    let err = collect_lines(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = wait_for(&format!("{script} to finish"), timeout + Duration::from_secs(1), || {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{script} timed out; stderr:\n{}", err.lock().unwrap().join("\n"));
        }
        child.try_wait().unwrap()
    });
    // The reader threads hold the only other references until the pipes close.
    wait_for("script output drained", Duration::from_secs(10), || {
        (Arc::strong_count(&out) == 1 && Arc::strong_count(&err) == 1).then_some(())
    });
    let (out, err) = (out.lock().unwrap().join("\n"), err.lock().unwrap().join("\n"));
    assert!(
        status.success(),
        "{script} failed ({status}):\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// A long-running client process whose output lines are collected.
pub struct Client {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub errors: Arc<Mutex<Vec<String>>>,
}

impl Client {
    /// Starts `tests/py/<script> args...`.
    pub fn start(script: &str, args: &[&str]) -> Client {
        let mut child = Command::new(python())
            .arg(py_dir().join(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python client");
        let lines = collect_lines(child.stdout.take().unwrap());
        let errors = collect_lines(child.stderr.take().unwrap());
        Client { child, lines, errors }
    }

    /// Everything it printed on stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// stdout and stderr, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.lines().join("\n"),
            self.errors.lock().unwrap().join("\n")
        )
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
