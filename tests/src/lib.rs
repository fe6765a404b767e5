//! Harness for end-to-end tests: starts the real binaries as processes on
//! 127.0.0.1 in a temporary directory of their own, waits for conditions
//! (never fixed sleeps), and reads results back through the `logpost`
//! command, as a user would.
//!
//! Binaries are found next to the test executable's directory (as ripgrep's
//! `tests/util.rs` does); `scripts/test` builds them first.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod clients;
pub mod corpus;
pub mod etcd;
pub mod process;

use std::time::{Duration, Instant};

/// Polls `probe` until it yields a value. The deadline only detects hangs
/// and is generous (shared CI machines are slow); the short interval keeps a
/// passing test fast; a probe that is expensive itself (reading back tens
/// of MiB) waits as long as it took, so polling never takes more than half
/// of the machine from the processes under test. Never a performance
/// assertion.
pub fn wait_for<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        let started = Instant::now();
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after {within:?} waiting for {what}");
        std::thread::sleep(started.elapsed().max(Duration::from_millis(20)));
    }
}

/// A blocking HTTP client. reqwest is built without a bundled crypto
/// provider (the workspace uses ring), so it needs the process default
/// installed first; every test client goes through here.
pub fn http() -> reqwest::blocking::Client {
    logpost_shared::tls::install_default_provider();
    reqwest::blocking::Client::new()
}

/// The default deadline for conditions in these tests.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Serialises the heaviest tests (thousands of files, crash loops, tens of
/// MiB read back, four client processes): two of them at once on a 2-core
/// CI machine starve each other's processes. Held for the whole test; the
/// other test thread goes on with light tests meanwhile.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A failed heavy test poisons the lock; the next may still run.
    HEAVY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A test's temporary directory that outlives a failed test: when the
/// test panics, the directory (processes' stderr, data, etcd) is kept and
/// its path printed, so that a failure seen once on a loaded machine can
/// be read afterwards. Removed as usual when the test passes, unless
/// `LOGPOST_TEST_KEEP` is set (to compare with a passing run).
pub struct TestDir(Option<tempfile::TempDir>);

impl TestDir {
    pub fn new() -> TestDir {
        TestDir(Some(tempfile::tempdir().unwrap()))
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.as_ref().map(tempfile::TempDir::path).unwrap()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if (failed || std::env::var_os("LOGPOST_TEST_KEEP").is_some())
            && let Some(dir) = self.0.take()
        {
            let why = if failed { "test failed" } else { "LOGPOST_TEST_KEEP" };
            eprintln!("{why}: the test's directory is kept at {}", dir.keep().display());
        }
    }
}

/// Sleeps for `d`: only for pacing writers, never for letting the system
/// settle (that is what [`wait_for`] is for).
pub fn pace(d: Duration) {
    std::thread::sleep(d);
}

pub mod ingest;
pub mod kafka;
pub mod lines;
