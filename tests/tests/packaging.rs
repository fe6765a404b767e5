//! Issue 8: the Debian packages and the install script. The .deb files are
//! built by `scripts/test` (cargo-deb), which passes their directory in
//! `LOGPOST_DEB_DIR`; these tests unpack them with dpkg-deb, check their
//! contents, verify the systemd units, and run the packaged binaries with
//! the packaged configs (paths redirected to a temporary root) to ship a
//! line end to end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use logpost_e2e::process::bin;
use logpost_e2e::{PATIENCE, wait_for};

fn deb_dir() -> Option<PathBuf> {
    match std::env::var_os("LOGPOST_DEB_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!("SKIPPED: LOGPOST_DEB_DIR is not set (scripts/test builds the .deb files and sets it)");
            None
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Unpacks `name.deb` into `root` (data) and `root/DEBIAN` (control).
fn unpack(dir: &Path, name: &str, root: &Path) -> String {
    let deb = dir.join(format!("{name}.deb"));
    assert!(deb.exists(), "{} is missing", deb.display());
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root));
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(root.join("DEBIAN")));
    info
}

fn check_package(root: &Path, info: &str, name: &str, binaries: &[&str]) {
    assert!(info.contains(&format!("Package: {name}")), "{info}");
    assert!(
        info.contains("adduser"),
        "depends on adduser for the system user: {info}"
    );
    for b in binaries {
        let path = root.join("usr/bin").join(b);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o755, "{}", path.display());
    }
    let what = name.trim_start_matches("logpost-");
    let conffiles = std::fs::read_to_string(root.join("DEBIAN/conffiles")).unwrap();
    assert!(
        conffiles.lines().any(|l| l == format!("/etc/logpost/{what}.toml")),
        "{conffiles}"
    );
    let unit = std::fs::read_to_string(root.join(format!("lib/systemd/system/{name}.service"))).unwrap();
    for directive in [
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/logpost\n",
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "CapabilityBoundingSet=\n",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=logpost",
    ] {
        assert!(unit.contains(directive), "{name}.service lacks {directive:?}");
    }
    let postinst = std::fs::read_to_string(root.join("DEBIAN/postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "postinst creates the user");
    let postrm = std::fs::read_to_string(root.join("DEBIAN/postrm")).unwrap();
    assert!(
        postrm.contains("\"purge\"") && postrm.contains(&format!("rm -rf /var/lib/logpost/{what}")),
        "data deleted on purge only:\n{postrm}"
    );
    verify_unit(root, name, &unit);
}

/// `systemd-analyze verify` on the unit, with its binary paths pointed at
/// the unpacked root (the binaries are not installed on this machine).
fn verify_unit(root: &Path, name: &str, unit: &str) {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    let dir = root.join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.service"));
    let bin_dir = format!("{}/usr/bin/", root.display());
    std::fs::write(&path, unit.replace("/usr/bin/", &bin_dir)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about *other* units on this machine are not ours to fix.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(&format!("{name}.service")) || l.contains(&bin_dir))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify {name}:\n{stderr}"
    );
}

struct Running(Child, PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, name: &str, cmd: &mut Command) -> Running {
    let out = dir.join(format!("{name}.out"));
    let child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
        .spawn()
        .unwrap();
    Running(child, out)
}

fn sigterm(r: &mut Running) -> Option<i32> {
    let pid = libc::pid_t::try_from(r.0.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    wait_for("a packaged binary to stop after SIGTERM", PATIENCE, || {
        r.0.try_wait().unwrap()
    })
    .code()
}

#[test]
fn issue_8_debs_unpack_verify_and_ship_a_line() {
    let Some(dir) = deb_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (agent_root, collector_root) = (tmp.path().join("agent-pkg"), tmp.path().join("collector-pkg"));
    let info = unpack(&dir, "logpost-agent", &agent_root);
    check_package(&agent_root, &info, "logpost-agent", &["logpost-agent"]);
    let unit = std::fs::read_to_string(agent_root.join("lib/systemd/system/logpost-agent.service")).unwrap();
    assert!(
        unit.contains("SupplementaryGroups=adm"),
        "the agent reads /var/log through adm"
    );
    let info = unpack(&dir, "logpost-collector", &collector_root);
    check_package(
        &collector_root,
        &info,
        "logpost-collector",
        &["logpost-collector", "logpost"],
    );

    // The packaged configs, with /var/lib and /var/log under the temp root.
    let fake = tmp.path().join("root");
    let logs = fake.join("var/log");
    std::fs::create_dir_all(&logs).unwrap();
    let redirect = |text: String| {
        text.replace("/var/lib/logpost", &fake.join("var/lib/logpost").display().to_string())
            .replace("/var/log/", &format!("{}/", logs.display()))
    };
    let collector_toml = tmp.path().join("collector.toml");
    let text = std::fs::read_to_string(collector_root.join("etc/logpost/collector.toml")).unwrap();
    std::fs::write(&collector_toml, redirect(text)).unwrap();
    let mut collector = spawn(
        tmp.path(),
        "collector",
        Command::new(collector_root.join("usr/bin/logpost-collector"))
            .arg("--config")
            .arg(&collector_toml)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::null()),
    );
    let url = wait_for("the packaged collector to listen", PATIENCE, || {
        let out = std::fs::read_to_string(&collector.1).ok()?;
        out.lines()
            .find_map(|l| l.strip_prefix("logpost-collector listening on ").map(str::to_owned))
    });
    let text = std::fs::read_to_string(agent_root.join("etc/logpost/agent.toml")).unwrap();
    let text = redirect(text)
        .replace("http://127.0.0.1:7070", &url)
        .replace("127.0.0.1:9598", "127.0.0.1:0");
    let agent_toml = tmp.path().join("agent.toml");
    std::fs::write(&agent_toml, text).unwrap();
    std::fs::write(logs.join("syslog"), "packaged line\n").unwrap();
    let mut agent = spawn(
        tmp.path(),
        "agent",
        Command::new(agent_root.join("usr/bin/logpost-agent"))
            .arg("--config")
            .arg(&agent_toml)
            .stdin(Stdio::null()),
    );
    let lines = wait_for("the line to reach the packaged collector", PATIENCE, || {
        let out = Command::new(collector_root.join("usr/bin/logpost"))
            .args(["--collector", &url, "query", "system", "-o", "raw"])
            .output()
            .unwrap();
        out.status.success().then_some(out.stdout)
    });
    assert_eq!(lines, b"packaged line\n");
    // systemd stops them with SIGTERM: both exit 0 (drained, checkpointed).
    assert_eq!(sigterm(&mut agent), Some(0));
    assert_eq!(sigterm(&mut collector), Some(0));
    assert!(fake.join("var/lib/logpost/collector").is_dir());
    assert!(fake.join("var/lib/logpost/agent").is_dir());
}

#[test]
fn issue_8_install_script_never_overwrites_a_config() {
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/install.sh");
    let bin_dir = bin("logpost-agent").parent().unwrap().to_owned();
    let root = tmp.path().join("root");
    let install = |what: &str| {
        run(Command::new("sh")
            .arg(&script)
            .arg(what)
            .arg("--bin")
            .arg(&bin_dir)
            .arg("--root")
            .arg(&root)
            .arg("--no-systemd"))
    };
    let first = install("agent");
    assert!(first.contains("installed"), "{first}");
    let config = root.join("etc/logpost/agent.toml");
    assert!(root.join("usr/bin/logpost-agent").exists());
    assert!(root.join("etc/systemd/system/logpost-agent.service").exists());
    assert!(root.join("var/lib/logpost/agent").is_dir());
    std::fs::write(&config, "# edited by the operator\n").unwrap();
    let second = install("agent");
    assert!(second.contains("keeping existing"), "{second}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# edited by the operator\n");
    install("collector");
    assert!(root.join("usr/bin/logpost").exists() && root.join("usr/bin/logpost-collector").exists());
    assert!(root.join("etc/logpost/collector.toml").exists());
}
