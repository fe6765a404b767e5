//! The README's first command works: the quick start runs the whole
//! pipeline on its sample logs and shows query results.

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
}
