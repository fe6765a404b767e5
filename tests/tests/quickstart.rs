//! The README's first command works: the quick start runs the whole
//! pipeline on its sample logs, shows query results and ends with the
//! web page's URL.

use std::process::Command;

#[test]
fn readme_quickstart_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The binaries are already built by the test command; the script would
    // otherwise build them itself.
    let _ = logpost_e2e::process::bin("logpost-agent");
    let out = Command::new(root.join("quickstart.sh"))
        .arg("--once")
        .env("LOGPOST_SKIP_BUILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("logpost is running"), "{stdout}");
    assert!(
        stdout.contains("checkout: payment declined"),
        "no ERROR lines queried:\n{stdout}"
    );
    assert!(stdout.contains("stopped; removed"), "{stdout}");
    // Its demo ends with the web page's URL (issue 31).
    let before_stop = stdout.split("==> stopping").next().unwrap_or_default().trim_end();
    let last = before_stop.lines().last().unwrap_or_default().trim();
    assert!(
        last.starts_with("http://127.0.0.1:") && last.ends_with('/'),
        "the quick start does not end with the page's URL:\n{stdout}"
    );
}
