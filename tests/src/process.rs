//! Running the binaries: a collector and an agent, each with its own
//! directory, config, and stdout/stderr files (kept for failure messages).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::{PATIENCE, wait_for};

/// Path of a built binary, next to the test executable's directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (scripts/test runs `cargo build --release --bins`)",
        path.display()
    );
    path
}

/// A child process whose output goes to files in `dir`.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, dir: &Path, cmd: Command) -> Proc {
        let log = std::env::var("LOGPOST_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
        Self::spawn_logging(name, dir, cmd, &log)
    }

    fn spawn_logging(name: &str, dir: &Path, mut cmd: Command, rust_log: &str) -> Proc {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let stdout = dir.join(format!("{name}.{n}.stdout"));
        let stderr = dir.join(format!("{name}.{n}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .env("RUST_LOG", rust_log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_owned(),
            stdout,
            stderr,
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; returns the exit code once the process has stopped.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = wait_for(&format!("{} to exit after SIGTERM", self.name), PATIENCE, || {
            self.child.try_wait().unwrap()
        });
        status.code()
    }

    /// Sends a signal (SIGHUP for a reload, say).
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Its stdout so far.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Its stderr so far, for assertion messages.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A collector with its own data directory.
#[derive(Debug)]
pub struct Collector {
    pub proc: Proc,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub url: String,
    pub addr: String,
    /// The Kafka listener's address, when `[kafka] listen` is configured.
    pub kafka_addr: Option<String>,
    rust_log: Option<String>,
}

impl Collector {
    /// Starts a collector in `dir` with extra TOML appended to its config,
    /// on a free port, and waits until it accepts requests.
    pub fn start(dir: &Path, extra: &str) -> Collector {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("collector.toml");
        let data = dir.join("data");
        let mut f = File::create(&config).unwrap();
        writeln!(f, "data_dir = {:?}\n{extra}", data.display().to_string()).unwrap();
        Self::launch_on_stable_port(dir, config, None)
    }

    /// As [`start`](Self::start), logging with `rust_log` (an `EnvFilter`
    /// such as `"info,logpost_collector::kafka=debug"`), for tests that
    /// wait for a debug event.
    pub fn start_logging(dir: &Path, extra: &str, rust_log: &str) -> Collector {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("collector.toml");
        let data = dir.join("data");
        let mut f = File::create(&config).unwrap();
        writeln!(f, "data_dir = {:?}\n{extra}", data.display().to_string()).unwrap();
        Self::launch_on_stable_port(dir, config, Some(rust_log.to_owned()))
    }

    /// Launches on a port below the kernel's ephemeral range, so that once
    /// a test kills the collector, no other test's `:0` bind and no
    /// outgoing connection can take the port before the restart rebinds it
    /// (restarts keep the address: agents and clients must find it again).
    fn launch_on_stable_port(dir: &Path, config: PathBuf, rust_log: Option<String>) -> Collector {
        for _ in 0..5 {
            let Some(port) = stable_port() else { break };
            let listen = format!("127.0.0.1:{port}");
            // Someone may bind the probed port before the collector does.
            let attempt = std::panic::catch_unwind(|| Self::launch(dir, config.clone(), &listen, rust_log.clone()));
            if let Ok(c) = attempt {
                return c;
            }
        }
        Self::launch(dir, config, "127.0.0.1:0", rust_log)
    }

    fn launch(dir: &Path, config: PathBuf, listen: &str, rust_log: Option<String>) -> Collector {
        // Tests build reqwest clients once a collector runs; reqwest needs
        // rustls' default provider installed (see `crate::http`).
        logpost_shared::tls::install_default_provider();
        let mut cmd = Command::new(bin("logpost-collector"));
        cmd.arg("--config").arg(&config).arg("--listen").arg(listen);
        let mut proc = match &rust_log {
            Some(filter) => Proc::spawn_logging("collector", dir, cmd, filter),
            None => Proc::spawn("collector", dir, cmd),
        };
        let (url, kafka_addr) = wait_for("the collector to announce its address", PATIENCE, || {
            if !proc.is_running() {
                panic!("collector exited at start:\n{}", proc.stderr_text());
            }
            let out = std::fs::read_to_string(&proc.stdout).ok()?;
            // The Kafka listener, when there is one, is announced first.
            let kafka = out.lines().find_map(|l| {
                l.strip_prefix("logpost-collector kafka listening on ")
                    .map(str::to_owned)
            });
            out.lines()
                .find_map(|l| l.strip_prefix("logpost-collector listening on ").map(str::to_owned))
                .map(|url| (url, kafka))
        });
        let addr = url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_owned();
        Collector {
            proc,
            dir: dir.to_owned(),
            config,
            url,
            addr,
            kafka_addr,
            rust_log,
        }
    }

    /// The Kafka listener's address.
    ///
    /// # Panics
    /// If the collector was started without `[kafka] listen`.
    pub fn kafka(&self) -> &str {
        self.kafka_addr
            .as_deref()
            .expect("the collector was started without [kafka] listen")
    }

    /// Kills the collector with SIGKILL.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts it again on the same address and data.
    pub fn restart(&mut self) {
        self.proc.kill9();
        let addr = self.addr.clone();
        let rust_log = self.rust_log.clone();
        // The old socket may linger briefly; retry until the port is free.
        let fresh = wait_for("the collector to restart on its port", PATIENCE, || {
            let c = std::panic::catch_unwind(|| Self::launch(&self.dir, self.config.clone(), &addr, rust_log.clone()));
            c.ok()
        });
        *self = fresh;
    }

    /// Runs `logpost` against this collector.
    pub fn logpost(&self, args: &[&str]) -> Output {
        Command::new(bin("logpost"))
            .arg("--collector")
            .arg(&self.url)
            .args(args)
            .output()
            .unwrap()
    }

    /// Every line of `topic`, byte-exact, oldest first.
    pub fn lines(&self, topic: &str) -> Vec<Vec<u8>> {
        let out = self.logpost(&["query", topic, "--limit", "0", "--output", "raw"]);
        match out.status.code() {
            Some(0) => {}
            Some(1) => return Vec::new(), // nothing stored yet
            Some(2) if not_created_yet(&out) => return Vec::new(),
            _ => panic!("logpost query failed: {}", String::from_utf8_lossy(&out.stderr)),
        }
        let mut lines: Vec<Vec<u8>> = out.stdout.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        lines.pop(); // after the last '\n'
        lines
    }

    /// Calls `each` with every record of `topic` as a JSON object, as
    /// `logpost query` streams them, without holding them all (a long
    /// torture run stores tens of millions). Nothing if the topic does not
    /// exist yet.
    pub fn for_each_record(&self, topic: &str, mut each: impl FnMut(&serde_json::Value)) {
        use std::io::BufRead;
        let mut child = Command::new(bin("logpost"))
            .arg("--collector")
            .arg(&self.url)
            .args(["query", topic, "--limit", "0", "--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        for line in std::io::BufReader::with_capacity(1 << 20, stdout).split(b'\n') {
            let line = line.unwrap();
            if !line.is_empty() {
                each(&serde_json::from_slice(&line).unwrap());
            }
        }
        let out = child.wait_with_output().unwrap();
        if out.status.code() == Some(1) || (out.status.code() == Some(2) && not_created_yet(&out)) {
            return;
        }
        assert!(
            out.status.success(),
            "logpost query failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Records of `topic` as JSON objects.
    pub fn records(&self, topic: &str) -> Vec<serde_json::Value> {
        let out = self.logpost(&["query", topic, "--limit", "0", "--output", "json"]);
        if out.status.code() == Some(1) || (out.status.code() == Some(2) && not_created_yet(&out)) {
            return Vec::new();
        }
        assert!(
            out.status.success(),
            "logpost query failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }
}

/// An agent with its own directory.
#[derive(Debug)]
pub struct Agent {
    pub proc: Proc,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Agent {
    /// Writes `config` (TOML; `{data_dir}` is replaced) and starts the agent.
    pub fn start(dir: &Path, config: &str) -> Agent {
        Self::start_with_args(dir, config, &[])
    }

    /// As [`start`](Self::start), with extra arguments (e.g. `--dry-run`).
    pub fn start_with_args(dir: &Path, config: &str, args: &[&str]) -> Agent {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("agent.toml");
        let text = config.replace("{data_dir}", &dir.join("data").display().to_string());
        std::fs::write(&path, text).unwrap();
        let mut cmd = Command::new(bin("logpost-agent"));
        cmd.arg("--config")
            .arg(&path)
            .arg("--drain-timeout")
            .arg("30s")
            .args(args);
        let proc = Proc::spawn("agent", dir, cmd);
        Agent {
            proc,
            dir: dir.to_owned(),
            config: path,
        }
    }

    /// Rewrites the config file (for a SIGHUP reload).
    pub fn rewrite_config(&self, config: &str) {
        let text = config.replace("{data_dir}", &self.dir.join("data").display().to_string());
        std::fs::write(&self.config, text).unwrap();
    }

    fn launch(dir: &Path, config: PathBuf) -> Agent {
        let mut cmd = Command::new(bin("logpost-agent"));
        cmd.arg("--config").arg(&config).arg("--drain-timeout").arg("30s");
        let proc = Proc::spawn("agent", dir, cmd);
        Agent {
            proc,
            dir: dir.to_owned(),
            config,
        }
    }

    /// SIGKILL, then start again with the same config and data.
    pub fn kill9_and_restart(&mut self) {
        self.proc.kill9();
        *self = Self::launch(&self.dir, self.config.clone());
    }

    /// Starts the agent with a command prefix (e.g. `setpriv ...` to run it
    /// as another user).
    pub fn start_wrapped(dir: &Path, config: &str, wrapper: &[&str]) -> Agent {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("agent.toml");
        let text = config.replace("{data_dir}", &dir.join("data").display().to_string());
        std::fs::write(&path, text).unwrap();
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(bin("logpost-agent"))
            .arg("--config")
            .arg(&path)
            .arg("--drain-timeout")
            .arg("30s");
        let proc = Proc::spawn("agent", dir, cmd);
        Agent {
            proc,
            dir: dir.to_owned(),
            config: path,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Where the agent serves `/metrics`, once it said so (its config has
    /// `[metrics] listen`).
    pub fn metrics_addr(&self) -> String {
        wait_for("the agent's metrics address", PATIENCE, || {
            self.proc
                .stderr_text()
                .lines()
                .find(|l| l.contains("metrics listening"))?
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(str::to_owned)
        })
    }

    /// The sum over every label set of metric `name` on the agent's
    /// `/metrics`, if it answers and has that metric.
    pub fn metric_sum(&self, client: &reqwest::blocking::Client, addr: &str, name: &str) -> Option<f64> {
        let text = client.get(format!("http://{addr}/metrics")).send().ok()?.text().ok()?;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.rsplit_once('}')?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.trim().parse().ok()
            })
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

/// A config for an agent tailing `glob` into `topic` on `collector`, with
/// short intervals so that tests run fast.
pub fn agent_config(collector: &Collector, glob: &str, topic: &str) -> String {
    agent_config_for(&collector.url, glob, topic)
}

/// As [`agent_config`], for a collector URL.
pub fn agent_config_for(url: &str, glob: &str, topic: &str) -> String {
    format!(
        r#"data_dir = "{{data_dir}}"
[collector]
urls = ["{url}"]
timeout = "10s"
[batch]
max_wait = "100ms"
[tail]
poll_interval = "20ms"
glob_interval = "100ms"
# Long enough that a writer stalled between the halves of a line (a
# busy CI machine) does not see it flushed in two pieces.
partial_line_timeout = "2s"
rotated_file_idle = "500ms"
checkpoint_interval = "100ms"
[[sources]]
name = "test"
paths = ["{glob}"]
topic = "{topic}"
"#,
    )
}

/// `logpost` said the topic does not exist (yet): the agent creates it
/// with its first batch.
fn not_created_yet(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr).contains("does not exist")
}

/// A free port for a helper process (etcd), below the kernel's ephemeral
/// range like the collectors' ports.
///
/// # Panics
/// If no port is free.
pub fn free_port() -> u16 {
    stable_port().unwrap_or_else(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    })
}

/// A free port below `ip_local_port_range` (where the kernel never picks
/// ports for `:0` binds or outgoing connections), distinct for every call
/// in this process; `None` if that range leaves no room.
fn stable_port() -> Option<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = 8000;
    let base = low.checked_sub(span + 1000)?;
    if base < 1024 {
        return None;
    }
    // Start where another test process (a second `cargo test`) is unlikely to.
    let offset = std::process::id() % span;
    for _ in 0..span {
        let port = base + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).ok()?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Some(port);
        }
    }
    None
}
