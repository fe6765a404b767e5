//! A single-member etcd for cluster tests: its own data directory and
//! free ports, started from Debian's `etcd-server` (`scripts/test`
//! installs it), stopped when dropped.

use std::path::Path;
use std::process::Command;

use crate::process::{Proc, free_port};
use crate::{PATIENCE, http, wait_for};

/// A running etcd.
#[derive(Debug)]
pub struct Etcd {
    pub proc: Proc,
    /// Its client URL, e.g. `http://127.0.0.1:23790`.
    pub url: String,
}

/// The etcd binary: `$LOGPOST_ETCD`, or `etcd` on the PATH.
fn binary() -> String {
    std::env::var("LOGPOST_ETCD").unwrap_or_else(|_| "etcd".to_owned())
}

impl Etcd {
    /// Starts etcd in `dir` and waits until it answers its health check.
    pub fn start(dir: &Path) -> Etcd {
        std::fs::create_dir_all(dir).unwrap();
        let client = free_port();
        let peer = free_port();
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(binary());
        cmd.arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(dir.join("etcd-data"))
            .arg("--listen-client-urls")
            .arg(&url)
            .arg("--advertise-client-urls")
            .arg(&url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("test={peer_url}"))
            .arg("--log-level")
            .arg("warn");
        let mut proc = Proc::spawn("etcd", dir, cmd);
        let client_http = http();
        wait_for("etcd to answer its health check", PATIENCE, || {
            assert!(proc.is_running(), "etcd exited at start:\n{}", proc.stderr_text());
            let resp = client_http.get(format!("{url}/health")).send().ok()?;
            let v: serde_json::Value = resp.json().ok()?;
            (v["health"] == "true").then_some(())
        });
        Etcd { proc, url }
    }
}
